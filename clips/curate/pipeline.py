"""`curate(SRC, OUT, cfg)`: LTX-Video's curation pipeline (arXiv 2501.00103 §4) on Ray Data.

    list_inputs + precheck (driver, no decoding; an all-broken input stops here, before Ray)
    ray.data.from_items(files)
      .flat_map(probe_and_split)          probe, shot cuts, clip lengths     (tasks)
      .map(measure_clip)                  black bars, motion                 (fused with the above)
      .map_batches(ScoreAesthetic)        scorer loaded once per actor       (if aesthetic.scorer)
      .map_batches(CaptionClips)          captioner loaded once per actor    (if captions.mode = 'captioner')
      .map(caption_rule)                  source captions required?
      .map(reencode_clip)                 cropped H.264 clips                (if output.reencode)
    -> rows (small dicts, streamed to the driver) -> finetune top-k -> manifest.parquet,
       finetune.parquet, report.json, written into a hidden staging folder, then swapped into OUT

`engine="local"` runs the same stage functions (`stages.py`) in one process, in order: what
the benchmark compares Ray Data against. Ray is embedded (`ray.init(address="local",
num_cpus=workers)`) unless it is already initialised or `RAY_ADDRESS` names a cluster, as
`ablations/runner.py` does for sweeps; a Ray this function started is shut down at the end.
The files' contract is `clips/curate/manifest.py`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Literal

from clips.curate import manifest as M
from clips.curate.config import CurateConfig, check_config
from clips.curate.inputs import SourceFile, list_inputs, precheck
from clips.curate.stages import (CaptionClips, ScoreAesthetic, caption_rule, measure_clip, probe_and_split,
                                 probe_row, reencode_clip)
from clips.errors import ClipError

Engine = Literal["ray", "local"]
MAX_BLOCKS = 20_000  # from_items blocks: beyond this the driver's block metadata costs more than balance gains
SCORED = ("motion_flow", "motion_diff", "aesthetic")  # report.json `scores` columns


@dataclass(frozen=True)
class CurateResult:
    """What `curate` wrote."""

    out: Path  # the dataset folder
    manifest: Any  # the manifest DataFrame (every row)
    report: dict[str, Any]  # report.json as written


# ----------------------------------------------------------------------------- Ray


def start_ray(workers: int) -> bool:
    """Join RAY_ADDRESS or start an embedded Ray with `workers` CPUs; False when Ray was already up."""
    import ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    kwargs: dict[str, Any] = dict(include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False,
                                  configure_logging=True)
    address = os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, **kwargs)
    else:  # "local": a fresh embedded instance, never a stale `ray start` cluster
        ray.init(address="local", num_cpus=workers, **kwargs)
    return True


def _quiet_data_context() -> None:
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    ctx.verbose_stats_logs = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)  # "execution finished in ..." per run, progress-bar notice


def _actor_args(cpus: float, device: str, actors: int) -> dict[str, Any]:
    return dict(concurrency=actors, num_cpus=cpus, num_gpus=1 if device == "cuda" else 0, batch_format="pandas")


def ray_rows(files: list[SourceFile], cfg: CurateConfig, dataset: str) -> Iterator[dict[str, Any]]:
    """Manifest rows of `files` from the Ray Data pipeline, streamed as they finish (any order)."""
    import ray.data

    _quiet_data_context()
    items = [{"path": f.path, "caption": f.caption} for f in files]
    blocks = max(1, min(len(items), math.ceil(len(items) / cfg.files_per_block), MAX_BLOCKS))
    ds = ray.data.from_items(items, override_num_blocks=blocks)
    ds = ds.flat_map(probe_and_split, fn_kwargs={"cfg": cfg}, num_cpus=1)
    ds = ds.map(measure_clip, fn_kwargs={"cfg": cfg}, num_cpus=1)
    a, c = cfg.aesthetic, cfg.captions
    if a.scorer:
        ds = ds.map_batches(ScoreAesthetic, fn_constructor_kwargs={"cfg": cfg}, batch_size=a.batch_size,
                            **_actor_args(a.actor_cpus, a.device, a.actors))
    if c.mode == "captioner":
        ds = ds.map_batches(CaptionClips, fn_constructor_kwargs={"cfg": cfg}, batch_size=c.batch_size,
                            **_actor_args(c.actor_cpus, c.device, c.actors))
    ds = ds.map(caption_rule, fn_kwargs={"cfg": cfg}, num_cpus=1)
    if cfg.output.reencode:
        ds = ds.map(reencode_clip, fn_kwargs={"cfg": cfg, "dataset": dataset}, num_cpus=1)
    yield from ds.iter_rows()


def local_rows(files: list[SourceFile], cfg: CurateConfig, dataset: str) -> Iterator[dict[str, Any]]:
    """The same rows from the same stage functions in this process, one file at a time."""
    import pandas as pd

    scorer = ScoreAesthetic(cfg) if cfg.aesthetic.scorer else None
    captioner = CaptionClips(cfg) if cfg.captions.mode == "captioner" else None
    for file in files:
        rows = [measure_clip(r, cfg) for r in probe_and_split({"path": file.path, "caption": file.caption}, cfg)]
        for model in (scorer, captioner):
            if model is not None and rows:
                rows = model(pd.DataFrame(rows)).to_dict("records")
        rows = [caption_rule(r, cfg) for r in rows]
        if cfg.output.reencode:
            rows = [reencode_clip(r, cfg, dataset) for r in rows]
        yield from rows


def curate_rows(files: list[SourceFile], cfg: CurateConfig, dataset: str, engine: Engine = "ray") -> list[dict[str, Any]]:
    """Every row of `files` (not sorted) from `engine`; re-encoded clips go under `dataset`/clips."""
    source = ray_rows if engine == "ray" else local_rows
    return [normalise(row) for row in source(files, cfg, dataset)]


def normalise(row: dict[str, Any]) -> dict[str, Any]:
    """Plain Python values at the contract's types (Arrow hands back numpy scalars, and null for NaN)."""
    out = {}
    for column, (dtype, _) in M.COLUMNS.items():
        value = row[column]
        value = value.item() if hasattr(value, "item") else value
        if dtype == "float64":
            value = math.nan if value is None else float(value)
        elif dtype == "int64":
            value = int(value)
        elif dtype == "bool":
            value = bool(value)
        elif isinstance(value, float) and math.isnan(value):
            value = None  # a pandas batch's missing string
        out[column] = value
    return out


