"""Pairwise-preference statistics: win rates with CIs and tests, Bradley-Terry ratings, agreement.

Pure numpy/pandas/scipy.special (no torch): the survey reports and the dashboard import this module.

Data convention: one record per judgement of system `a` against system `b`, with `score_a` in
{1, 0.5, 0} (a wins, tie, b wins), and optionally a rater id and a prompt id per record. The vote
is the unit of observation but not an independent one: a rater's votes share that rater's taste,
and a prompt's votes share whatever that prompt happens to favour. Raters and prompts are both
samples of the populations a claim is about, so both enter the uncertainty.

- Win rates follow the LTX-Video paper's survey table (arXiv 2501.00103, Sec. 5): the share of
  comparisons a system won, ties counted as half.
- Variance: the multiway cluster-robust (sandwich) variance of Cameron, Gelbach & Miller (2011,
  "Robust inference with multiway clustering", J. Bus. Econ. Stat. 29:238), two-way case:
  V = V_rater + V_prompt - V_rater∩prompt, each term the one-way clustered variance of the mean,
  G/(G-1) * sum_g (sum of residuals in cluster g)^2 / n^2; three-way (rater, prompt, seed block)
  by the same inclusion-exclusion over every intersection. When the combination is not positive
  the larger one-way term is used (the conservative fix). A dimension with fewer than two
  clusters says nothing about its own variance and is left out (the claim is then about that one
  rater or prompt); with no clustering at all the votes are treated as independent.
- Training seeds: when the systems are training configurations (variants of a sweep), each video
  comes from one trained model, and two seeds of one config differ. Votes then carry a seed-block
  id (pairs compare variants within one block, i.e. models trained from the same seed), the seed
  block is a third clustering dimension, and with few blocks df = min(G) - 1 makes the interval
  honestly wide. A pair or system whose votes come from a single seed block gets no test and no
  verdict: its rate compares two trained models, and nothing measures how far another seed
  would move it ("one seed is never a verdict").
- CI: a Wilson score interval on the design-effect (Kish) sample size n_eff = p(1-p) / V, so it
  stays inside [0, 1] and is right both for ties (which shrink the per-vote variance) and for
  correlated votes. The critical value is Student's t with df = min(G_rater, G_prompt) - 1, not z:
  with few clusters the sandwich variance is itself noisy, and Cameron & Miller (2015, "A
  practitioner's guide to cluster-robust inference", J. Human Resources 50:317, on few clusters)
  recommend t(G-1), as Stata does. With hundreds of clusters t(G-1) is z to two decimals, so it is
  used whenever votes are clustered (z only for independent votes).
- Test of H0 "win rate = 0.5", two-sided: the score test the Wilson interval inverts,
  t = (p - 0.5) / sqrt(0.25 / n_eff), i.e. the clustered SE rescaled to the null variance with the
  design effect held, against the same t(df). "The CI includes 50%" and "raw p >= 1 - confidence"
  therefore never disagree. `pairwise_win_rates` adjusts the p-values over the unordered pairs of
  the matrix (`evaluation.multiplicity`, Holm by default) and writes one verdict sentence per row.
  Known-answer checks (coverage with rater and prompt effects, power, family-wise error) are in
  tests/test_bradley_terry.py.
- Bradley-Terry (Bradley & Terry 1952): P(i beats j) = sigmoid(theta_i - theta_j), fitted by
  Newton's method on fractional win counts (a tie is half a win each way) with a small L2 prior
  `l2 * ||theta||^2` (the same penalty convention as `choix.opt_pairwise`) so that a system that
  won every vote still has a finite rating. Ratings are centred (mean 0).
- Uncertainty of ratings: percentile bootstrap CIs for ratings and for ranks (rank bounds). With
  prompt ids, the pigeonhole bootstrap for crossed data (Owen 2007, "The pigeonhole bootstrap",
  Ann. Appl. Stat. 1:386): each replicate reweights raters and, independently, prompts by
  multinomial draws and weights each (rater, prompt) cell by the product, so the ratings carry the
  same two sources of uncertainty as the win rates. Owen shows it is mildly conservative (it
  counts the within-cell noise about three times); like any cluster bootstrap it also shrinks
  each of the rater and prompt terms by (G-1)/G, which with very few prompts outweighs that.
  Without prompt ids: bootstrap over raters only (resample whole raters with replacement).
- Agreement: Fleiss' kappa (varying raters per item) and Krippendorff's alpha (nominal).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
from scipy.special import stdtr, stdtrit

from evaluation.multiplicity import METHODS, adjust

_Z95 = 1.959963984540054
CORRECTION_LABELS = {"holm": "Holm", "bh": "Benjamini-Hochberg", "none": "no correction"}


def _critical(confidence: float, df: float = math.inf) -> float:
    """Two-sided critical value: z for df = inf, else Student's t with `df` degrees of freedom."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}.")
    if math.isinf(df) and confidence == 0.95:
        return _Z95
    return float(stdtrit(df, 0.5 + confidence / 2.0))


