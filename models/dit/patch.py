"""Transformer-input patchifier and the per-token timestep layout.

The packing order follows diffusers' `LTXPipeline._pack_latents` (tokens in (t, h, w)
raster order; each token's features in (C, pt, ph, pw) order), so a 1x1x1 patch gives
exactly diffusers' token sequence and the converted weights apply unchanged.

Temporal patches over a causal VAE's latents: a causal VAE gives 1 + k latent frames
(frame 0 encodes the first pixel frame alone). When the count is not a multiple of the
temporal patch, the first latent frame is replicated at the *front* (CogVideoX 1.5 pads
the same way). That keeps the first token row made of frame 0 only, so image-to-video
conditioning (frame 0 clean at t=0) is one token row and never mixes a noisy frame into
a clean token. Unpatchify drops the replicas again.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

PatchName = Literal["1x1x1", "2x2x1", "4x4x2"]


def patch_sizes(patch: str) -> tuple[int, int, int]:
    """'4x4x2' (h x w x t) -> (pt, ph, pw) = (2, 4, 4)."""
    ph, pw, pt = (int(p) for p in patch.split("x"))
    return pt, ph, pw


def front_pad_frames(num_frames: int, patch: str) -> int:
    """How many replicas of latent frame 0 are prepended so the frame count divides pt."""
    pt, _, _ = patch_sizes(patch)
    return (-num_frames) % pt


def token_grid(latent_shape: tuple[int, int, int], patch: str) -> tuple[int, int, int]:
    """(T, H, W) latent shape -> (t, h, w) token grid (after front padding in time)."""
    frames, height, width = latent_shape
    pt, ph, pw = patch_sizes(patch)
    if height % ph or width % pw:
        raise ValueError(f"latent height x width {height}x{width} must be divisible by the {patch} patch.")
    return math.ceil(frames / pt), height // ph, width // pw


def latent_shape_of(
    frames: int, height: int, width: int, *, temporal_compression: int, spatial_compression: int
) -> tuple[int, int, int]:
    """Pixel video (F, H, W) -> latent (T, h, w) of a causal VAE: T = 1 + (F - 1) / temporal_compression."""
    if (frames - 1) % temporal_compression:
        raise ValueError(f"{frames} frames do not fit a {temporal_compression}x causal VAE; use 1 + k*{temporal_compression}.")
    s = spatial_compression
    if height % s or width % s:
        raise ValueError(f"{height}x{width} is not a multiple of the VAE's {s}x spatial compression.")
    return 1 + (frames - 1) // temporal_compression, height // s, width // s


def first_row_frames(num_frames: int, patch: str) -> int:
    """Number of real latent frames inside the first token row (the i2v conditioning row)."""
    pt, _, _ = patch_sizes(patch)
    return min(num_frames, pt - front_pad_frames(num_frames, patch))


def patchify(latents: torch.Tensor, patch: str) -> torch.Tensor:
    """(B, C, T, H, W) latents -> (B, N, C*pt*ph*pw) tokens, N = ceil(T/pt)*(H/ph)*(W/pw)."""
    pt, ph, pw = patch_sizes(patch)
    pad = front_pad_frames(latents.shape[2], patch)
    if pad:
        first = latents[:, :, :1].expand(-1, -1, pad, -1, -1)
        latents = torch.cat([first, latents], dim=2)  # (B, C, T+pad, H, W)
    b, c, f, h, w = latents.shape
    x = latents.reshape(b, c, f // pt, pt, h // ph, ph, w // pw, pw)
    x = x.permute(0, 2, 4, 6, 1, 3, 5, 7)  # (B, t, h, w, C, pt, ph, pw)
    return x.reshape(b, (f // pt) * (h // ph) * (w // pw), c * pt * ph * pw)  # (B, N, D_in)


def unpatchify(tokens: torch.Tensor, latent_shape: tuple[int, int, int], patch: str) -> torch.Tensor:
    """(B, N, C*pt*ph*pw) tokens -> (B, C, T, H, W) latents; inverse of `patchify`."""
    pt, ph, pw = patch_sizes(patch)
    t, h, w = token_grid(latent_shape, patch)
    b = tokens.shape[0]
    c = tokens.shape[2] // (pt * ph * pw)
    x = tokens.reshape(b, t, h, w, c, pt, ph, pw)
    x = x.permute(0, 4, 1, 5, 2, 6, 3, 7)  # (B, C, t, pt, h, ph, w, pw)
    x = x.reshape(b, c, t * pt, h * ph, w * pw)  # (B, C, T+pad, H, W)
    return x[:, :, front_pad_frames(latent_shape[0], patch) :]


def token_timesteps(
    t_frame0: torch.Tensor, t_rest: torch.Tensor, latent_shape: tuple[int, int, int], patch: str
) -> torch.Tensor:
    """Per-token timesteps: (B,) for the first token row and (B,) for the rest -> (B, N).

    Image-to-video passes t_frame0 = 0 for conditioned samples (the first token row holds
    only latent frame 0, see the module docstring) and the sampled t elsewhere.
    """
    t, h, w = token_grid(latent_shape, patch)
    rows = torch.arange(t, device=t_rest.device)[:, None].expand(t, h * w).reshape(-1)  # (N,)
    first = (rows == 0)[None, :]  # (1, N)
    return torch.where(first, t_frame0[:, None].to(t_rest.dtype), t_rest[:, None].expand(-1, t * h * w))


def token_coordinates(
    latent_shape: tuple[int, int, int],
    patch: str,
    *,
    vae_temporal_compression: int,
    vae_spatial_compression: int,
    fps: float,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """(N, 3) token positions in (seconds, pixels, pixels) of the token's first element.

    As diffusers' `LTXVideoRotaryPosEmbed._prepare_video_coords` with the pipeline's
    `rope_interpolation_scale = (vae_t / fps, vae_s, vae_s)`: token index x patch x VAE
    compression, the time axis divided by the frame rate.
    """
    pt, ph, pw = patch_sizes(patch)
    t, h, w = token_grid(latent_shape, patch)
    kw = dict(dtype=torch.float32, device=device)
    grid = torch.meshgrid(torch.arange(t, **kw), torch.arange(h, **kw), torch.arange(w, **kw), indexing="ij")
    coords = torch.stack(grid, dim=-1).reshape(-1, 3)  # (N, 3) token indices
    scale = torch.tensor(
        [pt * vae_temporal_compression / fps, ph * vae_spatial_compression, pw * vae_spatial_compression], **kw
    )
    return coords * scale


def token_extent(
    latent_shape: tuple[int, int, int],
    patch: str,
    *,
    vae_temporal_compression: int,
    vae_spatial_compression: int,
    fps: float,
) -> tuple[float, float, float]:
    """(seconds, pixels, pixels) coordinate of the last token of the grid; the first is at 0.

    The same numbers `token_coordinates` gives its last row, without building the grid.
    """
    pt, ph, pw = patch_sizes(patch)
    t, h, w = token_grid(latent_shape, patch)
    return ((t - 1) * pt * vae_temporal_compression / fps, float((h - 1) * ph * vae_spatial_compression),
            float((w - 1) * pw * vae_spatial_compression))
