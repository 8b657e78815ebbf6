"""`ltxlab export`: a results store exported to TensorBoard, MLflow and W&B (offline), read back by each tracker's own reader.

The store is benchmarks/make_store.py's `small` sweep (16 runs: done, failed, running and
pending; curves of two stages; real H.264 samples) with one run given a nested config and a
full provenance manifest. Expected values come straight from the store's files (pandas over
the parquet files, json over config.json/manifest.json, PyAV over the mp4s), never from
ablations/export.py; the written files are read back with TensorBoard's EventAccumulator,
MLflow's MlflowClient over the file store and `wandb leet inspect` (wandb-core's reader of
the offline `.wandb` transaction log).
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ablations import cli
from ablations.store import SweepStore
from clips.io import read_video

REPO = Path(__file__).resolve().parents[1]
SWEEP = "synthetic"
RICH_CONFIG = {  # nested, with lists, a null and a tiny float: what a real RunConfig holds
    "seed": 0, "vae": {"kind": "ltx", "encoder_channels": [8, 16, 32], "encoder_strides": [[2, 2, 2], [1, 1, 1]],
                       "init": None, "logvar": "per_channel", "decoder_causal": False},
    "loss": {"kl": 1e-06, "dwt": 0.0, "dwt_bands": [1.0] * 8}, "vae_train": {"steps": 200, "lr": 0.0003},
}  # fmt: skip
DETECTOR_SHA = "5f2a" * 16
RICH_MANIFEST = {
    "run_id": "set below", "status": "done", "git_commit": "feedc0de" * 5, "dirty": True,
    "versions": {"python": "3.11.7", "torch": "2.13.0+cpu", "ltxlab": "0.1.0"},
    "hardware": {"host": "vm", "cpus": 2, "gpu": None},
    "stages": {"train_vae": {"key": "e7bf2522735e0af4", "attempts": 1}},
    "evaluation": {"not_applicable": {"lpips_vgg": "needs vgg16-397923af.pth"},
                   "set_metrics": {"rfvd": {"protocol": {"detector_sha256": DETECTOR_SHA, "clip_frames": 16}}}},
}  # fmt: skip


def _load_make_store():  # noqa: ANN202 - the module
    spec = importlib.util.spec_from_file_location("make_store", REPO / "benchmarks" / "make_store.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> dict:
    """The store, the ids of a done run (rich config and manifest), a failed and the running run."""
    root = tmp_path_factory.mktemp("results")
    _load_make_store().make_store(root, SWEEP, "small")
    runs = pd.read_parquet(root / SWEEP / "runs.parquet")
    done = runs.loc[runs["status"] == "done", "run_id"].iloc[0]
    writer = SweepStore(root, SWEEP)
    writer.write_run_json(done, "config.json", RICH_CONFIG)
    writer.write_run_json(done, "manifest.json", {**RICH_MANIFEST, "run_id": done})
    ids = {s: runs.loc[runs["status"] == s, "run_id"].iloc[0] for s in ("done", "failed", "running", "pending")}
    return {"root": root, "runs": runs, "ids": {**ids, "done": done}}


def _export(store: dict, tracker: str, out: Path, *runs: str) -> None:
    argv = ["export", SWEEP, "--to", tracker, "--results", str(store["root"]), "--out", str(out)]
    assert cli.main(argv + (["--runs", *runs] if runs else [])) == 0


# ----------------------------------------------------------------------------- expectations from the store


def _flat(tree: dict) -> dict:
    """Dotted keys over nested dicts (pandas' json_normalize), lists kept as leaves."""
    return pd.json_normalize(tree, sep=".").iloc[0].to_dict() if tree else {}


def _text(value) -> str:  # noqa: ANN001 - any JSON leaf
    return value if isinstance(value, str) else json.dumps(value)


def _config(store: dict, run_id: str) -> dict:
    return _flat(json.loads((store["root"] / SWEEP / "runs" / run_id / "config.json").read_text()))


def _curve(store: dict, run_id: str) -> dict[str, list[tuple[int, float]]]:
    """`<stage>/<name>` -> [(step, value)] in step order, from curve.parquet."""
    path = store["root"] / SWEEP / "runs" / run_id / "curve.parquet"
    if not path.exists():  # make_store's failed runs have none
        return {}
    curve = pd.read_parquet(path).sort_values("step")
    return {f"{s}/{n}": list(zip(g["step"].tolist(), g["value"].tolist())) for (s, n), g in curve.groupby(["stage", "name"])}


def _final(store: dict, run_id: str) -> dict[str, float]:
    """Mean, sample std and n per (split, metric) of metrics.parquet, plus the run row's cost and wall time."""
    metrics = pd.read_parquet(store["root"] / SWEEP / "metrics.parquet")
    final = {}
    for (split, metric), values in metrics[metrics["run_id"] == run_id].groupby(["split", "metric"])["value"]:
        final |= {f"metrics/{split}/{metric}.mean": values.mean(), f"metrics/{split}/{metric}.n": float(len(values))}
        final |= {f"metrics/{split}/{metric}.std": values.std()} if len(values) > 1 else {}
    row = store["runs"].set_index("run_id").loc[run_id]
    final |= {f"cost/{c[5:]}": float(row[c]) for c in row.index if c.startswith("cost.")}
    final |= {f"run/{c}": float(row[c]) for c in ("wall_time_s", "restarts") if c in row.index and pd.notna(row[c])}
    return final


def _samples(store: dict, run_id: str) -> list[dict]:
    folder = store["root"] / SWEEP / "runs" / run_id / "samples"
    rows = [json.loads(line) for line in (folder / "index.jsonl").read_text().splitlines()]
    return [{**r, "path": folder / r["file"]} for r in rows]


def _sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# ----------------------------------------------------------------------------- TensorBoard


def test_tensorboard_event_files_read_back(store, tmp_path):
    from PIL import Image
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2
    from tensorboard.util import tensor_util

    _export(store, "tensorboard", tmp_path, *store["ids"].values())
    logdir = tmp_path / "tensorboard" / SWEEP
    assert sorted(p.name for p in logdir.iterdir()) == sorted(store["ids"].values())
    run_id = store["ids"]["done"]
    events = EventAccumulator(str(logdir / run_id), size_guidance={"scalars": 0, "images": 0, "tensors": 0}).Reload()

    for tag, points in _curve(store, run_id).items():  # TensorBoard keeps scalars as float32
        assert [(e.step, e.value) for e in events.Scalars(tag)] == [(s, float(np.float32(v))) for s, v in points]
    final = _final(store, run_id)
    assert {t for t in events.Tags()["scalars"] if not t.startswith("train_")} == set(final)
    for name, value in final.items():
        assert events.Scalars(name)[0].value == pytest.approx(value, rel=1e-6)

    content = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    for key, value in _config(store, run_id).items():
        # numbers stay numbers; lists, null and booleans become JSON text
        kind = "number_value" if isinstance(value, (int, float)) and not isinstance(value, bool) else "string_value"
        assert hparams[key].WhichOneof("kind") == kind, key
        assert getattr(hparams[key], kind) == (_text(value) if kind == "string_value" else value)

    def text(tag: str) -> str:
        return tensor_util.make_ndarray(events.Tensors(f"{tag}/text_summary")[0].tensor_proto).item().decode()

    tags = json.loads(text("run/tags").removeprefix("```json\n").removesuffix("\n```"))
    assert tags["provenance.git_commit"] == RICH_MANIFEST["git_commit"]
    assert tags["provenance.versions.torch"] == "2.13.0+cpu" and tags["provenance.dirty"] == "true"
    assert tags["provenance.evaluation.set_metrics.rfvd.protocol.detector_sha256"] == DETECTOR_SHA
    assert tags["ltxlab.status"] == "done" and tags["ltxlab.run_id"] == run_id

    for sample in _samples(store, run_id):
        stem = Path(sample["file"]).stem
        assert str(sample["path"]) in text(f"samples/{stem}")
        frames, _ = read_video(sample["path"])  # (T, H, W, 3)
        images = events.Images(f"samples/{stem}")
        assert [im.step for im in images] == [0, 5, 11, 16] == [round(i) for i in np.linspace(0, len(frames) - 1, 4)]
        for im in images:  # PNG is lossless: the frames decoded from the mp4, exactly
            np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(im.encoded_image_string)))[..., :3], frames[im.step])


