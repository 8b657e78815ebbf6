"""The curated dataset's files: `manifest.parquet`, `finetune.parquet`, `report.json` (contract).

`ltxlab curate SRC --out DATASET` writes, atomically:

    DATASET/
      manifest.parquet   one row per candidate clip, kept or dropped (and one per unusable file)
      finetune.parquet   the kept clips with the top-k aesthetic scores (same columns)
      report.json        counts per filter, score summaries, thresholds, failures, provenance
      sources.parquet    each source video's size and mtime as curation found them (`SOURCE_COLUMNS`)
      clips/<clip_id>.mp4  optional re-encoded clips (cropped, H.264)

Three parts of the house read these files and nothing else: the manifest data source
(`DataSpec(source="manifest")`), the dashboard's Data page, and the benchmark. This module is
their one definition: the columns, their types, the filter names, and a reader that checks a
file before anything trusts it. It imports pandas and pyarrow only (the dashboard reads it).

A row's `dropped_by` is the *first* filter in `FILTERS` order that rejected it; later filters
are not run on a dropped clip (their score columns are NaN), except that every score computed
before the drop is kept, so a histogram can show how close a dropped clip came.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

MANIFEST = "manifest.parquet"
FINETUNE = "finetune.parquet"
REPORT = "report.json"
SOURCES = "sources.parquet"
CLIPS_DIR = "clips"
FORMAT = "ltxlab-curated/1"

# The filters, in the order the pipeline applies them. `probe`: the file is unusable (reason
# in `drop_reason`, one of clips.curate.probe.REASONS); `duration`: the shot is shorter than
# `shots.min_duration_s`; `bars`: after the black-bar crop too little picture is left (or the
# clip is all black); `motion`: the clip is static; `aesthetic`: its score is below the
# threshold; `caption`: captions are required and none could be had.
FILTERS: tuple[str, ...] = ("probe", "duration", "bars", "motion", "aesthetic", "caption")

# column -> (pandas dtype, meaning). Integers are int64, scores float64 (NaN = not computed),
# strings are object (None = absent).
COLUMNS: dict[str, tuple[str, str]] = {
    "clip_id": ("object", "stable id: '<video stem>-<8 hex of the source path>:f<start>-<end>'; unique"),
    "source": ("object", "absolute path of the source video file"),
    "source_id": ("object", "the independent video the clip comes from (what the statistics resample)"),
    "start_frame": ("int64", "first frame of the clip in the source, decode order (-1 for an unusable file)"),
    "end_frame": ("int64", "end-exclusive last frame (-1 for an unusable file)"),
    "fps": ("float64", "source frame rate (NaN for an unusable file)"),
    "width": ("int64", "source frame width in pixels (-1 for an unusable file)"),
    "height": ("int64", "source frame height in pixels (-1 for an unusable file)"),
    "duration_s": ("float64", "(end_frame - start_frame) / fps"),
    "crop_x0": ("int64", "black-bar crop box, end-exclusive, in source pixels (-1 = not computed)"),
    "crop_y0": ("int64", ""),
    "crop_x1": ("int64", ""),
    "crop_y1": ("int64", ""),
    "motion_flow": ("float64", "mean Farneback flow magnitude, px per second at motion.width (NaN = not computed)"),
    "motion_diff": ("float64", "mean absolute grey-level frame difference, 0-255 (NaN = not computed)"),
    "aesthetic": ("float64", "Siamese aesthetic score, higher is better (NaN = not computed)"),
    "caption": ("object", "the clip's caption, or None"),
    "caption_source": ("object", "'source' (captions.jsonl / the input manifest), 'captioner:<name>' or 'none'"),
    "keep": ("bool", "passed every filter"),
    "dropped_by": ("object", "first filter in FILTERS that rejected the clip, or None when kept"),
    "drop_reason": ("object", "one sentence (for `probe`: the ProbeError reason code, then ': ' and the sentence)"),
    "finetune": ("bool", "kept and among the top-k aesthetic scores (also written to finetune.parquet)"),
    "clip_path": ("object", "re-encoded clip relative to DATASET ('clips/<clip_id>.mp4'), or None"),
}

# report.json top-level keys (all required): format, created_at, source (the SRC argument),
# config (the CurateConfig as a dict: every threshold), counts {files, probed_ok, probe_failed,
# clips, kept, finetune, dropped_by {filter: n for every filter in FILTERS}, probe_reasons
# {reason: n}}, scores {column: {count, min, p10, median, p90, max}} for motion_flow,
# motion_diff and aesthetic over the clips that have them, failures [{path, reason, message}],
# timing {wall_s, clips_per_s, workers}, provenance {commit, versions, aesthetic (scorer folder
# + weights hash, or None), captioner (name + weights hash, or None)}.
REPORT_KEYS: tuple[str, ...] = ("format", "created_at", "source", "config", "counts", "scores",
                                "failures", "timing", "provenance")


# sources.parquet: one row per source video the pipeline read, stat-ed on the driver before any
# worker opened it. The manifest names its videos by absolute path, outside DATASET, so this is
# what ties the dataset to their content: the manifest source refuses (and a decode of a window
# fails on) a source whose size or mtime differs, and re-running `ltxlab curate` rewrites the
# dataset, which is what a stage key fingerprints (`ablations.inputs`).
SOURCE_COLUMNS: dict[str, tuple[str, str]] = {
    "source": ("object", "absolute path of the source video file (as in the manifest's source column)"),
    "size_bytes": ("int64", "its size when curation began"),
    "mtime_ns": ("int64", "its modification time (ns since the epoch) when curation began"),
}


class ManifestError(ValueError):
    """A curated dataset that cannot be read; the message is one sentence that says what to fix."""


def manifest_path(dataset: str | os.PathLike) -> Path:
    """`DATASET/manifest.parquet` for a dataset folder, or the parquet file itself."""
    path = Path(dataset).expanduser()
    if path.is_dir():
        path = path / MANIFEST
    if not path.is_file():
        raise ManifestError(f"No curated manifest at {path}; run `ltxlab curate SRC --out DATASET` "
                            "and point at DATASET or its manifest.parquet.")
    return path


def check_columns(frame: Any, where: str) -> None:
    """Raise ManifestError naming the first missing column or the first wrongly typed one."""
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ManifestError(f"{where} lacks the column(s) {', '.join(missing)}; re-run `ltxlab curate` "
                            "to write a current manifest.")
    for column, (dtype, _) in COLUMNS.items():
        have = str(frame[column].dtype)
        if dtype in ("int64", "float64", "bool") and have != dtype:
            raise ManifestError(f"{where} column {column} is {have}, not {dtype}; re-run `ltxlab curate`.")
    if frame["clip_id"].duplicated().any():
        dup = frame.loc[frame["clip_id"].duplicated(), "clip_id"].iloc[0]
        raise ManifestError(f"{where} has clip_id {dup!r} twice; re-run `ltxlab curate`.")


def empty_manifest() -> Any:
    """A zero-row manifest with every column at its dtype."""
    import pandas as pd

    return pd.DataFrame({c: pd.Series(dtype=t) for c, (t, _) in COLUMNS.items()})


def to_frame(rows: list[dict[str, Any]]) -> Any:
    """Rows (dicts with every column) -> a manifest DataFrame with the contract's dtypes and order."""
    import pandas as pd

    if not rows:
        return empty_manifest()
    frame = pd.DataFrame(rows)
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise KeyError(f"manifest rows lack {missing}")
    return frame[list(COLUMNS)].astype({c: t for c, (t, _) in COLUMNS.items()})


