"""`text-conditioning`: cross-attention (LTX-Video, PixArt) vs MM-DiT joint attention, x QK
normalisation, trained jointly on text-to-video and image-to-video over synthetic scenes;
scored by oracle alignment and first-frame fidelity (LTX-Video §2.2, §3).

It runs at the alignment scale (`alignment_run_config` in `common.py`), the only scale at
which the oracle can read this CPU's generations.
"""

from __future__ import annotations

from ablations.recipes import RECIPES, Sweep
from ablations.recipes.common import alignment_run_config


@RECIPES.register("text-conditioning")
def text_conditioning(name: str = "text-conditioning") -> Sweep:
    return Sweep(
        name=name, recipe="text-conditioning",
        description="Cross-attention or MM-DiT, with or without QK-norm: which follows the caption better?",
        base=alignment_run_config(),
        axes={"dit.text_conditioning": ["cross_attention", "mmdit"], "dit.qk_norm": ["none", "rms_across_heads"]},
        stages=("eval_gen", "cost"),
        headline_metrics=("t2v.oracle_color", "t2v.oracle_shape", "t2v.oracle_direction",
                          "i2v.first_frame_psnr", "t2v.temporal_flicker"),
    )
