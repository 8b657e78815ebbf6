"""`text-conditioning`: cross-attention (LTX-Video, PixArt) vs MM-DiT joint attention, x QK
normalisation, trained jointly on text-to-video and image-to-video over synthetic scenes;
scored by oracle alignment and first-frame fidelity (LTX-Video §2.2, §3)."""

from __future__ import annotations

from ablations.configs import default_run_config
from ablations.recipes import RECIPES, Sweep


@RECIPES.register("text-conditioning")
def text_conditioning(name: str = "text-conditioning") -> Sweep:
    return Sweep(
        name=name, recipe="text-conditioning",
        description="Cross-attention or MM-DiT, with or without QK-norm: which follows the caption better?",
        base=default_run_config("ltx", "tiny"),
        axes={"dit.text_conditioning": ["cross_attention", "mmdit"], "dit.qk_norm": ["none", "rms_across_heads"]},
        stages=("eval_gen", "cost"),
        headline_metrics=("t2v.oracle_color", "t2v.oracle_shape", "t2v.oracle_direction",
                          "i2v.first_frame_psnr", "t2v.temporal_flicker"),
    )
