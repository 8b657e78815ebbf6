"""`rope`: 3D RoPE frequency spacing (LTX-Video §2.2.3; the spacings of LTX-Video's
`transformer3d.py`: exp, exp_2, linear, sqrt) and RoPE off, at the alignment scale
(`alignment_run_config` in `common.py`): the one where the oracle can read colour and
direction back from the VAE's reconstructions (67% and 86%).

Every RoPE arm uses `dit.rope_scaling = "reference_extent"` (models/dit/rope.py): a 9x32x32
clip spans 1/15 of the time and 1/20-1/30 of the space of LTX's 121x512x768, so unscaled
every channel would turn 15-30x less than at full size (exp_2's fastest channel 0.03 rad:
RoPE off in disguise). Scaled, each arm turns across the clip as it does at 121x512x768;
the cost table prints each arm's largest turn per axis (`cost.rope_max_rad_t/h/w`). At the
default 4000 DiT steps the generations' directions are still at chance, so expect
direction effects only with longer training."""

from __future__ import annotations

import dataclasses

from ablations.recipes import RECIPES, Sweep
from ablations.recipes.common import alignment_run_config
from models.dit.rope import SPACINGS


@RECIPES.register("rope")
def rope(name: str = "rope") -> Sweep:
    base = alignment_run_config()
    base = dataclasses.replace(base, dit=dataclasses.replace(base.dit, rope_scaling="reference_extent"))
    return Sweep(
        name=name, recipe="rope",
        description="Does the RoPE frequency spacing matter, and does RoPE matter at all?",
        base=base,
        # spacing is meaningless without RoPE, so the last variant is "off" alone; "exp" (LTX's) first = baseline
        variants=[{"dit.rope": "on", "dit.rope_spacing": spacing} for spacing in SPACINGS]
        + [{"dit.rope": "off", "dit.rope_spacing": "exp"}],
        stages=("eval_gen", "cost"),
        headline_metrics=("t2v.oracle_color", "t2v.oracle_direction", "i2v.first_frame_psnr", "t2v.temporal_flicker"),
    )
