"""Full-reference video quality measures as pure, frame-vectorised torch functions.

Every function takes a reference and a test video as float tensors `(T, H, W, C)` in
[0, 1] and returns per-frame values `(T,)` (or per band / per transition). Frames are
processed as a batch: SSIM's 7x7 box filter is 2 x 4 shifted adds over a block of frames
(`window_sum7`; CPU `avg_pool2d` is about 15x slower here), not a Python loop per frame. Blocks hold
about `chunk_values` values per map:
on a CPU each elementwise op is memory-bound, and a whole-video temporary (36 MB for 120
CIF frames) costs more in fresh pages and cache misses than the arithmetic, so blocks
that stay in cache run several times faster; on a GPU the blocks are simply large.
`evaluation/metrics.py` wraps these functions with their specs and versions.

References they are tested against: `skimage.metrics.peak_signal_noise_ratio` and
`structural_similarity` (PSNR, SSIM), torchmetrics (MS-SSIM), pywt (DWT bands).
"""

from __future__ import annotations

import functools
import math
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator

import torch
from torch import Tensor

# PSNR of identical frames is +inf; we floor the MSE so a perfect frame reads 100 dB and
# averages stay finite (100 dB is far above any lossy codec or VAE, so nothing real is clipped).
MSE_FLOOR = 1e-10
MAX_PSNR_DB = -10.0 * math.log10(MSE_FLOOR)  # 100 dB

# skimage.metrics.structural_similarity defaults (Wang et al. 2004 constants, 7x7 uniform window)
SSIM_WINDOW = 7
SSIM_K1 = 0.01
SSIM_K2 = 0.03

# MS-SSIM (Wang, Simoncelli, Bovik 2003): 5 scales, 11-px Gaussian window, sigma 1.5
MS_SSIM_BETAS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
MS_SSIM_KERNEL = 11

# BT.601 luma weights (full range): Y = 0.299 R + 0.587 G + 0.114 B
BT601_LUMA = (0.299, 0.587, 0.114)

# Peak of the DWT band PSNR. For [0, 1] input every orthonormal 3D Haar band spans an
# interval of width 8 / sqrt(8) = 2 sqrt(2) (LLL in [0, 2.83], each detail band in
# [-1.41, 1.41]). Equivalently, with the averaging Haar (LLL = the 2x2x2 block mean, in
# [0, 1]) the peak is 1. An error spread evenly over the bands gives each band the pixel
# PSNR + 10 log10(8) = +9.03 dB: compare bands across runs, not with `psnr`.
DWT_PEAK = 2.0 * math.sqrt(2.0)

RANGES_PER_THREAD = 4  # frame ranges per thread in `frame_parallel` (dynamic balance on a busy machine)
_CPU_CHUNK_VALUES = 1 << 18  # ~1 MB of float32 per map: stays in a CPU's L2/L3 cache
_GPU_CHUNK_VALUES = 1 << 26  # bounds memory only


def chunk_values(device: torch.device) -> int:
    """Values per map in one block of frames on `device` (see module docstring)."""
    return _CPU_CHUNK_VALUES if device.type == "cpu" else _GPU_CHUNK_VALUES


