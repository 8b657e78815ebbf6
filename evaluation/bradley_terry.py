"""Pairwise-preference statistics: win rates with CIs, Bradley-Terry ratings, rater agreement.

Pure numpy/pandas (no torch): the survey reports and the dashboard import this module.

Data convention: one record per judgement of system `a` against system `b`, with
`score_a` in {1, 0.5, 0} (a wins, tie, b wins) and an optional cluster id (the rater),
because the votes of one rater are not independent of each other.

- Win rates follow the LTX-Video paper's survey table (arXiv 2501.00103, Sec. 5): the share of
  comparisons a system won, ties counted as half. Their 95% CI is a Wilson score interval on the
  design-effect sample size (Kish): n_eff = p(1-p) / Var_hat(p), with a rater-clustered
  (sandwich) variance. Plain Wilson on the raw count would be too wide when ties shrink the
  per-vote variance and too narrow when one rater's votes are correlated.
- Bradley-Terry (Bradley & Terry 1952): P(i beats j) = sigmoid(theta_i - theta_j), fitted by
  Newton's method on fractional win counts (a tie is half a win each way) with a small L2 prior
  `l2 * ||theta||^2` (the same penalty convention as `choix.opt_pairwise`) so that a system that
  won every vote still has a finite rating. Ratings are centred (mean 0).
- Uncertainty: bootstrap over raters (resample whole raters with replacement), percentile CIs for
  ratings and for ranks (rank bounds).
- Agreement: Fleiss' kappa (varying raters per item) and Krippendorff's alpha (nominal).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

_Z95 = 1.959963984540054


def _z(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}.")
    from scipy.stats import norm

    return float(norm.ppf(0.5 + confidence / 2.0)) if confidence != 0.95 else _Z95


def wilson_interval(p_hat: float, n_eff: float, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion estimated from an effective sample size `n_eff`."""
    if n_eff <= 0:
        return (0.0, 1.0)
    z = _z(confidence)
    z2n = z * z / n_eff
    centre = (p_hat + z2n / 2.0) / (1.0 + z2n)
    half = z / (1.0 + z2n) * math.sqrt(max(p_hat * (1.0 - p_hat) / n_eff + z2n / (4.0 * n_eff), 0.0))
    return (max(0.0, centre - half), min(1.0, centre + half))


