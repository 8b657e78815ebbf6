"""Export a sweep's runs from the results store to experiment trackers, offline.

`ltxlab export SWEEP --to tensorboard|mlflow|wandb` turns every run of `RESULTS/<sweep>/`
(docs/results-store.md) into one tracker run: its config (config.json, flattened to dotted
keys), its provenance (run row and manifest.json: commit, versions, hardware, stage keys,
every `*sha256` of a weight file) as tags, its training curves (curve.parquet) as
step-indexed scalars named `<stage>/<name>`, its final metrics (metrics.parquet, aggregated
per split and metric: `metrics/<split>/<metric>.mean|.std|.n`; cost and wall time from
runs.parquet) and its sample videos. Nothing reaches a network:

- TensorBoard: event files under `OUT/tensorboard/<sweep>/<run_id>/` (torch's SummaryWriter).
  The config goes to the HParams plugin and, with the tags, to text; TensorBoard cannot play
  mp4, so each sample gets its store path as text and a few decoded frames as images.
- MLflow: a file store `OUT/mlruns`, experiment `<sweep>`; samples, config.json and
  manifest.json as artifacts. MLflow 3 keeps the file store in maintenance mode behind
  `MLFLOW_ALLOW_FILE_STORE=true`, which the export sets for itself (as must `mlflow ui`).
- W&B: offline run folders `OUT/wandb/offline-run-*-<run_id>/` (wandb.init(mode="offline")),
  project `<sweep>`, group = variant; `wandb sync` uploads them later if wanted.

Exporting again replaces a run's earlier export in the same OUT, so a sweep can be exported
while it runs and again when it is done. The tracker packages are the optional `export`
extra, imported only here, inside the writer that needs them.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ablations.store import SweepData, load_sweep, run_curve, run_json, run_samples

TRACKERS = ("tensorboard", "mlflow", "wandb")
# tracker -> (module to import, PyPI package that provides it)
TRACKER_PACKAGES = {"tensorboard": ("tensorboard", "tensorboard"), "mlflow": ("mlflow", "mlflow-skinny"),
                    "wandb": ("wandb", "wandb")}
SAMPLE_FRAMES = 4  # frames per sample video shown as images in TensorBoard (first, last, evenly between)
# runs.parquet columns that become tags (axis columns are added per sweep); numeric ones become scalars
RUN_TAG_COLUMNS = ("variant", "seed", "block", "replicate", "status", "failure_reason", "started_at", "finished_at")
RUN_SCALAR_COLUMNS = {"wall_time_s": "run/wall_time_s", "restarts": "run/restarts"}
MLFLOW_STATUS = {"done": "FINISHED", "failed": "FAILED", "running": "RUNNING", "pending": "SCHEDULED"}


class ExportError(Exception):
    """Bad export input (sweep, run ids, out folder, missing tracker package); one sentence."""


@dataclass(frozen=True, kw_only=True)
class RunExport:
    """One run of the store, as every tracker receives it."""

    sweep: str  # sweep name: the TensorBoard folder, MLflow experiment and W&B project
    run_id: str  # the store's run id: the tracker run's name/id and the tag ltxlab.run_id
    variant: str  # axis levels as text: the W&B group
    status: str  # pending | running | done | failed
    config: dict[str, Any]  # config.json flattened to dotted keys, leaves as stored (lists kept)
    tags: dict[str, str]  # ltxlab.* (run row) and provenance.* (manifest.json), all text
    curves: pd.DataFrame  # curve.parquet: stage, step, name, value
    final: dict[str, float]  # metrics/<split>/<metric>.mean|.std|.n, cost/<name>, run/wall_time_s
    samples: list[dict]  # samples/index.jsonl rows with `path`, only those whose file exists
    files: list[Path]  # config.json and manifest.json where present (MLflow artifacts)

    @property
    def curve_tags(self) -> list[str]:
        """Scalar names of the training curves, `<stage>/<name>`, in first-seen order."""
        return list(dict.fromkeys(self.curves["stage"] + "/" + self.curves["name"]))


@dataclass(frozen=True, kw_only=True)
class ExportResult:
    """What an export wrote: where, how many runs, how to open it, and what it skipped."""

    tracker: str  # tensorboard | mlflow | wandb
    path: Path  # the folder a viewer opens (logdir, file store, wandb dir)
    runs: list[str]  # run ids exported, in store order
    view: str  # a command that opens the export
    notes: list[str]  # one sentence per sample that could not be exported


# ----------------------------------------------------------------------------- reading the store


def flatten_tree(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted key -> leaf for a nested dict; lists and scalars are leaves, empty dicts vanish."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        flat |= flatten_tree(value, f"{prefix}.{key}" if prefix else str(key))
    return flat


def as_text(value: Any) -> str:
    """A config leaf or tag as text: strings as they are, everything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value, default=str)


