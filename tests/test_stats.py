"""evaluation.stats: calibrated intervals on data with a known answer, verdicts, the A/A check.

The generator below is the model the statistics claim to handle: every trained model
(variant x seed) draws its own offset, clips come clustered in source videos whose content
shifts an effect, and each clip adds noise. A null effect's 95% interval must cover 0 in
93-97% of simulated sweeps; with one seed no verdict may be printed at all.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from evaluation.crossed import crossed_contrasts, plan_variance, t_pvalue, t_quantile
from evaluation.multiplicity import benjamini_hochberg, holm
from evaluation.stats import (
    NO_EFFECT,
    NO_INTERACTION,
    NOT_APPLICABLE,
    ONE_SEED,
    factorial_effects,
    pareto_front,
    variant_differences,
)

LEVELS = {"A": [0, 1], "B": ["x", "y"], "C": [False, True]}
MODEL_SD = 1.0  # sd of each trained model's offset: the "noise SD" planted effects are measured in


def sweep(
    rng: np.random.Generator,
    *,
    seeds: int = 3,
    sources: int = 4,
    clips_per_source: int = 3,
    effect_a: float = 0.0,
    effect_b: float = 0.0,
    interaction: float = 0.0,
    model_sd: float = MODEL_SD,
    source_sd: float = 0.3,
    noise: float = 0.5,
    shared_seed_sd: float = 0.0,
    seed_offset: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A 2x2x2 factorial sweep (axes A 0/1, B x/y, C False/True) with known effects.

    value = clip difficulty (sd 3, shared by all runs) + variant x source term (sd source_sd)
            + model offset (sd model_sd, one per variant x seed) + seed offset shared by all
            variants (sd shared_seed_sd) + planted effects + clip noise (sd noise).
    psnr is that value; lpips is -0.1 x an independent draw of it (the same planted effects).
    `model_sd=0, source_sd=0, shared_seed_sd>0` is the old generator, where every variant of
    one seed shares the same offset and pairing alone removes it.
    """
    n_clips = sources * clips_per_source
    cells = list(itertools.product([0, 1], ["x", "y"], [False, True]))
    n_runs = len(cells) * seeds
    a = np.repeat([c[0] for c in cells], seeds)  # (R,) runs ordered variant-major, then seed
    bb = np.repeat([int(c[1] == "y") for c in cells], seeds)
    seed = np.tile(np.arange(seeds), len(cells)) + seed_offset
    source_of_clip = np.arange(n_clips) // clips_per_source
    planted = effect_a * a + effect_b * bb + interaction * a * bb

    def draw(g: np.random.Generator) -> np.ndarray:  # (R, C) one metric's values: every noise term drawn anew
        clip_level = g.normal(0, 3.0, n_clips)  # (C,)
        by_source = np.repeat(g.normal(0, source_sd, (len(cells), sources)), seeds, axis=0)[:, source_of_clip]  # (R, C)
        offset = g.normal(0, model_sd, n_runs) + g.normal(0, shared_seed_sd, seeds)[seed - seed_offset]  # (R,)
        return clip_level + by_source + (offset + planted)[:, None] + g.normal(0, noise, (n_runs, n_clips))

    value = draw(rng)
    # lpips has its own noise (a child stream: psnr's draws stay those of `rng`), so a family of
    # two metrics is 2 x 6 honest tests, not 6 tests counted twice
    second = -0.1 * draw(rng.spawn(1)[0])
    run_ids = np.array([f"r-{c[0]}-{c[1]}-{c[2]}-{s + seed_offset}" for c in cells for s in range(seeds)])
    runs = pd.DataFrame({"run_id": run_ids, "variant": [f"A={c[0]},B={c[1]},C={c[2]}" for c in cells for _ in range(seeds)],
                         "seed": seed, "status": "done", "A": a, "B": np.repeat([c[1] for c in cells], seeds),
                         "C": np.repeat([c[2] for c in cells], seeds)})  # fmt: skip
    clip_ids = np.array([f"v{g}:c{k}" for k, g in enumerate(source_of_clip)])
    long = {"run_id": np.repeat(run_ids, n_clips), "seed": np.repeat(seed, n_clips), "split": "heldout",
            "clip_id": np.tile(clip_ids, n_runs), "source_id": np.tile([f"v{g}" for g in source_of_clip], n_runs)}  # fmt: skip
    metrics = pd.concat([pd.DataFrame({**long, "metric": "psnr", "value": value.ravel()}),
                         pd.DataFrame({**long, "metric": "lpips", "value": second.ravel()})], ignore_index=True)  # fmt: skip
    return metrics, runs


