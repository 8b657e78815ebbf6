"""Videos with a known answer, for testing and benchmarking the curation detectors.

Every generator is deterministic from its seed and writes a real H.264 mp4 through
`clips.io.write_video` (or, for the broken kinds, a real broken file), returning the truth
the detectors should recover:

- black bars: letterbox / pillarbox / both with exact bar sizes, full-frame content, and a
  dark (but not black) full-frame scene that no crop may cut into;
- hard cuts between visually distinct scenes at known frames;
- static clips (one still image plus slight per-frame noise) and moving clips (textured
  content translating at a known speed);
- broken files: zero-byte, truncated mp4, text renamed `.mp4`, a PNG/JPEG renamed `.mp4`,
  and an mp4 with an audio stream only.

The frame-array generators (`texture`, `moving_frames`, `static_frames`, `add_bars`,
`cut_frames`) are public so tests can also feed detectors without a codec in between.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import av
import cv2
import numpy as np

from clips.io import write_video

BrokenKind = Literal["empty", "truncated", "not_video", "image", "no_video_stream"]
BROKEN_KINDS: tuple[str, ...] = ("empty", "truncated", "not_video", "image", "no_video_stream")

# Luma ranges (0-255) of the generated content. Normal content stays well clear of black so
# that its rows are never mistaken for a bar; the dark scene is dim but not black.
_NORMAL_RANGE = (40.0, 230.0)
_DARK_RANGE = (3.0, 40.0)


@dataclass(frozen=True, kw_only=True)
class SyntheticVideo:
    """A generated mp4 and what a correct detector reports on it."""

    path: Path
    kind: str  # "letterbox" | "pillarbox" | "both" | "full" | "dark" | "cuts" | "static" | "moving"
    fps: float
    frames: int  # number of frames written
    height: int  # frame height in pixels (even)
    width: int  # frame width in pixels (even)
    crop: tuple[int, int, int, int]  # true content box (x0, y0, x1, y1), end-exclusive
    cuts: tuple[int, ...] = ()  # first frame of every shot after the first
    speed: float = 0.0  # content speed in pixels per frame at this resolution (0: static)
    texture_scale: float = 0.0  # size of the texture's blobs in pixels
    noise: float = 0.0  # std of the per-frame Gaussian noise (0-255 scale)

    @property
    def moving(self) -> bool:
        return self.speed > 0


@dataclass(frozen=True, kw_only=True)
class BrokenFile:
    """A generated file that `probe` must refuse, and why."""

    path: Path
    kind: BrokenKind


# ----------------------------------------------------------------------------- frames


def texture(
    rng: np.random.Generator,
    height: int,
    width: int,
    *,
    scale: float = 12.0,
    dark: bool = False,
) -> np.ndarray:
    """Random coloured texture, float32 `(height, width, 3)` in the normal or dark luma range.

    Colour blobs of about `scale` pixels plus a finer octave at scale / 4, each channel
    stretched over the range, with a random per-image tint so two textures differ in hue,
    saturation and brightness (what a content-based cut detector compares).
    """
    def octave(s: float) -> np.ndarray:
        gh, gw = max(2, math.ceil(height / s) + 1), max(2, math.ceil(width / s) + 1)
        grid = rng.random((gh, gw, 3)).astype(np.float32)
        return cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)

    field = 0.75 * octave(scale) + 0.25 * octave(max(1.5, scale / 4))  # (H, W, 3), ~[0, 1]
    tint = rng.uniform(0.3, 1.0, size=3).astype(np.float32)  # per-channel gain: the scene's hue
    field = field * tint
    lo, hi = _DARK_RANGE if dark else _NORMAL_RANGE
    field = (field - field.min()) / max(float(field.max() - field.min()), 1e-6)
    return lo + field * (hi - lo)


def moving_frames(
    rng: np.random.Generator,
    frames: int,
    height: int,
    width: int,
    *,
    speed: float,
    scale: float = 12.0,
    dark: bool = False,
    noise: float = 0.0,
) -> np.ndarray:
    """uint8 `(frames, height, width, 3)`: a window gliding over a larger texture.

    The content translates by `speed` pixels per frame in a random direction (sub-pixel
    positions by bilinear interpolation); `speed=0` gives a still image. Optional Gaussian
    noise of std `noise` is drawn independently per frame.
    """
    angle = rng.uniform(0, 2 * math.pi)
    dx, dy = speed * math.cos(angle), speed * math.sin(angle)
    travel = speed * max(frames - 1, 0)
    margin = int(math.ceil(travel)) + 2
    big = texture(rng, height + 2 * margin, width + 2 * margin, scale=scale, dark=dark)
    out = np.empty((frames, height, width, 3), np.uint8)
    # start so that the whole path stays inside the big texture
    x0 = margin - dx * (frames - 1) / 2
    y0 = margin - dy * (frames - 1) / 2
    for t in range(frames):
        shift = np.float32([[1, 0, x0 + dx * t], [0, 1, y0 + dy * t]])
        # dst(x, y) = big(x + tx, y + ty): the affine maps output pixels into the big texture
        frame = cv2.warpAffine(big, shift, (width, height),
                               flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
        if noise > 0:
            frame = frame + rng.normal(0.0, noise, frame.shape).astype(np.float32)
        out[t] = np.clip(np.round(frame), 0, 255).astype(np.uint8)
    return out


def static_frames(
    rng: np.random.Generator,
    frames: int,
    height: int,
    width: int,
    *,
    scale: float = 12.0,
    noise: float = 2.0,
) -> np.ndarray:
    """uint8 `(frames, height, width, 3)`: one still texture plus fresh Gaussian noise per frame."""
    return moving_frames(rng, frames, height, width, speed=0.0, scale=scale, noise=noise)


def add_bars(content: np.ndarray, top: int, bottom: int, left: int, right: int) -> np.ndarray:
    """Pad `(T, h, w, 3)` content with pure black bars of the given sizes in pixels."""
    return np.pad(content, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=0)


def cut_frames(
    rng: np.random.Generator,
    shot_lengths: list[int] | tuple[int, ...],
    height: int,
    width: int,
    *,
    speed: float = 1.0,
) -> tuple[np.ndarray, tuple[int, ...]]:
    """Shots of distinct textures (each slowly moving) joined by hard cuts.

    Returns (uint8 `(sum(shot_lengths), height, width, 3)`, the first frame of each shot
    after the first). Neighbouring shots get different texture scales and tints.
    """
    shots, cuts, start = [], [], 0
    for index, length in enumerate(shot_lengths):
        scale = float(rng.choice([6.0, 12.0, 24.0]))
        shots.append(moving_frames(rng, length, height, width, speed=speed, scale=scale))
        if index:
            cuts.append(start)
        start += length
    return np.concatenate(shots), tuple(cuts)


# ----------------------------------------------------------------------------- files


def write_bars_video(
    path: str | os.PathLike,
    *,
    bars: tuple[int, int, int, int] = (0, 0, 0, 0),
    height: int = 96,
    width: int = 160,
    frames: int = 36,
    fps: float = 24.0,
    speed: float = 1.5,
    dark: bool = False,
    stripe: tuple[int, int] | None = None,
    seed: int = 0,
    kind: str | None = None,
) -> SyntheticVideo:
    """Moving content inside black bars of exact sizes (top, bottom, left, right) in pixels.

    `height` x `width` is the whole frame (must be even); the content fills the rest.
    `dark=True` draws the content in the dark range (luma about 3-40): dim, not black.
    `stripe=(a, b)` paints content rows a..b-1 pure black in every frame: a black band
    inside the picture, which is not a bar because it does not touch the border.
    """
    top, bottom, left, right = bars
    content_h, content_w = height - top - bottom, width - left - right
    if content_h < 8 or content_w < 8 or height % 2 or width % 2:
        raise ValueError(f"bars {bars} leave no room in an even {height}x{width} frame")
    rng = np.random.default_rng(seed)
    content = moving_frames(rng, frames, content_h, content_w, speed=speed, dark=dark)
    if stripe is not None:
        content[:, stripe[0]:stripe[1]] = 0
    video = add_bars(content, top, bottom, left, right)
    if kind is None:
        kind = ("both" if (top or bottom) and (left or right) else
                "letterbox" if top or bottom else "pillarbox" if left or right else
                "dark" if dark else "full")
    write_video(path, video, fps)
    return SyntheticVideo(path=Path(path), kind=kind, fps=fps, frames=frames, height=height,
                          width=width, crop=(left, top, width - right, height - bottom),
                          speed=speed, texture_scale=12.0)


def write_cut_video(
    path: str | os.PathLike,
    *,
    shot_lengths: tuple[int, ...] = (20, 28, 24),
    height: int = 96,
    width: int = 160,
    fps: float = 24.0,
    speed: float = 1.0,
    seed: int = 0,
) -> SyntheticVideo:
    """Distinct shots joined by hard cuts; `cuts` holds the first frame of each later shot."""
    rng = np.random.default_rng(seed)
    video, cuts = cut_frames(rng, shot_lengths, height, width, speed=speed)
    write_video(path, video, fps)
    return SyntheticVideo(path=Path(path), kind="cuts", fps=fps, frames=len(video), height=height,
                          width=width, crop=(0, 0, width, height), cuts=cuts, speed=speed)


def write_motion_video(
    path: str | os.PathLike,
    *,
    speed: float,
    scale: float = 12.0,
    noise: float = 2.0,
    height: int = 96,
    width: int = 160,
    frames: int = 24,
    fps: float = 24.0,
    seed: int = 0,
) -> SyntheticVideo:
    """A static (`speed=0`: still image + noise) or moving (translating texture) clip."""
    rng = np.random.default_rng(seed)
    video = moving_frames(rng, frames, height, width, speed=speed, scale=scale, noise=noise)
    write_video(path, video, fps)
    return SyntheticVideo(path=Path(path), kind="moving" if speed > 0 else "static", fps=fps,
                          frames=frames, height=height, width=width, crop=(0, 0, width, height),
                          speed=speed, texture_scale=scale, noise=noise)


def motion_set(folder: str | os.PathLike, count: int = 10, *, seed: int = 0,
               frames: int = 24) -> list[SyntheticVideo]:
    """`count` static and `count` moving clips with mixed textures, noise levels and speeds.

    Static: blob scales 3-32 px, noise std 1.5-6 (x264 at CRF 18 removes most noise below
    about 3, so the upper half is what makes the frame difference non-zero). Moving: 0.5-4
    px/frame, the same scale mix, noise std 0-2. Files are `static_<i>.mp4` and
    `moving_<i>.mp4` in `folder`.
    """
    folder = Path(folder)
    rng = np.random.default_rng(seed)
    scales = (3.0, 6.0, 12.0, 20.0, 32.0)
    videos = []
    for i in range(count):
        videos.append(write_motion_video(
            folder / f"static_{i}.mp4", speed=0.0, scale=scales[i % len(scales)],
            noise=float(rng.uniform(1.5, 6.0)), frames=frames, seed=int(rng.integers(2**31))))
    for i in range(count):
        speed = float(np.interp(i, [0, max(count - 1, 1)], [0.5, 4.0]))  # 0.5 ... 4 px/frame
        videos.append(write_motion_video(
            folder / f"moving_{i}.mp4", speed=speed, scale=scales[(i * 2) % len(scales)],
            noise=float(rng.uniform(0.0, 2.0)), frames=frames, seed=int(rng.integers(2**31))))
    return videos


def bars_set(folder: str | os.PathLike, *, seed: int = 0) -> list[SyntheticVideo]:
    """The black-bar cases: letterbox, pillarbox, both (some with odd sizes, one still), a
    black band inside a letterboxed picture, full-frame, dark (moving and still), dark
    letterboxed. `crop` is the true picture box; full and dark clips must not be cropped."""
    folder = Path(folder)
    moving, still = 1.5, 0.0
    cases = [  # name, (top, bottom, left, right), dark, speed, black stripe inside the picture
        ("letterbox", (12, 12, 0, 0), False, moving, None),
        ("letterbox_odd", (9, 15, 0, 0), False, moving, None),
        ("pillarbox", (0, 0, 20, 20), False, moving, None),
        ("pillarbox_odd", (0, 0, 17, 23), False, moving, None),
        ("both", (8, 10, 14, 14), False, moving, None),
        ("both_still", (6, 6, 10, 12), False, still, None),
        ("letterbox_stripe", (10, 10, 0, 0), False, moving, (30, 40)),
        ("full", (0, 0, 0, 0), False, moving, None),
        ("dark", (0, 0, 0, 0), True, moving, None),
        ("dark_still", (0, 0, 0, 0), True, still, None),
        ("dark_letterbox", (12, 12, 0, 0), True, moving, None),
    ]
    return [write_bars_video(folder / f"{name}.mp4", bars=bars, dark=dark, speed=speed,
                             stripe=stripe, seed=seed + i, kind=name)
            for i, (name, bars, dark, speed, stripe) in enumerate(cases)]


def write_broken(path: str | os.PathLike, kind: BrokenKind, *, seed: int = 0) -> BrokenFile:
    """Write one broken file of the given kind (see `BROKEN_KINDS`) at `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":  # a valid mp4 with its second half cut off
        write_video(path, moving_frames(rng, 24, 96, 160, speed=2.0), 24.0)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "not_video":
        path.write_text("This is a text file with a video's name.\n" * 50, encoding="utf-8")
    elif kind == "image":
        image = texture(rng, 96, 160).astype(np.uint8)
        ok, png = cv2.imencode(".png", image)
        if not ok:
            raise RuntimeError("OpenCV could not encode a PNG")
        path.write_bytes(png.tobytes())
    elif kind == "no_video_stream":  # an mp4 holding one second of AAC audio only
        rate = 16000
        tone = (0.1 * np.sin(2 * np.pi * 440 * np.arange(rate) / rate)).astype(np.float32)
        with av.open(str(path), mode="w", format="mp4") as container:
            stream = container.add_stream("aac", rate=rate)
            for start in range(0, rate, 1024):
                chunk = tone[None, start:start + 1024]
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp",
                                                   layout="mono")
                frame.sample_rate, frame.pts = rate, start
                container.mux(stream.encode(frame))
            container.mux(stream.encode(None))
    else:
        raise ValueError(f"unknown broken kind {kind!r}; choose one of {', '.join(BROKEN_KINDS)}")
    return BrokenFile(path=path, kind=kind)


def broken_set(folder: str | os.PathLike, *, seed: int = 0) -> list[BrokenFile]:
    """One file of every broken kind, named `<kind>.mp4` in `folder`."""
    return [write_broken(Path(folder) / f"{kind}.mp4", kind, seed=seed) for kind in BROKEN_KINDS]
