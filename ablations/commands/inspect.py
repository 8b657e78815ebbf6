"""`ltxlab inspect vae|dit`: shapes, compression, parameters and FLOPs on the meta device."""

from __future__ import annotations

import argparse
import json

from ablations.cli import UserError


def parse_shape(text: str) -> tuple[int, int, int]:
    """'121x512x768' -> (frames, height, width), checking LTX-Video's shape rules."""
    try:
        frames, height, width = (int(p) for p in text.lower().split("x"))
    except ValueError:
        raise UserError(f"--shape must look like FRAMESxHEIGHTxWIDTH (e.g. 121x512x768), not '{text}'.") from None
    if frames < 1 or (frames - 1) % 8:
        raise UserError(f"--shape has {frames} frames; use 1 + 8k frames (e.g. 17, 121).")
    if height % 32 or width % 32 or height <= 0 or width <= 0:
        raise UserError(f"--shape has {height}x{width}; height and width must be positive multiples of 32.")
    return frames, height, width


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("inspect", help="describe a VAE or DiT config without allocating weights")
    p.add_argument("component", choices=["vae", "dit"], help="which model family")
    p.add_argument("--preset", default="ltx", help="VAE kind: ltx or conventional (the DiT pairs with it)")
    p.add_argument("--size", default="full", help="tiny, small or full")
    p.add_argument("--shape", default="121x512x768", help="FRAMESxHEIGHTxWIDTH of the pixel video")
    p.add_argument("--fps", type=float, default=24.0, help="frame rate (RoPE works in seconds)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    frames, height, width = parse_shape(args.shape)
    if args.component == "vae":
        from models.vae import describe_vae, vae_config

        info = describe_vae(vae_config(args.preset, args.size), frames, height, width)
    else:
        from models.dit import describe_dit, dit_config

        info = describe_dit(dit_config(args.preset, args.size), frames, height, width, fps=args.fps)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        width_ = max(len(k) for k in info)
        for key, value in info.items():
            shown = f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else value
            print(f"{key:<{width_}}  {shown}")
    return 0
