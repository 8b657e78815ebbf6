"""Pairwise-preference statistics against published values, `choix`, and simulated studies."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import brentq

from evaluation import bradley_terry as bt


def _simulate(strengths: np.ndarray, n_raters: int, votes_per_rater: int, rng: np.random.Generator,
              tie_prob: float = 0.0, rater_sd: float = 0.0) -> tuple[np.ndarray, ...]:
    """Votes from a Bradley-Terry population; raters may carry a random bias towards system a."""
    k = len(strengths)
    n = n_raters * votes_per_rater
    clusters = np.repeat(np.arange(n_raters), votes_per_rater)
    a = rng.integers(0, k, n)
    b = (a + rng.integers(1, k, n)) % k  # any other system
    bias = rng.normal(0.0, rater_sd, n_raters)[clusters] if rater_sd else 0.0
    p = 1.0 / (1.0 + np.exp(-(strengths[a] - strengths[b] + bias)))
    u = rng.random(n)
    score = np.where(u < tie_prob, 0.5, (rng.random(n) < p).astype(float))
    return a, b, score, clusters


def test_fleiss_kappa_matches_published_example():
    # Fleiss (1971) as reproduced on Wikipedia: 10 subjects, 14 raters, 5 categories -> 0.210
    counts = np.array([[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
                       [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]])
    assert bt.fleiss_kappa(counts) == pytest.approx(0.210, abs=5e-4)


def test_krippendorff_alpha_matches_published_example():
    # Krippendorff (2011), "Computing Krippendorff's alpha-reliability", nominal example: 0.743
    data = [[1, 2, 3, 3, 2, 1, 4, 1, 2, 0, 0, 0], [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, 0, 3],
            [0, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, 0], [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, 0]]
    counts = np.zeros((12, 5))
    for observer in data:
        for unit, value in enumerate(observer):
            if value:
                counts[unit, value - 1] += 1
    assert bt.krippendorff_alpha_nominal(counts) == pytest.approx(0.743, abs=5e-4)


def test_perfect_agreement_and_chance():
    assert bt.krippendorff_alpha_nominal(np.array([[3, 0], [0, 3], [3, 0]])) == pytest.approx(1.0)
    assert bt.fleiss_kappa(np.array([[3, 0], [0, 3], [3, 0]])) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    random_counts = rng.multinomial(5, [0.5, 0.5], size=2000)
    assert abs(bt.fleiss_kappa(random_counts)) < 0.05


def test_bt_matches_choix_mle_without_prior():
    choix = pytest.importorskip("choix")
    rng = np.random.default_rng(1)
    truth = np.array([1.0, 0.4, 0.0, -0.3, -1.1])
    a, b, score, _ = _simulate(truth, 40, 25, rng)
    data = [(int(i), int(j)) if s == 1 else (int(j), int(i)) for i, j, s in zip(a, b, score)]
    ours = bt.bt_fit(bt.win_counts(a, b, score, 5), l2=0.0)
    ref = choix.ilsr_pairwise(5, data, alpha=0.0, tol=1e-12, max_iter=1000)
    np.testing.assert_allclose(ours, ref - ref.mean(), atol=1e-6)
    # and the fit recovers the generating strengths (1000 votes): within 0.25 each
    np.testing.assert_allclose(ours, truth - truth.mean(), atol=0.25)


def test_bt_with_ties_and_prior_matches_choix():
    choix = pytest.importorskip("choix")
    rng = np.random.default_rng(2)
    truth = np.array([0.8, 0.0, -0.8, 0.3])
    a, b, score, _ = _simulate(truth, 30, 20, rng, tie_prob=0.2)
    # A tie is half a win each way; doubling every vote keeps the maximiser, so choix (integer
    # wins only) sees each decided vote twice and each tie as one win each way. Doubling the
    # data doubles the log-likelihood, so choix's penalty must double to match ours.
    data = []
    for i, j, s in zip(a, b, score):
        i, j = int(i), int(j)
        data += [(i, j), (i, j)] if s == 1 else [(j, i), (j, i)] if s == 0 else [(i, j), (j, i)]
    l2 = 0.05
    ours = bt.bt_fit(bt.win_counts(a, b, score, 4), l2=l2)
    ref = choix.opt_pairwise(4, data, alpha=2 * l2, tol=1e-10)
    np.testing.assert_allclose(ours, ref - ref.mean(), atol=1e-4)


def test_a_stack_of_win_matrices_fits_each_as_it_would_alone():
    """The bootstrap fits its replicates as one (B, K, K) stack: each must stop on its own step."""
    rng = np.random.default_rng(4)
    truth = np.array([0.9, 0.1, -0.4])
    stack = np.stack([bt.win_counts(*_simulate(truth, 5 + 10 * i, 6, rng)[:3], 3) for i in range(6)])
    stack[2] *= 0.0  # no votes: stays at 0
    stack[3, 0] *= 50.0  # one dominant system: many more Newton steps than the others
    for l2 in (1e-3, 0.0):
        together = bt.bt_fit(stack, l2=l2)
        assert together.shape == (6, 3)
        np.testing.assert_array_equal(together, np.stack([bt.bt_fit(w, l2=l2) for w in stack]))
        np.testing.assert_array_equal(bt.bt_fit(stack.reshape(2, 3, 3, 3), l2=l2), together.reshape(2, 3, 3))


def test_bt_bootstrap_ranks_and_bounds():
    rng = np.random.default_rng(3)
    truth = np.array([1.5, 0.5, -0.5, -1.5])
    a, b, score, raters = _simulate(truth, 60, 20, rng)
    table = bt.bt_ratings(a, b, score, raters, ["w", "x", "y", "z"], n_boot=300, l2=1e-4)
    assert list(table["system"]) == ["w", "x", "y", "z"]
    for row in table.itertuples():
        assert row.ci_low <= row.rating <= row.ci_high
        assert row.rank_low <= row.rank <= row.rank_high
    assert table.loc[0, "rank_high"] == 1  # 3 units apart: the best is certainly first
    # half the raters prefer p, half prefer q: resampling raters must leave their order open
    a = np.array([0] * 60)
    b = np.array([1] * 60)
    score = np.array([1.0] * 30 + [0.0] * 30)
    raters = np.repeat(np.arange(20), 3)
    close = bt.bt_ratings(a, b, score, raters, ["p", "q"], n_boot=300).set_index("system")
    assert (close["rank_low"] == 1).all() and (close["rank_high"] == 2).all()


def test_bt_bootstrap_interval_coverage_over_60_studies():
    """Pooled over 4 systems x 60 simulated studies, 95% rating CIs cover the truth 88-99% of the time."""
    rng = np.random.default_rng(4)
    truth = np.array([1.0, 0.3, -0.2, -1.1])
    centred = truth - truth.mean()
    hits = []
    for seed in range(60):
        a, b, score, raters = _simulate(truth, 30, 12, rng)
        table = bt.bt_ratings(a, b, score, raters, ["0", "1", "2", "3"], n_boot=200, l2=1e-4, seed=seed)
        for row in table.itertuples():
            hits.append(row.ci_low <= centred[int(row.system)] <= row.ci_high)
    coverage = float(np.mean(hits))
    print(f"BT bootstrap CI coverage: {coverage:.3f} over {len(hits)} intervals")
    assert 0.88 <= coverage <= 0.99


def test_bt_handles_a_system_that_always_wins():
    wins = np.array([[0.0, 5.0], [0.0, 0.0]])
    theta = bt.bt_fit(wins, l2=1e-3)
    assert np.all(np.isfinite(theta)) and theta[0] > theta[1]


@pytest.mark.parametrize("tie_prob,rater_sd,strength", [(0.0, 0.0, 0.4), (0.15, 0.0, 1.7), (0.1, 0.8, 0.6)])
def test_win_rate_ci_coverage_over_200_synthetic_studies(tie_prob, rater_sd, strength):
    """95% CIs of one pair's win rate (ties as half) cover the true rate in 92-98% of studies."""
    rng = np.random.default_rng(int(strength * 100) + int(rater_sd * 10))
    truth = np.array([strength, 0.0])
    # true rate: mean score of system 0 over the rater population (Monte Carlo, 2e6 draws)
    bias = rng.normal(0.0, rater_sd, 2_000_000) if rater_sd else np.zeros(1)
    p_win = 1.0 / (1.0 + np.exp(-(strength + bias)))
    true_rate = float(np.mean(tie_prob * 0.5 + (1 - tie_prob) * p_win))
    covered = 0
    for _ in range(200):
        n_raters, per = 25, 8
        raters = np.repeat(np.arange(n_raters), per)
        r_bias = rng.normal(0.0, rater_sd, n_raters)[raters] if rater_sd else 0.0
        p = 1.0 / (1.0 + np.exp(-(truth[0] - truth[1] + r_bias)))
        score = np.where(rng.random(raters.size) < tie_prob, 0.5, (rng.random(raters.size) < p).astype(float))
        _, lo, hi, _ = bt.win_rate_ci(score, raters)
        covered += lo <= true_rate <= hi
    coverage = covered / 200
    print(f"coverage tie={tie_prob} rater_sd={rater_sd} true_rate={true_rate:.3f}: {coverage:.3f}")
    assert 0.92 <= coverage <= 0.98