def _row(rep, axis="A", metric="psnr"):
    main = rep.main  # a boolean mask, not .query: query's expression parser cost 16 ms of a 40 ms replicate
    return main[(main["metric"] == metric) & (main["axis"] == axis)].iloc[0]


def _many(n: int, seed: int, **kw) -> list:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        metrics, runs = sweep(rng, **kw)
        out.append(_row(factorial_effects(metrics, runs, ["A", "B", "C"], axis_levels=LEVELS, metric_names=["psnr"])))
    return out


# ----------------------------------------------------------------------------- known answers


@pytest.mark.parametrize("seeds", [3, 5])
def test_null_effect_ci_covers_zero_at_nominal_rate(seeds):
    # the interval is slightly conservative here: the source term's df cap and its clamp at 0
    # widen it most when the seed mean square is small by chance (96.6% at 3 seeds over 10^5
    # crossed-level simulations of this design; docs/statistics.md)
    rows = _many(400, 100 + seeds, seeds=seeds)
    coverage = np.mean([r.ci_low <= 0 <= r.ci_high for r in rows])
    assert 0.93 <= coverage <= 0.985, coverage
    assert all(r.status == "estimated" and r.n_seeds == seeds and r.n_sources == 4 for r in rows)


def test_one_seed_gives_no_verdict_and_why():
    rows = _many(200, 7, seeds=1)  # the refusal is not statistical; 200 sweeps bound the clip-level coverage well
    assert all(r.status == "one_seed" and r.better is None and not r.significant for r in rows)
    assert all(r.verdict.startswith(ONE_SEED) and np.isnan(r.p_value) and np.isnan(r.ci_low) for r in rows)
    # the clip-level interval it still shows ignores the model offsets: it covers 0 far too rarely
    clip_coverage = np.mean([r.clip_ci_low <= 0 <= r.clip_ci_high for r in rows])
    assert clip_coverage < 0.8, clip_coverage


def test_planted_effect_of_three_noise_sds_found_with_five_seeds():
    rows = _many(400, 11, seeds=5, effect_a=3 * MODEL_SD)
    found = np.mean([r.significant and r.better == 1 for r in rows])
    assert found >= 0.90, found
    assert abs(np.mean([r.estimate for r in rows]) - 3.0) < 0.1


def test_old_generator_shared_seed_offset_still_covered():
    # every variant of one seed shares its offset (no variant x seed term): pairing by seed
    # block removes it. Here the interval is conservative (about 99%): the estimator always
    # keeps the seed term, whose mean square has only 2 degrees of freedom with 3 seeds
    rows = _many(400, 5, seeds=3, model_sd=0.0, source_sd=0.0, shared_seed_sd=2.0, noise=1.0)
    coverage = np.mean([r.ci_low <= 0 <= r.ci_high for r in rows])
    assert coverage >= 0.93, coverage


def test_holm_controls_family_wise_error_on_a_null_sweep():
    # 3 seeds x 16 independent scenes (the generation metrics' default held-out set): the
    # regime where dropping the seed term by pretest put Holm's family-wise error at 20%
    rng = np.random.default_rng(21)
    any_raw, any_adjusted, family = [], [], set()
    for _ in range(200):
        metrics, runs = sweep(rng, seeds=3, sources=16, clips_per_source=1, model_sd=0.5)
        rep = factorial_effects(metrics, runs, ["A", "B", "C"], axis_levels=LEVELS, higher_is_better={"lpips": False})
        tested = pd.concat([rep.main, rep.interactions])
        any_raw.append(tested["significant_raw"].any())
        any_adjusted.append(tested["significant"].any())
        family.add(rep.family_size)
    assert family == {12}  # 2 metrics x (3 axes + 3 interactions)
    assert np.mean(any_adjusted) <= 0.08, np.mean(any_adjusted)
    assert np.mean(any_raw) > 2 * np.mean(any_adjusted)


