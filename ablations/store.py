"""The results store: the one writer and reader of `RESULTS/<sweep>/` (docs/results-store.md).

The sweep runner writes through `SweepStore`; the dashboard, the survey builder and
`ltxlab results` read through `list_sweeps`, `load_sweep`, `run_samples`, `run_curve`.
Only pandas and pyarrow are imported (no torch, no ray) so the dashboard starts fast.

Every write goes to a temporary name in the same folder and is renamed into place with
`os.replace`, which is atomic on POSIX: a reader sees the old file or the new one, never a
half-written one. Read-modify-write operations (runs.parquet, metrics.parquet,
samples/index.jsonl) hold an `fcntl` lock on `<sweep>/.lock`, so two writers (a runner and
a manual `upsert_run`, say) cannot drop each other's rows.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import math
import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from clips.ids import source_of_clip_id  # stdlib only: keeps the store free of torch

RUN_STATUSES = ("pending", "running", "done", "failed")
# runs.parquet columns every reader can rely on (axis, headline and cost columns come on top)
RUN_BASE_COLUMNS = ("run_id", "variant", "seed", "status", "failure_reason", "started_at", "finished_at", "wall_time_s",
                    "restarts")
# replication columns, placed after `seed`: `replicate` ("a" | "b", only in sweeps with a
# replicated baseline) and `block` (the nominal seed: seed, or seed - offset for "b" copies)
RUN_REPLICATION_COLUMNS = ("replicate", "block")
COST_COLUMNS = ("cost.params", "cost.tokens", "cost.flops_run", "cost.flops_ref", "cost.latency_s", "cost.h100_estimate_s")
# source_id: the independent video a clip was cut from (clips.ids); producer: the stage instance that computed the
# value ("eval_recon/<key>"; "" where unknown), so the statistics can tell variants that share one computation from
# variants computed apart that score the same. Neither is part of the key
METRIC_COLUMNS = ("run_id", "seed", "split", "clip_id", "source_id", "metric", "value", "metric_version", "producer")
# a metrics row is identified by these; a later append replaces the earlier value
METRIC_KEY = ("run_id", "split", "clip_id", "metric")
CURVE_COLUMNS = ("stage", "step", "name", "value")
RUN_JSON_FILES = ("config.json", "manifest.json", "stages.json")  # stages.json: {stage: key} of the run's stage folders
DWT_BANDS = ("LLL", "LLH", "LHL", "LHH", "HLL", "HLH", "HHL", "HHH")
SAMPLE_TASKS = ("t2v", "i2v", "recon")


class StoreError(Exception):
    """The results store is unreadable or a write was malformed; the message is one sentence."""


class SweepBusyError(StoreError):
    """Another process is running this sweep into this results folder (`SweepStore.run_lock`)."""


# ----------------------------------------------------------------------------- atomic writes


def _tmp_name(path: Path) -> Path:
    return path.with_name(f"{path.name}.tmp-{os.getpid()}")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` via a same-folder temporary file and `os.replace`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write `obj` as indented JSON, atomically. NaN/inf become null (JSON has no NaN)."""
    text = json.dumps(_json_safe(obj), indent=2, sort_keys=False, default=str)
    return atomic_write_bytes(path, (text + "\n").encode())


def atomic_write_parquet(path: str | os.PathLike, df: pd.DataFrame) -> Path:
    """Write a DataFrame as parquet (no index), atomically."""
    buf = io.BytesIO()
    df.reset_index(drop=True).to_parquet(buf, index=False)
    return atomic_write_bytes(path, buf.getvalue())


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        with contextlib.suppress(Exception):
            return _json_safe(obj.item())
    return obj


