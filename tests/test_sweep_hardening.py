"""Sweeps never trust a broken artifact, and leave nothing behind (issue 15, items 7 and 10).

One embedded Ray serves the module and one small sweep (`tiny-pair` cut to one variant and
the `train_vae -> eval_recon` chain) is run once; each test damages it the way a crash, a
full disk or a careless hand would, reruns it, and checks that the damage is found, said in
one line and repaired, so the next test starts from a healthy folder again. The SIGKILL
test starts a real `ltxlab sweep` driver with its own embedded Ray in a subprocess.
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

from ablations.cli import UserError
from ablations.executor import DONE, RESULT
from ablations.recipes import RECIPES
from ablations.runner import run_sweep
from ablations.training import checkpoint

ray = pytest.importorskip("ray")
av = pytest.importorskip("av")

NAME = "tiny-pair"
REPO = Path(__file__).resolve().parents[1]


def _sweep(**base_changes):
    sweep = RECIPES.get("tiny-pair")()
    base = dataclasses.replace(sweep.base, vae_train=dataclasses.replace(sweep.base.vae_train, steps=4,
                                                                          checkpoint_every=2, **base_changes))
    return dataclasses.replace(sweep, base=base, axes={"dit.text_conditioning": ["cross_attention"]},
                               stages=("eval_recon",))


@pytest.fixture(scope="module")
def swept(ray_local, tmp_path_factory):
    """(results root, outcome, metrics) of the module's one clean sweep."""
    root = tmp_path_factory.mktemp("hardening")
    outcome = run_sweep(_sweep(), root, progress=False)
    assert outcome.runs_done == 1 and outcome.failed == 0
    return root, outcome, pd.read_parquet(root / NAME / "metrics.parquet")


def _folder(root: Path, outcome, stage: str) -> Path:
    (st,) = [st for st in outcome.states.values() if st.instance.stage == stage]
    return root / "_cache" / stage / st.instance.key


def _ran(outcome) -> list[str]:
    return sorted(st.instance.stage for st in outcome.states.values() if not st.skipped)


def _rerun_heals(root: Path, clean_metrics: pd.DataFrame, capsys, **kwargs):
    """Rerun the sweep; it must end healthy with the clean run's metrics. Returns (outcome, printed lines)."""
    capsys.readouterr()
    outcome = run_sweep(_sweep(), root, progress=False, **kwargs)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert outcome.runs_done == 1 and outcome.failed == 0
    metrics = pd.read_parquet(root / NAME / "metrics.parquet")
    pd.testing.assert_frame_equal(metrics.sort_values(["clip_id", "metric"]).reset_index(drop=True),
                                  clean_metrics.sort_values(["clip_id", "metric"]).reset_index(drop=True))
    return outcome, lines


def _truncate(path: Path, keep: int | None = None) -> tuple[int, int]:
    size = path.stat().st_size
    keep = size // 2 if keep is None else keep
    with open(path, "r+b") as fh:
        fh.truncate(keep)
    return size, keep


