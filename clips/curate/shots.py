"""Shot boundaries (PySceneDetect's `ContentDetector`) and the clips cut from each shot.

`ContentDetector` scores each frame by the mean change of hue, saturation and brightness
(HSV, 0-255) from the previous frame and reports a cut where the score reaches
`ShotConfig.threshold`; cuts closer than `min_scene_len` frames to the previous one are
merged (its flash filter). A cut is the first frame of the new shot.

Shots then become training clips of `[min_duration_s, max_duration_s]`: a shot longer than
the maximum is chopped into consecutive pieces of exactly the maximum length, and any piece
(or shot) shorter than the minimum is dropped. Clips are `(start_frame, end_frame)` with
`end_frame` exclusive, in the file's frame numbers.

Two entry points share one detector loop: `find_cuts_file` streams a file's frames through
it, decoded and numbered as every other reader of the house decodes them
(`clips.io.grid_frames`: variable-frame-rate files are resampled to their average rate, so a
cut's frame number is the frame `probe.read_frames` returns under that number); `find_cuts`
runs it over a frame array (tests, or frames already in memory). Both downscale frames wider
than `detect_width` by the same integer factor before scoring, as `SceneManager` does.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from typing import Iterable, Iterator

import cv2
import numpy as np

from clips.errors import ClipError

# scenedetect logs "Detecting scenes..." at INFO for every file; keep a curation run quiet
# unless someone configured that logger on purpose
if logging.getLogger("pyscenedetect").level == logging.NOTSET:
    logging.getLogger("pyscenedetect").setLevel(logging.WARNING)


@dataclass(frozen=True, kw_only=True)
class ShotConfig:
    """Shot detection and clip length limits."""

    threshold: float = 27.0  # ContentDetector score (mean HSV change, 0-255) at which a cut is made
    min_scene_len: int = 15  # frames; a cut sooner than this after the previous one is merged
    luma_only: bool = False  # score brightness changes only (ignore hue and saturation)
    detect_width: int = 256  # frames are downscaled by an integer factor to about this width
    min_duration_s: float = 2.0  # clips shorter than this are dropped
    max_duration_s: float = 10.0  # longer shots are chopped into pieces of exactly this length
    trim_frames: int = 0  # frames dropped at both ends of every shot (blended transition frames)

    def __post_init__(self):
        if self.min_duration_s <= 0 or self.max_duration_s < self.min_duration_s:
            raise ClipError(f"Shot clip lengths need 0 < min_duration_s <= max_duration_s, got "
                            f"{self.min_duration_s} and {self.max_duration_s}.")
        if self.min_scene_len < 0 or self.trim_frames < 0 or self.detect_width < 1:
            raise ClipError("min_scene_len and trim_frames must be >= 0 and detect_width >= 1.")


def _detector(cfg: ShotConfig):
    from scenedetect import ContentDetector

    return ContentDetector(threshold=cfg.threshold, min_scene_len=cfg.min_scene_len,
                           luma_only=cfg.luma_only)


def _downscale(width: int, cfg: ShotConfig) -> int:
    """SceneManager's integer downscale factor for a frame `width` pixels wide."""
    return max(1, width // cfg.detect_width)


def _timecode_arg():
    """ContentDetector.process_frame takes a FrameTimecode from scenedetect 0.7, an int before."""
    import scenedetect
    from scenedetect import FrameTimecode

    major_minor = tuple(int(p) for p in scenedetect.__version__.split(".")[:2])
    if major_minor >= (0, 7):
        return lambda index, fps: FrameTimecode(index, fps=fps)
    return lambda index, fps: index


def _scan(frames: Iterable[np.ndarray], fps: float, cfg: ShotConfig) -> tuple[list[int], int]:
    """(cut frames, frames seen) of uint8 RGB `(H, W, 3)` frames, numbered from 0 as they come."""
    detector = _detector(cfg)
    stamp = _timecode_arg()
    cuts: list = []
    count, factor, size = 0, 1, None
    for index, rgb in enumerate(frames):
        if size is None:
            height, width = rgb.shape[:2]
            factor = _downscale(width, cfg)
            size = (max(1, round(width / factor)), max(1, round(height / factor)))
        bgr = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)
        if factor > 1:
            bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_LINEAR)
        cuts += detector.process_frame(stamp(index, fps), bgr)
        count = index + 1
    if count:
        cuts += detector.post_process(stamp(count - 1, fps))
    return sorted({int(getattr(c, "frame_num", c)) for c in cuts}), count


