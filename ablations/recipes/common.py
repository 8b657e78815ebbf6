"""Shared pieces of the built-in recipes: budgets that fit the machine, and `--smoke`."""

from __future__ import annotations

import dataclasses
from typing import Any

from ablations.configs import RunConfig, default_run_config
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


# ---------------------------------------------------------------- the text-alignment scale
#
# The scale is chosen so the oracle can read the scenes at all. Its colour, shape and
# direction come from a 6-8 px shape in a 32 px frame; the tiny presets' VAEs (1:192 ltx,
# 1:48 conventional) blur that shape away, and the oracle read only 1-4% of colours on
# their reconstructions of held-out scenes: no DiT decoded through them can score above
# chance, whatever its text conditioning. The recipes that score alignment
# (text-conditioning, rope) pair the DiT with `ALIGNMENT_VAE` (the ltx layout stopped
# after its 4x4 input patchify and one 2x temporal stride: 16 channels, 1:6), trained on
# the same synthetic scenes; on its reconstructions of 192 held-out scenes the oracle
# reads 67% [60, 73] of colours and 86% of directions after 1000 steps
# (`benchmarks/t2v_alignment.py --skip-dit`; its defaults are this config). A 2x2x1
# transformer patch makes 80 tokens per 9x32x32 clip, and the flow's shift line is
# re-anchored to that count (`ALIGNMENT_SHIFT_TOKENS`): the `tiny` anchors (12..48 tokens
# of 1:192 latents) would extrapolate to a shift of 3.0 and train almost only near t = 1,
# and the model then draws the photo without the shape.

# Overrides of the tiny ltx VAE preset: the 4x4 patchify, one (2, 1, 1) stage, 16 channels.
ALIGNMENT_VAE: dict[str, Any] = dict(
    latent_channels=16,
    encoder_channels=(64, 64), encoder_layers=(1, 1, 1), encoder_strides=((2, 1, 1), (1, 1, 1)),
    decoder_channels=(64, 64), decoder_layers=(1, 1, 1), decoder_strides=((2, 1, 1), (1, 1, 1)),
    decoder_upsample_factor=1,
)
ALIGNMENT_SHIFT_TOKENS = (80, 320)  # shift 0.95 at one 9x32x32 clip (80 tokens), 2.05 at 4x its pixels
ALIGNMENT_PATCH = "2x2x1"


def alignment_run_config(**sections: Any) -> RunConfig:
    """The text-alignment scale: 9x32x32 synthetic scenes for both models, the ALIGNMENT_VAE,
    a tiny DiT over 2x2x1 patches, 192 held-out prompts (Wilson CIs of about +-7 points)."""
    from clips.dataset import DataSpec
    from models.dit import dit_config, vae_pairing
    from models.flow import flow_config
    from models.vae import vae_config

    base = default_run_config("ltx", "tiny")
    vae = vae_config("ltx", "tiny", **ALIGNMENT_VAE)
    scenes = dict(source="synthetic", frames=9, height=32, width=32)
    r = dataclasses.replace
    cfg = r(
        base,
        vae_data=DataSpec(**scenes, num_scenes=512, num_heldout_scenes=32),
        vae=vae,
        vae_train=r(base.vae_train, steps=1000, batch_size=8, lr=1e-3, checkpoint_every=250),
        dit_data=DataSpec(**scenes, num_scenes=1024, num_heldout_scenes=192),
        dit=dit_config("ltx", "tiny", patch=ALIGNMENT_PATCH, **vae_pairing(vae)),
        flow=flow_config("tiny", shift_min_tokens=ALIGNMENT_SHIFT_TOKENS[0], shift_max_tokens=ALIGNMENT_SHIFT_TOKENS[1]),
        dit_train=r(base.dit_train, steps=4000, batch_size=64, checkpoint_every=250),
        eval=r(base.eval, heldout_prompts=192),
    )
    return r(cfg, **sections)