def select_runs(data: SweepData, run_ids: list[str] | None) -> pd.DataFrame:
    """The rows of runs.parquet to export: all, or the named ones (an unknown id is an ExportError)."""
    runs = data.runs
    if not len(runs):
        raise ExportError(f"Sweep '{data.name}' has no runs yet; export it once `ltxlab sweep` has started runs.")
    if not run_ids:
        return runs
    unknown = [r for r in run_ids if r not in set(runs["run_id"])]
    if unknown:
        known = ", ".join(runs["run_id"].head(5))
        which = f"Run {unknown[0]} is" if len(unknown) == 1 else f"Runs {', '.join(unknown)} are"
        raise ExportError(f"{which} not in sweep '{data.name}' (its runs: {known}"
                          f"{', ...' if len(runs) > 5 else ''}); pick ids from `ltxlab results {data.name}`.")
    return runs[runs["run_id"].isin(run_ids)]


def final_metrics(metrics: pd.DataFrame) -> dict[str, float]:
    """Per (split, metric): mean, sample std (n > 1) and n of the finite values, keyed metrics/<split>/<metric>.*."""
    final: dict[str, float] = {}
    finite = metrics[np.isfinite(metrics["value"].astype("float64"))]
    for (split, metric), values in finite.groupby(["split", "metric"], sort=True)["value"]:
        key = f"metrics/{split}/{metric}"
        final[f"{key}.mean"] = float(values.mean())
        final[f"{key}.n"] = float(len(values))
        if len(values) > 1:
            final[f"{key}.std"] = float(values.std(ddof=1))
    return final


def _run_tags(data: SweepData, row: dict, manifest: dict) -> dict[str, str]:
    """ltxlab.* from the run row and axes; provenance.* from manifest.json, else sweep.json."""
    tags = {"ltxlab.sweep": data.name, "ltxlab.run_id": row["run_id"], "ltxlab.recipe": data.sweep.get("recipe")}
    tags |= {f"ltxlab.{c}": row.get(c) for c in RUN_TAG_COLUMNS}
    tags |= {f"ltxlab.axis.{a}": row.get(a) for a in data.axes}
    sweep_provenance = {k: data.sweep.get(k) for k in ("git_commit", "dirty", "versions", "hardware")}
    evaluation = flatten_tree(manifest.get("evaluation") or {})
    provenance = flatten_tree({**sweep_provenance, **{k: v for k, v in manifest.items() if k != "evaluation"}})
    # of the evaluation protocol, only the weight hashes are provenance; the rest is in manifest.json
    provenance |= {f"evaluation.{k}": v for k, v in evaluation.items() if k.endswith("sha256")}
    tags |= {f"provenance.{k}": v for k, v in provenance.items() if f"ltxlab.{k}" not in tags}  # not twice
    return {k: as_text(v) for k, v in tags.items() if not _missing(v)}


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA


def _run_scalars(row: dict) -> dict[str, float]:
    """Cost columns (cost/<name>) and wall time / restarts of a runs.parquet row, where set."""
    named = {c: f"cost/{c.removeprefix('cost.')}" for c in row if c.startswith("cost.")} | RUN_SCALAR_COLUMNS
    return {name: float(row[c]) for c, name in named.items() if c in row and not _missing(row[c])}