def frame_blocks(frames: int, frame_values: int, device: torch.device, start: int = 0, align: int = 1) -> Iterator[slice]:
    """Slices of consecutive frames from `start`, each about `chunk_values` values (a multiple of `align` frames)."""
    step = max(align, chunk_values(device) // max(1, frame_values) // align * align)
    for first in range(start, frames, step):
        yield slice(first, min(first + step, frames))


def frame_parallel(fn: Callable[..., Tensor]) -> Callable[..., Tensor]:
    """Run a per-frame measure over frame ranges in torch.get_num_threads() threads, each single-threaded.

    On a CPU, torch's intra-op threads fork and join at every elementwise op, and a measure over
    one cached frame is hundreds of small ops: when another process holds a core (a shared
    machine, co-located Ray tasks) every join waits for a descheduled thread, and 2 threads ran
    10-30x slower than 1 here. Whole frame ranges per thread have no joins to wait on, and with
    `RANGES_PER_THREAD` ranges per thread a thread that gets less CPU simply takes fewer. Values
    equal the single-threaded ones (each range is computed single-threaded). GPU tensors pass through.
    """

    def run(ref: Tensor, test: Tensor, *args: Any) -> Tensor:
        threads = torch.get_num_threads()
        if ref.device.type != "cpu" or threads < 2 or ref.shape[0] < 2:
            return fn(ref, test, *args)
        parts = min(ref.shape[0], threads * RANGES_PER_THREAD)
        bounds = [round(i * ref.shape[0] / parts) for i in range(parts + 1)]
        try:
            ranges = _pool(threads).map(lambda low, high: fn(ref[low:high], test[low:high], *args),
                                        bounds[:-1], bounds[1:])
            return torch.cat(list(ranges))
        finally:
            # a worker's set_num_threads(1) applies to its own OpenMP thread but also to threads created
            # later, so the caller's count is restored
            torch.set_num_threads(threads)

    return functools.wraps(fn)(run)


_POOLS: dict[tuple[int, int], ThreadPoolExecutor] = {}  # (pid, threads) -> workers that each run single-threaded


def _pool(threads: int) -> ThreadPoolExecutor:
    """A kept pool of `threads` single-threaded workers (per process: a forked child gets its own)."""
    key = (os.getpid(), threads)
    if key not in _POOLS:
        _POOLS[key] = ThreadPoolExecutor(threads, thread_name_prefix="frame-metrics",
                                         initializer=torch.set_num_threads, initargs=(1,))
    return _POOLS[key]


def mse_to_psnr(mse: Tensor, peak: float = 1.0) -> Tensor:
    """10 log10(peak^2 / mse), with mse floored at `MSE_FLOOR * peak^2` (identical -> 100 dB)."""
    floor = MSE_FLOOR * peak * peak
    return 10.0 * torch.log10(peak * peak / mse.clamp_min(floor))


@frame_parallel
def frame_mse(ref: Tensor, test: Tensor) -> Tensor:
    """Mean squared error of each frame over pixels and channels: (T, H, W, C) x2 -> (T,) float64."""
    out = []
    for block in frame_blocks(ref.shape[0], ref[0].numel(), ref.device):
        diff = (test[block] - ref[block]).flatten(1)  # (t, H*W*C)
        # vecdot fuses square and sum (one pass); its blocked float32 sum is accurate to ~1e-6 relative
        out.append(torch.linalg.vecdot(diff, diff).double() / diff.shape[1])
    return torch.cat(out)


def psnr_per_frame(ref: Tensor, test: Tensor) -> Tensor:
    """PSNR in dB of each frame, peak 1.0: (T, H, W, C) x2 -> (T,) (skimage's value per frame)."""
    return mse_to_psnr(frame_mse(ref, test))


@frame_parallel
def luma_frame_mse(ref: Tensor, test: Tensor) -> Tensor:
    """Per-frame MSE of the BT.601 luma: (T, H, W, 3) x2 -> (T,) float64 (luma is linear: luma of the error)."""
    weights = torch.tensor(BT601_LUMA, dtype=ref.dtype, device=ref.device)
    out = []
    for block in frame_blocks(ref.shape[0], ref[0].numel(), ref.device):
        diff = ((test[block] - ref[block]) @ weights).flatten(1)  # (t, H*W)
        out.append(torch.linalg.vecdot(diff, diff).double() / diff.shape[1])
    return torch.cat(out)


def window_sum7(x: Tensor, dim: int, pair: Tensor, quad: Tensor, out: Tensor) -> Tensor:
    """Sum of every 7 consecutive entries along `dim` (no padding; length n -> n - 6), into `out`.

    By doubling: pairs (n-1), quads = pair + pair shifted by 2 (n-3), then quad + pair shifted
    by 4 + x shifted by 6: 4 passes instead of 7 shifted adds. `pair` and `quad` are scratch
    tensors of lengths n-1 and n-3 along `dim`, reused across blocks so nothing is allocated.
    """
    n = x.shape[dim]
    torch.add(x.narrow(dim, 0, n - 1), x.narrow(dim, 1, n - 1), out=pair)
    torch.add(pair.narrow(dim, 0, n - 3), pair.narrow(dim, 2, n - 3), out=quad)
    torch.add(quad.narrow(dim, 0, n - 6), pair.narrow(dim, 4, n - 6), out=out)
    return out.add_(x.narrow(dim, 6, n - 6))


class _SSIMWorkspace:
    """Scratch maps for one block of t frames: the 4 moments, the filter's partial sums, the SSIM terms."""

    def __init__(self, t: int, h: int, w: int, c: int, like: Tensor) -> None:
        new = lambda *shape: torch.empty(t, *shape, c, dtype=like.dtype, device=like.device)  # noqa: E731
        self.moments = new(4, h, w)  # x, y, x^2 + y^2, x*y
        self.rows = (new(4, h - 1, w), new(4, h - 3, w), new(4, h - 6, w))  # pair, quad, 7-sums along H
        self.cols = (new(4, h - 6, w - 1), new(4, h - 6, w - 3), new(4, h - 6, w - 6))  # the same along W
        self.terms = new(3, h - 6, w - 6)  # mu_x mu_y, mu_x^2 + mu_y^2, the SSIM map


@frame_parallel
def ssim_per_frame(ref: Tensor, test: Tensor, data_range: float = 1.0) -> Tensor:
    """Mean SSIM of each frame, averaged over channels: (T, H, W, C) x2 -> (T,) float64.

    Reproduces `skimage.metrics.structural_similarity(ref, test, channel_axis=-1,
    data_range=data_range)` with its defaults: 7x7 uniform window, K1 = 0.01, K2 = 0.03,
    sample (N-1) covariance, and the mean taken over the pixels whose window lies fully
    inside the image (skimage filters with reflection, then crops (7-1)/2 pixels from each
    border before averaging, which leaves exactly the "valid" windows). A separable box
    filter without padding (`window_sum7`) computes those windows for a block of frames at
    once. Needs H, W >= 7.

    Speed: SSIM holds ~10 maps per frame, so its blocks are a quarter of the other measures'
    (one CIF frame on a CPU), and every map lives in a workspace reused across blocks with
    in-place arithmetic: no allocation per block, and the working set stays in cache. With
    several torch threads, frame ranges run in parallel (`frame_parallel`).
    """
    t, h, w, c = ref.shape
    if min(h, w) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs frames of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels, got {h}x{w}.")
    n_window = SSIM_WINDOW * SSIM_WINDOW
    cov_norm = n_window / (n_window - 1)  # unbiased (sample) covariance, skimage's default
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    out, space = [], None
    for block in frame_blocks(t, 4 * h * w * c, ref.device):
        x, y = ref[block], test[block]  # (t, H, W, C): channels-last, so every shifted slice is contiguous rows
        if space is None or space.moments.shape[0] != x.shape[0]:
            space = _SSIMWorkspace(x.shape[0], h, w, c, ref)
        m = space.moments  # SSIM uses var_x + var_y and mu_x^2 + mu_y^2 only as sums: 4 filtered maps, not 5
        m[:, 0].copy_(x)
        m[:, 1].copy_(y)
        torch.mul(x, x, out=m[:, 2]).addcmul_(y, y)
        torch.mul(x, y, out=m[:, 3])
        pooled = window_sum7(window_sum7(m, 2, *space.rows), 3, *space.cols).div_(n_window)  # (t, 4, H-6, W-6, C)
        mu_x, mu_y, m_sq, m_xy = pooled.unbind(dim=1)
        mu_xy, mu_sq, ssim_map = space.terms.unbind(dim=1)
        torch.mul(mu_x, mu_y, out=mu_xy)
        torch.mul(mu_x, mu_x, out=mu_sq).addcmul_(mu_y, mu_y)
        cov = m_xy.sub_(mu_xy).mul_(2 * cov_norm).add_(c2)  # 2 sigma_xy + c2
        var = m_sq.sub_(mu_sq).mul_(cov_norm).add_(c2)  # sigma_x^2 + sigma_y^2 + c2
        torch.mul(mu_xy, 2.0, out=ssim_map).add_(c1).mul_(cov)  # (2 mu_x mu_y + c1)(2 sigma_xy + c2)
        ssim_map.div_(mu_sq.add_(c1).mul_(var))  # / (mu_x^2 + mu_y^2 + c1)(sigma_x^2 + sigma_y^2 + c2)
        flat = ssim_map.flatten(1)  # (t, (H-6)*(W-6)*C)
        out.append(flat.sum(dim=1, dtype=torch.float64) / flat.shape[1])  # (t,)
    return torch.cat(out)


def ms_ssim_min_side(scales: int = len(MS_SSIM_BETAS), kernel: int = MS_SSIM_KERNEL) -> int:
    """Smallest frame side MS-SSIM accepts: the 1/2^(scales-1) image must exceed the window.

    Mirrors torchmetrics' check (side // (scales-1)^2 > kernel - 1), which for 5 scales and
    an 11-px window is side // 16 > 10, i.e. side >= 176.
    """
    div = max(1, scales - 1) ** 2
    return div * kernel


def ms_ssim_per_frame(ref: Tensor, test: Tensor) -> Tensor:
    """Multi-scale SSIM of each frame (torchmetrics: 5 scales, Gaussian 11/1.5, relu-normalised) -> (T,) float64."""
    from torchmetrics.functional.image import multiscale_structural_similarity_index_measure as ms_ssim

    out = []
    for block in frame_blocks(ref.shape[0], 8 * ref[0].numel(), ref.device):
        out.append(
            ms_ssim(
                test[block].permute(0, 3, 1, 2),  # (t, C, H, W)
                ref[block].permute(0, 3, 1, 2),
                data_range=1.0,
                kernel_size=MS_SSIM_KERNEL,
                betas=MS_SSIM_BETAS,
                reduction="none",
                normalize="relu",  # clamps negative contrast terms so fractional powers stay real
            ).double()
        )
    return torch.cat(out)


def dwt_band_mse(ref: Tensor, test: Tensor) -> Tensor:
    """MSE of the test video's error in each 3D Haar sub-band: (T, H, W, C) x2 -> (8,) in BAND_NAMES order.

    The transform is linear, so a band's error is the transform of the pixel error, and
    it is local to 2x2x2 blocks, so blocks of whole frame pairs are transformed on their
    own. Odd T repeats the first frame (`haar_dwt3d`'s default for 1 + 8k clips): frame 0
    forms a pair with itself, then (1, 2), (3, 4), ...
    """
    from models.losses.dwt import haar_dwt3d

    frames = ref.shape[0]
    sums = torch.zeros(8, dtype=torch.float64, device=ref.device)
    count = 0
    lead = [slice(0, 1)] if frames % 2 else []  # the lone first frame of an odd clip
    for block in lead + list(frame_blocks(frames, ref[0].numel(), ref.device, start=frames % 2, align=2)):
        diff = (test[block] - ref[block]).permute(3, 0, 1, 2).unsqueeze(0)  # (1, C, t, H, W) as haar_dwt3d takes
        bands = haar_dwt3d(diff.double())  # (1, C, 8, t/2, H/2, W/2)
        sums += bands.pow(2).sum(dim=(0, 1, 3, 4, 5))  # (8,)
        count += bands[:, :, 0].numel()
    return sums / count


def dwt_band_psnr(ref: Tensor, test: Tensor) -> Tensor:
    """PSNR in dB of each 3D Haar sub-band, peak `DWT_PEAK`: (T, H, W, C) x2 -> (8,) in BAND_NAMES order."""
    return mse_to_psnr(dwt_band_mse(ref, test), peak=DWT_PEAK)


def flicker_per_transition(ref: Tensor, test: Tensor) -> Tensor:
    """Temporal flicker error: mean |(test[t+1] - test[t]) - (ref[t+1] - ref[t])| per transition -> (T-1,).

    Equal to the mean absolute frame-to-frame change of the error video test - ref: zero
    when the test video moves exactly as the reference does, even if it is blurry or
    offset, and large when it shimmers. Lower is better; the range is [0, 2].
    """
    out = []
    for block in frame_blocks(ref.shape[0] - 1, ref[0].numel(), ref.device):
        span = slice(block.start, block.stop + 1)  # one frame of overlap: t transitions need t+1 frames
        err = test[span] - ref[span]  # (t+1, H, W, C)
        out.append((err[1:] - err[:-1]).abs().flatten(1).sum(dim=1, dtype=torch.float64) / err[0].numel())
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)
