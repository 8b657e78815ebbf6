"""`text-conditioning`: cross-attention (LTX-Video, PixArt) vs MM-DiT joint attention, x QK
normalisation, trained jointly on text-to-video and image-to-video over synthetic scenes;
scored by oracle alignment and first-frame fidelity (LTX-Video §2.2, §3).

At equal widths MM-DiT has 12% more parameters here (47% at LTX's 2B size), which would
confound the comparison, so the MM-DiT arm runs twice: as is (`mmdit`), and with
`dit.match_params` (`mmdit_matched`: FFNs narrowed to within 2% of the cross-attention
model's parameter count). `cost.dit_params` in the cost table shows the counts.

It runs at the alignment scale (`alignment_run_config` in `common.py`), the only scale at
which the oracle can read this CPU's generations.
"""

from __future__ import annotations

from ablations.graph import Level
from ablations.recipes import RECIPES, Sweep
from ablations.recipes.common import alignment_run_config

CONDITIONING_LEVELS = (
    Level("cross_attention", {"dit.text_conditioning": "cross_attention", "dit.match_params": False}),
    Level("mmdit", {"dit.text_conditioning": "mmdit", "dit.match_params": False}),
    Level("mmdit_matched", {"dit.text_conditioning": "mmdit", "dit.match_params": True}),
)


@RECIPES.register("text-conditioning")
def text_conditioning(name: str = "text-conditioning") -> Sweep:
    return Sweep(
        name=name, recipe="text-conditioning",
        description="Cross-attention or MM-DiT (as is, and parameter-matched), with or without QK-norm: "
                    "which follows the caption better?",
        base=alignment_run_config(),
        axes={"dit.text_conditioning": list(CONDITIONING_LEVELS), "dit.qk_norm": ["none", "rms_across_heads"]},
        stages=("eval_gen", "cost"),
        headline_metrics=("t2v.oracle_color", "t2v.oracle_shape", "t2v.oracle_direction",
                          "i2v.first_frame_psnr", "t2v.temporal_flicker"),
    )