def read_manifest(dataset: str | os.PathLike, *, kept_only: bool = False, which: str = MANIFEST) -> Any:
    """The manifest (or `which=FINETUNE`) of a curated dataset, checked against `COLUMNS`."""
    path = manifest_path(dataset)
    if which != MANIFEST:
        path = path.parent / which
        if not path.is_file():
            raise ManifestError(f"No {which} beside {path.parent / MANIFEST}; re-run `ltxlab curate`.")
    import pandas as pd

    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a torn file
        raise ManifestError(f"{path} is not a readable parquet file ({type(exc).__name__}); "
                            "re-run `ltxlab curate`.") from None
    check_columns(frame, str(path))
    return frame[frame["keep"]].reset_index(drop=True) if kept_only else frame


def read_report(dataset: str | os.PathLike) -> dict[str, Any]:
    """`report.json` of a curated dataset, with its required keys checked."""
    path = manifest_path(dataset).parent / REPORT
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ManifestError(f"No {REPORT} in {path.parent}; re-run `ltxlab curate`.") from None
    except json.JSONDecodeError:
        raise ManifestError(f"{path} is not valid JSON; re-run `ltxlab curate`.") from None
    missing = [k for k in REPORT_KEYS if k not in report]
    if missing:
        raise ManifestError(f"{path} lacks {', '.join(missing)}; re-run `ltxlab curate`.")
    return report


