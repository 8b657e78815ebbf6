"""Parity of our `ltx` VAE with diffusers' `AutoencoderKLLTXVideo` (random weights, fp32).

diffusers is built from the real release configs of `scripts/convert_ltx_to_diffusers.py`
(`get_vae_config("0.9.1")`, `("0.9.5")`, `("0.9.0")`), with every width divided by 16 for
CPU time; depths, block types, strides and flags are the releases' own. Its state dict
goes through our converter into our module, and latents and reconstructions must agree.
The unshrunk configs are checked key by key on the meta device against our presets.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from models.config import ConfigError
from models.vae import describe_vae, vae_config
from models.vae.convert import config_from_diffusers, convert_key, from_diffusers_state_dict, to_diffusers_config

diffusers = pytest.importorskip("diffusers")

ATOL, RTOL = 1e-5, 1e-5  # fp32; the same ops run in the same order, so differences are rounding only
# The decoder's output accumulates more rounding: with diffusers 0.42.1 the 0.9.0 decode (4 stages,
# no residual upsampling) differs by 1.6e-5 in fp32. It is rounding, not a layout difference: in float64
# the same pair differs by 7e-7, the size of diffusers' RMSNorm computing its variance in float32.
DECODE_ATOL = 3e-5

# diffusers' scripts/convert_ltx_to_diffusers.py, get_vae_config(version), verbatim
REAL_091: dict[str, Any] = {
    "in_channels": 3, "out_channels": 3, "latent_channels": 128,
    "block_out_channels": (128, 256, 512, 512),
    "down_block_types": ("LTXVideoDownBlock3D",) * 4,
    "decoder_block_out_channels": (256, 512, 1024),
    "layers_per_block": (4, 3, 3, 3, 4),
    "decoder_layers_per_block": (5, 6, 7, 8),
    "spatio_temporal_scaling": (True, True, True, False),
    "decoder_spatio_temporal_scaling": (True, True, True),
    "decoder_inject_noise": (True, True, True, False),
    "downsample_type": ("conv", "conv", "conv", "conv"),
    "upsample_residual": (True, True, True),
    "upsample_factor": (2, 2, 2),
    "timestep_conditioning": True,
    "patch_size": 4, "patch_size_t": 1, "resnet_norm_eps": 1e-6, "scaling_factor": 1.0,
    "encoder_causal": True, "decoder_causal": False,
}
REAL_095: dict[str, Any] = {
    "in_channels": 3, "out_channels": 3, "latent_channels": 128,
    "block_out_channels": (128, 256, 512, 1024, 2048),
    "down_block_types": ("LTXVideo095DownBlock3D",) * 4,
    "decoder_block_out_channels": (256, 512, 1024),
    "layers_per_block": (4, 6, 6, 2, 2),
    "decoder_layers_per_block": (5, 5, 5, 5),
    "spatio_temporal_scaling": (True, True, True, True),
    "decoder_spatio_temporal_scaling": (True, True, True),
    "decoder_inject_noise": (False, False, False, False),
    "downsample_type": ("spatial", "temporal", "spatiotemporal", "spatiotemporal"),
    "upsample_residual": (True, True, True),
    "upsample_factor": (2, 2, 2),
    "timestep_conditioning": True,
    "patch_size": 4, "patch_size_t": 1, "resnet_norm_eps": 1e-6, "scaling_factor": 1.0,
    "encoder_causal": True, "decoder_causal": False,
    "spatial_compression_ratio": 32, "temporal_compression_ratio": 8,
}
REAL_090: dict[str, Any] = {
    "in_channels": 3, "out_channels": 3, "latent_channels": 128,
    "block_out_channels": (128, 256, 512, 512),
    "down_block_types": ("LTXVideoDownBlock3D",) * 4,
    "decoder_block_out_channels": (128, 256, 512, 512),
    "layers_per_block": (4, 3, 3, 3, 4),
    "decoder_layers_per_block": (4, 3, 3, 3, 4),
    "spatio_temporal_scaling": (True, True, True, False),
    "decoder_spatio_temporal_scaling": (True, True, True, False),
    "decoder_inject_noise": (False, False, False, False, False),
    "downsample_type": ("conv", "conv", "conv", "conv"),
    "upsample_residual": (False, False, False, False),
    "upsample_factor": (1, 1, 1, 1),
    "patch_size": 4, "patch_size_t": 1, "resnet_norm_eps": 1e-6, "scaling_factor": 1.0,
    "encoder_causal": True, "decoder_causal": False, "timestep_conditioning": False,
}
REAL = {"0.9.1": REAL_091, "0.9.5": REAL_095, "0.9.0": REAL_090}


def shrunk(config: dict[str, Any], divisor: int = 16) -> dict[str, Any]:
    """The release config with every block width divided by `divisor`; nothing else changes."""
    return dict(
        config,
        block_out_channels=tuple(c // divisor for c in config["block_out_channels"]),
        decoder_block_out_channels=tuple(c // divisor for c in config["decoder_block_out_channels"]),
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


def max_abs_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


@pytest.mark.parametrize("release", ["0.9.1", "0.9.5", "0.9.0"])
def test_parity_with_diffusers_release_configs(release: str) -> None:
    theirs, ours = make_pair(shrunk(REAL[release]))
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())
    video = torch.rand(2, 3, 17, 64, 96, generator=torch.Generator().manual_seed(1)) * 2 - 1
    conditioned = REAL[release]["timestep_conditioning"]
    timestep = torch.tensor([0.05, 0.7]) if conditioned else None
    with torch.no_grad():
        posterior = theirs.encode(video).latent_dist
        mean, logvar = ours.encode(video)
        torch.testing.assert_close(mean, posterior.mean, atol=ATOL, rtol=RTOL)
        torch.testing.assert_close(logvar, posterior.logvar, atol=ATOL, rtol=RTOL)
        assert mean.shape == (2, 128, 3, 2, 3)

        torch.manual_seed(123)  # diffusers draws the decoder's injected noise from the global RNG
        expected = theirs.decode(posterior.mean, timestep).sample
        torch.manual_seed(123)
        global_rng = ours.decode(mean, timestep)
        seeded = ours.decode(mean, timestep, generator=torch.Generator().manual_seed(123))
    print(f"{release}: latent max abs error {max_abs_error(mean, posterior.mean):.2e}, "
          f"decode {max_abs_error(global_rng, expected):.2e}")
    torch.testing.assert_close(global_rng, expected, atol=DECODE_ATOL, rtol=RTOL)
    torch.testing.assert_close(seeded, expected, atol=DECODE_ATOL, rtol=RTOL)
    assert expected.shape == video.shape
    torch.testing.assert_close(ours.latents_std, theirs.latents_std)


def test_091_noise_is_on_every_up_stage_and_not_the_mid_block() -> None:
    _, ours = make_pair(shrunk(REAL_091))
    assert ours.decoder.mid.resnets[0].noise_scale1 is None
    assert all(stage.resnets[0].noise_scale1 is not None for stage in ours.decoder.stages)
    z = torch.randn(1, 128, 2, 2, 2)
    t = torch.tensor([0.1])
    with torch.no_grad():  # the parity above depends on the noise: another seed changes the output
        a = ours.decode(z, t, generator=torch.Generator().manual_seed(1))
        b = ours.decode(z, t, generator=torch.Generator().manual_seed(2))
    assert (a - b).abs().max() > 1e-3


@pytest.mark.parametrize("release,preset", [("0.9.1", "full"), ("0.9.1", "0.9.1"), ("0.9.5", "0.9.5"),
                                            ("0.9.0", "0.9.0")])
def test_release_configs_match_our_presets_key_by_key(release: str, preset: str) -> None:
    """Every key and shape of the unshrunk release exists in our preset (meta device, nothing allocated)."""
    with torch.device("meta"):
        theirs = diffusers.AutoencoderKLLTXVideo(**REAL[release])
        ours = vae_config("ltx", preset).build()
    assert config_from_diffusers(theirs.config, size=preset) == vae_config("ltx", preset)
    ours_shapes = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    converted = {k: tuple(v.shape) for k, v in from_diffusers_state_dict(theirs.state_dict()).items()}
    assert converted == ours_shapes
    info = describe_vae(vae_config("ltx", preset), 121, 512, 768)
    assert info["encoder_params"] == sum(p.numel() for p in theirs.encoder.parameters())
    assert info["decoder_params"] == sum(p.numel() for p in theirs.decoder.parameters())
    assert info["latent_shape"] == [128, 16, 16, 24]


def test_old_mirrored_noise_layout_is_refused_by_name() -> None:
    """ltxlab's old converter wrote noise on the mid-block and none on the pixel-side stage."""
    mirrored = dict(REAL_091, decoder_inject_noise=(False, True, True, True))
    with pytest.raises(ConfigError, match=r"decoder_inject_noise=\(False, True, True, True\) is not a released"):
        config_from_diffusers(mirrored)
    loaded = config_from_diffusers(mirrored, any_noise_pattern=True)  # on request, it loads as it is
    assert loaded.decoder_inject_noise == (False, True, True, True)
    with pytest.raises(ConfigError, match="decoder_inject_noise"):
        config_from_diffusers(dict(REAL_091, decoder_inject_noise=(True, True, True)))


