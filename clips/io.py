"""Decode and encode mp4 files with PyAV, and convert frames to and from model tensors.

Conventions (docs/design.md, `clips/`): frames on disk and in `Clip` are uint8 `(T, H, W, 3)` RGB; the
models take `(C, T, H, W)` floats in [-1, 1]. Written files are H.264 / yuv420p at the
clip's native frame rate with the moov atom up front (`+faststart`), so a browser can
start playing them before they are fully downloaded (the survey and dashboard serve them).
"""

from __future__ import annotations

import os
import tempfile
from fractions import Fraction
from pathlib import Path

from typing import TYPE_CHECKING

import numpy as np

from clips.errors import ClipError

if TYPE_CHECKING:  # torch is imported lazily so CLI --help and the dashboard stay fast; PyAV only by
    import torch  # the functions that decode or encode (the tensor conversions run where it is absent)

# Broadcast rates that float round-tripping would otherwise turn into 2997/100 etc.
_NTSC_RATES = (Fraction(24000, 1001), Fraction(30000, 1001), Fraction(60000, 1001))
# x264 quality: 18 is visually lossless-ish and keeps a smooth clip well above 35 dB PSNR.
_CRF = "18"


def _check_file(path: Path) -> None:
    if not path.exists():
        raise ClipError(f"Video file {path} does not exist; check the path.")
    if not path.is_file():
        raise ClipError(f"Video path {path} is not a file; point it at an mp4 file.")
    if path.stat().st_size == 0:
        raise ClipError(f"Video file {path} is empty (0 bytes); replace it with a valid mp4.")


def read_video(
    path: str | os.PathLike,
    max_frames: int | None = None,
    *,
    short_side: int | None = None,
) -> tuple[np.ndarray, float]:
    """Decode a video file into RGB frames.

    Args:
        path: video file (anything FFmpeg reads; mp4 in practice).
        max_frames: stop after this many frames (None = all).
        short_side: optional length to resize the shorter side to while decoding
            (aspect ratio kept, area interpolation); resizing inside swscale avoids
            holding full-size 720p frames in memory.

    Returns:
        frames: uint8 `(T, H, W, 3)` RGB.
        fps: the stream's native average frame rate (e.g. 29.97002997 for 30000/1001).

    Raises:
        ClipError: the file is missing, empty, corrupt, has no video stream or no frames.
    """
    import av

    path = Path(path)
    _check_file(path)
    if max_frames is not None and max_frames < 1:
        raise ClipError(f"max_frames must be at least 1, got {max_frames}.")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ClipError(f"Video file {path} has no video stream; pass a file with video.")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            frames = []
            for frame in container.decode(stream):
                if short_side is None:
                    frames.append(frame.to_ndarray(format="rgb24"))
                else:
                    height, width = resized_hw(frame.height, frame.width, short_side)
                    frames.append(frame.to_ndarray(
                        format="rgb24", height=height, width=width, interpolation="AREA"))
                if max_frames is not None and len(frames) >= max_frames:
                    break
    except ClipError:
        raise
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise ClipError(
            f"Video file {path} could not be decoded ({type(exc).__name__}); "
            "replace it with a valid mp4."
        ) from exc
    if not frames:
        raise ClipError(f"Video file {path} contains no decodable frames; replace it with a valid mp4.")
    if not rate:
        raise ClipError(f"Video file {path} has no frame rate; re-encode it with a fixed fps.")
    return np.stack(frames), float(rate)  # (T, H, W, 3)


def resized_hw(height: int, width: int, short_side: int) -> tuple[int, int]:
    """(height, width) after scaling so the shorter side is `short_side` (aspect kept)."""
    if short_side < 1:
        raise ClipError(f"short_side must be a positive number of pixels, got {short_side}.")
    factor = short_side / min(height, width)
    return max(short_side, round(height * factor)), max(short_side, round(width * factor))


