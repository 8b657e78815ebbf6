"""What is in a video file: `probe` (metadata, or one clear reason it is unusable) and
`read_frames` (a frame range or a sample of frames, decoded with PyAV).

`probe` never raises anything but `ProbeError` (a `ClipError`) and never blocks on a
non-regular file: a curation run over a million user files must classify each bad one and
go on. `ProbeError.reason` is one of `REASONS`, a stable code a manifest can group by;
the message is one sentence for a person.

How each broken kind is told apart:
- `missing`, `not_a_file`, `empty`, `unreadable`: from `os.stat` / `open`, before FFmpeg.
- `truncated`: an mp4/mov (the file starts like an ISO-BMFF box) whose top-level boxes do
  not fit the file size (a cut anywhere leaves the last box running past the end), or that
  FFmpeg cannot open or finds no streams in; in any container, the last packets of the
  video stream are short (`is_corrupt`), end past the end of the file, or stop before the
  stream's stated duration.
- `not_video`: FFmpeg recognises no container in the bytes (text renamed `.mp4`).
- `image`: FFmpeg reads it with a still-image demuxer (`png_pipe`, `image2`, ...) or the
  only video stream has an image codec and at most one frame.
- `no_video_stream`: a container with audio, subtitles or data but no video.
- `undecodable`: the stream opens but its first frame does not decode.
- `bad_metadata`: no frame rate, zero size, or fewer frames than `ProbeConfig.min_frames`.
"""

from __future__ import annotations

import logging
import math
import os
import stat as stat_module
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Literal

import av
import numpy as np

from clips.errors import ClipError
from clips.io import frame_rgb, grid_count, grid_frames, rotation_turns, stream_rate, upright_hw

log = logging.getLogger(__name__)

Reason = Literal["missing", "not_a_file", "empty", "unreadable", "truncated", "not_video",
                 "image", "no_video_stream", "undecodable", "bad_metadata", "error"]
REASONS: tuple[str, ...] = ("missing", "not_a_file", "empty", "unreadable", "truncated",
                            "not_video", "image", "no_video_stream", "undecodable",
                            "bad_metadata", "error")

# FFmpeg demuxers and codecs that hold still images, not video.
_IMAGE_FORMATS = ("image2", "png_pipe", "jpeg_pipe", "bmp_pipe", "webp_pipe", "tiff_pipe",
                  "gif_pipe", "ppm_pipe", "pgm_pipe", "qoi_pipe", "jpegxl_pipe", "j2k_pipe",
                  "dpx_pipe", "exr_pipe", "psd_pipe", "svg_pipe", "xbm_pipe", "xpm_pipe")
_IMAGE_CODECS = ("png", "mjpeg", "jpegls", "bmp", "webp", "tiff", "ppm", "pgm", "pbm", "qoi",
                 "jpeg2000", "jpegxl", "dpx", "exr", "psd", "svg", "xbm", "xpm", "gif")


class ProbeError(ClipError):
    """A video file that cannot be used, with a stable `reason` code (one of `REASONS`)."""

    def __init__(self, path: str | os.PathLike, reason: Reason, message: str):
        super().__init__(message)
        self.path = Path(path)
        self.reason: Reason = reason

    def __reduce__(self):  # picklable with its fields (Ray ships exceptions between processes)
        return (type(self), (self.path, self.reason, str(self)))


@dataclass(frozen=True, kw_only=True)
class ProbeConfig:
    """How hard `probe` looks at a file."""

    check_boxes: bool = True  # mp4/mov: check that the top-level boxes fit the file size
    max_boxes: int = 100_000  # bound on top-level boxes walked (fragmented mp4 has many)
    check_tail: bool = True  # demux from the last keyframe to the end to catch truncated files
    tail_max_packets: int = 2000  # bound on packets read by the tail check (never hang)
    decode_first_frame: bool = True  # decode one frame to prove the stream is decodable
    min_frames: int = 1  # fewer frames than this is `bad_metadata`
    end_tolerance_frames: float = 0.5  # the tail may end this many frames short of the stated duration


@dataclass(frozen=True, kw_only=True)
class Probe:
    """The metadata of a readable video file."""

    path: Path
    duration_s: float  # the video stream's duration (container duration if the stream has none)
    fps: float  # average frame rate of the video stream
    frames: int  # frames `read_frames` numbers: from the stream's end timestamp at `fps` (the container
    # index's count for a fixed frame rate), else the index's count, else round(duration_s * fps)
    width: int  # picture width in pixels as shown (after the display matrix's rotation)
    height: int  # picture height in pixels as shown
    rotation: int = 0  # quarter turns (np.rot90's k) applied to decoded frames to show them upright
    codec: str  # FFmpeg codec name, e.g. "h264"
    size_bytes: int  # file size on disk
    container: str  # FFmpeg demuxer name, e.g. "mov,mp4,m4a,3gp,3g2,mj2"


