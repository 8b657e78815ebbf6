"""`aa-vae`: A/A: one config, seeds 0-2 vs 1000-1002; every effect it reports is noise by construction.

The default tiny `ltx` VAE, trained for 150 steps on the bundled real corpus and scored on
its held-out clips, runs on seeds 0, 1, 2 (replicate "a") and again on 1000, 1001, 1002
(replicate "b", `Sweep.replicate_baseline`). Nothing differs between the two but the seeds,
so the report's replicate effect, its interval and its p-value calibrate the statistics:
an interval that excludes zero far more often than its nominal rate says the units of
replication are wrong. The held-out clips come from only three source videos (bigbuckbunny,
bikes, carphone), so the source-level resampling has three units.

Wall time: `ltxlab sweep aa-vae --results /tmp/aa` took 3 min 10 s on a 2-core CPU machine
(sweep 184 s: six VAE trainings, six scorings of 24 held-out clips, one shared cost stage).
At 150 steps the VAE is about 1 dB PSNR above the mean-colour baseline (13.5 dB) and near it
on SSIM: the A/A measures the seed noise of a briefly trained VAE (vae-core trains 300
steps, demo 400).
"""

from __future__ import annotations

import dataclasses

from ablations.configs import default_run_config
from ablations.recipes import RECIPES, Sweep


@RECIPES.register("aa-vae")
def aa_vae(name: str = "aa-vae") -> Sweep:
    base = default_run_config("ltx", "tiny")
    base = dataclasses.replace(base, vae_train=dataclasses.replace(base.vae_train, steps=150))
    return Sweep(
        name=name, recipe="aa-vae",
        description="A/A calibration: the tiny ltx VAE on seeds 0-2 and 1000-1002; any effect is noise.",
        base=base,
        seeds=(0, 1, 2),
        replicate_baseline=True,
        stages=("eval_recon", "cost"),
        headline_metrics=("psnr", "ssim"),
    )
