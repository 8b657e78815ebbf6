"""`rope`: 3D RoPE frequency spacing (LTX's exp vs inverse-exp, LTX-Video §2.2.3) and RoPE off."""

from __future__ import annotations

from ablations.configs import default_run_config
from ablations.recipes import RECIPES, Sweep


@RECIPES.register("rope")
def rope(name: str = "rope") -> Sweep:
    return Sweep(
        name=name, recipe="rope",
        description="Does the RoPE frequency spacing matter, and does RoPE matter at all?",
        base=default_run_config("ltx", "tiny"),
        # spacing is meaningless without RoPE, so the third variant is "off" alone
        variants=[{"dit.rope": "on", "dit.rope_spacing": "exp"},
                  {"dit.rope": "on", "dit.rope_spacing": "inverse_exp"},
                  {"dit.rope": "off", "dit.rope_spacing": "exp"}],
        stages=("eval_gen", "cost"),
        headline_metrics=("t2v.oracle_color", "t2v.oracle_direction", "i2v.first_frame_psnr", "t2v.temporal_flicker"),
    )