# ----------------------------------------------------------------------------- the estimator against references


def test_one_source_reduces_to_paired_t_test_over_seeds():
    rng = np.random.default_rng(3)
    d = rng.normal(0.4, 1.0, size=(1, 6, 1))
    c = crossed_contrasts(d)
    ref = scipy.stats.ttest_1samp(d[0, :, 0], 0.0)
    t = c.estimate[0] / c.se[0]
    assert t == pytest.approx(ref.statistic) and c.df[0] == pytest.approx(5)
    assert 2 * scipy.stats.t.sf(abs(t), c.df[0]) == pytest.approx(ref.pvalue)


def test_crossed_variance_matches_anova_by_hand():
    rng = np.random.default_rng(4)
    s_n, g_n = 4, 5
    d = 1.0 + rng.normal(0, 1.0, (s_n, 1)) + rng.normal(0, 1.0, (1, g_n)) + rng.normal(0, 0.3, (s_n, g_n))
    c = crossed_contrasts(d[None])
    grand, rows, cols = d.mean(), d.mean(1), d.mean(0)
    ms_r = g_n * sum((r - grand) ** 2 for r in rows) / (s_n - 1)
    ms_c = s_n * sum((x - grand) ** 2 for x in cols) / (g_n - 1)
    ms_e = sum((d[i, j] - rows[i] - cols[j] + grand) ** 2 for i in range(s_n) for j in range(g_n)) / ((s_n - 1) * (g_n - 1))
    assert ms_r > ms_e and ms_c > ms_e
    assert c.se[0] ** 2 == pytest.approx((ms_r + ms_c - ms_e) / (s_n * g_n))

    def satterthwaite(seed_ms: float) -> float:
        terms = [(seed_ms, s_n - 1), (ms_c, g_n - 1), (-ms_e, (s_n - 1) * (g_n - 1))]
        return sum(t for t, _ in terms) ** 2 / sum(t * t / f for t, f in terms)

    # Satterthwaite's df, capped by its value with MS_seed at the 95% upper confidence limit,
    # and never below the fewest df of the mean squares in the sum
    upper = ms_r * (s_n - 1) / scipy.stats.chi2.ppf(0.05, s_n - 1)
    assert c.df[0] == pytest.approx(max(min(satterthwaite(ms_r), satterthwaite(upper)), min(s_n, g_n) - 1))
    assert c.var_seed[0] == pytest.approx((ms_r - ms_e) / g_n) and c.var_resid[0] == pytest.approx(ms_e)
    # the planning formula reproduces the same SE from the estimated components at this design
    se, df = plan_variance(c.var_seed[0], c.var_source[0], c.var_resid[0], s_n, g_n)
    assert se == pytest.approx(c.se[0]) and df == pytest.approx(c.df[0])


def _null_tables(rng: np.random.Generator, n: int, seeds: int, sources: int, var_seed: float, var_source: float) -> np.ndarray:
    """`(n, S, G)` null contrast tables D = a[s] + b[g] + e[s, g] with var_resid 1."""
    return (rng.normal(0, np.sqrt(var_seed), (n, seeds, 1)) + rng.normal(0, np.sqrt(var_source), (n, 1, sources))
            + rng.normal(0, 1.0, (n, seeds, sources)))  # fmt: skip


@pytest.mark.parametrize("seeds, sources, var_seed, var_source, n", [(2, 16, 0.25, 0.1, 10000), (3, 16, 0.25, 0.1, 10000),
                                                                      (2, 192, 0.01, 0.04, 2500), (3, 192, 0.01, 0.04, 2500)])
def test_crossed_tail_is_calibrated_with_few_seeds_and_many_sources(seeds, sources, var_seed, var_source, n):
    # Holm compares the smallest p with alpha/m, so the tail matters, not just 95% coverage.
    # Dropping the seed term whenever MS_seed < MS_resid, or taking Satterthwaite's df from
    # the same mean squares, gave P(p < 0.005) of 0.018-0.036 on these four designs.
    d = _null_tables(np.random.default_rng(seeds * 1000 + sources), n, seeds, sources, var_seed, var_source)
    c = crossed_contrasts(d)
    p = t_pvalue(c.estimate, c.se, c.df)
    covered = np.abs(c.estimate) <= t_quantile(c.df, 0.975) * c.se
    assert np.mean(p < 0.005) <= 0.0085, np.mean(p < 0.005)  # nominal 0.005; 3 binomial SEs at n = 2500
    assert np.mean(p < 0.05) <= 0.06, np.mean(p < 0.05)
    assert 0.94 <= np.mean(covered) <= 0.99, np.mean(covered)


