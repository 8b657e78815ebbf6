"""The seed-block x source-video random-effects model behind every effect's interval.

numpy and scipy.special only (the dashboard imports this and must not pull in torch).

A contrast (one effect on one metric) is observed as a matrix D[s, g]: its value on seed
block s (one trained model per variant; the variants of one block share their seed) and
source video g (the mean over the held-out clips cut from that video). The model is the
two-way crossed random-effects model without replication,

    D[s, g] = theta + a[s] + b[g] + e[s, g],
    a ~ N(0, var_seed)     trained-model noise: the variant x seed term that does not cancel
    b ~ N(0, var_source)   the effect differs from video to video (variant x source)
    e ~ N(0, var_resid)    the rest, clip noise included,

so Var(mean of D) = var_seed / S + var_source / G + var_resid / (S G). The variance
components come from the ANOVA mean squares (Searle, Casella & McCulloch, "Variance
Components", 1992, ch. 4): E[MS_seed] = var_resid + G var_seed, E[MS_source] = var_resid +
S var_source, E[MS_resid] = var_resid. A component whose mean square falls below MS_resid
is set to zero. The standard error is the square root of the estimated variance; its
degrees of freedom are Satterthwaite's (1946) for that linear combination of mean squares,
and the interval is theta_hat +- t(df) * SE. This is the treatment of "stimuli as a random
factor" of Judd, Westfall & Kenny (2012, J. Pers. Soc. Psychol. 103:54) with seeds in the
role of participants. A bootstrap over seeds was not used: with 3 seeds there are 10
distinct resamples, the percentile interval's variance is (S-1)/S of the truth and it has
no t correction, and resampling both factors of a crossed design is biased either way
(Owen 2007, "The pigeonhole bootstrap", Ann. Appl. Stat. 1:386). The known-answer tests in
tests/test_stats.py check the coverage of this interval.

With one seed block, var_seed is not estimable: the only interval left is the clip-level
one (sources as the units, training noise ignored), which `crossed_contrasts` returns as
`clip_se` / `clip_df` and callers must label as such and never turn into a verdict.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import stdtr, stdtrit


@dataclass(frozen=True)
class Crossed:
    """Estimates for E contrasts at once; every field is `(E,)`."""

    estimate: np.ndarray  # mean of D over the kept seed blocks and sources
    se: np.ndarray  # standard error with all three components (NaN with one seed block)
    df: np.ndarray  # Satterthwaite degrees of freedom of `se`
    clip_se: np.ndarray  # standard error over sources only (the one-seed fallback; ignores training noise)
    clip_df: np.ndarray  # G - 1
    var_seed: np.ndarray  # variance components (per-block contrast values' scale)
    var_source: np.ndarray
    var_resid: np.ndarray
    n_seeds: np.ndarray  # seed blocks kept (blocks with no value at all are dropped)
    n_sources: np.ndarray  # sources kept (a source missing in a kept block is dropped)
    n_seeds_missing: np.ndarray  # blocks of the table with no value for this contrast
    exactly_zero: np.ndarray  # every value is exactly 0: the contrast cannot depend on its factor


def crossed_contrasts(values: np.ndarray) -> Crossed:
    """Estimate, SE and df of the mean of D for many contrasts.

    Args:
        values: `(E, S, G)` contrast values per seed block and source; NaN = not observed.
            A block with no finite value is dropped; then a source missing in any kept block.

    Returns:
        a `Crossed` of `(E,)` arrays; se/df are NaN where fewer than 2 blocks remain.
    """
    d = np.asarray(values, dtype=float)
    finite = np.isfinite(d)
    rows = finite.any(axis=2)  # (E, S)
    cols = ~((~finite) & rows[:, :, None]).any(axis=1) & finite.any(axis=1)  # (E, G)
    mask = rows[:, :, None] & cols[:, None, :]  # (E, S, G) the complete sub-table kept
    s = rows.sum(axis=1).astype(float)  # (E,)
    g = cols.sum(axis=1).astype(float)
    d0 = np.where(mask, d, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        grand = d0.sum(axis=(1, 2)) / (s * g)
        row_mean = d0.sum(axis=2) / g[:, None]  # (E, S)
        col_mean = d0.sum(axis=1) / s[:, None]  # (E, G)
        dev_r = np.where(rows, row_mean - grand[:, None], 0.0)
        dev_c = np.where(cols, col_mean - grand[:, None], 0.0)
        ms_seed = g * (dev_r**2).sum(axis=1) / (s - 1)
        ms_source = s * (dev_c**2).sum(axis=1) / (g - 1)
        resid = np.where(mask, d - row_mean[:, :, None] - col_mean[:, None, :] + grand[:, None, None], 0.0)
        df_resid = (s - 1) * (g - 1)
        ms_resid = (resid**2).sum(axis=(1, 2)) / df_resid
    one_source = g < 2
    ms_resid = np.where(one_source | (s < 2), 0.0, ms_resid)  # no residual term to separate
    ms_source = np.where(one_source, 0.0, ms_source)
    seed_on = ms_seed > ms_resid
    source_on = ms_source > ms_resid
    # V * S * G = k_seed MS_seed + k_source MS_source + k_resid MS_resid, from the clamped components
    k_seed, k_source = seed_on.astype(float), source_on.astype(float)
    k_resid = 1.0 - k_seed - k_source
    terms = np.stack([k_seed * ms_seed, k_source * ms_source, k_resid * ms_resid], axis=1)  # (E, 3)
    dfs = np.stack([s - 1, g - 1, df_resid], axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        total = np.nan_to_num(terms).sum(axis=1)
        var = total / (s * g)
        contrib = np.where(terms != 0, np.nan_to_num(terms) ** 2 / dfs, 0.0).sum(axis=1)
        df = np.where(contrib > 0, total**2 / contrib, np.inf)
        se = np.sqrt(np.maximum(var, 0.0))
        clip_se = np.where(g >= 2, np.sqrt(np.nan_to_num(ms_source) / (s * g)), np.nan)
        var_seed = np.where(seed_on, (ms_seed - ms_resid) / g, 0.0)
        var_source = np.where(source_on, (ms_source - ms_resid) / s, 0.0)
    estimable = s >= 2
    se = np.where(estimable, se, np.nan)
    df = np.where(estimable, df, np.nan)
    exactly_zero = (np.where(mask, np.abs(d0), 0.0).max(axis=(1, 2), initial=0.0) == 0.0) & (mask.any(axis=(1, 2)))
    return Crossed(
        estimate=np.where(s * g > 0, grand, np.nan), se=se, df=df, clip_se=clip_se, clip_df=np.where(g >= 2, g - 1, np.nan),
        var_seed=np.where(estimable, var_seed, np.nan), var_source=var_source, var_resid=np.where(estimable, ms_resid, np.nan),
        n_seeds=s.astype(int), n_sources=g.astype(int), n_seeds_missing=(d.shape[1] - s).astype(int),
        exactly_zero=exactly_zero,
    )  # fmt: skip


def t_quantile(df: np.ndarray, q: float) -> np.ndarray:
    """Student-t quantile, normal where df is infinite; NaN where df is NaN."""
    df = np.asarray(df, dtype=float)
    out = stdtrit(np.where(np.isfinite(df), df, 1e9), q)
    return np.where(np.isnan(df), np.nan, out)


def t_pvalue(estimate: np.ndarray, se: np.ndarray, df: np.ndarray) -> np.ndarray:
    """Two-sided p-value of H0: effect = 0."""
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.abs(np.asarray(estimate, dtype=float)) / np.asarray(se, dtype=float)
    df = np.asarray(df, dtype=float)
    p = 2.0 * stdtr(np.where(np.isfinite(df), df, 1e9), -t)
    p = np.where(np.asarray(se) == 0, np.where(np.asarray(estimate) == 0, 1.0, 0.0), p)
    return np.where(np.isnan(t) & ~(np.asarray(se) == 0), np.nan, p)


def min_detectable(se: np.ndarray, df: np.ndarray, confidence: float = 0.95, power: float = 0.8) -> np.ndarray:
    """The noise floor: the smallest true effect found with probability `power` by a two-sided test.

    (t_{1-alpha/2} + t_{power}) * SE with the contrast's own df (the usual power
    approximation; it ignores the far tail and the noncentral t's extra spread).
    """
    alpha = 1.0 - confidence
    return (t_quantile(df, 1.0 - alpha / 2.0) + t_quantile(df, power)) * np.asarray(se, dtype=float)


def plan_variance(var_seed: float, var_source: float, var_resid: float, seeds: int, sources: int) -> tuple[float, float]:
    """SE and Satterthwaite df of a contrast measured on `seeds` blocks x `sources` videos.

    The expected mean squares of the model above at that design, combined as
    `crossed_contrasts` combines them; `ltxlab plan` sizes the next sweep with it.
    """
    s, g = float(seeds), float(sources)
    ms = np.array([var_resid + g * var_seed, var_resid + s * var_source, var_resid])
    dfs = np.array([s - 1, g - 1, (s - 1) * (g - 1)])
    if g < 2:  # one source: only the seed term is left, as in the estimator
        k = np.array([1.0, 0.0, 0.0])
    else:
        k = np.array([float(var_seed > 0), float(var_source > 0), 0.0])
        k[2] = 1.0 - k[0] - k[1]
    terms = k * ms
    total = float(terms.sum())
    used = (terms != 0) & (dfs > 0)
    contrib = float((terms[used] ** 2 / dfs[used]).sum())
    df = total * total / contrib if contrib > 0 else float("inf")
    return float(np.sqrt(max(total / (s * g), 0.0))), float(df)


def power_at(effect: float, se: float, df: float, confidence: float = 0.95) -> float:
    """Approximate power of the two-sided t test for a true effect `effect` (a shifted central t)."""
    if not np.isfinite(se) or se <= 0 or not df > 0:
        return float("nan")
    crit = float(t_quantile(np.array(df), 1.0 - (1.0 - confidence) / 2.0))
    dof, shift = (df if np.isfinite(df) else 1e9), abs(effect) / se
    return float(1.0 - stdtr(dof, crit - shift) + stdtr(dof, -crit - shift))  # both rejection tails: alpha at 0


def plan_sizes(
    effect: float, var_seed: float, var_source: float, var_resid: float, seeds: int, sources: int,
    power: float = 0.8, confidence: float = 0.95, max_seeds: int = 64, max_sources: int = 4096,
) -> dict:
    """How many seed blocks (at `sources`) or sources (at `seeds`) detect `effect` with `power`.

    Returns {"power_now", "seeds_needed" (None past max_seeds), "sources_needed" (None when
    the seed term keeps the power below target at `seeds` whatever the sources), "both" (the
    fewest seeds that reach it with at most 16x today's sources, and those sources; None if
    none), "grid": [{"seeds", "sources", "power", "se"}]}.
    """
    def power_of(s: int, g: int) -> tuple[float, float]:
        se, df = plan_variance(var_seed, var_source, var_resid, s, g)
        return power_at(effect, se, df, confidence), se

    seeds_needed = next((s for s in range(2, max_seeds + 1) if power_of(s, sources)[0] >= power), None)

    def min_sources(s: int, cap: int) -> int | None:  # fewest sources reaching `power` at s seeds, up to cap
        if power_of(s, cap)[0] < power:
            return None
        low, high = 2, max(sources, 2)
        while power_of(s, high)[0] < power:
            low, high = high, min(high * 2, cap)
        while low < high:
            mid = (low + high) // 2
            low, high = (mid + 1, high) if power_of(s, mid)[0] < power else (low, mid)
        return high

    both = None  # the fewest seeds that reach `power` with at most 16x today's sources, and those sources
    for s in range(2, max_seeds + 1):
        g = min_sources(s, 16 * max(sources, 2))
        if g is not None:
            both = {"seeds": s, "sources": g}
            break
    grid = []
    for s in sorted({seeds, 3, 5, 8, 12, 20} - {0, 1}):
        for g in sorted({sources, 2 * sources, 4 * sources}):
            p, se = power_of(s, g)
            grid.append({"seeds": s, "sources": g, "power": p, "se": se})
    return {"power_now": power_of(seeds, sources)[0] if seeds >= 2 else float("nan"), "seeds_needed": seeds_needed,
            "sources_needed": min_sources(seeds, max_sources) if seeds >= 2 else None, "both": both, "grid": grid}
