"""`describe_dit`: parameters, token count and FLOPs of a DiT config, on the meta device."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from models.dit.config import DiTConfig
from models.dit.patch import front_pad_frames, token_grid


def latent_shape_for(cfg: DiTConfig, frames: int, height: int, width: int) -> tuple[int, int, int]:
    """Pixel video (F, H, W) -> latent (T, h, w) of the paired causal VAE: T = 1 + (F - 1) / t_c."""
    if (frames - 1) % cfg.vae_temporal_compression:
        raise ValueError(f"{frames} frames do not fit a {cfg.vae_temporal_compression}x causal VAE; use 1 + k*{cfg.vae_temporal_compression}.")
    s = cfg.vae_spatial_compression
    if height % s or width % s:
        raise ValueError(f"{height}x{width} is not a multiple of the VAE's {s}x spatial compression.")
    return 1 + (frames - 1) // cfg.vae_temporal_compression, height // s, width // s


def describe_dit(cfg: DiTConfig, frames: int, height: int, width: int, fps: float = 24.0) -> dict[str, Any]:
    """Build the DiT on the meta device and report its size and cost for one pixel-video shape.

    `flops_per_forward` is measured with `torch.utils.flop_counter.FlopCounterMode` over
    one batch-1 forward on meta tensors (matmuls and attention; 1 multiply-add = 2 FLOPs;
    elementwise ops, norms and RoPE are not counted), with `max_text_tokens` text tokens.
    """
    latent = latent_shape_for(cfg, frames, height, width)
    t, h, w = token_grid(latent, cfg.patch)
    with torch.device("meta"):
        model = cfg.build()
        latents = torch.empty(1, cfg.in_channels, *latent)
        timestep = torch.empty(1)
        text = torch.empty(1, cfg.max_text_tokens, cfg.caption_channels)
        mask = torch.ones(1, cfg.max_text_tokens, dtype=torch.bool)
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            model(latents, timestep, text, mask, fps)
    return {
        "kind": cfg.kind,
        "text_conditioning": cfg.text_conditioning,
        "patch": cfg.patch,
        "params": sum(p.numel() for p in model.parameters()),
        "hidden": cfg.hidden,
        "layers": cfg.num_layers,
        "heads": cfg.num_heads,
        "latent_shape": [cfg.in_channels, *latent],
        "token_grid": [t, h, w],
        "padded_latent_frames": front_pad_frames(latent[0], cfg.patch),
        "tokens": t * h * w,
        "pixels_per_token": frames * height * width // (t * h * w),  # < nominal: causal frame 0 and padding
        "pixels_per_token_nominal": cfg.vae_temporal_compression * cfg.vae_spatial_compression**2 * cfg.patch_channels // cfg.in_channels,
        "text_tokens": cfg.max_text_tokens,
        "flops_per_forward": int(counter.get_total_flops()),
        "flops_method": "FlopCounterMode on meta tensors, batch 1 (matmul + attention only)",
    }