def test_crossed_df_keeps_the_source_dfs_when_sources_dominate():
    # a flat df of S - 1 would hold the tail too, but costs power where the source term is
    # most of the variance; the capped Satterthwaite df keeps it (docs/statistics.md)
    d = _null_tables(np.random.default_rng(5), 2000, 3, 16, 0.0, 1.0)
    assert np.median(crossed_contrasts(d).df) > 2.5  # S - 1 = 2


def test_missing_block_and_source_are_dropped_not_imputed():
    d = np.arange(12, dtype=float).reshape(1, 3, 4) + np.random.default_rng(0).normal(0, 0.1, (1, 3, 4))
    d[0, 1, :] = np.nan  # a whole seed block failed
    d[0, 2, 3] = np.nan  # one source unscored in a kept block
    c = crossed_contrasts(d)
    assert c.n_seeds[0] == 2 and c.n_sources[0] == 3 and c.n_seeds_missing[0] == 1
    assert c.estimate[0] == pytest.approx(np.nanmean(d[0][[0, 2]][:, :3]))


def test_holm_and_bh_match_hand_values():
    p = np.array([0.01, 0.04, 0.03, np.nan, 0.005])
    assert np.allclose(holm(p)[[4, 0, 2, 1]], [0.02, 0.03, 0.06, 0.06]) and np.isnan(holm(p)[3])
    assert np.allclose(benjamini_hochberg(p)[[4, 0, 2, 1]], [0.02, 0.02, 0.04, 0.04])


# ----------------------------------------------------------------------------- report behaviour


def test_planted_main_effect_found_with_direction_and_verdict():
    metrics, runs = sweep(np.random.default_rng(1), seeds=4, effect_a=4.0)
    rep = factorial_effects(metrics, runs, ["A", "B", "C"], axis_levels=LEVELS, higher_is_better={"lpips": False})
    row = _row(rep)
    assert row.level_a == 1 and row.level_b == 0 and abs(row.estimate - 4.0) < 1.0
    assert row.significant and row.ci_low > 0 and not row.ci_includes_zero
    assert row.better == 1 and row.verdict.startswith("A=1 is better than A=0") and "4 seeds x 4 sources" in row.verdict
    lp = _row(rep, metric="lpips")  # lpips = -0.1 x the planted effect, lower is better: A=1 is better again
    assert lp.estimate < 0 and lp.better == 1
    assert rep.n_seeds == 4 and rep.n_sources == 4 and rep.n_clips == 12 and rep.runs_used == 32
    assert "4 seed block(s) x 4 source video(s)" in rep.summary and "Holm" in rep.summary
    assert any("12 held-out clips come from 4 independent source videos" in n for n in rep.notes)


def test_null_verdict_says_no_difference_and_gives_the_noise_floor():
    metrics, runs = sweep(np.random.default_rng(2), seeds=3)
    rep = factorial_effects(metrics, runs, ["A", "B", "C"], axis_levels=LEVELS, metric_names=["psnr"])
    nulls = rep.main[~rep.main.significant]
    assert len(nulls) and nulls.verdict.str.startswith(NO_EFFECT).all()
    assert (nulls.mde80 > 0).all() and nulls.verdict.str.contains("would likely be missed").all()
    assert rep.interactions.verdict.str.startswith(NO_INTERACTION).all()


def test_raw_significant_but_not_after_correction_is_said():
    rng = np.random.default_rng(0)
    for _ in range(200):
        metrics, runs = sweep(rng, seeds=3)
        rep = factorial_effects(metrics, runs, ["A", "B", "C"], axis_levels=LEVELS)
        raw_only = rep.main[rep.main.significant_raw & ~rep.main.significant]
        if len(raw_only):
            assert raw_only.verdict.str.contains("after Holm correction over 12 tests").all()
            assert raw_only.better.isna().all()
            return
    pytest.fail("no raw-only significant effect in 200 null sweeps")


