"""The `speed` stage (issue 16): measured generation time per variant beside the FLOP estimate.

Behaviour, not a timing target: the stage's figures exist and are consistent (phases within
the wall time, FLOPs equal to the cost model's, no GPU figure without a GPU and the note
says so); they reach the run table as `speed.*` columns through collect; `demo` plans the
stage for every run; the dashboard's Cost page shows measured beside estimated.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from ablations.collect import collect_run
from ablations.configs import default_run_config
from ablations.executor import STAGES_RUN
from ablations.graph import StageInstance, expand_variants, plan_sweep
from ablations.recipes import RECIPES
from ablations.runner import STAGE_SPECS, InstanceState
from ablations.store import SweepStore
from evaluation.cost import generation_flops
from tests._generate_util import SPEC, tiny_pair

REPO = Path(__file__).resolve().parents[1]


def _variants(sweep):  # type: ignore[no-untyped-def]
    return expand_variants(sweep.base, sweep.axes, sweep.seeds, sweep.variants, replicate_baseline=sweep.replicate_baseline)


@pytest.fixture(scope="module")
def speed_result(tmp_path_factory) -> tuple[object, dict]:
    """(run config, the stage's result) for a tiny trained pair, through the executor's entry."""
    vae_dir, dit_dir = tiny_pair(tmp_path_factory)
    cfg = default_run_config("ltx", "tiny")
    cfg = dataclasses.replace(cfg, dit_data=SPEC, sample=dataclasses.replace(cfg.sample, steps=3),
                              cost=dataclasses.replace(cfg.cost, latency_repeats=2))
    result = STAGES_RUN["speed"](cfg, tmp_path_factory.mktemp("stage"), {"train_vae": vae_dir, "train_dit": dit_dir}, None)
    json.dumps(result)  # result.json must hold it
    return cfg, result


def test_speed_figures_are_consistent(speed_result):
    cfg, result = speed_result
    run = result["speed"]["run"]
    assert run["shape"] == "9x32x32" and run["steps"] == 3 and run["repeats"] == 2
    assert 0 < run["wall_s_min"] <= run["wall_s"] <= run["wall_s_max"]
    assert 0 < run["dit_s"] and 0 < run["decode_s"] and 0 <= run["text_s"]
    assert run["dit_s"] + run["decode_s"] + run["text_s"] <= run["wall_s_max"] * 1.001
    assert run["step_s"] <= run["dit_s"]
    flops = generation_flops(cfg.vae, cfg.dit, (9, 32, 32), steps=3, guidance_scale=cfg.sample.guidance_scale, fps=24.0)
    assert run["flops"] == flops["total"] > flops["decode"] > 0
    assert run["flops_dit"] == 2 * 3 * flops["dit_forward"]  # CFG: two batch-1 forwards per step
    assert run["tflops_achieved"] == pytest.approx(run["flops"] / run["wall_s"] / 1e12)
    assert run["peak_memory_bytes"] > 10 * 2**20 and run["device"] == "cpu"
    if not torch.cuda.is_available():
        assert "mfu" not in run and result["speed"]["reference"] is None
        assert "no GPU" in result["speed"]["reference_note"]


def test_speed_reaches_the_run_table(speed_result, tmp_path):
    cfg, result = speed_result
    store = SweepStore(tmp_path, "sweep")
    variant = _variants(RECIPES.get("demo")("demo"))[0]
    state = InstanceState(instance=StageInstance(stage="speed", key="k", config=cfg, upstream=()), status="done",
                          result=result)
    collected = collect_run(store, variant, [state], tmp_path / "_cache", RECIPES.get("demo")("demo"))
    columns = collected["cost"]
    assert columns["speed.wall_s"] == result["speed"]["run"]["wall_s"] > 0
    assert {"speed.dit_s", "speed.decode_s", "speed.flops", "speed.tflops_achieved"} <= set(columns)
    store.upsert_run({"run_id": variant.run_id, "variant": variant.name, "seed": variant.seed, "status": "done", **columns})
    runs = pd.read_parquet(store.path / "runs.parquet")
    assert runs.loc[0, "speed.wall_s"] == pytest.approx(columns["speed.wall_s"])
    from ablations.report import format_report

    text = format_report({"sweep": "s", "summary": "", "notes": [], "effects": pd.DataFrame(),
                          "interactions": pd.DataFrame(), "correction": {"method": "holm", "family_size": 0},
                          "replicate": pd.DataFrame(), "metrics": [], "best": pd.DataFrame(), "cost": runs,
                          "cost_assumptions": {}, "failed": [], "set_metrics": [], "not_applicable": []})
    assert "speed.wall_s" in text and f"{columns['speed.wall_s']:.3g}" in text and "measured" in text


def test_demo_plans_a_speed_stage_per_trained_pair():
    sweep = RECIPES.get("demo")("demo")
    assert "speed" in sweep.stages
    plan = plan_sweep(_variants(sweep), STAGE_SPECS, sweep.stages)
    speed = [i for i in plan.instances.values() if i.stage == "speed"]
    trained = [i for i in plan.instances.values() if i.stage == "train_dit"]
    assert len(speed) == len(trained) > 0
    assert all({u.split("/")[0] for u in i.upstream} == {"train_vae", "train_dit"} for i in speed)
    assert "speed" in STAGES_RUN


def test_cost_page_shows_measured_beside_estimated(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    spec = importlib.util.spec_from_file_location("make_store", REPO / "benchmarks" / "make_store.py")
    make_store = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_store)
    make_store.make_store(tmp_path, "s", "small", videos=False)
    store = SweepStore(tmp_path, "s")
    for i, row in pd.read_parquet(store.path / "runs.parquet").iterrows():
        store.upsert_run({"run_id": row["run_id"], "speed.wall_s": 2.5 + i, "speed.dit_s": 2.0, "speed.decode_s": 0.4,
                          "speed.flops": 1.2e15, "speed.tflops_achieved": 0.5, "speed.ref_wall_s": 3.0, "speed.ref_mfu": 0.4,
                          "speed.machine": "NVIDIA H100" if i % 2 else "NVIDIA A100"})
    monkeypatch.setenv("LTXLAB_RESULTS", str(tmp_path))
    at = AppTest.from_file(str(REPO / "dashboard" / "app.py"), default_timeout=90)
    at.run()
    at.switch_page("views/cost.py")
    at.run()
    assert not at.exception
    # times from two machine kinds are not comparable: the page says so above the table
    assert any("measured on 2 different machines (NVIDIA A100; NVIDIA H100)" in w.value for w in at.warning)
    frames = [df.value for df in at.dataframe]
    measured = [f for f in frames if "measured generation (s)" in f.columns]
    assert measured, [list(f.columns) for f in frames]
    table = measured[0]
    assert {"H100 estimate at 121x512x768 (s)", "measured at 121x512x768 (s)", "MFU at 121x512x768",
            "measured / estimate"} <= set(table.columns)
    assert (table["measured / estimate"] > 0).all()
    # each variant's spread over its runs beside the median (make_store's small store: 2 seeds per variant)
    spread = table["measured range over runs (s)"]
    assert spread.str.fullmatch(r"[0-9.e+-]+-[0-9.e+-]+ \(\d+ runs\)").all(), spread.tolist()
    # rows are named by the differing axes first (as the bars are); the full variant string comes last
    assert table.columns[0] == "variant" and table.columns[-1] == "full variant"
    assert all("=" in short and len(short) < len(full) for short, full in zip(table["variant"], table["full variant"]))
    assert table["variant"].is_unique


def test_speed_times_name_their_machine_and_mixed_machines_are_said():
    from ablations.provenance import machine_label, mixed_machines_note

    cpu = {"cpu_model": "AMD EPYC", "cpu_capability": "AVX512", "cpu_linear": "onednn", "torch_threads": 1}
    assert machine_label(cpu) == "AMD EPYC (AVX512, onednn, 1 threads)"
    assert machine_label({**cpu, "gpu": "NVIDIA H100 80GB HBM3"}) == "NVIDIA H100 80GB HBM3"
    assert machine_label({}) == ""  # results written before the record
    one = pd.DataFrame({"speed.machine": [machine_label(cpu)] * 3})
    assert mixed_machines_note(one) is None and mixed_machines_note(pd.DataFrame({"x": [1]})) is None
    two = pd.DataFrame({"speed.machine": [machine_label(cpu), machine_label({**cpu, "cpu_linear": "mkl"}), None]})
    note = mixed_machines_note(two)
    assert note.startswith("speed.* was measured on 2 different machines (AMD EPYC (AVX512, mkl, 1 threads); ")
    assert note.endswith("compare measured times only between runs of one machine (speed.machine), or rerun the "
                         "speed stages on one node.")