# ----------------------------------------------------------------------------- file records


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of one file, read in 1 MiB blocks (the `sha256sum` value)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_record(folder: str | os.PathLike, keep: Callable[[str], bool] = lambda rel: True) -> dict[str, dict[str, Any]]:
    """{relative path: {bytes, mtime_ns, sha256}} of every regular file under `folder` that `keep(rel)` accepts.

    The record a `DONE` marker carries, so a reader can tell a finished artifact from a
    truncated or replaced one (`check_file_record`).
    """
    folder = Path(folder)
    record = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()):
        rel = path.relative_to(folder).as_posix()
        if keep(rel):
            stat = path.stat()
            record[rel] = {"bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": file_sha256(path)}
    return record


def check_file_record(folder: str | os.PathLike, record: dict[str, dict[str, Any]], *, full: bool = False,
                      marker: str = "DONE") -> str | None:
    """None when every file of `record` is intact under `folder`, else what is wrong, as a clause.

    The fast path (`full=False`) trusts a file whose size and mtime are those recorded: a
    truncated, rewritten or replaced file changes at least one of them, and hashing every
    multi-GB checkpoint on every rerun of a large sweep would take minutes. A file whose
    mtime moved (copied without `-p`, touched) is hashed, and kept if its content matches;
    `full=True` hashes every file.
    """
    folder = Path(folder)
    for rel, want in record.items():
        path = folder / rel
        try:
            stat = path.stat()
        except OSError:
            return f"{rel} is missing ({marker} recorded {want.get('bytes')} bytes)"
        if stat.st_size != want.get("bytes"):
            return f"{rel} is {stat.st_size} bytes, {marker} recorded {want.get('bytes')}"
        if (full or stat.st_mtime_ns != want.get("mtime_ns")) and file_sha256(path) != want.get("sha256"):
            return f"the sha256 of {rel} differs from the one {marker} recorded"
    return None


def clip_file_name(clip_id: str) -> str:
    """File stem for a clip id: `:` (and `/`) become `_` (docs/results-store.md)."""
    return clip_id.replace(":", "_").replace("/", "_")


# ----------------------------------------------------------------------------- writer


