"""`ltxlab train-dit`: encode a data set with a trained VAE, then train a DiT on the latents.

Synthetic captioned scenes by default (so `ltxlab sample` can be checked by eye and the
oracle). The output folder holds `latents-<hash>/` (encode_latents, keyed by the VAE
folder, data spec and text encoder, so changing any of them re-encodes), `checkpoints/`,
`dit.safetensors` (records the VAE folder, so `ltxlab sample --checkpoint OUT` needs
nothing else), `curve.json` and `run_config.json`.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ablations.commands.common import (add_config_arg, add_threads_arg, apply_command_overrides, apply_threads,
                                       check_resumable, progress_lines, write_run_config)


@dataclass(frozen=True, kw_only=True)
class DiTRunConfig:
    dit: Any  # models.dit.DiTConfig: the transformer and its design switches
    flow: Any  # models.flow.FlowConfig: timestep sampling, CFG dropout, i2v probability, decode noise
    text: Any  # models.text.TextEncoderConfig: caption encoder (minilm offline by default)
    train: Any  # ablations.stages.train_dit.DiTTrainConfig: optimizer, EMA, steps
    data: Any  # clips.dataset.DataSpec: the clips encoded and trained on

    def to_json(self) -> str:
        from models.config import to_json

        return to_json(self)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train-dit", help="encode clips with a trained VAE and train a DiT on them")
    p.add_argument("--vae", type=Path, required=True, help="folder of a trained VAE (train-vae's --out)")
    p.add_argument("--out", type=Path, required=True, help="folder for latents, checkpoints/, dit.safetensors, curve.json")
    p.add_argument("--preset", default=None, help="VAE pairing of the DiT: ltx or conventional (default: the VAE's kind)")
    p.add_argument("--size", default="tiny", help="DiT size: tiny, small or full")
    p.add_argument("--steps", type=int, default=2000, help="optimizer steps")
    p.add_argument("--batch-size", type=int, default=32, help="latent clips per optimizer step")
    p.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate (after a linear warm-up)")
    p.add_argument("--seed", type=int, default=0, help="initialisation, timesteps, noise and batch order")
    p.add_argument("--data", default="synthetic", help="synthetic (captioned scenes), bundled, or a folder of mp4s")
    p.add_argument("--frames", type=int, default=17, help="frames per clip (1 + 8k)")
    p.add_argument("--resolution", default="64x64", help="HEIGHTxWIDTH per clip (multiples of 32)")
    p.add_argument("--num-scenes", type=int, default=256, help="synthetic training scenes")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set dit.text_conditioning=mmdit --set flow.caption_dropout=0.2")
    add_config_arg(p)
    add_threads_arg(p)
    p.set_defaults(func=run)


def _data_spec(args: argparse.Namespace):
    from ablations.commands.train_vae import data_spec_from_args

    return data_spec_from_args(args, args.seed, num_scenes=args.num_scenes)


def run(args: argparse.Namespace) -> int:
    from ablations.cli import UserError
    from ablations.stages.encode_latents import encode_latents
    from ablations.stages.train_dit import DiTTrainConfig, checkpoint_config, train_dit
    from models.config import check_ranges, content_hash
    from models.dit import dit_config
    from models.flow import flow_config
    from models.text import TextEncoderConfig

    train = DiTTrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed)
    check_ranges(train, "train")  # the flags are wrong whatever the VAE: say so before looking for it
    from ablations import artifacts

    try:
        artifacts.artifact_file(args.vae, "vae")  # an old vae.pt gets the sentence that converts it
    except FileNotFoundError:
        raise UserError(f"No trained VAE in {args.vae} (no {artifacts.FILES['vae']}); "
                        f"run `ltxlab train-vae --out {args.vae}` first.") from None
    vae_kind = args.preset or artifacts.read_meta(args.vae, "vae")["kind"]  # the header only
    run_cfg = DiTRunConfig(
        dit=dit_config(vae_kind, args.size),
        flow=flow_config(args.size),
        text=TextEncoderConfig(max_length=dit_config(vae_kind, args.size).max_text_tokens),
        train=train,
        data=_data_spec(args),
    )
    run_cfg = apply_command_overrides(run_cfg, args)  # --config FILE, then --set; all range-checked
    key = content_hash({"vae": str(args.vae.resolve()), "data": run_cfg.data, "text": run_cfg.text})
    latents_dir = args.out / f"latents-{key}"
    check_resumable(args.out, checkpoint_config(run_cfg.dit, run_cfg.flow, run_cfg.text, run_cfg.train, latents_dir),
                    run_cfg.train.steps)  # before encoding
    apply_threads(args)
    write_run_config(args.out, run_cfg)
    encoded = encode_latents(args.vae, run_cfg.data, latents_dir, text_cfg=run_cfg.text)
    print(f"train-dit: {encoded['clips']} clips -> latents {tuple(encoded['latent_shape'])} in {latents_dir}"
          f"{' (cached)' if encoded['cached'] else ''}")
    summary = train_dit(run_cfg.dit, run_cfg.flow, run_cfg.text, run_cfg.train, latents_dir, args.out,
                        on_step=progress_lines("train-dit"))
    print(json.dumps(summary, indent=2))
    if summary["finished"]:
        print(f"sample with: ltxlab sample --checkpoint {args.out} --prompt \"a red circle moves left over a photo of grass\" --out video.mp4")
    return 0
