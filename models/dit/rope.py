"""3D interleaved rotary position embedding on fractional coordinates (LTX-Video §2.2.3).

Mirrors diffusers' `LTXVideoRotaryPosEmbed` and `apply_rotary_emb` (transformer_ltx.py),
and the spacings of Lightricks/LTX-Video `ltx_video/models/transformers/transformer3d.py`
(`Transformer3DModel.precompute_freqs_cis`):

- Coordinates are physical: seconds for time and pixels for space (see
  `patch.token_coordinates`), divided by the maximum positions (20 s-units, 2048 px,
  2048 px by default) so they are fractions f.
- The rotation acts on the full inner dimension (all heads together, before the head
  split). n = dim // 6 frequencies per axis; channel pair j uses frequency j // 3 of axis
  j % 3 (interleaved over axes); the `dim % 6` leading channels are left unrotated.
- Frequency spacing, over k = 0 .. n-1 (angle = w_k * position):
    "exp"     w_k = (pi/2) * theta ** (k / (n-1))        pi/2 ... theta*pi/2    position 2f - 1
    "exp_2"   w_k = (pi/2) / theta ** (6k / dim)         pi/2 ... ~pi/(2 theta) position f
    "linear"  w_k = (pi/2) * linspace(1, theta, n)_k      pi/2 ... theta*pi/2    position 2f - 1
    "sqrt"    w_k = (pi/2) * sqrt(linspace(1, theta^2, n))_k                     position 2f - 1
  "exp" is what LTX-Video ships (and diffusers implements); the others are the alternatives
  in LTX's own code, with its names. "exp_2" is the conventional RoPE spacing
  (theta^(-2i/d)) on fractional coordinates; it was called "inverse_exp" here before (with
  k/(n-1) exponents and 2f - 1 positions), and is now LTX's formula exactly. One
  deviation: LTX's exp_2 takes `arange(0, dim, 6)`, ceil(dim/6) frequencies, which only
  fits the rotation when dim % 6 == 0 (at its own 2048 width it makes 2054 channels and
  could not run); we take its first dim // 6 entries, identical whenever LTX's runs.

Scaling to the reference extent (`DiTConfig.rope_scaling = "reference_extent"`). The
rotation a channel makes across a clip is w_k x (the clip's extent / max_positions). At
the alignment scale (9x32x32 pixels, 5x4x4 tokens) the clip spans 1/15 of the time and
1/20-1/30 of the space a 121x512x768 clip spans, so every channel turns 15-30x less than
at LTX's size: exp_2's fastest channel turns 0.03 rad (RoPE off in disguise), and exp's
slow half carries no signal. Scaling divides max_positions, per axis, by
(reference extent / this clip's extent), where an extent is the coordinate of the last
token (the first is at 0) and the reference is the same DiT at `rope_reference_shape`.
Then every token's fraction f is the one it would have in a 121x512x768 clip stretched
onto this token grid: each channel's angle range across the clip, and so each spacing's
set of "which channels resolve the clip and which wrap", is the one it has at full size;
only the number of tokens sampling that range is smaller. Per axis rather than one
factor, so a square 32x32 clip also covers 768 px of width-angle. It is computed per
forward from the latent shape (a 1-token axis keeps max_positions: nothing rotates along
it); at the reference shape the factor is exactly 1, so the full-size model is LTX's.
A model trained this way should be sampled at its training shape, which is what the
`sample` stage does; another shape would stretch to it (position interpolation).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal

import torch

from models.dit.patch import latent_shape_of, token_coordinates, token_extent

if TYPE_CHECKING:
    from models.dit.config import DiTConfig

RopeSpacing = Literal["exp", "exp_2", "linear", "sqrt"]
SPACINGS: tuple[str, ...] = ("exp", "exp_2", "linear", "sqrt")


def rope_axis_frequencies(
    dim: int, spacing: str, theta: float, *, device: torch.device | None = None, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """(n,) angular frequencies w_k, pi/2 included, n = dim // 6 (the same for all three axes)."""
    n = dim // 6
    kw = dict(device=device, dtype=dtype)
    if spacing == "exp":
        indices = theta ** torch.linspace(math.log(1.0, theta), math.log(theta, theta), n, **kw)
    elif spacing == "exp_2":
        indices = 1.0 / theta ** (torch.arange(0, 6 * n, 6, device=device).to(dtype) / dim)
    elif spacing == "linear":
        indices = torch.linspace(1.0, theta, n, **kw)
    elif spacing == "sqrt":
        indices = torch.linspace(1.0, theta**2, n, **kw).sqrt()
    else:
        raise ValueError(f"rope spacing must be one of {', '.join(SPACINGS)}, not {spacing!r}.")
    return indices * math.pi / 2.0  # same operation order as diffusers for "exp"


