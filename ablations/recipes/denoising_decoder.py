"""`denoising-decoder`: LTX-Video §2.1.2's decoder that performs the last denoising step.

Decoder timestep conditioning x noise injection, both trained with the shared diffusion
objective; scored on reconstruction of real clips and on decoding generated latents.
Noise injection is a per-stage pattern (`vae.decoder_inject_noise`); its levels are the
layouts "none" and "ltx_0.9.1" (every up-stage, not the mid-block).
"""

from __future__ import annotations

import dataclasses

from ablations.configs import default_run_config
from ablations.recipes import RECIPES, Sweep


@RECIPES.register("denoising-decoder")
def denoising_decoder(name: str = "denoising-decoder") -> Sweep:
    base = default_run_config("ltx", "tiny")
    base = dataclasses.replace(base, loss=dataclasses.replace(base.loss, diffusion=1.0))
    return Sweep(
        name=name, recipe="denoising-decoder",
        description="Does a timestep-conditioned, noise-injecting decoder reconstruct and decode better?",
        base=base,
        axes={"vae.decoder_timestep_conditioning": [False, True], "vae.decoder_inject_noise": ["none", "ltx_0.9.1"]},
        stages=("eval_recon", "eval_gen", "cost"),
        headline_metrics=("psnr", "ssim", "t2v.oracle_color", "i2v.first_frame_psnr", "t2v.temporal_flicker"),
    )
