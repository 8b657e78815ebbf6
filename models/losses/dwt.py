"""One-level 3D Haar wavelet transform of video and the video-DWT reconstruction loss.

LTX-Video (arXiv 2501.00103, §2.1 "Video DWT loss") adds an L1 loss between the 3D
discrete wavelet sub-bands of the input and of its reconstruction, so the VAE is pushed
to keep high-frequency detail that a plain pixel L1 under-weights. The transform here is
the orthonormal Haar DWT of `pywt.dwtn(x, "haar", axes=(T, H, W))`, coefficient for
coefficient, computed for all eight bands at once with one einsum (no loop over bands).

Odd lengths. pywt's default "symmetric" mode extends an odd axis by repeating its last
sample, so the last pair is (x[-1], x[-1]). We do exactly that on H and W. Along time a
`1 + 8k` clip has one frame too many; by default (`odd_frames="replicate_first"`) we
repeat the FIRST frame instead, so frame 0 pairs with itself and frames (1,2), (3,4), ...
pair up: this keeps the pairs inside the causal VAE's groups (frame 0 is its own latent
frame, then groups of 8). `odd_frames="replicate_last"` reproduces pywt on odd T.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

# Band b = 4*t + 2*h + w with bit 0 = low-pass (L, pywt "a") and 1 = high-pass (H, pywt "d");
# the first letter is the time axis, then height, then width.
BAND_NAMES: tuple[str, ...] = ("LLL", "LLH", "LHL", "LHH", "HLL", "HLH", "HHL", "HHH")

# pywt.dwtn key for each band, in BAND_NAMES order ("aad" = approx on T and H, detail on W).
PYWT_KEYS: tuple[str, ...] = tuple(name.replace("L", "a").replace("H", "d").lower() for name in BAND_NAMES)

OddFrames = Literal["replicate_first", "replicate_last"]


def _haar_matrix(dtype: torch.dtype, device: torch.device) -> Tensor:
    """(8, 8) orthonormal 3D Haar analysis matrix: rows are bands, columns the (t, h, w) pair offsets."""
    # pywt's haar: approx = (x0 + x1)/sqrt2, detail = (x0 - x1)/sqrt2
    h2 = torch.tensor([[1.0, 1.0], [1.0, -1.0]], dtype=torch.float64) / math.sqrt(2.0)
    h8 = torch.kron(torch.kron(h2, h2), h2)  # (8, 8); row 4t+2h+w, column 4p+2q+r
    return h8.to(dtype=dtype, device=device)


def _pad_to_even(x: Tensor, odd_frames: OddFrames) -> Tensor:
    """Replicate one frame / row / column on each odd axis of (B, C, T, H, W) (see module docstring)."""
    if x.shape[2] % 2:
        x = torch.cat([x[:, :, :1], x], dim=2) if odd_frames == "replicate_first" else torch.cat([x, x[:, :, -1:]], dim=2)
    if x.shape[3] % 2:
        x = torch.cat([x, x[:, :, :, -1:]], dim=3)
    if x.shape[4] % 2:
        x = torch.cat([x, x[..., -1:]], dim=4)
    return x


def haar_dwt3d(x: Tensor, odd_frames: OddFrames = "replicate_first") -> Tensor:
    """One-level orthonormal 3D Haar DWT over (T, H, W).

    Args:
        x: (B, C, T, H, W) video. Odd axes are replicate-padded to even first (module docstring).
        odd_frames: which frame to repeat when T is odd.

    Returns:
        (B, C, 8, ceil(T/2), ceil(H/2), ceil(W/2)) coefficients, bands in `BAND_NAMES` order.
    """
    if x.ndim != 5:
        raise ValueError(f"haar_dwt3d expects a (B, C, T, H, W) tensor, got shape {tuple(x.shape)}.")
    if odd_frames not in ("replicate_first", "replicate_last"):
        raise ValueError(f"odd_frames must be 'replicate_first' or 'replicate_last', not {odd_frames!r}.")
    x = _pad_to_even(x, odd_frames)
    b, c, t, h, w = x.shape
    blocks = x.reshape(b, c, t // 2, 2, h // 2, 2, w // 2, 2)  # (B, C, t, p, h, q, w, r)
    blocks = blocks.permute(0, 1, 3, 5, 7, 2, 4, 6).reshape(b, c, 8, t // 2, h // 2, w // 2)  # (B, C, pqr, t, h, w)
    h8 = _haar_matrix(x.dtype, x.device)
    return torch.einsum("nk,bckthw->bcnthw", h8, blocks)  # (B, C, 8, t, h, w)


def dwt_loss(x: Tensor, y: Tensor, odd_frames: OddFrames = "replicate_first") -> Tensor:
    """Mean L1 distance between the 3D Haar sub-bands of `x` and `y`, both (B, C, T, H, W) -> scalar.

    Every coefficient of every band counts equally; since the transform is orthonormal, the
    LLL band carries the local means and the seven detail bands the local differences that
    a pixel L1 lets a VAE blur away.
    """
    if x.shape != y.shape:
        raise ValueError(f"dwt_loss needs equal shapes, got {tuple(x.shape)} and {tuple(y.shape)}.")
    return F.l1_loss(haar_dwt3d(x, odd_frames), haar_dwt3d(y, odd_frames))


# --- registered wrapper (imported after the pure functions so evaluation can reuse them) ---
from models.losses.base import LOSSES, LossInputs, LossTerm  # noqa: E402


@LOSSES.register("dwt")
class DWTLoss(LossTerm):
    """Video-DWT loss between the target video and its reconstruction (LTX-Video §2.1)."""

    def forward(self, inp: LossInputs) -> Tensor:
        return dwt_loss(inp.recon, inp.video)