# ----------------------------------------------------------------------------- checks before work


def is_dataset(folder: Path) -> bool:
    """True when `folder` holds a curated dataset (report.json of this format) that may be replaced."""
    try:
        return json.loads((folder / M.REPORT).read_text(encoding="utf-8")).get("format") == M.FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def check_out(out: Path, src: Path) -> None:
    """Refuse an OUT that is a file, holds something that is not a curated dataset, or contains SRC."""
    if out.exists() and not out.is_dir():
        raise ClipError(f"--out {out} is a file; pass a folder for the curated dataset.")
    if out.is_dir() and any(out.iterdir()) and not is_dataset(out):
        raise ClipError(f"--out {out} holds files that are not a curated dataset (no {M.REPORT} of format "
                        f"{M.FORMAT}); pass an empty or new folder, or a dataset to replace.")
    source = src.resolve()
    if source == out or out in source.parents:
        raise ClipError(f"SRC {src} is inside --out {out}, which a rerun replaces; write the dataset elsewhere.")


def check_models(cfg: CurateConfig) -> None:
    """The scorer and captioner folders exist and look complete (cheap; the models load in the actors)."""
    from models.aesthetic import SCORER_FORMAT, WEIGHTS_FILE, hf_folder

    if cfg.aesthetic.scorer:
        folder = Path(cfg.aesthetic.scorer).expanduser()
        try:
            fmt = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("format")
        except (OSError, ValueError, AttributeError):
            fmt = None
        if fmt != SCORER_FORMAT or not (folder / WEIGHTS_FILE).is_file():
            raise ClipError(f"aesthetic.scorer {folder} is not a scorer folder (config.json of format {SCORER_FORMAT} "
                            f"and {WEIGHTS_FILE}); train one with `ltxlab aesthetic train --out` or unset aesthetic.scorer.")
    if cfg.captions.mode == "captioner":
        hf_folder(cfg.captions.path or "", "captioner")