def collect_runs(results: str | os.PathLike, sweep: str, run_ids: list[str] | None = None) -> tuple[list[RunExport], list[str]]:
    """Read the selected runs of a sweep into RunExports; returns them and notes on missing sample files."""
    data = load_sweep(results, sweep)
    runs = select_runs(data, run_ids)
    exports, notes = [], []
    for row in runs.astype(object).to_dict("records"):
        run_id = row["run_id"]
        run_dir = Path(results) / sweep / "runs" / run_id
        manifest = run_json(results, sweep, run_id, "manifest.json")
        samples = []
        for sample in run_samples(results, sweep, run_id):
            if Path(sample["path"]).is_file():
                samples.append(sample)
            else:
                notes.append(f"Run {run_id}: sample {sample['file']} is listed in samples/index.jsonl but missing; not exported.")
        exports.append(RunExport(
            sweep=sweep, run_id=run_id, variant=str(row.get("variant") or run_id), status=str(row["status"]),
            config=flatten_tree(run_json(results, sweep, run_id, "config.json")), tags=_run_tags(data, row, manifest),
            curves=run_curve(results, sweep, run_id).sort_values(["stage", "name", "step"], kind="stable"),
            final=final_metrics(data.metrics[data.metrics["run_id"] == run_id]) | _run_scalars(row),
            samples=samples, files=[run_dir / n for n in ("config.json", "manifest.json") if (run_dir / n).is_file()],
        ))  # fmt: skip
    return exports, notes


# ----------------------------------------------------------------------------- checks before any work


def check_out_dir(out: str | os.PathLike) -> Path:
    """Create `out` and prove it takes a file; ExportError (one sentence) if it cannot."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".ltxlab-probe-"):
            pass
    except OSError as exc:
        raise ExportError(f"Cannot write to {out} ({exc.strerror or type(exc).__name__}); "
                          "pass --out a folder you can write to.") from None
    return out


def require_tracker(tracker: str) -> None:
    """Find the tracker's package, or say which one to install (ExportError).

    Found, not imported: mlflow starts its usage telemetry on import, so the writer imports it
    only once its environment (telemetry off) is set.
    """
    if tracker not in TRACKER_PACKAGES:
        raise ExportError(f"Unknown tracker '{tracker}'; use one of {', '.join(TRACKERS)}.")
    module, package = TRACKER_PACKAGES[tracker]
    if importlib.util.find_spec(module) is None:
        raise ExportError(f"`--to {tracker}` needs the {package} package: pip install 'ltxlab[export]'.")


def export_sweep(results: str | os.PathLike, sweep: str, tracker: str, out: str | os.PathLike,
                 run_ids: list[str] | None = None) -> ExportResult:
    """Export the selected runs of `sweep` to `tracker` under `out`; every input is checked before any write."""
    require_tracker(tracker)
    runs, notes = collect_runs(results, sweep, run_ids)
    out = check_out_dir(out)
    writer = {"tensorboard": write_tensorboard, "mlflow": write_mlflow, "wandb": write_wandb}[tracker]
    path, view, more_notes = writer(runs, out)
    return ExportResult(tracker=tracker, path=path, runs=[r.run_id for r in runs], view=view, notes=notes + more_notes)


# ----------------------------------------------------------------------------- TensorBoard


def sample_stem(sample: dict) -> str:
    """A sample's name in the trackers: its file name without .mp4."""
    return Path(sample["file"]).stem


def sample_text(sample: dict) -> str:
    """One markdown line about a sample: task, prompt id, prompt text, clip, store path."""
    parts = [f"task `{sample.get('task')}`", f"prompt `{sample.get('prompt_id')}`"]
    parts += [f"text: {sample['text']}"] if sample.get("text") else []
    parts += [f"clip `{sample['clip_id']}`"] if sample.get("clip_id") else []
    return "; ".join(parts) + f"; file: `{sample['path']}`"


def sample_frame_indices(count: int, wanted: int = SAMPLE_FRAMES) -> list[int]:
    """Up to `wanted` frame indices spread evenly over `count` frames, first and last included."""
    return sorted({int(round(i)) for i in np.linspace(0, count - 1, min(wanted, count))})


def write_tensorboard(runs: list[RunExport], out: Path) -> tuple[Path, str, list[str]]:
    """One event-file folder per run under OUT/tensorboard/<sweep>/<run_id>, replaced as a whole."""
    root = out / "tensorboard" / runs[0].sweep
    root.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    for run in runs:
        with _replaced_dir(root / run.run_id) as folder:
            notes += _write_tensorboard_run(run, folder)
    return root, f"tensorboard --logdir {out / 'tensorboard'}", notes


