"""Media for a blinded study: re-encoded copies under opaque names, and gold-pair corruptions.

Every video is decoded and re-encoded (never copied byte for byte) so that container metadata
(titles, encoder strings, creation times) that might differ between systems cannot reveal which
system made a clip. File modification times are pinned to one value for the same reason.
Debian's chromium plays H.264 (checked: `canPlayType('video/mp4; codecs="avc1.42E01E"')` is
"probably" and a 9-frame clip plays to `ended`), so mp4/H.264 is the default; `webm` (VP9)
is there for browsers built without proprietary codecs.

Nothing about a file may tell the members of a pair apart without watching them (a HEAD request
reads the size): videos are encoded at a constant bitrate (x264 `nal-hrd=cbr` with filler, VP9
min=max rate) and then padded to one exact size per item with container-level padding that
players skip (`pad_to`: an mp4 `free` box, a WebM `Void` element inside the Segment).
"""

from __future__ import annotations

import os
import random
import struct
from fractions import Fraction
from pathlib import Path

import numpy as np

FORMATS = {"mp4": ("libx264", "video/mp4"), "webm": ("libvpx-vp9", "video/webm")}
_PINNED_MTIME = 946684800  # 2000-01-01: same for every media file of every study
PAD_MIN = 9  # bytes of the smallest padding element (WebM Void header); every video gets at least this
BITS_PER_PIXEL = 0.25  # constant bitrate = this x width x height x fps (H.264 at ~0.1 bpp looks fine)
_WEBM_SEGMENT = b"\x18\x53\x80\x67"


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


def probe_video(path: str | Path) -> tuple[int, Fraction]:
    """(frames, frame rate) of a video, decoding every frame without keeping it.

    Raises ValueError naming the file when it cannot be read (missing, truncated, not a video) or has
    no frames: `create` checks every source with this before it writes anything.
    """
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ValueError(f"{path} has no video stream.")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or Fraction(24)
            n = sum(1 for _ in container.decode(stream))
    except (av.error.FFmpegError, OSError) as exc:
        raise ValueError(f"{path} cannot be read as a video ({type(exc).__name__}: {exc}).") from None
    if n == 0:
        raise ValueError(f"{path} has no video frames.")
    return n, Fraction(rate)


def probe_image(path: str | Path) -> None:
    """Raise ValueError naming the file unless it is a readable image."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
    except (OSError, UnidentifiedImageError) as exc:
        raise ValueError(f"{path} cannot be read as an image ({type(exc).__name__}: {exc}).") from None


def file_digest(path: str | Path) -> tuple[int, str]:
    """(size in bytes, sha256 hex) of a file: recorded by `create`, checked by `serve`."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return os.path.getsize(path), digest.hexdigest()


def cbr_bitrate(height: int, width: int, fps: Fraction) -> int:
    """Constant bitrate (bits/s) for a clip of this size: BITS_PER_PIXEL x pixels per second."""
    return max(16_000, int(BITS_PER_PIXEL * height * width * float(fps)))


