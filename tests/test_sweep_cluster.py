"""A two-node Ray cluster on one machine (`ray.cluster_utils.Cluster`) runs a smoke sweep
with stages placed on both nodes."""

from __future__ import annotations

import json

import pandas as pd
import pytest

ray = pytest.importorskip("ray")


@pytest.fixture
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
    from ablations.recipes import RECIPES
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
