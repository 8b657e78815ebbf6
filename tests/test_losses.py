"""VAE loss terms: pure functions against independent references, and the registry contract."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import pywt
import torch
import torch.nn.functional as F

from models.config import ConfigError, from_dict, replace_path, to_dict
from models.losses import (
    BAND_NAMES,
    DWT_BAND_PRESETS,
    LOSSES,
    LossInputs,
    VAELossConfig,
    build_loss_terms,
    diffusion_loss,
    dwt_band_shares,
    dwt_loss,
    haar_dwt3d,
    hinge_discriminator_loss,
    hinge_generator_loss,
    kl_loss,
    l1_loss,
    mse_loss,
    rgan_discriminator_loss,
    rgan_generator_loss,
    rgan_pairs,
    sample_decoder_noise,
    weight_fields,
)
from models.losses.dwt import PYWT_KEYS


def _pywt_bands(x: np.ndarray) -> np.ndarray:
    """pywt's 3D Haar coefficients of (B, C, T, H, W), stacked in BAND_NAMES order -> (B, C, 8, t, h, w)."""
    coeffs = pywt.dwtn(x, "haar", axes=(2, 3, 4))
    return np.stack([coeffs[key] for key in PYWT_KEYS], axis=2)


# ---------------------------------------------------------------- DWT