def test_axis_that_cannot_change_a_metric_is_not_applicable():
    metrics, runs = sweep(np.random.default_rng(3), seeds=3)
    # C is a DiT-like axis on a VAE metric: both C levels share the same scores
    pair = metrics.merge(runs[["run_id", "A", "B", "C", "seed"]], on=["run_id", "seed"])
    twin = pair[~pair["C"]].set_index(["A", "B", "seed", "clip_id", "metric"])["value"]
    key = pd.MultiIndex.from_frame(pair[["A", "B", "seed", "clip_id", "metric"]])
    metrics["value"] = twin.reindex(key).to_numpy()
    rep = factorial_effects(metrics, runs, ["A", "B", "C"], axis_levels=LEVELS)
    c = rep.main.query("axis == 'C'")
    assert (c.status == "not_applicable").all() and c.verdict.str.startswith(NOT_APPLICABLE).all()
    assert c.p_value.isna().all() and rep.family_size == 2 * 6 - 2 - 4  # C and its interactions are out of the family
    assert (rep.interactions.query("axis_b == 'C'").status == "not_applicable").all()
    best = rep.best.query("metric == 'psnr'").iloc[0]  # the two C twins share the top place
    assert "(identical on this metric: " in best.verdict and best.status in ("best", "tied")


@pytest.mark.parametrize("shared", [True, False])
def test_identical_scores_from_separate_stage_runs_are_not_called_not_applicable(shared):
    """With the metrics' `producer` column, an exactly-zero contrast is "not applicable" only where the two sides'
    scores come from the same stage runs (a DiT axis on a VAE metric); where separate runs computed the same
    scores (a switch nothing reads), it is "identical", with a verdict that says to check the switch."""
    metrics, runs = sweep(np.random.default_rng(3), seeds=3)
    pair = metrics.merge(runs[["run_id", "A", "B", "C", "seed"]], on=["run_id", "seed"])
    twin = pair[~pair["C"]].set_index(["A", "B", "seed", "clip_id", "metric"])["value"]
    metrics["value"] = twin.reindex(pd.MultiIndex.from_frame(pair[["A", "B", "seed", "clip_id", "metric"]])).to_numpy()
    parts = ["A", "B", "seed"] if shared else ["A", "B", "C", "seed"]
    metrics["producer"] = "eval_recon/" + pair[parts].astype(str).agg("-".join, axis=1).to_numpy()
    rep = factorial_effects(metrics, runs, ["A", "B", "C"], axis_levels=LEVELS)
    c, inter = rep.main.query("axis == 'C'"), rep.interactions.query("axis_b == 'C'")
    expected = "not_applicable" if shared else "identical"
    assert (c.status == expected).all() and (inter.status == expected).all() and c.p_value.isna().all()
    if shared:
        assert c.verdict.str.startswith(NOT_APPLICABLE).all()
    else:
        assert c.verdict.str.contains("although separate stage runs computed them").all()
        assert c.verdict.str.contains("check that it reaches the model").all()
    assert rep.family_size == 2 * 6 - 2 - 4  # untested either way: C and its interactions are out of the family
    assert (rep.main.query("axis != 'C'").status == "estimated").all()
    # a store written before the column (producer "") keeps the old reading
    rep_old = factorial_effects(metrics.assign(producer=""), runs, ["A", "B", "C"], axis_levels=LEVELS)
    assert (rep_old.main.query("axis == 'C'").status == "not_applicable").all()


def test_only_done_runs_count_and_failed_blocks_are_reported():
    metrics, runs = sweep(np.random.default_rng(6), seeds=3, effect_a=1.0)
    runs.loc[runs.run_id == "r-1-x-False-0", "status"] = "failed"
    runs.loc[runs.run_id == "r-0-y-True-1", "status"] = "running"
    metrics.loc[metrics.run_id == "r-1-x-False-0", "value"] = 1e6  # a failed run's leftovers must not leak in
    extra = pd.DataFrame([{"run_id": "r-extra", "variant": "A=1,B=x,C=False", "seed": 9, "status": "done", "A": 1, "B": "x", "C": False}])
    rep = factorial_effects(metrics, pd.concat([runs, extra], ignore_index=True), ["A", "B", "C"], axis_levels=LEVELS)
    assert rep.runs_used == 22 and rep.runs_excluded == {"failed": 1, "running": 1, "done without metrics": 1}
    row = _row(rep)
    assert abs(row.estimate) < 5 and row.n_runs_a == 11 and row.n_runs_b == 11 and row.n_seeds == 3