def model_provenance(cfg: CurateConfig) -> dict[str, Any]:
    """{aesthetic, captioner}: folder, weights hash (and the scorer's backbone), or None."""
    from models.aesthetic import hf_folder, weights_sha256

    out: dict[str, Any] = {"aesthetic": None, "captioner": None}
    if cfg.aesthetic.scorer:
        folder = Path(cfg.aesthetic.scorer).expanduser().resolve()
        meta = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        out["aesthetic"] = {"path": str(folder), "weights_sha256": weights_sha256(folder),
                            "backbone": meta.get("backbone"), "config": meta.get("config")}
    if cfg.captions.mode == "captioner":
        folder = hf_folder(cfg.captions.path or "", "captioner")
        out["captioner"] = {"name": folder.name, "path": str(folder), "weights_sha256": weights_sha256(folder)}
    return out


# ----------------------------------------------------------------------------- rows -> dataset


def _tie_break(clip_id: str, seed: int) -> str:
    return hashlib.sha256(f"{seed}:{clip_id}".encode()).hexdigest()


def mark_finetune(rows: list[dict[str, Any]], cfg: CurateConfig) -> None:
    """Set `finetune` on the kept clips with the `aesthetic.top_k` highest scores (none without a scorer)."""
    scored = [r for r in rows if r["keep"] and math.isfinite(r["aesthetic"])]
    scored.sort(key=lambda r: (-r["aesthetic"], _tie_break(r["clip_id"], cfg.seed)))
    for row in scored[:cfg.aesthetic.top_k]:
        row["finetune"] = True


