"""`ltxlab metrics --ref A.mp4 --test B.mp4`: compare two videos directly, overall and per frame.

Prints each metric's overall value with its unit, direction and version, then per-frame
PSNR and SSIM; `--json` prints everything (specs, per-frame lists, reasons a metric did
not apply). Videos of different frame counts are compared over their common first
frames, and the output says so; different frame sizes are a user error.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from ablations.cli import UserError

PER_FRAME_COLUMNS = ("psnr", "ssim")  # the per-frame table shows these when they were computed


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("metrics", help="compare a test video with its reference (PSNR, SSIM, DWT bands, ...)")
    p.add_argument("--ref", required=True, help="reference (original) video file")
    p.add_argument("--test", required=True, help="test (reconstructed / distorted) video file")
    p.add_argument("--metrics", default=None, help="comma-separated metric names (default: all registered)")
    p.add_argument("--max-frames", type=int, default=None, help="compare at most this many leading frames")
    p.add_argument("--json", action="store_true", help="print the full results as JSON")
    p.set_defaults(func=run)


def _describe(frames: Any, fps: float, path: str) -> dict[str, Any]:
    t, h, w, _ = frames.shape
    return {"path": path, "frames": t, "height": h, "width": w, "fps": round(float(fps), 4)}


def load_pair(ref_path: str, test_path: str, max_frames: int | None) -> tuple[Any, Any, dict[str, Any]]:
    """Decode both videos; trim to the common frame count. Returns (ref, test, info) with uint8 (T, H, W, 3) frames."""
    from clips.io import read_video

    ref, ref_fps = read_video(ref_path, max_frames)
    test, test_fps = read_video(test_path, max_frames)
    info: dict[str, Any] = {"reference": _describe(ref, ref_fps, ref_path), "test": _describe(test, test_fps, test_path)}
    if ref.shape[1:] != test.shape[1:]:
        raise UserError(
            f"The reference is {ref.shape[2]}x{ref.shape[1]} but the test is {test.shape[2]}x{test.shape[1]} (width x height); "
            "metrics compare videos of equal frame size, so resize one to match first."
        )
    frames = min(len(ref), len(test))
    notes = []
    if len(ref) != len(test):
        notes.append(
            f"The reference has {len(ref)} frames and the test {len(test)}; comparing the first {frames} frames only."
        )
    if abs(ref_fps - test_fps) > 1e-3:
        notes.append(f"The frame rates differ ({ref_fps:.3f} vs {test_fps:.3f} fps); frames are compared by index.")
    info["frames_compared"] = frames
    info["notes"] = notes
    return ref[:frames], test[:frames], info


def run(args: argparse.Namespace) -> int:
    from evaluation.metrics import METRICS, evaluate_pair, resolve_names

    if args.max_frames is not None and args.max_frames < 1:
        raise UserError(f"--max-frames must be at least 1, got {args.max_frames}.")
    names = resolve_names(args.metrics.split(",")) if args.metrics else None  # unknown names fail before decoding
    ref, test, info = load_pair(args.ref, args.test, args.max_frames)
    results = evaluate_pair(ref, test, names)
    if args.json:
        info["metrics"] = {
            name: {**r.to_dict(), "higher_is_better": METRICS.get(name).higher_is_better, "unit": METRICS.get(name).unit}
            for name, r in results.items()
        }
        print(json.dumps(info, indent=2))
        return 0
    print(_header(info))
    print(_overall_table(results))
    columns = [name for name in PER_FRAME_COLUMNS if name in results and results[name].per_frame is not None]
    if columns:
        print()
        print(_per_frame_table(results, columns))
    return 0


def _header(info: dict[str, Any]) -> str:
    lines = []
    for role in ("reference", "test"):
        v = info[role]
        lines.append(f"{role:<9}  {v['path']}  ({v['frames']} frames, {v['width']}x{v['height']}, {v['fps']:g} fps)")
    lines += [f"note: {note}" for note in info["notes"]]
    lines.append("")
    return "\n".join(lines)


def _overall_table(results: dict[str, Any]) -> str:
    from evaluation.metrics import METRICS

    width = max(len("metric"), *(len(name) for name in results))
    lines = [f"{'metric':<{width}}  {'value':>10}  {'unit':<4}  {'better':<6}  version"]
    for name, r in results.items():
        spec = METRICS.get(name)
        better = "higher" if spec.higher_is_better else "lower"
        if r.value is None:
            lines.append(f"{name:<{width}}  {'n/a':>10}  {spec.unit:<4}  {better:<6}  {r.version}  ({r.not_applicable})")
        else:
            lines.append(f"{name:<{width}}  {r.value:>10.4f}  {spec.unit:<4}  {better:<6}  {r.version}")
    return "\n".join(lines)


def _per_frame_table(results: dict[str, Any], columns: list[str]) -> str:
    lines = ["per frame", "frame  " + "  ".join(f"{c:>10}" for c in columns)]
    for i in range(len(results[columns[0]].per_frame)):
        lines.append(f"{i:>5}  " + "  ".join(f"{results[c].per_frame[i]:>10.4f}" for c in columns))
    return "\n".join(lines)