class SweepStore:
    """Writer for one sweep folder `root/sweep/`. All methods are atomic; see module docstring."""

    def __init__(self, root: str | os.PathLike, sweep: str) -> None:
        self.check_location(root, sweep)
        self.root = Path(root)
        self.sweep = sweep
        self.path = self.root / sweep
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # the results root is a file, read-only, or on a full disk
            raise StoreError(f"Cannot create the sweep folder {self.path} ({exc.strerror or type(exc).__name__}); "
                             f"give a results root that is a writable folder.") from None

    @staticmethod
    def check_location(root: str | os.PathLike, sweep: str) -> None:
        """StoreError (one sentence) for a sweep name that is no folder name, or a results root that is a
        file; writes nothing, so a caller can check before any expensive work."""
        if not sweep or "/" in sweep or sweep.startswith((".", "_")):
            raise StoreError(f"Sweep name '{sweep}' is not usable as a folder name; use letters, digits, '-' or '_'.")
        for folder in (Path(root), *Path(root).parents):
            if folder.exists() and not folder.is_dir():
                raise StoreError(f"The results root {root} is not a folder ({folder} is a file); "
                                 f"give a results root that is a writable folder.")

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive lock on `<sweep>/.lock` for read-modify-write sequences."""
        with open(self.path / ".lock", "a+") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    @contextlib.contextmanager
    def run_lock(self) -> Iterator[None]:
        """Held for a whole sweep run: one runner per results folder and sweep name.

        A second runner gets `SweepBusyError` at once, naming the holder (pid, host, since
        when) written into `<sweep>/.run.lock`. The kernel drops a `flock` when its process
        dies, so a killed runner never leaves a stale lock.
        """
        path = self.path / ".run.lock"
        with open(path, "a+") as fh:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.seek(0)
                try:
                    holder = json.loads(fh.read() or "{}")
                except ValueError:
                    holder = {}
                who = (f"pid {holder['pid']} on {holder.get('host', '?')} since {holder.get('since', '?')}"
                       if "pid" in holder else "another process")
                raise SweepBusyError(f"Sweep '{self.sweep}' in {self.root} is being run by {who}; wait for it to "
                                     f"finish, or run yours under another name with --name NEW.") from None
            fh.seek(0)
            fh.truncate()
            fh.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}) + "\n")
            fh.flush()
            try:
                yield
            finally:
                fh.seek(0)
                fh.truncate()  # the next runner's message must not name a process that is gone
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    # -- sweep level

    def write_sweep_json(self, obj: dict) -> Path:
        """Write `sweep.json` (the expanded recipe, axes, metric specs, provenance)."""
        if "axes" in obj and not isinstance(obj["axes"], dict):
            raise StoreError("sweep.json 'axes' must be a dict of axis name -> list of levels.")
        return atomic_write_json(self.path / "sweep.json", obj)

    def update_sweep_json(self, **fields: Any) -> dict:
        """Merge `fields` into sweep.json (e.g. `status="done"`) under the lock; returns the new dict."""
        with self.lock():
            current = _read_json(self.path / "sweep.json") if (self.path / "sweep.json").exists() else {}
            current.update(fields)
            self.write_sweep_json(current)
        return current

    def upsert_run(self, row: dict) -> pd.DataFrame:
        """Insert or replace (by `run_id`) one row of runs.parquet; returns the new table.

        New columns (a headline metric that appears once a run finishes) are added; other
        rows get null there. Keys missing from `row` keep the previous row's values, so a
        status update can be `upsert_run({"run_id": r, "status": "done", "psnr": 31.2})`.
        """
        if "run_id" not in row or not row["run_id"]:
            raise StoreError("upsert_run needs a row with a non-empty 'run_id'.")
        status = row.get("status")
        if status is not None and status not in RUN_STATUSES:
            raise StoreError(f"Run status '{status}' is not one of {', '.join(RUN_STATUSES)}.")
        path = self.path / "runs.parquet"
        with self.lock():
            records = _read_parquet(path).to_dict("records") if path.exists() else []
            for i, existing in enumerate(records):
                if existing.get("run_id") == row["run_id"]:
                    records[i] = {**existing, **row}
                    break
            else:
                records.append({"status": "pending", **row})
            runs = pd.DataFrame.from_records(records)
            runs = _order_run_columns(runs)
            atomic_write_parquet(path, runs)
        return runs

    def append_metrics(self, rows: list[dict]) -> pd.DataFrame:
        """Append long-format metric rows; a row with the same run_id+split+clip_id+metric replaces the old one.

        Each row needs run_id, seed, split, clip_id, metric, value (metric_version defaults
        to "1"; source_id, where absent or null, is derived from clip_id by
        `clips.ids.source_of_clip_id`). Returns the full new table.
        """
        if not rows:
            return read_metrics(self.root, self.sweep)
        new = pd.DataFrame(rows)
        missing = [c for c in METRIC_COLUMNS if c not in new.columns and c not in _METRIC_DEFAULTED]
        if missing:
            raise StoreError(f"append_metrics rows lack column(s) {', '.join(missing)}; see docs/results-store.md.")
        new = _normalise_metrics(_fill_metric_defaults(new)[list(METRIC_COLUMNS)])
        # the last of several identical keys within one call wins, like sequential appends
        new = new.drop_duplicates(list(METRIC_KEY), keep="last")
        path = self.path / "metrics.parquet"
        with self.lock():
            if path.exists():
                old = _normalise_metrics(_fill_metric_defaults(_read_parquet(path)))
                keys_new = pd.MultiIndex.from_frame(new[list(METRIC_KEY)])
                keep = ~pd.MultiIndex.from_frame(old[list(METRIC_KEY)]).isin(keys_new)
                table = pd.concat([old[keep], new], ignore_index=True)
            else:
                table = new.reset_index(drop=True)
            atomic_write_parquet(path, table)
        return table

    # -- run level

    def run_dir(self, run_id: str) -> Path:
        """`<sweep>/runs/<run_id>/`, created if needed."""
        if not run_id or "/" in run_id or run_id.startswith("."):
            raise StoreError(f"Run id '{run_id}' is not usable as a folder name.")
        path = self.path / "runs" / run_id
        path.mkdir(parents=True, exist_ok=True)
        return path

    def write_run_json(self, run_id: str, name: str, obj: dict) -> Path:
        """Write `config.json`, `manifest.json` or `stages.json` of a run."""
        if name not in RUN_JSON_FILES:
            raise StoreError(f"Run JSON file must be one of {', '.join(RUN_JSON_FILES)}, not '{name}'.")
        return atomic_write_json(self.run_dir(run_id) / name, obj)

    def write_curve(self, run_id: str, df: pd.DataFrame) -> Path:
        """Write the run's loss curves (columns stage, step, name, value), replacing the old file."""
        missing = [c for c in CURVE_COLUMNS if c not in df.columns]
        if missing:
            raise StoreError(f"Curve frame lacks column(s) {', '.join(missing)}; need stage, step, name, value.")
        curve = df[list(CURVE_COLUMNS)].astype({"stage": str, "step": "int64", "name": str, "value": "float64"})
        return atomic_write_parquet(self.run_dir(run_id) / "curve.parquet", curve)

    def sample_dir(self, run_id: str) -> Path:
        """`runs/<run_id>/samples/`, created if needed; write mp4/png files here, then `add_sample`."""
        path = self.run_dir(run_id) / "samples"
        path.mkdir(exist_ok=True)
        return path

    def add_sample(self, run_id: str, index_row: dict) -> Path:
        """Append one object to `samples/index.jsonl` (rewritten atomically; same `file` replaces)."""
        if "file" not in index_row or "task" not in index_row:
            raise StoreError("A sample index row needs at least 'file' and 'task'; see docs/results-store.md.")
        if index_row["task"] not in SAMPLE_TASKS:
            raise StoreError(f"Sample task '{index_row['task']}' is not one of {', '.join(SAMPLE_TASKS)}.")
        path = self.sample_dir(run_id) / "index.jsonl"
        with self.lock():
            rows = [r for r in _read_jsonl(path) if r.get("file") != index_row["file"]] if path.exists() else []
            rows.append(index_row)
            text = "".join(json.dumps(_json_safe(r)) + "\n" for r in rows)
            atomic_write_bytes(path, text.encode())
        return path

    def reference_path(self, clip_id: str) -> Path:
        """Where the held-out reference mp4 of `clip_id` goes (`reference/<clip_id with : -> _>.mp4`)."""
        path = self.path / "reference"
        path.mkdir(exist_ok=True)
        return path / f"{clip_file_name(clip_id)}.mp4"


