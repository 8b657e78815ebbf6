"""`tiny-pair`: the smallest sweep with a shared VAE and two DiT variants (tests, CI smoke)."""

from __future__ import annotations

from ablations.configs import default_run_config
from ablations.recipes import RECIPES, Sweep
from ablations.recipes.common import smoke


@RECIPES.register("tiny-pair")
def tiny_pair(name: str = "tiny-pair") -> Sweep:
    return Sweep(
        name=name, recipe="tiny-pair",
        description="Two DiT variants over one VAE, a few steps each: exercises every stage in seconds.",
        base=smoke(default_run_config("ltx", "tiny")),
        axes={"dit.text_conditioning": ["cross_attention", "mmdit"]},
        stages=("eval_recon", "eval_gen", "cost"),
        headline_metrics=("psnr", "t2v.oracle_color", "i2v.first_frame_psnr"),
    )
