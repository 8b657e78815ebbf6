"""Sweeps on Ray: shared stages, reruns, retries, failures, resume, and fail-fast validation.

One embedded Ray instance serves the module; every sweep uses the `tiny-pair` recipe (two
DiT variants over one VAE, a few steps per stage).
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from ablations.recipes import RECIPES
from ablations.runner import run_sweep
from ablations.training import checkpoint

ray = pytest.importorskip("ray")


def _sweep(**changes):
    return dataclasses.replace(RECIPES.get("tiny-pair")(), **changes)


def _timed_sweep():
    """tiny-pair with its `speed` stage too (demo's stage list)."""
    tiny = RECIPES.get("tiny-pair")()
    return dataclasses.replace(tiny, stages=(*tiny.stages, "speed"))


@pytest.fixture(scope="module")
def clean(ray_local, tmp_path_factory):
    root = tmp_path_factory.mktemp("clean")
    outcome = run_sweep(_timed_sweep(), root, progress=False)
    return root, outcome


def _executed(outcome, stage):
    return [st for st in outcome.states.values() if st.instance.stage == stage and not st.skipped]


def test_shared_vae_runs_once_and_everything_is_stored(clean):
    root, outcome = clean
    assert outcome.runs_done == 2 and outcome.failed == 0
    assert len(_executed(outcome, "train_vae")) == 1, "two DiT variants must share one train_vae"
    assert len(_executed(outcome, "train_dit")) == 2
    sweep_dir = root / "tiny-pair"
    meta = json.loads((sweep_dir / "sweep.json").read_text())
    assert meta["axes"] == {"dit.text_conditioning": ["cross_attention", "mmdit"]}
    assert meta["git_commit"] and meta["versions"]["torch"]
    runs = pd.read_parquet(sweep_dir / "runs.parquet")
    assert set(runs["status"]) == {"done"} and set(runs["dit.text_conditioning"]) == {"cross_attention", "mmdit"}
    assert runs["cost.flops_ref"].gt(0).all() and runs["cost.params"].gt(0).all()
    metrics = pd.read_parquet(sweep_dir / "metrics.parquet")
    assert {"psnr", "t2v.oracle_color", "i2v.first_frame_psnr"} <= set(metrics["metric"])
    for run_id in runs["run_id"]:
        run_dir = sweep_dir / "runs" / run_id
        manifest = json.loads((run_dir / "manifest.json").read_text())
        assert manifest["stages"]["train_vae"]["compute_s"] > 0 and manifest["git_commit"]
        # each stage names the code that computed it and the upstream result it was built from
        stages = manifest["stages"]
        assert {s["provenance"]["git_commit"] for s in stages.values()} == {manifest["git_commit"]}
        assert list(manifest["commits"]) == [manifest["git_commit"]]
        assert stages["sample"]["upstream"]["train_dit"]["key"] == stages["train_dit"]["key"]
        index = [json.loads(line) for line in (run_dir / "samples" / "index.jsonl").read_text().splitlines()]
        assert {"t2v", "i2v", "recon"} <= {row["task"] for row in index}
        assert all((run_dir / "samples" / row["file"]).stat().st_size > 0 for row in index)
        assert not pd.read_parquet(run_dir / "curve.parquet").empty
    assert any((sweep_dir / "reference").glob("*.mp4"))


def test_speed_stages_are_timed_alone(clean):
    """On the 2-CPU embedded Ray, each `speed` stage holds both CPUs: no other stage ran while it
    timed (on one core, the other left to the driver and Ray)."""
    root, outcome = clean
    spans = {}  # instance -> (start, end) of its stage body, from its result.json
    for st in outcome.states.values():
        result = json.loads((root / "_cache" / st.instance.stage / st.instance.key / "result.json").read_text())
        spans[(st.instance.stage, st.instance.key)] = (result["started_at"], result["started_at"] + result["compute_s"])
    speed = {k: v for k, v in spans.items() if k[0] == "speed"}
    assert len(speed) == 2  # one per DiT variant
    for one, (start, end) in spans.items():
        for other, (s0, s1) in speed.items():
            if one != other:
                assert end <= s0 or start >= s1, f"{one} ran while {other} was timing"
    for stage, key in speed:  # on all but one of the cores it held (2 - 1 here)
        result = json.loads((root / "_cache" / stage / key / "result.json").read_text())
        assert result["hardware"]["torch_threads"] == 1, result["hardware"]
        # what a CPU timing depends on beyond the code: the CPU, torch's kernel ISA, the projections' library
        assert result["hardware"]["cpu_capability"] and result["hardware"]["cpu_linear"] in ("onednn", "mkl")
    runs = pd.read_parquet(root / "tiny-pair" / "runs.parquet")
    assert runs["speed.wall_s"].gt(0).all()
    # each time names where it was measured (one machine here: no mixed-machines note)
    assert runs["speed.machine"].str.contains(r"\((AVX|DEFAULT|NO AVX).*(onednn|mkl), 1 threads\)").all(), runs["speed.machine"]


def test_rerun_executes_no_stage(clean):
    root, first = clean
    again = run_sweep(_timed_sweep(), root, progress=False)
    assert again.executed == 0 and again.skipped == len(first.states)
    assert again.runs_done == 2
    meta = json.loads((root / "tiny-pair" / "sweep.json").read_text())
    assert meta["status"] == "done" and len(meta["invocations"]) == 2
    manifest = json.loads(next((root / "tiny-pair" / "runs").glob("*/manifest.json")).read_text())
    assert all(stage["reused"] and stage["provenance"]["git_commit"] for stage in manifest["stages"].values())
    print(f"rerun wall time {again.wall_s:.2f} s")


def test_killed_worker_is_retried_with_identical_results(clean, tmp_path):
    root, _ = clean
    one = _sweep(axes={"dit.text_conditioning": ["cross_attention"]})
    outcome = run_sweep(one, tmp_path, progress=False, faults={"train_vae": {"mode": "kill_once", "at_step": 3}})
    assert outcome.runs_done == 1 and outcome.failed == 0
    (train_vae,) = _executed(outcome, "train_vae")
    assert train_vae.result["summary"]["resumed_from"] == 2, "the retry resumes from the step-2 checkpoint"
    cache = tmp_path / "_cache" / "train_vae" / train_vae.instance.key
    assert (cache / ".fault-kill_once").exists(), "the worker really was killed once"
    ours = pd.read_parquet(tmp_path / "tiny-pair" / "metrics.parquet")
    ref = pd.read_parquet(root / "tiny-pair" / "metrics.parquet")
    merged = ours.merge(ref, on=["run_id", "clip_id", "metric"], suffixes=("", "_ref"))
    assert len(merged) == len(ours) > 0
    pd.testing.assert_series_equal(merged["value"], merged["value_ref"], check_names=False)


def test_stage_that_always_raises_fails_with_reason_and_others_finish(ray_local, tmp_path):
    faults = {"train_dit": {"mode": "raise", "only": {"dit.text_conditioning": "mmdit"}}}
    outcome = run_sweep(_sweep(), tmp_path, progress=False, faults=faults, max_retries=1)
    assert outcome.runs_done == 1 and outcome.runs_failed == 1
    runs = pd.read_parquet(tmp_path / "tiny-pair" / "runs.parquet").set_index("dit.text_conditioning")
    assert runs.loc["cross_attention", "status"] == "done"
    assert runs.loc["mmdit", "status"] == "failed"
    assert "injected failure in train_dit" in runs.loc["mmdit", "failure_reason"]
    failed = [st for st in outcome.states.values() if st.instance.stage == "train_dit" and st.status == "failed"]
    assert failed[0].attempts == 2, "one try plus one retry"
    downstream = [st for st in outcome.states.values() if st.status == "failed" and st.instance.stage == "eval_gen"]
    assert downstream and "upstream" in downstream[0].reason


def test_nan_loss_fails_without_retry(ray_local, tmp_path):
    # the config ranges refuse every setting that overflowed in a few steps (lr=1e30 did): the fault
    # hands a NaN loss to the stages' own check_finite instead
    sweep = _sweep(axes={"dit.text_conditioning": ["cross_attention"]})
    outcome = run_sweep(sweep, tmp_path, progress=False, max_retries=2,
                        faults={"train_vae": {"mode": "nan", "at_step": 2}})
    runs = pd.read_parquet(tmp_path / "tiny-pair" / "runs.parquet")
    assert list(runs["status"]) == ["failed"]
    assert "NonFiniteLossError" in runs["failure_reason"].iloc[0]
    (vae,) = [st for st in outcome.states.values() if st.instance.stage == "train_vae"]
    assert vae.attempts == 1


def test_interrupted_sweep_resumes_from_checkpoints(ray_local, tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "ablations.cli", "sweep", "tiny-pair", "--results", str(tmp_path), "--quiet",
           "--no-report", "--set", "vae_train.steps=40", "--set", "vae_train.checkpoint_every=2"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.time() + 240
    progress_files: list[Path] = []
    try:
        while time.time() < deadline:
            progress_files = list((tmp_path / "_cache" / "train_vae").glob("*/progress.json"))
            if progress_files and json.loads(progress_files[0].read_text())["step"] >= 6:
                break
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            time.sleep(0.5)
        else:
            pytest.fail("train_vae never reached step 6")
    finally:
        # SIGKILL the whole sweep: a Ctrl-C lets Ray finish the step loop under load (the stage then
        # wrote DONE before it stopped, or shut down past any timeout); a kill cannot, and the
        # driver's watchdog reaps the embedded Ray it started
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    key_dir = progress_files[0].parent
    # 40 steps, not fewer: the killed driver's Ray worker trains on until the watchdog reaps it, and
    # at 16 steps it once finished and wrote DONE first (the resume then reused it: resumed_from 0)
    assert not (key_dir / "DONE").exists() and checkpoint.latest(key_dir) is not None
    base = _sweep().base
    # the same config, so the same train_vae key; one DiT variant and the VAE stage alone are enough
    # to see it resume (a sweep of its own name: the shared stage cache is per results root, not per sweep)
    sweep = _sweep(name="tiny-pair-resumed", axes={"dit.text_conditioning": ["cross_attention"]}, stages=("train_vae",),
                   base=dataclasses.replace(base, vae_train=dataclasses.replace(base.vae_train, steps=40,
                                                                                checkpoint_every=2)))
    outcome = run_sweep(sweep, tmp_path, progress=False)
    (vae,) = [st for st in outcome.states.values() if st.instance.stage == "train_vae"]
    assert vae.instance.key == key_dir.name
    assert vae.result["summary"]["resumed_from"] >= 6
    assert outcome.runs_done == 1


@pytest.mark.parametrize("override,expected", [
    ("dit.text_conditioning=crossattention", "must be one of 'cross_attention', 'mmdit'"),
    ("vae.kind=ltxx", "Unknown VAE 'ltxx'; valid names are: conventional, ltx. Did you mean 'ltx'?"),
    ("vae_data.frames=16", "1 + 8k"),
    ("vae_data.source=folder", "missing does not exist; pass an existing folder of mp4 files"),
])
def test_bad_recipe_fails_before_any_ray_task(monkeypatch, tmp_path, capsys, override, expected):
    import ablations.runner as runner
    from ablations.cli import main

    def no_ray(*args, **kwargs):
        raise AssertionError("Ray was started for an invalid recipe")

    monkeypatch.setattr(runner, "_init_ray", no_ray)
    extra = ["--set", f"vae_data.folder={tmp_path / 'missing'}"] if "source=folder" in override else []
    code = main(["sweep", "tiny-pair", "--results", str(tmp_path), "--set", override, *extra])
    err = capsys.readouterr().err
    assert code == 2, err
    assert expected in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "_cache").exists()


def test_unknown_recipe_suggests_a_name(capsys):
    from ablations.cli import main

    assert main(["sweep", "vae-cor"]) == 2
    assert "Did you mean 'vae-core'" in capsys.readouterr().err