def _order_run_columns(runs: pd.DataFrame) -> pd.DataFrame:
    base = [c for c in RUN_BASE_COLUMNS if c in runs.columns]
    replication = [c for c in RUN_REPLICATION_COLUMNS if c in runs.columns]
    if "seed" in base:
        at = base.index("seed") + 1
        base = base[:at] + replication + base[at:]
    else:
        base += replication
    cost = [c for c in COST_COLUMNS if c in runs.columns]
    rest = [c for c in runs.columns if c not in base and c not in cost]
    return runs[base + rest + cost]


# columns a metrics row (or an older metrics.parquet) may lack; _fill_metric_defaults supplies them
_METRIC_DEFAULTED = ("source_id", "metric_version", "producer")


def _fill_metric_defaults(df: pd.DataFrame) -> pd.DataFrame:
    """metric_version "1", producer "" (unknown) and source_id from clip_id where a frame lacks them (older stores)."""
    df = df.copy()
    if "metric_version" not in df.columns:
        df["metric_version"] = "1"
    df["producer"] = df["producer"].fillna("") if "producer" in df.columns else ""
    derived = df["clip_id"].astype(str).map(source_of_clip_id)
    df["source_id"] = derived if "source_id" not in df.columns else df["source_id"].where(df["source_id"].notna(), derived)
    return df