def wilson_interval(p_hat: float, n_eff: float, confidence: float = 0.95, df: float = math.inf) -> tuple[float, float]:
    """Wilson score interval for a proportion estimated from an effective sample size `n_eff`.

    `df` finite uses the t(df) critical value in place of z (few clusters behind `n_eff`).
    """
    if n_eff <= 0:
        return (0.0, 1.0)
    z = _critical(confidence, df)
    z2n = z * z / n_eff
    centre = (p_hat + z2n / 2.0) / (1.0 + z2n)
    half = z / (1.0 + z2n) * math.sqrt(max(p_hat * (1.0 - p_hat) / n_eff + z2n / (4.0 * n_eff), 0.0))
    lo = 0.0 if p_hat <= 0.0 else max(0.0, centre - half)  # exact ends where rounding would miss them
    hi = 1.0 if p_hat >= 1.0 else min(1.0, centre + half)
    return (lo, hi)


@dataclass(frozen=True)
class WinRate:
    """One win rate with its clustered uncertainty and its test against 50%."""

    rate: float  # mean score, ties as 0.5 (nan with no votes)
    ci_low: float  # Wilson interval on n_eff with the t(df) critical value
    ci_high: float
    n_eff: float  # Kish effective sample size p(1-p) / V
    se: float  # sqrt(V): the (multiway) cluster-robust standard error of `rate`
    df: float  # degrees of freedom of the t reference: min(G) - 1 over clustering dimensions; inf if none
    p_value: float  # two-sided, H0: rate = 0.5 (the score test the Wilson interval inverts)
    votes: int
    clusters: tuple[int, ...]  # clusters in each dimension that was used (rater, prompt, seed block)