def win_rate_ci(
    scores: Sequence[float] | np.ndarray,
    clusters: Sequence | np.ndarray | None = None,
    confidence: float = 0.95,
) -> tuple[float, float, float, float]:
    """Mean score (ties as 0.5) with a rater-clustered Wilson CI.

    scores: (n,) values in [0, 1]; clusters: (n,) rater ids or None (independent votes).
    Returns (rate, ci_low, ci_high, n_eff). Empty input gives (nan, 0, 1, 0).
    """
    s = np.asarray(scores, dtype=np.float64)
    n = s.size
    if n == 0:
        return (float("nan"), 0.0, 1.0, 0.0)
    p = float(s.mean())
    resid = s - p
    if clusters is None:
        groups = n
        per_group = resid
    else:
        codes, _ = pd.factorize(pd.Series(np.asarray(clusters)))
        groups = int(codes.max()) + 1
        per_group = np.bincount(codes, weights=resid, minlength=groups)  # (G,) summed residuals
    if groups >= 2:
        var = groups / (groups - 1.0) * float(np.sum(per_group**2)) / (n * n)
    else:
        var = float(np.var(s, ddof=1)) / n if n > 1 else 0.0
    # A degenerate sample (all wins, all losses, one voter) has no variance estimate: fall back
    # to the raw count, which is what plain Wilson would do.
    n_eff = p * (1.0 - p) / var if var > 0 and 0.0 < p < 1.0 else float(n)
    lo, hi = wilson_interval(p, n_eff, confidence)
    return (p, lo, hi, n_eff)


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
    """
    wins = np.asarray(wins, dtype=np.float64)
    k = wins.shape[0]
    total = wins + wins.T  # (K, K) comparisons between i and j
    won = wins.sum(axis=1)  # (K,)
    theta = np.zeros(k)
    for _ in range(max_iter):
        p = 1.0 / (1.0 + np.exp(theta[None, :] - theta[:, None]))  # (K, K) P(i beats j)
        grad = won - (total * p).sum(axis=1) - 2.0 * l2 * theta
        w = total * p * (1.0 - p)
        hess = w - np.diag(w.sum(axis=1)) - 2.0 * l2 * np.eye(k)  # negative (semi)definite
        if l2 > 0:
            step = np.linalg.solve(hess, grad)
        else:  # no prior: the centred direction is identifiable only up to a constant
            step = np.linalg.pinv(hess) @ grad
        theta = theta - step
        if np.max(np.abs(step)) < tol:
            break
    return theta - theta.mean()


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
) -> pd.DataFrame:
    """Bradley-Terry ratings with bootstrap-over-raters CIs and rank bounds.

    a, b: (n,) system indices into `names`; score_a: (n,) in {0, 0.5, 1}; clusters: (n,) rater ids.
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
    if n_raters >= 2 and n_boot > 0:
        rng = np.random.default_rng(seed)
        draws = rng.multinomial(n_raters, np.full(n_raters, 1.0 / n_raters), size=n_boot)  # (B, R)
        boot_wins = np.tensordot(draws.astype(np.float64), per_rater, axes=(1, 0))  # (B, K, K)
        boot = np.stack([bt_fit(w, l2=l2) for w in boot_wins])  # (B, K)
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


def pairwise_win_rates(
    a: np.ndarray,
    b: np.ndarray,
    score_a: np.ndarray,
    clusters: np.ndarray | None,
    names: Sequence[str],
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Win rate of every system against every other it met (ties as half), with CIs.

    Returns long format: system, opponent, win_rate, ci_low, ci_high, votes, wins, ties, losses
    (one row per ordered pair that has at least one vote).
    """
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    score_a = np.asarray(score_a, dtype=np.float64)
    cl = np.asarray(clusters) if clusters is not None else None
    rows = []
    for i in range(len(names)):
        for j in range(len(names)):
            if i == j:
                continue
            as_a = (a == i) & (b == j)
            as_b = (a == j) & (b == i)
            s = np.concatenate([score_a[as_a], 1.0 - score_a[as_b]])
            if s.size == 0:
                continue
            c = None if cl is None else np.concatenate([cl[as_a], cl[as_b]])
            rate, lo, hi, _ = win_rate_ci(s, c, confidence)
            rows.append(
                dict(system=names[i], opponent=names[j], win_rate=rate, ci_low=lo, ci_high=hi,
                     votes=int(s.size), wins=int((s == 1).sum()), ties=int((s == 0.5).sum()),
                     losses=int((s == 0).sum()))
            )
    cols = ["system", "opponent", "win_rate", "ci_low", "ci_high", "votes", "wins", "ties", "losses"]
    return pd.DataFrame(rows, columns=cols)


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
) -> pd.DataFrame:
    """Each system's share of won comparisons against all others (the paper's table), with CIs."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    score_a = np.asarray(score_a, dtype=np.float64)
    cl = np.asarray(clusters) if clusters is not None else None
    rows = []
    for i, name in enumerate(names):
        s = np.concatenate([score_a[a == i], 1.0 - score_a[b == i]])
        c = None if cl is None else np.concatenate([cl[a == i], cl[b == i]])
        rate, lo, hi, _ = win_rate_ci(s, c, confidence)
        rows.append(dict(system=name, win_rate=rate, ci_low=lo, ci_high=hi, votes=int(s.size)))
    frame = pd.DataFrame(rows, columns=["system", "win_rate", "ci_low", "ci_high", "votes"])
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