def rope_angles(
    coords: torch.Tensor,
    dim: int,
    *,
    spacing: str = "exp",
    theta: float = 10000.0,
    max_positions: tuple[float, float, float] = (20.0, 2048.0, 2048.0),
) -> torch.Tensor:
    """(B, N, 3) or (N, 3) physical coordinates -> rotation angles (B|1, N, 3, dim // 6)."""
    if coords.dim() == 2:
        coords = coords[None]  # (1, N, 3)
    # fp32 as diffusers ("always compute rope in fp32"); fp64 coordinates stay fp64 (tests).
    coords = coords if coords.dtype == torch.float64 else coords.float()
    grid = torch.stack([coords[..., i] / max_positions[i] for i in range(3)], dim=-1)  # (B, N, 3) fractions
    freqs = rope_axis_frequencies(dim, spacing, theta, device=coords.device, dtype=coords.dtype)  # (n,)
    position = grid.unsqueeze(-1) if spacing == "exp_2" else grid.unsqueeze(-1) * 2 - 1  # (B, N, 3, 1)
    return freqs * position  # (B, N, 3, n)


def rope_frequencies(
    coords: torch.Tensor,
    dim: int,
    *,
    spacing: str = "exp",
    theta: float = 10000.0,
    max_positions: tuple[float, float, float] = (20.0, 2048.0, 2048.0),
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, N, 3) or (N, 3) physical coordinates -> cos, sin of shape (B|1, N, dim), fp32."""
    angles = rope_angles(coords, dim, spacing=spacing, theta=theta, max_positions=max_positions)
    angles = angles.transpose(-1, -2).flatten(2)  # (B, N, 3n): pair j -> freq j // 3 of axis j % 3
    cos = angles.cos().repeat_interleave(2, dim=-1)  # (B, N, 6n)
    sin = angles.sin().repeat_interleave(2, dim=-1)
    if dim % 6:
        pad = dim % 6
        cos = torch.cat([torch.ones_like(cos[..., :pad]), cos], dim=-1)  # (B, N, dim)
        sin = torch.cat([torch.zeros_like(sin[..., :pad]), sin], dim=-1)
    return cos, sin


def rope_rotation(cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """cos, sin tables (B|1, N, dim) -> one rotation per channel pair, (B|1, N, dim/2, 2) as (cos, sin).

    The tables repeat each angle for both channels of a pair, so the even entries hold them all.
    Real, not complex: eager code views it as complex for free (`torch.view_as_complex`), and a
    compiled block reads cos and sin without a complex op (inductor has no complex codegen and
    falls back to eager on any, reading `.real` of a complex input included).
    """
    return torch.stack([cos[..., ::2], sin[..., ::2]], dim=-1)


def rotate(x: torch.Tensor, rotation: torch.Tensor, *, inplace: bool = False) -> torch.Tensor:
    """Rotate interleaved channel pairs of x (B, N, dim) by `rotation` (B|1, N, dim/2, 2), `rope_rotation`'s.

    Pair (a, b) becomes (a cos - b sin, b cos + a sin): one complex multiply, the same
    arithmetic as diffusers' `x * cos + stack([-b, a]) * sin` without its four temporaries
    (profiled in benchmarks/dit_speed.py). fp32 (or fp64) math, as diffusers. `inplace`
    (without autograd, for an x the caller owns) writes the result into x's buffer.
    """
    work = torch.promote_types(x.dtype, rotation.dtype)  # fp32 for fp32/bf16 activations
    if torch.compiler.is_compiling():  # inductor generates no complex code; this real form fuses into one kernel
        a, b = x.to(work).unflatten(-1, (-1, 2)).unbind(-1)  # (B, N, dim/2) each
        cos, sin = rotation.unbind(-1)
        return torch.stack([a * cos - b * sin, b * cos + a * sin], dim=-1).flatten(-2).to(x.dtype)
    turn = torch.view_as_complex(rotation if rotation.stride(-1) == 1 else rotation.contiguous())
    pairs = torch.view_as_complex(x.to(work).unflatten(-1, (-1, 2)))  # (B, N, dim/2), a view when x is fp32
    if inplace and not torch.is_grad_enabled():
        return torch.view_as_real(pairs.mul_(turn)).flatten(-2).to(x.dtype)
    return torch.view_as_real(pairs * turn).flatten(-2).to(x.dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved channel pairs of x (B, N, dim) by the angles in cos/sin (B|1, N, dim)."""
    return rotate(x, rope_rotation(cos, sin))