def test_convert_key_examples() -> None:
    key = "encoder.down_blocks.0.conv_out.conv_shortcut.conv.weight"
    assert convert_key(key) == "encoder.stages.0.widen.shortcut.weight"
    assert convert_key("encoder.down_blocks.1.downsamplers.0.conv.weight") == "encoder.stages.1.downsample.weight"
    assert convert_key("encoder.down_blocks.1.downsamplers.0.conv.conv.bias") == "encoder.stages.1.downsample.conv.bias"
    assert convert_key("decoder.up_blocks.2.resnets.1.per_channel_scale2") == "decoder.stages.2.resnets.1.noise_scale2"
    assert convert_key("decoder.time_embedder.timestep_embedder.linear_1.bias") == "decoder.time_embed.linear_1.bias"


@pytest.mark.parametrize("release", ["0.9.1", "0.9.5"])
def test_gradients_match_diffusers(release: str) -> None:
    """Batch 1 (our oneDNN conv path, diffusers' default path) in training mode: same grads."""
    theirs, ours = make_pair(shrunk(REAL[release]))
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


@pytest.mark.parametrize("size", ["tiny", "small", "full", "0.9.0", "0.9.5"])
def test_diffusers_config_round_trip(size: str) -> None:
    cfg = vae_config("ltx", size)
    assert config_from_diffusers(to_diffusers_config(cfg), size=size) == cfg
