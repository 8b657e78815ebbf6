"""`patchifier`: patchifier placement judged on the (VAE + transformer) pair, at equal tokens.

LTX-Video (arXiv 2501.00103, §2.1, "Shifting the patchifying operation") moves the
patchifier from the transformer input to the VAE input and claims the pair gives better
videos at the same token count. `vae-core` scores only the VAE's reconstructions; this
recipe trains the DiT on each VAE's latents too and scores what it generates. The two arms
(docs/design.md, "Configs and registries"), 8192 pixels per token each:

- `vae_input`: the `ltx` VAE (4x4 input patchify, 32x32x8 -> 128 channels, 1:192) + a 1x1x1
  transformer patch;
- `transformer_input`: the `conventional` VAE (8x8x4 -> 16 channels, 1:48) + a 4x4x2 patch.

At the run shape (17x64x64) both DiTs see 12 tokens per clip (2 at `--smoke`'s 9x32x32);
`tests/test_patchifier.py` checks it. Each arm's DiT fields come from `vae_pairing` of its
own VAE, so the runner's `sync_pairing` finds nothing to change.

Scored on: reconstruction of held-out real clips (`eval_recon`: PSNR, SSIM, flicker, the
DWT bands); generation from 12 held-out synthetic prompts (`eval_gen`: i2v first-frame PSNR,
temporal flicker and its excess over the reference scene, the oracle readings); and each
pair's cost (`cost`: FLOPs per DiT forward + VAE decode at the run shape and at 121x512x768,
measured generation latency, the H100 estimate). Three seeds, because one seed is never a
verdict here.

What the oracle can read. It finds the 6-8 px moving shape, which the tiny VAEs mostly blur
away (`recipes/common.py`). On their reconstructions of 96 held-out 17x64x64 scenes (the
scenes themselves read 100/99/100%), the ltx VAEs of the full run below let it read colour
9-10%, shape 28-30% and direction 21-29%: chance (1/6, 1/3, 1/4), so no DiT decoded through
them can score above chance. The conventional VAEs keep the motion: direction 71-92%, but
colour 14-24% and shape 33-38% (chance). So `t2v.oracle_direction` is the one alignment
reading with room above chance, and only on the `transformer_input` arm; it is a headline,
colour and shape are recorded but are not. Text alignment proper needs VAEs the oracle can
read through (`text-conditioning`'s alignment scale, or `small` models on a GPU).

Full run (`ltxlab sweep patchifier`, 2 CPU cores shared with other work): 6 runs, 38
stages, ~30 min from scratch. The conventional VAE dominates: 2.7-3.2 s per step here
(about 1 s with less contention) against 0.2-0.6 s for the ltx VAE, so each conventional
`train_vae` takes 14-16 min; DiT training is ~15 s per run, sampling and scoring seconds.
The recorded wall was 22 min because it resumed one ltx VAE and 100 steps of two
conventional VAEs from an interrupted first attempt. On an idle 2-core machine expect ~13
min. `--smoke` took 27-73 s, depending on the load.
Its figures (`ltxlab report patchifier`: transformer_input minus vae_input; 95% CIs over 3
seeds x source videos; Holm over the 7 headlines):
- reconstruction: PSNR +4.2 dB [2.0, 6.5] (19.8 vs 15.5 dB; adjusted p = 0.050), SSIM +0.27
  [0.20, 0.35]; HHH-band PSNR +2.3 dB [-0.5, 5.0] (no significant difference);
- generation: i2v first-frame PSNR +2.2 dB [1.3, 3.2] (15.0 vs 12.8 dB); temporal flicker and
  its excess -0.006 [-0.018, 0.007] (no significant difference); oracle direction +0.17
  [-0.38, 0.71], noise floor 0.68: 12 prompts per seed cannot resolve it (colour and shape
  sit at chance in both arms);
- cost at equal tokens (12 per clip; 6144 at 121x512x768): FLOPs per DiT forward + decode
  2.7e9 vs 2.2e8 at the run shape and 1.8e12 vs 1.6e11 at the reference shape (the
  conventional decoder works at 4x the spatial resolution), generation latency 61 vs 33 ms,
  H100 estimate 5.2 vs 1.0 ms.
At this tiny scale the conventional pair reconstructs better and keeps the i2v first frame
better (both mostly the VAE's doing) at 11-12x the FLOPs; nothing generation-specific
(flicker, alignment) separates the arms. The tiny 1:192 ltx VAE (300 steps; 1.9M parameters
with its DiT) is the weak link, so this is no verdict on the paper's claim at full size.
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
                          "t2v.flicker_excess", "t2v.oracle_direction"),
    )