# ---------------------------------------------------------------- the config's view


def _extent(cfg: "DiTConfig", latent_shape: tuple[int, int, int], fps: float) -> tuple[float, float, float]:
    return token_extent(latent_shape, cfg.patch, vae_temporal_compression=cfg.vae_temporal_compression,
                        vae_spatial_compression=cfg.vae_spatial_compression, fps=fps)


def rope_max_positions_for(cfg: "DiTConfig", latent_shape: tuple[int, int, int], fps: float) -> tuple[float, float, float]:
    """The max_positions a forward over `latent_shape` divides by: the config's, or with
    `rope_scaling="reference_extent"` the config's x (this extent / the reference extent), per axis."""
    if cfg.rope_scaling == "none":
        return tuple(cfg.rope_max_positions)
    reference_latent = latent_shape_of(*cfg.rope_reference_shape, temporal_compression=cfg.vae_temporal_compression,
                                       spatial_compression=cfg.vae_spatial_compression)
    here, reference = _extent(cfg, latent_shape, fps), _extent(cfg, reference_latent, fps)
    return tuple(m * (e / r) if e > 0 and r > 0 else m for m, e, r in zip(cfg.rope_max_positions, here, reference))


def rope_rotation_range(cfg: "DiTConfig", latent_shape: tuple[int, int, int], fps: float) -> dict[str, list[float]]:
    """Per axis (t, h, w), the largest and smallest angle (rad) any channel turns between the
    first and the last token of the clip, from the angles the model uses; zeros with RoPE off."""
    if cfg.rope == "off":
        return {"max": [0.0, 0.0, 0.0], "min": [0.0, 0.0, 0.0]}
    coords = token_coordinates(latent_shape, cfg.patch, vae_temporal_compression=cfg.vae_temporal_compression,
                               vae_spatial_compression=cfg.vae_spatial_compression, fps=fps)
    corners = coords[[0, -1]].double()  # (2, 3): the first token and the last (the far corner)
    angles = rope_angles(corners, cfg.hidden, spacing=cfg.rope_spacing, theta=cfg.rope_theta,
                         max_positions=rope_max_positions_for(cfg, latent_shape, fps))  # (1, 2, 3, n)
    turn = (angles[0, 1] - angles[0, 0]).abs()  # (3, n): angles are affine in position
    return {"max": turn.amax(-1).tolist(), "min": turn.amin(-1).tolist()}