def exact_rate(fps: float | Fraction) -> Fraction:
    """The exact rational frame rate for `fps` (29.97 and 29.97003 both become 30000/1001)."""
    if isinstance(fps, Fraction):
        return fps
    fps = float(fps)
    if not np.isfinite(fps) or fps <= 0:
        raise ClipError(f"Frame rate must be a positive number, got {fps}.")
    for ntsc in _NTSC_RATES:
        if abs(fps - float(ntsc)) < 5e-3:
            return ntsc
    return Fraction(fps).limit_denominator(1001)


def _as_uint8(frames) -> np.ndarray:
    if hasattr(frames, "detach"):  # a torch.Tensor, without importing torch
        frames = frames.detach().cpu().numpy()
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be (T, H, W, 3), got shape {frames.shape}")
    if frames.dtype == np.uint8:
        return frames
    if np.issubdtype(frames.dtype, np.floating):
        return np.round(np.clip(frames, 0.0, 1.0) * 255.0).astype(np.uint8)
    raise ValueError(f"frames must be uint8 or float in [0, 1], got dtype {frames.dtype}")


def _even(frames: np.ndarray) -> np.ndarray:
    """Pad odd heights/widths by one replicated row/column: yuv420p needs even sizes."""
    _, h, w, _ = frames.shape
    pad_h, pad_w = h % 2, w % 2
    if pad_h or pad_w:
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return frames


def make_readable(path: str | os.PathLike) -> None:
    """Give a `mkstemp` file (created 0600) the mode a plain `open` would: samples and
    checkpoints on shared result folders must be readable by the dashboard's and survey's users."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def write_video(path: str | os.PathLike, frames, fps: float | Fraction, *, crf: int | None = None) -> Path:
    """Encode frames as a browser-playable H.264 mp4, atomically.

    Args:
        path: destination (parent folders are created).
        frames: uint8 `(T, H, W, 3)` RGB, or float in [0, 1] (clipped); odd sizes are
            padded by one replicated row/column.
        fps: native frame rate; NTSC rates are kept exact (29.97 -> 30000/1001).
        crf: x264 quality, 0-51, lower is better (None: the house default, 18).

    Returns:
        The written path. A reader never sees a half-written file: the video is encoded
        to a temporary name in the same folder and moved into place with `os.replace`.
    """
    import av

    path = Path(path)
    frames = _even(_as_uint8(frames))  # (T, H', W', 3) uint8, even H', W'
    if frames.shape[0] == 0:
        raise ValueError("cannot write a video with zero frames")
    rate = exact_rate(fps)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp.mp4", dir=path.parent)
    os.close(fd)
    make_readable(tmp_name)
    try:
        with av.open(tmp_name, mode="w", format="mp4",
                     options={"movflags": "+faststart"}) as container:
            stream = container.add_stream("libx264", rate=rate)
            stream.height, stream.width = frames.shape[1], frames.shape[2]
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": _CRF if crf is None else str(int(crf)), "preset": "medium"}
            for index, rgb in enumerate(frames):
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
                frame.pts = index  # time base is 1/rate: one tick per frame
                frame.time_base = 1 / rate
                container.mux(stream.encode(frame))
            container.mux(stream.encode(None))
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def to_model(frames: np.ndarray) -> "torch.Tensor":
    """uint8 `(T, H, W, 3)` frames -> float32 `(3, T, H, W)` in [-1, 1]."""
    import torch

    frames = _as_uint8(frames)
    # a float32 copy first: decoded frames can be read-only arrays, which torch.from_numpy warns about
    x = torch.from_numpy(frames.astype(np.float32)).permute(3, 0, 1, 2)  # (3, T, H, W)
    return x.div_(127.5).sub_(1.0)


def from_model(x: "torch.Tensor") -> np.ndarray:
    """float `(3, T, H, W)` in [-1, 1] -> uint8 `(T, H, W, 3)` (clamped, rounded)."""
    import torch

    if x.ndim != 4 or x.shape[0] != 3:
        raise ValueError(f"expected a (3, T, H, W) tensor, got shape {tuple(x.shape)}")
    x = ((x.detach().float().cpu().clamp(-1.0, 1.0) + 1.0) * 127.5).round()
    return x.permute(1, 2, 3, 0).to(torch.uint8).numpy()  # (T, H, W, 3)
