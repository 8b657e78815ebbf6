"""Black-bar detection: the crop box that covers a video's picture, without its letterbox
(bars above and below), pillarbox (left and right) or both.

A row (column) is black in a frame when its median luma is at most `black_median` and its
`peak_quantile` luma is at most `black_peak`: at least that share of its pixels is black, so
a channel logo or codec ringing over the rest does not make a bar row bright. It is a bar
row when it is black in at least `frame_fraction` of the frames sampled across the clip, so
burned-in subtitles shown in fewer frames than that do not break the bar either. Bars are the
runs of bar rows that touch the frame's border; a black row in the middle never counts.

A dark scene is the detector's other failure: a night sky or a dark floor is black too, in
every frame. Real letterbox and pillarbox bars come in pairs of nearly equal size (the
picture is centred), so an axis is cropped as measured only when both of its sides have bars
within `max_asymmetry` of the side's length of each other; otherwise each side is cropped only
as far as both are black (a dark band on one side is picture, and stays). As a last guard, a
crop that would keep less than `min_content_fraction` of a side is not made on that axis (a
mostly black clip is `all_black`, not a sliver of picture). `all_black` means the mean luma of
every sampled frame is at most `black_median`. Columns are judged across the picture rows only
(rows first), since across a tall letterbox a column is mostly bar.

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
    black_median: float = 8.0  # a row is black in a frame when its median luma is at most this ...
    black_peak: float = 20.0  # ... and its peak_quantile luma is at most this
    peak_quantile: float = 0.8  # share of a black row's pixels that must be dark: a logo or ringing may fill the rest
    frame_fraction: float = 0.5  # a bar row is black in at least this share of the sampled frames (subtitles come and go)
    max_asymmetry: float = 0.1  # the two bars of an axis differ by at most this fraction of its length (else: dark scene)
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


def _black_in_frames(y: np.ndarray, axis: int, cfg: BarsConfig) -> np.ndarray:
    """bool `(T, lines)`: each row (axis=2) or column (axis=1) of `(T, H, W)` luma, black in each frame."""
    median, peak = np.quantile(y, [0.5, cfg.peak_quantile], axis=axis)  # (T, lines) each
    return (median <= cfg.black_median) & (peak <= cfg.black_peak)


def _border_run(black: np.ndarray) -> tuple[int, int]:
    """Lengths of the runs of True at the start and at the end of `black`."""
    n = len(black)
    head = n if black.all() else int(np.argmin(black))
    tail = n if black.all() else int(np.argmin(black[::-1]))
    return head, tail


def _axis_bounds(bar_lines: np.ndarray, size: int, cfg: BarsConfig) -> tuple[int, int]:
    """(start, end) of the picture along one axis from its bar lines (see the module docstring)."""
    head, tail = _border_run(bar_lines)
    head = head if head >= cfg.min_bar else 0
    tail = tail if tail >= cfg.min_bar else 0
    if abs(head - tail) > cfg.max_asymmetry * size:
        head = tail = min(head, tail)  # one-sided darkness is picture: crop only what both sides share
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
    if (y.mean(axis=(1, 2)) <= cfg.black_median).all():
        return CropBox(x0=0, y0=0, x1=width, y1=height, frame_width=width, frame_height=height,
                       all_black=True)
    black_rows = _black_in_frames(y, 2, cfg)  # (T, H)
    y0, y1 = _axis_bounds(black_rows.mean(axis=0) >= cfg.frame_fraction, height, cfg)
    # columns across the picture rows only: across a tall letterbox a column is mostly bar
    black_cols = _black_in_frames(y[:, y0:y1], 1, cfg)  # (T, W)
    x0, x1 = _axis_bounds(black_cols.mean(axis=0) >= cfg.frame_fraction, width, cfg)
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
