"""Training stages as Ray Train jobs on embedded Ray: the sweep refuses a run the cluster can
never hold, and a tiny-pair run at `--set train.workers=2` completes every stage. A run whose
workers span two nodes, and a SIGKILLed worker's restart, are in `test_sweep_cluster.py`
(which shares one 2-node cluster between its tests)."""

from __future__ import annotations

import dataclasses
import json

import pandas as pd
import pytest

ray = pytest.importorskip("ray")

from ablations.recipes import RECIPES  # noqa: E402


def test_a_run_larger_than_the_cluster_is_refused_before_launch(tmp_path, capsys):
    from ablations.cli import main

    code = main(["sweep", "tiny-pair", "--smoke", "--results", str(tmp_path), "--quiet", "--no-report",
                 "--set", "train.workers=2", "--set", "train.cpus_per_worker=1024"])
    err = capsys.readouterr().err
    assert code == 2
    assert "asks for train.workers=2 workers of 1024 CPU each, but this cluster can hold only 0" in err
    assert not (tmp_path / "tiny-pair-smoke" / "runs.parquet").exists()  # nothing launched or written


def test_tiny_pair_with_two_workers_completes_on_embedded_ray(tmp_path):
    """Every stage of a run at train.workers=2 (`--set` as the CLI applies it); one DiT variant of
    tiny-pair, since the second only repeats the same stages."""
    from ablations.overrides import apply_overrides
    from ablations.runner import run_sweep

    pair = RECIPES.get("tiny-pair")()
    sweep = dataclasses.replace(pair, base=apply_overrides(pair.base, ["train.workers=2"]),
                                axes={"dit.text_conditioning": ["cross_attention"]})
    outcome = run_sweep(sweep, tmp_path, progress=False)
    assert outcome.runs_done == 1 and outcome.failed == 0
    runs = pd.read_parquet(tmp_path / "tiny-pair" / "runs.parquet")
    assert set(runs["status"]) == {"done"} and set(runs["restarts"]) == {0}
    for stage in ("train_vae", "train_dit"):
        for folder in (tmp_path / "_cache" / stage).iterdir():
            summary = json.loads((folder / "result.json").read_text())["summary"]
            assert summary["workers"] == 2 and summary["placement"] == "STRICT_PACK"
    for stage in ("encode_latents", "sample", "eval_recon", "eval_gen"):  # split over the run's 2 workers
        for folder in (tmp_path / "_cache" / stage).iterdir():
            assert sorted(p.name for p in (folder / "parts").iterdir()) == ["rank-0-of-2", "rank-1-of-2"], stage
