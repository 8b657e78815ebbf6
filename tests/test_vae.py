"""Per-component tests of the video VAEs at the `tiny` preset (generated from `VAES`)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from models.config import ConfigError, from_dict, switch_values, to_dict, to_json
from models.vae import VAES, describe_vae, vae_config

KINDS = VAES.names()


def video_for(
    vae: torch.nn.Module, latent_frames: int = 3, latent_hw: int = 2, batch: int = 1, seed: int = 0
) -> torch.Tensor:
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
    quiet = (False,) * 4
    on = vae_config("ltx", "tiny", decoder_inject_noise=quiet).build()
    off = vae_config("ltx", "tiny", decoder_inject_noise=quiet, decoder_timestep_conditioning=False).build()
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


def test_describe_full_ltx() -> None:
    info = describe_vae(vae_config("ltx", "full"), 121, 512, 768)
    assert info["latent_shape"] == [128, 16, 16, 24]
    assert info["reconstruction_shape"] == [3, 121, 512, 768]
    assert info["compression_ratio"] == 192 and info["pixels_per_token"] == 8192
    assert (info["temporal_compression"], info["spatial_compression"]) == (8, 32)
    # diffusers' AutoencoderKLLTXVideo at the 0.9.1 config (tests/test_vae_parity.py checks it live)
    assert info["encoder_params"] == 180_404_353
    assert info["decoder_params"] == 754_572_081
    assert info["total_params"] == info["encoder_params"] + info["decoder_params"]
    assert info["shape_compression_ratio"] == pytest.approx(3 * 121 * 512 * 768 / (128 * 16 * 16 * 24), abs=0.01)


def test_describe_conventional_and_tiny_match_a_real_build() -> None:
    conv = describe_vae(vae_config("conventional", "full"), 121, 512, 768)
    assert conv["latent_shape"] == [16, 31, 64, 96]
    assert conv["compression_ratio"] == 48 and conv["pixels_per_token"] == 256
    cfg = vae_config("ltx", "tiny")
    info = describe_vae(cfg, 17, 64, 96)
    vae = cfg.build()
    assert info["encoder_params"] == sum(p.numel() for p in vae.encoder.parameters())
    assert info["decoder_params"] == sum(p.numel() for p in vae.decoder.parameters())
    with torch.no_grad():
        assert list(vae.encode(torch.zeros(1, 3, 17, 64, 96))[0].shape[1:]) == info["latent_shape"]


def _noisy_stages(vae: torch.nn.Module) -> list[bool]:
    """Which decoder stages inject noise, pixel side first, then the mid-block (the config's order)."""
    stages = [stage.resnets[0].noise_scale1 is not None for stage in vae.decoder.stages][::-1]
    return stages + [vae.decoder.mid.resnets[0].noise_scale1 is not None]


@pytest.mark.parametrize("kind", KINDS)
def test_decoder_noise_follows_the_per_stage_pattern(kind: str) -> None:
    """Default: LTX-Video 0.9.1, noise in every up-stage and not in the mid-block."""
    assert vae_config(kind, "tiny").decoder_inject_noise == "ltx_0.9.1"
    assert vae_config(kind, "tiny").noise_pattern == (True, True, True, False)
    assert vae_config(kind, "tiny", decoder_inject_noise="none").noise_pattern == (False,) * 4
    assert _noisy_stages(vae_config(kind, "tiny").build()) == [True, True, True, False]
    for pattern in [(False,) * 4, (True, False, False, False), (False, False, False, True)]:
        vae = vae_config(kind, "tiny", decoder_inject_noise=pattern).build()
        assert _noisy_stages(vae) == list(pattern)
        z = torch.randn(1, vae.latent_channels, 2, 2, 2)
        with torch.no_grad():
            for name, param in vae.named_parameters():
                if "noise_scale" in name:
                    param.fill_(0.5)
            a = vae.decode(z, generator=torch.Generator().manual_seed(1))
            b = vae.decode(z, generator=torch.Generator().manual_seed(2))
        assert torch.equal(a, b) == (not any(pattern))
    with pytest.raises(ConfigError, match="decoder_inject_noise needs one flag per decoder stage"):
        vae_config(kind, "tiny", decoder_inject_noise=[True, True, True])
    with pytest.raises(ConfigError, match="decoder_inject_noise must be one of 'ltx_0.9.1', 'none'"):
        vae_config(kind, "tiny", decoder_inject_noise="ltx")
    two_stage = vae_config(kind, "tiny", decoder_channels=[16, 32], decoder_layers=[1, 1, 1],
                           decoder_strides=[[2, 2, 2], [2, 2, 2]], encoder_strides=[[2, 2, 2], [2, 2, 2], [1, 1, 1], [1, 1, 1]])
    assert two_stage.noise_pattern == (True, True, False)  # a layout name fits any stage count


def test_release_presets_and_space_to_depth_checks() -> None:
    v095 = vae_config("ltx", "0.9.5")
    assert (v095.encoder_downsample, v095.encoder_mid_channels, v095.decoder_inject_noise) == (
        "space_to_depth", 2048, "none")
    assert vae_config("ltx", "0.9.1") == dataclasses.replace(vae_config("ltx", "full"), size="0.9.1")
    with pytest.raises(ConfigError, match="widens only where it downsamples"):
        vae_config("ltx", "tiny", encoder_downsample="space_to_depth", encoder_strides=[[2, 2, 2], [1, 1, 1], [2, 2, 2], [2, 2, 2]])


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("downsample", ["conv", "space_to_depth"])
def test_encoder_is_causal(kind: str, downsample: str) -> None:
    """Changing frames after 1 + tc*k leaves latent frames 0..k unchanged; later ones change."""
    torch.manual_seed(0)
    vae = vae_config(kind, "tiny", encoder_downsample=downsample).build().eval()
    tc = vae.temporal_compression
    video = video_for(vae, latent_frames=4, latent_hw=1)
    k = 1
    edited = video.clone()
    edited[:, :, 1 + tc * k :] = torch.rand_like(edited[:, :, 1 + tc * k :]) * 2 - 1
    with torch.no_grad():
        a, _ = vae.encode(video)
        b, _ = vae.encode(edited)
    torch.testing.assert_close(a[:, :, : k + 1], b[:, :, : k + 1], atol=0, rtol=0)
    assert (a[:, :, k + 1 :] - b[:, :, k + 1 :]).abs().max() > 1e-4


def switch_cases() -> list[tuple[str, str, object]]:
    return [
        (kind, field, value)
        for kind, cls in VAES.items()
        for field, values in switch_values(cls).items()
        for value in values
    ]


@pytest.mark.parametrize("kind,field,value", switch_cases())
def test_every_switch_trains(kind: str, field: str, value: object) -> None:
    """Forward + L1 backward at `tiny` for each value of each design switch."""
    torch.manual_seed(0)
    vae = vae_config(kind, "tiny", **{field: value}).build()
    assert getattr(vae.cfg, field) == value
    video = video_for(vae, latent_frames=2, latent_hw=1, batch=2)
    recon, mean, logvar = vae(video, generator=torch.Generator().manual_seed(0), timestep=torch.tensor([0.1, 0.9]))
    loss = (recon - video).abs().mean() + 1e-3 * (mean.pow(2) + logvar.exp() - 1 - logvar).mean()
    loss.backward()
    assert torch.isfinite(loss)
    for name, param in vae.named_parameters():
        assert param.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(param.grad).all(), f"{name} has a non-finite gradient"


@pytest.mark.parametrize("kind", KINDS)
def test_config_json_round_trip(kind: str) -> None:
    import json

    cfg = vae_config(kind, "small", logvar="per_channel", decoder_causal=True)
    again = from_dict(type(cfg), json.loads(to_json(cfg)))
    assert again == cfg and to_dict(again) == to_dict(cfg)
    assert dataclasses.is_dataclass(again) and again.encoder_strides == cfg.encoder_strides


def test_config_errors_are_sentences() -> None:
    with pytest.raises(ConfigError, match="logvar must be one of"):
        vae_config("ltx", "tiny", logvar="per-channel")
    with pytest.raises(ConfigError, match="Unknown VAE size"):
        vae_config("ltx", "huge")
    with pytest.raises(ConfigError, match="decoder strides must undo"):
        vae_config("ltx", "tiny", decoder_strides=[[2, 2, 2], [2, 2, 2], [1, 2, 2]])
    with pytest.raises(KeyError, match="did you mean|Did you mean"):
        vae_config("ltxx", "tiny")
    with pytest.raises(dataclasses.FrozenInstanceError):
        vae_config("ltx", "tiny").latent_channels = 4  # type: ignore[misc]


@pytest.mark.parametrize("kind", KINDS)
def test_deterministic_with_seed(kind: str) -> None:
    def run() -> tuple[torch.Tensor, ...]:
        torch.manual_seed(3)
        vae = vae_config(kind, "tiny").build()
        with torch.no_grad():
            for name, param in vae.named_parameters():
                if "noise_scale" in name:
                    param.fill_(0.3)
        video = video_for(vae, seed=5)
        with torch.no_grad():
            return vae(video, generator=torch.Generator().manual_seed(7))

    first, second = run(), run()
    for a, b in zip(first, second):
        assert torch.equal(a, b)


def test_latent_normalisation_round_trip_and_buffers() -> None:
    vae = vae_config("ltx", "tiny").build()
    with torch.no_grad():
        vae.latents_mean.copy_(torch.randn(128))
        vae.latents_std.copy_(torch.rand(128) + 0.5)
    z = torch.randn(2, 128, 2, 2, 3)
    normed = vae.normalize_latents(z)
    torch.testing.assert_close(normed[:, 5], (z[:, 5] - vae.latents_mean[5]) / vae.latents_std[5])
    torch.testing.assert_close(vae.denormalize_latents(normed), z)
    state = vae.state_dict()
    assert state["latents_mean"].shape == (128,) and "latents_std" in state
    fresh = vae_config("ltx", "tiny").build()
    fresh.load_state_dict(state)
    assert torch.equal(fresh.latents_std, vae.latents_std)


def test_pixel_norm_and_its_gradient_match_a_reference() -> None:
    from models.vae.blocks import pixel_norm

    x = torch.randn(2, 5, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    reference = x / torch.sqrt((x**2).mean(dim=1, keepdim=True) + 1e-8)
    out = pixel_norm(x)
    torch.testing.assert_close(out, reference)
    g = torch.randn_like(out)
    (grad,) = torch.autograd.grad(out, x, g)
    (ref_grad,) = torch.autograd.grad(reference, x, g)
    torch.testing.assert_close(grad, ref_grad)


@pytest.mark.parametrize("kind", KINDS)
def test_inference_path_matches_training_path(kind: str) -> None:
    """Without grad the blocks work in place and use oneDNN convs; results must not change."""
    torch.manual_seed(0)
    vae = vae_config(kind, "tiny").build()
    with torch.no_grad():
        for name, param in vae.named_parameters():
            if "noise_scale" in name:
                param.fill_(0.2)
    video = video_for(vae, batch=1)
    t = torch.tensor([0.3])
    with torch.no_grad():
        fast = vae(video, sample_posterior=False, generator=torch.Generator().manual_seed(0), timestep=t)[0]
    slow = vae(video, sample_posterior=False, generator=torch.Generator().manual_seed(0), timestep=t)[0]
    torch.testing.assert_close(fast, slow.detach(), atol=1e-5, rtol=1e-5)