def test_pairwise_and_overall_win_rates_count_ties_as_half():
    a = np.array([0, 0, 1, 0])
    b = np.array([1, 1, 0, 2])
    score = np.array([1.0, 0.5, 1.0, 0.0])  # 0 beats 1, tie, 1 beats 0, 2 beats 0
    pw = bt.pairwise_win_rates(a, b, score, None, ["x", "y", "z"])
    row = pw[(pw.system == "x") & (pw.opponent == "y")].iloc[0]
    assert row.win_rate == pytest.approx(0.5) and (row.wins, row.ties, row.losses) == (1, 1, 1)
    mat = bt.win_rate_matrix(pw, ["x", "y", "z"])
    assert mat.loc["z", "x"] == 1.0 and np.isnan(mat.loc["y", "z"])
    overall = bt.overall_win_rates(a, b, score, None, ["x", "y", "z"]).set_index("system")
    assert overall.loc["x", "win_rate"] == pytest.approx(1.5 / 4)
    assert overall.loc["x", "ci_low"] < 1.5 / 4 < overall.loc["x", "ci_high"]


def _crossed_study(rng: np.random.Generator, strengths: np.ndarray, n_raters: int, n_prompts: int,
                   per_rater: int, rater_sd: float, prompt_sd: float, tie_prob: float = 0.1) -> tuple[np.ndarray, ...]:
    """One partially crossed survey: each rater judges `per_rater` distinct (prompt, system pair) cells.

    logit P(a beats b) = s_a - s_b + u[r, a] - u[r, b] + v[q, a] - v[q, b], with rater x system
    effects u ~ N(0, rater_sd^2 / 2) (a rater's own taste) and prompt x system effects
    v ~ N(0, prompt_sd^2 / 2) (a prompt favours one side), so a pair's rater and prompt effects
    have sd `rater_sd` and `prompt_sd`, symmetric around 0. Sides are drawn at random.
    Returns (a, b, score_a, raters, prompts), each (n_raters * per_rater,).
    """
    k = len(strengths)
    pairs = np.array([(i, j) for i in range(k) for j in range(i + 1, k)])  # (P, 2)
    cells = np.argsort(rng.random((n_raters, len(pairs) * n_prompts)), axis=1)[:, :per_rater].ravel()  # (R * M,)
    raters = np.repeat(np.arange(n_raters), per_rater)
    prompts = cells % n_prompts
    pair = pairs[cells // n_prompts]  # (R * M, 2)
    swap = rng.random(cells.size) < 0.5
    a, b = np.where(swap, pair[:, 1], pair[:, 0]), np.where(swap, pair[:, 0], pair[:, 1])
    u = rng.normal(0.0, rater_sd / np.sqrt(2.0), (n_raters, k))
    v = rng.normal(0.0, prompt_sd / np.sqrt(2.0), (n_prompts, k))
    logit = strengths[a] - strengths[b] + u[raters, a] - u[raters, b] + v[prompts, a] - v[prompts, b]
    decided = (rng.random(cells.size) < 1.0 / (1.0 + np.exp(-logit))).astype(float)
    score = np.where(rng.random(cells.size) < tie_prob, 0.5, decided)
    return a, b, score, raters, prompts


def _first_system_scores(a: np.ndarray, score: np.ndarray) -> np.ndarray:
    """A two-system study's scores from system 0's side (sides were drawn at random)."""
    return np.where(a == 0, score, 1.0 - score)


# Realistic effect sizes on the logit scale: raters' own taste sd 0.5, prompt x system sd 1.0
# (one prompt in six favours a side by more than 1 logit, i.e. 73% against 50%).
RATER_SD, PROMPT_SD = 0.5, 1.0


def _true_win_rate(delta: float, tie_prob: float = 0.1) -> float:
    """Population win rate at strength gap `delta` (rater and prompt effects integrated out)."""
    x, w = np.polynomial.hermite_e.hermegauss(80)
    sd = np.hypot(RATER_SD, PROMPT_SD)
    return float(tie_prob * 0.5 + (1.0 - tie_prob) * np.sum(w / w.sum() / (1.0 + np.exp(-(delta + sd * x)))))


def _reference_two_way_var(scores: np.ndarray, raters: np.ndarray, prompts: np.ndarray) -> float:
    """CGM (2011) two-way variance of a mean written as resid' (S_r + S_q - S_rq) resid / n^2 with dense
    same-cluster indicator matrices, each scaled by G/(G-1): an independent check of the bincount path."""
    resid = scores - scores.mean()
    n = scores.size

    def term(same: np.ndarray) -> float:
        groups = len({tuple(row) for row in same.astype(int)})  # distinct rows = clusters
        return groups / (groups - 1) * float(resid @ same @ resid) / n**2

    same_r = raters[:, None] == raters[None, :]
    same_q = prompts[:, None] == prompts[None, :]
    return term(same_r) + term(same_q) - term(same_r & same_q)


def test_two_way_variance_matches_a_dense_reference():
    rng = np.random.default_rng(11)
    a, _, score, raters, prompts = _crossed_study(rng, np.zeros(2), 8, 10, 6, RATER_SD, PROMPT_SD)
    score = _first_system_scores(a, score)
    result = bt.win_rate_test(score, raters, prompt_clusters=prompts)
    assert result.se**2 == pytest.approx(_reference_two_way_var(score, raters, prompts), rel=1e-12)
    assert result.df == 7 and result.clusters == (8, 10)
    # one-way terms: the old rater-only variance is unchanged, and prompt-only is its mirror
    assert bt.win_rate_test(score, raters).se == pytest.approx(bt.win_rate_test(score, None, 0.95, raters).se)
    assert bt.win_rate_test(score, raters).df == 7 and np.isinf(bt.win_rate_test(score).df)


def test_win_rate_api_keeps_its_old_forms():
    s = np.array([1.0, 0.0, 1.0, 0.5, 1.0, 1.0, 0.0, 1.0])
    raters = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    prompts = np.array([0, 1, 0, 1, 0, 1, 0, 1])
    rate, lo, hi, n_eff = bt.win_rate_ci(s)  # independent votes: plain Wilson with z on n
    assert rate == pytest.approx(0.6875) and n_eff == pytest.approx(rate * (1 - rate) / (np.var(s, ddof=1) / 8))
    assert (lo, hi) == pytest.approx(bt.wilson_interval(rate, n_eff))
    assert bt.win_rate_ci(list(s), list(raters))[0] == rate  # plain lists still work
    two = bt.win_rate_test(s, raters, prompt_clusters=prompts)
    assert 0.0 <= two.ci_low < rate < two.ci_high <= 1.0 and two.df == 1  # min(4 raters, 2 prompts) - 1
    # one prompt only: that dimension carries no variance information and is left out
    one_prompt = bt.win_rate_test(s, raters, prompt_clusters=np.zeros(8))
    assert one_prompt.clusters == (4,) and one_prompt.se == pytest.approx(bt.win_rate_test(s, raters).se)
    assert bt.win_rate_ci([], None) == (pytest.approx(float("nan"), nan_ok=True), 0.0, 1.0, 0.0)
    # degenerate: every vote won (no variance estimate; the raw count stands in): inside [0, 1], and
    # with 3 prompts (t with 2 df) even 12 straight wins say little about other prompts
    few = bt.win_rate_test(np.ones(12), np.repeat(np.arange(4), 3), prompt_clusters=np.tile(np.arange(3), 4))
    assert few.ci_high == 1.0 and few.ci_low < 0.5 and few.p_value > 0.05 and few.df == 2
    many = bt.win_rate_test(np.ones(48), np.repeat(np.arange(8), 6), prompt_clusters=np.tile(np.arange(6), 8))
    assert many.ci_high == 1.0 and 0.8 < many.ci_low and many.p_value < 0.001


def test_p_value_agrees_with_the_wilson_interval():
    """Raw p < 0.05 exactly when the 95% CI excludes 50% (the test is the one the interval inverts)."""
    rng = np.random.default_rng(12)
    for delta in (0.0, 0.3, 0.6):
        for _ in range(40):
            a, _, score, raters, prompts = _crossed_study(rng, np.array([delta, 0.0]), 12, 15, 8, RATER_SD, PROMPT_SD)
            score = _first_system_scores(a, score)
            r = bt.win_rate_test(score, raters, prompt_clusters=prompts)
            assert (r.p_value < 0.05) == (not r.ci_low <= 0.5 <= r.ci_high), r


def test_two_way_ci_covers_an_equal_pair_and_rater_only_does_not():
    """Equal systems, raters with their own taste, prompts that favour a side: 400 studies of 20 raters x
    30 prompts (each rater judges 15 of them; 300 votes). The two-way 95% CI covers 50% in 93-97% of
    studies; the rater-only interval (the old code, and with t(19) even a little wider than its z)
    covers clearly less, because it treats the prompts' share of the variance as noise that averages out."""
    rng = np.random.default_rng(2025)
    two_way, rater_only = [], []
    for _ in range(400):
        a, _, score, raters, prompts = _crossed_study(rng, np.zeros(2), 20, 30, 15, RATER_SD, PROMPT_SD)
        score = _first_system_scores(a, score)
        _, lo, hi, _ = bt.win_rate_ci(score, raters, prompt_clusters=prompts)
        two_way.append(lo <= 0.5 <= hi)
        _, lo, hi, _ = bt.win_rate_ci(score, raters)
        rater_only.append(lo <= 0.5 <= hi)
    coverage, old = float(np.mean(two_way)), float(np.mean(rater_only))
    print(f"coverage of 50% over 400 null studies: two-way {coverage:.3f}, rater-only {old:.3f}")
    assert 0.93 <= coverage <= 0.97
    assert old < 0.90


def _rater_bootstrap_reference(a, b, score, raters, k, n_boot, l2, seed, confidence=0.95):
    """The rater-only bootstrap as `bt_ratings` computed it before prompt clusters existed (same draws,
    same contraction): (K,) ci_low, ci_high, rank_low, rank_high in system order."""
    codes = pd.factorize(pd.Series(raters))[0]
    per_rater = np.zeros((codes.max() + 1, k, k))
    np.add.at(per_rater, (codes, a, b), score)
    np.add.at(per_rater, (codes, b, a), 1.0 - score)
    draws = np.random.default_rng(seed).multinomial(codes.max() + 1, np.full(codes.max() + 1, 1.0 / (codes.max() + 1)),
                                                    size=n_boot)
    boot = np.stack([bt.bt_fit(w, l2=l2) for w in np.tensordot(draws.astype(np.float64), per_rater, axes=(1, 0))])
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(boot, [alpha, 1.0 - alpha], axis=0)
    ranks = np.argsort(np.argsort(-boot, axis=-1, kind="stable"), axis=-1, kind="stable") + 1
    return (lo, hi, np.floor(np.quantile(ranks, alpha, axis=0)).astype(int),
            np.ceil(np.quantile(ranks, 1.0 - alpha, axis=0)).astype(int))


def test_bt_without_prompt_clusters_is_the_rater_bootstrap_as_before():
    rng = np.random.default_rng(21)
    a, b, score, raters, prompts = _crossed_study(rng, np.array([0.6, 0.2, 0.0, -0.5]), 25, 12, 10, RATER_SD, PROMPT_SD)
    names = ["w", "x", "y", "z"]
    for seed in (0, 5):
        table = bt.bt_ratings(a, b, score, raters, names, n_boot=150, l2=1e-3, seed=seed)
        assert table.equals(bt.bt_ratings(a, b, score, raters, names, n_boot=150, l2=1e-3, seed=seed,
                                          prompt_clusters=None))
        lo, hi, rank_lo, rank_hi = _rater_bootstrap_reference(a, b, score, raters, 4, 150, 1e-3, seed)
        by = table.set_index("system").loc[names]
        assert np.array_equal(by["ci_low"].to_numpy(), lo) and np.array_equal(by["ci_high"].to_numpy(), hi)
        assert np.array_equal(by["rank_low"].to_numpy(), rank_lo)
        assert np.array_equal(by["rank_high"].to_numpy(), rank_hi)
    # with prompts: the same point estimates, other intervals; a single prompt has nothing to
    # resample (weight 1 everywhere), which leaves the rater bootstrap's own draws
    crossed = bt.bt_ratings(a, b, score, raters, names, n_boot=150, seed=5, prompt_clusters=prompts)
    assert crossed[["system", "rating", "rank", "votes"]].equals(table[["system", "rating", "rank", "votes"]])
    assert not np.allclose(crossed["ci_low"], table["ci_low"])
    one = bt.bt_ratings(a, b, score, raters, names, n_boot=150, seed=5, prompt_clusters=np.zeros(a.size))
    pd.testing.assert_frame_equal(one, table, check_exact=False, rtol=0.0, atol=1e-9)
    # one rater, several prompts: the prompts alone are resampled (the rater-only bootstrap has nothing)
    solo = bt.bt_ratings(a, b, score, np.zeros(a.size), names, n_boot=100, prompt_clusters=prompts)
    assert solo["ci_low"].notna().all() and (solo["ci_low"] <= solo["rating"]).all()
    assert bt.bt_ratings(a, b, score, np.zeros(a.size), names, n_boot=100)["ci_low"].isna().all()


def test_pigeonhole_bt_interval_covers_equal_systems_with_few_prompts_and_rater_only_does_not():
    """Two equal systems, raters with their own taste (sd 0.5) and prompts that favour a side (sd 1.0):
    200 studies of 30 raters x 8 prompts, every rater judging every prompt once (240 votes). The
    pigeonhole 95% CI of system 0's rating covers its true value 0 in >= 90% of studies; the
    rater-only bootstrap (the old code) covers it far less, as if 8 prompts were every prompt there is.
    With 4 prompts the pigeonhole bootstrap measured ~90% (0.91 and 0.90 over 200 and 400 studies):
    like any cluster bootstrap it shrinks the prompt term by (P-1)/P, which few prompts feel."""
    rng = np.random.default_rng(2007)
    pigeonhole, rater_only = [], []
    for seed in range(200):
        a, b, score, raters, prompts = _crossed_study(rng, np.zeros(2), 30, 8, 8, RATER_SD, PROMPT_SD)
        for hits, by_prompt in ((pigeonhole, prompts), (rater_only, None)):
            table = bt.bt_ratings(a, b, score, raters, ["0", "1"], n_boot=200, seed=seed,
                                  prompt_clusters=by_prompt).set_index("system")
            hits.append(table.loc["0", "ci_low"] <= 0.0 <= table.loc["0", "ci_high"])
    coverage, old = float(np.mean(pigeonhole)), float(np.mean(rater_only))
    print(f"coverage of system 0's rating over 200 null studies (8 prompts): pigeonhole {coverage:.3f}, "
          f"rater-only {old:.3f}")
    assert coverage >= 0.90
    assert old <= 0.75


def test_planted_preference_is_found_after_holm():
    """Three systems, A's true win rate against B and C is 0.65, B and C equal: 200 studies of 30 raters
    x 60 prompts (40 comparisons each, ~400 votes a pair). A beats B, Holm-adjusted over the 3 pairs,
    in at least 90% of them; the B-C pair is rarely called."""
    delta = brentq(lambda d: _true_win_rate(d) - 0.65, 0.0, 3.0)
    rng = np.random.default_rng(7)
    found, false_claims = [], []
    for _ in range(200):
        a, b, score, raters, prompts = _crossed_study(rng, np.array([delta, 0.0, 0.0]), 30, 60, 40, RATER_SD, PROMPT_SD)
        pw = bt.pairwise_win_rates(a, b, score, raters, ["A", "B", "C"], prompt_clusters=prompts).set_index(["system", "opponent"])
        found.append(pw.loc[("A", "B"), "significant"] and pw.loc[("A", "B"), "win_rate"] > 0.5)
        false_claims.append(pw.loc[("B", "C"), "significant"])
    power = float(np.mean(found))
    print(f"power at true win rate 0.65 (delta {delta:.3f}), Holm over 3 pairs: {power:.3f}; "
          f"B-C called in {np.mean(false_claims):.3f}")
    assert power >= 0.90
    assert np.mean(false_claims) <= 0.06


def test_holm_keeps_the_family_wise_error_on_a_null_matrix():
    """Four equal systems (6 pairs), rater and prompt effects, 300 studies of 30 raters x 60 prompts x 40
    comparisons: at least one false claim after Holm in <= 7% of studies; uncorrected, far more often."""
    rng = np.random.default_rng(99)
    any_holm, any_raw = [], []
    for _ in range(300):
        a, b, score, raters, prompts = _crossed_study(rng, np.zeros(4), 30, 60, 40, RATER_SD, PROMPT_SD)
        pw = bt.pairwise_win_rates(a, b, score, raters, list("ABCD"), prompt_clusters=prompts)
        any_holm.append(pw["significant"].any())
        any_raw.append((pw["p_value"] < 0.05).any())
    fwer, raw = float(np.mean(any_holm)), float(np.mean(any_raw))
    print(f"family-wise false-claim rate over 300 null 4-system studies: Holm {fwer:.3f}, uncorrected {raw:.3f}")
    assert fwer <= 0.07
    assert raw > 0.12  # six tests at 5% each: the correction is doing real work


def test_pairwise_rows_share_adjusted_p_and_say_their_verdict():
    from evaluation.multiplicity import adjust

    rng = np.random.default_rng(5)
    a, b, score, raters, prompts = _crossed_study(rng, np.array([1.2, 0.0, 0.0]), 30, 40, 30, RATER_SD, PROMPT_SD)
    names = ["A", "B", "C"]
    pw = bt.pairwise_win_rates(a, b, score, raters, names, prompt_clusters=prompts)
    assert len(pw) == 6 and set(bt.PAIRWISE_COLUMNS) == set(pw.columns)
    by = pw.set_index(["system", "opponent"])
    for x, y in [("A", "B"), ("A", "C"), ("B", "C")]:
        assert by.loc[(x, y), "win_rate"] == pytest.approx(1 - by.loc[(y, x), "win_rate"])
        assert by.loc[(x, y), "ci_low"] == pytest.approx(1 - by.loc[(y, x), "ci_high"])
        assert by.loc[(x, y), ["p_value", "p_adjusted"]].tolist() == by.loc[(y, x), ["p_value", "p_adjusted"]].tolist()
    once = bt.pair_rows(pw)
    assert len(once) == 3 and (once["win_rate"] >= 0.5).all()
    np.testing.assert_allclose(once["p_adjusted"], adjust(once["p_value"].to_numpy(), "holm"))
    assert by.loc[("A", "B"), "significant"] and by.loc[("A", "B"), "verdict"].startswith("A beats B: wins ")
    assert "Holm-adjusted p" in by.loc[("A", "B"), "verdict"] and by.loc[("B", "A"), "verdict"].startswith("B loses to A")
    assert not by.loc[("B", "C"), "significant"]
    assert by.loc[("B", "C"), "verdict"].startswith("No significant difference between B and C: the 95% CI ")
    assert by.loc[("B", "C"), "verdict"].endswith("includes 50%.")
    none = bt.pairwise_win_rates(a, b, score, raters, names, prompt_clusters=prompts, correction="none")
    np.testing.assert_allclose(none["p_adjusted"], none["p_value"])
    with pytest.raises(ValueError, match="holm, bh, none"):
        bt.pairwise_win_rates(a, b, score, raters, names, correction="bonferroni")


def test_verdict_says_when_only_the_uncorrected_test_is_significant():
    row = dict(win_rate=0.56, ci_low=0.505, ci_high=0.61, p_value=0.03, p_adjusted=0.12)
    text = bt.pair_verdict("A", "B", row, "holm", 6)
    assert text.startswith("No significant difference between A and B after correction")
    assert "significant before correction (p = 0.03), not after Holm over 6 pairs" in text
    overall = bt.overall_verdict("A", row, "bh", 4)
    assert "not after Benjamini-Hochberg over 4 systems" in overall
    sig = dict(row, p_adjusted=0.003, p_value=0.0005)
    assert bt.pair_verdict("A", "B", sig, "holm", 6) == "A beats B: wins 56% [50%, 61%] (Holm-adjusted p = 0.003 over 6 pairs)."
    raw = dict(sig, p_adjusted=sig["p_value"])  # what correction="none" produces
    assert "(p < 0.001, no correction over 6 pairs)" in bt.pair_verdict("A", "B", raw, "none", 6)


def _seeded_aa_study(rng: np.random.Generator, model_sd: float, n_blocks: int, n_raters: int = 30, n_prompts: int = 16,
                     per_rater: int = 16) -> tuple[np.ndarray, ...]:
    """Two identical configs surveyed over `n_blocks` training seeds: every (block, config) model has its own
    quality offset ~ N(0, model_sd^2) (the known answer: the configs are equal), plus RATER_SD / PROMPT_SD
    effects. Each rater judges `per_rater` distinct (prompt, block) cells. Returns (score from config 0's
    side, raters, prompts, blocks), each (n_raters * per_rater,)."""
    offset = rng.normal(0.0, model_sd, (n_blocks, 2))
    cells = np.argsort(rng.random((n_raters, n_prompts * n_blocks)), axis=1)[:, :per_rater].ravel()
    raters, prompts, blocks = np.repeat(np.arange(n_raters), per_rater), cells % n_prompts, cells // n_prompts
    u = rng.normal(0.0, RATER_SD / np.sqrt(2.0), n_raters) - rng.normal(0.0, RATER_SD / np.sqrt(2.0), n_raters)
    v = rng.normal(0.0, PROMPT_SD / np.sqrt(2.0), n_prompts) - rng.normal(0.0, PROMPT_SD / np.sqrt(2.0), n_prompts)
    logit = offset[blocks, 0] - offset[blocks, 1] + u[raters] + v[prompts]
    won = (rng.random(cells.size) < 1.0 / (1.0 + np.exp(-logit))).astype(float)
    return np.where(rng.random(cells.size) < 0.1, 0.5, won), raters, prompts, blocks


def test_seed_block_clustering_keeps_equal_configs_from_beating_each_other():
    """A/A survey with seed-to-seed model differences (logit sd 0.5): one model per config, clustered by rater
    and prompt only, says "A beats B" in ~44% of studies; surveying 3 seeds and clustering on the seed block
    keeps false claims at or under 5% (t with min(G) - 1 = 2 df)."""
    rng = np.random.default_rng(31)
    one_model = seeded = 0
    n = 150
    for _ in range(n):
        score, raters, prompts, _ = _seeded_aa_study(rng, 0.5, 1)
        one_model += bt.win_rate_test(score, raters, prompt_clusters=prompts).p_value < 0.05
        score, raters, prompts, blocks = _seeded_aa_study(rng, 0.5, 3)
        seeded += bt.win_rate_test(score, raters, prompt_clusters=prompts, seed_clusters=blocks).p_value < 0.05
    assert one_model / n > 0.25  # the defect this guards against (measured 0.44 at 600 studies)
    assert seeded / n <= 0.06


def test_one_seed_block_gives_a_rate_but_no_verdict():
    rng = np.random.default_rng(32)
    score, raters, prompts, _ = _seeded_aa_study(rng, 0.0, 1, n_raters=40)
    score = np.where(rng.random(score.size) < 0.5, 1.0, score)  # a large preference for config 0
    a, b = np.zeros(score.size, dtype=int), np.ones(score.size, dtype=int)
    blocks = np.full(score.size, 7)
    pw = bt.pairwise_win_rates(a, b, score, raters, ["A", "B"], prompt_clusters=prompts, seed_clusters=blocks)
    row = pw.set_index("system").loc["A"]
    assert row["win_rate"] > 0.7 and row["seed_blocks"] == 1 and not row["significant"]
    assert np.isnan(row["p_value"]) and np.isnan(row["p_adjusted"])
    assert row["verdict"].startswith("No verdict on A against B: every vote compares the seed-7 models only")
    assert "beats" not in " ".join(pw["verdict"])
    overall = bt.overall_win_rates(a, b, score, raters, ["A", "B"], prompt_clusters=prompts, seed_clusters=blocks)
    assert not overall["significant"].any() and overall["verdict"].str.startswith("No verdict").all()
    two = np.where(raters % 2 == 0, 0, 1)  # the same votes as two seed blocks: tested, and the preference shows
    pw2 = bt.pairwise_win_rates(a, b, score, raters, ["A", "B"], prompt_clusters=prompts, seed_clusters=two)
    assert (pw2["seed_blocks"] == 2).all() and np.isfinite(pw2["p_value"]).all()


def test_three_way_variance_is_the_inclusion_exclusion_of_one_way_terms():
    rng = np.random.default_rng(33)
    score, raters, prompts, blocks = _seeded_aa_study(rng, 0.5, 3, n_raters=12, n_prompts=5, per_rater=9)
    resid = score - score.mean()
    dims = [pd.factorize(x)[0] for x in (raters, prompts, blocks)]
    one = lambda *ks: bt._one_way_var(resid, pd.factorize(  # noqa: E731
        np.array([str(tuple(d[i] for d in (dims[k] for k in ks))) for i in range(score.size)]))[0])
    expected = (one(0) + one(1) + one(2) - one(0, 1) - one(0, 2) - one(1, 2) + one(0, 1, 2))
    r = bt.win_rate_test(score, raters, prompt_clusters=prompts, seed_clusters=blocks)
    assert r.se**2 == pytest.approx(expected if expected > 0 else max(one(0), one(1), one(2)))
    assert r.clusters == (12, 5, 3) and r.df == 2


def test_module_does_not_import_torch():
    code = "import sys, evaluation.bradley_terry, survey.reports, survey.app, survey.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
