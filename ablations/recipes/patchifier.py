"""`patchifier`: patchifier placement judged on the (VAE + transformer) pair, at equal tokens.

LTX-Video (arXiv 2501.00103, §2.1, "Shifting the patchifying operation") moves the
patchifier from the transformer input to the VAE input and claims the pair gives better
videos at the same token count. `vae-core` scores only the VAE's reconstructions; this
recipe trains the DiT on each VAE's latents too and scores what it generates. The two arms
(DESIGN.md, "Patchifier placement"), 8192 pixels per token each:

- `vae_input`: the `ltx` VAE (4x4 input patchify, 32x32x8 -> 128 channels, 1:192) + a 1x1x1
  transformer patch;
- `transformer_input`: the `conventional` VAE (8x8x4 -> 16 channels, 1:48) + a 4x4x2 patch.

At the run shape (17x64x64) both DiTs see 12 tokens per clip (2 at `--smoke`'s 9x32x32);
`tests/test_patchifier.py` checks it. Each arm's DiT fields come from `vae_pairing` of its
own VAE, so the runner's `sync_pairing` finds nothing to change.

Scored on: reconstruction of held-out real clips (`eval_recon`: PSNR, SSIM, flicker, the
DWT bands); generation from held-out synthetic prompts (`eval_gen`: i2v first-frame PSNR,
temporal flicker and its excess over the reference scene, the oracle readings); and each
pair's cost (`cost`: FLOPs per DiT forward + VAE decode at the run shape and at 121x512x768,
measured generation latency, the H100 estimate). Three seeds, because one seed is never a
verdict here. The oracle's colour, shape and direction are recorded but are not headlines:
it reads the 6-8 px shape, which both tiny VAEs blur away (`recipes/common.py`: the oracle
reads 1-4% of colours on their reconstructions), so neither arm can score above chance
whatever its DiT does. The generation-level comparison at this scale therefore rests on
first-frame fidelity and temporal stability; text alignment needs `small` models on a GPU
(`--set` the sizes, or a recipe at the alignment scale with two equal-token pairs).

Wall time: `ltxlab sweep patchifier --smoke` (6 runs, 38 stages) took 73 s on 2 CPU cores
shared with other work.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ablations.configs import RunConfig, default_run_config
from ablations.graph import Level
from ablations.recipes import RECIPES, Sweep

# axis label -> the VAE kind on that side of the comparison
PLACEMENTS: dict[str, str] = {"vae_input": "ltx", "transformer_input": "conventional"}


def pair_settings(kind: str, size: str = "tiny") -> dict[str, Any]:
    """The dotted-path settings of one arm: the VAE kind and the DiT fields paired with that
    VAE (latent channels in, compression for RoPE, and the kind's transformer patch)."""
    from models.dit import dit_config, vae_pairing
    from models.vae import vae_config

    pairing = vae_pairing(vae_config(kind, size))
    return {"vae.kind": kind, "dit.patch": dit_config(kind, size).patch,
            **{f"dit.{name}": value for name, value in pairing.items()}}


def patchifier_base() -> RunConfig:
    """The tiny run at a budget that fits 2 x 3 runs on a CPU: vae-core's 300 VAE steps,
    the demo's DiT budget (600 steps of 16 over 96 scenes), 12 held-out prompts."""
    r = dataclasses.replace
    base = default_run_config("ltx", "tiny")
    return r(
        base,
        vae_train=r(base.vae_train, steps=300),
        dit_data=r(base.dit_data, num_scenes=96, num_heldout_scenes=12),
        dit_train=r(base.dit_train, steps=600, batch_size=16, checkpoint_every=200),
        sample=r(base.sample, steps=12, batch_size=8),
        eval=r(base.eval, heldout_prompts=12, recon_samples=2),
    )


@RECIPES.register("patchifier")
def patchifier(name: str = "patchifier") -> Sweep:
    base = patchifier_base()
    levels = [Level(label, pair_settings(kind, base.vae.size)) for label, kind in PLACEMENTS.items()]
    return Sweep(
        name=name, recipe="patchifier",
        description="Patchify at the VAE input (ltx + 1x1x1) or the transformer input (conventional + 4x4x2), "
                    "equal tokens: reconstruction, generation and cost of each pair.",
        base=base,
        axes={"patchifier_placement": levels},
        seeds=(0, 1, 2),
        stages=("eval_recon", "eval_gen", "cost"),
        headline_metrics=("psnr", "ssim", "dwt_psnr_hhh", "i2v.first_frame_psnr", "t2v.temporal_flicker",
                          "t2v.flicker_excess"),
    )
