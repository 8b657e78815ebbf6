"""A two-node Ray cluster on one machine (`ray.cluster_utils.Cluster`): a smoke sweep places
its stages on both nodes; a 2-worker Ray Train run spans both nodes, and a SIGKILLed worker
restarts the group from its last checkpoint (and the run table counts it). The tests share
one cluster (a start is ~12 s), each waiting for its sweep to end before the next begins."""

from __future__ import annotations

import dataclasses
import json

import pandas as pd
import pytest

ray = pytest.importorskip("ray")

from ablations.graph import Level  # noqa: E402
from ablations.recipes import RECIPES, Sweep  # noqa: E402
from ablations.recipes.common import smoke  # noqa: E402
from ablations.training.config import ParallelConfig  # noqa: E402
from models.config import to_dict  # noqa: E402


@pytest.fixture(scope="module")
def two_nodes():
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    worker = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    yield cluster, worker
    ray.shutdown()
    cluster.shutdown()


def test_smoke_sweep_runs_on_both_nodes(two_nodes, tmp_path):
    from ablations.runner import run_sweep

    cluster, worker = two_nodes
    outcome = run_sweep(RECIPES.get("tiny-pair")(), tmp_path, address=cluster.address, progress=False)
    assert outcome.runs_done == 2 and outcome.failed == 0
    assert outcome.slots == 2
    nodes = {st.result["node_id"] for st in outcome.states.values() if not st.skipped}
    assert len(nodes) == 2, f"stages ran on {len(nodes)} node(s)"
    assert worker.node_id in nodes
    runs = pd.read_parquet(tmp_path / "tiny-pair" / "runs.parquet")
    assert set(runs["status"]) == {"done"}
    manifest = json.loads((tmp_path / "tiny-pair" / "runs" / runs["run_id"][0] / "manifest.json").read_text())
    assert all(stage["status"] == "done" for stage in manifest["stages"].values())


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