def _normalise_metrics(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    for col in ("run_id", "split", "clip_id", "source_id", "metric", "metric_version", "producer"):
        df[col] = df[col].astype(str)
    df["seed"] = pd.to_numeric(df["seed"]).astype("int64")
    df["value"] = pd.to_numeric(df["value"], errors="coerce").astype("float64")
    return df


# ----------------------------------------------------------------------------- reader


@dataclass(frozen=True)
class SweepData:
    """Everything the dashboard needs about one sweep, read in one go."""

    name: str  # sweep folder name
    path: Path  # RESULTS/<sweep>
    sweep: dict  # sweep.json ({} if not written yet)
    runs: pd.DataFrame  # runs.parquet (empty with base columns if absent)
    metrics: pd.DataFrame  # metrics.parquet (empty with METRIC_COLUMNS if absent)
    axes: list[str]  # axis names in sweep.json order ("seed" excluded: it is a unit, not a factor)
    axis_levels: dict[str, list]  # axis -> levels in recipe order
    headline_metrics: list[str]  # from sweep.json, else the first few metric names
    metric_specs: dict[str, dict] = field(default_factory=dict)  # metric -> {"higher_is_better", "version"}
    notes: list[str] = field(default_factory=list)  # one-sentence remarks (in flight, missing files)

    def higher_is_better(self, metric: str) -> bool:
        """From sweep.json's metric specs; unknown metrics default to higher-is-better."""
        return bool(self.metric_specs.get(metric, {}).get("higher_is_better", True))


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StoreError(f"{path} is unreadable or not valid JSON ({type(exc).__name__}); rewrite or delete it.") from None


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    try:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if line.strip():
                rows.append(json.loads(line))
    except json.JSONDecodeError:
        raise StoreError(f"{path} line {number} is not valid JSON; fix or delete that line.") from None
    except OSError as exc:
        raise StoreError(f"{path} is unreadable ({exc.strerror}).") from None
    return rows


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        return pq.read_table(path).to_pandas()
    except (OSError, pa.ArrowException, ValueError) as exc:
        raise StoreError(f"{path} is not a readable parquet file ({_short_reason(exc, path)}); rerun the stage that writes it or delete it.") from None


def _short_reason(exc: Exception, path: Path) -> str:
    """pyarrow's first sentence, without the path (already in our message), at most ~90 characters."""
    text = str(exc).replace(f"'{path}'", "").replace(str(path), "").replace("Could not open Parquet input source : ", "")
    sentence = text.strip().split(". ")[0].splitlines()[0].strip().rstrip(".") if text.strip() else type(exc).__name__
    return sentence if len(sentence) <= 90 else sentence[:87].rsplit(" ", 1)[0] + "..."


def sweep_names(root: str | os.PathLike) -> list[str]:
    """Folders under `root` that look like sweeps (have sweep.json or runs.parquet), sorted."""
    root = Path(root)
    if not root.is_dir():
        return []
    names = []
    for child in sorted(root.iterdir()):
        if child.is_dir() and not child.name.startswith((".", "_")):
            if (child / "sweep.json").exists() or (child / "runs.parquet").exists():
                names.append(child.name)
    return names


def sweep_mtimes(root: str | os.PathLike, sweep: str) -> tuple[float, ...]:
    """Modification times of sweep.json, runs.parquet, metrics.parquet (0 if absent): a cache key."""
    path = Path(root) / sweep
    out = []
    for name in ("sweep.json", "runs.parquet", "metrics.parquet"):
        with contextlib.suppress(OSError):
            out.append((path / name).stat().st_mtime_ns / 1e9)
            continue
        out.append(0.0)
    return tuple(out)


def read_runs(root: str | os.PathLike, sweep: str) -> pd.DataFrame:
    """runs.parquet of a sweep; empty (base columns) if not written yet; StoreError if corrupt.

    `block` is back-filled from `seed` where it is absent (stores written before it existed).
    """
    path = Path(root) / sweep / "runs.parquet"
    if not path.exists():
        return pd.DataFrame(columns=[*RUN_BASE_COLUMNS, "block"])
    runs = _read_parquet(path)
    if "run_id" not in runs.columns:
        raise StoreError(f"{path} has no 'run_id' column; it was not written by the results store.")
    for col in RUN_BASE_COLUMNS:
        if col not in runs.columns:
            runs[col] = None
    runs["status"] = runs["status"].fillna("pending").astype(str)
    # a run without a block (stores before it existed, manual upserts) is its own seed's block
    runs["block"] = runs["seed"] if "block" not in runs.columns else runs["block"].fillna(runs["seed"])
    if runs["block"].notna().all() and len(runs):
        runs["block"] = pd.to_numeric(runs["block"]).astype("int64")
    return runs


def read_metrics(root: str | os.PathLike, sweep: str) -> pd.DataFrame:
    """metrics.parquet of a sweep; empty if not written yet; StoreError if corrupt.

    Stores written before `source_id` existed get it back-filled from `clip_id`.
    """
    path = Path(root) / sweep / "metrics.parquet"
    if not path.exists():
        return pd.DataFrame({c: pd.Series(dtype="float64" if c == "value" else "int64" if c == "seed" else str) for c in METRIC_COLUMNS})
    metrics = _read_parquet(path)
    missing = [c for c in METRIC_COLUMNS if c not in metrics.columns and c not in _METRIC_DEFAULTED]
    if missing:
        raise StoreError(f"{path} lacks column(s) {', '.join(missing)}; it was not written by the results store.")
    if all(c in metrics.columns for c in _METRIC_DEFAULTED) and metrics["source_id"].notna().all():
        return metrics
    metrics = _fill_metric_defaults(metrics)  # a store written before source_id (or producer) was a column
    return metrics[list(METRIC_COLUMNS) + [c for c in metrics.columns if c not in METRIC_COLUMNS]]


def read_sweep_json(root: str | os.PathLike, sweep: str) -> dict:
    """sweep.json of a sweep ({} if not written yet); StoreError if unreadable."""
    path = Path(root) / sweep / "sweep.json"
    return _read_json(path) if path.exists() else {}


def list_sweeps(root: str | os.PathLike) -> pd.DataFrame:
    """One row per sweep under `root`, newest first.

    Columns: sweep, status, runs, pending, running, done, failed, started_at, git_commit,
    dirty, recipe, error (one sentence when a file of that sweep is unreadable, else None).
    A corrupt sweep still gets a row, so one bad folder does not hide the others.
    """
    rows = []
    for name in sweep_names(root):
        row: dict[str, Any] = {"sweep": name, "error": None}
        meta, runs = {}, pd.DataFrame(columns=["status"])
        try:
            meta = read_sweep_json(root, name)
            runs = read_runs(root, name)
        except StoreError as exc:
            row["error"] = str(exc)
        counts = runs["status"].value_counts()
        row.update({s: int(counts.get(s, 0)) for s in RUN_STATUSES})
        row["runs"] = len(runs)
        row["status"] = meta.get("status") or _infer_status(row)
        row["started_at"] = meta.get("started_at")
        row["git_commit"] = meta.get("git_commit")
        row["dirty"] = meta.get("dirty")
        row["recipe"] = meta.get("recipe")
        rows.append(row)
    columns = ["sweep", "status", "runs", *RUN_STATUSES, "started_at", "git_commit", "dirty", "recipe", "error"]
    table = pd.DataFrame(rows, columns=columns)
    if len(table):
        table = table.sort_values(["started_at", "sweep"], ascending=False, na_position="last").reset_index(drop=True)
    return table


def _infer_status(counts: dict) -> str:
    if counts["runs"] == 0:
        return "empty"
    if counts["pending"] or counts["running"]:
        return "running"
    return "done"


def load_sweep(root: str | os.PathLike, sweep: str) -> SweepData:
    """Read sweep.json, runs.parquet and metrics.parquet of one sweep.

    Raises:
        StoreError: the sweep folder does not exist, or one of its files is corrupt (the
            message names the file).
    """
    path = Path(root) / sweep
    if not path.is_dir():
        known = sweep_names(root)
        hint = f"; sweeps there: {', '.join(known)}" if known else ""
        raise StoreError(f"No sweep '{sweep}' under {root}{hint}.")
    meta = read_sweep_json(root, sweep)
    runs = read_runs(root, sweep)
    metrics = read_metrics(root, sweep)
    axes_spec = meta.get("axes") or {}
    axes = [a for a in axes_spec if a != "seed" and a in runs.columns]
    axes += [a for a in axes_spec if a != "seed" and a not in runs.columns and len(runs) == 0]
    levels = {a: list(axes_spec[a]) for a in axes}
    metric_names = sorted(metrics["metric"].unique()) if len(metrics) else []
    headline = list(meta.get("headline_metrics") or metric_names[:3])
    notes = []
    if not meta:
        notes.append(f"{path / 'sweep.json'} is not written yet; axes and metric directions are unknown.")
    in_flight = int(runs["status"].isin(["pending", "running"]).sum())
    if in_flight:
        notes.append(f"{in_flight} of {len(runs)} runs are still pending or running; their metrics appear when they finish.")
    return SweepData(
        name=sweep,
        path=path,
        sweep=meta,
        runs=runs,
        metrics=metrics,
        axes=axes,
        axis_levels=levels,
        headline_metrics=headline,
        metric_specs=dict(meta.get("metrics") or {}),
        notes=notes,
    )


def run_samples(root: str | os.PathLike, sweep: str, run_id: str) -> list[dict]:
    """Rows of `runs/<run_id>/samples/index.jsonl`, each with `path` (absolute mp4 path) added.

    Recon samples also get `reference` (path of the held-out reference mp4, or None if
    absent). Returns [] when the run has no samples yet.
    """
    sample_dir = Path(root) / sweep / "runs" / run_id / "samples"
    index = sample_dir / "index.jsonl"
    if not index.exists():
        return []
    out = []
    for row in _read_jsonl(index):
        row = dict(row)
        row["path"] = str(sample_dir / row["file"])
        if row.get("image"):
            row["image_path"] = str(sample_dir / row["image"])
        if row.get("clip_id"):
            ref = Path(root) / sweep / "reference" / f"{clip_file_name(row['clip_id'])}.mp4"
            row["reference"] = str(ref) if ref.exists() else None
        out.append(row)
    return out


def run_curve(root: str | os.PathLike, sweep: str, run_id: str) -> pd.DataFrame:
    """`runs/<run_id>/curve.parquet` (stage, step, name, value); empty if absent; StoreError if corrupt."""
    path = Path(root) / sweep / "runs" / run_id / "curve.parquet"
    if not path.exists():
        return pd.DataFrame({"stage": pd.Series(dtype=str), "step": pd.Series(dtype="int64"), "name": pd.Series(dtype=str), "value": pd.Series(dtype="float64")})
    return _read_parquet(path)


def run_json(root: str | os.PathLike, sweep: str, run_id: str, name: str) -> dict:
    """`config.json` or `manifest.json` of a run ({} if absent)."""
    if name not in RUN_JSON_FILES:
        raise StoreError(f"Run JSON file must be one of {', '.join(RUN_JSON_FILES)}, not '{name}'.")
    path = Path(root) / sweep / "runs" / run_id / name
    return _read_json(path) if path.exists() else {}
