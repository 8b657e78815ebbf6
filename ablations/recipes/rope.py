"""`rope`: 3D RoPE frequency spacing (LTX's exp vs inverse-exp, LTX-Video §2.2.3) and RoPE off,
at the alignment scale (`alignment_run_config` in `common.py`): the one where the oracle can
read colour and direction back from the VAE's reconstructions (67% and 86%). At the default
4000 DiT steps the generations' directions are still at chance, so expect direction effects
only with longer training."""

from __future__ import annotations

from ablations.recipes import RECIPES, Sweep
from ablations.recipes.common import alignment_run_config


@RECIPES.register("rope")
def rope(name: str = "rope") -> Sweep:
    return Sweep(
        name=name, recipe="rope",
        description="Does the RoPE frequency spacing matter, and does RoPE matter at all?",
        base=alignment_run_config(),
        # spacing is meaningless without RoPE, so the third variant is "off" alone
        variants=[{"dit.rope": "on", "dit.rope_spacing": "exp"},
                  {"dit.rope": "on", "dit.rope_spacing": "inverse_exp"},
                  {"dit.rope": "off", "dit.rope_spacing": "exp"}],
        stages=("eval_gen", "cost"),
        headline_metrics=("t2v.oracle_color", "t2v.oracle_direction", "i2v.first_frame_psnr", "t2v.temporal_flicker"),
    )
