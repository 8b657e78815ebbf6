"""Decode frames of a clip inside its black-bar crop box, scaled while decoding.

Every stage after `bars` looks at the picture only (motion, the aesthetic scorer, the
captioner, the re-encoded clip): bars would dilute the motion score and the scorer's input.
Frames are resized inside FFmpeg's swscale while decoding (`read_frames(width=...)`), so a
1080p source never sits in memory at full size when a 128-pixel-wide crop is all a stage needs.
"""

from __future__ import annotations

import os
from typing import Iterable

import numpy as np

from clips.curate.bars import CropBox
from clips.curate.probe import read_frames


def decode_width(box: CropBox, width: int | None) -> int | None:
    """Full-frame decode width that makes the crop about `width` pixels wide (None: native, never upscaled)."""
    if width is None or box.width <= 0:
        return None
    full = int(round(box.frame_width * width / box.width / 2)) * 2
    return None if full >= box.frame_width else max(2, full)


def read_cropped(
    path: str | os.PathLike,
    box: CropBox,
    *,
    start: int = 0,
    end: int | None = None,
    indices: Iterable[int] | None = None,
    width: int | None = None,
) -> np.ndarray:
    """uint8 `(N, h, w, 3)` frames `[start, end)` (or `indices`) of `box`, the crop about `width` wide.

    `width=None` keeps the source resolution. The box is scaled with the decoded frame (x and
    y separately, since `read_frames` rounds the scaled height to even).
    """
    frames = read_frames(path, start=start, end=end, indices=indices, width=decode_width(box, width))
    if not box.cropped:
        return frames
    _, h, w, _ = frames.shape
    sx, sy = w / box.frame_width, h / box.frame_height
    x0, x1 = int(round(box.x0 * sx)), max(int(round(box.x0 * sx)) + 1, int(round(box.x1 * sx)))
    y0, y1 = int(round(box.y0 * sy)), max(int(round(box.y0 * sy)) + 1, int(round(box.y1 * sy)))
    return np.ascontiguousarray(frames[:, y0:y1, x0:x1])  # (N, h', w', 3)


def box_of_row(row: dict) -> CropBox:
    """The CropBox of a manifest row (crop_* columns, width/height of the source)."""
    return CropBox(x0=int(row["crop_x0"]), y0=int(row["crop_y0"]), x1=int(row["crop_x1"]),
                   y1=int(row["crop_y1"]), frame_width=int(row["width"]), frame_height=int(row["height"]))