# ----------------------------------------------------------------------------- MLflow


def test_mlflow_file_store_read_back(store, tmp_path, monkeypatch):
    _export(store, "mlflow", tmp_path, *store["ids"].values())  # imports mlflow with its telemetry off
    _export(store, "mlflow", tmp_path, store["ids"]["done"])  # a second export replaces the first, not adds
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"file:{tmp_path / 'mlruns'}")
    experiment = client.get_experiment_by_name(SWEEP)
    found = {r.data.tags["ltxlab.run_id"]: r for r in client.search_runs([experiment.experiment_id], max_results=1000)}
    assert sorted(found) == sorted(store["ids"].values())
    ids = store["ids"]
    assert {s: found[ids[s]].info.status for s in ids} == {"done": "FINISHED", "failed": "FAILED", "running": "RUNNING",
                                                          "pending": "SCHEDULED"}
    failed_reason = store["runs"].set_index("run_id").loc[ids["failed"], "failure_reason"]
    assert found[ids["failed"]].data.tags["ltxlab.failure_reason"] == failed_reason

    run = found[ids["done"]]
    mlflow_id = run.info.run_id
    assert run.data.params == {k: _text(v) for k, v in _config(store, ids["done"]).items()}
    assert run.data.tags["provenance.git_commit"] == RICH_MANIFEST["git_commit"]
    assert run.data.tags["provenance.evaluation.set_metrics.rfvd.protocol.detector_sha256"] == DETECTOR_SHA
    for tag, points in _curve(store, ids["done"]).items():
        history = sorted(client.get_metric_history(mlflow_id, tag), key=lambda m: m.step)
        assert [(m.step, m.value) for m in history] == points
    final = _final(store, ids["done"])
    assert {k for k in run.data.metrics if not k.startswith("train_")} == set(final)
    for name, value in final.items():
        assert run.data.metrics[name] == pytest.approx(value, rel=1e-12)

    samples = _samples(store, ids["done"])
    listed = {Path(a.path).name for a in client.list_artifacts(mlflow_id, "samples")}
    assert listed == {s["file"] for s in samples} | {"index.jsonl"}
    for sample in samples:
        copy = client.download_artifacts(mlflow_id, f"samples/{sample['file']}", str(tmp_path / "dl"))
        assert _sha(copy) == _sha(sample["path"])
    assert {Path(a.path).name for a in client.list_artifacts(mlflow_id, "run")} == {"config.json", "manifest.json"}


