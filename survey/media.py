"""Media for a blinded study: re-encoded copies under opaque names, and gold-pair corruptions.

Every video is decoded and re-encoded (never copied byte for byte) so that container metadata
(titles, encoder strings, creation times) that might differ between systems cannot reveal which
system made a clip. File modification times are pinned to one value for the same reason.
Debian's chromium plays H.264 (checked: `canPlayType('video/mp4; codecs="avc1.42E01E"')` is
"probably" and a 9-frame clip plays to `ended`), so mp4/H.264 is the default; `webm` (VP9)
is there for browsers built without proprietary codecs.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import numpy as np

FORMATS = {"mp4": ("libx264", "video/mp4"), "webm": ("libvpx-vp9", "video/webm")}
_PINNED_MTIME = 946684800  # 2000-01-01: same for every media file of every study


def read_video(path: str | Path) -> tuple[np.ndarray, Fraction]:
    """Decode a video file. Returns frames (T, H, W, 3) uint8 RGB and the frame rate."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or Fraction(24)
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    if not frames:
        raise ValueError(f"{path} has no video frames.")
    return np.stack(frames), Fraction(rate)


def write_video(frames: np.ndarray, path: str | Path, fps: Fraction, fmt: str = "mp4") -> float:
    """Encode frames (T, H, W, 3) uint8 RGB to `path`; returns the duration in seconds."""
    import av

    codec, _ = FORMATS[fmt]
    t, h, w, _c = frames.shape
    frames = frames[:, : h - h % 2, : w - w % 2]  # yuv420p needs even sides
    container = av.open(str(path), "w", format=fmt)
    stream = container.add_stream(codec, rate=fps)
    stream.width, stream.height = frames.shape[2], frames.shape[1]
    stream.pix_fmt = "yuv420p"
    if fmt == "mp4":
        stream.options = {"crf": "20", "preset": "veryfast"}
    else:
        stream.options = {"crf": "32", "b:v": "0", "deadline": "realtime", "cpu-used": "8"}
    for frame in frames:
        for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    os.utime(path, (_PINNED_MTIME, _PINNED_MTIME))
    return float(t / fps)


def corrupt_frames(frames: np.ndarray, seed: int) -> np.ndarray:
    """Heavily degraded copy for a gold pair: strong blur, strong noise, shuffled frame order.

    frames: (T, H, W, 3) uint8 -> (T, H, W, 3) uint8. Any attentive rater prefers the original.
    """
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    x = frames.astype(np.float32)
    sigma = max(frames.shape[1], frames.shape[2]) / 20.0
    x = gaussian_filter(x, sigma=(0, sigma, sigma, 0))
    x = x + rng.normal(0.0, 45.0, size=x.shape).astype(np.float32)
    order = rng.permutation(x.shape[0])
    if x.shape[0] > 1 and np.all(order == np.arange(x.shape[0])):
        order = np.roll(order, 1)
    return np.clip(x[order], 0, 255).astype(np.uint8)


def reencode_image(src: str | Path, dst: str | Path) -> None:
    """Copy an image as a fresh PNG (drops text chunks and other metadata)."""
    from PIL import Image

    with Image.open(src) as img:
        img.convert("RGB").save(dst, format="PNG")
    os.utime(dst, (_PINNED_MTIME, _PINNED_MTIME))