def test_whole_level_missing_in_a_block_drops_that_block():
    metrics, runs = sweep(np.random.default_rng(7), seeds=3)
    runs.loc[(runs.A == 1) & (runs.seed == 2), "status"] = "failed"
    row = _row(factorial_effects(metrics, runs, ["A", "B", "C"], axis_levels=LEVELS, metric_names=["psnr"]))
    assert row.n_seeds == 2 and row.n_seeds_missing == 1


def test_no_finished_runs_gives_empty_report_with_note():
    metrics, runs = sweep(np.random.default_rng(8))
    runs["status"] = "pending"
    rep = factorial_effects(metrics, runs, ["A"], axis_levels=LEVELS)
    assert rep.main.empty and rep.runs_used == 0 and rep.runs_excluded == {"pending": 24} and rep.notes


def test_without_source_ids_every_clip_is_its_own_source():
    metrics, runs = sweep(np.random.default_rng(9), seeds=3)
    rep = factorial_effects(metrics.drop(columns=["source_id"]), runs, ["A"], axis_levels=LEVELS)
    assert rep.n_sources == 12 and _row(rep).n_sources == 12


def test_set_level_rows_are_not_counted_as_a_source_video():
    # rfvd/fvd rows have clip_id = source_id = "__set__" (one value per run); in a family with
    # per-clip metrics they must not add a 13th clip or a 5th source video to the summary
    metrics, runs = sweep(np.random.default_rng(9), seeds=3)
    rng = np.random.default_rng(1)
    set_rows = pd.DataFrame({"run_id": runs["run_id"], "seed": runs["seed"], "split": "heldout", "clip_id": "__set__",
                             "source_id": "__set__", "metric": "rfvd", "value": rng.normal(10, 1, len(runs))})
    rep = factorial_effects(pd.concat([metrics, set_rows], ignore_index=True), runs, ["A"], axis_levels=LEVELS,
                            metric_names=["psnr", "rfvd"])
    assert (rep.n_sources, rep.n_clips) == (4, 12)
    assert _row(rep, metric="rfvd").n_sources == 1 and _row(rep).n_sources == 4
    assert any("12 held-out clips come from 4" in note for note in rep.notes)


def test_multi_level_axis_gives_every_pair_and_blocks_pair_runs():
    rng = np.random.default_rng(9)
    runs, rows = [], []
    for lvl, s in itertools.product([0.0, 0.1, 1.0], range(5)):
        rid = f"r{lvl}-{s}"
        runs.append({"run_id": rid, "variant": f"w={lvl}", "seed": s, "status": "done", "loss.dwt": lvl})
        offset = rng.normal(0, 0.2)
        for k in range(10):
            rows.append({"run_id": rid, "seed": s, "split": "heldout", "clip_id": f"c{k}", "source_id": f"c{k}",
                         "metric": "psnr", "value": k + 2.0 * lvl + offset + rng.normal(0, 0.3)})  # fmt: skip
    rep = factorial_effects(pd.DataFrame(rows), pd.DataFrame(runs), ["loss.dwt", "seed"], axis_levels={"loss.dwt": [0, 0.1, 1]})
    assert list(zip(rep.main.level_a, rep.main.level_b)) == [(0.1, 0.0), (1.0, 0.0), (1.0, 0.1)]
    assert abs(rep.main.iloc[1].estimate - 2.0) < 0.5 and rep.main.iloc[1].significant
    assert rep.interactions.empty and rep.family_size == 3


def test_planted_interaction_found():
    metrics, runs = sweep(np.random.default_rng(4), seeds=5, interaction=4.0)
    rep = factorial_effects(metrics, runs, ["A", "B", "C"], axis_levels=LEVELS, metric_names=["psnr"])
    ab = rep.interactions.query("axis_a == 'A' and axis_b == 'B'").iloc[0]
    assert abs(ab.estimate - 4.0) < 1.5 and ab.significant and "better with B=y than with B=x" in ab.verdict
    assert len(rep.interactions) == 3


