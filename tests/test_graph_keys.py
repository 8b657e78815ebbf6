"""Stage keys cover everything that changes a stage's result (ablations/graph.py, runner.STAGE_SPECS):
the config sections it reads, a training stage's numerics, an evaluation stage's metric versions.
Plan level only: no Ray, no training."""

from __future__ import annotations

import dataclasses

import pytest

from ablations.graph import expand_variants, plan_sweep, training_numerics
from ablations.recipes import RECIPES
from ablations.recipes.common import smoke
from ablations.runner import STAGE_SPECS


@pytest.fixture(scope="module")
def base():
    return smoke(RECIPES.get("tiny-pair")().base)


def _keys(base, axes, stages, gpus=False) -> list[dict[str, str]]:
    """{stage: key} of each variant of `axes` (one seed)."""
    variants = expand_variants(base, axes, [0])
    plan = plan_sweep(variants, STAGE_SPECS, stages, gpus=gpus)
    return [{iid.split("/")[0]: iid.split("/")[1] for iid in plan.run_stages[v.run_id]} for v in variants]


class _Reads:
    """A RunConfig that records which of its sections are read."""

    def __init__(self, cfg) -> None:  # type: ignore[no-untyped-def]
        object.__setattr__(self, "_cfg", cfg)
        object.__setattr__(self, "read", set())

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        self.read.add(name)
        return getattr(self._cfg, name)


def test_cost_key_covers_every_section_cost_reads(base, monkeypatch):
    """The cost stage reads sample.steps and guidance_scale (the DiT forwards per video): two variants
    that differ there must not share one cost row."""
    import torch

    import evaluation.cost as cost
    import models.dit
    from ablations.executor import run_cost

    # the timing and FLOP counting (seconds) take sections variant_cost has read to hand them over
    monkeypatch.setattr(cost, "_measured", lambda cfg, *shape: (0.0, 0.0))
    monkeypatch.setattr(cost, "_measured_vae_only", lambda cfg, *shape: 0.0)
    monkeypatch.setattr(cost, "_vae_flops", lambda vae, *shape: (1, 1, (1, 1, 1, 1)))
    monkeypatch.setattr(cost, "_meta", lambda vae: torch.nn.Linear(1, 1))
    monkeypatch.setattr(models.dit, "describe_dit", lambda dit, *shape, fps: {
        "params": 1, "tokens": 1, "flops_per_forward": 1, "ffn_hidden": 1, "rope_max_rad": [0.0] * 3,
        "rope_min_rad": [0.0] * 3})
    proxy = _Reads(base)
    run_cost(proxy, None, {}, None)
    assert proxy.read <= set(STAGE_SPECS["cost"].fields), proxy.read - set(STAGE_SPECS["cost"].fields)
    few, many = _keys(base, {"sample.steps": [2, 20]}, ["cost"])
    assert few["cost"] != many["cost"]
    low, high = _keys(base, {"sample.guidance_scale": [1.0, 4.5]}, ["cost"])
    assert low["cost"] != high["cost"]


TRAINING = ("train_vae", "train_dit")


def test_training_keys_hold_the_numerics_and_leave_the_layout_out(base):
    stages = ["eval_recon", "sample"]
    bf16, fp32 = _keys(base, {"train.mixed_precision": ["bf16", "fp32"]}, stages, gpus=True)
    assert all(bf16[s] != fp32[s] for s in (*TRAINING, "eval_recon", "sample"))  # and all that is built from them
    # without GPUs both train in fp32 on the CPU: one computation, one instance
    bf16, fp32 = _keys(base, {"train.mixed_precision": ["bf16", "fp32"]}, stages, gpus=False)
    assert bf16 == fp32
    plain, compiled = _keys(base, {"train.compile": [False, True]}, stages)
    assert all(plain[s] != compiled[s] for s in TRAINING)
    # Ray Train workers take a GPU only with gpus_per_worker > 0: then they train on the CPU, in fp32
    spread = dataclasses.replace(base, train=dataclasses.replace(base.train, workers=2))
    on_gpu, on_cpu = _keys(spread, {"train.gpus_per_worker": [1.0, 0.0]}, stages, gpus=True)
    assert on_gpu["train_vae"] != on_cpu["train_vae"]
    assert training_numerics(spread.train, gpus=False) == {"device": "cpu", "precision": "fp32", "compile": False}
    # how the work is laid out changes nothing the stages compute: one instance for all of these
    layouts = {"train.workers": [1, 2], "train.grad_accum": [1, 2], "train.parallel": ["ddp", "fsdp"],
               "train.placement": ["auto", "spread"], "train.activation_checkpointing": [False, True]}
    for axis, levels in layouts.items():
        first, second = _keys(base, {axis: levels}, stages, gpus=False)
        assert first == second, axis


def _bumped(monkeypatch, registry, name: str) -> None:
    """What a protocol change does: the metric's version goes up."""
    monkeypatch.setitem(registry._items, name, dataclasses.replace(registry.get(name), version="999"))


def test_a_metric_version_bump_reruns_the_stage_that_computes_it(base, monkeypatch):
    from evaluation.fvd import DISTRIBUTION_METRICS
    from evaluation.generation import GENERATION_METRICS
    from evaluation.metrics import METRICS

    (before,) = _keys(base, {}, ["eval_recon", "eval_gen"])
    with monkeypatch.context() as patch:
        _bumped(patch, METRICS, base.eval.recon_metrics[0])
        (after,) = _keys(base, {}, ["eval_recon", "eval_gen"])
    assert after["eval_recon"] != before["eval_recon"]
    assert {s: k for s, k in after.items() if s != "eval_recon"} == {s: k for s, k in before.items() if s != "eval_recon"}
    with monkeypatch.context() as patch:
        _bumped(patch, GENERATION_METRICS, GENERATION_METRICS.names()[0])
        (after,) = _keys(base, {}, ["eval_recon", "eval_gen"])
    assert after["eval_gen"] != before["eval_gen"] and after["eval_recon"] == before["eval_recon"]
    for metric, stage in (("rfvd", "eval_recon"), ("fvd", "eval_gen")):
        with monkeypatch.context() as patch:
            _bumped(patch, DISTRIBUTION_METRICS, metric)
            (after,) = _keys(base, {}, ["eval_recon", "eval_gen"])
        assert after[stage] != before[stage], metric
    unused = next(n for n in METRICS.names() if n not in base.eval.recon_metrics and not n.startswith("dwt_psnr"))
    with monkeypatch.context() as patch:  # a metric the run does not compute leaves its key alone
        _bumped(patch, METRICS, unused)
        assert _keys(base, {}, ["eval_recon", "eval_gen"]) == [before]
