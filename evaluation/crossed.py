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
S var_source, E[MS_resid] = var_resid, so S G Var(mean of D) is estimated by

    MS_seed + max(MS_source - MS_resid, 0).

The seed term is always kept: MS_seed has only S - 1 degrees of freedom (1 or 2 in a
typical sweep), so it falls below MS_resid by chance in many sweeps, and dropping it then
(the usual pretest) removes training noise exactly when the seeds happened to agree; that
made p < 0.001 up to 26 times too frequent at 3 seeds x 256 sources. The degrees of freedom
are Satterthwaite's (1946) for this combination, but never more than the same formula gives
with MS_seed at its one-sided 95% upper confidence limit (S - 1) MS_seed / chi2_{0.05, S-1}:
Satterthwaite's df estimated from the same mean squares grows toward G - 1 when MS_seed is
small by chance, which again pairs small SEs with small t quantiles. The cap keeps the tail
calibrated (P(p < 0.005) at most nominal on the grid of docs/statistics.md) and, unlike a
flat S - 1, keeps the extra df when the source term really dominates. The df is floored at
min(S - 1, G - 1): the - MS_resid term can push Satterthwaite's df far below 1. The interval is
theta_hat +- t(df) * SE. This is the treatment of "stimuli as a random factor" of Judd,
Westfall & Kenny (2012, J. Pers. Soc. Psychol. 103:54) with seeds in the role of
participants. A bootstrap over seeds was not used: with 3 seeds there are 10 distinct
resamples, the percentile interval's variance is (S-1)/S of the truth and it has no t
correction, and resampling both factors of a crossed design is biased either way (Owen
2007, "The pigeonhole bootstrap", Ann. Appl. Stat. 1:386). The known-answer tests in
tests/test_stats.py check the coverage and the tail of this interval.

With one seed block, var_seed is not estimable: the only interval left is the clip-level
one (sources as the units, training noise ignored), which `crossed_contrasts` returns as
`clip_se` / `clip_df` and callers must label as such and never turn into a verdict.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import chdtri, stdtr, stdtrit

SEED_DF_CAP_LEVEL = 0.95  # the df cap puts MS_seed at this one-sided upper confidence limit
PLAN_SEED_LEVEL = 0.8  # `ltxlab plan` sizes with var_seed's upper confidence limit at this level (Browne 1995)


@dataclass(frozen=True)
class Crossed:
    """Estimates for E contrasts at once; every field is `(E,)`."""

    estimate: np.ndarray  # mean of D over the kept seed blocks and sources
    se: np.ndarray  # standard error with all three components (NaN with one seed block)
    df: np.ndarray  # Satterthwaite degrees of freedom of `se`, capped as in the module docstring
    clip_se: np.ndarray  # standard error over sources only (the one-seed fallback; ignores training noise)
    clip_df: np.ndarray  # G - 1
    var_seed: np.ndarray  # variance components (per-block contrast values' scale)
    var_source: np.ndarray
    var_resid: np.ndarray
    var_seed_upper: np.ndarray  # var_seed's one-sided 80% upper confidence limit, for `ltxlab plan`
    n_seeds: np.ndarray  # seed blocks kept (blocks with no value at all are dropped)
    n_sources: np.ndarray  # sources kept (a source missing in a kept block is dropped)
    n_seeds_missing: np.ndarray  # blocks of the table with no value for this contrast
    exactly_zero: np.ndarray  # every value is exactly 0: the two sides scored the same everywhere
    no_spread: np.ndarray  # every value is the same number: no variance to build an interval from


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
    source_on = ms_source > ms_resid  # only the source component is clamped at 0; the seed term stays
    with np.errstate(invalid="ignore", divide="ignore"):
        total = ms_seed + np.where(source_on, ms_source - ms_resid, 0.0)  # S G Var(theta_hat)
        var = total / (s * g)
        df = combined_df(ms_seed, ms_source, ms_resid, s, g)
        se = np.sqrt(np.maximum(var, 0.0))
        clip_se = np.where(g >= 2, np.sqrt(np.nan_to_num(ms_source) / (s * g)), np.nan)
        var_seed = np.maximum(ms_seed - ms_resid, 0.0) / g  # reported clamped; the SE uses MS_seed itself
        var_source = np.where(source_on, (ms_source - ms_resid) / s, 0.0)
    estimable = s >= 2
    se = np.where(estimable, se, np.nan)
    df = np.where(estimable, df, np.nan)
    kept = mask.any(axis=(1, 2))
    exactly_zero = (np.where(mask, np.abs(d0), 0.0).max(axis=(1, 2), initial=0.0) == 0.0) & kept
    spread = np.where(mask, d0, -np.inf).max(axis=(1, 2), initial=-np.inf) - np.where(mask, d0, np.inf).min(axis=(1, 2), initial=np.inf)
    return Crossed(
        estimate=np.where(s * g > 0, grand, np.nan), se=se, df=df, clip_se=clip_se, clip_df=np.where(g >= 2, g - 1, np.nan),
        var_seed=np.where(estimable, var_seed, np.nan), var_source=var_source, var_resid=np.where(estimable, ms_resid, np.nan),
        var_seed_upper=seed_variance_upper(ms_seed, ms_resid, s, g),
        n_seeds=s.astype(int), n_sources=g.astype(int), n_seeds_missing=(d.shape[1] - s).astype(int),
        exactly_zero=exactly_zero, no_spread=kept & (spread == 0.0),
    )  # fmt: skip


