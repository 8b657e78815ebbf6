"""Small curated datasets for the manifest-source tests: generated mp4s plus a contract manifest.

`write_dataset` writes what `ltxlab curate` would (manifest.parquet, finetune.parquet,
report.json, by the contract in clips/curate/manifest.py) over videos made by
clips/curate/synthetic.py, so the tests do not depend on the curation pipeline itself.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from pathlib import Path

from clips.curate.manifest import FILTERS, FINETUNE, FORMAT, MANIFEST, REPORT, SOURCES, source_stats, to_frame
from clips.curate.synthetic import write_bars_video


@dataclass(frozen=True)
class Video:
    name: str  # file stem
    bars: tuple[int, int, int, int]  # (top, bottom, left, right) black bars in pixels
    height: int  # whole frame
    width: int
    frames: int
    seed: int


# content aspect ratios: wide 3.0 (64x192 inside bars), square 1.0, tall 0.6 (pillarbox)
VIDEOS = (
    Video("wide", (16, 16, 0, 0), 96, 192, 48, 1),
    Video("square", (0, 0, 0, 0), 96, 96, 48, 2),
    Video("tall", (0, 0, 16, 16), 160, 128, 48, 3),
)


def row(path: Path, video: Video, start: int, end: int, *, keep: bool = True, finetune: bool = False,
        caption: str | None = None, source_id: str | None = None) -> dict:
    top, bottom, left, right = video.bars
    tag = f"{zlib.crc32(str(path).encode()):08x}"
    return {
        "clip_id": f"{video.name}-{tag}:f{start}-{end}", "source": str(path), "source_id": source_id or video.name,
        "start_frame": start, "end_frame": end, "fps": 24.0, "width": video.width, "height": video.height,
        "duration_s": (end - start) / 24.0,
        "crop_x0": left, "crop_y0": top, "crop_x1": video.width - right, "crop_y1": video.height - bottom,
        "motion_flow": 1.5, "motion_diff": 4.0, "aesthetic": 0.5,
        "caption": caption if caption is not None else f"a {video.name} moving texture",
        "caption_source": "source", "keep": keep, "dropped_by": None if keep else "motion",
        "drop_reason": None if keep else "The clip is static.", "finetune": finetune, "clip_path": None,
    }


def write_videos(root: Path, videos=VIDEOS) -> dict[str, tuple[Path, Video]]:
    root.mkdir(parents=True, exist_ok=True)
    out = {}
    for v in videos:
        path = root / "src" / f"{v.name}.mp4"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bars_video(path, bars=v.bars, height=v.height, width=v.width, frames=v.frames, seed=v.seed)
        out[v.name] = (path, v)
    return out


def write_dataset(root: Path, rows: list[dict]) -> Path:
    """DATASET/manifest.parquet (+ finetune.parquet, report.json, sources.parquet of the sources as they
    are now) from contract rows; returns DATASET."""
    root.mkdir(parents=True, exist_ok=True)
    frame = to_frame(rows)
    source_stats([r["source"] for r in rows]).to_parquet(root / SOURCES, index=False)
    frame.to_parquet(root / MANIFEST, index=False)
    frame[frame["finetune"]].reset_index(drop=True).to_parquet(root / FINETUNE, index=False)
    kept = int(frame["keep"].sum())
    report = {"format": FORMAT, "created_at": "2026-12-06T00:00:00Z", "source": str(root / "src"), "config": {},
              "counts": {"files": len(set(frame["source"])), "probed_ok": len(set(frame["source"])), "probe_failed": 0,
                         "clips": len(frame), "kept": kept, "finetune": int(frame["finetune"].sum()),
                         "dropped_by": {f: int((frame["dropped_by"] == f).sum()) for f in FILTERS},
                         "probe_reasons": {}},
              "scores": {}, "failures": [], "timing": {"wall_s": 0.0, "clips_per_s": 0.0, "workers": 1},
              "provenance": {"commit": None, "versions": {}, "aesthetic": None, "captioner": None}}
    (root / REPORT).write_text(json.dumps(report))
    return root


def standard_dataset(root: Path) -> Path:
    """Three videos of three aspect ratios, two kept clips each (frames [0, 40) and [8, 48)), one
    dropped clip and one kept clip too short for any 9-frame window (held-out part 4 frames)."""
    videos = write_videos(root)
    rows = []
    for name, (path, video) in videos.items():
        rows.append(row(path, video, 0, 40, finetune=name != "tall"))
        rows.append(row(path, video, 8, 48))
    wide_path, wide = videos["wide"]
    rows.append(row(wide_path, wide, 2, 44, keep=False))
    rows.append(row(wide_path, wide, 30, 46))
    return write_dataset(root / "dataset", rows)
