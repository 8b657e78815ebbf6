"""Curated datasets for the Data page: find them, read them, count the filter funnel, pick examples, thumbnails.

A curated dataset is what `ltxlab curate SRC --out DATASET` writes (`clips.curate.manifest` is the
contract: columns, `FILTERS` order, `REPORT_KEYS`). Everything here is a plain function of those
files (pandas, numpy, PyAV), so tests call it directly and the page caches it; no Streamlit, no torch.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clips.curate.manifest import FILTERS, FINETUNE, MANIFEST, ManifestError, read_manifest, read_report

DATA_ENV = "LTXLAB_DATA"  # dataset folders or folders holding them, os.pathsep-separated (`ltxlab dashboard --data`)
SEARCH_DEPTH = 2  # a folder given is searched this many levels down for manifest.parquet
MAX_VISITED = 5000  # folders visited per search at most (a home directory must not hang the page)
THUMB_WIDTH = 320  # thumbnails wider than this are scaled down while decoding

# The scores the page histograms: column -> (the filter it decides, where its threshold is in
# report.json's config = clips.curate.config.CurateConfig as a dict, what falls on the wrong side).
# `crop_fraction` is derived: the crop box's share of the frame area, against `bars.min_area_fraction`.
SCORES: dict[str, tuple[str, str, str]] = {
    "duration_s": ("duration", "shots.min_duration_s", "shorter is dropped"),
    "crop_fraction": ("bars", "bars.min_area_fraction", "less picture is dropped"),
    "motion_flow": ("motion", "motion.static_flow", "lower is static"),
    "motion_diff": ("motion", "motion.static_diff", "lower is static"),
    "aesthetic": ("aesthetic", "aesthetic.threshold", "lower is dropped"),
}
SCORE_LABELS = {"duration_s": "clip duration (s)", "crop_fraction": "share of the frame the black-bar crop keeps",
                "motion_flow": "mean Farneback flow (px/s)", "motion_diff": "mean frame difference (grey levels)",
                "aesthetic": "aesthetic score"}  # fmt: skip

def data_paths() -> list[Path]:
    """The folders given with `ltxlab dashboard --data` (environment `LTXLAB_DATA`), in order."""
    raw = os.environ.get(DATA_ENV, "")
    return [Path(p).expanduser() for p in raw.split(os.pathsep) if p.strip()]


def discover(folders: list[Path], depth: int = SEARCH_DEPTH) -> list[Path]:
    """Curated datasets (folders holding manifest.parquet) at or below each folder, in the order given.

    Hidden folders and a dataset's own `clips/` are not entered; at most `MAX_VISITED` folders are visited.
    """
    found: dict[Path, None] = {}
    visited = 0
    for top in folders:
        layer = [top]
        for _ in range(depth + 1):
            below = []
            for folder in layer:
                visited += 1
                if visited > MAX_VISITED:
                    return list(found)
                if (folder / MANIFEST).is_file():
                    found[folder.resolve()] = None
                    continue  # a dataset's subfolders are its clips, not more datasets
                try:
                    below += sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
                except OSError:
                    continue
            layer = below
    return list(found)


def folder_key(folders: list[Path]) -> tuple[float, ...]:
    """A cache key for `discover`: the mtimes of the folders and their children (new datasets change it)."""
    keys = []
    for folder in folders:
        keys.append(_mtime(folder))
        try:
            keys += [_mtime(p) for p in sorted(folder.iterdir()) if p.is_dir()]
        except OSError:
            pass
    return tuple(keys)


def dataset_key(path: Path) -> tuple[float, ...]:
    """A cache key for `load_dataset`: the mtimes of the three files."""
    return tuple(_mtime(path / name) for name in (MANIFEST, FINETUNE, "report.json"))


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime_ns / 1e9
    except OSError:
        return 0.0


@dataclass(frozen=True, kw_only=True)
class CuratedDataset:
    """A curated dataset as read from disk, with a sentence for each file that was missing or odd."""

    path: Path  # the DATASET folder
    manifest: pd.DataFrame  # every candidate clip and unusable file (clips.curate.manifest.COLUMNS)
    report: dict[str, Any] | None  # report.json, None when missing or unreadable
    finetune: pd.DataFrame | None  # finetune.parquet, None when missing or unreadable
    notes: tuple[str, ...]  # one sentence per problem (missing report, counts that disagree, ...)

    @property
    def config(self) -> dict[str, Any]:
        config = (self.report or {}).get("config")
        return config if isinstance(config, dict) else {}


def load_dataset(path: str | os.PathLike) -> CuratedDataset:
    """Read a dataset; raises ManifestError (one sentence) only when the manifest itself is unusable."""
    manifest = read_manifest(path)
    folder = Path(path).expanduser()
    folder = folder.parent if folder.is_file() else folder
    notes: list[str] = []
    try:
        report = read_report(folder)
    except ManifestError as exc:
        report = None
        notes.append(f"{exc} Counts below come from the manifest; thresholds and provenance are unknown.")
    try:
        finetune = read_manifest(folder, which=FINETUNE)
    except ManifestError as exc:
        finetune = None
        notes.append(str(exc))
    notes += consistency_notes(manifest, report, finetune)
    return CuratedDataset(path=folder, manifest=manifest, report=report, finetune=finetune, notes=tuple(notes))


def funnel(manifest: pd.DataFrame) -> pd.DataFrame:
    """Rows entering, dropped at and passing each filter, in `FILTERS` order.

    A manifest row is one candidate clip, or one unusable file (dropped at `probe`), so the
    `probe` row counts files and clips together, as the manifest does.
    """
    rows, entering = [], len(manifest)
    for name in FILTERS:
        dropped = int((manifest["dropped_by"] == name).sum())
        rows.append({"filter": name, "entering": entering, "dropped": dropped, "passed": entering - dropped})
        entering -= dropped
    return pd.DataFrame(rows)


def probe_failures(manifest: pd.DataFrame) -> pd.DataFrame:
    """The files dropped at `probe`: source, reason code, sentence (drop_reason is 'code: sentence')."""
    rows = manifest.loc[manifest["dropped_by"] == "probe", ["source", "drop_reason"]]
    parts = rows["drop_reason"].fillna("").astype(str).str.split(": ", n=1, expand=True).reindex(columns=[0, 1])
    return pd.DataFrame({"source": rows["source"].to_numpy(), "reason": parts[0].replace("", "unknown").to_numpy(),
                         "message": parts[1].fillna("").to_numpy()})  # fmt: skip


def reason_counts(failures: pd.DataFrame) -> pd.DataFrame:
    """Files per probe reason code, most frequent first (ties by name, so the order is stable)."""
    counts = failures.groupby("reason").size().rename("files").reset_index()
    return counts.sort_values(["files", "reason"], ascending=[False, True], ignore_index=True)


def consistency_notes(manifest: pd.DataFrame, report: dict | None, finetune: pd.DataFrame | None) -> list[str]:
    """Sentences for what does not add up between the manifest, report.json and finetune.parquet."""
    notes = []
    odd = manifest[~manifest["keep"] & ~manifest["dropped_by"].isin(FILTERS)]
    if len(odd):
        notes.append(f"{len(odd)} dropped row(s) name no known filter in dropped_by (e.g. {odd['dropped_by'].iloc[0]!r}); "
                     f"the known filters are {', '.join(FILTERS)}.")  # fmt: skip
    counts = (report or {}).get("counts")
    if isinstance(counts, dict):
        have = {"kept": int(manifest["keep"].sum()), "finetune": int(manifest["finetune"].sum())}
        have |= {f"dropped by {f}": int((manifest["dropped_by"] == f).sum()) for f in FILTERS}
        said = {"kept": counts.get("kept"), "finetune": counts.get("finetune")}
        said |= {f"dropped by {f}": (counts.get("dropped_by") or {}).get(f) for f in FILTERS}
        differ = [f"{k} {said[k]} vs {have[k]}" for k in have if said[k] is not None and said[k] != have[k]]
        if differ:
            notes.append(f"report.json and manifest.parquet disagree ({'; '.join(differ)}); the page shows the "
                         "manifest's counts; re-run `ltxlab curate` to rewrite both.")  # fmt: skip
    if finetune is not None and len(finetune) != int(manifest["finetune"].sum()):
        notes.append(f"finetune.parquet has {len(finetune)} clips but the manifest marks {int(manifest['finetune'].sum())}; "
                     "re-run `ltxlab curate`.")  # fmt: skip
    return notes


def lookup(config: dict[str, Any], dotted: str) -> float | None:
    """The finite number at a dotted path of a nested dict, else None (absent, null or not a number)."""
    node: Any = config
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, (int, float)) and not isinstance(node, bool) and math.isfinite(node):
        return float(node)
    return None


def thresholds(config: dict[str, Any]) -> dict[str, float]:
    """score column -> threshold, for every score whose threshold the config sets."""
    found = {column: lookup(config, path) for column, (_, path, _) in SCORES.items()}
    return {column: value for column, value in found.items() if value is not None}


def outcome(manifest: pd.DataFrame, filter_name: str) -> pd.Series:
    """Per row: 'kept', 'dropped by <filter_name>' or 'dropped by another filter' (the histogram colours)."""
    here = np.where(manifest["dropped_by"] == filter_name, f"dropped by {filter_name}", "dropped by another filter")
    return pd.Series(np.where(manifest["keep"], "kept", here), index=manifest.index)


def crop_fraction(manifest: pd.DataFrame) -> pd.Series:
    """The crop box's share of the frame area per row (NaN where the box was not computed)."""
    area = (manifest["crop_x1"] - manifest["crop_x0"]) * (manifest["crop_y1"] - manifest["crop_y0"])
    frame = (manifest["width"] * manifest["height"]).where(manifest["width"] > 0)
    return (area / frame).where(manifest["crop_x0"] >= 0).astype("float64")


