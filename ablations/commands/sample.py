"""`ltxlab sample`: one video from a trained DiT (the VAE is the one its dit.safetensors records)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ablations.commands.common import add_threads_arg, apply_threads, progress_lines


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("sample", help="text-to-video (or image-to-video with --image) from a trained DiT")
    p.add_argument("--checkpoint", type=Path, required=True, help="train-dit's --out folder (or its dit.safetensors)")
    p.add_argument("--prompt", required=True, help="the caption, e.g. 'a red circle moves left over a photo of grass'")
    p.add_argument("--image", type=Path, default=None, help="first frame (png/jpg) for image-to-video; resized to the model's size")
    p.add_argument("--out", type=Path, required=True, help="output mp4 (H.264 at the training fps)")
    p.add_argument("--steps", type=int, default=20, help="Euler sampling steps")
    p.add_argument("--guidance", type=float, default=3.0, help="classifier-free guidance scale (1 = off)")
    p.add_argument("--seed", type=int, default=0, help="the sampling noise")
    p.add_argument("--vae", type=Path, default=None, help="VAE folder (default: the one recorded in dit.safetensors)")
    add_threads_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ablations.cli import UserError
    from ablations.stages.common import pick_device
    from ablations.stages.sample import SampleConfig, generate, read_png
    from ablations.stages.train_dit import load_dit
    from ablations.stages.train_vae import load_vae
    from clips.io import write_video
    from models.config import check_ranges

    cfg = SampleConfig(steps=args.steps, guidance_scale=args.guidance, seed=args.seed)
    check_ranges(cfg, "sample")  # --steps, --guidance (NaN too) and --seed, before any model is loaded
    if args.image is not None and not args.image.exists():
        raise UserError(f"--image {args.image} does not exist; pass the path of a png or jpg first frame.")
    apply_threads(args)
    device = pick_device()
    dit = load_dit(args.checkpoint, device)
    vae_dir = args.vae or dit.vae_dir
    vae = load_vae(vae_dir, device)
    images = None
    if args.image is not None:
        image = read_png(args.image)
        height, width = dit.video_shape[1:]
        if image.shape[:2] != (height, width):
            import numpy as np
            from PIL import Image

            image = np.asarray(Image.fromarray(image).resize((width, height), Image.BICUBIC))
        images = [image]
    video = generate(vae, dit, [args.prompt], cfg, images=images, on_step=progress_lines("sample"))[0]  # (T, H, W, 3)
    write_video(args.out, video, dit.fps)
    task = "image-to-video" if images else "text-to-video"
    print(f"sample: wrote {args.out} ({task}, {video.shape[0]} frames of {video.shape[1]}x{video.shape[2]} at {dit.fps:g} fps)")
    return 0
