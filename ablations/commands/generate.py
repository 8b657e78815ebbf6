"""`ltxlab generate`: one video at any size from a trained DiT + VAE, with a timing breakdown.

    ltxlab generate --dit CKPT --vae CKPT --prompt "..." --shape 121x512x768 --steps 20 \
        [--cfg 3] [--image first.png] [--out out.mp4] [--compile] [--device cuda] [--dtype bf16]

The pipeline is `ablations.stages.speed.timed_generate` (text encoding, the Euler sampler
with CFG as one batch-2 forward, the denoising VAE decode, optionally in temporal chunks);
this file checks the inputs first (files, shape against the VAE's compression, image),
then loads, runs and prints text / each DiT step / decode times and the peak memory.
"""

from __future__ import annotations

import argparse
from pathlib import Path

DTYPES = {"bf16": "bfloat16", "fp32": "float32", "fp16": "float16"}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("generate", help="generate one video at any size from a DiT + VAE, timing every phase")
    p.add_argument("--dit", type=Path, required=True, help="train-dit's --out folder or its dit.safetensors")
    p.add_argument("--vae", type=Path, default=None, help="train-vae's --out folder or its vae.safetensors (default: the one the DiT records)")
    p.add_argument("--prompt", required=True, help="the caption")
    p.add_argument("--shape", default=None, help="FRAMESxHEIGHTxWIDTH, e.g. 121x512x768 (default: the DiT's training shape)")
    p.add_argument("--steps", type=int, default=20, help="Euler sampling steps")
    p.add_argument("--cfg", type=float, default=3.0, help="classifier-free guidance scale (1 = off)")
    p.add_argument("--image", type=Path, default=None, help="first frame (png/jpg) for image-to-video; resized to --shape")
    p.add_argument("--out", type=Path, default=Path("out.mp4"), help="output mp4 (H.264 at the DiT's fps)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="cuda, cuda:1 or cpu (default: cuda when present)")
    p.add_argument("--dtype", choices=sorted(DTYPES), default=None, help="DiT and decoder dtype (default: bf16 on CUDA, fp32 on CPU)")
    p.add_argument("--compile", action="store_true", help="torch.compile each DiT block")
    p.add_argument("--decode-chunk", type=int, default=0,
                   help="decode this many latent frames at a time (0: all at once); bounds the decode's memory")
    p.add_argument("--decode-context", type=int, default=None,
                   help="latent frames of overlap per chunk (default: the decoder's receptive radius, exact)")
    p.set_defaults(func=run)


def _check(args: argparse.Namespace) -> None:
    """One sentence per bad input, before anything is loaded."""
    from ablations.cli import UserError
    from ablations.stages.speed import parse_shape

    from ablations.artifacts import FILES, artifact_file, artifact_path

    for flag, path, component in (("--dit", args.dit, "dit"), ("--vae", args.vae, "vae")):
        if path is None:
            continue
        try:
            artifact_file(path, component)
        except FileNotFoundError:
            raise UserError(f"{flag} {path}: no checkpoint file {artifact_path(path, component)}; pass "
                            f"train-{component}'s --out folder or its {FILES[component]}.") from None
    if args.image is not None and not args.image.is_file():
        raise UserError(f"--image {args.image} does not exist; pass the path of a png or jpg first frame.")
    if args.steps < 1:
        raise UserError(f"--steps must be at least 1, got {args.steps}.")
    if args.cfg < 1.0:
        raise UserError(f"--cfg must be at least 1 (1 = no guidance), got {args.cfg:g}.")
    if args.decode_chunk < 0 or (args.decode_context is not None and args.decode_context < 0):
        raise UserError("--decode-chunk and --decode-context must be 0 or more.")
    if args.shape is not None:
        parse_shape(args.shape)
    if args.device is not None:
        import torch

        try:
            device = torch.device(args.device)
        except RuntimeError:
            raise UserError(f"--device {args.device!r} is not a device; use cpu or cuda[:N].") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise UserError(f"--device {args.device}: this machine has no CUDA GPU; use --device cpu.")


def _check_shape(args: argparse.Namespace) -> tuple[tuple[int, int, int], Path]:
    """(shape, VAE folder or file): the shape checked against the VAE's compression from the configs alone."""
    from ablations.cli import UserError
    from ablations.stages.speed import check_shape, parse_shape
    from models.config import from_dict
    from models.vae import VAES

    from ablations import artifacts

    dit_blob = artifacts.read_meta(args.dit, "dit")  # the headers only: no weights are read here
    vae_dir = args.vae or Path(dit_blob["vae_dir"])
    try:
        vae_file = artifacts.artifact_file(vae_dir, "vae")
    except FileNotFoundError:
        raise UserError(f"the VAE {args.dit} records, {vae_dir}, has no {artifacts.FILES['vae']}; pass --vae.") from None
    vae_blob = artifacts.read_meta(vae_file, "vae")
    if vae_blob["config"].get("latent_channels") != dit_blob["config"].get("in_channels"):
        raise UserError(f"the VAE {vae_file} makes {vae_blob['config'].get('latent_channels')}-channel latents but the "
                        f"DiT takes {dit_blob['config'].get('in_channels')}; pass the --vae this DiT was trained on.")
    shape = parse_shape(args.shape) if args.shape else tuple(dit_blob["video_shape"])
    check_shape(shape, from_dict(VAES.get(vae_blob["kind"]), vae_blob["config"]))
    return shape, vae_dir


def _first_frame(path: Path, height: int, width: int):  # type: ignore[no-untyped-def]
    import numpy as np
    from PIL import Image

    from ablations.stages.sample import read_png

    image = read_png(path)
    if image.shape[:2] != (height, width):
        image = np.array(Image.fromarray(image).resize((width, height), Image.BICUBIC))  # writable
    return image


def run(args: argparse.Namespace) -> int:
    _check(args)
    shape, vae_dir = _check_shape(args)  # before any weights or the text encoder load
    import torch

    from ablations.stages.speed import prepare, timed_generate
    from ablations.stages.train_dit import load_dit
    from ablations.stages.train_vae import load_vae
    from clips.io import write_video

    device = torch.device(args.device) if args.device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = getattr(torch, DTYPES[args.dtype or ("bf16" if device.type == "cuda" else "fp32")])
    dit, vae = load_dit(args.dit, torch.device("cpu")), load_vae(vae_dir, torch.device("cpu"))
    image = _first_frame(args.image, *shape[1:]) if args.image else None
    prepare(dit, vae, device, dtype, compile_blocks=args.compile)
    encoder = dit.text.build()
    video, timing = timed_generate(dit, vae, encoder, args.prompt, shape, steps=args.steps, guidance_scale=args.cfg,
                                   seed=args.seed, image=image, decode_chunk=args.decode_chunk,
                                   decode_context=args.decode_context)
    write_video(args.out, video, dit.fps)
    task = "image-to-video" if image is not None else "text-to-video"
    print(f"generate: wrote {args.out} ({task}, {video.shape[0]} frames of {video.shape[1]}x{video.shape[2]} "
          f"at {dit.fps:g} fps, {args.steps} steps, cfg {args.cfg:g})")
    for line in timing.lines():
        print(f"  {line}")
    from ablations.executor import hardware
    from ablations.provenance import machine_label

    print(f"  measured on     {machine_label(hardware())}")  # what the times depend on beyond the code
    return 0
