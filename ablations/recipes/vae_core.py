"""`vae-core`: the VAE design choices of LTX-Video §2.1.

Patchifier placement (ltx: patchify at the VAE input, 1:192 / conventional: 1:48 VAE with
the patchifier at the transformer input; equal tokens) x video-DWT loss (off / all eight
bands / the seven detail bands only, `loss.dwt_bands=detail`: LLL is ~62% of the
equal-weight loss and mostly repeats the pixel L1, see `models/losses/dwt.py`) x GAN
none / gan / rgan, plus uniform vs per-channel log-variance. Scored on held-out real clips:
reconstruction only. The `patchifier` recipe trains the DiT on both VAE kinds as well and
scores what the pairs generate.
"""

from __future__ import annotations

import dataclasses

from ablations.configs import default_run_config
from ablations.graph import Level
from ablations.recipes import RECIPES, Sweep
from ablations.recipes.common import GAN_LEVELS

DWT_LEVELS = (
    Level("none", {"loss.dwt": 0.0, "loss.dwt_bands": "equal"}),
    Level("all_bands", {"loss.dwt": 0.1, "loss.dwt_bands": "equal"}),
    Level("detail_bands", {"loss.dwt": 0.1, "loss.dwt_bands": "detail"}),
)


@RECIPES.register("vae-core")
def vae_core(name: str = "vae-core") -> Sweep:
    base = default_run_config("ltx", "tiny")
    base = dataclasses.replace(base, vae_train=dataclasses.replace(base.vae_train, steps=300))
    return Sweep(
        name=name, recipe="vae-core",
        description="Which VAE choices matter: patchifier placement, DWT loss (all or detail bands), (r)GAN, "
                    "log-variance.",
        base=base,
        axes={"vae.kind": ["ltx", "conventional"], "dwt": list(DWT_LEVELS), "gan": list(GAN_LEVELS),
              "vae.logvar": ["uniform", "per_channel"]},
        stages=("eval_recon", "cost"),
        headline_metrics=("psnr", "ssim", "flicker", "dwt_psnr_hhh"),
    )
