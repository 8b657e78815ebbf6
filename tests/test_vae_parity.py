"""Parity of our `ltx` VAE with diffusers' `AutoencoderKLLTXVideo` (random weights, fp32).

A tiny diffusers model is built at the 0.9.1 layout (timestep-conditioned, noise-
injecting, residual depth-to-space decoder) and at the 0.9.0 layout; its state dict goes
through our converter into our module, and latents and reconstructions must agree.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from models.vae import describe_vae, vae_config
from models.vae.convert import config_from_diffusers, convert_key, from_diffusers_state_dict

diffusers = pytest.importorskip("diffusers")

ATOL, RTOL = 1e-5, 1e-5  # fp32; the same ops run in the same order, so differences are rounding only

TINY_091: dict[str, Any] = dict(
    in_channels=3,
    out_channels=3,
    latent_channels=16,
    block_out_channels=(8, 16, 32, 32),
    decoder_block_out_channels=(16, 32, 64),
    layers_per_block=(1, 1, 2, 1, 1),
    decoder_layers_per_block=(1, 2, 1, 1),
    spatio_temporal_scaling=(True, True, True, False),
    decoder_spatio_temporal_scaling=(True, True, True),
    decoder_inject_noise=(False, True, True, True),
    upsample_residual=(True, True, True),
    upsample_factor=(2, 2, 2),
    timestep_conditioning=True,
    patch_size=4,
    patch_size_t=1,
    encoder_causal=True,
    decoder_causal=False,
)

TINY_090: dict[str, Any] = dict(
    TINY_091,
    decoder_block_out_channels=(8, 16, 32, 32),
    decoder_layers_per_block=(1, 1, 2, 1, 1),
    decoder_spatio_temporal_scaling=(True, True, True, False),
    decoder_inject_noise=(False,) * 5,
    upsample_residual=(False,) * 4,
    upsample_factor=(1,) * 4,
    timestep_conditioning=False,
)


def make_pair(config: dict[str, Any]) -> tuple[torch.nn.Module, torch.nn.Module]:
    """A diffusers VAE with random weights (noise scales made non-zero) and ours, converted."""
    torch.manual_seed(0)
    theirs = diffusers.AutoencoderKLLTXVideo(**config).eval()
    with torch.no_grad():
        for name, param in theirs.named_parameters():
            if "per_channel_scale" in name:  # zero-initialised: give the noise path something to do
                param.copy_(torch.randn_like(param) * 0.5)
        theirs.latents_mean.copy_(torch.randn(config["latent_channels"]))
        theirs.latents_std.copy_(torch.rand(config["latent_channels"]) + 0.5)
    ours = config_from_diffusers(theirs.config).build().eval()
    missing, unexpected = ours.load_state_dict(from_diffusers_state_dict(theirs.state_dict()), strict=True)
    assert not missing and not unexpected
    return theirs, ours


@pytest.mark.parametrize("config", [TINY_091, TINY_090], ids=["0.9.1", "0.9.0"])
def test_parity_with_diffusers(config: dict[str, Any]) -> None:
    theirs, ours = make_pair(config)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())
    video = torch.rand(2, 3, 17, 64, 96, generator=torch.Generator().manual_seed(1)) * 2 - 1
    timestep = torch.tensor([0.05, 0.7]) if config["timestep_conditioning"] else None
    with torch.no_grad():
        posterior = theirs.encode(video).latent_dist
        mean, logvar = ours.encode(video)
        torch.testing.assert_close(mean, posterior.mean, atol=ATOL, rtol=RTOL)
        torch.testing.assert_close(logvar, posterior.logvar, atol=ATOL, rtol=RTOL)
        assert mean.shape == (2, 16, 3, 2, 3)

        torch.manual_seed(123)  # diffusers draws the decoder's injected noise from the global RNG
        expected = theirs.decode(posterior.mean, timestep).sample
        torch.manual_seed(123)
        global_rng = ours.decode(mean, timestep)
        seeded = ours.decode(mean, timestep, generator=torch.Generator().manual_seed(123))
    torch.testing.assert_close(global_rng, expected, atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(seeded, expected, atol=ATOL, rtol=RTOL)
    assert expected.shape == video.shape
    torch.testing.assert_close(ours.latents_std, theirs.latents_std)


def test_noise_injection_is_exercised() -> None:
    """The 0.9.1 parity above must depend on the noise: another seed changes the output."""
    _, ours = make_pair(TINY_091)
    z = torch.randn(1, 16, 2, 2, 2)
    t = torch.tensor([0.1])
    with torch.no_grad():
        a = ours.decode(z, t, generator=torch.Generator().manual_seed(1))
        b = ours.decode(z, t, generator=torch.Generator().manual_seed(2))
    assert (a - b).abs().max() > 1e-3


def test_full_config_matches_diffusers_091_layout() -> None:
    """Every 0.9.1 key and shape exists in ours (meta device, nothing allocated)."""
    full_091 = dict(
        TINY_091,
        latent_channels=128,
        block_out_channels=(128, 256, 512, 512),
        decoder_block_out_channels=(256, 512, 1024),
        layers_per_block=(4, 3, 3, 3, 4),
        decoder_layers_per_block=(5, 6, 7, 8),
    )
    with torch.device("meta"):
        theirs = diffusers.AutoencoderKLLTXVideo(**full_091)
        ours = vae_config("ltx", "full").build()
    assert config_from_diffusers(theirs.config, size="full") == vae_config("ltx", "full")
    ours_shapes = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    converted = {k: tuple(v.shape) for k, v in from_diffusers_state_dict(theirs.state_dict()).items()}
    assert converted == ours_shapes
    info = describe_vae(vae_config("ltx", "full"), 121, 512, 768)
    assert info["encoder_params"] == sum(p.numel() for p in theirs.encoder.parameters())
    assert info["decoder_params"] == sum(p.numel() for p in theirs.decoder.parameters())


def test_convert_key_examples() -> None:
    key = "encoder.down_blocks.0.conv_out.conv_shortcut.conv.weight"
    assert convert_key(key) == "encoder.stages.0.widen.shortcut.weight"
    assert convert_key("decoder.up_blocks.2.resnets.1.per_channel_scale2") == "decoder.stages.2.resnets.1.noise_scale2"
    assert convert_key("decoder.time_embedder.timestep_embedder.linear_1.bias") == "decoder.time_embed.linear_1.bias"


def test_gradients_match_diffusers() -> None:
    """Batch 1 (our oneDNN conv path, diffusers' default path) in training mode: same grads."""
    theirs, ours = make_pair(TINY_091)
    video = torch.rand(1, 3, 9, 64, 64, generator=torch.Generator().manual_seed(2)) * 2 - 1
    timestep = torch.tensor([0.3])
    torch.manual_seed(5)
    (theirs(video, temb=timestep).sample - video).abs().mean().backward()
    torch.manual_seed(5)
    (ours(video, sample_posterior=False, timestep=timestep)[0] - video).abs().mean().backward()
    ours_params = dict(ours.named_parameters())
    for name, param in theirs.named_parameters():
        mine = ours_params[convert_key(name)]
        assert mine.grad is not None, name
        torch.testing.assert_close(mine.grad.reshape(param.grad.shape), param.grad, atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.parametrize("size", ["tiny", "small", "full"])
def test_diffusers_config_round_trip(size: str) -> None:
    from models.vae.convert import to_diffusers_config

    cfg = vae_config("ltx", size)
    assert config_from_diffusers(to_diffusers_config(cfg), size=size) == cfg
