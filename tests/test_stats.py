"""evaluation.stats: planted effects are found, null effects' CIs cover 0 at about the nominal rate."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from evaluation.stats import (
    NO_EFFECT,
    NO_INTERACTION,
    bootstrap_weights,
    factorial_effects,
    paired_bootstrap,
    pareto_front,
    variant_differences,
)


def synthetic(
    rng: np.random.Generator,
    *,
    effect_a: float = 0.0,
    effect_b: float = 0.0,
    interaction: float = 0.0,
    n_clips: int = 12,
    seeds: tuple[int, ...] = (0, 1),
    noise: float = 1.0,
    clip_sd: float = 3.0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A 2x2x2 factorial sweep: axes A (0/1), B ("x"/"y"), C (False/True, no effect).

    value = clip difficulty + seed offset + effect_a*A + effect_b*B + interaction*A*B + noise.
    The large clip/seed terms are shared by all variants on a unit, so only a paired
    analysis sees small effects.
    """
    runs, rows = [], []
    clip_level = rng.normal(0, clip_sd, n_clips)
    for a, b, c in itertools.product([0, 1], ["x", "y"], [False, True]):
        for s in seeds:
            run_id = f"r-{a}-{b}-{c}-{s}"
            runs.append({"run_id": run_id, "variant": f"A={a},B={b},C={c}", "seed": s, "status": "done", "A": a, "B": b, "C": c})
            bb = int(b == "y")
            for k in range(n_clips):
                mean = clip_level[k] + 0.5 * s + effect_a * a + effect_b * bb + interaction * a * bb
                for metric, sign in (("psnr", 1.0), ("lpips", -0.1)):
                    rows.append({"run_id": run_id, "seed": s, "split": "heldout", "clip_id": f"clip{k}", "metric": metric,
                                 "value": sign * (mean + rng.normal(0, noise)), "metric_version": "1"})  # fmt: skip
    return pd.DataFrame(rows), pd.DataFrame(runs)


LEVELS = {"A": [0, 1], "B": ["x", "y"], "C": [False, True]}


def test_planted_main_effect_found_with_direction_and_verdict():
    metrics, runs = synthetic(np.random.default_rng(1), effect_a=1.5)
    rep = factorial_effects(metrics, runs, ["A", "B", "C"], axis_levels=LEVELS, higher_is_better={"lpips": False}, n_boot=1000)
    row = rep.main.query("metric == 'psnr' and axis == 'A'").iloc[0]
    assert row.level_a == 1 and row.level_b == 0
    assert abs(row.estimate - 1.5) < 0.4
    assert row.ci_low > 0 and not row.ci_includes_zero
    assert row.better == 1 and "A=1 is better than A=0" in row.verdict
    # lpips = -0.1 * psnr-like value and lower is better: A=1 lowers it, so A=1 is better again
    lp = rep.main.query("metric == 'lpips' and axis == 'A'").iloc[0]
    assert lp.estimate < 0 and lp.ci_high < 0 and lp.better == 1
    # C has no planted effect: its CI on psnr should include 0 for this seed (checked statistically below)
    assert rep.main.query("axis == 'C'").shape[0] == 2
    assert rep.n_boot == 1000 and rep.units == 24 and rep.runs_used == 16


def test_ci_narrower_than_unpaired_spread():
    # pairing removes the clip-difficulty spread (sd 3): the CI must be far narrower than that
    metrics, runs = synthetic(np.random.default_rng(2), effect_a=0.5, clip_sd=10.0)
    row = factorial_effects(metrics, runs, ["A", "B", "C"], axis_levels=LEVELS).main.query("metric=='psnr' and axis=='A'").iloc[0]
    assert row.ci_high - row.ci_low < 1.0


def test_null_effect_coverage_near_nominal():
    rng = np.random.default_rng(3)
    covered = []
    for draw in range(300):
        metrics, runs = synthetic(rng, n_clips=15, seeds=(0, 1))
        rep = factorial_effects(metrics, runs, ["A", "B"], axis_levels=LEVELS, metric_names=["psnr"], n_boot=400, seed=draw)
        covered.append(bool(rep.main.iloc[0].ci_includes_zero))
    coverage = np.mean(covered)
    assert 0.90 <= coverage <= 0.985, coverage


def test_planted_interaction_found_and_none_covers_zero():
    metrics, runs = synthetic(np.random.default_rng(4), interaction=2.0, n_clips=20)
    rep = factorial_effects(metrics, runs, ["A", "B", "C"], axis_levels=LEVELS, n_boot=1000)
    ab = rep.interactions.query("metric == 'psnr' and axis_a == 'A' and axis_b == 'B'").iloc[0]
    assert abs(ab.estimate - 2.0) < 0.6 and ab.ci_low > 0 and not ab.ci_includes_zero
    assert "better with B=y than with B=x" in ab.verdict
    assert len(rep.interactions) == 2 * 3  # 2 metrics x 3 pairs of two-level axes

    rng = np.random.default_rng(5)
    covered = []
    for draw in range(150):
        metrics, runs = synthetic(rng, n_clips=15, effect_a=1.0, effect_b=-1.0)
        rep = factorial_effects(metrics, runs, ["A", "B"], axis_levels=LEVELS, metric_names=["psnr"], n_boot=400, seed=draw)
        covered.append(bool(rep.interactions.iloc[0].ci_includes_zero))
        if draw == 0:
            assert rep.interactions.iloc[0].verdict in (NO_INTERACTION,) or not covered[0]
    assert 0.88 <= np.mean(covered) <= 0.99, np.mean(covered)


