"""Rectified flow as LTX-Video trains and samples it (arXiv 2501.00103 §3.1, §3.3).

Conventions (diffusers' FlowMatchEulerDiscreteScheduler and LTX pipelines):
- x_t = (1 - t) x0 + t eps with t in [0, 1] (t = 1 is pure noise); the model predicts the
  velocity v = eps - x0, so an Euler step is x <- x + (t_next - t) v.
- Training timesteps: `uniform`, `logit_normal` (SD3), or `shifted_logit_normal`
  (LTX-Video-Trainer): t = sigmoid(N(mean + shift(n), std)), shift(n) linear in the token
  count n through (shift_min_tokens, shift_min) and (shift_max_tokens, shift_max). LTX's
  anchors are (1024, 0.95) and (4096, 2.05); `flow_config(size)` re-anchors the token
  counts to each preset's resolutions, keeping the shifts.
- Sampling: t_k = linspace(1, 1/steps, steps) -> exponential time shift with mu = shift(n)
  (the same line: LTX-Video's scheduler_config uses base/max_shift 0.95/2.05 at
  1024/4096 tokens) -> stretched so the last value is `shift_terminal` -> then 0. One step
  is [1, 0] (nothing to stretch).
- Classifier-free guidance: captions are dropped with probability `caption_dropout`
  during training and replaced by the *null text*: whatever the caller passes as
  `null_text` (recommended: the text encoder's embedding of the empty caption "" with
  its mask, as diffusers' LTX pipeline encodes its default negative prompt ""), or, when
  none is passed, a zero embedding with an all-False mask. Sampling must use the same.
- Image-to-video: the first token row (latent frame 0; see models/dit/patch.py) is kept
  clean with timestep 0 and left out of the loss with probability `i2v_probability`.
  At sampling it is held at the conditioning latents; the model sees them with added
  noise `i2v_cond_noise_scale * t^2 * N(0, 1)` (LTX-Video inference.py's
  `image_cond_noise_scale`), and they are reset to the clean latents after every step.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from typing import Any, Callable, Literal

import torch
from torch import nn

from models.config import PROBABILITY, ConfigError, Choice, Int, Real, declare_ranges
from models import rng
from models.rng import Generator
from models.dit.patch import first_row_frames, token_grid, token_timesteps


@dataclasses.dataclass(kw_only=True, frozen=True)
class FlowConfig:
    kind: str = "rectified_flow"  # only one flow formulation exists
    timestep_sampling: Literal["uniform", "logit_normal", "shifted_logit_normal"] = "shifted_logit_normal"
    logit_normal_mean: float = 0.0  # mean of the normal before the sigmoid (before the token shift)
    logit_normal_std: float = 1.0  # std of the normal before the sigmoid
    shift_min_tokens: int = 1024  # token count where the shift is shift_min (LTX: 1024)
    shift_max_tokens: int = 4096  # token count where the shift is shift_max (LTX: 4096)
    shift_min: float = 0.95  # LTX's shift at shift_min_tokens (training mean shift and sampler mu)
    shift_max: float = 2.05  # LTX's shift at shift_max_tokens
    shift_terminal: float = 0.1  # last nonzero sampling time (LTX scheduler "shift_terminal")
    caption_dropout: float = 0.1  # probability a caption becomes the null text in training (CFG)
    i2v_probability: float = 0.1  # probability a training sample is image-conditioned (frame 0 clean)
    i2v_cond_noise_scale: float = 0.15  # noise on held conditioning latents at sampling, times t^2
    # a timestep-conditioned VAE decoder decodes (1 - s) z + s eps at t = decode_timestep (LTX 0.9.1);
    # ablations.configs.check_decoder_consistency refuses t or s > 0 for a decoder trained without
    # the diffusion objective (loss.diffusion = 0), which never saw noised latents
    decode_timestep: float = 0.05  # VAE decoder timestep at decode (LTX 0.9.1)
    decode_noise_scale: float = 0.025  # noise mixed into latents before decoding (LTX 0.9.1)
    # the latent space that noise is mixed in: "raw" = the VAE's own latents (diffusers'
    # LTXPipeline, and the space train_vae's diffusion objective noises: its latent statistics
    # only exist after training); "normalized" = per-channel standardised latents, as
    # LTX-Video's own pipeline decodes (the noise then scales with each channel's std)
    decode_noise_space: Literal["raw", "normalized"] = "raw"

    def __post_init__(self) -> None:
        if self.shift_max_tokens <= self.shift_min_tokens:  # the shift line divides by their difference
            raise ConfigError(f"flow.shift_max_tokens ({self.shift_max_tokens}) must be larger than "
                              f"flow.shift_min_tokens ({self.shift_min_tokens}).")


declare_ranges(FlowConfig, {
    "kind": Choice(("rectified_flow",)), "logit_normal_mean": Real(-10.0, 10.0),
    "logit_normal_std": Real(0.0, 10.0, open_lo=True), "shift_min_tokens": Int(1, 10**9),
    "shift_max_tokens": Int(1, 10**9), "shift_min": Real(0.0, 100.0, open_lo=True),
    "shift_max": Real(0.0, 100.0, open_lo=True), "shift_terminal": Real(0.0, 1.0, open_hi=True),
    "caption_dropout": PROBABILITY, "i2v_probability": PROBABILITY, "i2v_cond_noise_scale": PROBABILITY,
    "decode_timestep": PROBABILITY, "decode_noise_scale": PROBABILITY,
})


FLOW_TOKEN_ANCHORS = {"tiny": (12, 48), "small": (256, 1024), "full": (1024, 4096)}


def flow_config(size: str = "full", **overrides: Any) -> FlowConfig:
    """FlowConfig with the shift's token anchors re-scaled to a preset's token range.

    tiny: 12 tokens (17x64x64 at 8192 px/token) .. 48 (17x128x128); small 256 .. 1024;
    full: LTX-Video's 1024 .. 4096.
    """
    if size not in FLOW_TOKEN_ANCHORS:
        raise ConfigError(f"Unknown flow size '{size}'; use one of: {', '.join(FLOW_TOKEN_ANCHORS)}.")
    lo, hi = FLOW_TOKEN_ANCHORS[size]
    return dataclasses.replace(FlowConfig(shift_min_tokens=lo, shift_max_tokens=hi), **overrides)


def _randn(shape: tuple[int, ...], generator: Generator, like: torch.Tensor) -> torch.Tensor:
    """Normal noise (see models.rng: per sample for a BatchRNG, else from `generator`), moved to `like`."""
    return rng.randn(shape, generator, like)


def _rand(n: int, generator: Generator, device: torch.device) -> torch.Tensor:
    return rng.rand(n, generator, device)


def token_shift(tokens: int, cfg: FlowConfig) -> float:
    """The shift line through (shift_min_tokens, shift_min) and (shift_max_tokens, shift_max)."""
    slope = (cfg.shift_max - cfg.shift_min) / (cfg.shift_max_tokens - cfg.shift_min_tokens)
    return cfg.shift_min + slope * (tokens - cfg.shift_min_tokens)


def sample_timesteps(
    batch: int, tokens: int, cfg: FlowConfig, generator: Generator, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """(batch,) training times in (0, 1) from the configured distribution."""
    device = torch.device(device)
    if cfg.timestep_sampling == "uniform":
        return _rand(batch, generator, device)
    normal = _randn((batch,), generator, torch.empty(0, device=device))
    mean = cfg.logit_normal_mean + (token_shift(tokens, cfg) if cfg.timestep_sampling == "shifted_logit_normal" else 0.0)
    return torch.sigmoid(normal * cfg.logit_normal_std + mean)


def add_noise(x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x_t = (1 - t) x0 + t eps with t (B,) broadcast over (B, C, T, H, W)."""
    t = t.view(-1, *([1] * (x0.dim() - 1))).to(x0.dtype)
    return (1 - t) * x0 + t * eps


