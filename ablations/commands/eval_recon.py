"""`ltxlab eval-recon`: score a trained VAE's reconstructions of held-out clips."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ablations.commands.train_vae import add_data_args, data_spec_from_args


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("eval-recon", help="score a trained VAE on held-out clips")
    p.add_argument("--checkpoint", type=Path, required=True, help="folder written by train-vae (or its vae.safetensors)")
    p.add_argument("--split", default="heldout", choices=["heldout", "train"])
    p.add_argument("--metrics", default=None, help="comma-separated metric names (default: all)")
    p.add_argument("--samples", type=Path, default=None, help="write a few reconstructions as mp4 here")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    add_data_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ablations.stages.eval_recon import BASELINE, eval_recon
    from ablations.stages.train_vae import load_vae
    from clips.dataset import open_clips

    vae = load_vae(args.checkpoint)
    spec = data_spec_from_args(args, args.seed, clips_per_video=args.clips_per_video)
    saved = args.checkpoint / "run_config.json" if args.checkpoint.is_dir() else None
    if saved is not None and saved.exists():  # evaluate at the clip shape the VAE was trained on
        import dataclasses

        data = json.loads(saved.read_text())["vae_data"]
        spec = dataclasses.replace(spec, frames=data["frames"], height=data["height"], width=data["width"])
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