def test_only_done_runs_count_and_missing_units_reported():
    metrics, runs = synthetic(np.random.default_rng(6), effect_a=1.0)
    runs.loc[runs.run_id == "r-1-x-False-0", "status"] = "failed"
    runs.loc[runs.run_id == "r-0-y-True-1", "status"] = "running"
    # the failed run's leftover metrics must be ignored: poison them
    metrics.loc[metrics.run_id == "r-1-x-False-0", "value"] = 1e6
    extra = pd.DataFrame([{"run_id": "r-extra", "variant": "A=1,B=x,C=False", "seed": 9, "status": "done", "A": 1, "B": "x", "C": False}])
    runs = pd.concat([runs, extra], ignore_index=True)  # done but never scored
    rep = factorial_effects(metrics, runs, ["A", "B", "C"], axis_levels=LEVELS)
    assert rep.runs_used == 14
    assert rep.runs_excluded == {"failed": 1, "running": 1, "done without metrics": 1}
    assert "14 done runs" in rep.summary and "1 failed" in rep.summary
    row = rep.main.query("metric == 'psnr' and axis == 'A'").iloc[0]
    assert row.estimate < 5  # the poisoned 1e6 values did not leak in
    assert row.n_runs_a == 7 and row.n_runs_b == 7
    # B x C cell (x, False) at seed 0 still has A=0; only when a whole cell is empty is a unit missing
    inter = rep.interactions.query("metric == 'psnr' and axis_a == 'A' and axis_b == 'B'").iloc[0]
    assert inter.n_units == 24 and inter.n_units_missing == 0


def test_unit_missing_when_cell_empty():
    metrics, runs = synthetic(np.random.default_rng(7), seeds=(0,))
    runs.loc[(runs.A == 1) & (runs.B == "x"), "status"] = "failed"  # both C levels of cell a1,b0
    rep = factorial_effects(metrics, runs, ["A", "B", "C"], axis_levels=LEVELS, metric_names=["psnr"])
    inter = rep.interactions.query("axis_a == 'A' and axis_b == 'B'").iloc[0]
    assert inter.n_units == 0 and inter.ci_includes_zero and "not enough" in inter.verdict
    assert rep.main.query("axis == 'A'").iloc[0].n_units == 12


def test_no_finished_runs_gives_empty_report_with_note():
    metrics, runs = synthetic(np.random.default_rng(8))
    runs["status"] = "pending"
    rep = factorial_effects(metrics, runs, ["A"], axis_levels=LEVELS)
    assert rep.main.empty and rep.runs_used == 0 and rep.runs_excluded == {"pending": 16}
    assert rep.notes


def test_multi_level_axis_gives_every_pair():
    rng = np.random.default_rng(9)
    runs, rows = [], []
    for lvl, s in itertools.product([0.0, 0.1, 1.0], [0, 1]):
        rid = f"r{lvl}-{s}"
        runs.append({"run_id": rid, "variant": f"w={lvl}", "seed": s, "status": "done", "loss.dwt": lvl})
        for k in range(10):
            rows.append({"run_id": rid, "seed": s, "split": "heldout", "clip_id": f"c{k}", "metric": "psnr",
                         "value": k + 2.0 * lvl + rng.normal(0, 0.3)})  # fmt: skip
    rep = factorial_effects(pd.DataFrame(rows), pd.DataFrame(runs), ["loss.dwt", "seed"], axis_levels={"loss.dwt": [0, 0.1, 1]})
    pairs = list(zip(rep.main.level_a, rep.main.level_b))
    assert pairs == [(0.1, 0.0), (1.0, 0.0), (1.0, 0.1)]
    assert abs(rep.main.iloc[1].estimate - 2.0) < 0.3
    assert rep.interactions.empty


def test_paired_bootstrap_matches_loop_reference():
    rng = np.random.default_rng(10)
    d = rng.normal(0.3, 1.0, size=40)
    est, low, high, n = paired_bootstrap(d, n_boot=500, seed=3)
    w = bootstrap_weights(40, 500, 3)
    assert np.allclose(w.sum(axis=1), 40)
    reps = [np.average(d, weights=row) for row in w]
    assert est == pytest.approx(d.mean()) and n == 40
    assert low == pytest.approx(np.quantile(reps, 0.025)) and high == pytest.approx(np.quantile(reps, 0.975))


def test_variant_differences():
    metrics, runs = synthetic(np.random.default_rng(11), effect_a=2.0)
    out = variant_differences(metrics, runs, ["A=0,B=x,C=False", "A=1,B=x,C=False"], metric_names=["psnr"])
    assert len(out) == 1
    row = out.iloc[0]
    assert row.variant_a == "A=1,B=x,C=False" and abs(row.estimate - 2.0) < 0.8 and row.better == "A=1,B=x,C=False"


def test_pareto_front():
    df = pd.DataFrame({"q": [30, 31, 29, 33, np.nan, 33], "cost": [1.0, 2.0, 2.0, 5.0, 0.1, 6.0]}, index=list("abcdef"))
    front = pareto_front(df, "q", "cost")
    assert front.to_dict() == {"a": True, "b": True, "c": False, "d": True, "e": False, "f": False}
    lower = pareto_front(df, "q", "cost", higher_is_better=False)
    assert lower.to_dict() == {"a": True, "b": False, "c": True, "d": False, "e": False, "f": False}


def test_verdict_strings():
    metrics, runs = synthetic(np.random.default_rng(12), effect_b=-3.0)
    rep = factorial_effects(metrics, runs, ["A", "B"], axis_levels=LEVELS, metric_names=["psnr"])
    b = rep.main.query("axis == 'B'").iloc[0]
    assert b.better == "x" and b.verdict.startswith("B=x is better than B=y by") and "95% CI" in b.verdict
    nulls = rep.main.query("ci_includes_zero")
    assert (nulls.verdict == NO_EFFECT).all()