def score_frame(manifest: pd.DataFrame, column: str) -> pd.DataFrame:
    """Rows that have the score (finite): clip_id, value, outcome relative to the filter the score decides."""
    filter_name = SCORES[column][0]
    values = crop_fraction(manifest) if column == "crop_fraction" else pd.to_numeric(manifest[column], errors="coerce")
    have = np.isfinite(values.to_numpy(dtype=np.float64)) & (manifest["dropped_by"] != "probe").to_numpy()
    return pd.DataFrame({"clip_id": manifest["clip_id"][have].to_numpy(), "value": values[have].to_numpy(),
                         "outcome": outcome(manifest, filter_name)[have].to_numpy()})  # fmt: skip


def histogram(scores: pd.DataFrame, extra: Sequence[float] = (), bins: int = 30) -> pd.DataFrame:
    """Counts of `scores` (columns value, outcome) per equal-width bin and outcome, so a chart ships
    bins x outcomes rows, not one per clip. The bins span the values and the `extra` points (the
    thresholds), so every rule falls inside the axis.

    Returns columns start, end, outcome, clips (only non-empty cells).
    """
    values = scores["value"].to_numpy(dtype=np.float64)
    span = np.concatenate([values, np.asarray(extra, dtype=np.float64)])
    lo, hi = float(span.min()), float(span.max())
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, bins + 1)
    index = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, bins - 1)  # the last edge is closed
    counts = pd.DataFrame({"bin": index, "outcome": scores["outcome"].to_numpy()}).value_counts().rename("clips").reset_index()
    return pd.DataFrame({"start": edges[counts["bin"]], "end": edges[counts["bin"] + 1], "outcome": counts["outcome"],
                         "clips": counts["clips"]}).sort_values(["start", "outcome"], ignore_index=True)  # fmt: skip


