"""`describe_dit`: parameters, token count, FLOPs and RoPE rotation of a DiT config, on the meta device."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from models.dit.config import DiTConfig
from models.dit.patch import front_pad_frames, latent_shape_of, token_grid
from models.dit.rope import rope_rotation_range


def latent_shape_for(cfg: DiTConfig, frames: int, height: int, width: int) -> tuple[int, int, int]:
    """Pixel video (F, H, W) -> latent (T, h, w) of the paired causal VAE: T = 1 + (F - 1) / t_c."""
    return latent_shape_of(frames, height, width, temporal_compression=cfg.vae_temporal_compression,
                           spatial_compression=cfg.vae_spatial_compression)


def describe_dit(cfg: DiTConfig, frames: int, height: int, width: int, fps: float = 24.0) -> dict[str, Any]:
    """Build the DiT on the meta device and report its size and cost for one pixel-video shape.

    `flops_per_forward` is measured with `torch.utils.flop_counter.FlopCounterMode` over
    one batch-1 forward on meta tensors (matmuls and attention; 1 multiply-add = 2 FLOPs;
    elementwise ops, norms and RoPE are not counted), with `max_text_tokens` text tokens.
    `rope_max_rad` / `rope_min_rad` are, per axis (t, h, w), the most and the least any RoPE
    channel turns between the clip's first and last token (`rope.rope_rotation_range`).
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
        "ffn_hidden": model.ffn_hidden,
        "latent_shape": [cfg.in_channels, *latent],
        "token_grid": [t, h, w],
        "padded_latent_frames": front_pad_frames(latent[0], cfg.patch),
        "tokens": t * h * w,
        "pixels_per_token": frames * height * width // (t * h * w),  # < nominal: causal frame 0 and padding
        "pixels_per_token_nominal": cfg.vae_temporal_compression * cfg.vae_spatial_compression**2 * cfg.patch_channels // cfg.in_channels,
        "text_tokens": cfg.max_text_tokens,
        "flops_per_forward": int(counter.get_total_flops()),
        **{f"rope_{k}_rad": v for k, v in rope_rotation_range(cfg, latent, fps).items()},
        "flops_method": "FlopCounterMode on meta tensors, batch 1 (matmul + attention only)",
    }
