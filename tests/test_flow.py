"""Rectified flow: schedule parity with diffusers, exact Euler transport, i2v holding, CFG, loss masking."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from models.dit import dit_config
from models.flow import (
    FlowConfig,
    flow_config,
    flow_matching_loss,
    guided_velocity,
    i2v_mask,
    prepare_decode,
    sample,
    sample_timesteps,
    sampling_schedule,
    token_shift,
)


class Recorder(nn.Module):
    """A stand-in velocity model: returns `fn(x, t)` and records every call's inputs."""

    def __init__(self, patch: str, fn) -> None:
        super().__init__()
        self.config = dataclasses.make_dataclass("Cfg", ["patch"])(patch)
        self.weight = nn.Parameter(torch.zeros(()))
        self.fn = fn
        self.calls: list[dict] = []

    def forward(self, x, timestep, text, text_mask, fps):
        self.calls.append(dict(x=x.clone(), t=timestep.clone(), text=text.clone(), mask=text_mask.clone()))
        return self.fn(x, timestep) + 0 * self.weight


def _per_sample(t: torch.Tensor) -> torch.Tensor:
    return t if t.dim() == 1 else t.amax(dim=1)


@pytest.mark.parametrize("steps,tokens", [(8, 1536), (30, 6144), (4, 300)])
def test_schedule_matches_diffusers_ltx_scheduler(steps: int, tokens: int) -> None:
    pytest.importorskip("diffusers")
    import numpy as np
    from diffusers import FlowMatchEulerDiscreteScheduler

    sched = FlowMatchEulerDiscreteScheduler(
        use_dynamic_shifting=True, base_shift=0.95, max_shift=2.05,
        base_image_seq_len=1024, max_image_seq_len=4096, shift_terminal=0.1,
    )  # LTX-Video 0.9.1's scheduler_config.json
    cfg = FlowConfig()
    sched.set_timesteps(sigmas=np.linspace(1.0, 1 / steps, steps), mu=token_shift(tokens, cfg))
    torch.testing.assert_close(sampling_schedule(steps, tokens, cfg), sched.sigmas.float(), rtol=1e-5, atol=1e-6)


def test_euler_with_exact_velocity_transports_noise_to_data() -> None:
    x0 = torch.randn(2, 4, 3, 2, 2, generator=torch.Generator().manual_seed(1))
    model = Recorder("1x1x1", lambda x, t: (x - x0) / _per_sample(t).view(-1, 1, 1, 1, 1))  # v = (x_t - x0) / t
    text, mask = torch.zeros(2, 3, 5), torch.ones(2, 3, dtype=torch.bool)
    out = sample(model, tuple(x0.shape), text, mask, None, 24.0, 5, 1.0, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, x0, rtol=1e-4, atol=1e-4)
    assert len(model.calls) == 5 and model.calls[0]["t"].tolist() == [1.0, 1.0]


def test_one_step_goes_from_noise_to_data_without_nan() -> None:
    # the stretch to shift_terminal would divide 0 by 0 here (diffusers gives [nan, 0] and black videos)
    assert sampling_schedule(1, 12, flow_config("tiny")).tolist() == [1.0, 0.0]
    x0 = torch.randn(1, 4, 3, 2, 2, generator=torch.Generator().manual_seed(1))
    model = Recorder("1x1x1", lambda x, t: (x - x0) / _per_sample(t).view(-1, 1, 1, 1, 1))  # v = (x_t - x0) / t
    out = sample(model, tuple(x0.shape), torch.zeros(1, 3, 5), torch.ones(1, 3, dtype=torch.bool), None, 24.0, 1, 3.0,
                 generator=torch.Generator().manual_seed(0), cfg=flow_config("tiny"))
    torch.testing.assert_close(out, x0)  # one Euler step of the exact velocity lands on the data
    with pytest.raises(ValueError, match="at least 1 step"):
        sampling_schedule(0, 12, FlowConfig())