def _decodes(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


# --------------------------------------------------------------------------- 7: DONE records


def test_done_records_size_and_sha256_of_every_product(swept):
    root, outcome, _ = swept
    for stage, product in (("train_vae", "vae.safetensors"), ("eval_recon", "samples/")):
        marker = json.loads((_folder(root, outcome, stage) / DONE).read_text())
        files = marker["files"]
        assert RESULT in files and any(name.startswith(product) for name in files), sorted(files)
        assert not any(name.startswith(("checkpoints/", "stage.log", ".")) for name in files)
        for name, entry in files.items():
            path = _folder(root, outcome, stage) / name
            assert entry["bytes"] == path.stat().st_size and len(entry["sha256"]) == 64


def test_truncated_vae_is_found_said_and_rerun(swept, capsys):
    root, outcome, clean = swept
    size, kept = _truncate(_folder(root, outcome, "train_vae") / "vae.safetensors")
    again, lines = _rerun_heals(root, clean, capsys)
    # eval_recon's own DONE still holds, but it was computed from the VAE that is gone: it runs again too
    assert _ran(again) == ["eval_recon", "train_vae"]
    (note,) = [line for line in lines if "vae.safetensors" in line]
    assert note.startswith("stage train_vae of run ") and note.endswith(
        f"vae.safetensors is {kept} bytes, DONE recorded {size}; rerunning")
    assert any(line.startswith("stage eval_recon of run ") and line.endswith(
        "it was computed from another train_vae result than the one now in the cache; rerunning") for line in lines)
    (vae,) = [st for st in again.states.values() if st.instance.stage == "train_vae"]
    assert vae.result["summary"]["resumed_from"] == 4, "the rerun resumes from the final checkpoint, not step 0"
    manifest = json.loads(next((root / NAME / "runs").glob("*/manifest.json")).read_text())
    assert "DONE recorded" in manifest["stages"]["train_vae"]["verification"]


def test_truncated_sample_is_rerun_and_the_run_folder_gets_a_whole_one(swept, capsys):
    root, outcome, clean = swept
    sample = sorted((_folder(root, outcome, "eval_recon") / "samples").glob("*.mp4"))[0]
    frames = _decodes(sample)
    _truncate(sample, 200)
    again, lines = _rerun_heals(root, clean, capsys)
    assert _ran(again) == ["eval_recon"]
    assert any(line.startswith("stage eval_recon of run ") and sample.name in line for line in lines), lines
    stored = next((root / NAME / "runs").glob(f"*/samples/{sample.name}"))
    assert _decodes(stored) == frames == _decodes(sample)


def test_garbled_result_json_is_rerun_not_a_crash(swept, capsys):
    root, outcome, clean = swept
    (_folder(root, outcome, "eval_recon") / RESULT).write_text('{"rows": [')
    again, lines = _rerun_heals(root, clean, capsys)
    assert _ran(again) == ["eval_recon"]
    assert any("result.json" in line and line.endswith("rerunning") for line in lines), lines


def test_same_size_rewrite_is_caught_by_its_sha256(swept, capsys):
    """A file rewritten in place at its own size moves its mtime: the fast path hashes it."""
    root, outcome, clean = swept
    vae = _folder(root, outcome, "train_vae") / "vae.safetensors"
    data = bytearray(vae.read_bytes())
    data[len(data) // 2] ^= 0xFF
    vae.write_bytes(bytes(data))
    again, lines = _rerun_heals(root, clean, capsys)
    assert _ran(again) == ["eval_recon", "train_vae"]  # eval_recon follows its rebuilt VAE
    assert any("the sha256 of vae.safetensors differs from the one DONE recorded; rerunning" in line for line in lines), lines


def test_verify_full_hashes_what_the_fast_path_trusts(swept, capsys):
    """A same-size change with its mtime put back passes the fast check (size + mtime); --verify full hashes it."""
    root, outcome, clean = swept
    result = _folder(root, outcome, "eval_recon") / RESULT
    stat, text = result.stat(), result.read_text()
    result.write_text(text.replace('"stage"', '"stagE"', 1))
    os.utime(result, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    fast, _ = _rerun_heals(root, clean, capsys)
    assert _ran(fast) == []
    full, lines = _rerun_heals(root, clean, capsys, verify="full")
    assert _ran(full) == ["eval_recon"]
    assert any("the sha256 of result.json differs" in line for line in lines), lines


def test_damaged_part_of_a_sharded_stage_is_redone_not_merged(tmp_path, capsys):
    from ablations.stages import shards

    calls = []

    def work(folder: Path, items: slice) -> dict:
        calls.append(items)
        (folder / "data.bin").write_bytes(bytes(range(200)))
        return {"items": items.stop - items.start}

    assert not shards.build_part(tmp_path, 0, 1, 5, work)["reused"]
    assert shards.build_part(tmp_path, 0, 1, 5, work)["reused"]
    _truncate(shards.part_dir(tmp_path, 0, 1) / "data.bin", 10)
    capsys.readouterr()
    assert not shards.build_part(tmp_path, 0, 1, 5, work)["reused"] and len(calls) == 2
    assert (shards.part_dir(tmp_path, 0, 1) / "data.bin").read_bytes() == bytes(range(200))
    assert "data.bin is 10 bytes, DONE recorded 200; it is redone" in capsys.readouterr().out


def test_old_done_without_record_is_checked_then_accepted_or_rerun(swept, capsys):
    root, outcome, clean = swept
    for stage in ("train_vae", "eval_recon"):
        (_folder(root, outcome, stage) / DONE).write_text("")  # what ltxlab wrote before DONE records
    again, lines = _rerun_heals(root, clean, capsys)
    assert _ran(again) == []
    assert sum("DONE has no file record" in line and "reused and recorded now" in line for line in lines) == 2
    assert "files" in json.loads((_folder(root, outcome, "train_vae") / DONE).read_text())
    # an old marker over a damaged checkpoint file is not trusted
    (_folder(root, outcome, "train_vae") / DONE).write_text("")
    _truncate(_folder(root, outcome, "train_vae") / "vae.safetensors")
    again, lines = _rerun_heals(root, clean, capsys)
    assert _ran(again) == ["eval_recon", "train_vae"]  # eval_recon follows its rebuilt VAE
    assert any("vae.safetensors" in line and line.endswith("rerunning") for line in lines), lines


def test_pickle_artifact_from_an_older_ltxlab_is_rerun_not_loaded(swept, capsys):
    """A finished train_vae folder whose product is the old pickle vae.pt (DONE records it) runs again:
    it resumes from its final checkpoint and writes vae.safetensors; no pickle is ever loaded."""
    import torch

    from ablations import artifacts
    from ablations.executor import write_done

    root, outcome, clean = swept
    folder = _folder(root, outcome, "train_vae")
    weights, meta = artifacts.load(folder, "vae")
    torch.save({**meta, "state_dict": {k: v.clone() for k, v in weights.items()}}, folder / "vae.pt")
    (folder / "vae.safetensors").unlink()
    write_done(folder)  # as the older ltxlab recorded it
    again, lines = _rerun_heals(root, clean, capsys)
    assert _ran(again) == ["eval_recon", "train_vae"]  # eval_recon follows its rebuilt VAE
    assert any(line.endswith("vae.pt is in the old pickle format (ltxlab now writes safetensors); rerunning")
               for line in lines), lines
    (vae,) = [st for st in again.states.values() if st.instance.stage == "train_vae"]
    assert vae.result["summary"]["resumed_from"] == 4 and not (folder / "vae.pt").exists()
    assert artifacts.load(folder, "vae")[1]["tensors_sha256"] == meta["tensors_sha256"]


def test_torn_checkpoint_falls_back_to_the_previous_one_then_to_a_fresh_start(swept, capsys):
    root, outcome, clean = swept
    folder = _folder(root, outcome, "train_vae")
    newest, previous = checkpoint.complete_checkpoints(folder)[::-1]
    shard = sorted(newest.glob("*.distcp"))[0]
    _truncate(shard)
    capsys.readouterr()
    assert checkpoint.latest(folder) == previous
    assert f"checkpoint {newest.name} in" in capsys.readouterr().out
    # the stage itself resumes from the previous checkpoint instead of failing every retry
    _truncate(folder / "vae.safetensors")
    again, _ = _rerun_heals(root, clean, capsys)
    (vae,) = [st for st in again.states.values() if st.instance.stage == "train_vae"]
    assert vae.attempts == 1 and vae.result["summary"]["resumed_from"] == 2
    assert "resuming from step-000002 instead" in (folder / "stage.log").read_text()
    for found in checkpoint.complete_checkpoints(folder):
        _truncate(sorted(found.glob("*.distcp"))[0])
    assert checkpoint.latest(folder) is None
    assert "training starts from step 0" in capsys.readouterr().out


# --------------------------------------------------------------------------- 10: leftovers


def test_reruns_leave_no_hidden_temporary_files(swept, capsys):
    root, _, clean = swept
    _rerun_heals(root, clean, capsys)  # every rerun links the run's samples again
    allowed = (".lock", ".run.lock", ".metadata")  # the store's and the stages' locks; DCP's checkpoint index
    hidden = [p.relative_to(root).as_posix() for p in root.rglob(".*") if p.name not in allowed]
    assert hidden == []


def test_second_runner_on_the_same_sweep_is_refused_naming_the_holder(swept, monkeypatch, capsys):
    import ablations.runner as runner
    from ablations.cli import main

    root, _, _ = swept
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from ablations.store import SweepStore\n"
         "with SweepStore(sys.argv[1], 'tiny-pair').run_lock():\n    print('held', flush=True); time.sleep(60)",
         str(root)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        before = (root / NAME / "sweep.json").read_bytes()

        def no_ray(*args, **kwargs):
            raise AssertionError("Ray was started while another runner held the sweep")

        monkeypatch.setattr(runner, "_init_ray", no_ray)
        code = main(["sweep", "tiny-pair", "--results", str(root), "--quiet", "--no-report"])
        err = capsys.readouterr().err.strip()
    finally:
        holder.kill()
        holder.wait()
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert f"is being run by pid {holder.pid} on " in err and "--name NEW" in err
    assert (root / NAME / "sweep.json").read_bytes() == before, "sweep.json was touched by the refused runner"


def test_rerun_with_other_settings_is_refused_not_merged(swept, monkeypatch):
    import ablations.runner as runner

    root, _, _ = swept
    runs_before = pd.read_parquet(root / NAME / "runs.parquet")
    monkeypatch.setattr(runner, "_init_ray", lambda *a, **k: pytest.fail("Ray was started for a refused rerun"))
    with pytest.raises(UserError) as refused:
        run_sweep(_sweep(lr=7e-4), root, progress=False)
    message = str(refused.value)
    assert "vae_train.lr" in message and "--name NEW" in message and "--force-extend" in message
    assert len(message.splitlines()) == 1
    pd.testing.assert_frame_equal(pd.read_parquet(root / NAME / "runs.parquet"), runs_before)
    # --force-extend does not pool the changed runs into the same variant cells (tests/test_sweep_refusals.py);
    # new seeds under the sweep's own settings it adds (checked here without running them)
    from ablations.graph import expand_variants
    from ablations.store import SweepStore

    with pytest.raises(UserError, match="would average two configs as one"):
        sweep = _sweep(lr=7e-4)
        runner.check_same_runs(SweepStore(root, NAME), sweep, expand_variants(sweep.base, sweep.axes, sweep.seeds),
                               extend=True)
    sweep = _sweep()
    variants = expand_variants(sweep.base, sweep.axes, [7])
    assert set(runner.check_same_runs(SweepStore(root, NAME), sweep, variants, extend=True)) == set(runs_before.run_id)


def _session_processes(sid: int) -> list[str]:
    out = subprocess.run(["ps", "-eo", "sid=,stat=,pid=,args="], capture_output=True, text=True).stdout
    return [line for line in out.splitlines()
            if line.split()[0] == str(sid) and not line.split()[1].startswith("Z")]


def test_sigkilled_driver_leaves_no_ray_process(tmp_path):
    cmd = [sys.executable, "-m", "ablations.cli", "sweep", "tiny-pair", "--results", str(tmp_path), "--quiet",
           "--no-report", "--set", "vae_train.steps=200"]
    log = tmp_path / "driver.log"
    with open(log, "w") as out:
        driver = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                  start_new_session=True)  # its session id names every process it starts
    try:
        deadline = time.time() + 120
        while not any("RuntimeEnvAgent" in p for p in _session_processes(driver.pid)):
            assert driver.poll() is None and time.time() < deadline, log.read_text()[-2000:]
            time.sleep(0.5)
        time.sleep(2)  # let the node start its workers too
    finally:
        driver.kill()
        driver.wait()
    deadline = time.time() + 30
    while (left := _session_processes(driver.pid)) and time.time() < deadline:
        time.sleep(0.5)
    assert left == [], "\n".join(left)