def _write_tensorboard_run(run: RunExport, folder: Path) -> list[str]:
    from torch.utils.tensorboard import SummaryWriter
    from torch.utils.tensorboard.summary import hparams

    from clips.errors import ClipError
    from clips.io import read_video

    notes = []
    writer = SummaryWriter(log_dir=str(folder))
    try:
        # numbers stay numbers (HParams can sort and filter them); the rest as text, booleans too: torch's
        # hparams() would turn them into 0.0 / 1.0
        hparam_values = {k: v if _is_number(v) else as_text(v) for k, v in run.config.items()}
        for summary in hparams(hparam_values, dict.fromkeys(run.final, 0.0)):  # experiment, session start, session end
            writer.file_writer.add_summary(summary)
        writer.add_text("run/config", _json_block(run.config))
        writer.add_text("run/tags", _json_block(run.tags))
        for row in run.curves.itertuples(index=False):
            writer.add_scalar(f"{row.stage}/{row.name}", float(row.value), int(row.step))
        for name, value in run.final.items():
            writer.add_scalar(name, value, 0)
        for sample in run.samples:
            writer.add_text(f"samples/{sample_stem(sample)}", sample_text(sample))
            try:
                frames, _ = read_video(sample["path"])  # (T, H, W, 3) uint8
            except ClipError as exc:
                notes.append(f"Run {run.run_id}: {exc}")
                continue
            for index in sample_frame_indices(len(frames)):
                writer.add_image(f"samples/{sample_stem(sample)}", frames[index], index, dataformats="HWC")
    finally:
        writer.close()
    return notes


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _json_block(tree: dict) -> str:
    """Markdown code block of indented JSON: TensorBoard's text tab renders markdown."""
    return "```json\n" + json.dumps(tree, indent=2, default=str) + "\n```"


@contextlib.contextmanager
def _replaced_dir(final: Path) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success it takes `final`'s place (the old one is removed)."""
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ----------------------------------------------------------------------------- MLflow