def test_replicate_baseline_check_and_noise_floor():
    rng = np.random.default_rng(12)
    metrics, runs = sweep(rng, seeds=3, effect_a=3.0)
    copy_metrics, copy_runs = sweep(rng, seeds=3, seed_offset=1000)
    keep = copy_runs.query("A == 0 and B == 'x' and not C").assign(replicate="b", block=lambda r: r.seed - 1000,
                                                                     variant="A=0,B=x,C=False,replicate=b")  # fmt: skip
    copy_metrics = copy_metrics[copy_metrics.run_id.isin(keep.run_id)]
    runs = pd.concat([runs.assign(replicate="a", block=runs.seed), keep], ignore_index=True)
    rep = factorial_effects(pd.concat([metrics, copy_metrics]), runs, ["A", "B", "C"], axis_levels=LEVELS,
                            replicate_baseline={"baseline": {"A": 0, "B": "x", "C": False}})  # fmt: skip
    aa = rep.replicate.query("metric == 'psnr'").iloc[0]
    assert aa.status == "estimated" and aa.n_seeds == 3 and aa.variant == "A=0,B=x,C=False"
    assert aa.mde80 > 0 and ("as it should be" in aa.verdict or "A/A check FAILED" in aa.verdict)
    assert _row(rep).n_runs_a == 12  # the copies stay out of the factorial effects
    assert rep.family_size == 12


def test_best_variant_named_only_when_it_beats_every_other():
    metrics, runs = sweep(np.random.default_rng(13), seeds=5, effect_a=5.0, effect_b=5.0)
    best = factorial_effects(metrics, runs, ["A", "B", "C"], axis_levels=LEVELS, metric_names=["psnr"]).best.iloc[0]
    # A=1,B=y with either C is on top; the two C levels are indistinguishable
    assert best.best_variant.startswith("A=1,B=y") and best.status == "tied" and "indistinguishable" in best.verdict
    metrics, runs = sweep(np.random.default_rng(14), seeds=5, effect_a=6.0, effect_b=6.0)
    runs = runs[~runs.C]
    best = factorial_effects(metrics, runs, ["A", "B"], axis_levels=LEVELS, metric_names=["psnr"]).best.iloc[0]
    assert best.best_variant == "A=1,B=y,C=False" and best.status == "best" and best.tied_with == ""


