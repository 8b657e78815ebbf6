"""Deterministic clip sampling from decoded videos: train/held-out split, frame windows, crops.

Every video is split in time: the first 75% of its frames are for training, the last 25%
for evaluation, and no window crosses the boundary, so a held-out clip never shows a frame
the model trained on. Windows are evenly spaced over the split's frames (full coverage, no
randomness to drift between runs); crop positions come from a generator seeded by
(seed, video name, split) through a stable checksum, never Python's salted `hash`, so clip
ids and pixels are identical across runs and processes.
"""

from __future__ import annotations

import zlib

import numpy as np

from clips.errors import ClipError
from clips.types import SPLITS, Clip, Source

TRAIN_FRACTION = 0.75  # docs/design.md (`clips/`): train on the first 75% of each video, evaluate on the rest


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise ClipError(f"Unknown split {split!r}; use 'train' or 'heldout'.")


def split_boundary(num_frames: int) -> int:
    """First held-out frame index: frames [0, b) are train, [b, num_frames) held out."""
    return int(num_frames * TRAIN_FRACTION)


def split_range(num_frames: int, split: str) -> tuple[int, int]:
    """(start, stop) frame indices, stop exclusive, of `split` in a video of `num_frames`."""
    check_split(split)
    boundary = split_boundary(num_frames)
    return (0, boundary) if split == "train" else (boundary, num_frames)


def window_starts(lo: int, hi: int, frames: int, count: int) -> list[int]:
    """`count` window starts evenly spaced so each window [s, s+frames) lies in [lo, hi)."""
    last = hi - frames
    if last < lo:
        raise ValueError(f"range [{lo}, {hi}) is shorter than {frames} frames")
    return [int(s) for s in np.round(np.linspace(lo, last, count)).astype(int)]


def short_side_for(height: int, width: int, scale: float | None) -> int | None:
    """Shorter side to resize a video to before cropping (None = keep native pixels).

    scale 1.0 makes the shorter side equal the crop's larger side, so a crop covers the whole
    short dimension of the frame instead of a tiny patch of a 720p picture.
    """
    return None if scale is None else int(round(scale * max(height, width)))


def stable_seed(*parts: object) -> int:
    """A 32-bit seed from the parts' text, identical in every process (unlike `hash`)."""
    return zlib.crc32("\x1f".join(str(p) for p in parts).encode("utf-8"))


def make_clip_id(name: str, split: str, start: int, frames: int, y: int, x: int,
                 height: int, width: int, short_side: int | None) -> str:
    """e.g. `bikes:heldout:t190-206:y0x41:64x64:s64` (frame range inclusive; s = resized short side).

    `clips.ids.source_of_clip_id` reads the video name back; keep the two in step.
    """
    clip_id = f"{name}:{split}:t{start}-{start + frames - 1}:y{y}x{x}:{height}x{width}"
    return clip_id if short_side is None else f"{clip_id}:s{short_side}"



def plan_windows(name: str, num_frames: int, video_h: int, video_w: int, *, split: str, frames: int, height: int,
                 width: int, count: int, seed: int) -> list[tuple[int, int, int]]:
    """`(start, y, x)` of the `count` windows `sample_clips` cuts from a video, without its pixels.

    Frame windows are evenly spaced over the split's frames; crop corners come from a
    generator seeded by (seed, name, split). The manifest source plans its clips with this
    and decodes each window only when it is read (`clips.manifest_source`).
    Raises:
        ClipError: the split region is shorter than `frames` or the picture smaller than the crop.
    """
    check_split(split)
    lo, hi = split_range(num_frames, split)
    if hi - lo < frames:
        longest = (max(hi - lo, 1) - 1) // 8 * 8 + 1
        raise ClipError(
            f"Video {name!r} has only {hi - lo} {split} frames, fewer than frames={frames}; "
            f"use frames <= {longest}."
        )
    if video_h < height or video_w < width:
        raise ClipError(
            f"Video {name!r} is {video_h}x{video_w} pixels, smaller than the {height}x{width} crop; "
            "lower height/width or set scale so the video is resized first."
        )
    rng = np.random.default_rng(stable_seed(seed, name, split))
    planned = []
    for start in window_starts(lo, hi, frames, count):
        y = int(rng.integers(0, video_h - height + 1))
        x = int(rng.integers(0, video_w - width + 1))
        planned.append((start, y, x))
    return planned


def sample_clips(
    name: str,
    video: np.ndarray,
    fps: float,
    *,
    split: str,
    frames: int,
    height: int,
    width: int,
    count: int,
    seed: int,
    source: Source,
    caption: str | None,
    short_side: int | None,
) -> list[Clip]:
    """Cut `count` clips of `(frames, height, width)` from one decoded video's `split` region.

    Args:
        video: uint8 `(N, H', W', 3)`, already resized to `short_side` if that is not None
            (recorded in ids and meta only).
    Raises:
        ClipError: the split region is shorter than `frames` or the picture smaller than the crop.
    """
    num_frames, video_h, video_w = video.shape[:3]
    clips = []
    for start, y, x in plan_windows(name, num_frames, video_h, video_w, split=split, frames=frames, height=height,
                                    width=width, count=count, seed=seed):
        pixels = video[start:start + frames, y:y + height, x:x + width]  # (T, h, w, 3)
        clips.append(Clip(
            clip_id=make_clip_id(name, split, start, frames, y, x, height, width, short_side),
            frames=np.ascontiguousarray(pixels),
            fps=fps,
            caption=caption,
            source=source,
            split=split,
            meta={
                "video": name,
                "frame_window": (start, start + frames),  # stop exclusive
                "crop_box": (y, x, height, width),  # in the resized video's pixels
                "video_hw": (video_h, video_w),
                "short_side": short_side,
                "num_video_frames": num_frames,
                "split_boundary": split_boundary(num_frames),
            },
        ))
    return clips
