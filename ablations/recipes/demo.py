"""`demo`: a small cut across the recipes that finishes inside `make demo`'s budget on a
2-core laptop and leaves text-to-video and image-to-video samples for three variants
(so the survey and the dashboard have something real to show).

One tiny `ltx` VAE is shared by three DiT variants: LTX-Video's cross-attention with
QK-norm, the same without QK-norm, and MM-DiT.
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
        vae_train=r(base.vae_train, steps=150, batch_size=4, checkpoint_every=50),
        dit_data=r(base.dit_data, num_scenes=96, num_heldout_scenes=12),
        dit_train=r(base.dit_train, steps=300, batch_size=16, checkpoint_every=100),
        sample=r(base.sample, steps=12, batch_size=8),
        eval=r(base.eval, heldout_prompts=6, recon_samples=2),
    )
    return Sweep(
        name=name, recipe="demo",
        description="Demo: cross-attention vs MM-DiT vs no QK-norm on one shared tiny ltx VAE.",
        base=base,
        variants=[{"dit.text_conditioning": "cross_attention", "dit.qk_norm": "rms_across_heads"},
                  {"dit.text_conditioning": "cross_attention", "dit.qk_norm": "none"},
                  {"dit.text_conditioning": "mmdit", "dit.qk_norm": "rms_across_heads"}],
        stages=("eval_recon", "eval_gen", "cost"),
        headline_metrics=("psnr", "ssim", "t2v.oracle_color", "i2v.first_frame_psnr", "t2v.temporal_flicker"),
    )
