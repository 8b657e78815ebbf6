"""Per-component tests of the video VAEs at the `tiny` preset (generated from `VAES`)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from models.config import ConfigError, from_dict, switch_values, to_dict, to_json
from models.vae import VAES, describe_vae, vae_config

KINDS = VAES.names()


def video_for(vae: torch.nn.Module, latent_frames: int = 3, latent_hw: int = 2, batch: int = 1, seed: int = 0) -> torch.Tensor:
    """A random video in [-1, 1] whose shape fits `vae`: (B, 3, 1 + tc*(n-1), s*hw, s*hw)."""
    g = torch.Generator().manual_seed(seed)
    t = 1 + vae.temporal_compression * (latent_frames - 1)
    hw = vae.spatial_compression * latent_hw
    return torch.rand(batch, 3, t, hw, hw, generator=g) * 2 - 1


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("logvar", ["uniform", "per_channel"])
def test_shapes(kind: str, logvar: str) -> None:
    torch.manual_seed(0)
    vae = vae_config(kind, "tiny", logvar=logvar).build()
    video = torch.rand(2, 3, 17, 64, 64) * 2 - 1
    tc, sc, cz = vae.temporal_compression, vae.spatial_compression, vae.latent_channels
    latent = (2, cz, 1 + 16 // tc, 64 // sc, 64 // sc)
    with torch.no_grad():
        mean, logvar_ = vae.encode(video)
        assert tuple(mean.shape) == latent and tuple(logvar_.shape) == latent
        if logvar == "uniform":  # one predicted channel, broadcast
            assert torch.equal(logvar_, logvar_[:, :1].expand_as(logvar_))
        else:
            assert not torch.equal(logvar_, logvar_[:, :1].expand_as(logvar_))
        recon_t = vae.decode(mean, timestep=torch.tensor([0.05, 0.5]))
        recon_none = vae.decode(mean)
        assert recon_t.shape == video.shape and recon_none.shape == video.shape
        recon, mean2, _ = vae(video, sample_posterior=True, generator=torch.Generator().manual_seed(1))
        assert recon.shape == video.shape and torch.equal(mean2, mean)


def test_expected_compression() -> None:
    ltx, conv = vae_config("ltx", "tiny").build(), vae_config("conventional", "tiny").build()
    assert (ltx.temporal_compression, ltx.spatial_compression, ltx.latent_channels) == (8, 32, 128)
    assert (conv.temporal_compression, conv.spatial_compression, conv.latent_channels) == (4, 8, 16)


def test_timestep_changes_conditioned_decoder_only() -> None:
    torch.manual_seed(0)
    on = vae_config("ltx", "tiny", decoder_noise_injection=False).build()
    off = vae_config("ltx", "tiny", decoder_noise_injection=False, decoder_timestep_conditioning=False).build()
    z = torch.randn(1, 128, 2, 2, 2)
    with torch.no_grad():
        assert not torch.allclose(on.decode(z, torch.tensor([0.0])), on.decode(z, torch.tensor([0.5])))
        assert torch.equal(off.decode(z, torch.tensor([0.0])), off.decode(z, torch.tensor([0.5])))
        assert torch.equal(on.decode(z), on.decode(z, torch.tensor([0.0])))  # default: clean latents, t = 0


def test_wrong_video_shape_is_one_sentence() -> None:
    vae = vae_config("ltx", "tiny").build()
    with pytest.raises(ValueError, match="1 \\+ 8k frames"):
        vae.encode(torch.zeros(1, 3, 16, 64, 64))
    with pytest.raises(ValueError, match="multiples of 32"):
        vae.encode(torch.zeros(1, 3, 9, 48, 64))
