"""3D interleaved rotary position embedding on fractional coordinates (LTX-Video §2.2.3).

Mirrors diffusers' `LTXVideoRotaryPosEmbed` and `apply_rotary_emb` (transformer_ltx.py):

- Coordinates are physical: seconds for time and pixels for space (see
  `patch.token_coordinates`), divided by the maximum positions (20 s-units, 2048 px,
  2048 px by default) so they are fractions, then mapped to [-1, 1] by `2c - 1`.
- The rotation acts on the full inner dimension (all heads together, before the head
  split). `dim // 6` frequencies per axis; channel pair j uses frequency j // 3 of axis
  j % 3 (interleaved over axes); the `dim % 6` leading channels are left unrotated.
- Frequency spacing, over k = 0 .. dim//6 - 1 with s_k = k / (dim//6 - 1):
    "exp"         (LTX-Video):  w_k = (pi/2) * theta ** (+s_k)   -> pi/2 ... theta*pi/2, increasing
    "inverse_exp" (ablation):   w_k = (pi/2) * theta ** (-s_k)   -> pi/2 ... pi/(2 theta), decreasing
  "inverse_exp" is the conventional RoPE spacing (theta^(-2i/d)) on the same fractional
  coordinates. It is not just a permutation of LTX's channels (which learned QKV weights
  would undo): its frequencies are a different set, low ones that resolve coarse
  positions only, which is the comparison the paper's ablation draws.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

RopeSpacing = Literal["exp", "inverse_exp"]


def rope_frequencies(
    coords: torch.Tensor,
    dim: int,
    *,
    spacing: str = "exp",
    theta: float = 10000.0,
    max_positions: tuple[float, float, float] = (20.0, 2048.0, 2048.0),
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, N, 3) or (N, 3) physical coordinates -> cos, sin of shape (B|1, N, dim), fp32."""
    if coords.dim() == 2:
        coords = coords[None]  # (1, N, 3)
    # fp32 as diffusers ("always compute rope in fp32"); fp64 coordinates stay fp64 (tests).
    coords = coords if coords.dtype == torch.float64 else coords.float()
    grid = torch.stack([coords[..., i] / max_positions[i] for i in range(3)], dim=-1)  # (B, N, 3) fractions
    n = dim // 6
    exponents = torch.linspace(math.log(1.0, theta), math.log(theta, theta), n, device=coords.device, dtype=coords.dtype)
    if spacing == "inverse_exp":
        exponents = -exponents
    elif spacing != "exp":
        raise ValueError(f"rope spacing must be 'exp' or 'inverse_exp', not {spacing!r}.")
    freqs = theta**exponents * math.pi / 2.0  # (n,); same operation order as diffusers
    angles = freqs * (grid.unsqueeze(-1) * 2 - 1)  # (B, N, 3, n)
    angles = angles.transpose(-1, -2).flatten(2)  # (B, N, 3n): pair j -> freq j // 3 of axis j % 3
    cos = angles.cos().repeat_interleave(2, dim=-1)  # (B, N, 6n)
    sin = angles.sin().repeat_interleave(2, dim=-1)
    if dim % 6:
        pad = dim % 6
        cos = torch.cat([torch.ones_like(cos[..., :pad]), cos], dim=-1)  # (B, N, dim)
        sin = torch.cat([torch.zeros_like(sin[..., :pad]), sin], dim=-1)
    return cos, sin


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved channel pairs of x (B, N, dim) by the angles in cos/sin (B|1, N, dim)."""
    pairs = x.unflatten(-1, (-1, 2))  # (B, N, dim/2, 2)
    real, imag = pairs.unbind(-1)
    rotated = torch.stack([-imag, real], dim=-1).flatten(-2)  # (B, N, dim)
    work = torch.promote_types(x.dtype, cos.dtype)  # fp32 for fp32/bf16 activations, as diffusers
    return (x.to(work) * cos + rotated.to(work) * sin).to(x.dtype)
