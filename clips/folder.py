"""A user's folder of mp4 files, with optional captions, as the third video source.

Layout:
    my_videos/
      a.mp4, b.mp4, ...
      captions.jsonl   optional; one {"file": "a.mp4", "caption": "..."} per line ("file" is the path
                       relative to the folder; an entry naming a file in a subfolder is not one of these)

One unreadable video should not sink a sweep over a hundred: a missing or corrupt mp4 is
skipped and reported (returned warnings, also logged). Only a folder with nothing usable
raises `ClipError`. A malformed captions.jsonl line does raise, with its line number:
silently dropping captions would train a text model on the wrong prompts.

Every clip cut from one mp4 has that file's stem as its `source_id`: the statistics treat
the files, not the clips, as independent.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePosixPath

import numpy as np

from clips.errors import ClipError
from clips.io import read_video

log = logging.getLogger(__name__)

CAPTIONS_FILE = "captions.jsonl"


@dataclass(frozen=True, kw_only=True)
class FolderVideo:
    """One decoded video of a user folder."""

    name: str  # file name without `.mp4`; the first part of its clip ids
    path: Path  # the mp4 file
    frames: np.ndarray  # uint8 (N, H, W, 3), read-only (shared by the decode cache)
    fps: float  # native frame rate
    caption: str | None  # from captions.jsonl; None when the file has no entry


def check_folder(folder: str | os.PathLike) -> Path:
    """The folder as a Path, or a ClipError saying it is missing or not a folder."""
    path = Path(folder).expanduser()
    if not path.exists():
        raise ClipError(f"Video folder {path} does not exist; pass an existing folder of mp4 files.")
    if not path.is_dir():
        raise ClipError(f"Video folder {path} is not a folder; pass the folder that holds the mp4 files.")
    return path


def list_mp4(folder: str | os.PathLike) -> list[Path]:
    """The folder's `.mp4` files (case-insensitive suffix, not recursive), sorted by name."""
    root = check_folder(folder)
    return sorted(p for p in root.iterdir() if p.suffix.lower() == ".mp4" and not p.name.startswith("."))


def caption_key(file: str) -> str:
    """A captions.jsonl "file" as the path relative to the folder it names ('./a/b.mp4' -> 'a/b.mp4')."""
    return PurePosixPath(file.replace("\\", "/")).as_posix().removeprefix("./")


def read_captions(folder: str | os.PathLike) -> dict[str, str]:
    """Path relative to the folder ('a.mp4', 'beach/a.mp4') -> caption, from its captions.jsonl ({} if none).

    A file named twice is refused: which of two captions is right cannot be guessed.
    """
    path = check_folder(folder) / CAPTIONS_FILE
    if not path.exists():
        return {}
    captions: dict[str, str] = {}
    lines: dict[str, int] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            raise ClipError(f"{path} line {number} is not valid JSON; write one "
                            '{"file": "x.mp4", "caption": "..."} object per line.') from None
        if not isinstance(entry, dict) or not isinstance(entry.get("file"), str) \
                or not isinstance(entry.get("caption"), str):
            raise ClipError(f"{path} line {number} needs string fields \"file\" and \"caption\", "
                            f'e.g. {{"file": "x.mp4", "caption": "a dog runs"}}.')
        key = caption_key(entry["file"])
        if key in lines:
            raise ClipError(f"{path} names {key} on lines {lines[key]} and {number}; keep one caption per file.")
        captions[key], lines[key] = entry["caption"], number
    return captions


def broken_files(folder: str | os.PathLike) -> list[str]:
    """One sentence per mp4 of the folder that training would skip as broken, found without decoding the videos.

    This is the driver's check, before Ray starts: the curation pipeline's pre-check
    (`clips.curate.inputs.precheck`: stat, magic bytes, the mp4 box walk) for every file,
    then its probe (container, video stream, one decoded frame) for the files that passed.
    Cached per folder listing (names, sizes, mtimes), so the variants of a sweep share one pass.

    Raises:
        ClipError: the folder is missing, has no mp4, or none of its mp4 files is usable.
    """
    return list(_checked(check_folder(folder))[0])