@dataclass(frozen=True, kw_only=True)
class ProbeFailure:
    """One file `probe_many` could not use."""

    path: Path
    reason: Reason  # one of REASONS
    message: str  # one sentence for a person


def _fail(path: Path, reason: Reason, what: str) -> ProbeError:
    return ProbeError(path, reason, f"Video file {path} {what}.")


def _stat(path: Path) -> int:
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise _fail(path, "missing", "does not exist; check the path") from None
    except OSError as exc:
        raise _fail(path, "unreadable", f"cannot be read ({exc.strerror or exc})") from None
    if not stat_module.S_ISREG(info.st_mode):  # a folder, FIFO or device could block FFmpeg
        raise _fail(path, "not_a_file", "is not a regular file; point it at an mp4 file")
    if info.st_size == 0:
        raise _fail(path, "empty", "is empty (0 bytes); replace it with a valid mp4")
    return int(info.st_size)


def _looks_like_iso_bmff(path: Path) -> bool:
    """True when the file starts with an ISO-BMFF box (`ftyp`, `moov`, `mdat`, ...): an mp4/mov."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(12)
    except OSError:
        return False
    return len(head) >= 8 and head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip")


def _iso_bmff_cut(path: Path, size_bytes: int, max_boxes: int) -> str | None:
    """Why an mp4/mov's top-level boxes do not fit the file, or None when they do.

    Every top-level box (ftyp, moov, mdat, moof, ...) declares its size, so a file cut
    anywhere shows as a box that runs past the end: found by reading 16 bytes per box.
    """
    offset = 0
    with open(path, "rb") as handle:
        for _ in range(max_boxes):
            if offset == size_bytes:
                return None
            handle.seek(offset)
            head = handle.read(16)
            if len(head) < 8:
                return f"ends inside a box header at byte {offset}"
            box_size, box_type = int.from_bytes(head[:4], "big"), head[4:8]
            if box_size == 1:  # 64-bit size follows the type
                if len(head) < 16:
                    return f"ends inside a box header at byte {offset}"
                box_size = int.from_bytes(head[8:16], "big")
            elif box_size == 0:  # the box runs to the end of the file
                return None
            name = box_type.decode("latin-1")
            if box_size < 8:
                return f"has a malformed {name!r} box at byte {offset}"
            if offset + box_size > size_bytes:
                return (f"ends at byte {size_bytes}, inside its {name!r} box that declares "
                        f"{box_size} bytes from byte {offset}")
            offset += box_size
    return None  # more boxes than we look at: leave the rest to FFmpeg


def _duration_s(container, stream) -> float:
    if stream.duration is not None and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return 0.0


def _tail_is_truncated(container, stream, size_bytes: int, fps: float, duration_s: float,
                       cfg: ProbeConfig) -> tuple[str | None, int | None]:
    """(why the end of the video stream is missing or None when it is complete, the stream's end
    timestamp when every tail packet carries a duration, else None).

    Seeks to the last keyframe before the stated end and demuxes the rest: in a complete
    file every packet is whole, lies inside the file, and the last one reaches the end.
    """
    if stream.duration is None or not stream.time_base:
        return None, None  # nothing to compare against (e.g. a raw stream)
    start = stream.start_time or 0
    try:
        container.seek(start + stream.duration, stream=stream, backward=True, any_frame=False)
    except av.FFmpegError:
        container.seek(start, stream=stream, backward=True, any_frame=False)
    first_pts = last_end = None
    duration_sum, all_timed = 0, True
    for count, packet in enumerate(container.demux(stream)):
        if count >= cfg.tail_max_packets:
            return None, None  # give up rather than read an unbounded tail; assume complete
        if packet.size == 0 and packet.pts is None:
            continue  # the flush packet at EOF
        if packet.is_corrupt:
            return "ends in a partial packet", None
        if packet.pos is not None and packet.pos >= 0 and packet.pos + packet.size > size_bytes:
            return "has packets past the end of the file", None
        if packet.pts is None:
            all_timed = False
            continue
        first_pts = packet.pts if first_pts is None else first_pts
        end = packet.pts + (packet.duration or 0)
        last_end = end if last_end is None else max(last_end, end)
        all_timed = all_timed and bool(packet.duration)
        duration_sum += packet.duration or 0
    if last_end is None:
        return "has no packets at the end of its video stream", None
    stated_end = start + stream.duration
    # Packets from the keyframe on carry durations that add up to the rest of the stream
    # (B-frames reorder timestamps, so the largest pts+duration can hide a missing last
    # packet); without durations, fall back to the largest end timestamp.
    covered = first_pts + duration_sum if all_timed else last_end
    missing_s = (stated_end - covered) * float(stream.time_base)
    if missing_s > cfg.end_tolerance_frames / fps:
        return f"stops {missing_s:.2f} s before its stated duration of {duration_s:.2f} s", None
    return None, (covered if all_timed else None)


def _probe(path: Path, cfg: ProbeConfig) -> Probe:
    size_bytes = _stat(path)
    if cfg.check_boxes and _looks_like_iso_bmff(path):
        why = _iso_bmff_cut(path, size_bytes, cfg.max_boxes)
        if why:
            raise _fail(path, "truncated", f"{why}: truncated; re-download or re-encode it")
    try:
        container = av.open(str(path), mode="r")
    except av.FFmpegError as exc:
        if _looks_like_iso_bmff(path):
            raise _fail(path, "truncated", "is an mp4 that FFmpeg cannot open "
                        f"({exc.strerror or type(exc).__name__}): truncated or corrupt; "
                        "re-download or re-encode it") from None
        raise _fail(path, "not_video", "is not a video FFmpeg recognises "
                    f"({exc.strerror or type(exc).__name__}); replace it with an mp4") from None
    with container:
        format_name = container.format.name
        if not container.streams.video:
            kinds = sorted({s.type for s in container.streams})
            # a cut inside the moov box leaves FFmpeg a stream list of "data" tracks only; the
            # box walk reports that first, this is the fallback when it is switched off
            if (not cfg.check_boxes and _looks_like_iso_bmff(path)
                    and not (set(kinds) & {"audio", "subtitle"})):
                raise _fail(path, "truncated", "is an mp4 whose index lists no audio or video "
                            "(its moov box is damaged): truncated or corrupt; re-download or "
                            "re-encode it")
            kinds = kinds or ["no streams"]
            raise _fail(path, "no_video_stream",
                        f"has no video stream (only {', '.join(kinds)}); pass a file with video")
        stream = container.streams.video[0]
        codec = stream.codec_context.name
        frames = int(stream.frames or 0)
        if any(name in _IMAGE_FORMATS for name in format_name.split(",")) or (
                codec in _IMAGE_CODECS and frames <= 1):
            raise _fail(path, "image", f"is a still image ({codec} in {format_name}), "
                        "not a video; remove it or convert it to a clip")
        rate = stream_rate(stream)
        fps = float(rate) if rate else 0.0
        width, height = int(stream.codec_context.width), int(stream.codec_context.height)
        rotation = 0  # known once a frame is decoded (the display matrix travels with the frames)
        if not (fps > 0 and math.isfinite(fps)):
            raise _fail(path, "bad_metadata", "has no frame rate; re-encode it with a fixed fps")
        duration_s = _duration_s(container, stream)
        if frames <= 0:
            frames = int(round(duration_s * fps))
        if cfg.check_tail:
            why, stream_end = _tail_is_truncated(container, stream, size_bytes, fps, duration_s, cfg)
            if why:
                raise _fail(path, "truncated", f"{why}: truncated; re-download or re-encode it")
            if stream_end is not None:  # the frames `read_frames` numbers (equal to the index for a fixed rate)
                frames = grid_count(float((stream_end - (stream.start_time or 0)) * stream.time_base), fps)
        if cfg.decode_first_frame:
            container.seek(stream.start_time or 0, stream=stream, backward=True, any_frame=False)
            first = None
            for frame in container.decode(stream):
                first = frame
                break
            if first is None:
                raise _fail(path, "undecodable", "has a video stream but no decodable frame; "
                            "replace it with a valid mp4")
            rotation = rotation_turns(first)
            height, width = upright_hw(first, rotation)
        if width <= 0 or height <= 0:
            raise _fail(path, "bad_metadata", f"has an invalid frame size {width}x{height}")
        if frames < cfg.min_frames:
            raise _fail(path, "bad_metadata", f"has {frames} frames, fewer than the "
                        f"{cfg.min_frames} required")
        return Probe(path=path, duration_s=duration_s, fps=fps, frames=frames, width=width,
                     height=height, rotation=rotation, codec=codec, size_bytes=size_bytes,
                     container=format_name)


def probe(path: str | os.PathLike, cfg: ProbeConfig = ProbeConfig()) -> Probe:
    """Metadata of one video file.

    Raises:
        ProbeError: the file cannot be used; `.reason` says why (one of `REASONS`). No other
            exception escapes: anything unexpected becomes reason "error".
    """
    path = Path(path)
    try:
        return _probe(path, cfg)
    except ProbeError:
        raise
    except av.FFmpegError as exc:  # opened, then failed while seeking/demuxing/decoding
        reason: Reason = "truncated" if _looks_like_iso_bmff(path) else "undecodable"
        raise _fail(path, reason, f"fails while being read ({exc.strerror or type(exc).__name__}); "
                    "replace it with a valid video") from None
    except OSError as exc:
        raise _fail(path, "unreadable", f"cannot be read ({exc.strerror or exc})") from None
    except Exception as exc:  # noqa: BLE001 - the contract is "only ProbeError"
        log.debug("probe(%s) failed unexpectedly", path, exc_info=True)
        raise _fail(path, "error", f"could not be probed ({type(exc).__name__}: {exc})") from None


def probe_many(paths: Iterable[str | os.PathLike], cfg: ProbeConfig = ProbeConfig()
               ) -> tuple[list[Probe], list[ProbeFailure]]:
    """Probe every path: (readable videos, failures with their reason), both in input order."""
    ok, failed = [], []
    for path in paths:
        try:
            ok.append(probe(path, cfg))
        except ProbeError as exc:
            failed.append(ProbeFailure(path=exc.path, reason=exc.reason, message=str(exc)))
    return ok, failed


def read_frames(
    path: str | os.PathLike,
    *,
    start: int = 0,
    end: int | None = None,
    indices: Iterable[int] | None = None,
    width: int | None = None,
) -> np.ndarray:
    """Decode frames `[start, end)` of the first video stream, or only the given `indices`.

    Frames are numbered as `clips.io.grid_frames` numbers them (presentation order for a
    constant frame rate; a variable-rate file resampled to its average rate), upright by the
    stream's display matrix. Decoding starts at the keyframe before `start` (a seek, checked:
    one that lands late is redone earlier), so reading a clip late in a long file does not
    decode the whole file and gives the frames reading from 0 would; only kept frames are
    converted to RGB.

    Args:
        indices: if given, keep only these frame numbers (sorted, deduplicated) within
            `[start, end)`; missing numbers past the end are silently absent.
        width: resize to this (upright) width while converting (height keeps the aspect,
            rounded to even; area interpolation). None keeps the native size.
    Returns:
        uint8 `(N, H, W, 3)` RGB.
    Raises:
        ClipError: the file cannot be opened or decoded, or no requested frame exists.
    """
    path = Path(path)
    wanted = None if indices is None else sorted({int(i) for i in indices})
    if wanted is not None:
        start = max(start, wanted[0]) if wanted else start
        if end is None and wanted:
            end = wanted[-1] + 1
    keep = None if wanted is None else set(wanted)
    out = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ClipError(f"Video file {path} has no video stream; pass a file with video.")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for index, frame in grid_frames(container, stream, start, end):
                if keep is None or index in keep:
                    turns = rotation_turns(frame)
                    if width is None:
                        out.append(frame_rgb(frame, turns))
                    else:
                        up_h, up_w = upright_hw(frame, turns)
                        height = max(2, int(round(up_h * width / up_w / 2)) * 2)
                        out.append(frame_rgb(frame, turns, width=width, height=height))
    except ClipError:
        raise
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise ClipError(f"Video file {path} could not be decoded ({type(exc).__name__}); "
                        "probe it first and skip files that fail.") from exc
    if not out:
        raise ClipError(f"Video file {path} has no frames in [{start}, {end}); "
                        "check the frame range against its probe.")
    return np.stack(out)


def sample_indices(frames: int, count: int, start: int = 0, end: int | None = None) -> list[int]:
    """`count` frame numbers spread evenly over `[start, end)` (all of them if there are fewer)."""
    end = frames if end is None else min(end, frames)
    span = end - start
    if span <= 0:
        return []
    if count >= span:
        return list(range(start, end))
    # centres of `count` equal bins, so the first and last frames (often fades) are avoided
    return sorted({start + int((k + 0.5) * span / count) for k in range(count)})