@pytest.mark.parametrize("noise_scale", [0.0, 0.15])
def test_i2v_sampling_holds_conditioning_frame(noise_scale: float) -> None:
    cond = torch.randn(1, 4, 1, 4, 4)
    model = Recorder("4x4x2", lambda x, t: torch.ones_like(x))
    cfg = FlowConfig(i2v_cond_noise_scale=noise_scale)
    text, mask = torch.zeros(1, 3, 5), torch.ones(1, 3, dtype=torch.bool)
    out = sample(model, (1, 4, 5, 4, 4), text, mask, None, 24.0, 6, 1.0, cond_latents=cond,
                 generator=torch.Generator().manual_seed(0), cfg=cfg)
    torch.testing.assert_close(out[:, :, :1], cond)  # held exactly in the result
    assert (out[:, :, 1:] - cond).abs().max() > 0.1  # the rest was denoised
    schedule = sampling_schedule(6, 3, cfg)
    for step, call in enumerate(model.calls):
        t = schedule[step]
        assert call["t"].shape == (1, 3)  # per token: 3 token rows x 1 x 1
        assert call["t"][0, 0] == 0 and torch.allclose(call["t"][0, 1:], t)
        deviation = (call["x"][:, :, :1] - cond).abs().max()
        assert deviation <= noise_scale * t**2 * 6  # N(0,1) noise, 6 sigma
        assert (deviation > 0) == (noise_scale > 0)


def test_i2v_rejects_wrong_conditioning_length() -> None:
    model = Recorder("1x1x1", lambda x, t: x)
    with pytest.raises(ValueError, match="conditions 1"):
        sample(model, (1, 4, 3, 2, 2), torch.zeros(1, 2, 5), torch.ones(1, 2, dtype=torch.bool), None, 24.0, 2, 1.0,
               cond_latents=torch.zeros(1, 4, 2, 2, 2))