# ----------------------------------------------------------------------------- Weights & Biases


def _wandb_records(folder: Path, *flags: str) -> list[dict]:
    """wandb's own reader of an offline run's transaction log: the wandb-core binary that `wandb leet inspect
    --json` runs, called directly (2.6 s of Python start-up less per call; --no-observability: nothing uploaded)."""
    from wandb.util import get_core_path

    (log,) = folder.glob("run-*.wandb")
    out = subprocess.run([get_core_path(), "leet", "inspect", "--no-observability", "--json", *flags, "--run-file", str(log)],
                         capture_output=True, text=True, timeout=60, check=True).stdout  # fmt: skip
    return [json.loads(line) for line in out.splitlines()] if not flags else [json.loads(out)]


def test_wandb_offline_run_folders_read_back(store, tmp_path):
    ids = store["ids"]
    chosen = [ids["done"], ids["failed"], ids["running"]]
    _export(store, "wandb", tmp_path, *chosen)
    folders = {r: [f for f in (tmp_path / "wandb").glob(f"offline-run-*-{r}")] for r in chosen}
    assert all(len(f) == 1 for f in folders.values()), folders
    assert "WANDB_MODE" not in os.environ and "MLFLOW_ALLOW_FILE_STORE" not in os.environ  # the export's env is undone

    for run_id in chosen:
        folder = folders[run_id][0]
        records = _wandb_records(folder)
        (header,) = [r["run"] for r in records if r["type"] == "run"]
        assert header["run_id"] == run_id and header["project"] == SWEEP
        config = header["config"]["update"]
        status = store["runs"].set_index("run_id").loc[run_id, "status"]
        assert header["tags"] == [status] and config["ltxlab.status"] == status
        assert [r["exit"]["exit_code"] for r in records if r["type"] == "exit"] == [1 if status == "failed" else 0]
        for key, value in _config(store, run_id).items():
            assert config[key] == value
        history = [r["history"]["item"] for r in records if r["type"] == "history"]
        for tag, points in _curve(store, run_id).items():
            stage = tag.split("/")[0]
            assert [(h[f"{stage}/step"], h[tag]) for h in history if tag in h] == points
        steps = {r["metric"]["name"]: r["metric"]["step_metric"] for r in records if r["type"] == "metric"}
        assert steps == {tag: f"{tag.split('/')[0]}/step" for tag in _curve(store, run_id)}
        summary = {k: v for r in records if r["type"] == "summary" for k, v in r["summary"]["update"].items()}
        assert {k: summary[k] for k in _final(store, run_id)} == pytest.approx(_final(store, run_id), rel=1e-12)

    folder = folders[ids["done"]][0]
    (summary,) = _wandb_records(folder, "--summary")  # the reader's own merge of the summary records
    assert {k: summary["summary"][k] for k in _final(store, ids["done"])} == pytest.approx(_final(store, ids["done"]), rel=1e-12)
    assert summary["state"] == "finished" and summary["config"]["ltxlab.run_id"] == ids["done"]
    records = _wandb_records(folder)
    history = [r["history"]["item"] for r in records if r["type"] == "history"]
    videos = {k.removesuffix(".path"): h[k] for h in history for k in h if k.endswith(".path")}
    samples = _samples(store, ids["done"])
    assert set(videos) == {f"samples/{Path(s['file']).stem}" for s in samples}
    for sample in samples:
        written = folder / "files" / videos[f"samples/{Path(sample['file']).stem}"]
        assert _sha(written) == _sha(sample["path"])
    config = summary["config"]
    assert config["provenance.git_commit"] == RICH_MANIFEST["git_commit"]
    assert config["provenance.evaluation.set_metrics.rfvd.protocol.detector_sha256"] == DETECTOR_SHA

    _export(store, "wandb", tmp_path, ids["done"])  # exporting again replaces the run's folder
    again = list((tmp_path / "wandb").glob(f"offline-run-*-{ids['done']}"))
    assert len(again) == 1 and again[0] != folder
    assert all(folders[r][0].is_dir() for r in chosen[1:])  # the other runs' folders stay


