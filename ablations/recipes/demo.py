"""`demo`: a small cut across the recipes that finishes inside `make demo`'s budget on a
2-core laptop and leaves text-to-video and image-to-video samples for four variants (so
the survey and the dashboard have something real to show).

A 2x2 factorial: the video-DWT loss on the `ltx` VAE (off / on) x text conditioning
(cross-attention vs MM-DiT). Two VAEs train side by side, each shared by its two DiTs,
so both CPU slots stay busy. (The patchifier comparison lives in `vae-core`: the
`conventional` VAE works at 4x the spatial resolution and trains ~5x slower on a CPU,
too slow for the demo's budget.) Oracle alignment is not a headline here: the tiny ltx
VAE's reconstructions carry the photo but not the small moving shape, so its colour and
direction readings sit at or below chance whatever the DiT does (`ltxlab report demo
--metrics t2v.oracle_color` still shows them). The alignment scale the oracle can read
is `text-conditioning`'s (see `recipes/common.py`); it needs about 12 minutes per model.

Three seeds per variant, because one seed is never a verdict: with one trained model per
variant the variance between models is not estimable and the report refuses to call a
winner. The baseline (no DWT loss, cross-attention) also runs on three other seeds as an
A/A check (`replicate_baseline`): the report shows that identical configs come out "no
significant difference" and prints the noise floor beside every effect. Effects smaller
than their noise floor are listed as such; `ltxlab plan demo --effect psnr=0.1` says how
many seeds would resolve them.
"""

from __future__ import annotations

import dataclasses

from ablations.configs import default_run_config
from ablations.recipes import RECIPES, Sweep


@RECIPES.register("demo")
def demo(name: str = "demo") -> Sweep:
    r = dataclasses.replace
    base = default_run_config("ltx", "tiny")
    base = r(
        base,
        vae_data=r(base.vae_data, clips_per_video=6),
        vae_train=r(base.vae_train, steps=300, batch_size=4, checkpoint_every=100),
        loss=r(base.loss, dwt=0.0),
        dit_data=r(base.dit_data, num_scenes=96, num_heldout_scenes=12),
        dit_train=r(base.dit_train, steps=600, batch_size=16, checkpoint_every=200),
        sample=r(base.sample, steps=12, batch_size=8),
        eval=r(base.eval, heldout_prompts=8, recon_samples=2),
    )
    return Sweep(
        name=name, recipe="demo",
        description="Demo: DWT loss x text conditioning, 3 seeds, with an A/A replicate of the baseline.",
        base=base,
        axes={"loss.dwt": [0.0, 0.5], "dit.text_conditioning": ["cross_attention", "mmdit"]},
        seeds=(0, 1, 2),
        replicate_baseline=True,
        stages=("eval_recon", "eval_gen", "cost", "speed"),
        headline_metrics=("psnr", "ssim", "i2v.first_frame_psnr", "t2v.temporal_flicker"),
    )