def test_cfg_scale_one_is_the_conditional_prediction_and_scale_three_extrapolates() -> None:
    cfg = dit_config("ltx", "tiny")
    torch.manual_seed(0)
    model = cfg.build().eval()
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 128, 3, 2, 2, generator=g)
    t = torch.tensor([0.4, 0.7])
    text = torch.randn(2, 16, 384, generator=g)
    mask = torch.ones(2, 16, dtype=torch.bool)
    null, null_mask = torch.randn(2, 16, 384, generator=g), torch.zeros(2, 16, dtype=torch.bool)
    null_mask[:, :2] = True
    with torch.no_grad():
        cond = model(x, t, text, mask, 24.0)
        uncond = model(x, t, null, null_mask, 24.0)
        v1 = guided_velocity(model, x, t, text, mask, null, null_mask, 24.0, 1.0)
        v3 = guided_velocity(model, x, t, text, mask, null, null_mask, 24.0, 3.0)
    torch.testing.assert_close(v1, cond)
    torch.testing.assert_close(v3, uncond + 3.0 * (cond - uncond), rtol=1e-4, atol=1e-4)
    assert (v3 - cond).abs().max() > 1e-3
    a = sample(model, (2, 128, 3, 2, 2), text, mask, (null, null_mask), 24.0, 3, 1.0, generator=torch.Generator().manual_seed(0))
    b = sample(model, (2, 128, 3, 2, 2), text, mask, None, 24.0, 3, 1.0, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(a, b)  # scale 1 never looks at the null text


def test_loss_is_mse_to_eps_minus_x0_and_skips_conditioned_frames() -> None:
    x0 = torch.randn(3, 4, 3, 2, 2, generator=torch.Generator().manual_seed(0))
    text, mask = torch.randn(3, 2, 5), torch.ones(3, 2, dtype=torch.bool)
    zero = Recorder("1x1x1", lambda x, t: torch.zeros_like(x))
    cfg = FlowConfig(i2v_probability=0.0, caption_dropout=0.0)
    loss, info = flow_matching_loss(zero, x0, text, mask, 24.0, cfg, torch.Generator().manual_seed(1))
    x_t, t = zero.calls[0]["x"], info["t"]
    tb = t.view(-1, 1, 1, 1, 1)
    eps = (x_t - (1 - tb) * x0) / tb  # recover the noise the loss drew
    torch.testing.assert_close(loss, ((eps - x0) ** 2).mean())
    torch.testing.assert_close(zero.calls[0]["t"], t)

    cfg = FlowConfig(i2v_probability=1.0, caption_dropout=0.0)
    # a model that is wildly wrong on frame 0 only: conditioned frames must not count
    spiky = Recorder("1x1x1", lambda x, t: torch.cat([1e6 * torch.ones_like(x[:, :, :1]), torch.zeros_like(x[:, :, 1:])], 2))
    loss, info = flow_matching_loss(spiky, x0, text, mask, 24.0, cfg, torch.Generator().manual_seed(1))
    assert info["i2v"].all() and loss < 1e3
    call = spiky.calls[0]
    torch.testing.assert_close(call["x"][:, :, :1], x0[:, :, :1])  # frame 0 clean
    assert (call["t"][:, :4] == 0).all() and (call["t"][:, 4:] > 0).all()  # 4 tokens per latent frame


def test_caption_dropout_uses_the_null_text() -> None:
    x0 = torch.randn(2, 4, 3, 2, 2)
    text, mask = torch.randn(2, 3, 5), torch.ones(2, 3, dtype=torch.bool)
    model = Recorder("1x1x1", lambda x, t: torch.zeros_like(x))
    cfg = FlowConfig(caption_dropout=1.0, i2v_probability=0.0)
    flow_matching_loss(model, x0, text, mask, 24.0, cfg, torch.Generator().manual_seed(0))
    assert (model.calls[-1]["text"] == 0).all() and not model.calls[-1]["mask"].any()
    null = (torch.full((1, 3, 5), 7.0), torch.tensor([[True, True, False]]))
    flow_matching_loss(model, x0, text, mask, 24.0, cfg, torch.Generator().manual_seed(0), null_text=null)
    assert (model.calls[-1]["text"] == 7).all() and model.calls[-1]["mask"].tolist() == [[True, True, False]] * 2
    cfg = FlowConfig(caption_dropout=0.0, i2v_probability=0.0)
    flow_matching_loss(model, x0, text, mask, 24.0, cfg, torch.Generator().manual_seed(0), null_text=null)
    torch.testing.assert_close(model.calls[-1]["text"], text)


def test_shifted_logit_normal_follows_the_token_line() -> None:
    for size, tokens, shift in [("full", 1024, 0.95), ("full", 4096, 2.05), ("tiny", 48, 2.05), ("tiny", 12, 0.95)]:
        cfg = flow_config(size)
        t = sample_timesteps(20000, tokens, cfg, torch.Generator().manual_seed(0))
        assert ((t > 0) & (t < 1)).all()
        assert abs(torch.logit(t).mean().item() - shift) < 0.03
    t = sample_timesteps(20000, 4096, flow_config("full", timestep_sampling="uniform"), torch.Generator().manual_seed(0))
    assert abs(t.mean().item() - 0.5) < 0.01


def test_i2v_mask_and_decode_inputs() -> None:
    m = i2v_mask(torch.tensor([True, False]), (5, 2, 2), "4x4x2")
    assert m.shape == (2, 1, 5, 1, 1) and m[0, 0, :, 0, 0].tolist() == [True, False, False, False, False]
    assert not m[1].any()
    z = torch.randn(2, 4, 3, 2, 2)
    noised, t = prepare_decode(z, FlowConfig(), torch.Generator().manual_seed(0))
    torch.testing.assert_close(t, torch.full((2,), 0.05))
    noise = torch.randn(z.shape, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(noised, 0.975 * z + 0.025 * noise)
