"""`ltxlab convert-checkpoint`: an old pickle `vae.pt` / `dit.pt` to today's safetensors artifact.

    ltxlab convert-checkpoint OLD/vae.pt [OLD/dit.pt ...] [--out NEW.safetensors]

Each file (or a folder holding one) is read with `torch.load(weights_only=True)`, which
loads tensors and plain containers only, and written beside it as `vae.safetensors` /
`dit.safetensors` (`ablations.artifacts.convert`). The old file is left in place.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "convert-checkpoint", help="convert an old pickle vae.pt / dit.pt to vae.safetensors / dit.safetensors",
        description="Convert vae.pt / dit.pt files written by older ltxlab versions (torch pickles) into the "
                    "safetensors artifacts every command now reads. The old file is read with "
                    "torch.load(weights_only=True): tensors and plain data only, so a file holding anything "
                    "else is refused, never run. A DiT records its VAE's folder: convert that VAE too.")
    p.add_argument("old", type=Path, nargs="+", metavar="OLD", help="an old vae.pt or dit.pt, or the folder holding it")
    p.add_argument("--out", type=Path, default=None,
                   help="where to write (one OLD only; default: beside it, .pt replaced by .safetensors)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ablations.artifacts import NAMES, convert
    from ablations.cli import UserError

    if args.out is not None and len(args.old) > 1:
        raise UserError(f"--out names one file but {len(args.old)} checkpoints were given; convert them one at a time "
                        "or leave --out out.")
    for old in args.old:
        new, component = convert(old, args.out)
        print(f"convert-checkpoint: {old} -> {new} ({NAMES[component]})")
    return 0
