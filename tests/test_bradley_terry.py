"""Pairwise-preference statistics against published values, `choix`, and simulated studies."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

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


def test_module_does_not_import_torch():
    code = "import sys, evaluation.bradley_terry, survey.reports, survey.app, survey.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