def _two_variant_sweep(values: dict[str, np.ndarray]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Axis A with levels 0/1; values[metric] is `(2, S, G)`: the score of A=a, seed s, source g."""
    shape = next(iter(values.values())).shape
    runs = pd.DataFrame([{"run_id": f"r{a}{s}", "variant": f"A={a}", "seed": s, "status": "done", "A": a}
                         for a in range(2) for s in range(shape[1])])  # fmt: skip
    rows = [{"run_id": f"r{a}{s}", "split": "heldout", "clip_id": f"v{g}", "source_id": f"v{g}", "metric": m, "value": float(v[a, s, g])}
            for m, v in values.items() for a, s, g in itertools.product(*map(range, shape))]  # fmt: skip
    return pd.DataFrame(rows), runs


def test_best_variant_respects_the_correction():
    # psnr: A=1 better by 1.0 / 1.3 / 0.7 in the three seed blocks, p = 0.029 alone; two null
    # metrics make a family of 3, where Holm's adjusted p is 0.087: no effect, so no "best"
    base = np.zeros((2, 3, 4))
    psnr = base + np.array([1.0, 1.3, 0.7])[None, :, None] * np.array([0, 1])[:, None, None]
    noise = np.random.default_rng(0).normal(0, 1, (2, 2, 3, 4))
    metrics, runs = _two_variant_sweep({"psnr": psnr, "m2": noise[0], "m3": noise[1]})
    rep = factorial_effects(metrics, runs, ["A"], axis_levels={"A": [0, 1]})
    row = _row(rep)
    assert 0.02 < row.p_value < 0.05 and not row.significant and row.significant_raw
    best = rep.best.set_index("metric").loc["psnr"]
    assert best.status == "tied" and "after Holm correction over" in best.verdict, best.verdict
    solo = factorial_effects(metrics, runs, ["A"], axis_levels={"A": [0, 1]}, metric_names=["psnr"])
    assert solo.best.iloc[0].status == "best" and _row(solo).significant  # a family of one: the claim stands


def test_zero_variance_contrasts_are_not_turned_into_certainty():
    # 0/1 oracle metrics: both levels at the floor on every scene, or A=1 right everywhere
    floor, separated = np.zeros((2, 3, 8)), np.stack([np.zeros((3, 8)), np.ones((3, 8))])
    metrics, runs = _two_variant_sweep({"oracle_floor": floor, "oracle_split": separated})
    rep = factorial_effects(metrics, runs, ["A"], axis_levels={"A": [0, 1]})
    low, split = _row(rep, metric="oracle_floor"), _row(rep, metric="oracle_split")
    assert low.status == "no_spread" and "floor or ceiling" in low.verdict and NOT_APPLICABLE not in low.verdict
    assert split.status == "no_spread" and np.isnan(split.p_value) and np.isnan(split.ci_low)
    assert "sign test over the 3 seed blocks gives p = 0.25" in split.verdict and "CI" not in split.verdict
    assert rep.family_size == 0 and (rep.best.status != "best").all()
    # one value per side (one seed of a set-level metric such as rfvd): a floor cannot be told
    # from a shared computation, so it stays "not applicable" as before
    metrics, runs = _two_variant_sweep({"rfvd": np.full((2, 1, 1), 7.0)})
    assert _row(factorial_effects(metrics, runs, ["A"], axis_levels={"A": [0, 1]}), metric="rfvd").status == "not_applicable"


def test_a_variant_missing_from_every_block_does_not_bias_another_axis():
    # B raises psnr by 2, A does nothing; A=1,B=y failed on every seed. Averaging whatever
    # was present made A's contrast -B/2 = -1 in every block: a confident, wrong verdict.
    # Now each effect is compared within the combinations of the other axes that have both sides
    metrics, runs = sweep(np.random.default_rng(15), seeds=3, effect_b=2.0, model_sd=0.2, source_sd=0.1)
    runs.loc[(runs.A == 1) & (runs.B == "y"), "status"] = "failed"
    rep = factorial_effects(metrics, runs, ["A", "B", "C"], axis_levels=LEVELS, metric_names=["psnr"])
    a, b, c = (_row(rep, axis=x) for x in "ABC")
    assert a.status == b.status == c.status == "estimated" and a.n_seeds == 3
    assert abs(a.estimate) < 0.4 and abs(b.estimate - 2.0) < 0.4, (a.estimate, b.estimate)
    note = "combinations of the other axes: A=1,B=y,C=False has no finished run with a score)"
    assert a.verdict.endswith(f"(within 2 of 4 {note}") and c.verdict.endswith(f"(within 3 of 4 {note}")
    # no combination of C has all four A x B cells: that interaction is refused, naming the variant
    ab = rep.interactions.query("axis_a == 'A' and axis_b == 'B'").iloc[0]
    assert ab.status == "not_estimable" and not ab.significant
    assert ab.verdict == ("not estimable: no finished run of A=1,B=y,C=False has a score for this metric, so the "
                          "effect of A x B would be confounded with the other axes")  # fmt: skip


def test_variant_differences():
    metrics, runs = sweep(np.random.default_rng(11), seeds=4, effect_a=5.0)
    out = variant_differences(metrics, runs, ["A=0,B=x,C=False", "A=1,B=x,C=False"], metric_names=["psnr"])
    row = out.iloc[0]
    assert len(out) == 1 and row.variant_a == "A=1,B=x,C=False" and abs(row.estimate - 5.0) < 2.0
    assert row.better == "A=1,B=x,C=False"


def test_pareto_front():
    df = pd.DataFrame({"q": [30, 31, 29, 33, np.nan, 33], "cost": [1.0, 2.0, 2.0, 5.0, 0.1, 6.0]}, index=list("abcdef"))
    assert pareto_front(df, "q", "cost").to_dict() == {"a": True, "b": True, "c": False, "d": True, "e": False, "f": False}
    lower = pareto_front(df, "q", "cost", higher_is_better=False)
    assert lower.to_dict() == {"a": True, "b": False, "c": True, "d": False, "e": False, "f": False}
