"""Numeric parity of LTXDiT (with converted weights) against diffusers' LTXVideoTransformer3DModel."""

from __future__ import annotations

import pytest
import torch

from tests._dit_util import ours_from_diffusers, tiny_diffusers_ltx

pytest.importorskip("diffusers")


def _inputs(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    latents = torch.randn(2, 8, 3, 4, 6, generator=g)  # (B, C, T, H, W): 72 tokens
    text = torch.randn(2, 7, 24, generator=g)
    mask = torch.tensor([[1, 1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1, 1]], dtype=torch.bool)
    return latents, text, mask


def _diffusers_forward(model, latents, timestep, text, mask, fps, vae_t=8, vae_s=32):
    b, c, t, h, w = latents.shape
    packed = latents.flatten(2).transpose(1, 2)  # (B, N, C) in (t, h, w) raster order
    out = model(
        hidden_states=packed,
        encoder_hidden_states=text,
        timestep=timestep * 1000.0,  # diffusers' pipelines feed sigma x 1000
        encoder_attention_mask=mask.long(),
        num_frames=t,
        height=h,
        width=w,
        rope_interpolation_scale=(vae_t / fps, vae_s, vae_s),
        return_dict=False,
    )[0]
    return out.transpose(1, 2).reshape(b, c, t, h, w)


@pytest.mark.parametrize("fps", [24.0, 25.0])
def test_matches_diffusers_per_sample_timesteps(fps: float) -> None:
    ref = tiny_diffusers_ltx()
    ours = ours_from_diffusers(ref)
    latents, text, mask = _inputs()
    timestep = torch.tensor([0.3, 0.9])
    with torch.no_grad():
        expected = _diffusers_forward(ref, latents, timestep, text, mask, fps)
        got = ours(latents, timestep, text, mask, fps)
    torch.testing.assert_close(got, expected)  # fp32 defaults: rtol 1.3e-6, atol 1e-5


def test_matches_diffusers_per_token_timesteps() -> None:
    ref = tiny_diffusers_ltx(seed=3)
    ours = ours_from_diffusers(ref)
    latents, text, mask = _inputs(seed=4)
    timestep = torch.rand(2, 72, generator=torch.Generator().manual_seed(5))
    timestep[:, :24] = 0.0  # first latent frame conditioned, as image-to-video does
    with torch.no_grad():
        expected = _diffusers_forward(ref, latents, timestep, text, mask, 24.0)
        got = ours(latents, timestep, text, mask, 24.0)
    torch.testing.assert_close(got, expected)  # fp32 defaults: rtol 1.3e-6, atol 1e-5


def test_parity_detects_a_wrong_rope_scale() -> None:
    """The comparison is sensitive: a different frame rate changes diffusers' output."""
    ref = tiny_diffusers_ltx()
    ours = ours_from_diffusers(ref)
    latents, text, mask = _inputs()
    timestep = torch.tensor([0.5, 0.5])
    with torch.no_grad():
        expected = _diffusers_forward(ref, latents, timestep, text, mask, 24.0)
        got = ours(latents, timestep, text, mask, 12.0)
    assert (got - expected).abs().max() > 1e-3


def test_converter_rejects_unknown_keys() -> None:
    from models.dit.convert import convert_diffusers_ltx

    state = dict(tiny_diffusers_ltx().state_dict())
    state["transformer_blocks.0.extra.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match="no LTXDiT destination"):
        convert_diffusers_ltx(state)
