"""What `ltxlab curate SRC` reads, and the driver's cheap pre-check of it.

SRC is a folder (videos found recursively by extension; an optional `captions.jsonl` at its
root, read by `clips.folder.read_captions`, whose entries name files by their path relative
to SRC, or by a bare name that only one file has: `match_captions`) or a manifest file (`.parquet` / `.jsonl`) with a
`path` column (relative paths are relative to the manifest's folder) and an optional
`caption` column.

The pre-check runs on the driver before Ray starts and never decodes: `os.stat`, the first
189 bytes (container magic) and, for mp4/mov, the top-level box walk `probe.py` uses. A
file it can already condemn (missing, empty, not a regular file, a cut mp4) becomes its
`probe` row here; the rest go to the pipeline, where `probe` has the last word. If no
file even looks like a video, the run stops with one sentence: a folder of a million
broken files must not start a cluster to find that out.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Iterator

from clips.curate.probe import ProbeConfig, ProbeError, _iso_bmff_cut, _looks_like_iso_bmff, _stat, probe
from clips.errors import ClipError

VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg",
                                     ".ts", ".mts", ".m2ts", ".flv", ".wmv", ".asf", ".3gp", ".ogv")
MANIFEST_SUFFIXES: tuple[str, ...] = (".parquet", ".jsonl")
# files probed on the driver when no file's magic bytes name a video container (an exotic container)
DRIVER_PROBES = 3

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class SourceFile:
    """One input video and the caption that came with it."""

    path: str  # absolute path
    caption: str | None  # from captions.jsonl or the input manifest; None = none


def _video_magic(head: bytes) -> bool:
    """True when the first bytes name a video container FFmpeg reads (ISO-BMFF, Matroska/WebM, AVI, ...)."""
    return (head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip")  # mp4 / mov
            or head.startswith(b"\x1a\x45\xdf\xa3")  # Matroska / WebM (EBML)
            or (head.startswith(b"RIFF") and head[8:12] in (b"AVI ", b"AVIX"))
            or head.startswith(b"\x00\x00\x01\xba") or head.startswith(b"\x00\x00\x01\xb3")  # MPEG-PS / ES
            or (head[:1] == b"\x47" and head[188:189] == b"\x47")  # MPEG-TS: sync bytes 188 apart
            or head.startswith(b"FLV") or head.startswith(b"OggS")
            or head.startswith(b"\x30\x26\xb2\x75\x8e\x66\xcf\x11"))  # ASF / WMV


def _children(handle, start: int, end: int, limit: int = 10_000) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload start, box end) of the ISO-BMFF boxes in `[start, end)`, reading 16 bytes per box."""
    offset = start
    for _ in range(limit):
        if offset + 8 > end:
            return
        handle.seek(offset)
        head = handle.read(16)
        if len(head) < 8:
            return
        size, kind, payload = int.from_bytes(head[:4], "big"), head[4:8], offset + 8
        if size == 1 and len(head) == 16:
            size, payload = int.from_bytes(head[8:16], "big"), offset + 16
        elif size == 0:
            size = end - offset
        if size < 8 or offset + size > end:
            return
        yield kind, payload, offset + size
        offset += size


def mp4_track_kinds(path: Path, size: int) -> set[bytes] | None:
    """Handler types of an mp4's tracks (b'vide', b'soun', ...) from moov/trak/mdia/hdlr; None without a moov.

    A few 16-byte reads per track, no decoding: it tells an audio-only mp4 apart on the driver.
    """
    with open(path, "rb") as handle:
        moov = next(((a, b) for kind, a, b in _children(handle, 0, size) if kind == b"moov"), None)
        if moov is None:
            return None
        kinds = set()
        for kind, a, b in _children(handle, *moov):
            if kind != b"trak":
                continue
            for kind2, a2, b2 in _children(handle, a, b):
                if kind2 != b"mdia":
                    continue
                for kind3, a3, _ in _children(handle, a2, b2):
                    if kind3 == b"hdlr":  # version/flags (4), pre_defined (4), handler_type (4)
                        handle.seek(a3 + 8)
                        kinds.add(handle.read(4))
        return kinds


