"""`ltxlab metrics`: score videos directly, as a standalone evaluation tool.

Two files (`--ref A.mp4 --test B.mp4`): each reconstruction metric's overall value with its
unit, direction and version, then per-frame PSNR and SSIM; videos of different frame counts
are compared over their common first frames (the output says so); different frame sizes are
a user error.

Two folders (`--ref DIR --test DIR`): every registered metric - per pair (PSNR ... LPIPS,
averaged over the pairs), per test video (CLIP similarity, frame consistency, flicker, the
oracle; captions from `captions.jsonl`, the test folder's first, then the reference's), and per
set (FVD over all videos, rFVD over the pairs) - each with a value or with the one sentence
that says what it needs (a weights file, captions, more samples). Videos pair by file name.
Videos are decoded one pair at a time and I3D features are kept, not videos, so folders of
any size fit in memory.

Weights: `--set eval.weights.NAME=PATH` (repeatable) or the `$LTXLAB_WEIGHTS` folder; nothing
is downloaded. `--json` prints everything (specs, per-frame or per-video values, reasons).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from ablations.cli import UserError

PER_FRAME_COLUMNS = ("psnr", "ssim")  # the per-frame table shows these when they were computed
WEIGHTS_PREFIX = "eval.weights."


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("metrics", help="score a test video or folder against its reference (PSNR ... LPIPS, "
                                              "CLIP similarity, FVD)")
    p.add_argument("--ref", required=True, help="reference (original) video file, or a folder of mp4 files")
    p.add_argument("--test", required=True, help="test (reconstructed / generated) video file, or a folder of mp4 files")
    p.add_argument("--metrics", default=None, help="comma-separated metric names (default: all registered)")
    p.add_argument("--max-frames", type=int, default=None, help="compare at most this many leading frames")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="eval.weights.NAME=PATH",
                   help="a local weights file or folder (i3d, lpips_alex, lpips_vgg, clip, dino, ...); repeatable")
    p.add_argument("--fvd-frames", type=int, default=16, choices=(16, 128), help="FVD clip length (StyleGAN-V: 16 or 128)")
    p.add_argument("--fvd-min-samples", type=int, default=None,
                   help="refuse FVD below this many videos per set (default 256; small-N FVD is biased upward)")
    p.add_argument("--device", default=None, help="torch device for every metric (default: cuda when present, else cpu)")
    p.add_argument("--json", action="store_true", help="print the full results as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.max_frames is not None and args.max_frames < 1:
        raise UserError(f"--max-frames must be at least 1, got {args.max_frames}.")
    if args.fvd_min_samples is not None and args.fvd_min_samples < 2:  # a covariance needs two videos
        raise UserError(f"--fvd-min-samples must be at least 2 (FVD compares covariances), got {args.fvd_min_samples}.")
    args.device = _device(args.device)
    ref, test = Path(args.ref), Path(args.test)  # `| head` closing the pipe early is ablations.cli.main's to handle
    if ref.is_dir() or test.is_dir():
        if not (ref.is_dir() and test.is_dir()):
            raise UserError(f"--ref and --test must both be files or both be folders; {ref} is "
                            f"{'a folder' if ref.is_dir() else 'not a folder'} and {test} is "
                            f"{'a folder' if test.is_dir() else 'not a folder'}.")
        return _run_folders(args, ref, test)
    return _run_pair(args)


def _device(name: str | None) -> str:
    """--device, or CUDA when present (the stages' `pick_device`): every metric (I3D, LPIPS, CLIP) then runs there."""
    import torch

    from ablations.stages.common import pick_device

    if name is None:
        return str(pick_device())
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device {name!r} is not a torch device; use cpu, cuda or cuda:N.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name} asks for CUDA, which this machine does not have; leave --device out.")
    return name


