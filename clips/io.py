"""Decode and encode mp4 files with PyAV, and convert frames to and from model tensors.

Conventions (docs/design.md, `clips/`): frames on disk and in `Clip` are uint8 `(T, H, W, 3)` RGB; the
models take `(C, T, H, W)` floats in [-1, 1].

Every decoder of the house numbers frames the same way (`grid_frames`): frame n of a file is
the picture shown at `t0 + n / fps`, where `fps` is the stream's average rate and `t0` its start
time, each grid point taking the decoded frame nearest it (the latest one starting no more
than half a frame after it), as FFmpeg's `fps` filter does. For a constant-frame-rate file this
is simply the n-th frame in presentation order; a variable-frame-rate file (phones, screen
captures) is resampled to its average rate, so frames are evenly spaced in time, a clip's
`fps` is true, and reading a range after a seek gives the same frames as reading from frame 0.
Frames are turned upright by the stream's display matrix (`rotation_turns`): a portrait phone
video, stored landscape with a 90 degree rotation, decodes portrait, as players show it. Written files are H.264 / yuv420p at the
clip's native frame rate with the moov atom up front (`+faststart`), so a browser can
start playing them before they are fully downloaded (the survey and dashboard serve them).
"""

from __future__ import annotations

import math
import os
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

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
            rate = stream_rate(stream)
            if not rate:
                raise ClipError(f"Video file {path} has no frame rate; re-encode it with a fixed fps.")
            frames = []
            for _, frame in grid_frames(container, stream, end=max_frames):
                turns = rotation_turns(frame)
                if short_side is None:
                    frames.append(frame_rgb(frame, turns))
                else:
                    height, width = resized_hw(*upright_hw(frame, turns), short_side)
                    frames.append(frame_rgb(frame, turns, width=width, height=height))
    except ClipError:
        raise
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise ClipError(
            f"Video file {path} could not be decoded ({type(exc).__name__}); "
            "replace it with a valid mp4."
        ) from exc
    if not frames:
        raise ClipError(f"Video file {path} contains no decodable frames; replace it with a valid mp4.")
    return np.stack(frames), float(rate)  # (T, H, W, 3)


def stream_rate(stream) -> Fraction | None:
    """The frame rate frames are numbered at: the average rate (guessed or base rate without one)."""
    return stream.average_rate or stream.guessed_rate or stream.base_rate or None


def rotation_turns(frame) -> int:
    """Quarter turns (np.rot90's k, counter-clockwise) that show a decoded frame upright.

    From the frame's display matrix (an mp4 `tkhd` matrix or FFmpeg's display-matrix side
    data): FFmpeg reports the angle the picture must be turned counter-clockwise, e.g. -90
    for a phone held upright (the stored landscape frame is shown turned clockwise).
    """
    angle = getattr(frame, "rotation", 0) or 0
    return int(round(float(angle) / 90.0)) % 4


def upright_hw(frame, turns: int) -> tuple[int, int]:
    """(height, width) of a decoded frame as it is shown (after `turns` quarter turns)."""
    return (frame.width, frame.height) if turns % 2 else (frame.height, frame.width)


def frame_rgb(frame, turns: int = 0, *, width: int | None = None, height: int | None = None) -> np.ndarray:
    """uint8 `(H, W, 3)` RGB of a decoded frame, upright; `width` x `height` is the upright output size
    (None: native), scaled inside swscale (area interpolation) before the turn."""
    if width is None or height is None:
        rgb = frame.to_ndarray(format="rgb24")
    else:
        coded_w, coded_h = (height, width) if turns % 2 else (width, height)
        rgb = frame.to_ndarray(format="rgb24", width=coded_w, height=coded_h, interpolation="AREA")
    return np.ascontiguousarray(np.rot90(rgb, turns)) if turns else rgb


def grid_count(seconds: float, rate: float) -> int:
    """Grid points (frames) of a stream whose frames end `seconds` after its start."""
    return max(0, _grid_index(seconds, rate))


def _grid_index(seconds: float, rate: float) -> int:
    """First grid point a frame starting at `seconds` serves: the smallest n with n + 1/2 >= seconds * rate."""
    return int(math.ceil(seconds * rate - 0.5 - 1e-6))


# a seek lands on the keyframe before its target in mp4/mkv; MPEG-TS seeks by byte estimate and
# can land after it, so a read that starts too late seeks again this many seconds earlier
_SEEK_BACKOFF_S = (0.0, 1.0, 5.0, 30.0)


def grid_frames(container, stream, start: int = 0, end: int | None = None) -> Iterator[tuple[int, Any]]:
    """(n, decoded frame) for every grid point n in `[start, end)` (see the module docstring).

    `start > 0` seeks to the keyframe before the grid point; when the seek lands after it (an
    MPEG-TS byte-estimated seek), it seeks again earlier, and finally from the stream's start,
    so the frames are the same as when decoding from frame 0.

    Raises:
        ClipError: the stream has no frame rate.
    """
    rate_q = stream_rate(stream)
    if not rate_q:
        raise ClipError(f"Video file {container.name} has no frame rate; re-encode it with a fixed fps.")
    rate, tb, t0 = float(rate_q), stream.time_base, stream.start_time or 0
    backoffs = _SEEK_BACKOFF_S if start > 0 and tb else (None,)
    for attempt, back in enumerate(backoffs):
        target = None if back is None else start / rate - back
        last_try = attempt == len(backoffs) - 1 or (target is not None and target <= 0)
        if target is not None and not last_try:
            container.seek(t0 + int(target / float(tb)), stream=stream, backward=True, any_frame=False)
        elif target is not None:
            container.seek(0)  # the file's start (a timestamp seek to t0 itself can land late in MPEG-TS)
        frames = _grid_from(container.decode(stream), rate, tb, t0, start, end, exact_start=not last_try)
        first = next(frames, None)
        if first is _LATE or (first is None and not last_try):
            continue  # the seek overshot (past the target, or past the end): try from earlier
        if first is not None:
            yield first
            yield from frames
        return


_LATE = object()  # _grid_from's first item when the first decoded frame comes after `start`


def _grid_from(decoded, rate: float, tb, t0: int, start: int, end: int | None, exact_start: bool):
    """The grid points `[start, end)` of a decoded-frame iterator (`_LATE` first if it starts too late)."""
    n, prev, seconds, count = start, None, 0.0, 0
    for frame in decoded:
        # a frame without a timestamp (rare raw streams) is taken to follow its predecessor by one frame
        seconds = float((frame.pts - t0) * tb) if frame.pts is not None and tb else count / rate
        count += 1
        claim = _grid_index(seconds, rate)
        if prev is None:
            if claim > start and exact_start:
                yield _LATE
                return
            claim = min(claim, start)  # the first frame of the stream also serves the grid points before it
        while n < claim and (end is None or n < end):
            yield n, prev
            n += 1
        if end is not None and n >= end:
            return
        prev = frame
    if prev is None:
        return
    duration = float(prev.duration * tb) if getattr(prev, "duration", None) and tb else 1.0 / rate
    stop = max(n, _grid_index(seconds + duration, rate))  # grid points the last frame covers
    while n < stop and (end is None or n < end):
        yield n, prev
        n += 1


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