def _listed(root: Path, skip: tuple[Path, ...]) -> list[Path]:
    """Video files under `root` (recursive, hidden names and `skip` folders left out), sorted."""
    found = []
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and (here / d).resolve() not in skip)
        found += [here / f for f in files if not f.startswith(".") and Path(f).suffix.lower() in VIDEO_EXTENSIONS]
    return sorted(found)


def match_captions(captions: dict[str, str], relative: list[str], where: Path) -> list[str | None]:
    """The caption of each file (paths relative to SRC) from captions.jsonl's entries.

    An entry names a file by its path relative to SRC ('beach/clip1.mp4'); a bare name
    ('clip1.mp4') also names a file in a subfolder when it is the only file of that name.
    Entries that name no listed file are logged (a typo would otherwise leave clips uncaptioned).

    Raises:
        ClipError: a bare name that several files share (which one it captions cannot be known).
    """
    from clips.folder import CAPTIONS_FILE

    by_name: dict[str, list[str]] = {}
    for rel in relative:
        by_name.setdefault(PurePosixPath(rel).name, []).append(rel)
    out, used = [], set()
    for rel in relative:
        name = PurePosixPath(rel).name
        key = rel if rel in captions else name if name in captions else None
        if key == name and key != rel and len(by_name[name]) > 1:
            shared = ", ".join(by_name[name][:3])
            raise ClipError(f"{where / CAPTIONS_FILE} names {name} without a folder, and {len(by_name[name])} files "
                            f"have that name ({shared}); write each entry's path relative to {where}.")
        used.add(key)
        out.append(None if key is None else captions[key])
    unmatched = sorted(set(captions) - used)
    if unmatched:
        log.warning("%s: %d entries name no video under %s (first: %s); their captions are not used.",
                    CAPTIONS_FILE, len(unmatched), where, unmatched[0])
    return out


def _from_folder(root: Path, skip: tuple[Path, ...]) -> list[SourceFile]:
    from clips.folder import read_captions

    captions = read_captions(root)
    files = _listed(root, skip)
    if not files:
        raise ClipError(f"{root} holds no video files ({', '.join(VIDEO_EXTENSIONS[:6])}, ...); "
                        "point SRC at a folder of videos or a manifest with a path column.")
    texts = match_captions(captions, [p.relative_to(root).as_posix() for p in files], root)
    return [SourceFile(path=str(p.resolve()), caption=text) for p, text in zip(files, texts)]


def _manifest_rows(path: Path) -> list[dict[str, Any]]:
    if path.suffix.lower() == ".jsonl":
        rows = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    raise ClipError(f"{path} line {number} is not valid JSON; write one "
                                    '{"path": "x.mp4", "caption": "..."} object per line.') from None
        return rows
    import pandas as pd

    try:
        return pd.read_parquet(path).to_dict("records")
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a torn file
        raise ClipError(f"{path} is not a readable parquet file ({type(exc).__name__}); "
                        "pass a parquet or jsonl manifest with a path column.") from None


def _from_manifest(path: Path) -> list[SourceFile]:
    rows = _manifest_rows(path)
    if not rows:
        raise ClipError(f"Manifest {path} has no rows; list the videos to curate in its path column.")
    out = []
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, dict) or not isinstance(row.get("path"), str) or not row["path"]:
            raise ClipError(f"Manifest {path} row {number} has no string path; every row needs a "
                            "path column naming a video file.")
        caption = row.get("caption")
        caption = caption if isinstance(caption, str) and caption else None
        file = Path(row["path"]).expanduser()
        file = file if file.is_absolute() else path.parent / file
        out.append(SourceFile(path=str(file.resolve()), caption=caption))
    return out


