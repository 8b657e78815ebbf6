"""The VAE training stage: one step per switch and per loss (generated from the registries),
checkpoint/resume, determinism, and the train-vae / eval-recon commands."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from ablations import artifacts
from ablations.stages.train_vae import VAETrainConfig, build_state, train_vae, vae_training_step
from models.config import switch_values
from models.losses.base import LOSSES, VAELossConfig, weight_fields
from models.vae import VAES, vae_config

DEVICE = torch.device("cpu")


def _video(kind: str, seed: int = 0) -> torch.Tensor:
    frames = 9 if kind == "ltx" else 5  # 1 + 8k for ltx, 1 + 4k for the 4x temporal conventional VAE
    g = torch.Generator().manual_seed(seed)
    return torch.rand(2, 3, frames, 32, 32, generator=g) * 2 - 1  # (B, 3, T, H, W) in [-1, 1]


def _assert_step_is_finite(state, video) -> dict[str, float]:
    losses = vae_training_step(state, video)
    assert all(math.isfinite(v) for v in losses.values()), losses
    grads = [p.grad for p in state.vae.parameters() if p.requires_grad]
    assert any(g is not None for g in grads), "no parameter received a gradient"
    assert all(torch.isfinite(g).all() for g in grads if g is not None)
    return losses


SWITCH_CASES = [
    (kind, field, value)
    for kind, cls in VAES.items()
    for field, values in switch_values(cls).items()
    for value in values
]


@pytest.mark.parametrize("kind,field,value", SWITCH_CASES, ids=[f"{k}-{f}={v}" for k, f, v in SWITCH_CASES])
def test_every_vae_switch_trains_one_step(kind, field, value):
    cfg = dataclasses.replace(vae_config(kind, "tiny"), **{field: value})
    state = build_state(cfg, VAELossConfig(), VAETrainConfig(seed=0), DEVICE)
    _assert_step_is_finite(state, _video(kind))


@pytest.mark.parametrize("loss_name", LOSSES.names())
def test_every_loss_alone_trains_one_step(loss_name):
    only = {name: 0.0 for name in weight_fields(VAELossConfig())}
    only[loss_name] = 1.0
    loss_cfg = VAELossConfig(**only)
    vae_cfg = vae_config("ltx", "tiny", decoder_timestep_conditioning=True, decoder_inject_noise=(True,) * 4)
    state = build_state(vae_cfg, loss_cfg, VAETrainConfig(seed=0), DEVICE)
    assert list(state.weights) == [loss_name]
    losses = _assert_step_is_finite(state, _video("ltx"))
    assert loss_name in losses
    if state.terms[loss_name].adversarial:
        assert "discriminator" in losses
        disc_grads = [p.grad for p in state.terms[loss_name].parameters()]
        assert any(g is not None and torch.isfinite(g).all() and g.abs().sum() > 0 for g in disc_grads)


def test_adversarial_terms_wait_for_gan_start_step():
    loss_cfg = VAELossConfig(rgan=0.1, gan_start_step=2)
    state = build_state(vae_config("ltx", "tiny"), loss_cfg, VAETrainConfig(seed=0), DEVICE)
    first = vae_training_step(state, _video("ltx"))
    assert "rgan" not in first and "discriminator" not in first
    vae_training_step(state, _video("ltx"))
    third = vae_training_step(state, _video("ltx"))
    assert "rgan" in third and "discriminator" in third


def _train(tmp_path, name, steps, stop_after=None, seed=0):
    videos = torch.cat([_video("ltx", s) for s in range(3)])  # (6, 3, 9, 32, 32)
    train = VAETrainConfig(steps=steps, batch_size=2, checkpoint_every=2, seed=seed, warmup_steps=2)
    out = tmp_path / name
    summary = train_vae(vae_config("ltx", "tiny"), VAELossConfig(dwt=0.1), train, videos, out,
                        progress=False, stop_after=stop_after)
    return out, summary


def test_interrupted_training_resumes_to_identical_weights(tmp_path):
    straight, _ = _train(tmp_path, "straight", steps=5)
    part, summary = _train(tmp_path, "resumed", steps=5, stop_after=3)
    assert summary == {**summary, "steps": 3, "finished": False}
    assert not (part / "vae.safetensors").exists(), "an interrupted stage must not look finished"
    _, resumed = _train(tmp_path, "resumed", steps=5)
    assert resumed["resumed_from"] == 3 and resumed["finished"]
    a, b = artifacts.load(straight, "vae")[0], artifacts.load(part, "vae")[0]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


def test_training_is_deterministic_and_seed_sensitive(tmp_path):
    import json

    one, _ = _train(tmp_path, "one", steps=3)
    two, _ = _train(tmp_path, "two", steps=3)
    other, _ = _train(tmp_path, "other", steps=3, seed=1)
    curve = lambda p: [row["total"] for row in json.loads((p / "curve.json").read_text())]  # noqa: E731
    assert curve(one) == curve(two)
    assert curve(one) != curve(other)


def test_latent_statistics_are_saved_and_normalise(tmp_path):
    from ablations.stages.train_vae import load_vae

    out, _ = _train(tmp_path, "stats", steps=2)
    vae = load_vae(out, torch.device("cpu"))
    assert not torch.equal(vae.latents_std, torch.ones_like(vae.latents_std))
    mean, _ = vae.encode(_video("ltx"))
    z = vae.normalize_latents(mean)
    assert z.shape == mean.shape
    torch.testing.assert_close(vae.denormalize_latents(z), mean)


def test_nan_loss_raises_a_clear_error(tmp_path):
    from ablations.stages.common import NonFiniteLossError

    videos = torch.full((2, 3, 9, 32, 32), float("nan"))
    with pytest.raises(NonFiniteLossError, match="non-finite loss at step 0"):
        train_vae(vae_config("ltx", "tiny"), VAELossConfig(), VAETrainConfig(steps=2, batch_size=2),
                  videos, tmp_path / "nan", progress=False)


def test_train_and_eval_commands_end_to_end(tmp_path, capsys):
    import json

    from ablations.cli import main

    out = tmp_path / "vae"
    code = main(["train-vae", "--steps", "3", "--batch-size", "2", "--out", str(out), "--resolution", "32x32",
                 "--frames", "9", "--clips-per-video", "1", "--set", "loss.dwt=0.1"])
    assert code == 0 and (out / "vae.safetensors").exists()
    assert json.loads((out / "run_config.json").read_text())["loss"]["dwt"] == 0.1
    capsys.readouterr()
    code = main(["eval-recon", "--checkpoint", str(out), "--metrics", "psnr,ssim", "--json",
                 "--clips-per-video", "1"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["clips"] >= 1
    assert {"psnr", "ssim", "mean_colour_baseline.psnr"} <= set(report["summary"])


def test_bad_override_is_one_sentence(tmp_path, capsys):
    from ablations.cli import main

    code = main(["train-vae", "--out", str(tmp_path / "x"), "--set", "vae.logvar=unifrom"])
    err = capsys.readouterr().err
    assert code == 2
    assert "must be one of 'uniform', 'per_channel'" in err and "Did you mean 'uniform'" in err
    assert "Traceback" not in err


def test_generated_latents_are_noised_in_the_configured_space():
    """raw: de-normalise then noise (diffusers); normalized: noise then de-normalise (LTX-Video)."""
    from ablations.stages.sample import decode_latents
    from models.flow import FlowConfig, prepare_decode

    torch.manual_seed(0)
    vae = vae_config("ltx", "tiny", decoder_inject_noise="none").build().eval()
    with torch.no_grad():
        vae.latents_mean.copy_(torch.randn(128))
        vae.latents_std.copy_(torch.rand(128) * 3 + 0.5)
    latents = torch.randn(1, 128, 2, 2, 2)
    for space in ("raw", "normalized"):
        flow = FlowConfig(decode_noise_space=space)
        got = decode_latents(vae, latents, flow, torch.Generator().manual_seed(4))
        if space == "raw":
            z, t = prepare_decode(vae.denormalize_latents(latents), flow, torch.Generator().manual_seed(4))
        else:
            noisy, t = prepare_decode(latents, flow, torch.Generator().manual_seed(4))
            z = vae.denormalize_latents(noisy)
        with torch.no_grad():
            torch.testing.assert_close(got, vae.decode(z, timestep=t).clamp(-1, 1))
    raw = decode_latents(vae, latents, FlowConfig(decode_noise_space="raw"), torch.Generator().manual_seed(4))
    assert (raw - got).abs().max() > 1e-4  # the two spaces decode differently