def parse_weights(overrides: list[str]) -> Any:
    """`eval.weights.NAME=PATH` strings -> resolved `Weights` (with $LTXLAB_WEIGHTS); a bad one is a UserError."""
    from evaluation.weights import WEIGHT_FILES, check_formats, resolve_weights

    given: dict[str, str] = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        name = key.strip().removeprefix(WEIGHTS_PREFIX)
        if not sep or not key.strip().startswith(WEIGHTS_PREFIX) or name not in WEIGHT_FILES or not value:
            raise UserError(f"--set {item!r}: `ltxlab metrics` takes eval.weights.NAME=PATH with NAME one of "
                            f"{', '.join(WEIGHT_FILES)}.")
        given[name] = value
    weights = resolve_weights(given)
    check_formats(weights)  # a file in the wrong format is one sentence before any video is decoded
    return weights


# ------------------------------------------------------------------ two files


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


def _run_pair(args: argparse.Namespace) -> int:
    from evaluation.metrics import METRICS, evaluate_pair, resolve_names
    from evaluation.weights import weights_record

    names = resolve_names(args.metrics.split(",")) if args.metrics else None  # unknown names fail before decoding
    weights = parse_weights(args.overrides)
    ref, test, info = load_pair(args.ref, args.test, args.max_frames)
    results = evaluate_pair(ref, test, names, device=args.device, weights=weights)
    if args.json:
        info["metrics"] = {
            name: {**r.to_dict(), "higher_is_better": METRICS.get(name).higher_is_better, "unit": METRICS.get(name).unit}
            for name, r in results.items()
        }
        info["weights"] = weights_record(weights, [name for name, r in results.items() if r.value is not None])
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


# ------------------------------------------------------------------ two folders


def _run_folders(args: argparse.Namespace, ref_dir: Path, test_dir: Path) -> int:
    from evaluation.suite import evaluate_folders, selected_metrics

    wanted = selected_metrics(args.metrics.split(",") if args.metrics else None)  # unknown names fail first
    if args.max_frames is not None and args.max_frames < args.fvd_frames and {"fvd", "rfvd"} & set(wanted):
        raise UserError(f"--max-frames {args.max_frames} is below --fvd-frames {args.fvd_frames}, so FVD would "
                        "see no video; raise --max-frames or leave fvd and rfvd out of --metrics.")
    weights = parse_weights(args.overrides)
    report = evaluate_folders(ref_dir, test_dir, wanted, weights, max_frames=args.max_frames,
                              fvd_frames=args.fvd_frames, fvd_min_samples=args.fvd_min_samples, device=args.device)
    if args.json:
        print(json.dumps(_finite(report), indent=2))
    else:
        print(_folder_table(report))
    return 0


def _finite(value: Any) -> Any:
    """JSON has no infinity: open-ended value ranges are written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _folder_table(report: dict[str, Any]) -> str:
    lines = [f"reference  {report['reference']}  ({report['reference_videos']} videos)",
             f"test       {report['test']}  ({report['test_videos']} videos, {len(report['pairs'])} paired by name, "
             f"{report['captioned']} captioned)"]
    lines += [f"note: {note}" for note in report["notes"]]
    lines.append("")
    metrics = report["metrics"]
    width = max(len("metric"), *(len(name) for name in metrics))
    lines.append(f"{'metric':<{width}}  {'kind':<12}  {'value':>10}  {'n':>5}  {'unit':<4}  {'better':<6}  version")
    for name, m in metrics.items():
        better = "higher" if m["higher_is_better"] else "lower"
        head = f"{name:<{width}}  {m['kind']:<12}"
        tail = f"{m['unit']:<4}  {better:<6}  {m['version']}"
        if m["value"] is None:
            lines.append(f"{head}  {'n/a':>10}  {m['n']:>5}  {tail}  (n/a: {m['not_applicable']})")
        else:
            lines.append(f"{head}  {_number(m['value']):>10}  {m['n']:>5}  {tail}")
    return "\n".join(lines)


def _number(value: float) -> str:
    """4 decimals, or 3 significant digits in e-notation for values too small for that (FVD on near-equal sets)."""
    return f"{value:.4f}" if value == 0 or abs(value) >= 0.01 else f"{value:.3e}"
