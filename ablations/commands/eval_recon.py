"""`ltxlab eval-recon`: score a trained VAE's reconstructions of held-out clips."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ablations.commands.train_vae import FRAMES, RESOLUTION, add_data_args, data_spec_from_args


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("eval-recon", help="score a trained VAE on held-out clips")
    p.add_argument("--checkpoint", type=Path, required=True, help="folder written by train-vae (or its vae.safetensors)")
    p.add_argument("--split", default="heldout", choices=["heldout", "train"])
    p.add_argument("--metrics", default=None, help="comma-separated metric names (default: all)")
    p.add_argument("--samples", type=Path, default=None, help="write a few reconstructions as mp4 here")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    add_data_args(p, shape_default=f"the shape the VAE was trained on, else {FRAMES} and {RESOLUTION}")
    p.set_defaults(func=run)


def _trained_shape(checkpoint: Path) -> tuple[int, str, str] | None:
    """(frames, 'HxW', where it was read) of the clips the VAE at `checkpoint` was trained on, or None.

    From its header (`train-vae` records the data there), else from the run_config.json beside it,
    but only while that file's configs are the header's: train-vae writes it when a run starts, so
    after a run that failed it describes that run, not the weights.
    """
    from ablations import artifacts

    file = artifacts.artifact_file(checkpoint, "vae")
    meta = artifacts.read_meta(file, "vae")
    data, where = meta.get("data"), f"the header of {file}"
    if not isinstance(data, dict):
        data, where = _run_config_data(file.parent / "run_config.json", meta), str(file.parent / "run_config.json")
    try:
        return int(data["frames"]), f"{int(data['height'])}x{int(data['width'])}", where
    except (TypeError, KeyError, ValueError):
        return None


def _run_config_data(saved: Path, meta: dict[str, Any]) -> dict[str, Any] | None:
    """run_config.json's `vae_data`, when that file is readable and its vae, loss and vae_train are the header's."""
    try:
        run = json.loads(saved.read_text())
    except (OSError, ValueError):
        return None
    same = isinstance(run, dict) and all(run.get(a) == meta.get(b) for a, b in
                                         (("vae", "config"), ("loss", "loss"), ("vae_train", "train")))
    return run.get("vae_data") if same else None


def _pick_shape(args: argparse.Namespace) -> None:
    """Fill --frames/--resolution left unset with the VAE's training shape (else the defaults), in one line."""
    if args.frames is not None and args.resolution is not None:
        return
    frames, resolution, where = _trained_shape(args.checkpoint) or (FRAMES, RESOLUTION, None)
    filled = []
    if args.frames is None:
        args.frames = frames
        filled.append(f"--frames {frames}")
    if args.resolution is None:
        args.resolution = resolution
        filled.append(f"--resolution {resolution}")
    source = (f"the VAE's training clip shape (from {where})" if where else
              "the default (the VAE records no training clip shape)")
    print(f"eval-recon: {' and '.join(filled)}, {source}; pass the flags to score another shape.", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from ablations.stages.eval_recon import BASELINE, eval_recon
    from ablations.stages.train_vae import load_vae
    from clips.dataset import open_clips

    vae = load_vae(args.checkpoint)
    _pick_shape(args)
    spec = data_spec_from_args(args, args.seed, clips_per_video=args.clips_per_video)
    clips = open_clips(spec, args.split)  # a curated dataset decodes each clip as it is scored
    names = args.metrics.split(",") if args.metrics else None
    rows, summary = eval_recon(vae, clips, metric_names=names, samples_dir=args.samples)
    if args.json:
        print(json.dumps({"clips": len(clips), "summary": summary, "rows": rows}, indent=2))
        return 0
    print(f"eval-recon: {len(clips)} {args.split} clips")
    for key, value in summary.items():
        if not key.startswith(BASELINE):
            base = summary.get(f"{BASELINE}.{key}")
            extra = f"   (mean-colour baseline {base:.4f})" if base is not None else ""
            print(f"  {key:<16} {value:.4f}{extra}")
    return 0
