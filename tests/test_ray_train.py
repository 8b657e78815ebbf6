"""Training stages as Ray Train jobs: a run's workers span the nodes of a 2-node cluster, a
SIGKILLed worker restarts the group from its last checkpoint (and the run table counts it),
the sweep refuses a run the cluster can never hold, and a tiny-pair run at `--set
train.workers=2` completes every stage on embedded Ray. The 2-node cluster is `test_sweep_cluster.py`'s
fixture."""

from __future__ import annotations

import dataclasses
import json

import pandas as pd
import pytest
import torch

ray = pytest.importorskip("ray")

from ablations.graph import Level  # noqa: E402
from ablations.recipes import RECIPES, Sweep  # noqa: E402
from ablations.recipes.common import smoke  # noqa: E402
from ablations.training.config import ParallelConfig  # noqa: E402
from tests.test_sweep_cluster import two_nodes  # noqa: E402,F401  (the 2-node cluster fixture)
from models.config import to_dict  # noqa: E402

TOL = 1e-5


def _one_run_sweep(workers: int, name: str = "ray-train") -> Sweep:
    """One tiny run, train_vae only (the shortest Ray Train job), at 4 steps of 2 clips."""
    base = RECIPES.get("tiny-pair")().base
    base = smoke(base)
    base = dataclasses.replace(base, vae_train=dataclasses.replace(base.vae_train, steps=4, checkpoint_every=2, lr=1e-4),
                               train=ParallelConfig(workers=workers))
    return Sweep(name=name, recipe="tiny-pair", description="one run", base=base,
                 axes={"layout": [Level("two", {})]}, seeds=(0,), stages=("train_vae",), headline_metrics=())


def test_a_killed_worker_restarts_from_its_checkpoint_on_two_nodes(two_nodes, tmp_path):
    from ablations.executor import train_vae_entry
    from ablations.runner import run_sweep

    cluster, worker = two_nodes
    sweep = _one_run_sweep(workers=2)
    # rank 1 is SIGKILLed once, after step 3 (the last checkpoint is step 2)
    outcome = run_sweep(sweep, tmp_path, address=cluster.address, progress=False,
                        faults={"train_vae": {"mode": "kill_worker", "rank": 1, "at_step": 3}})
    assert outcome.runs_done == 1 and outcome.failed == 0
    (state,) = outcome.states.values()
    summary = state.result["summary"]
    assert summary["workers"] == 2 and summary["restarts"] == 1 and summary["resumed_from"] == 2
    assert summary["placement"] == "PACK"  # 1 CPU per node: no single node holds both workers
    assert len(set(summary["nodes"])) == 2 and worker.node_id in summary["nodes"]
    runs = pd.read_parquet(tmp_path / "ray-train" / "runs.parquet")
    assert runs["restarts"].tolist() == [1]
    (folder,) = (tmp_path / "_cache" / "train_vae").iterdir()
    # the interrupted 2-worker run ends where an uninterrupted 1-worker run does
    reference = tmp_path / "reference"
    train_vae_entry(to_dict(dataclasses.replace(sweep.base, train=ParallelConfig())), str(reference),
                    layout=ParallelConfig())
    from ablations import artifacts

    a, b = artifacts.load(reference, "vae")[0], artifacts.load(folder, "vae")[0]
    weights = [k for k in a if not k.startswith("latents_")]
    assert max(float((a[k] - b[k]).abs().max()) for k in weights) < TOL
    attempts = json.loads((folder / "attempts.json").read_text())
    assert [a["resume_step"] for a in attempts] == [0, 2]


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