def usable_shapes(folder: str | os.PathLike) -> list[tuple[str, int, int, int]]:
    """(name, frames, height, width) of each mp4 the driver's check passed, from container metadata (no decoding)."""
    return list(_checked(check_folder(folder))[1])


def _checked(root: Path) -> tuple[tuple[str, ...], tuple[tuple[str, int, int, int], ...]]:
    files = list_mp4(root)
    if not files:
        raise ClipError(f"Video folder {root} contains no .mp4 files; add mp4 videos or pick another folder.")
    return _check_listing(str(root), tuple(_signature(p) for p in files))


def _signature(path: Path) -> tuple[str, int, int]:
    """(name, size, mtime): an edited or replaced file is checked again, not answered from the cache."""
    try:
        stat = path.stat()
        return path.name, stat.st_size, stat.st_mtime_ns
    except OSError:  # gone since listing: the pre-check reports it as missing
        return path.name, -1, -1


@lru_cache(maxsize=32)
def _check_listing(root: str, listing: tuple[tuple[str, int, int], ...]
                  ) -> tuple[tuple[str, ...], tuple[tuple[str, int, int, int], ...]]:
    """(a sentence per broken file, (name, frames, height, width) per usable one) for a folder listing."""
    from clips.curate.inputs import SourceFile, nothing_usable, precheck
    from clips.curate.probe import ProbeConfig, ProbeError, probe

    cfg, elsewhere = ProbeConfig(), "set the folder field to another folder"
    sources = [SourceFile(path=str(Path(root) / name), caption=None) for name, _, _ in listing]
    todo, condemned = precheck(sources, cfg, root, elsewhere)  # raises when nothing even looks like a video
    usable = []
    for source in todo:
        try:
            meta = probe(source.path, cfg)
            usable.append((Path(source.path).stem, meta.frames, meta.height, meta.width))
        except ProbeError as exc:
            condemned.append((source, exc))
    if not usable:
        raise ClipError(nothing_usable(sources, condemned, [], root, elsewhere))
    condemned.sort(key=lambda pair: pair[0].path)
    return tuple(f"Skipped {Path(source.path).name}: {exc}" for source, exc in condemned), tuple(usable)


@lru_cache(maxsize=64)
def _decode(path: str, mtime_ns: int, size: int, short_side: int | None) -> tuple[np.ndarray, float]:
    # mtime and size are in the key so an edited file is decoded again, not served stale
    frames, fps = read_video(path, short_side=short_side)
    frames.flags.writeable = False
    return frames, fps


def load_folder(
    folder: str | os.PathLike, short_side: int | None = None
) -> tuple[list[FolderVideo], list[str]]:
    """Decode every readable mp4 of the folder.

    Args:
        short_side: resize each video so its shorter side has this many pixels (None = native).
    Returns:
        (videos sorted by name, warnings: one sentence per skipped file or orphan caption).
    Raises:
        ClipError: the folder is missing, has no mp4, none of its mp4 can be decoded, or
            captions.jsonl is malformed.
    """
    root = check_folder(folder)
    files = list_mp4(root)
    if not files:
        raise ClipError(f"Video folder {root} contains no .mp4 files; add mp4 videos or pick another folder.")
    captions = read_captions(root)
    videos, warnings = [], []
    for path in files:
        try:
            stat = path.stat()
            frames, fps = _decode(str(path), stat.st_mtime_ns, stat.st_size, short_side)
        except (ClipError, OSError) as exc:  # OSError: deleted or unreadable between listing and reading
            warnings.append(f"Skipped {path.name}: {exc}")
            continue
        videos.append(FolderVideo(name=path.stem, path=path, frames=frames, fps=fps,
                                  caption=captions.get(path.name)))
    orphans = sorted(set(captions) - {p.name for p in files})
    warnings += [f"captions.jsonl names {name}, which is not an mp4 in {root}." for name in orphans]
    for message in warnings:
        log.warning(message)
    if not videos:
        raise ClipError(f"None of the {len(files)} mp4 files in {root} could be decoded "
                        f"(first: {files[0].name}); replace them with valid mp4 videos.")
    return videos, warnings