def source_stats(paths: list[str]) -> Any:
    """A sources.parquet frame of `paths` as they are now (files that cannot be stat-ed are left out)."""
    import pandas as pd

    rows = []
    for path in sorted(set(paths)):
        try:
            info = os.stat(path)
        except OSError:
            continue  # gone: it can only be a `probe` row, which training never reads
        rows.append({"source": path, "size_bytes": int(info.st_size), "mtime_ns": int(info.st_mtime_ns)})
    frame = pd.DataFrame(rows, columns=list(SOURCE_COLUMNS))
    return frame.astype({c: t for c, (t, _) in SOURCE_COLUMNS.items()})


def read_sources(dataset: str | os.PathLike) -> dict[str, tuple[int, int]]:
    """{source path: (size_bytes, mtime_ns)} from a curated dataset's sources.parquet."""
    path = manifest_path(dataset).parent / SOURCES
    if not path.is_file():
        raise ManifestError(f"{path.parent} has no {SOURCES} (it was curated before source videos were "
                            "fingerprinted); re-run `ltxlab curate` so changed videos can be detected.")
    import pandas as pd

    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a torn file
        raise ManifestError(f"{path} is not a readable parquet file ({type(exc).__name__}); "
                            "re-run `ltxlab curate`.") from None
    missing = [c for c in SOURCE_COLUMNS if c not in frame.columns]
    if missing:
        raise ManifestError(f"{path} lacks the column(s) {', '.join(missing)}; re-run `ltxlab curate`.")
    return {str(a): (int(b), int(c)) for a, b, c in zip(frame["source"], frame["size_bytes"], frame["mtime_ns"])}


def source_change(path: str, recorded: tuple[int, int] | None) -> str | None:
    """How the file at `path` differs from its recorded (size_bytes, mtime_ns), or None when it matches."""
    if recorded is None:
        return "is not in the dataset's sources.parquet"
    try:
        info = os.stat(path)
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    size, mtime_ns = recorded
    if info.st_size != size:
        return f"is now {info.st_size} bytes, not the {size} curation read"
    if info.st_mtime_ns != mtime_ns:
        return "was modified after curation read it (same size, new mtime)"
    return None


def score_summary(values: Any) -> dict[str, float | int]:
    """{count, min, p10, median, p90, max} of the finite values (NaN fields when there are none)."""
    import numpy as np

    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    if not len(x):
        return {"count": 0, "min": math.nan, "p10": math.nan, "median": math.nan, "p90": math.nan, "max": math.nan}
    q = np.quantile(x, [0.1, 0.5, 0.9])
    return {"count": int(len(x)), "min": float(x.min()), "p10": float(q[0]), "median": float(q[1]),
            "p90": float(q[2]), "max": float(x.max())}