def find_cuts(frames: np.ndarray, fps: float, cfg: ShotConfig = ShotConfig()) -> list[int]:
    """Cut frames (first frame of each new shot) in uint8 RGB `(T, H, W, 3)` frames."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ClipError(f"find_cuts needs (T, H, W, 3) frames, got shape {frames.shape}.")
    return _scan(frames, fps, cfg)[0]


def _file_frames(path: str | os.PathLike) -> tuple[Iterator[np.ndarray], float, object]:
    """(upright RGB frames of the whole file, numbered as `clips.io.grid_frames` numbers them, fps, container)."""
    import av

    from clips.io import frame_rgb, grid_frames, rotation_turns, stream_rate

    container = av.open(str(path))
    if not container.streams.video:
        container.close()
        raise ClipError(f"Video file {path} has no video stream; pass a file with video.")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    rate = stream_rate(stream)
    frames = (frame_rgb(frame, rotation_turns(frame)) for _, frame in grid_frames(container, stream))
    return frames, float(rate or 0.0), container


def find_cuts_file(path: str | os.PathLike, cfg: ShotConfig = ShotConfig()) -> tuple[list[int], int]:
    """(cut frames, frames decoded) of a video file.

    The file is decoded with the house's frame numbering (`clips.io.grid_frames`, the one
    `probe.read_frames` uses), not by PySceneDetect's own decoder, whose frame numbers follow a
    fixed-rate clock of its own and disagree with ours on variable-frame-rate files; the
    detector and its downscale are PySceneDetect's (`SceneManager`'s integer factor).

    Raises:
        ClipError: the file cannot be opened or decoded (probe files first).
    """
    import av

    try:
        frames, fps, container = _file_frames(path)
        with container:
            return _scan(frames, fps, cfg)
    except ClipError:
        raise
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise ClipError(f"Video file {path} could not be scanned for shots "
                        f"({type(exc).__name__}: {exc}); probe it first and skip bad files.") from None


def shots_from_cuts(cuts: list[int], num_frames: int) -> list[tuple[int, int]]:
    """Shots `(start, end)` (end exclusive) covering `[0, num_frames)`, split at `cuts`."""
    bounds = [0, *sorted(c for c in set(cuts) if 0 < c < num_frames), num_frames]
    return [(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def split_shots(shots: list[tuple[int, int]], fps: float,
                cfg: ShotConfig = ShotConfig()) -> list[tuple[int, int]]:
    """Clips of `[min_duration_s, max_duration_s]` from shots (see the module docstring)."""
    if not (fps > 0 and math.isfinite(fps)):
        raise ClipError(f"split_shots needs a positive frame rate, got {fps}.")
    longest = max(1, int(math.floor(cfg.max_duration_s * fps + 1e-9)))
    shortest = max(1, int(math.ceil(cfg.min_duration_s * fps - 1e-9)))
    clips = []
    for start, end in shots:
        start, end = start + cfg.trim_frames, end - cfg.trim_frames
        while end - start >= longest:
            clips.append((start, start + longest))
            start += longest
        if end - start >= shortest:
            clips.append((start, end))
    return clips


def shot_clips(frames: np.ndarray, fps: float, cfg: ShotConfig = ShotConfig()) -> list[tuple[int, int]]:
    """Clips `(start_frame, end_frame)` of a frame array: cuts, then `split_shots`."""
    return split_shots(shots_from_cuts(find_cuts(frames, fps, cfg), len(frames)), fps, cfg)


def shot_clips_file(path: str | os.PathLike, cfg: ShotConfig = ShotConfig(),
                    fps: float | None = None) -> list[tuple[int, int]]:
    """Clips `(start_frame, end_frame)` of a video file; `fps` from its Probe (probed if None)."""
    if fps is None:
        from clips.curate.probe import probe

        fps = probe(path).fps
    cuts, decoded = find_cuts_file(path, cfg)
    return split_shots(shots_from_cuts(cuts, decoded), fps, cfg)