def i2v_mask(conditioned: torch.Tensor, latent_shape: tuple[int, int, int], patch: str) -> torch.Tensor:
    """(B,) bool 'sample is image-conditioned' -> (B, 1, T, 1, 1) bool: True on its clean frames.

    The clean frames are those of the first token row: latent frame 0 for the 1 + k
    frame counts a causal VAE gives (see models/dit/patch.py).
    """
    frames = latent_shape[0]
    first = torch.arange(frames, device=conditioned.device) < first_row_frames(frames, patch)  # (T,)
    return (conditioned[:, None] & first[None, :]).view(-1, 1, frames, 1, 1)


def _null_like(text: torch.Tensor, text_mask: torch.Tensor, null_text: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """The null caption (see module docstring) broadcast to text's (B, L, D) and (B, L)."""
    if null_text is None:
        return torch.zeros_like(text), torch.zeros_like(text_mask, dtype=torch.bool)
    emb, mask = null_text if isinstance(null_text, tuple) else (null_text, None)
    if mask is None:
        mask = torch.ones(emb.shape[:2], dtype=torch.bool, device=emb.device)
    if emb.shape[-2:] != text.shape[-2:]:
        raise ValueError(f"null text is {tuple(emb.shape)} but captions are {tuple(text.shape)}; encode both to the same length.")
    return emb.to(text).expand_as(text), mask.to(text_mask.device, torch.bool).expand_as(text_mask)


def flow_matching_loss(
    model: nn.Module,
    x0: torch.Tensor,
    text: torch.Tensor,
    mask: torch.Tensor,
    fps: float,
    cfg: FlowConfig,
    generator: Generator = None,
    *,
    null_text: torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """One rectified-flow training loss over a batch, text-to-video and image-to-video jointly.

    x0 (B, C, T, H, W) clean latents; text (B, L, Dt) caption embeddings; mask (B, L) bool;
    null_text: (B|1, L, Dt) or (embedding, mask) used for dropped captions.
    Returns (the mean over samples of each sample's MSE over its non-conditioned latent elements, info dict).
    """
    b = x0.shape[0]
    latent_shape = tuple(x0.shape[2:])
    patch = model.config.patch
    grid = token_grid(latent_shape, patch)
    tokens = grid[0] * grid[1] * grid[2]
    t = sample_timesteps(b, tokens, cfg, generator, x0.device)  # (B,)
    eps = _randn(tuple(x0.shape), generator, x0)
    conditioned = _rand(b, generator, x0.device) < cfg.i2v_probability  # (B,)
    clean = i2v_mask(conditioned, latent_shape, patch)  # (B, 1, T, 1, 1)
    x_t = torch.where(clean, x0, add_noise(x0, eps, t))
    timestep = t  # (B,): the cheap path when no sample is conditioned
    if bool(conditioned.any()):
        timestep = token_timesteps(torch.where(conditioned, torch.zeros_like(t), t), t, latent_shape, patch)  # (B, N)

    dropped = _rand(b, generator, x0.device) < cfg.caption_dropout  # (B,)
    null_emb, null_mask = _null_like(text, mask, null_text)
    text = torch.where(dropped[:, None, None], null_emb, text)
    mask = torch.where(dropped[:, None], null_mask, mask.bool())

    velocity = model(x_t, timestep, text, mask, fps)
    weight = (~clean).to(x0.dtype).expand_as(x0)  # 0 on conditioned frames
    # per-sample MSE over its noised elements, then the batch mean: a mean over samples, so a
    # batch split over workers (or micro-batches) averages to exactly the same loss
    squared = ((velocity.float() - (eps - x0).float()) ** 2 * weight).flatten(1).sum(1)
    loss = (squared / weight.flatten(1).sum(1).clamp_min(1.0)).mean()
    info = {"t": t.detach(), "i2v": conditioned, "caption_dropped": dropped, "tokens": tokens}
    return loss, info


def sampling_schedule(steps: int, tokens: int, cfg: FlowConfig) -> torch.Tensor:
    """(steps + 1,) decreasing times from 1 to 0 (diffusers' FlowMatchEulerDiscreteScheduler with
    use_dynamic_shifting, exponential time shift, shift_terminal; see the module docstring).

    One step is [1, 0]: its only nonzero time is the first, which the stretch to
    `shift_terminal` cannot move (it would divide 0 by 0, and diffusers' NaN schedule gives
    black videos), so that step goes from pure noise to the prediction of the data."""
    if steps < 1:
        raise ValueError(f"sampling needs at least 1 step, got {steps}.")
    sigmas = torch.linspace(1.0, 1.0 / steps, steps, dtype=torch.float64)
    mu = token_shift(tokens, cfg)
    sigmas = math.exp(mu) / (math.exp(mu) + (1.0 / sigmas - 1.0))
    if cfg.shift_terminal and steps > 1:
        one_minus = 1.0 - sigmas
        sigmas = 1.0 - one_minus / (one_minus[-1] / (1.0 - cfg.shift_terminal))
    return torch.cat([sigmas, sigmas.new_zeros(1)]).float()


def guided_velocity(
    model: nn.Module,
    x: torch.Tensor,
    timestep: torch.Tensor,
    text: torch.Tensor,
    text_mask: torch.Tensor,
    null_emb: torch.Tensor,
    null_mask: torch.Tensor,
    fps: float,
    guidance_scale: float,
) -> torch.Tensor:
    """v_null + s (v_text - v_null); scale 1 runs only the conditional pass (it is exactly that)."""
    if guidance_scale == 1.0:
        return model(x, timestep, text, text_mask, fps)
    both = model(
        torch.cat([x, x]), torch.cat([timestep, timestep]), torch.cat([null_emb, text]), torch.cat([null_mask, text_mask]), fps
    )  # one batched forward, as diffusers' pipelines do
    v_null, v_text = both.chunk(2)
    return v_null + guidance_scale * (v_text - v_null)


@torch.no_grad()
def sample(
    model: nn.Module,
    shape: tuple[int, int, int, int, int],
    text: torch.Tensor,
    text_mask: torch.Tensor,
    null_text: torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None,
    fps: float,
    steps: int,
    guidance_scale: float,
    cond_latents: torch.Tensor | None = None,
    generator: Generator = None,
    *,
    cfg: FlowConfig = FlowConfig(),
    on_step: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """Euler sampling from noise to latents (B, C, T, H, W), text-to-video or image-to-video.

    cond_latents (B, C, k, H, W): the clean latents of the first token row (k = 1 for a
    causal VAE's 1 + 8m frames) to hold, or None for text-to-video. `on_step(i)` is called
    after step i (the generate command times each step with it).
    """
    b, _, frames, _, _ = shape
    patch = model.config.patch
    grid = token_grid(tuple(shape[2:]), patch)
    param = next(model.parameters())
    like = torch.empty(0, device=param.device, dtype=torch.float32)
    x = _randn(tuple(shape), generator, like)
    null_emb, null_mask = _null_like(text, text_mask, null_text)
    k = 0
    if cond_latents is not None:
        k = first_row_frames(frames, patch)
        if cond_latents.shape[2] != k:
            raise ValueError(f"cond_latents have {cond_latents.shape[2]} frames; the {patch} patch conditions {k}.")
        cond_latents = cond_latents.to(x)
    schedule = sampling_schedule(steps, grid[0] * grid[1] * grid[2], cfg).to(x.device)
    # the captions, the token grid and the step times are known before the first step
    reuse = model.reuse_conditioning(schedule[:-1]) if hasattr(model, "reuse_conditioning") else contextlib.nullcontext()
    with reuse:
        for i in range(steps):
            t, t_next = schedule[i], schedule[i + 1]
            t_batch = t.expand(b)
            if k:
                noisy = cond_latents + cfg.i2v_cond_noise_scale * t**2 * _randn(tuple(cond_latents.shape), generator, x)
                x = torch.cat([noisy, x[:, :, k:]], dim=2)
                timestep = token_timesteps(torch.zeros_like(t_batch), t_batch, tuple(shape[2:]), patch)  # (B, N)
            else:
                timestep = t_batch
            v = guided_velocity(model, x, timestep, text, text_mask, null_emb, null_mask, fps, guidance_scale)
            x = x + (t_next - t) * v.float()
            if k:
                x = torch.cat([cond_latents, x[:, :, k:]], dim=2)
            if on_step is not None:
                on_step(i)
    return x


def prepare_decode(
    latents: torch.Tensor, cfg: FlowConfig, generator: Generator = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Latents -> (noised latents, (B,) decoder timestep) for a timestep-conditioned VAE decoder.

    (1 - s) z + s eps with s = decode_noise_scale, t = decode_timestep, in whichever space
    `latents` are: the caller picks it from `cfg.decode_noise_space`.
    """
    noise = _randn(tuple(latents.shape), generator, latents)
    s = cfg.decode_noise_scale
    timestep = torch.full((latents.shape[0],), cfg.decode_timestep, device=latents.device)
    return (1 - s) * latents + s * noise, timestep
