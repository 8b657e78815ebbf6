"""Black-bar detection: the crop box that covers a video's picture, without its letterbox
(bars above and below), pillarbox (left and right) or both.

A row (column) is a bar when, in every sampled frame, the row is black: its mean luma is at
most `black_mean` and its `peak_quantile` luma (a near-maximum that ignores a few codec
ringing pixels) is at most `black_peak`. Bars are the runs of such rows that touch the
frame's border; a black row in the middle of the picture never counts. Taking the maximum
over frames sampled across the whole clip is what keeps a dark scene whole: a dim row is
black in some frames, but not in all of them, while a real bar is black in every frame.
As a last guard, a crop that would keep less than `min_content_fraction` of a side is not
made on that axis (a mostly black clip is `all_black`, not a sliver of picture).

Luma is BT.601 on full-range RGB (0-255): what `clips.io.read_video` returns.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from clips.curate.probe import probe, read_frames, sample_indices
from clips.errors import ClipError


@dataclass(frozen=True, kw_only=True)
class BarsConfig:
    """Thresholds of the black-bar detector (luma on a 0-255 scale)."""

    samples: int = 16  # frames sampled evenly over the clip
    black_mean: float = 8.0  # a bar row's mean luma is at most this in every sampled frame
    black_peak: float = 20.0  # ... and its peak_quantile luma is at most this in every frame
    peak_quantile: float = 0.95  # near-maximum of a row: ignores the brightest 5% (ringing)
    min_bar: int = 2  # bars thinner than this many pixels are ignored (codec edge noise)
    min_content_fraction: float = 0.25  # never crop a side to less than this fraction
    round_to: int = 2  # round the box inward to multiples of this (even sizes for yuv420p)


@dataclass(frozen=True, kw_only=True)
class CropBox:
    """The picture area, end-exclusive, in pixels of the full frame."""

    x0: int
    y0: int
    x1: int
    y1: int
    frame_width: int
    frame_height: int
    all_black: bool = False  # every sampled frame was black: no picture to keep

    @property
    def box(self) -> tuple[int, int, int, int]:
        return (self.x0, self.y0, self.x1, self.y1)

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    @property
    def bars(self) -> tuple[int, int, int, int]:
        """(top, bottom, left, right) bar sizes in pixels."""
        return (self.y0, self.frame_height - self.y1, self.x0, self.frame_width - self.x1)

    @property
    def cropped(self) -> bool:
        return self.box != (0, 0, self.frame_width, self.frame_height)


def luma(frames: np.ndarray) -> np.ndarray:
    """float32 BT.601 luma `(T, H, W)` of uint8 RGB `(T, H, W, 3)`."""
    rgb = np.asarray(frames, dtype=np.float32)
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def _black_lines(y: np.ndarray, axis: int, cfg: BarsConfig) -> np.ndarray:
    """bool per row (axis=1) or column (axis=2) of `(T, H, W)` luma: black in every frame."""
    mean = y.mean(axis=axis).max(axis=0)  # (lines,) worst (brightest) frame
    peak = np.quantile(y, cfg.peak_quantile, axis=axis).max(axis=0)
    return (mean <= cfg.black_mean) & (peak <= cfg.black_peak)


def _border_run(black: np.ndarray) -> tuple[int, int]:
    """Lengths of the runs of True at the start and at the end of `black`."""
    n = len(black)
    head = n if black.all() else int(np.argmin(black))
    tail = n if black.all() else int(np.argmin(black[::-1]))
    return head, tail


def _axis_bounds(black: np.ndarray, size: int, cfg: BarsConfig) -> tuple[int, int]:
    head, tail = _border_run(black)
    head = head if head >= cfg.min_bar else 0
    tail = tail if tail >= cfg.min_bar else 0
    lo, hi = head, size - tail
    r = max(1, cfg.round_to)
    lo, hi = -(-lo // r) * r, (hi // r) * r  # inward: ceil the start, floor the end
    if hi - lo < cfg.min_content_fraction * size:
        return 0, size  # too little left: suspect a dark scene, do not crop this axis
    return lo, hi


def detect_bars(frames: np.ndarray, cfg: BarsConfig = BarsConfig()) -> CropBox:
    """The crop box of uint8 RGB `(T, H, W, 3)` frames (use a sample spread over the clip)."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        raise ClipError(f"detect_bars needs (T, H, W, 3) frames with T >= 1, got {frames.shape}.")
    _, height, width, _ = frames.shape
    y = luma(frames)  # (T, H, W)
    black_rows = _black_lines(y, 2, cfg)  # (H,)
    black_cols = _black_lines(y, 1, cfg)  # (W,)
    if black_rows.all() or black_cols.all():
        return CropBox(x0=0, y0=0, x1=width, y1=height, frame_width=width, frame_height=height,
                       all_black=True)
    y0, y1 = _axis_bounds(black_rows, height, cfg)
    x0, x1 = _axis_bounds(black_cols, width, cfg)
    return CropBox(x0=x0, y0=y0, x1=x1, y1=y1, frame_width=width, frame_height=height)


def detect_bars_file(
    path: str | os.PathLike,
    cfg: BarsConfig = BarsConfig(),
    *,
    start: int = 0,
    end: int | None = None,
    frames: int | None = None,
) -> CropBox:
    """`detect_bars` on `cfg.samples` frames spread over `[start, end)` of a file.

    `frames` is the file's frame count (from its `Probe`); probed here when not given.
    """
    total = frames if frames is not None else probe(path).frames
    indices = sample_indices(total, cfg.samples, start, end)
    if not indices:
        raise ClipError(f"Video file {path} has no frames in [{start}, {end}).")
    return detect_bars(read_frames(path, indices=indices), cfg)