# ----------------------------------------------------------------------------- bad input: one sentence, exit 2


def _error(capsys, argv: list[str]) -> str:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ltxlab export: ") and "\n" not in err and "Traceback" not in err
    return err


def test_bad_input_one_sentence_before_any_write(store, tmp_path, capsys, monkeypatch):
    base = ["--results", str(store["root"]), "--out", str(tmp_path / "out")]
    err = _error(capsys, ["export", "nope", "--to", "tensorboard", *base])
    assert f"No sweep 'nope' under {store['root']}; sweeps there: {SWEEP}." in err
    err = _error(capsys, ["export", SWEEP, "--to", "tensorboard", *base, "--runs", store["ids"]["done"], "zzz"])
    assert "Run zzz is not in sweep 'synthetic'" in err and "ltxlab results synthetic" in err
    assert not (tmp_path / "out").exists()  # nothing written for a bad sweep or run id

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    err = _error(capsys, ["export", SWEEP, "--to", "tensorboard", "--results", str(store["root"]), "--out", str(blocker / "x")])
    assert f"Cannot write to {blocker / 'x'} (Not a directory); pass --out a folder you can write to." in err

    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if mlflow-skinny were not installed
    err = _error(capsys, ["export", SWEEP, "--to", "mlflow", *base])
    assert err == "ltxlab export: `--to mlflow` needs the mlflow-skinny package: pip install 'ltxlab[export]'."