def write_video(frames: np.ndarray, path: str | Path, fps: Fraction, fmt: str = "mp4",
                bitrate: int | None = None) -> float:
    """Encode frames (T, H, W, 3) uint8 RGB to `path`; returns the duration in seconds.

    bitrate: bits/s for a constant-bitrate encode (study media), else constant quality (crf).
    """
    import av

    codec, _ = FORMATS[fmt]
    t, h, w, _c = frames.shape
    frames = frames[:, : h - h % 2, : w - w % 2]  # yuv420p needs even sides
    container = av.open(str(path), "w", format=fmt)
    stream = container.add_stream(codec, rate=fps)
    stream.width, stream.height = frames.shape[2], frames.shape[1]
    stream.pix_fmt = "yuv420p"
    if bitrate:
        rate = str(bitrate)
        stream.bit_rate = bitrate
        stream.options = {"minrate": rate, "maxrate": rate, "bufsize": str(bitrate // 2)}
        if fmt == "mp4":  # filler NAL units keep the stream at the rate even for still or blurred content
            stream.options |= {"preset": "veryfast", "x264-params": "nal-hrd=cbr:force-cfr=1"}
        else:
            stream.options |= {"b:v": rate, "deadline": "realtime", "cpu-used": "8"}
    elif fmt == "mp4":
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


def pad_to(path: str | Path, size: int, fmt: str) -> None:
    """Grow a video file to exactly `size` bytes with padding its players skip (at least PAD_MIN bytes).

    mp4: a top-level `free` box appended after the last box (sample offsets are unchanged).
    WebM: a `Void` element appended inside the Segment, whose 8-byte size field is raised by the
    same amount (Cues and SeekHead offsets count from the Segment's start, so they stay valid).
    """
    path = Path(path)
    data = path.read_bytes()
    pad = size - len(data)
    if pad < PAD_MIN:
        raise ValueError(f"{path} is {len(data)} bytes: cannot pad it to {size} (needs {PAD_MIN}+ bytes of room).")
    if fmt == "mp4":
        tail = struct.pack(">I4s", pad, b"free") + bytes(pad - 8)
    else:
        at = data.find(_WEBM_SEGMENT)
        if at < 0 or data[at + 4] != 0x01:  # ffmpeg writes the Segment size as an 8-byte vint
            raise ValueError(f"{path} has no 8-byte-sized WebM Segment to pad.")
        old = int.from_bytes(data[at + 5: at + 12], "big")
        if old != 2**56 - 1:  # a known size grows by the padding; an unknown size runs to the end anyway
            data = data[: at + 5] + (old + pad).to_bytes(7, "big") + data[at + 12:]
        tail = b"\xec\x01" + (pad - 9).to_bytes(7, "big") + bytes(pad - 9)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data + tail)
    os.replace(tmp, path)
    os.utime(path, (_PINNED_MTIME, _PINNED_MTIME))


def encode_matched(clips: list[np.ndarray], paths: list[Path], fps: Fraction, fmt: str,
                   rng: random.Random | None = None, rounds: int = 5, tolerance: float = 0.02) -> list[int]:
    """Encode clips (each (T, H, W, 3) uint8, same T) to files of one exact size; returns payload bytes.

    All start at one constant bitrate (cbr_bitrate of the largest frame). Hard content (noise, fast
    motion) overshoots the rate on short clips, so each clip then gets its own random target
    payload within `tolerance` above the largest first encode and is re-encoded towards it (the
    rate from the last two encodes, a secant step; at most `rounds` times). The random targets
    mean that even the payload inside the file (read by parsing the container) does not rank the
    clips: the overshooting one, a noisy gold copy, is no longer reliably the largest. The rest
    is padding (pad_to), identical in size for every file of the group.
    """
    rng = rng or random.Random(0)
    height = max(c.shape[1] for c in clips)
    width = max(c.shape[2] for c in clips)
    base = cbr_bitrate(height, width, fps)
    history: list[list[tuple[int, int]]] = []
    for clip, path in zip(clips, paths):
        write_video(clip, path, fps, fmt, base)
        history.append([(base, os.path.getsize(path))])
    top = max(h[0][1] for h in history)
    targets = [top * (1 + rng.uniform(0, tolerance)) for _ in clips]
    for _ in range(rounds):
        off = [k for k, h in enumerate(history) if abs(h[-1][1] - targets[k]) > tolerance * top / 4]
        if not off:
            break
        for k in off:
            rate = _rate_towards(history[k], targets[k])
            write_video(clips[k], paths[k], fps, fmt, rate)
            history[k].append((rate, os.path.getsize(paths[k])))
    sizes = [h[-1][1] for h in history]
    total = max(sizes) + PAD_MIN
    for path in paths:
        pad_to(path, total, fmt)
    return sizes


def _rate_towards(history: list[tuple[int, int]], target: float) -> int:
    """Bitrate expected to give `target` bytes: secant through the last two (rate, size) encodes.

    Size is affine in rate (container and header bytes do not scale), so a proportional step
    undershoots; with one encode so far, it is the first guess.
    """
    rate, size = history[-1]
    if len(history) >= 2:
        (r0, s0), (r1, s1) = history[-2:]
        if r1 != r0 and (s1 - s0) / (r1 - r0) > 0:
            return max(8_000, int(r1 + (target - s1) * (r1 - r0) / (s1 - s0)))
    return max(8_000, int(rate * target / size))


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
