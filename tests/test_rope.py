"""RoPE spacings against LTX-Video's formulas, scaling to the reference extent, and match_params.

The reference below is written from Lightricks/LTX-Video
`ltx_video/models/transformers/transformer3d.py` (`precompute_freqs_cis`) in numpy float64,
independently of models/dit/rope.py.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from ablations.recipes import RECIPES
from ablations.recipes.common import alignment_run_config
from models.dit import describe_dit, dit_config
from models.dit.rope import SPACINGS, rope_frequencies, rope_max_positions_for
from models.dit.transformer import param_count

THETA = 10000.0
MAX_POS = (20.0, 2048.0, 2048.0)


def ltx_freqs_cis(coords: np.ndarray, dim: int, spacing: str) -> tuple[np.ndarray, np.ndarray]:
    """transformer3d.py's precompute_freqs_cis on (N, 3) coordinates, float64 (dim % 6 == 0 for exp_2)."""
    fractional = coords / np.array(MAX_POS)  # (N, 3)
    n = dim // 6
    if spacing == "exp":
        indices = THETA ** np.linspace(math.log(1, THETA), math.log(THETA, THETA), n)
    elif spacing == "exp_2":
        indices = 1.0 / THETA ** (np.arange(0, dim, 6) / dim)
    elif spacing == "linear":
        indices = np.linspace(1, THETA, n)
    elif spacing == "sqrt":
        indices = np.sqrt(np.linspace(1, THETA**2, n))
    indices = indices * math.pi / 2
    position = fractional[..., None] if spacing == "exp_2" else fractional[..., None] * 2 - 1  # (N, 3, 1)
    freqs = np.swapaxes(indices * position, -1, -2).reshape(len(coords), -1)  # (N, 3n)
    cos, sin = np.repeat(np.cos(freqs), 2, axis=-1), np.repeat(np.sin(freqs), 2, axis=-1)
    pad = dim % 6
    if pad:
        cos = np.concatenate([np.ones((len(coords), pad)), cos], axis=-1)
        sin = np.concatenate([np.zeros((len(coords), pad)), sin], axis=-1)
    return cos, sin


@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("dim", [36, 96, 64])
def test_each_spacing_matches_ltx_formulas(spacing: str, dim: int) -> None:
    if spacing == "exp_2" and dim % 6:
        pytest.skip("LTX's exp_2 makes ceil(dim/6) frequencies and cannot run when dim % 6 != 0 (see rope.py)")
    g = torch.Generator().manual_seed(0)
    coords = torch.rand(50, 3, generator=g, dtype=torch.float64) * torch.tensor([5.0, 512.0, 768.0], dtype=torch.float64)
    cos, sin = rope_frequencies(coords, dim, spacing=spacing, theta=THETA, max_positions=MAX_POS)
    ref_cos, ref_sin = ltx_freqs_cis(coords.numpy(), dim, spacing)
    np.testing.assert_allclose(cos[0].numpy(), ref_cos, rtol=0, atol=1e-9)
    np.testing.assert_allclose(sin[0].numpy(), ref_sin, rtol=0, atol=1e-9)


def test_exp_2_with_a_width_ltx_cannot_run_uses_its_first_frequencies() -> None:
    coords = torch.tensor([[1.0, 100.0, 200.0]], dtype=torch.float64)
    cos, _ = rope_frequencies(coords, 64, spacing="exp_2")  # 64 % 6 == 4: 10 frequencies, 4 unrotated channels
    assert cos.shape == (1, 1, 64)
    assert (cos[0, 0, :4] == 1).all()
    expected = np.cos((1.0 / THETA ** (np.arange(0, 60, 6) / 64) * math.pi / 2)[:, None] * (coords.numpy()[0] / MAX_POS))
    np.testing.assert_allclose(cos[0, 0, 4::2].numpy(), expected.reshape(-1), atol=1e-12)


@pytest.mark.parametrize("spacing", SPACINGS)
def test_scaled_rotation_at_smoke_scale_equals_full_size(spacing: str) -> None:
    """The rope recipe's arms turn across a 9x32x32 clip as they do across 121x512x768."""
    cfg = dataclasses.replace(RECIPES.get("rope")().base.dit, rope_spacing=spacing)
    assert cfg.rope_scaling == "reference_extent"
    smoke = describe_dit(cfg, 9, 32, 32)["rope_max_rad"]
    full = describe_dit(cfg, 121, 512, 768)["rope_max_rad"]
    unscaled_full = describe_dit(dataclasses.replace(cfg, rope_scaling="none"), 121, 512, 768)["rope_max_rad"]
    np.testing.assert_allclose(smoke, full, rtol=0.01)
    np.testing.assert_allclose(full, unscaled_full, rtol=1e-12)  # the reference shape is not rescaled
    unscaled_smoke = describe_dit(dataclasses.replace(cfg, rope_scaling="none"), 9, 32, 32)["rope_max_rad"]
    assert all(s < f / 10 for s, f in zip(unscaled_smoke, full))  # what the fault was: 15-30x less


def test_exp_2_unscaled_at_the_recipe_scale_barely_turns() -> None:
    cfg = dataclasses.replace(alignment_run_config().dit, rope_spacing="exp_2")
    assert max(describe_dit(cfg, 9, 32, 32)["rope_max_rad"]) < 0.05


def test_scaling_is_exactly_off_by_default_and_keeps_one_token_axes() -> None:
    cfg = alignment_run_config().dit
    assert rope_max_positions_for(cfg, (5, 8, 8), 24.0) == MAX_POS
    scaled = dataclasses.replace(cfg, rope_scaling="reference_extent")
    t, h, w = rope_max_positions_for(scaled, (1, 8, 8), 24.0)  # one latent frame: no time extent
    assert t == MAX_POS[0] and h == pytest.approx(2048 * 24 / 504) and w == pytest.approx(2048 * 24 / 760)


def test_rope_off_turns_nothing() -> None:
    info = describe_dit(dit_config("ltx", "tiny", rope="off"), 17, 64, 64)
    assert info["rope_max_rad"] == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("size", ["tiny", "full"])
def test_match_params_brings_mmdit_within_2_percent(size: str) -> None:
    """Counts from models built on the meta device; cross-attention is the reference."""
    cross = dit_config("ltx", size)
    mmdit = dataclasses.replace(cross, text_conditioning="mmdit")
    matched = dataclasses.replace(mmdit, match_params=True)
    reference, plain, got = param_count(cross), param_count(mmdit), param_count(matched)
    assert plain / reference - 1 > 0.10  # the confound: 12% (tiny), 47% (full)
    assert abs(got / reference - 1) < 0.02
    assert param_count(dataclasses.replace(cross, match_params=True)) == reference  # the reference is unchanged


def test_match_params_at_the_recipe_scale_and_in_the_recipe() -> None:
    base = alignment_run_config().dit
    reference = param_count(base)
    matched = describe_dit(dataclasses.replace(base, text_conditioning="mmdit", match_params=True), 9, 32, 32)
    assert abs(matched["params"] / reference - 1) < 0.02 and matched["ffn_hidden"] < 4 * base.hidden
    levels = [lv.label for lv in RECIPES.get("text-conditioning")().axes["dit.text_conditioning"]]
    assert levels == ["cross_attention", "mmdit", "mmdit_matched"]