def list_inputs(src: str | os.PathLike, skip: tuple[Path, ...] = ()) -> list[SourceFile]:
    """The videos SRC names, de-duplicated by absolute path, in a stable order.

    Raises:
        ClipError: SRC is missing, is neither a folder nor a .parquet/.jsonl manifest, or lists nothing.
    """
    root = Path(src).expanduser()
    if not root.exists():
        raise ClipError(f"SRC {root} does not exist; pass a folder of videos or a manifest file.")
    if root.is_dir():
        files = _from_folder(root.resolve(), tuple(p.resolve() for p in skip))
    elif root.suffix.lower() in MANIFEST_SUFFIXES:
        files = _from_manifest(root.resolve())
    else:
        raise ClipError(f"SRC {root} is a file but not a manifest ({' or '.join(MANIFEST_SUFFIXES)}); "
                        "pass a folder of videos or a manifest with a path column.")
    unique: dict[str, SourceFile] = {}
    for file in files:
        unique.setdefault(file.path, file)  # a path listed twice is curated once
    return list(unique.values())


def precheck_file(path: str, cfg: ProbeConfig) -> tuple[bool, ProbeError | None]:
    """(looks like a video container, the ProbeError that already condemns it or None); never decodes."""
    file = Path(path)
    try:
        size = _stat(file)
        with open(file, "rb") as handle:
            head = handle.read(189)  # magic, and the second MPEG-TS sync byte
    except ProbeError as exc:
        return False, exc
    except OSError as exc:
        return False, ProbeError(file, "unreadable", f"Video file {file} cannot be read ({exc.strerror or exc}).")
    if head.startswith(b"\x89PNG\r\n\x1a\n") or head.startswith(b"\xff\xd8\xff"):
        return False, ProbeError(file, "image", f"Video file {file} is a still image (PNG or JPEG bytes), not a "
                                                "video; remove it or convert it to a clip.")
    if cfg.check_boxes and _looks_like_iso_bmff(file):
        why = _iso_bmff_cut(file, size, cfg.max_boxes)
        if why:
            return False, ProbeError(file, "truncated",
                                     f"Video file {file} {why}: truncated; re-download or re-encode it.")
        kinds = mp4_track_kinds(file, size)
        if kinds is not None and b"vide" not in kinds:
            names = ", ".join(sorted(k.decode("latin-1") for k in kinds)) or "no tracks"
            return False, ProbeError(file, "no_video_stream", f"Video file {file} has no video track (only "
                                                              f"{names}); pass a file with video.")
    return _video_magic(head), None


def precheck(files: list[SourceFile], cfg: ProbeConfig, src: str | os.PathLike, elsewhere: str = "point SRC elsewhere"
             ) -> tuple[list[SourceFile], list[tuple[SourceFile, ProbeError]]]:
    """Split the inputs into (files for the pipeline, files condemned here with their ProbeError).

    `elsewhere` ends the refusal's advice ("replace them with readable video files or ...").

    Raises:
        ClipError: no file is left that could be a video (one sentence with the reasons).
    """
    todo, condemned, plausible = [], [], 0
    for file in files:
        looks_video, error = precheck_file(file.path, cfg)
        if error is not None:
            condemned.append((file, error))
        else:
            todo.append(file)
            plausible += looks_video
    if plausible == 0 and todo:  # none looks like a known container: let probe judge a few here
        for file in todo[:DRIVER_PROBES]:
            try:
                probe(file.path, cfg)
                plausible = 1
                break
            except ProbeError as exc:
                condemned.append((file, exc))
                todo.remove(file)
    if plausible == 0:
        raise ClipError(nothing_usable(files, condemned, todo, src, elsewhere))
    return todo, condemned


def nothing_usable(files: list[SourceFile], condemned: list[tuple[SourceFile, ProbeError]],
                   rest: list[SourceFile], src: str | os.PathLike, elsewhere: str = "point SRC elsewhere") -> str:
    """The one sentence for inputs of which none is a usable video: counts per reason and the first file."""
    reasons = Counter(error.reason for _, error in condemned)
    if rest:
        reasons["not a known video container"] += len(rest)
    summary = ", ".join(f"{n} {reason}" for reason, n in reasons.most_common())
    example = condemned[0][1] if condemned else None
    first = f"; first: {Path(example.path).name} ({example.reason})" if example else ""
    return (f"None of the {len(files)} files in {src} is a usable video ({summary}{first}); "
            f"replace them with readable video files or {elsewhere}.")