def _codes(labels: Sequence | np.ndarray, n: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.shape[0] != n:
        raise ValueError(f"cluster ids must have one entry per vote ({n}), got {labels.shape[0]}.")
    return pd.factorize(labels, use_na_sentinel=False)[0]  # a missing id is one more cluster


def _one_way_var(resid: np.ndarray, codes: np.ndarray) -> float:
    """Cluster-robust variance of the mean: G/(G-1) * sum_g (sum of residuals in g)^2 / n^2."""
    groups = int(codes.max()) + 1
    per_group = np.bincount(codes, weights=resid, minlength=groups)  # (G,) summed residuals
    return groups / (groups - 1.0) * float(per_group @ per_group) / (resid.size**2)


def _clustered_var(resid: np.ndarray, dims: list[np.ndarray]) -> tuple[float, float, tuple[int, ...]]:
    """(V, df, clusters per dimension) by Cameron-Gelbach-Miller over the dimensions in `dims`.

    V is the inclusion-exclusion sum over every non-empty subset S of the dimensions of
    (-1)^(|S|+1) times the one-way variance clustered on the intersection of S (for two dimensions
    V_1 + V_2 - V_1∩2). An intersection with a single cell adds nothing.
    """
    n = resid.size
    dims = [d for d in dims if d.max() >= 1]  # a single cluster says nothing about its variance
    sizes = tuple(int(d.max()) + 1 for d in dims)
    if not dims:
        return ((float(np.var(resid, ddof=1)) / n if n > 1 else 0.0), math.inf, ())
    if len(dims) == 1:
        return (_one_way_var(resid, dims[0]), sizes[0] - 1.0, sizes)
    one_way = [_one_way_var(resid, d) for d in dims]
    var = sum(one_way)
    for r in range(2, len(dims) + 1):
        for subset in itertools.combinations(range(len(dims)), r):
            cells = np.zeros(n, dtype=np.int64)
            for k in subset:  # the intersection's cell id, built one dimension at a time
                cells = pd.factorize(cells * sizes[k] + dims[k])[0]
            if cells.max() >= 1:
                var += (-1) ** (r + 1) * _one_way_var(resid, cells)
    if var <= 0.0:
        var = max(one_way)
    return (var, min(sizes) - 1.0, sizes)


def win_rate_test(
    scores: Sequence[float] | np.ndarray,
    clusters: Sequence | np.ndarray | None = None,
    confidence: float = 0.95,
    prompt_clusters: Sequence | np.ndarray | None = None,
    seed_clusters: Sequence | np.ndarray | None = None,
) -> WinRate:
    """Mean score (ties as 0.5) with a multiway (rater, prompt, seed block) clustered Wilson CI and a test of 50%.

    scores: (n,) values in [0, 1]; clusters: (n,) rater ids or None; prompt_clusters: (n,) prompt
    (item) ids or None; seed_clusters: (n,) training seed-block ids or None. With none, votes are
    independent. Empty input gives rate nan, CI (0, 1).
    """
    s = np.asarray(scores, dtype=np.float64)
    n = s.size
    if n == 0:
        return WinRate(float("nan"), 0.0, 1.0, 0.0, float("nan"), math.inf, float("nan"), 0, ())
    p = float(s.mean())
    dims = [_codes(c, n) for c in (clusters, prompt_clusters, seed_clusters) if c is not None]
    var, df, sizes = _clustered_var(s - p, dims)
    # A degenerate sample (all wins, all losses, one voter) has no variance estimate: fall back
    # to the raw count, which is what plain Wilson would do.
    n_eff = p * (1.0 - p) / var if var > 0 and 0.0 < p < 1.0 else float(n)
    lo, hi = wilson_interval(p, n_eff, confidence, df)
    stat = (p - 0.5) * 2.0 * math.sqrt(n_eff)  # (p - 0.5) / sqrt(0.25 / n_eff)
    p_value = float(min(1.0, 2.0 * stdtr(df, -abs(stat))))
    return WinRate(p, lo, hi, n_eff, math.sqrt(var), df, p_value, n, sizes)


def win_rate_ci(
    scores: Sequence[float] | np.ndarray,
    clusters: Sequence | np.ndarray | None = None,
    confidence: float = 0.95,
    prompt_clusters: Sequence | np.ndarray | None = None,
) -> tuple[float, float, float, float]:
    """(rate, ci_low, ci_high, n_eff) of `win_rate_test`: clustered by rater and, if given, prompt."""
    r = win_rate_test(scores, clusters, confidence, prompt_clusters)
    return (r.rate, r.ci_low, r.ci_high, r.n_eff)


def win_counts(a: np.ndarray, b: np.ndarray, score_a: np.ndarray, n_systems: int) -> np.ndarray:
    """(K, K) matrix W with W[i, j] = (fractional) wins of system i over system j."""
    wins = np.zeros((n_systems, n_systems), dtype=np.float64)
    np.add.at(wins, (a, b), score_a)
    np.add.at(wins, (b, a), 1.0 - score_a)
    return wins


def bt_fit(wins: np.ndarray, l2: float = 1e-3, max_iter: int = 100, tol: float = 1e-10) -> np.ndarray:
    """Bradley-Terry log-strengths from a (K, K) win matrix; returns (K,) centred ratings.

    Maximises sum_ij W_ij log sigmoid(t_i - t_j) - l2 * ||t||^2 by Newton's method (the objective
    is concave, so Newton from zero converges in a handful of steps for survey-sized K).
    A stack of win matrices (..., K, K), such as a bootstrap's replicates, is fitted in one
    vectorised Newton loop, each matrix on its own: one stops when its own step is below `tol`,
    exactly as it would alone.
    """
    wins = np.asarray(wins, dtype=np.float64)
    batch, k = wins.shape[:-2], wins.shape[-1]
    wins = wins.reshape(-1, k, k)  # (N, K, K)
    total = wins + wins.transpose(0, 2, 1)  # (N, K, K) comparisons between i and j
    won = wins.sum(axis=2)  # (N, K)
    theta = np.zeros((wins.shape[0], k))
    eye = np.eye(k)
    active = np.arange(wins.shape[0])  # the fits still moving
    for _ in range(max_iter):
        th, tot = theta[active], total[active]
        p = 1.0 / (1.0 + np.exp(th[:, None, :] - th[:, :, None]))  # (n, K, K) P(i beats j)
        grad = won[active] - (tot * p).sum(axis=2) - 2.0 * l2 * th
        w = tot * p * (1.0 - p)
        hess = w - w.sum(axis=2)[:, :, None] * eye - 2.0 * l2 * eye  # negative (semi)definite
        if l2 > 0:
            step = np.linalg.solve(hess, grad[:, :, None])[:, :, 0]
        else:  # no prior: the centred direction is identifiable only up to a constant
            step = (np.linalg.pinv(hess) @ grad[:, :, None])[:, :, 0]
        theta[active] = th - step
        active = active[np.max(np.abs(step), axis=1) >= tol]
        if active.size == 0:
            break
    return (theta - theta.mean(axis=1, keepdims=True)).reshape(*batch, k)


def _ranks(theta: np.ndarray) -> np.ndarray:
    """(..., K) ratings -> (..., K) ranks, 1 = best (ties broken by index)."""
    return np.argsort(np.argsort(-theta, axis=-1, kind="stable"), axis=-1, kind="stable") + 1


def bt_ratings(
    a: np.ndarray,
    b: np.ndarray,
    score_a: np.ndarray,
    clusters: np.ndarray,
    names: Sequence[str],
    n_boot: int = 1000,
    confidence: float = 0.95,
    l2: float = 1e-3,
    seed: int = 0,
    prompt_clusters: np.ndarray | None = None,
    seed_clusters: np.ndarray | None = None,
) -> pd.DataFrame:
    """Bradley-Terry ratings with bootstrap CIs and rank bounds, clustered by rater and, if given, prompt.

    a, b: (n,) system indices into `names`; score_a: (n,) in {0, 0.5, 1}; clusters: (n,) rater ids;
    prompt_clusters: (n,) prompt (item) ids or None; seed_clusters: (n,) training seed-block ids or
    None: a third pigeonhole dimension (needs prompt_clusters). A bootstrap over G seed blocks
    shrinks their variance by (G-1)/G and has only G distinct draws, so with 2-3 blocks these
    intervals are narrower than the win-rate tests' (t with min(G) - 1 df), which make the verdicts.
    Without `prompt_clusters`: bootstrap over raters (whole raters resampled with replacement).
    With them: the pigeonhole bootstrap for crossed data (Owen 2007, "The pigeonhole bootstrap",
    Ann. Appl. Stat. 1:386): each replicate draws multinomial weights for the raters and,
    independently, for the prompts, and weights each observed (rater, prompt) cell's win matrix by
    the product of its two weights, so a prompt that favours one system moves the ratings as much
    as a rater with that taste. Owen shows it is mildly conservative: for a mean over a balanced
    R x P layout its expected variance is (1 - 1/R) var_rater / R + (1 - 1/P) var_prompt / P + about
    3 var_noise / (R P), against the true var_rater / R + var_prompt / P + var_noise / (R P): the
    within-cell noise is counted about three times, while the rater and prompt terms carry the
    (G-1)/G shrinkage of any cluster bootstrap, which with very few prompts outweighs the excess
    (simulated coverage in tests/test_bradley_terry.py). A dimension with a single cluster gets
    weight 1 (nothing to resample), as in `win_rate_test`.
    Percentile CIs for ratings and ranks either way; NaN CIs and rank bounds 1..K when there is
    nothing to resample or n_boot = 0.
    Returns one row per system, best first: system, rating, ci_low, ci_high, rank, rank_low,
    rank_high, p_beats_average (sigmoid of the rating), votes.
    """
    k = len(names)
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    score_a = np.asarray(score_a, dtype=np.float64)
    codes, _ = pd.factorize(pd.Series(np.asarray(clusters)))
    n_raters = int(codes.max()) + 1 if codes.size else 0
    per_rater = np.zeros((max(n_raters, 1), k, k))  # (R, K, K) each rater's win matrix
    np.add.at(per_rater, (codes, a, b), score_a)
    np.add.at(per_rater, (codes, b, a), 1.0 - score_a)
    theta = bt_fit(per_rater.sum(axis=0), l2=l2)
    alpha = (1.0 - confidence) / 2.0
    boot = None
    if prompt_clusters is not None:
        # Pigeonhole bootstrap on the observed (rater, prompt) cells only: a sparse list of C <= n
        # cells with one (K, K) win matrix each, never a dense R x P x K x K array. Replicate weights
        # (B, C) are built and contracted a chunk of replicates at a time, at most 2^20 weights held
        # (200 raters x 100 prompts x 10 systems: C <= 20,000 cells, 16 MB of cell matrices).
        prompts = _codes(prompt_clusters, a.size)
        n_prompts = int(prompts.max()) + 1 if prompts.size else 0
        blocks = _codes(seed_clusters, a.size) if seed_clusters is not None else np.zeros(a.size, dtype=np.int64)
        n_blocks = int(blocks.max()) + 1 if blocks.size else 1
        if (n_raters >= 2 or n_prompts >= 2) and n_boot > 0:
            keys, cell = np.unique((codes * n_prompts + prompts) * n_blocks + blocks, return_inverse=True)  # (C,), (n,)
            cell_block = keys % n_blocks
            cell_rater, cell_prompt = keys // n_blocks // n_prompts, keys // n_blocks % n_prompts  # (C,) each
            per_cell = np.zeros((keys.size, k, k))  # (C, K, K) each observed cell's win matrix
            np.add.at(per_cell, (cell, a, b), score_a)
            np.add.at(per_cell, (cell, b, a), 1.0 - score_a)
            rng = np.random.default_rng(seed)
            w_rater = rng.multinomial(n_raters, np.full(n_raters, 1.0 / n_raters), size=n_boot).astype(np.float64)
            w_prompt = rng.multinomial(n_prompts, np.full(n_prompts, 1.0 / n_prompts), size=n_boot).astype(np.float64)
            w_block = (rng.multinomial(n_blocks, np.full(n_blocks, 1.0 / n_blocks), size=n_boot).astype(np.float64)
                       if n_blocks >= 2 else np.ones((n_boot, 1)))  # no draw without seed blocks: same replicates
            step = max(1, (1 << 20) // keys.size)
            boot_wins = np.empty((n_boot, k, k))
            for start in range(0, n_boot, step):
                sl = slice(start, start + step)
                weights = w_rater[sl][:, cell_rater]  # (b, C)
                weights *= w_prompt[sl][:, cell_prompt]  # the product of the draws
                weights *= w_block[sl][:, cell_block]
                boot_wins[sl] = np.einsum("bc,cij->bij", weights, per_cell, optimize=True)  # (b, K, K)
            boot = bt_fit(boot_wins, l2=l2)  # (B, K)
    elif n_raters >= 2 and n_boot > 0:
        rng = np.random.default_rng(seed)
        draws = rng.multinomial(n_raters, np.full(n_raters, 1.0 / n_raters), size=n_boot)  # (B, R)
        boot_wins = np.tensordot(draws.astype(np.float64), per_rater, axes=(1, 0))  # (B, K, K)
        boot = bt_fit(boot_wins, l2=l2)  # (B, K)
    if boot is not None:
        lo, hi = np.quantile(boot, [alpha, 1.0 - alpha], axis=0)
        boot_ranks = _ranks(boot)
        rank_lo = np.floor(np.quantile(boot_ranks, alpha, axis=0)).astype(int)
        rank_hi = np.ceil(np.quantile(boot_ranks, 1.0 - alpha, axis=0)).astype(int)
    else:
        lo = np.full(k, np.nan)
        hi = np.full(k, np.nan)
        rank_lo = np.ones(k, dtype=int)
        rank_hi = np.full(k, k, dtype=int)
    votes = np.bincount(a, minlength=k) + np.bincount(b, minlength=k)
    frame = pd.DataFrame(
        {
            "system": list(names),
            "rating": theta,
            "ci_low": lo,
            "ci_high": hi,
            "rank": _ranks(theta[None, :])[0],
            "rank_low": rank_lo,
            "rank_high": rank_hi,
            "p_beats_average": 1.0 / (1.0 + np.exp(-theta)),
            "votes": votes,
        }
    )
    return frame.sort_values("rank").reset_index(drop=True)


def _pct(x: float) -> str:
    return f"{x:.0%}"


def _fmt_p(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"= {p:.2g}"  # two significant digits: 0.046, not 0.05


def _claim(p_adj: float, method: str, family: int, unit: str) -> str:
    if method == "none":
        return f"p {_fmt_p(p_adj)}, no correction over {family} {unit}"
    return f"{CORRECTION_LABELS[method]}-adjusted p {_fmt_p(p_adj)} over {family} {unit}"


def _not_after(p: float, method: str, family: int, unit: str) -> str:
    return f"significant before correction (p {_fmt_p(p)}), not after {CORRECTION_LABELS[method]} over {family} {unit}"


def pair_verdict(system: str, opponent: str, row: dict, method: str, family: int, confidence: float = 0.95) -> str:
    """One plain sentence on `system` against `opponent` from a row with win_rate, CIs and p-values."""
    rate, ci = row["win_rate"], f"{_pct(row['ci_low'])}, {_pct(row['ci_high'])}"
    alpha = 1.0 - confidence
    if not np.isfinite(row["p_adjusted"]):
        return f"{system} against {opponent} was not tested."
    if row["p_adjusted"] < alpha:
        verb = "beats" if rate > 0.5 else "loses to"
        return f"{system} {verb} {opponent}: wins {_pct(rate)} [{ci}] ({_claim(row['p_adjusted'], method, family, 'pairs')})."
    if row["p_value"] < alpha:
        return (f"No significant difference between {system} and {opponent} after correction: {system} wins "
                f"{_pct(rate)} [{ci}], {_not_after(row['p_value'], method, family, 'pairs')}.")
    return (f"No significant difference between {system} and {opponent}: the {confidence:.0%} CI "
            f"{_pct(row['ci_low'])}-{_pct(row['ci_high'])} includes 50%.")


def overall_verdict(system: str, row: dict, method: str, family: int, confidence: float = 0.95) -> str:
    """One plain sentence on a system's overall win rate against 50%."""
    rate, ci = row["win_rate"], f"{_pct(row['ci_low'])}, {_pct(row['ci_high'])}"
    alpha = 1.0 - confidence
    if not np.isfinite(row["p_adjusted"]):
        return f"{system} has no votes."
    if row["p_adjusted"] < alpha:
        side = "more" if rate > 0.5 else "fewer"
        return (f"{system} wins {side} than half its comparisons: {_pct(rate)} [{ci}] "
                f"({_claim(row['p_adjusted'], method, family, 'systems')}).")
    if row["p_value"] < alpha:
        return (f"No significant difference from 50% for {system} after correction: {_pct(rate)} [{ci}], "
                f"{_not_after(row['p_value'], method, family, 'systems')}.")
    return (f"No significant difference from 50% for {system}: the {confidence:.0%} CI "
            f"{_pct(row['ci_low'])}-{_pct(row['ci_high'])} includes 50%.")


def one_block_verdict(system: str, opponent: str | None, row: dict, block: object, confidence: float = 0.95) -> str:
    """The sentence for a rate whose votes all come from one training seed block: a measurement, no verdict."""
    ci = f"{confidence:.0%} CI {_pct(row['ci_low'])}-{_pct(row['ci_high'])}"
    who = f"{system} against {opponent}" if opponent is not None else f"{system} against all others"
    return (f"No verdict on {who}: every vote compares the seed-{block} models only, so training noise is not "
            f"included ({system} wins {_pct(row['win_rate'])}, {ci} over raters and prompts); survey a second "
            f"seed to compare the variants.")


def _blocks(seeds: np.ndarray | None) -> list | None:
    """Sorted distinct seed-block ids of some votes, or None when votes carry no seed block."""
    return None if seeds is None else sorted(pd.unique(seeds).tolist(), key=str)


def _check_method(correction: str) -> None:
    if correction not in METHODS:
        raise ValueError(f"Unknown multiple-comparison correction {correction!r}; use one of {', '.join(METHODS)}.")


def _stat_row(r: WinRate) -> dict:
    return dict(win_rate=r.rate, ci_low=r.ci_low, ci_high=r.ci_high, se=r.se, df=r.df, votes=r.votes,
                p_value=r.p_value)


PAIRWISE_COLUMNS = ["system", "opponent", "win_rate", "ci_low", "ci_high", "se", "df", "votes", "wins", "ties",
                    "losses", "seed_blocks", "p_value", "p_adjusted", "significant", "verdict"]


def pairwise_win_rates(
    a: np.ndarray,
    b: np.ndarray,
    score_a: np.ndarray,
    clusters: np.ndarray | None,
    names: Sequence[str],
    confidence: float = 0.95,
    prompt_clusters: np.ndarray | None = None,
    correction: str = "holm",
    seed_clusters: np.ndarray | None = None,
) -> pd.DataFrame:
    """Win rate of every system against every other it met (ties as half), with CIs and tests.

    clusters: (n,) rater ids or None; prompt_clusters: (n,) prompt ids or None; seed_clusters: (n,)
    training seed-block ids or None (see `win_rate_test`). With seed blocks, a pair whose votes
    come from one block is not tested (p-values NaN, `one_block_verdict`) and stays out of the
    family. seed_blocks: distinct blocks behind the pair's votes (0 without seed_clusters).
    p_adjusted: `correction` ("holm", "bh", "none") over the unordered pairs tested (both
    ordered rows of a pair share it); significant: p_adjusted < 1 - confidence.
    Returns long format, one row per ordered pair with at least one vote: PAIRWISE_COLUMNS.
    """
    _check_method(correction)
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    score_a = np.asarray(score_a, dtype=np.float64)
    dims = [None if c is None else np.asarray(c) for c in (clusters, prompt_clusters, seed_clusters)]
    pairs = []
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            as_a = (a == i) & (b == j)
            as_b = (a == j) & (b == i)
            s = np.concatenate([score_a[as_a], 1.0 - score_a[as_b]])  # (n_ij,) from i's side
            if s.size == 0:
                continue
            raters, prompts, seeds = (None if c is None else np.concatenate([c[as_a], c[as_b]]) for c in dims)
            r = win_rate_test(s, raters, confidence, prompts, seeds)
            counts = dict(wins=int((s == 1).sum()), ties=int((s == 0.5).sum()), losses=int((s == 0).sum()))
            pairs.append((i, j, r, counts, _blocks(seeds)))
    tested = np.array([blocks is None or len(blocks) >= 2 for *_, blocks in pairs], dtype=bool)
    p_raw = np.array([r.p_value for _, _, r, _, _ in pairs], dtype=float)
    p_adjusted = np.full(len(pairs), np.nan)
    p_adjusted[tested] = adjust(p_raw[tested], correction)
    alpha = 1.0 - confidence
    ordered, block_of = {}, {}
    for (i, j, r, counts, blocks), p_adj, test in zip(pairs, p_adjusted, tested):
        row = dict(system=names[i], opponent=names[j], **_stat_row(r), **counts,
                   seed_blocks=0 if blocks is None else len(blocks), p_adjusted=float(p_adj),
                   significant=bool(p_adj < alpha))
        if not test:
            row["p_value"] = float("nan")  # one trained model per side: no test of the variants
            block_of[i, j] = block_of[j, i] = blocks[0]
        ordered[i, j] = row
        ordered[j, i] = dict(row, system=names[j], opponent=names[i], win_rate=1.0 - r.rate, ci_low=1.0 - r.ci_high,
                             ci_high=1.0 - r.ci_low, wins=counts["losses"], losses=counts["wins"])
    family = int(tested.sum())
    for key in sorted(ordered):
        row = ordered[key]
        row["verdict"] = (one_block_verdict(row["system"], row["opponent"], row, block_of[key], confidence)
                          if key in block_of else
                          pair_verdict(row["system"], row["opponent"], row, correction, family, confidence))
    return pd.DataFrame([ordered[key] for key in sorted(ordered)], columns=PAIRWISE_COLUMNS)


def pair_rows(pairwise: pd.DataFrame) -> pd.DataFrame:
    """One row per unordered pair of `pairwise_win_rates`, from the side that won at least half."""
    if not len(pairwise):
        return pairwise
    winner = (pairwise["win_rate"] > 0.5) | ((pairwise["win_rate"] == 0.5) & (pairwise["system"] < pairwise["opponent"]))
    return pairwise[winner].sort_values("p_value", kind="stable").reset_index(drop=True)


def win_rate_matrix(pairwise: pd.DataFrame, names: Sequence[str]) -> pd.DataFrame:
    """(K, K) DataFrame: row system's win rate against column system (NaN where never compared)."""
    mat = pairwise.pivot(index="system", columns="opponent", values="win_rate") if len(pairwise) else None
    out = pd.DataFrame(np.nan, index=list(names), columns=list(names))
    if mat is not None:
        out.loc[mat.index, mat.columns] = mat
        out = out.astype(float)
    return out


def overall_win_rates(
    a: np.ndarray,
    b: np.ndarray,
    score_a: np.ndarray,
    clusters: np.ndarray | None,
    names: Sequence[str],
    confidence: float = 0.95,
    prompt_clusters: np.ndarray | None = None,
    correction: str = "holm",
    seed_clusters: np.ndarray | None = None,
) -> pd.DataFrame:
    """Each system's share of won comparisons against all others (the paper's table), with CIs.

    Tests each rate against 50% and adjusts over the systems with votes (their own family, apart
    from the pairwise matrix); clustering as in `pairwise_win_rates`, and a system whose votes
    come from one seed block is not tested. Columns: system, win_rate, ci_low, ci_high, se, df,
    votes, seed_blocks, p_value, p_adjusted, significant, verdict; best first.
    """
    _check_method(correction)
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    score_a = np.asarray(score_a, dtype=np.float64)
    dims = [None if c is None else np.asarray(c) for c in (clusters, prompt_clusters, seed_clusters)]
    rows, block_of = [], {}
    for i, name in enumerate(names):
        s = np.concatenate([score_a[a == i], 1.0 - score_a[b == i]])
        raters, prompts, seeds = (None if c is None else np.concatenate([c[a == i], c[b == i]]) for c in dims)
        row = dict(system=name, **_stat_row(win_rate_test(s, raters, confidence, prompts, seeds)))
        blocks = _blocks(seeds)
        row["seed_blocks"] = 0 if blocks is None else len(blocks)
        if blocks is not None and len(blocks) == 1:
            row["p_value"] = float("nan")  # one trained model: no test of the variant
            block_of[name] = blocks[0]
        rows.append(row)
    cols = ["system", "win_rate", "ci_low", "ci_high", "se", "df", "votes", "seed_blocks", "p_value"]
    frame = pd.DataFrame(rows, columns=cols)
    frame["p_adjusted"] = adjust(frame["p_value"].to_numpy(dtype=float), correction)
    frame["significant"] = frame["p_adjusted"] < 1.0 - confidence
    family = int(frame["p_value"].notna().sum())
    frame["verdict"] = [
        one_block_verdict(row["system"], None, row, block_of[row["system"]], confidence) if row["system"] in block_of
        else overall_verdict(row["system"], row, correction, family, confidence)
        for row in frame.to_dict("records")]
    return frame.sort_values("win_rate", ascending=False, na_position="last").reset_index(drop=True)


def fleiss_kappa(counts: np.ndarray) -> float:
    """Fleiss' kappa from (items, categories) rating counts; items may have different rater counts.

    Items with fewer than two ratings carry no agreement information and are dropped.
    """
    counts = np.asarray(counts, dtype=np.float64)
    per_item = counts.sum(axis=1)
    counts = counts[per_item >= 2]
    per_item = per_item[per_item >= 2]
    if counts.shape[0] == 0:
        return float("nan")
    agree = ((counts * (counts - 1)).sum(axis=1) / (per_item * (per_item - 1))).mean()
    shares = counts.sum(axis=0) / per_item.sum()
    chance = float((shares**2).sum())
    if chance >= 1.0:
        return float("nan")  # every rating in one category: kappa is undefined
    return float((agree - chance) / (1.0 - chance))


def krippendorff_alpha_nominal(counts: np.ndarray) -> float:
    """Krippendorff's alpha for nominal data from (units, categories) value counts.

    Follows Krippendorff (2011), "Computing Krippendorff's alpha-reliability": coincidences
    o_ck = sum_u n_uc n_uk / (m_u - 1) over pairable units (m_u >= 2).
    """
    counts = np.asarray(counts, dtype=np.float64)
    m = counts.sum(axis=1)
    counts = counts[m >= 2]
    m = m[m >= 2]
    if counts.shape[0] == 0:
        return float("nan")
    coinc = np.einsum("uc,uk->ck", counts / (m - 1.0)[:, None], counts)  # (C, C)
    coinc -= np.diag((counts / (m - 1.0)[:, None]).sum(axis=0))  # pairs of a value with itself
    n_c = coinc.sum(axis=1)
    n = n_c.sum()
    disagree_obs = coinc.sum() - np.trace(coinc)
    disagree_exp = (n_c.sum() ** 2 - (n_c**2).sum()) / (n - 1.0)
    if disagree_exp == 0:
        return float("nan")
    return float(1.0 - disagree_obs / disagree_exp)
