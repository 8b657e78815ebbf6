"""Motion scores of a clip: mean Farneback optical-flow magnitude and mean absolute frame
difference, on greyscale frames downscaled to `MotionConfig.width`.

Frames about `pair_interval_s` apart are compared (`stride_for`: a whole number of frames at
the clip's rate; at most `max_pairs` pairs, spread over the clip). The flow is in pixels per
second at the scaled width (displacement / (stride / fps)), so one threshold holds for any
source resolution and frame rate: the same pan scores the same at 24 and at 60 fps. The
difference is in grey levels (0-255) per compared pair, pairs being the same time apart at any
rate. `is_static` flags a clip whose content barely moves (flow below
`static_flow`) or whose frames barely change at all (difference below `static_diff`, e.g.
a frozen or duplicated picture): a still image with sensor noise has a sizeable frame
difference but almost no coherent flow, which is why flow is the main criterion.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from clips.curate.probe import probe, read_frames
from clips.errors import ClipError

if TYPE_CHECKING:
    from clips.curate.bars import CropBox


@dataclass(frozen=True, kw_only=True)
class MotionConfig:
    """Motion scoring and the static-clip thresholds."""

    width: int = 128  # frames are resized to this width (aspect kept) before scoring
    pair_interval_s: float = 1 / 12  # compare frames about this far apart in time (2 frames at 24 fps, 5 at 60)
    max_pairs: int = 16  # at most this many frame pairs per clip, spread evenly
    static_flow: float = 4.8  # mean flow below this (px per second at `width`; 0.2 px/frame at 24 fps) is static
    static_diff: float = 0.5  # mean |frame difference| below this (grey levels) is static
    # Farneback parameters (cv2.calcOpticalFlowFarneback)
    pyr_scale: float = 0.5  # image scale between pyramid levels
    levels: int = 3  # pyramid levels
    winsize: int = 15  # averaging window in pixels: larger is smoother and less noise-sensitive
    iterations: int = 3  # iterations per pyramid level
    poly_n: int = 5  # pixel neighbourhood for the polynomial expansion
    poly_sigma: float = 1.2  # Gaussian std of that expansion

    def __post_init__(self):
        if self.width < 8 or not self.pair_interval_s > 0 or self.max_pairs < 1:
            raise ClipError("MotionConfig needs width >= 8, pair_interval_s > 0 and max_pairs >= 1.")


@dataclass(frozen=True, kw_only=True)
class MotionScores:
    """Motion of one clip."""

    flow: float  # mean optical-flow magnitude, px per second at MotionConfig.width
    flow_p90: float  # 90th percentile of the per-pair mean magnitudes (bursts of motion)
    diff: float  # mean absolute grey-level difference per compared pair (0-255)
    pairs: int  # frame pairs compared


def scaled_height(height: int, width: int, target_width: int) -> int:
    """Height after resizing to `target_width` (aspect kept, even, as `read_frames` does)."""
    return max(2, int(round(height * target_width / width / 2)) * 2)


def _grey(rgb: np.ndarray, width: int) -> np.ndarray:
    """uint8 `(h, width)` grey image of one uint8 RGB frame."""
    h, w, _ = rgb.shape
    grey = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    size = (width, scaled_height(h, w, width))
    if (w, h) != size:
        grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
    return grey


def stride_for(fps: float, cfg: MotionConfig) -> int:
    """Frames between the two frames of a pair: `pair_interval_s` at `fps`, at least 1."""
    if not (fps > 0 and np.isfinite(fps)):
        raise ClipError(f"Motion scores need the clip's frame rate, got {fps}.")
    return max(1, int(round(fps * cfg.pair_interval_s)))


def pair_starts(num_frames: int, stride: int, cfg: MotionConfig) -> list[int]:
    """First frame of each compared pair `(i, i + stride)` in a clip of `num_frames`."""
    last = num_frames - 1 - stride
    if last < 0:
        return []
    starts = range(0, last + 1)
    if len(starts) <= cfg.max_pairs:
        return list(starts)
    return sorted({int(round(x)) for x in np.linspace(0, last, cfg.max_pairs)})


def motion_scores(frames: np.ndarray, fps: float, cfg: MotionConfig = MotionConfig()) -> MotionScores:
    """Scores of uint8 RGB `(T, H, W, 3)` frames (consecutive frames of one clip at `fps`)."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ClipError(f"motion_scores needs (T, H, W, 3) frames, got shape {frames.shape}.")
    stride = stride_for(fps, cfg)
    starts = pair_starts(len(frames), stride, cfg)
    if not starts:
        raise ClipError(f"motion_scores needs more than {stride} frames at {fps:g} fps, got {len(frames)}.")
    needed = {i for start in starts for i in (start, start + stride)}
    return _score({i: _grey(frames[i], cfg.width) for i in needed}, starts, stride, fps, cfg)


def _score(grey: dict[int, np.ndarray], starts: list[int], stride: int, fps: float,
           cfg: MotionConfig) -> MotionScores:
    flows, diffs = [], []
    for s in starts:
        a, b = grey[s], grey[s + stride]
        flow = cv2.calcOpticalFlowFarneback(
            a, b, None, cfg.pyr_scale, cfg.levels, cfg.winsize, cfg.iterations, cfg.poly_n,
            cfg.poly_sigma, 0)  # (h, w, 2) displacement in pixels
        magnitude = np.sqrt((flow.astype(np.float64) ** 2).sum(axis=-1))
        flows.append(float(magnitude.mean()) * fps / stride)  # px per second
        diffs.append(float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean()))
    return MotionScores(flow=float(np.mean(flows)), flow_p90=float(np.quantile(flows, 0.9)),
                        diff=float(np.mean(diffs)), pairs=len(starts))


def motion_scores_file(
    path: str | os.PathLike,
    cfg: MotionConfig = MotionConfig(),
    *,
    start: int = 0,
    end: int | None = None,
    crop: CropBox | None = None,
    fps: float | None = None,
) -> MotionScores:
    """`motion_scores` of frames `[start, end)` of a file, decoding only the frames it compares.

    Frames are resized to `cfg.width` while decoding. `end=None` means the end of the file;
    `fps` (the file's rate, from its Probe) is probed when not given.
    `crop` (a `bars.CropBox`) scores the picture inside the black bars only, the crop resized
    to `cfg.width` (bars never move, so they would only dilute the mean flow).
    """
    if end is None or fps is None:
        info = probe(path)
        end, fps = (info.frames if end is None else end), (info.fps if fps is None else fps)
    stride = stride_for(fps, cfg)
    rel = pair_starts(end - start, stride, cfg)
    if not rel:
        raise ClipError(f"Clip [{start}, {end}) of {path} is too short for frames {stride} apart.")
    wanted = sorted({start + i for s in rel for i in (s, s + stride)})
    if crop is None:
        frames = read_frames(path, indices=wanted, width=cfg.width)  # resized while decoding
    else:
        from clips.curate.crop import read_cropped

        frames = read_cropped(path, crop, indices=wanted, width=cfg.width)
    if len(frames) != len(wanted):
        raise ClipError(f"Video file {path} ended early: {len(frames)} of {len(wanted)} frames "
                        f"in [{start}, {end}) decoded.")
    grey = {f - start: _grey(rgb, cfg.width) for f, rgb in zip(wanted, frames)}
    return _score(grey, rel, stride, fps, cfg)


def is_static(scores: MotionScores, cfg: MotionConfig = MotionConfig()) -> bool:
    """True when the clip's content barely moves (see the module docstring)."""
    return scores.flow < cfg.static_flow or scores.diff < cfg.static_diff
