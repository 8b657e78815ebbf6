"""A running run's training curve, read from its stage folders while it trains.

`curve.parquet` is written when a run ends. While it trains, the runner's `runs/<run_id>/stages.json`
names its stage instances ({stage: key}, folders `<results>/_cache/<stage>/<key>/`), and each
training stage appends one JSON line per step to `curve.live.jsonl` there
(`ablations.executor._progress_writer`); a finished stage of the run has its `curve.json`.
Pure file reading (no torch, no Streamlit), so pages and tests share it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from ablations.executor import DONE, LIVE_CURVE, PROGRESS
from ablations.store import CURVE_COLUMNS

STAGES_FILE = "stages.json"  # runs/<run_id>/stages.json, written by ablations.runner at the sweep's start
FINISHED_CURVE = "curve.json"  # a training stage's whole curve, written when it ends


def stage_folders(sweep_path: Path, run_id: str) -> dict[str, Path]:
    """{stage: folder} of a run from its stages.json; {} when the run has none (older sweeps, unreadable file)."""
    try:
        stages = json.loads((Path(sweep_path) / "runs" / run_id / STAGES_FILE).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(stages, dict):
        return {}
    cache = Path(sweep_path).parent / "_cache"
    return {str(stage): cache / str(stage) / str(key) for stage, key in stages.items()}


def live_files(sweep_path: Path, run_id: str) -> list[Path]:
    """The files a live curve is read from (for cache keys): each stage's live curve, finished curve and progress."""
    return [folder / name for folder in stage_folders(sweep_path, run_id).values()
            for name in (LIVE_CURVE, FINISHED_CURVE, PROGRESS)]  # fmt: skip


def _jsonl_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of an appended JSON-lines file; a torn last line (being written) is skipped."""
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return rows


def _after_restarts(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Steps as the latest attempt left them: a stage that resumed from an earlier checkpoint (or started
    over) writes steps again, so a step at or below the last one drops the earlier rows from it on."""
    kept: list[dict[str, Any]] = []
    for row in rows:
        while kept and int(kept[-1]["step"]) >= int(row["step"]):
            kept.pop()
        kept.append(row)
    return kept


def _long(rows: list[dict[str, Any]], stage: str) -> list[dict[str, Any]]:
    """{stage, step, <name>: value} rows -> long rows {stage, step, name, value} (numbers only)."""
    out = []
    for row in rows:
        for name, value in row.items():
            if name not in ("stage", "step") and isinstance(value, (int, float)) and not isinstance(value, bool):
                out.append({"stage": str(row.get("stage", stage)), "step": int(row["step"]), "name": name, "value": float(value)})
    return out


def live_curve(sweep_path: Path, run_id: str) -> pd.DataFrame:
    """The run's curve so far (stage, step, name, value): finished stages' curve.json, running ones'
    curve.live.jsonl; empty when the run has no stage folders with a curve yet."""
    rows: list[dict[str, Any]] = []
    for stage, folder in stage_folders(sweep_path, run_id).items():
        try:
            if (folder / FINISHED_CURVE).exists():
                rows += _long(json.loads((folder / FINISHED_CURVE).read_text()), stage)
            elif (folder / LIVE_CURVE).exists():
                rows += _long(_after_restarts([r for r in _jsonl_rows(folder / LIVE_CURVE) if "step" in r]), stage)
        except (OSError, ValueError, TypeError, KeyError):
            continue  # a file replaced or torn between two looks: the next refresh reads it
    return pd.DataFrame(rows, columns=list(CURVE_COLUMNS))


def live_progress(sweep_path: Path, run_id: str) -> list[str]:
    """"stage step/total" for each of the run's stages with a progress.json and no DONE yet; the step is
    the live curve's last one when that is newer (progress.json is written at most once a second)."""
    out = []
    for stage, folder in stage_folders(sweep_path, run_id).items():
        try:
            if (folder / DONE).exists():
                continue
            p = json.loads((folder / PROGRESS).read_text())
            step = int(p["step"])
            if (folder / LIVE_CURVE).exists():
                rows = _jsonl_rows(folder / LIVE_CURVE)
                step = int(rows[-1]["step"]) if rows else step
            out.append(f"{stage} {step}/{int(p['total'])}")
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return out