def _stable_rank(clip_ids: pd.Series) -> pd.Series:
    """A fixed pseudo-random order of clip ids (sha1), so examples are spread over sources and never change."""
    return clip_ids.map(lambda c: hashlib.sha1(str(c).encode()).hexdigest())


def examples(manifest: pd.DataFrame, which: str, count: int) -> pd.DataFrame:
    """Up to `count` rows kept (`which='kept'`) or dropped by filter `which`, in a deterministic order."""
    rows = manifest[manifest["keep"]] if which == "kept" else manifest[manifest["dropped_by"] == which]
    order = _stable_rank(rows["clip_id"]).sort_values(kind="stable").index
    return rows.loc[order].head(count)


def has_crop(row: Any) -> bool:
    """True when the row carries a computed crop box smaller than the frame."""
    box = (row.crop_x0, row.crop_y0, row.crop_x1, row.crop_y1)
    return min(box) >= 0 and box != (0, 0, row.width, row.height)


Thumbnail = tuple[str, float, int, int | None]  # (video path, its mtime (a cache key), frame number, decode width or None)


def thumbnail_plan(dataset: Path, row: Any) -> tuple[Thumbnail | None, bool, str]:
    """What to decode for an example: (the thumbnail, whether it is the uncropped source, sentence when there is none).

    The source video's middle frame of the clip is preferred (the crop box is drawn on it); a kept
    clip's re-encoded copy under DATASET/clips is the fallback when the source is not on this machine.
    Frames wider than THUMB_WIDTH are scaled down while decoding.
    """
    if row.start_frame < 0:
        return None, False, "unusable file: no frames to show"
    source = Path(str(row.source))
    if source.is_file():
        width = THUMB_WIDTH if row.width > THUMB_WIDTH else None
        return (str(source), _mtime(source), int((row.start_frame + row.end_frame) // 2), width), True, ""
    copy = dataset / str(row.clip_path) if row.clip_path else None
    if copy is not None and copy.is_file():
        return (str(copy), _mtime(copy), int((row.end_frame - row.start_frame) // 2), THUMB_WIDTH), False, ""
    return None, False, f"no thumbnail: {source} is not on this machine"


def decode_thumbnails(wanted: Sequence[Thumbnail], workers: int = 4) -> list[np.ndarray | str]:
    """Each thumbnail as uint8 `(H, W, 3)` RGB, or the one sentence why it could not be decoded.

    Threads, because PyAV decodes without holding the GIL and one frame can cost a whole GOP of
    decoding; the order of `wanted` is kept.
    """
    from concurrent.futures import ThreadPoolExecutor

    from clips.curate.probe import read_frames  # PyAV only; imported on use to keep the page start light
    from clips.errors import ClipError

    def one(item: Thumbnail) -> np.ndarray | str:
        path, _, frame, width = item
        try:
            return read_frames(path, indices=[frame], width=width)[0]
        except ClipError as exc:
            return f"no thumbnail: {exc}"

    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(wanted)))) as pool:
        return list(pool.map(one, wanted))


def draw_box(image: np.ndarray, box: tuple[int, int, int, int], frame_size: tuple[int, int],
             color: tuple[int, int, int] = (255, 40, 40)) -> np.ndarray:
    """A copy of uint8 `(H, W, 3)` `image` with the end-exclusive `box` (x0, y0, x1, y1, in pixels of a
    `frame_size` = (width, height) frame) outlined, 2 pixels thick, scaled to the image's size."""
    out = image.copy()
    h, w = out.shape[:2]
    sx, sy = w / frame_size[0], h / frame_size[1]
    x0, x1 = int(round(box[0] * sx)), max(int(round(box[2] * sx)) - 1, 0)
    y0, y1 = int(round(box[1] * sy)), max(int(round(box[3] * sy)) - 1, 0)
    x0, x1, y0, y1 = min(x0, w - 1), min(x1, w - 1), min(y0, h - 1), min(y1, h - 1)
    t = 2
    out[y0:y0 + t, x0:x1 + 1] = color
    out[max(y1 - t + 1, 0):y1 + 1, x0:x1 + 1] = color
    out[y0:y1 + 1, x0:x0 + t] = color
    out[y0:y1 + 1, max(x1 - t + 1, 0):x1 + 1] = color
    return out


def example_caption(row: Any, limits: dict[str, float]) -> str:
    """One line under a thumbnail: the clip id, the scores of the filter that decided it against their
    thresholds (every score for a kept clip), the crop for a bars drop, and the drop reason."""
    parts = [str(row.clip_id)]
    decided = row.dropped_by if isinstance(row.dropped_by, str) else None
    for column, (filter_name, _, _) in SCORES.items():
        value = getattr(row, column, None)
        if isinstance(value, float) and math.isfinite(value) and decided in (None, filter_name):
            parts.append(f"{column} {value:.3g}" + (f" (threshold {limits[column]:g})" if column in limits else ""))
    if decided == "bars" and has_crop(row):
        parts.append(f"crop {row.crop_x1 - row.crop_x0}x{row.crop_y1 - row.crop_y0} of {row.width}x{row.height}")
    if isinstance(row.drop_reason, str) and row.drop_reason:
        parts.append(row.drop_reason)
    return " · ".join(parts)


def finetune_summary(data: CuratedDataset) -> dict[str, Any]:
    """Size of the finetune subset and its aesthetic range, beside the kept clips' range."""
    kept = data.manifest[data.manifest["keep"]]
    subset = data.finetune if data.finetune is not None else data.manifest[data.manifest["finetune"]]

    def span(frame: pd.DataFrame) -> tuple[float, float]:
        values = pd.to_numeric(frame["aesthetic"], errors="coerce").dropna()
        return (float(values.min()), float(values.max())) if len(values) else (math.nan, math.nan)

    return {"clips": len(subset), "kept": len(kept), "sources": int(subset["source_id"].nunique()),
            "aesthetic": span(subset), "kept_aesthetic": span(kept),
            "seconds": float(subset["duration_s"].sum()), "from_file": data.finetune is not None}  # fmt: skip


MAX_EXAMPLES = 8  # examples kept per group in a Summary (the page's slider goes up to this)


@dataclass(frozen=True, kw_only=True)
class Summary:
    """Everything the Data page draws, computed once per dataset version (small: no per-clip rows)."""

    counts: dict[str, int]  # source files, unusable files, candidate clips, kept clips, finetune subset
    funnel: pd.DataFrame  # `funnel(manifest)`
    failures: pd.DataFrame  # `probe_failures(manifest)`
    reasons: pd.DataFrame  # `reason_counts(failures)`
    limits: dict[str, float]  # score column -> threshold from the config
    histograms: dict[str, pd.DataFrame]  # score column -> `histogram` counts (empty: no clip has the score)
    rules: dict[str, list[tuple[float, str]]]  # score column -> (value, label) lines drawn on its histogram
    examples: dict[str, pd.DataFrame]  # 'kept' or a filter -> up to MAX_EXAMPLES rows in the fixed order
    totals: dict[str, int]  # 'kept' or a filter -> clips in that group
    finetune: dict[str, Any]  # `finetune_summary(data)`


def summarise(data: CuratedDataset) -> Summary:
    """The page's content for `data`: counts, funnel, failures, binned scores with their rules, examples."""
    m = data.manifest
    probe = m["dropped_by"] == "probe"
    failures = probe_failures(m)
    limits = thresholds(data.config)
    tuning = finetune_summary(data)
    histograms, rules = {}, {}
    for column, (_, path, _) in SCORES.items():
        rules[column] = [(limits[column], f"{path} = {limits[column]:g}")] if column in limits else []
        if column == "aesthetic" and math.isfinite(tuning["aesthetic"][0]):
            rules[column].append((tuning["aesthetic"][0], f"finetune ≥ {tuning['aesthetic'][0]:.3g}"))
        scores = score_frame(m, column)
        histograms[column] = histogram(scores, [v for v, _ in rules[column]]) if len(scores) else scores
    groups = ("kept", *FILTERS[1:])
    return Summary(
        counts={"Source files": int(m["source"].nunique()), "Unusable files": int(probe.sum()),
                "Candidate clips": int((~probe).sum()), "Kept clips": int(m["keep"].sum()),
                "Finetune subset": int(m["finetune"].sum())},
        funnel=funnel(m), failures=failures, reasons=reason_counts(failures), limits=limits,
        histograms=histograms, rules=rules,
        examples={g: examples(m, g, MAX_EXAMPLES) for g in groups},
        totals={g: int(m["keep"].sum() if g == "kept" else (m["dropped_by"] == g).sum()) for g in groups},
        finetune=tuning,
    )  # fmt: skip


def flatten(tree: Any, prefix: str = "") -> list[tuple[str, str]]:
    """(dotted key, value as text) for every leaf of a nested dict: provenance and config as a table."""
    if isinstance(tree, dict) and tree:
        rows = []
        for key in tree:
            rows += flatten(tree[key], f"{prefix}.{key}" if prefix else str(key))
        return rows
    text = tree if isinstance(tree, str) else "none" if tree is None else json.dumps(tree, default=str)
    return [(prefix, text)]


def config_hash(config: dict[str, Any]) -> str:
    """sha256 of the config's sorted compact JSON, 12 hex (as `models.config.content_hash`, without importing models)."""
    blob = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]

