"""Generate a synthetic results store (docs/results-store.md) for dashboard tests and load benchmarks.

    python benchmarks/make_store.py OUT [--sweep NAME] [--size small|bench] [--no-videos] [--replicate-baseline]

`small`: 2x2x2 variants x 2 seeds = 16 runs, 4 held-out clips from 2 source videos, 11
metrics (psnr, ssim, lpips, 8 DWT sub-band PSNRs), tiny real H.264 mp4s (references, recon
and t2v samples), loss curves, two failed runs, one running and one pending.
`bench`: 2x5x2x2 variants x 5 seeds = 200 runs x 20 clips (5 sources x 4) x 10 metrics
(no failures), the dashboard load target.
`--replicate-baseline` adds the A/A copies of the baseline variant (every axis at its first
level) on seeds shifted by 1000, as `ltxlab sweep --replicate-baseline` does: runs.parquet
gets `replicate` ("a" | "b"), sweep.json its `replicate` entry. `block` (the nominal seed)
and metrics' `source_id` are always written.

Metric values have planted effects (the `ltx` VAE +1 dB PSNR, DWT loss +0.5 dB on high
bands) so the Effects page has something to find, a level per source video and a smaller
one per clip (clips of one source are alike), and a seed offset keyed by the block, so a
replicate copy differs from its baseline by metric noise alone. Writes go through
`ablations.store.SweepStore`. No torch: videos are written with PyAV directly.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ablations.store import DWT_BANDS, SweepStore, clip_file_name  # noqa: E402
from clips.ids import source_of_clip_id  # noqa: E402

FPS = Fraction(24, 1)
FRAMES, HEIGHT, WIDTH = 17, 64, 96  # 1 + 8k frames, tiny but a real H.264 stream
SIZES = {
    "small": {"axes": {"vae.kind": ["ltx", "conventional"], "loss.dwt": [0.0, 0.1], "dit.attention": ["cross", "mmdit"]},
              "seeds": [0, 1], "clips": 4, "sources": 2, "metrics": 11, "failed": 2, "running": 1, "pending": 1, "video_clips": 2},
    "bench": {"axes": {"vae.kind": ["ltx", "conventional"], "loss.dwt": [0.0, 0.01, 0.03, 0.1, 0.3],
                       "dit.attention": ["cross", "mmdit"], "dit.rope": ["fractional", "integer"]},
              "seeds": [0, 1, 2, 3, 4], "clips": 20, "sources": 5, "metrics": 10, "failed": 0, "running": 0, "pending": 0, "video_clips": 1},
}  # fmt: skip
SOURCES = ("bikes", "bigbuckbunny", "carphone_pristine", "harbour", "market")  # bundled names, then folder-like stems
REPLICATE_OFFSET = 1000  # as ablations.graph.replicate_seed_offset for seeds below 1000
METRICS = {"psnr": True, "ssim": True, "lpips": False} | {f"dwt_psnr_{b.lower()}": True for b in DWT_BANDS}


def write_mp4(path: Path, frames: np.ndarray, fps: Fraction = FPS) -> Path:
    """Encode uint8 `(T, H, W, 3)` frames as H.264 yuv420p (the store's sample format)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", options={"movflags": "+faststart"}) as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.options = {"crf": "18", "preset": "ultrafast"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def reference_frames(clip: int) -> np.ndarray:
    """A moving gradient with a square: uint8 `(T, H, W, 3)`, different per clip."""
    t = np.arange(FRAMES)[:, None, None]
    y = np.arange(HEIGHT)[None, :, None]
    x = np.arange(WIDTH)[None, None, :]
    shape = (FRAMES, HEIGHT, WIDTH)
    channels = [(x * 2 + t * 4 + clip * 40) % 256, (y * 3 + clip * 70) % 256, (x + y + t * 2) % 256]
    frames = np.stack([np.broadcast_to(c, shape) for c in channels], axis=-1).astype(np.uint8)  # (T, H, W, 3)
    for k in range(FRAMES):
        x0 = 8 + 3 * k
        frames[k, 20:36, x0 : x0 + 16] = [230, 40, 40]
    return frames


def _variant_quality(levels: dict) -> float:
    """Planted effects in dB: the ltx VAE helps, DWT loss helps a little, mmdit slightly."""
    q = 1.0 if levels.get("vae.kind") == "ltx" else 0.0
    q += 2.0 * float(levels.get("loss.dwt", 0.0))
    q += 0.3 if levels.get("dit.attention") == "mmdit" else 0.0
    return q


def clip_ids(count: int, sources: int) -> list[str]:
    """`count` held-out clip ids in the bundled format, spread evenly over `sources` videos."""
    per_source = -(-count // sources)
    ids = []
    for k in range(count):
        name, window = SOURCES[k // per_source], k % per_source
        start = 190 + 8 * window
        ids.append(f"{name}:heldout:t{start}-{start + FRAMES - 1}:y0x{16 * window}:{HEIGHT}x{WIDTH}:s{HEIGHT}")
    return ids


def make_store(root: str | Path, sweep: str = "synthetic", size: str = "small", *, videos: bool = True, seed: int = 0,
               replicate: bool = False) -> Path:
    """Write a complete synthetic sweep under `root/sweep`; returns the sweep folder.

    `replicate` adds the baseline's A/A copies (seeds + 1000, `replicate` = "b"), all done.
    """
    spec = SIZES[size]
    rng = np.random.default_rng(seed)
    store = SweepStore(root, sweep)
    axes = spec["axes"]
    metric_names = list(METRICS)[: spec["metrics"]] if spec["metrics"] <= len(METRICS) else list(METRICS)
    if size == "bench":
        metric_names = ["psnr", "ssim"] + [f"dwt_psnr_{b.lower()}" for b in DWT_BANDS]
    baseline = {a: levels[0] for a, levels in axes.items()}
    baseline_name = ",".join(f"{a}={v}" for a, v in baseline.items())
    replicate_entry = {"baseline_variant": baseline_name, "baseline": baseline, "seed_offset": REPLICATE_OFFSET,
                       "seeds": [s + REPLICATE_OFFSET for s in spec["seeds"]]} if replicate else None
    store.write_sweep_json({
        "sweep": sweep, "recipe": f"synthetic-{size}", "axes": {**axes, "seed": spec["seeds"]}, "replicate": replicate_entry,
        "metrics": {m: {"higher_is_better": METRICS[m], "version": "1"} for m in metric_names},
        "headline_metrics": metric_names[:2], "git_commit": "0123abcd", "dirty": False,
        "versions": {"python": sys.version.split()[0], "pyav": av.__version__}, "started_at": "2026-11-24T21:00:00Z",
        "status": "running" if spec["running"] or spec["pending"] else "done",
        "cost_assumptions": {"h100_peak_tflops_bf16": 989, "utilisation": 0.4, "shape": "121x512x768"},
    })  # fmt: skip
    clips = clip_ids(spec["clips"], spec["sources"])
    sources = [source_of_clip_id(c) for c in clips]
    source_level = {name: rng.normal(0, 1.6) for name in dict.fromkeys(sources)}
    clip_level = np.array([source_level[name] for name in sources]) + rng.normal(0, 1.2, len(clips))
    if videos:
        for k in range(min(spec["video_clips"], len(clips))):
            write_mp4(store.reference_path(clips[k]), reference_frames(k))

    combos = [dict(zip(axes, values)) for values in itertools.product(*axes.values())]
    runs = [(levels, s, "a") for levels in combos for s in spec["seeds"]]
    n = len(runs)
    fates = ["done"] * n
    for i in range(spec["failed"]):
        fates[(3 + 5 * i) % n] = "failed"
    for i in range(spec["running"]):
        fates[n - 1 - i] = "running"
    for i in range(spec["pending"]):
        fates[n - 1 - spec["running"] - i] = "pending"
    if replicate:  # after the normal runs, as the sweep runner orders them; always finished
        runs += [(baseline, s, "b") for s in spec["seeds"]]
        fates += ["done"] * len(spec["seeds"])
    metric_rows = []
    for i, ((levels, block, copy), fate) in enumerate(zip(runs, fates)):
        s = block + (REPLICATE_OFFSET if copy == "b" else 0)
        variant = ",".join(f"{a}={v}" for a, v in levels.items()) + (",replicate=b" if copy == "b" else "")
        run_id = f"{sweep}-{i:03d}-s{s}"
        quality = _variant_quality(levels)
        store.write_run_json(run_id, "config.json", {"axes": levels, "seed": s})
        row = {"run_id": run_id, "variant": variant, "seed": s, "block": block, **({"replicate": copy} if replicate else {}),
               **levels, "status": fate, "started_at": "2026-11-24T21:00:00Z", "finished_at": None, "wall_time_s": None}  # fmt: skip
        row |= _costs(levels)
        if fate == "failed":
            row["failure_reason"] = "train_dit: loss became NaN at step 37 (lr 3e-4); see manifest.json"
        if fate != "done":
            store.upsert_run(row)
            continue
        values = {}
        for k, clip in enumerate(clips):
            for m in metric_names:
                v = _metric_value(m, 28.0 + quality + clip_level[k] + 0.2 * block, levels, rng)
                values.setdefault(m, []).append(v)
                metric_rows.append({"run_id": run_id, "seed": s, "split": "heldout", "clip_id": clip,
                                    "source_id": sources[k], "metric": m, "value": v})  # fmt: skip
        row |= {m: float(np.mean(values[m])) for m in metric_names[:2]}
        row |= {"finished_at": "2026-11-24T21:30:00Z", "wall_time_s": float(60 + rng.integers(0, 600))}
        store.upsert_run(row)
        store.write_curve(run_id, _curve(rng, quality))
        store.write_run_json(run_id, "manifest.json", {"git_commit": "0123abcd", "seed": s, "status": "done"})
        if videos and (size == "small" or i < 8):
            _write_samples(store, run_id, clips[: spec["video_clips"]], quality, rng)
    store.append_metrics(metric_rows)
    return store.path


def _costs(levels: dict) -> dict:
    params = 2.0e9 if levels.get("dit.attention") == "mmdit" else 1.9e9
    flops_ref = 6.1e15 * (1.15 if levels.get("vae.kind") == "conventional" else 1.0) * (params / 1.9e9)
    return {"cost.params": params, "cost.tokens": 7680.0, "cost.flops_run": flops_ref / 900, "cost.flops_ref": flops_ref,
            "cost.latency_s": 0.8 * flops_ref / 6.1e15, "cost.h100_estimate_s": flops_ref / (989e12 * 0.4)}  # fmt: skip


def _metric_value(metric: str, psnr_like: float, levels: dict, rng: np.random.Generator) -> float:
    noise = rng.normal(0, 0.4)
    if metric == "ssim":
        return float(np.clip(0.6 + 0.01 * psnr_like + 0.01 * noise, 0, 1))
    if metric == "lpips":
        return float(max(0.0, 0.5 - 0.012 * psnr_like + 0.01 * noise))
    if metric.startswith("dwt_psnr_"):
        band = metric.rsplit("_", 1)[1]
        high = band.count("H")
        dwt_bonus = 0.5 * high / 3 if float(levels.get("loss.dwt", 0.0)) > 0 else 0.0
        return float(psnr_like + 4 - 2.5 * high + dwt_bonus + noise)
    return float(psnr_like + noise)


def _curve(rng: np.random.Generator, quality: float) -> pd.DataFrame:
    steps = np.arange(0, 200, 10)
    rows = []
    for stage, scale in (("train_vae", 1.0), ("train_dit", 2.0)):
        loss = scale * (0.2 + np.exp(-steps / 60.0) / (1 + 0.2 * quality)) + rng.normal(0, 0.01, len(steps))
        rows += [{"stage": stage, "step": int(s), "name": "loss", "value": float(v)} for s, v in zip(steps, loss)]
    return pd.DataFrame(rows)


def _write_samples(store: SweepStore, run_id: str, clips: list[str], quality: float, rng: np.random.Generator) -> None:
    sample_dir = store.sample_dir(run_id)
    noise_sd = 12.0 / (1.0 + quality)  # better variants reconstruct with less noise
    for k, clip in enumerate(clips):
        ref = reference_frames(k).astype(float)
        recon = np.clip(ref + rng.normal(0, noise_sd, ref.shape), 0, 255).astype(np.uint8)
        name = f"recon-{clip_file_name(clip)}.mp4"
        write_mp4(sample_dir / name, recon)
        store.add_sample(run_id, {"file": name, "task": "recon", "prompt_id": clip_file_name(clip), "text": None,
                                  "image": None, "clip_id": clip, "fps": float(FPS)})  # fmt: skip
    frames = reference_frames(3)[:, ::-1].copy()
    write_mp4(sample_dir / "t2v-p003.mp4", np.clip(frames + rng.normal(0, noise_sd, frames.shape), 0, 255).astype(np.uint8))
    store.add_sample(run_id, {"file": "t2v-p003.mp4", "task": "t2v", "prompt_id": "p003", "image": None, "clip_id": None,
                              "text": "a red square moves left over a photo of coffee", "fps": float(FPS)})  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", help="results root to write into")
    parser.add_argument("--sweep", default="synthetic")
    parser.add_argument("--size", choices=list(SIZES), default="small")
    parser.add_argument("--no-videos", action="store_true")
    parser.add_argument("--replicate-baseline", action="store_true", help="add the baseline's A/A copies on seeds + 1000")
    args = parser.parse_args()
    t0 = time.perf_counter()
    path = make_store(args.root, args.sweep, args.size, videos=not args.no_videos, replicate=args.replicate_baseline)
    print(f"wrote {path} in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
