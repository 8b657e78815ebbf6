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

Per-band weights (`VAELossConfig.dwt_bands`, `--set loss.dwt_bands=detail`). With equal
weights (the default, the loss as published) the LLL band carries most of the loss. On 24
held-out bundled real clips (17x64x64) reconstructed by the tiny `ltx` VAE after 300 steps
of L1 + MSE + 0.1 DWT, LLL is 62% of it (62.3, 63.3, 61.6% for seeds 0, 1, 2; 60% for a VAE
trained without the DWT term; issue 11 quoted 57% from another budget); LLH and LHL are
~10% each and the four temporal-detail bands H** 2-4% each. For the tiny `conventional`
VAE (1:48, L1 + MSE, 300 steps; the `patchifier` recipe's) it is 47-50% over seeds 0-2, and
60-61% for that recipe's ltx VAEs: the better VAE gets the local means right first (its
LLL-band PSNR is 5 dB higher, HHH 2 dB), so LLL's share falls, but it stays the largest
band by far. LLL holds the local 2x2x2
means, which the pixel L1 already scores, so most of the term repeats it; the "detail"
preset keeps only the seven detail bands. Measured with `band_l1` / `dwt_band_shares`:
`ltxlab train-vae --preset ltx --steps 300 --seed S --set loss.mse=1 --set loss.dwt=0.1
--out DIR`, then over the held-out clips of `DataSpec(source="bundled", frames=17,
height=64, width=64, clips_per_video=8)` sum `band_l1(reconstruct(load_vae(DIR), x), x)`
(`ablations.stages.eval_recon.reconstruct`) and normalise.
"""

from __future__ import annotations

import math
from typing import Literal, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

# Band b = 4*t + 2*h + w with bit 0 = low-pass (L, pywt "a") and 1 = high-pass (H, pywt "d");
# the first letter is the time axis, then height, then width.
BAND_NAMES: tuple[str, ...] = ("LLL", "LLH", "LHL", "LHH", "HLL", "HLH", "HHL", "HHH")

# pywt.dwtn key for each band, in BAND_NAMES order ("aad" = approx on T and H, detail on W).
PYWT_KEYS: tuple[str, ...] = tuple(name.replace("L", "a").replace("H", "d").lower() for name in BAND_NAMES)

OddFrames = Literal["replicate_first", "replicate_last"]

# Per-band weights of the DWT loss (`VAELossConfig.dwt_bands`), in BAND_NAMES order.
EQUAL_BANDS: tuple[float, ...] = (1.0,) * 8  # every coefficient counts equally: the loss as published
DWT_BAND_PRESETS: dict[str, tuple[float, ...]] = {
    "equal": EQUAL_BANDS,
    # LLL off: the local means a pixel L1 already scores; only the seven detail bands remain
    "detail": (0.0,) + (1.0,) * 7,
}


def resolve_band_weights(value: str | Sequence[float]) -> tuple[float, ...]:
    """A preset name ("equal", "detail") or 8 weights -> 8 finite weights >= 0, not all 0.

    Raises ValueError with one sentence that says what to write instead.
    """
    if isinstance(value, str):
        if value not in DWT_BAND_PRESETS:
            raise ValueError(f"Unknown DWT band preset {value!r}; use one of {', '.join(map(repr, DWT_BAND_PRESETS))} "
                             f"or 8 weights in the order {', '.join(BAND_NAMES)}.")
        return DWT_BAND_PRESETS[value]
    try:
        weights = tuple(float(w) for w in value)
    except (TypeError, ValueError):
        raise ValueError(f"DWT band weights must be a preset name or 8 numbers, not {value!r}.") from None
    if len(weights) != len(BAND_NAMES):
        raise ValueError(f"DWT band weights need {len(BAND_NAMES)} numbers ({', '.join(BAND_NAMES)}), "
                         f"got {len(weights)}.")
    if not all(math.isfinite(w) and w >= 0 for w in weights) or not any(weights):
        raise ValueError(f"DWT band weights must be finite, >= 0 and not all 0, got {list(weights)}; "
                         "set loss.dwt=0 to turn the loss off.")
    return weights


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


def band_l1(x: Tensor, y: Tensor, odd_frames: OddFrames = "replicate_first") -> Tensor:
    """Mean L1 distance per 3D Haar sub-band: (B, C, T, H, W) x2 -> (8,) in `BAND_NAMES` order."""
    if x.shape != y.shape:
        raise ValueError(f"dwt_loss needs equal shapes, got {tuple(x.shape)} and {tuple(y.shape)}.")
    diff = haar_dwt3d(x, odd_frames) - haar_dwt3d(y, odd_frames)  # (B, C, 8, t, h, w)
    return diff.abs().mean(dim=(0, 1, 3, 4, 5))  # (8,)


def dwt_band_shares(x: Tensor, y: Tensor, odd_frames: OddFrames = "replicate_first") -> Tensor:
    """Each band's share of the equal-weight `dwt_loss(x, y)`: (8,) summing to 1 (all bands
    hold the same number of coefficients, so the loss is the mean of the per-band L1s)."""
    per_band = band_l1(x, y, odd_frames)
    return per_band / per_band.sum()


def dwt_loss(
    x: Tensor, y: Tensor, odd_frames: OddFrames = "replicate_first", band_weights: Sequence[float] | None = None
) -> Tensor:
    """L1 distance between the 3D Haar sub-bands of `x` and `y`, both (B, C, T, H, W) -> scalar.

    With equal weights (None, or all 1.0: the default) every coefficient of every band counts
    equally: since the transform is orthonormal, the LLL band carries the local means and the
    seven detail bands the local differences that a pixel L1 lets a VAE blur away. This path
    is the loss as it was before per-band weights existed, bit for bit.

    `band_weights` (8 floats in `BAND_NAMES` order) multiply each band's part of that loss:
    sum_b w_b * mean_b|X_b - Y_b| / 8, so weight 1 keeps a band's contribution as it is and
    weight 0 drops it; `DWT_BAND_PRESETS["detail"]` is the loss without its LLL part.
    """
    if band_weights is None or all(w == 1.0 for w in band_weights):
        if x.shape != y.shape:
            raise ValueError(f"dwt_loss needs equal shapes, got {tuple(x.shape)} and {tuple(y.shape)}.")
        return F.l1_loss(haar_dwt3d(x, odd_frames), haar_dwt3d(y, odd_frames))
    weights = torch.tensor(resolve_band_weights(band_weights), dtype=x.dtype, device=x.device)  # (8,)
    return (band_l1(x, y, odd_frames) * weights).sum() / len(BAND_NAMES)


# --- registered wrapper (imported after the pure functions so evaluation can reuse them) ---
from models.losses.base import LOSSES, LossInputs, LossTerm  # noqa: E402


@LOSSES.register("dwt")
class DWTLoss(LossTerm):
    """Video-DWT loss between the target video and its reconstruction (LTX-Video §2.1), with
    the per-band weights of `VAELossConfig.dwt_bands`."""

    def __init__(self, band_weights: Sequence[float] = EQUAL_BANDS) -> None:
        super().__init__()
        self.band_weights = resolve_band_weights(band_weights)

    @classmethod
    def from_config(cls, cfg) -> "DWTLoss":
        return cls(cfg.dwt_bands)

    def forward(self, inp: LossInputs) -> Tensor:
        return dwt_loss(inp.recon, inp.video, band_weights=self.band_weights)