def _ms_seed_upper(ms_seed: np.ndarray, s: np.ndarray, level: float) -> np.ndarray:
    """The one-sided `level` upper confidence limit of E[MS_seed]: (S - 1) MS_seed / chi2_{1-level, S-1}."""
    return (s - 1) * ms_seed / chdtri(np.maximum(s - 1, 1), level)


def combined_df(ms_seed: np.ndarray, ms_source: np.ndarray, ms_resid: np.ndarray, s: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Degrees of freedom of MS_seed + max(MS_source - MS_resid, 0): Satterthwaite's, capped and floored.

    The cap is Satterthwaite's df with MS_seed at its one-sided `SEED_DF_CAP_LEVEL` upper
    confidence limit: a seed mean square that is small by chance must not buy the interval
    the source term's many degrees of freedom (module docstring). NaN where S < 2.
    """
    s, g = np.asarray(s, dtype=float), np.asarray(g, dtype=float)
    source_on = (g >= 2) & (ms_source > ms_resid)
    with np.errstate(invalid="ignore", divide="ignore"):
        source_contrib = np.where(source_on, ms_source**2 / (g - 1) + ms_resid**2 / ((s - 1) * (g - 1)), 0.0)
        source_term = np.where(source_on, ms_source - ms_resid, 0.0)

        def satterthwaite(seed_ms: np.ndarray) -> np.ndarray:
            contrib = seed_ms**2 / (s - 1) + source_contrib
            return np.where(contrib > 0, (seed_ms + source_term) ** 2 / contrib, s - 1)

        upper = _ms_seed_upper(ms_seed, s, SEED_DF_CAP_LEVEL)
        df = np.minimum(satterthwaite(ms_seed), satterthwaite(upper))
        # MS_source - MS_resid can make Satterthwaite's df far below 1 (a t quantile in the
        # thousands); no mean square in the sum has fewer than min(S - 1, G - 1) df
        floor = np.where(source_on, np.minimum(s - 1, g - 1), s - 1)
        return np.where(s >= 2, np.maximum(df, floor), np.nan)


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
    """SE and degrees of freedom of a contrast measured on `seeds` blocks x `sources` videos.

    The expected mean squares of the model above at that design, combined as
    `crossed_contrasts` combines them (seed term always in, `combined_df`); `ltxlab plan`
    sizes the next sweep with it.
    """
    s, g = float(seeds), float(sources)
    ms_seed, ms_resid = var_resid + g * var_seed, var_resid
    ms_source = var_resid + s * var_source if g >= 2 else 0.0  # one source: only the seed term, as in the estimator
    total = ms_seed + max(ms_source - ms_resid, 0.0)
    df = float(combined_df(np.array(ms_seed), np.array(ms_source), np.array(ms_resid), np.array(s), np.array(g)))
    return float(np.sqrt(max(total / (s * g), 0.0))), df


def seed_variance_upper(ms_seed: np.ndarray, ms_resid: np.ndarray, seeds: np.ndarray, sources: np.ndarray,
                        level: float = PLAN_SEED_LEVEL) -> np.ndarray:
    """The seed variance a sweep cannot rule out: the one-sided `level` upper confidence limit of var_seed.

    var_seed = (E[MS_seed] - var_resid) / G rests on MS_seed's S - 1 degrees of freedom (1 or 2
    in a typical sweep), so a plan from the point estimate is underpowered about half the
    time and, where the estimate clamps to 0, promises that more sources alone will do.
    Sizing from the upper confidence limit of a pilot's variance is Browne's (1995, Stat.
    Med. 14:1933) remedy; `level` 0.8 is his choice. NaN where S < 2.
    """
    s = np.asarray(seeds, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        upper = _ms_seed_upper(ms_seed, s, level)  # of E[MS_seed] = var_resid + G var_seed
        return np.where(s >= 2, np.maximum(upper - ms_resid, 0.0) / sources, np.nan)


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