@contextlib.contextmanager
def _env(**values: str) -> Iterator[None]:
    """Set environment variables for the duration of the block, then restore the old ones."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def mlflow_uri(out: Path) -> str:
    """The file-store tracking URI of an export folder."""
    return f"file:{(out / 'mlruns').resolve()}"


def write_mlflow(runs: list[RunExport], out: Path) -> tuple[Path, str, list[str]]:
    """One MLflow run per store run in experiment <sweep> of the file store OUT/mlruns."""
    offline = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}  # mlflow 3 reports usage unless told not to
    with _env(MLFLOW_ALLOW_FILE_STORE="true", MLFLOW_TRACKING_URI=mlflow_uri(out), **offline):
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=mlflow_uri(out))
        experiment = client.get_experiment_by_name(runs[0].sweep)
        experiment_id = experiment.experiment_id if experiment else client.create_experiment(runs[0].sweep)
        if experiment and experiment.lifecycle_stage == "deleted":  # deleted in the UI: runs cannot be added to it
            client.restore_experiment(experiment_id)
        for run in runs:
            _write_mlflow_run(client, experiment_id, run)
    view = f"MLFLOW_ALLOW_FILE_STORE=true mlflow ui --backend-store-uri {mlflow_uri(out)}"
    return out / "mlruns", view, []


def _millis(iso: str | None) -> int | None:
    if not iso:
        return None
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def _write_mlflow_run(client: Any, experiment_id: str, run: RunExport) -> None:
    from mlflow.entities import Metric, Param, RunTag

    for old in client.search_runs([experiment_id], filter_string=f"tags.`ltxlab.run_id` = '{run.run_id}'"):
        client.delete_run(old.info.run_id)  # a re-export replaces the earlier one
    started = _millis(run.tags.get("ltxlab.started_at"))
    created = client.create_run(experiment_id, start_time=started, run_name=run.run_id)
    run_id = created.info.run_id
    params = [Param(_mlflow_key(k), as_text(v)) for k, v in run.config.items()]
    tags = [RunTag(_mlflow_key(k), v) for k, v in run.tags.items()]
    metrics = [Metric(f"{r.stage}/{r.name}", float(r.value), 0, int(r.step)) for r in run.curves.itertuples(index=False)]
    metrics += [Metric(k, v, 0, 0) for k, v in run.final.items()]
    batches = max(-(-len(params) // 100), -(-len(tags) // 100), -(-len(metrics) // 1000), 1)
    for i in range(batches):  # MLflow's log_batch limits: 100 params, 100 tags, 1000 metrics
        client.log_batch(run_id, metrics=metrics[1000 * i : 1000 * (i + 1)], params=params[100 * i : 100 * (i + 1)],
                         tags=tags[100 * i : 100 * (i + 1)])
    for path in run.files:
        client.log_artifact(run_id, str(path), "run")
    for sample in run.samples:
        client.log_artifact(run_id, sample["path"], "samples")
    client.log_text(run_id, "".join(json.dumps({k: v for k, v in s.items() if k != "path"}) + "\n" for s in run.samples),
                    "samples/index.jsonl")
    status = MLFLOW_STATUS.get(run.status, "RUNNING")
    if status in ("FINISHED", "FAILED"):
        client.set_terminated(run_id, status, end_time=_millis(run.tags.get("ltxlab.finished_at")))
    elif status != "RUNNING":
        client.update_run(run_id, status=status)


def _mlflow_key(key: str) -> str:
    """MLflow keys allow letters, digits, _ - . / and space; anything else becomes _."""
    return "".join(c if c.isalnum() or c in "_-./ " else "_" for c in key)


# ----------------------------------------------------------------------------- Weights & Biases


def wandb_env(out: Path) -> dict[str, str]:
    """Environment of an offline W&B export: no login, no network, its state kept under OUT."""
    state = out / "wandb" / ".state"
    return {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_DIR": str(out), "WANDB_DISABLE_GIT": "true",
            "WANDB_ERROR_REPORTING": "false", "WANDB_CONSOLE": "off", "WANDB_DISABLE_CODE": "true",
            "WANDB_CONFIG_DIR": str(state / "config"), "WANDB_CACHE_DIR": str(state / "cache"),
            "WANDB_DATA_DIR": str(state / "data")}  # fmt: skip


def write_wandb(runs: list[RunExport], out: Path) -> tuple[Path, str, list[str]]:
    """One offline run folder per store run under OUT/wandb; an earlier export of the same run is removed."""
    with _env(**wandb_env(out)):
        import wandb

        for run in runs:
            _write_wandb_run(wandb, run, out)
    return out / "wandb", f"wandb sync {out / 'wandb'}/offline-run-*  (uploads; needs a login)", []


def _write_wandb_run(wandb: Any, run: RunExport, out: Path) -> None:
    settings = wandb.Settings(mode="offline", silent=True, console="off", save_code=False, disable_git=True,
                              x_disable_stats=True, x_disable_meta=True, x_disable_machine_info=True)
    tracker = wandb.init(dir=str(out), project=run.sweep, id=run.run_id, name=run.run_id, group=run.variant,
                         config={**run.config, **run.tags}, tags=[run.status], notes=run.tags.get("ltxlab.failure_reason"),
                         settings=settings, reinit="finish_previous")  # fmt: skip
    folder = Path(tracker.dir).parent
    try:
        for tag in run.curve_tags:  # each stage's curves count their own steps (two stages both start at 0)
            tracker.define_metric(tag, step_metric=f"{tag.split('/')[0]}/step")
        for (stage, step), rows in run.curves.groupby(["stage", "step"], sort=True):
            tracker.log({f"{stage}/step": int(step), **{f"{stage}/{r.name}": float(r.value) for r in rows.itertuples()}})
        for sample in run.samples:
            video = wandb.Video(sample["path"], caption=sample.get("text") or sample.get("clip_id"), format="mp4")
            tracker.log({f"samples/{sample_stem(sample)}": video})
        tracker.summary.update(run.final)
    finally:
        tracker.finish(exit_code=1 if run.status == "failed" else 0)
    same_run = re.compile(rf"offline-run-\d{{8}}_\d{{6}}-{re.escape(run.run_id)}")  # not a run whose id ends like it
    for old in (out / "wandb").glob("offline-run-*"):
        if old != folder and same_run.fullmatch(old.name):
            shutil.rmtree(old, ignore_errors=True)
