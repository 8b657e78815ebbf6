"""A tiny ltx VAE + DiT trained for two steps each through the real stages (test_generate, test_speed_stage)."""

from __future__ import annotations

from pathlib import Path

import torch

from ablations.stages.encode_latents import encode_latents
from ablations.stages.train_dit import DiTTrainConfig, train_dit
from ablations.stages.train_vae import VAETrainConfig, train_vae
from clips.dataset import DataSpec, load_clips
from clips.io import to_model
from models.dit import dit_config
from models.flow import flow_config
from models.losses.base import VAELossConfig
from models.text import TextEncoderConfig
from models.vae import vae_config

SPEC = DataSpec(source="synthetic", frames=9, height=32, width=32, num_scenes=4, num_heldout_scenes=1, seed=5)


def tiny_pair(tmp_path_factory) -> tuple[Path, Path]:  # type: ignore[no-untyped-def]
    """`train_tiny_pair` once per test session (both test modules read the same checkpoints)."""
    root = tmp_path_factory.getbasetemp() / "tiny-pair"
    if not (root / "dit" / "dit.safetensors").is_file():
        train_tiny_pair(root)
    return root / "vae", root / "dit"


def train_tiny_pair(root: Path) -> tuple[Path, Path]:
    """(vae folder, dit folder) under `root`: real checkpoints, not trained to any quality."""
    torch.set_num_threads(1)
    videos = torch.stack([to_model(c.frames) for c in load_clips(SPEC, "train")[:2]])
    train_vae(vae_config("ltx", "tiny"), VAELossConfig(), VAETrainConfig(steps=2, batch_size=2, warmup_steps=1),
              videos, root / "vae", progress=False)
    encode_latents(root / "vae", SPEC, root / "latents", text_cfg=TextEncoderConfig(max_length=16))
    train_dit(dit_config("ltx", "tiny"), flow_config("tiny"), TextEncoderConfig(max_length=16),
              DiTTrainConfig(steps=2, batch_size=2, warmup_steps=1), root / "latents", root / "dit", progress=False)
    return root / "vae", root / "dit"
