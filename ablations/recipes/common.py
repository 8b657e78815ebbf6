"""Shared pieces of the built-in recipes: budgets that fit the machine, and `--smoke`."""

from __future__ import annotations

import dataclasses
from typing import Any

from ablations.graph import Level

GAN_LEVELS = (
    Level("none", {"loss.gan": 0.0, "loss.rgan": 0.0}),
    Level("gan", {"loss.gan": 0.05, "loss.rgan": 0.0}),
    Level("rgan", {"loss.gan": 0.0, "loss.rgan": 0.05}),
)


def smoke(cfg: Any) -> Any:
    """The fastest run that still exercises every stage: a few steps, few clips, small samples."""
    r = dataclasses.replace
    return r(
        cfg,
        vae_data=r(cfg.vae_data, clips_per_video=1, frames=9, height=32, width=32),
        vae_train=r(cfg.vae_train, steps=3, batch_size=2, checkpoint_every=2, warmup_steps=1, stats_max_clips=4),
        dit_data=r(cfg.dit_data, num_scenes=4, num_heldout_scenes=2, frames=9, height=32, width=32),
        dit_train=r(cfg.dit_train, steps=3, batch_size=2, checkpoint_every=2, warmup_steps=1),
        sample=r(cfg.sample, steps=2, batch_size=2),
        eval=r(cfg.eval, heldout_prompts=2, recon_samples=1),
        cost=r(cfg.cost, latency_repeats=1),
    )
