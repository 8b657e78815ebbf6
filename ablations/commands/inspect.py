"""`ltxlab inspect vae|dit`: shapes, compression, parameters and FLOPs on the meta device.

With `--init PATH` it loads an LTX-Video checkpoint (single file or diffusers folder) into
the model, as `--set vae.init=PATH` / `dit.init=PATH` would, and prints what was loaded:
the container and key layout, tensors, parameters, dtypes, the files' sha256, and which
preset the weights fit. A diffusers folder brings its config; a single file is tried
against `--size` and then the release presets.
"""

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
    p.add_argument("--size", default="full", help="tiny, small or full (ltx VAE also 0.9.0, 0.9.1, 0.9.5)")
    p.add_argument("--init", default=None, metavar="PATH",
                   help="load this LTX-Video checkpoint (single .safetensors or diffusers folder) and report it")
    p.add_argument("--shape", default="121x512x768", help="FRAMESxHEIGHTxWIDTH of the pixel video")
    p.add_argument("--fps", type=float, default=24.0, help="frame rate (RoPE works in seconds)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def _candidates(args: argparse.Namespace) -> list[tuple[str, object]]:
    """(label, config) to try a checkpoint against: its own diffusers config, else --size, then the releases."""
    import dataclasses

    from models import weights

    source = weights.locate(args.init, args.component)
    if args.component == "vae":
        from models.vae import vae_config
        from models.vae.convert import config_from_diffusers
        from models.vae.ltx import RELEASES

        if source.config is not None:
            return [("its config.json", dataclasses.replace(config_from_diffusers(source.config), init=args.init))]
        sizes = [args.size] + [r for r in RELEASES if r != args.size and args.preset == "ltx"]
        return [(f"{args.preset} {size}", vae_config(args.preset, size, init=args.init)) for size in sizes]
    from models.dit import dit_config
    from models.dit.convert import config_from_diffusers

    base = dit_config(args.preset, args.size)
    if source.config is not None:
        theirs = config_from_diffusers(source.config, vae_temporal_compression=base.vae_temporal_compression,
                                       vae_spatial_compression=base.vae_spatial_compression)
        return [("its config.json", dataclasses.replace(theirs, init=args.init))]
    return [(f"{args.preset} {args.size}", dataclasses.replace(base, init=args.init))]


def loaded_info(args: argparse.Namespace) -> tuple[object, dict]:
    """Load `args.init` into the first candidate config it fits; (config, what was loaded)."""
    from models import weights

    first_error = None
    for label, cfg in _candidates(args):
        try:
            weights.check(cfg, args.component)
        except weights.WeightsError as exc:
            first_error = first_error or exc
            continue
        _, report = weights.load(cfg, args.component, dtype=None)  # the file's own dtypes
        info = {"loaded": report.path, "fits": label, **{k: v for k, v in report.as_dict().items() if k != "path"}}
        info["sha256"] = weights.file_sha256(report.files)
        return cfg, info
    raise first_error  # type: ignore[misc]


def run(args: argparse.Namespace) -> int:
    frames, height, width = parse_shape(args.shape)
    loaded: dict = {}
    if args.component == "vae":
        from models.vae import describe_vae, vae_config

        cfg = vae_config(args.preset, args.size)
        if args.init:
            cfg, loaded = loaded_info(args)
        info = describe_vae(cfg, frames, height, width)
    else:
        from models.dit import describe_dit, dit_config

        cfg = dit_config(args.preset, args.size)
        if args.init:
            cfg, loaded = loaded_info(args)
        info = describe_dit(cfg, frames, height, width, fps=args.fps)
    info = {**loaded, **info}
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        width_ = max(len(k) for k in info)
        for key, value in info.items():
            shown = f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else value
            if isinstance(value, (list, tuple)) and key in ("files", "dtypes"):
                shown = ", ".join(map(str, value))
            print(f"{key:<{width_}}  {shown}")
    return 0
