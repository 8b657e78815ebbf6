"""The `patchifier` recipe: two (VAE, transformer patch) pairs at equal tokens, three seeds,
scored on reconstruction, generation and cost."""

from __future__ import annotations

import dataclasses

import pytest

from ablations.configs import check_buildable, sync_pairing
from ablations.graph import expand_variants
from ablations.recipes import RECIPES
from ablations.recipes.common import smoke
from models.dit.describe import latent_shape_for
from models.dit.patch import patch_sizes, token_grid

ALL_STAGES = {"train_vae", "eval_recon", "encode_latents", "train_dit", "sample", "eval_gen", "cost"}


def _tokens(cfg, frames: int, height: int, width: int) -> int:
    t, h, w = token_grid(latent_shape_for(cfg.dit, frames, height, width), cfg.dit.patch)
    return t * h * w


def _pixels_per_token(cfg) -> int:
    pt, ph, pw = patch_sizes(cfg.dit.patch)
    return cfg.dit.vae_temporal_compression * pt * (cfg.dit.vae_spatial_compression**2) * ph * pw


@pytest.mark.parametrize("smoked", [False, True])
def test_both_arms_are_paired_and_see_equal_tokens(smoked):
    sweep = RECIPES.get("patchifier")()
    base = smoke(sweep.base) if smoked else sweep.base
    variants = expand_variants(base, sweep.axes, sweep.seeds, sweep.variants)
    assert len(variants) == 6 and sorted({v.seed for v in variants}) == [0, 1, 2]
    arms = {}
    for variant in variants:
        cfg = variant.config
        assert sync_pairing(cfg) == cfg, "each arm must be paired as written, not repaired by the runner"
        check_buildable(cfg, ALL_STAGES)
        arms[variant.axes["patchifier_placement"]] = cfg
    ltx, conventional = arms["vae_input"], arms["transformer_input"]
    assert (ltx.vae.kind, ltx.dit.patch, ltx.dit.in_channels) == ("ltx", "1x1x1", 128)
    assert (conventional.vae.kind, conventional.dit.patch, conventional.dit.in_channels) == ("conventional", "4x4x2", 16)
    assert _pixels_per_token(ltx) == _pixels_per_token(conventional) == 8192
    spec = base.dit_data
    shapes = [(spec.frames, spec.height, spec.width), (121, 512, 768)]
    for shape in shapes:
        assert _tokens(ltx, *shape) == _tokens(conventional, *shape)
    assert _tokens(ltx, *shapes[0]) == (2 if smoked else 12)
    # the two arms differ only in the pair: every other section is the same config
    same = {f.name for f in dataclasses.fields(ltx)} - {"vae", "dit"}
    assert all(getattr(ltx, name) == getattr(conventional, name) for name in same)


def test_cost_stage_reports_equal_tokens_for_both_pairs():
    from evaluation.cost import variant_cost

    sweep = RECIPES.get("patchifier")()
    variants = expand_variants(smoke(sweep.base), sweep.axes, (0,), sweep.variants)
    costs = {v.axes["patchifier_placement"]: variant_cost(v.config)["generation"] for v in variants}
    ltx, conventional = costs["vae_input"], costs["transformer_input"]
    assert ltx["tokens"] == conventional["tokens"] == 2
    assert ltx["tokens_ref"] == conventional["tokens_ref"] == 16 * 16 * 24  # 121x512x768 / (8 x 32 x 32)
    assert ltx["flops_ref"] != conventional["flops_ref"]  # same tokens, different pairs: FLOPs tell them apart
