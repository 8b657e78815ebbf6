"""`ltxlab plan`: sizes from measured variance components, checked against simulated power."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from ablations.cli import main
from evaluation.crossed import crossed_contrasts, plan_sizes, t_quantile

REPO = Path(__file__).resolve().parents[1]


def _make_store():  # noqa: ANN202 - the module
    spec = importlib.util.spec_from_file_location("make_store", REPO / "benchmarks" / "make_store.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_planned_seeds_reach_the_target_power_in_simulation():
    var_seed, var_source, var_resid, sources = 0.5, 0.1, 0.2, 6
    plan = plan_sizes(1.0, var_seed, var_source, var_resid, seeds=3, sources=sources)
    seeds = plan["seeds_needed"]
    assert seeds is not None and plan["power_now"] < 0.8
    assert plan_sizes(1.0, var_seed, var_source, var_resid, seeds=seeds, sources=sources)["power_now"] >= 0.8
    rng = np.random.default_rng(0)

    def power(s: int) -> float:
        d = (1.0 + rng.normal(0, np.sqrt(var_seed), (2000, s, 1)) + rng.normal(0, np.sqrt(var_source), (2000, 1, sources))
             + rng.normal(0, np.sqrt(var_resid), (2000, s, sources)))  # fmt: skip
        c = crossed_contrasts(d)
        return float(np.mean(np.abs(c.estimate) > t_quantile(c.df, 0.975) * c.se))

    assert power(seeds) >= 0.75  # the usual approximation, within simulation error of 80%
    assert power(seeds - 1) < power(seeds)


def test_training_noise_can_make_more_sources_useless():
    plan = plan_sizes(0.5, var_seed=0.5, var_source=0.0, var_resid=0.01, seeds=3, sources=3)
    assert plan["sources_needed"] is None and plan["seeds_needed"] is not None
    plan = plan_sizes(0.5, var_seed=0.0, var_source=1.0, var_resid=0.01, seeds=3, sources=3)
    assert plan["sources_needed"] is not None and plan["sources_needed"] > 3


def test_seed_variance_upper_limit_covers_the_truth_at_its_level():
    # 3 seeds x 8 sources: var_seed rests on 2 df and estimates 0 in many sweeps, which made
    # `ltxlab plan` promise that sources alone would do; its 80% upper limit, which the plan
    # uses, must lie above the true value in 80% of sweeps
    rng = np.random.default_rng(1)
    var_seed, seeds, sources = 0.05, 3, 8
    c = crossed_contrasts(rng.normal(0, np.sqrt(var_seed), (20000, seeds, 1)) + rng.normal(0, 1.0, (20000, seeds, sources)))
    assert 0.77 <= np.mean(c.var_seed_upper >= var_seed) <= 0.83, np.mean(c.var_seed_upper >= var_seed)
    clamped = c.var_seed == 0
    assert np.mean(clamped) > 0.2 and np.median(c.var_seed_upper[clamped]) > 0.05
    # at the clamped estimate, power from sources alone; at the upper limit, none
    assert plan_sizes(0.3, 0.0, 0.0, 1.0, seeds=3, sources=8)["sources_needed"] is not None
    assert plan_sizes(0.3, float(np.median(c.var_seed_upper[clamped])), 0.0, 1.0, seeds=3, sources=8)["sources_needed"] is None


def test_plan_command_reads_an_aa_sweep(tmp_path, capsys):
    _make_store().make_store(tmp_path, "aa", "small", videos=False, replicate=True)
    assert main(["plan", "aa", "--results", str(tmp_path), "--effect", "psnr=0.5,lpips=0.01"]) == 0
    out = capsys.readouterr().out
    assert "variances from the A/A check" in out and "psnr: detect 0.5" in out and "lpips: detect 0.01" in out
    assert "80% upper confidence limit from 2 seeds" in out
    assert main(["plan", "aa", "--results", str(tmp_path), "--effect", "psnr=0.5", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)["plans"][0]
    assert plan["metric"] == "psnr" and plan["seeds"] == 2 and 0 <= plan["power_now"] <= 1 and plan["grid"]


@pytest.mark.parametrize("effect, message", [("psnr", "METRIC=SIZE"), ("psnr=-1", "positive size"), ("nope=0.1", "has no scores for nope")])
def test_plan_bad_input_is_one_sentence(tmp_path, capsys, effect, message):
    _make_store().make_store(tmp_path, "aa", "small", videos=False)
    assert main(["plan", "aa", "--results", str(tmp_path), "--effect", effect]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
