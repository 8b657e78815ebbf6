"""ablations.store: atomic writes, upserts, metric replacement, readers and their errors."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from ablations.store import (
    StoreError,
    SweepStore,
    atomic_write_bytes,
    clip_file_name,
    list_sweeps,
    load_sweep,
    read_metrics,
    run_curve,
    run_json,
    run_samples,
    sweep_mtimes,
)

SWEEP_JSON = {
    "sweep": "demo", "recipe": "demo", "axes": {"vae.kind": ["ltx", "conventional"], "loss.dwt": [0.0, 0.1], "seed": [0, 1]},
    "metrics": {"psnr": {"higher_is_better": True, "version": "1"}, "lpips": {"higher_is_better": False, "version": "1"}},
    "headline_metrics": ["psnr"], "git_commit": "abc123", "dirty": False, "started_at": "2026-11-24T21:00:00Z", "status": "running",
}  # fmt: skip


def _store(tmp_path: Path) -> SweepStore:
    store = SweepStore(tmp_path, "demo")
    store.write_sweep_json(SWEEP_JSON)
    return store


def test_upsert_inserts_replaces_and_merges(tmp_path):
    store = _store(tmp_path)
    store.upsert_run({"run_id": "r1", "variant": "vae.kind=ltx", "seed": 0, "vae.kind": "ltx", "loss.dwt": 0.0})
    store.upsert_run({"run_id": "r2", "variant": "vae.kind=conventional", "seed": 0, "vae.kind": "conventional", "loss.dwt": 0.1, "status": "running"})
    runs = store.upsert_run({"run_id": "r1", "status": "done", "psnr": 31.5, "cost.flops_ref": 1e15})
    assert list(runs.run_id) == ["r1", "r2"]
    r1 = runs.set_index("run_id").loc["r1"]
    assert r1.status == "done" and r1.psnr == 31.5 and r1["vae.kind"] == "ltx"  # merged, axes kept
    assert runs.set_index("run_id").loc["r2"].status == "running" and pd.isna(runs.set_index("run_id").loc["r2"].psnr)
    assert list(runs.columns[:4]) == ["run_id", "variant", "seed", "status"] and runs.columns[-1] == "cost.flops_ref"
    data = load_sweep(tmp_path, "demo")
    assert data.axes == ["vae.kind", "loss.dwt"] and data.headline_metrics == ["psnr"]
    assert not data.higher_is_better("lpips") and data.higher_is_better("psnr")
    assert len(data.runs) == 2 and any("still pending or running" in n for n in data.notes)


def test_bad_status_and_missing_run_id_raise(tmp_path):
    store = _store(tmp_path)
    with pytest.raises(StoreError, match="not one of"):
        store.upsert_run({"run_id": "r1", "status": "finished"})
    with pytest.raises(StoreError, match="run_id"):
        store.upsert_run({"status": "done"})


def test_failed_run_keeps_failure_reason(tmp_path):
    store = _store(tmp_path)
    store.upsert_run({"run_id": "r1", "status": "running", "seed": 0})
    store.upsert_run({"run_id": "r1", "status": "failed", "failure_reason": "CUDA out of memory in train_dit"})
    runs = load_sweep(tmp_path, "demo").runs
    assert runs.iloc[0].failure_reason == "CUDA out of memory in train_dit"


def _metric_rows(run_id: str, value: float, clips=("c:1", "c:2")) -> list[dict]:
    return [{"run_id": run_id, "seed": 0, "split": "heldout", "clip_id": c, "metric": m, "value": value} for c in clips for m in ("psnr", "ssim")]


def test_append_metrics_replaces_same_key(tmp_path):
    store = _store(tmp_path)
    store.append_metrics(_metric_rows("r1", 1.0))
    store.append_metrics(_metric_rows("r2", 2.0))
    table = store.append_metrics(_metric_rows("r1", 5.0, clips=("c:1",)))
    assert len(table) == 8
    got = table.set_index(["run_id", "clip_id", "metric"]).value
    assert got[("r1", "c:1", "psnr")] == 5.0 and got[("r1", "c:2", "psnr")] == 1.0 and got[("r2", "c:1", "ssim")] == 2.0
    assert (table.metric_version == "1").all()
    assert read_metrics(tmp_path, "demo").equals(table)
    with pytest.raises(StoreError, match="clip_id"):
        store.append_metrics([{"run_id": "r1", "seed": 0, "split": "x", "metric": "psnr", "value": 1.0}])


def test_run_files_samples_curve(tmp_path):
    store = _store(tmp_path)
    store.write_run_json("r1", "config.json", {"vae": {"kind": "ltx"}, "lr": float("nan")})
    assert run_json(tmp_path, "demo", "r1", "config.json") == {"vae": {"kind": "ltx"}, "lr": None}
    with pytest.raises(StoreError):
        store.write_run_json("r1", "notes.json", {})
    store.write_curve("r1", pd.DataFrame({"stage": ["train_vae"] * 3, "step": [0, 1, 2], "name": ["loss"] * 3, "value": [3.0, 2.0, 1.5]}))
    assert run_curve(tmp_path, "demo", "r1").value.tolist() == [3.0, 2.0, 1.5]
    assert run_curve(tmp_path, "demo", "nope").empty
    (store.sample_dir("r1") / "recon-c_1.mp4").write_bytes(b"x")
    store.reference_path("bikes:heldout:0").write_bytes(b"ref")
    store.add_sample("r1", {"file": "recon-c_1.mp4", "task": "recon", "prompt_id": "c1", "clip_id": "bikes:heldout:0", "fps": 24.0})
    store.add_sample("r1", {"file": "t2v-p003.mp4", "task": "t2v", "prompt_id": "p003", "text": "a red square", "fps": 24.0})
    store.add_sample("r1", {"file": "t2v-p003.mp4", "task": "t2v", "prompt_id": "p003", "text": "replaced", "fps": 24.0})
    samples = run_samples(tmp_path, "demo", "r1")
    assert [s["file"] for s in samples] == ["recon-c_1.mp4", "t2v-p003.mp4"] and samples[1]["text"] == "replaced"
    assert samples[0]["reference"].endswith("reference/bikes_heldout_0.mp4") and Path(samples[0]["path"]).exists()
    assert clip_file_name("bikes:heldout:0") == "bikes_heldout_0"
    with pytest.raises(StoreError, match="task"):
        store.add_sample("r1", {"file": "a.mp4", "task": "video"})


def test_corrupt_files_raise_one_sentence_naming_the_file(tmp_path):
    store = _store(tmp_path)
    store.upsert_run({"run_id": "r1", "status": "done"})
    (store.path / "metrics.parquet").write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(StoreError) as info:
        load_sweep(tmp_path, "demo")
    msg = str(info.value)
    assert "metrics.parquet" in msg and msg.count("\n") == 0
    (store.path / "sweep.json").write_text("{broken")
    with pytest.raises(StoreError, match="sweep.json"):
        load_sweep(tmp_path, "demo")
    bad_samples = store.sample_dir("r1") / "index.jsonl"
    bad_samples.write_text('{"file": "a.mp4", "task": "t2v"}\nnot json\n')
    with pytest.raises(StoreError, match="line 2"):
        run_samples(tmp_path, "demo", "r1")


def test_list_sweeps_counts_and_survives_a_corrupt_sweep(tmp_path):
    store = _store(tmp_path)
    for i, status in enumerate(["done", "done", "failed", "running", "pending"]):
        store.upsert_run({"run_id": f"r{i}", "status": status})
    other = SweepStore(tmp_path, "broken")
    other.write_sweep_json({"sweep": "broken", "started_at": "2026-11-25T00:00:00Z"})
    (other.path / "runs.parquet").write_bytes(b"garbage")
    (tmp_path / "_cache").mkdir()
    (tmp_path / "not-a-sweep").mkdir()
    table = list_sweeps(tmp_path)
    assert list(table.sweep) == ["broken", "demo"]  # newest first
    demo = table.set_index("sweep").loc["demo"]
    assert (demo.runs, demo.done, demo.failed, demo.running, demo.pending) == (5, 2, 1, 1, 1)
    assert demo.git_commit == "abc123" and demo.status == "running" and pd.isna(demo.error)
    assert "runs.parquet" in table.set_index("sweep").loc["broken"].error
    assert list_sweeps(tmp_path / "missing").empty


def test_missing_sweep_and_empty_sweep(tmp_path):
    _store(tmp_path)
    with pytest.raises(StoreError, match="sweeps there: demo"):
        load_sweep(tmp_path, "nope")
    data = load_sweep(tmp_path, "demo")  # sweep.json only: a sweep that just started
    assert data.runs.empty and data.metrics.empty and data.axes == ["vae.kind", "loss.dwt"]


def test_atomic_write_never_exposes_partial_file(tmp_path):
    target = tmp_path / "f.bin"
    atomic_write_bytes(target, b"old")

    # a failing write leaves the old file intact and no temp file behind
    with pytest.raises(TypeError):
        atomic_write_bytes(target, object())  # type: ignore[arg-type]
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["f.bin"]


def test_mtimes_change_on_write(tmp_path):
    store = _store(tmp_path)
    before = sweep_mtimes(tmp_path, "demo")
    assert before[1] == 0.0
    store.upsert_run({"run_id": "r1"})
    after = sweep_mtimes(tmp_path, "demo")
    assert after[1] > 0 and after[0] == before[0]


def _writer(root: str, worker: int) -> None:
    store = SweepStore(root, "demo")
    for i in range(15):
        store.upsert_run({"run_id": f"w{worker}-{i}", "status": "done"})
        store.append_metrics(_metric_rows(f"w{worker}-{i}", float(i), clips=("c",)))


def test_two_writer_processes_lose_no_rows(tmp_path):
    _store(tmp_path)
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), w)) for w in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    data = load_sweep(tmp_path, "demo")
    assert len(data.runs) == 30 and len(data.metrics) == 60


def test_results_command_prints_table_and_json(tmp_path):
    store = _store(tmp_path)
    store.upsert_run({"run_id": "r1", "variant": "vae.kind=ltx", "seed": 0, "vae.kind": "ltx", "loss.dwt": 0.0, "status": "done", "psnr": 30.25})
    store.upsert_run({"run_id": "r2", "variant": "vae.kind=conventional", "seed": 0, "vae.kind": "conventional", "loss.dwt": 0.0,
                      "status": "failed", "failure_reason": "NaN loss at step 12"})  # fmt: skip
    cmd = [str(Path(sys.executable).with_name("ltxlab")), "results", "demo", "--results", str(tmp_path)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "r1" in out.stdout and "30.25" in out.stdout and "NaN loss at step 12" in out.stdout and "vae.kind" in out.stdout
    out = subprocess.run(cmd + ["--json"], capture_output=True, text=True, timeout=60)
    rows = json.loads(out.stdout)
    assert [r["run_id"] for r in rows] == ["r1", "r2"] and rows[1]["status"] == "failed"
    out = subprocess.run(cmd[:-3] + ["nope", "--results", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "No sweep 'nope'" in out.stderr and "Traceback" not in out.stderr