@pytest.mark.parametrize("shape", [(1, 1, 2, 2, 2), (2, 3, 4, 8, 6), (3, 2, 8, 16, 12)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_haar_dwt3d_matches_pywt(shape, dtype):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0), dtype=dtype)
    ours = haar_dwt3d(x)
    ref = _pywt_bands(x.double().numpy())
    assert ours.shape == ref.shape == (shape[0], shape[1], 8, shape[2] // 2, shape[3] // 2, shape[4] // 2)
    np.testing.assert_allclose(ours.double().numpy(), ref, atol=1e-5, rtol=0)


def test_pywt_keys_follow_band_names():
    assert BAND_NAMES == ("LLL", "LLH", "LHL", "LHH", "HLL", "HLH", "HHL", "HHH")
    assert PYWT_KEYS == ("aaa", "aad", "ada", "add", "daa", "dad", "dda", "ddd")


@pytest.mark.parametrize("axis, band", [(2, "HLL"), (3, "LHL"), (4, "LLH")])
def test_band_order_by_construction(axis, band):
    # an alternating +-1 pattern along one axis lives in exactly one band: high there, low elsewhere
    shape = [1, 1, 4, 4, 4]
    sign = torch.tensor([1.0, -1.0]).repeat(2)  # (4,)
    view = [1] * 5
    view[axis] = 4
    x = sign.view(view).expand(shape).contiguous()
    energy = haar_dwt3d(x).pow(2).sum(dim=(0, 1, 3, 4, 5))  # (8,) energy per band
    assert energy.argmax().item() == BAND_NAMES.index(band)
    assert torch.isclose(energy.sum(), x.pow(2).sum())  # all energy is in that one band
    assert energy.sum() - energy.max() < 1e-9


def test_haar_dwt3d_is_orthonormal():
    x = torch.randn(2, 3, 4, 8, 8, dtype=torch.float64)
    assert torch.isclose(haar_dwt3d(x).pow(2).sum(), x.pow(2).sum())


def test_odd_frames_replicate_last_matches_pywt_symmetric_mode():
    x = torch.randn(2, 2, 5, 6, 4, dtype=torch.float64)  # T = 1 + 4: odd
    np.testing.assert_allclose(haar_dwt3d(x, odd_frames="replicate_last").numpy(), _pywt_bands(x.numpy()), atol=1e-12)


def test_odd_frames_replicate_first_pairs_frame_zero_with_itself():
    x = torch.randn(1, 3, 9, 4, 4, dtype=torch.float64)  # 1 + 8k frames, as the causal VAE sees them
    padded = np.concatenate([x[:, :, :1].numpy(), x.numpy()], axis=2)
    ours = haar_dwt3d(x)  # default: replicate_first
    np.testing.assert_allclose(ours.numpy(), _pywt_bands(padded), atol=1e-12)
    # frame 0 paired with itself has no temporal detail
    assert ours[:, :, 4:, 0].abs().max() < 1e-12


def test_odd_height_and_width_match_pywt():
    x = torch.randn(1, 2, 4, 7, 5, dtype=torch.float64)
    np.testing.assert_allclose(haar_dwt3d(x).numpy(), _pywt_bands(x.numpy()), atol=1e-12)


def test_haar_dwt3d_rejects_bad_input():
    with pytest.raises(ValueError, match="B, C, T, H, W"):
        haar_dwt3d(torch.zeros(3, 4, 4, 4))
    with pytest.raises(ValueError, match="odd_frames"):
        haar_dwt3d(torch.zeros(1, 1, 3, 2, 2), odd_frames="drop")  # type: ignore[arg-type]


def test_dwt_loss_is_l1_of_pywt_coefficients():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(2, 3, 4, 8, 8, generator=g), torch.randn(2, 3, 4, 8, 8, generator=g)
    ref = np.abs(_pywt_bands(x.double().numpy()) - _pywt_bands(y.double().numpy())).mean()
    assert dwt_loss(x, y).item() == pytest.approx(ref, abs=1e-5)
    assert dwt_loss(x, x).item() == 0.0


def _old_dwt_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The DWT loss as it was before per-band weights (commit ee2d297), copied verbatim."""
    return F.l1_loss(haar_dwt3d(x), haar_dwt3d(y))


def test_default_band_weights_reproduce_the_old_loss_bit_for_bit():
    g = torch.Generator().manual_seed(6)
    x = torch.randn(2, 3, 9, 16, 16, generator=g)
    y = torch.randn(2, 3, 9, 16, 16, generator=g, requires_grad=True)
    assert VAELossConfig().dwt_bands == DWT_BAND_PRESETS["equal"] == (1.0,) * 8
    old = _old_dwt_loss(y, x)
    (old_grad,) = torch.autograd.grad(old, y)
    term = build_loss_terms(VAELossConfig(dwt=1.0))["dwt"]
    new = term(LossInputs(video=x, recon=y, mean=torch.zeros(1), logvar=torch.zeros(1)))
    (new_grad,) = torch.autograd.grad(new, y)
    assert torch.equal(new, old) and torch.equal(new_grad, old_grad)
    assert torch.equal(dwt_loss(y, x, band_weights=(1.0,) * 8), old)


@pytest.mark.parametrize("weights", [DWT_BAND_PRESETS["detail"], (2.0,) * 8, (0.5, 0, 1, 0, 3, 0, 0, 1)])
def test_band_weighted_loss_matches_pywt(weights):
    g = torch.Generator().manual_seed(7)
    x, y = torch.randn(2, 3, 4, 8, 6, generator=g), torch.randn(2, 3, 4, 8, 6, generator=g)
    per_band = np.abs(_pywt_bands(x.double().numpy()) - _pywt_bands(y.double().numpy())).mean(axis=(0, 1, 3, 4, 5))
    ref = float((np.asarray(weights) * per_band).sum() / 8)
    assert dwt_loss(x, y, band_weights=weights).item() == pytest.approx(ref, rel=1e-5)
    shares = dwt_band_shares(x, y)
    np.testing.assert_allclose(shares.double().numpy(), per_band / per_band.sum(), rtol=1e-5)


def test_detail_preset_drops_exactly_the_lll_part():
    g = torch.Generator().manual_seed(8)
    x, y = torch.randn(1, 3, 4, 8, 8, generator=g), torch.randn(1, 3, 4, 8, 8, generator=g)
    lll_part = (haar_dwt3d(x) - haar_dwt3d(y))[:, :, 0].abs().mean() / 8
    detail = dwt_loss(x, y, band_weights=DWT_BAND_PRESETS["detail"])
    assert detail.item() == pytest.approx((_old_dwt_loss(x, y) - lll_part).item(), rel=1e-6)
    # a low-pass-only change (a constant offset) lives in LLL alone: the detail loss ignores it
    assert dwt_loss(x + 0.5, x, band_weights=DWT_BAND_PRESETS["detail"]).item() == pytest.approx(0.0, abs=1e-6)
    assert dwt_band_shares(x + 0.5, x)[0].item() == pytest.approx(1.0)


def test_dwt_bands_config_takes_presets_and_rejects_bad_weights():
    assert VAELossConfig(dwt_bands="detail").dwt_bands == (0.0,) + (1.0,) * 7  # type: ignore[arg-type]
    cfg = replace_path(VAELossConfig(dwt=0.1), "dwt_bands", "detail")  # --set loss.dwt_bands=detail
    assert cfg.dwt_bands == DWT_BAND_PRESETS["detail"] and from_dict(VAELossConfig, to_dict(cfg)) == cfg
    assert replace_path(cfg, "dwt_bands", [1, 0, 0, 0, 0, 0, 0, 0]).dwt_bands == (1.0,) + (0.0,) * 7
    assert build_loss_terms(cfg)["dwt"].band_weights == DWT_BAND_PRESETS["detail"]
    for bad, match in (("details", "Unknown DWT band preset"), ((1.0,) * 7, "need 8"),
                       ((-1.0,) + (1.0,) * 7, ">= 0"), ((0.0,) * 8, "not all 0")):
        with pytest.raises(ConfigError, match=match):
            VAELossConfig(dwt_bands=bad)  # type: ignore[arg-type]


# ---------------------------------------------------------------- pure functions


def test_recon_losses_match_numpy():
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(2, 3, 3, 4, 4, generator=g), torch.randn(2, 3, 3, 4, 4, generator=g)
    an, bn = a.double().numpy(), b.double().numpy()
    assert l1_loss(a, b).item() == pytest.approx(np.abs(an - bn).mean(), rel=1e-5)
    assert mse_loss(a, b).item() == pytest.approx(((an - bn) ** 2).mean(), rel=1e-5)
    assert diffusion_loss(a, b, "l1").item() == pytest.approx(np.abs(an - bn).mean(), rel=1e-5)
    assert diffusion_loss(a, b, "mse").item() == pytest.approx(((an - bn) ** 2).mean(), rel=1e-5)
    with pytest.raises(ValueError, match="l1"):
        diffusion_loss(a, b, "huber")


def test_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(3)
    mean = torch.randn(2, 4, 2, 3, 3, generator=g, dtype=torch.float64)
    logvar = torch.randn(2, 4, 2, 3, 3, generator=g, dtype=torch.float64)
    posterior = torch.distributions.Normal(mean, (0.5 * logvar).exp())
    prior = torch.distributions.Normal(torch.zeros_like(mean), torch.ones_like(mean))
    ref = torch.distributions.kl_divergence(posterior, prior).mean()
    assert kl_loss(mean, logvar).item() == pytest.approx(ref.item(), rel=1e-12)
    assert kl_loss(torch.zeros(3), torch.zeros(3)).item() == 0.0


def test_hinge_losses_match_formula():
    real = torch.tensor([2.0, 0.5, -1.0])
    fake = torch.tensor([-2.0, 0.0, 3.0])
    # relu(1 - real) = [0, .5, 2] -> mean 5/6; relu(1 + fake) = [0, 1, 4] -> mean 5/3
    assert hinge_discriminator_loss(real, fake).item() == pytest.approx(5 / 6 + 5 / 3)
    assert hinge_generator_loss(fake).item() == pytest.approx(-1 / 3)
    logits = torch.tensor([2.0, 0.5]).view(2, 1, 1, 1, 1)
    labels = torch.tensor([1.0, -1.0])
    # signed margins [2, -0.5] -> relu(1 - m) = [0, 1.5]
    assert rgan_discriminator_loss(logits, labels).item() == pytest.approx(0.75)
    assert rgan_generator_loss(logits, labels).item() == pytest.approx(0.75)


def test_sample_decoder_noise():
    z = torch.randn(64, 4, 2, 3, 3)
    noisy, t = sample_decoder_noise(z, 0.2, generator=torch.Generator().manual_seed(0))
    assert noisy.shape == z.shape and t.shape == (64,)
    assert t.min() >= 0 and t.max() <= 0.2 and t.max() > 0.1  # spread over the interval
    # reproduce the formula with the same generator draws
    g = torch.Generator().manual_seed(0)
    t_ref = torch.rand(64, generator=g) * 0.2
    eps = torch.randn(z.shape, generator=g)
    torch.testing.assert_close(noisy, (1 - t_ref.view(-1, 1, 1, 1, 1)) * z + t_ref.view(-1, 1, 1, 1, 1) * eps)
    clean, t0 = sample_decoder_noise(z, 0.0)
    assert torch.equal(clean, z) and torch.all(t0 == 0)
    with pytest.raises(ValueError, match="max_t"):
        sample_decoder_noise(z, 1.5)


# ---------------------------------------------------------------- registry and config


def test_every_loss_has_a_config_weight_and_vice_versa():
    assert set(weight_fields(VAELossConfig())) == set(LOSSES.names())


def test_build_loss_terms_keeps_only_positive_weights():
    terms = build_loss_terms(VAELossConfig(l1=1.0, kl=0.0, dwt=0.5, rgan=0.1))
    assert set(terms) == {"l1", "dwt", "rgan"}
    assert set(build_loss_terms(VAELossConfig())) == {"l1", "kl"}
    with pytest.raises(ValueError, match=">= 0"):
        build_loss_terms(VAELossConfig(mse=-1.0))


def test_unknown_loss_suggests_a_name():
    with pytest.raises(KeyError, match="Did you mean 'rgan'"):
        LOSSES.get("rgn")


def test_loss_config_round_trips_and_is_frozen():
    cfg = VAELossConfig(dwt=0.1, gan=0.5, disc_channels=8, disc_betas=(0.0, 0.99))
    assert from_dict(VAELossConfig, to_dict(cfg)) == cfg
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.l1 = 2.0  # type: ignore[misc]


def test_adversarial_terms_start_at_gan_start_step():
    terms = build_loss_terms(VAELossConfig(gan=1.0, rgan=1.0, gan_start_step=100))
    assert not terms["gan"].is_active(99) and terms["gan"].is_active(100)
    assert not terms["rgan"].is_active(0) and terms["rgan"].is_active(100)
    assert build_loss_terms(VAELossConfig())["l1"].is_active(0)


def _inputs(requires_grad: bool = True) -> LossInputs:
    g = torch.Generator().manual_seed(4)
    shape = (2, 3, 3, 16, 16)
    make = lambda s: torch.randn(s, generator=g).requires_grad_(requires_grad)  # noqa: E731
    return LossInputs(
        video=torch.rand(shape, generator=g) * 2 - 1,
        recon=make(shape),
        mean=make((2, 4, 1, 2, 2)),
        logvar=make((2, 4, 1, 2, 2)),
        denoised=make(shape),
    )


@pytest.mark.parametrize("name", LOSSES.names())
def test_each_term_alone_gives_finite_scalar_and_grads(name):
    torch.manual_seed(0)
    term = build_loss_terms(VAELossConfig(**{w: float(w == name) for w in LOSSES.names()}))[name]
    inp = _inputs()
    loss = term(inp)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    grads = [t.grad for t in (inp.recon, inp.mean, inp.logvar, inp.denoised) if t.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    if term.adversarial:
        term.zero_grad()
        detached = dataclasses.replace(inp, recon=inp.recon.detach())
        d_loss = term.discriminator_loss(detached)
        assert d_loss.ndim == 0 and torch.isfinite(d_loss)
        d_loss.backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in term.parameters())
    else:
        with pytest.raises(TypeError, match="not adversarial"):
            term.discriminator_loss(inp)


def test_diffusion_term_needs_denoised():
    term = build_loss_terms(VAELossConfig(diffusion=1.0))["diffusion"]
    assert term.needs_denoised
    with pytest.raises(ValueError, match="denoised"):
        term(dataclasses.replace(_inputs(), denoised=None))


# ---------------------------------------------------------------- adversarial behaviour


def test_rgan_pairs_randomise_order_and_label_follows_it():
    video = torch.rand(64, 3, 1, 2, 2)
    recon = torch.rand(64, 3, 1, 2, 2)
    pairs, labels = rgan_pairs(video, recon, generator=torch.Generator().manual_seed(0))
    assert pairs.shape == (64, 6, 1, 2, 2)
    assert set(labels.tolist()) == {-1.0, 1.0}  # both orders appear
    for i in range(64):
        first, second = pairs[i, :3], pairs[i, 3:]
        if labels[i] > 0:
            assert torch.equal(first, video[i]) and torch.equal(second, recon[i])
        else:
            assert torch.equal(first, recon[i]) and torch.equal(second, video[i])
    _, labels2 = rgan_pairs(video, recon, generator=torch.Generator().manual_seed(1))
    assert not torch.equal(labels, labels2)  # a fresh draw per call


def _blur(x: torch.Tensor) -> torch.Tensor:
    """3x3 spatial box blur of (B, C, T, H, W)."""
    b, c, t, h, w = x.shape
    frames = x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)  # (B*T, C, H, W)
    blurred = F.avg_pool2d(F.pad(frames, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    return blurred.reshape(b, t, c, h, w).permute(0, 2, 1, 3, 4)


def _train_discriminator(term, steps: int = 60) -> None:
    opt = torch.optim.Adam(term.parameters(), lr=5e-3, betas=(0.5, 0.9))
    g = torch.Generator().manual_seed(5)
    for _ in range(steps):
        video = torch.rand(4, 3, 2, 16, 16, generator=g) * 2 - 1
        opt.zero_grad()
        term.discriminator_loss(LossInputs(video, _blur(video), torch.zeros(1), torch.zeros(1))).backward()
        opt.step()


def test_gan_discriminator_learns_clean_vs_blurred():
    torch.manual_seed(0)
    term = build_loss_terms(VAELossConfig(gan=1.0, disc_channels=8, disc_layers=2))["gan"]
    video = torch.rand(8, 3, 2, 16, 16, generator=torch.Generator().manual_seed(99)) * 2 - 1
    inp = LossInputs(video, _blur(video), torch.zeros(1), torch.zeros(1))
    before = term.discriminator_loss(inp).item()
    _train_discriminator(term)
    with torch.no_grad():
        after = term.discriminator_loss(inp).item()
        real = term.discriminator(video).mean(dim=(1, 2, 3, 4))  # (8,) per-video score
        fake = term.discriminator(_blur(video)).mean(dim=(1, 2, 3, 4))
    assert after < 0.5 * before
    assert (real > fake).all()  # every held-out clean video scores above its blurred copy


def test_rgan_discriminator_learns_which_is_original():
    torch.manual_seed(0)
    term = build_loss_terms(VAELossConfig(rgan=1.0, disc_channels=8, disc_layers=2))["rgan"]
    video = torch.rand(32, 3, 2, 16, 16, generator=torch.Generator().manual_seed(99)) * 2 - 1
    _train_discriminator(term)
    with torch.no_grad():
        pairs, labels = rgan_pairs(video, _blur(video), generator=torch.Generator().manual_seed(7))
        guess = term.discriminator(pairs).mean(dim=(1, 2, 3, 4)).sign()  # (32,)
    assert set(labels.tolist()) == {-1.0, 1.0}
    assert (guess == labels).float().mean() >= 0.95  # held-out pairs in both orders


@pytest.mark.parametrize("name", [n for n in LOSSES.names() if LOSSES.get(n).adversarial])
def test_discriminator_loss_never_reaches_the_vae(name):
    term = build_loss_terms(VAELossConfig(**{name: 1.0}, disc_channels=4, disc_layers=1))[name]
    inp = _inputs()  # recon requires grad: a caller who forgot to detach
    term.discriminator_loss(inp).backward()
    assert inp.recon.grad is None
    assert all(p.grad is not None for p in term.parameters())


def test_vae_core_runs_the_dwt_loss_on_all_bands_and_on_detail_bands():
    from ablations.graph import expand_variants
    from ablations.recipes import RECIPES

    sweep = RECIPES.get("vae-core")()
    variants = expand_variants(sweep.base, sweep.axes, sweep.seeds, sweep.variants)
    arms = {v.axes["dwt"]: (v.config.loss.dwt, v.config.loss.dwt_bands) for v in variants}
    assert arms == {"none": (0.0, DWT_BAND_PRESETS["equal"]), "all_bands": (0.1, DWT_BAND_PRESETS["equal"]),
                    "detail_bands": (0.1, DWT_BAND_PRESETS["detail"])}