def json_safe(value: Any) -> Any:
    """NaN/inf -> None and numpy scalars -> Python, recursively: report.json holds JSON null, never NaN."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()  # numpy scalar
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def build_report(rows: list[dict[str, Any]], files: int, cfg: CurateConfig, src: str, wall_s: float,
                 engine: Engine, provenance: dict[str, Any]) -> dict[str, Any]:
    """report.json (keys: manifest.REPORT_KEYS, plus `notes`)."""
    from models.config import to_dict

    unusable = [r for r in rows if r["dropped_by"] == "probe" and r["start_frame"] < 0]
    clips = [r for r in rows if r["start_frame"] >= 0]
    failures = [r for r in rows if r["dropped_by"] == "probe"]
    notes = []
    if not cfg.aesthetic.scorer:
        notes.append("No aesthetic scorer (aesthetic.scorer unset): the aesthetic column is NaN, the aesthetic "
                     "filter is off and finetune.parquet is empty.")
    counts = {
        "files": files, "probed_ok": files - len(unusable), "probe_failed": len(unusable), "clips": len(clips),
        "kept": sum(r["keep"] for r in rows), "finetune": sum(r["finetune"] for r in rows),
        "dropped_by": {f: sum(r["dropped_by"] == f for r in rows) for f in M.FILTERS},
        "probe_reasons": dict(Counter(r["drop_reason"].split(":", 1)[0] for r in failures)),
    }
    return json_safe({
        "format": M.FORMAT, "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source": src, "config": to_dict(cfg), "counts": counts,
        "scores": {c: M.score_summary(r[c] for r in clips) for c in SCORED},
        "failures": [{"path": r["source"], "clip_id": r["clip_id"] if r["start_frame"] >= 0 else None,
                      "reason": r["drop_reason"].split(":", 1)[0], "message": r["drop_reason"].split(": ", 1)[-1]}
                     for r in failures],
        "timing": {"wall_s": wall_s, "clips_per_s": len(clips) / wall_s if wall_s > 0 else None,
                   "workers": cfg.worker_count if engine == "ray" else 1, "engine": engine},
        "provenance": provenance, "notes": notes,
    })


def _write_atomic(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)


def write_dataset(folder: Path, frame: Any, report: dict[str, Any], sources: Any) -> None:
    """sources.parquet, manifest.parquet, finetune.parquet, then report.json (last: its presence marks a
    complete dataset)."""
    _write_atomic(folder / M.SOURCES, lambda p: sources.to_parquet(p, index=False))
    _write_atomic(folder / M.MANIFEST, lambda p: frame.to_parquet(p, index=False))
    finetune = frame[frame["finetune"]].reset_index(drop=True)
    _write_atomic(folder / M.FINETUNE, lambda p: finetune.to_parquet(p, index=False))
    text = json.dumps(report, indent=2, allow_nan=False)
    _write_atomic(folder / M.REPORT, lambda p: p.write_text(text, encoding="utf-8"))


def swap_in(staging: Path, out: Path) -> None:
    """Move the complete `staging` dataset to `out`, replacing an old dataset only now."""
    if not out.exists():
        os.replace(staging, out)
        return
    old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
    os.replace(out, old)
    try:
        os.replace(staging, out)
    except OSError:
        os.replace(old, out)  # put the old dataset back
        raise
    shutil.rmtree(old, ignore_errors=True)


def _default_provenance() -> dict[str, Any]:
    import importlib.metadata

    versions = {}
    for name in ("ltxlab", "ray", "av", "opencv-python-headless", "scenedetect", "torch", "pandas"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return {"commit": None, "versions": versions}


def curate(src: str | os.PathLike, out: str | os.PathLike, cfg: CurateConfig = CurateConfig(), *,
           engine: Engine = "ray", provenance: dict[str, Any] | None = None) -> CurateResult:
    """Curate the videos SRC names into the dataset folder OUT (see the module docstring).

    `provenance`: {commit, versions, ...} of the caller (the CLI passes the house's); the
    scorer's and captioner's folders and weights hashes are added here.

    Raises:
        ClipError / ConfigError: bad SRC, OUT, config or model folder, or no usable video at
            all; always before Ray starts and before OUT is touched.
    """
    check_config(cfg)
    started = time.perf_counter()
    out_path = Path(out).expanduser().resolve()
    check_out(out_path, Path(src).expanduser())
    files = list_inputs(src, skip=(out_path,))
    todo, condemned = precheck(files, cfg.probe, src)
    check_models(cfg)
    prov = {**(provenance or _default_provenance()), **model_provenance(cfg)}
    out_path.parent.mkdir(parents=True, exist_ok=True)
    staging = out_path.with_name(f".{out_path.name}.curate-{uuid.uuid4().hex[:8]}")
    staging.mkdir()
    started_ray = False
    sources = M.source_stats([f.path for f in todo])  # before any worker reads them: a later change shows
    try:
        if engine == "ray":
            started_ray = start_ray(cfg.worker_count)
        rows = [normalise(probe_row(f.path, f.caption, e)) for f, e in condemned]
        rows += curate_rows(todo, cfg, str(staging), engine)
        mark_finetune(rows, cfg)
        rows.sort(key=lambda r: (r["source"], r["start_frame"], r["end_frame"]))
        frame = M.to_frame(rows)
        report = build_report(rows, len(files), cfg, str(Path(src).expanduser().resolve()),
                              time.perf_counter() - started, engine, prov)
        write_dataset(staging, frame, report, sources)
        swap_in(staging, out_path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if started_ray:
            import ray

            ray.shutdown()
    return CurateResult(out=out_path, manifest=frame, report=report)
