"""Statistics of ablations: factorial main effects, 2x2 interactions, paired bootstrap CIs, Pareto fronts.

numpy and pandas only (the dashboard imports this and must not pull in torch).

The unit of replication is a (split, clip, seed) triple: every variant of a sweep is run
with the same seeds and scored on the same held-out clips, so the variants' scores on one
unit are paired. For an axis A with levels a and b, the effect on a unit is

    mean over the unit's runs with A=a of the metric  -  the same for A=b,

which averages over the other axes (a factorial main effect); the estimate is its mean
over units and the confidence interval comes from a paired bootstrap that resamples units
with replacement (Efron & Tibshirani, "An Introduction to the Bootstrap", ch. 13, percentile
interval). A 2x2 interaction of two-level axes A, B on a unit is
(m(a1,b1) - m(a0,b1)) - (m(a1,b0) - m(a0,b0)), m being cell means over the other axes.

All effects of one metric share one resampling: a (n_boot, n_units) matrix of multinomial
counts W, so every bootstrap replicate of every effect is one matrix product W @ D.
A unit missing for an effect (a failed run) is dropped from that effect by a mask, which
keeps the replicates paired with the other effects.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

NO_EFFECT = "CI includes 0: no evidence of an effect"
NO_INTERACTION = "CI includes 0: no evidence of an interaction"
EFFECT_COLUMNS = (
    "metric", "axis", "level_a", "level_b", "estimate", "ci_low", "ci_high", "n_units", "n_units_missing",
    "n_runs_a", "n_runs_b", "higher_is_better", "ci_includes_zero", "better", "verdict",
)  # fmt: skip
INTERACTION_COLUMNS = (
    "metric", "axis_a", "axis_b", "a0", "a1", "b0", "b1", "estimate", "ci_low", "ci_high", "n_units",
    "n_units_missing", "higher_is_better", "ci_includes_zero", "verdict",
)  # fmt: skip


@dataclass(frozen=True)
class EffectReport:
    """Main effects and interactions of every axis on every metric, with what was used."""

    main: pd.DataFrame  # one row per (metric, axis, level pair); columns EFFECT_COLUMNS; effect = level_a - level_b
    interactions: pd.DataFrame  # one row per (metric, pair of two-level axes); columns INTERACTION_COLUMNS
    runs_used: int  # `done` runs with at least one metric row
    runs_excluded: dict[str, int]  # status -> count of runs left out (pending, running, failed, done-without-metrics)
    units: int  # distinct (split, clip, seed) units seen
    n_boot: int  # bootstrap replicates
    confidence: float  # e.g. 0.95
    notes: list[str] = field(default_factory=list)  # one-sentence remarks for the reader

    @property
    def summary(self) -> str:
        """One sentence: what went into the estimates."""
        excluded = ", ".join(f"{n} {s}" for s, n in self.runs_excluded.items() if n)
        left = f"; left out: {excluded}" if excluded else ""
        return f"{self.runs_used} done runs over {self.units} clip x seed units, {self.n_boot} paired bootstrap resamples{left}."


def bootstrap_weights(n_units: int, n_boot: int, seed: int) -> np.ndarray:
    """Resampling counts: row r says how often each unit is drawn in replicate r.

    Returns:
        float64 `(n_boot, n_units)`, each row summing to n_units.
    """
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n_units, size=(n_boot, n_units))  # (B, U) unit drawn at each position
    weights = np.zeros((n_boot, n_units))
    np.add.at(weights, (np.arange(n_boot)[:, None], idx), 1.0)
    return weights


def paired_bootstrap(
    unit_effects: np.ndarray, *, n_boot: int = 2000, seed: int = 0, confidence: float = 0.95, weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mean over units and percentile bootstrap CI of per-unit effects, for many effects at once.

    Args:
        unit_effects: `(U, E)` (or `(U,)`) per-unit effect values; NaN = unit missing for that effect.
        weights: optional `(n_boot, U)` counts from `bootstrap_weights` (shared across calls).

    Returns:
        estimate, ci_low, ci_high, n_units: each `(E,)` (scalars as 0-d arrays for 1-D input).
    """
    d = np.asarray(unit_effects, dtype=float)
    squeeze = d.ndim == 1
    d = d[:, None] if squeeze else d  # (U, E)
    present = ~np.isnan(d)
    filled = np.where(present, d, 0.0)
    n_units = present.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        estimate = filled.sum(axis=0) / n_units
        w = bootstrap_weights(d.shape[0], n_boot, seed) if weights is None else weights
        # float operands keep both products on BLAS (a bool operand takes numpy's slow generic loop)
        replicates = (w @ filled) / (w @ present.astype(np.float64))  # (B, E): weighted mean over resampled units
    alpha = (1.0 - confidence) / 2.0
    if replicates.size and np.isfinite(replicates).any():
        low, high = np.nanquantile(replicates, [alpha, 1.0 - alpha], axis=0)
    else:
        low = high = np.full(d.shape[1], np.nan)
    low = np.where(n_units > 0, low, np.nan)
    high = np.where(n_units > 0, high, np.nan)
    if squeeze:
        return estimate[0], low[0], high[0], n_units[0]
    return estimate, low, high, n_units


# ----------------------------------------------------------------------------- data layout


@dataclass(frozen=True)
class _Design:
    values: np.ndarray  # (M, U, V) metric value per metric, unit, variant (NaN = no run / no score)
    metric_names: list[str]  # M
    axis_codes: dict[str, np.ndarray]  # axis -> (V,) level index of each variant
    axis_levels: dict[str, list]  # axis -> levels (index order)
    n_runs: dict[str, np.ndarray]  # axis -> (L,) done runs per level


def _level_key(value) -> str:
    """Levels compare as strings, so 0.1 from sweep.json and 0.1 from parquet match, and None works."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value)) if abs(value) < 1e15 else str(value)
    return str(value)


def _axis_order(runs: pd.DataFrame, axis: str, levels: list | None) -> list:
    seen = list(dict.fromkeys(runs[axis].tolist()))
    if not levels:
        try:
            return sorted(seen)
        except TypeError:
            return seen
    by_key = {_level_key(v): v for v in seen}
    ordered = [by_key.get(_level_key(v), v) for v in levels]
    return ordered + [v for v in seen if _level_key(v) not in {_level_key(o) for o in ordered}]


def _design(
    metrics: pd.DataFrame, runs: pd.DataFrame, axes: list[str], axis_levels: dict[str, list], metric_names: list[str]
) -> tuple[_Design, int]:
    variant_cols = list(axes)
    variant_of_run = pd.Series("all", index=runs.index)
    for k, col in enumerate(variant_cols):
        level = runs[col].map(_level_key).astype(str)
        variant_of_run = level if k == 0 else variant_of_run + "|" + level
    variants = list(dict.fromkeys(variant_of_run.tolist()))
    v_index = pd.Series(np.arange(len(variants)), index=variants)
    run_variant = pd.Series(v_index[variant_of_run].to_numpy(), index=runs["run_id"].to_numpy())

    m = metrics[metrics["run_id"].isin(run_variant.index) & metrics["metric"].isin(metric_names)]
    unit_key = m["split"].astype(str) + "\x1f" + m["clip_id"].astype(str) + "\x1f" + m["seed"].astype(str)
    unit_codes, units = pd.factorize(unit_key)
    metric_codes = pd.Categorical(m["metric"], categories=metric_names).codes
    var_codes = run_variant.reindex(m["run_id"].to_numpy()).to_numpy()
    shape = (len(metric_names), len(units), len(variants))
    sums, counts = np.zeros(shape), np.zeros(shape)
    values = m["value"].to_numpy(dtype=float)
    ok = np.isfinite(values)
    where = (metric_codes[ok], unit_codes[ok], var_codes[ok])
    np.add.at(sums, where, values[ok])  # reruns of one variant+seed average
    np.add.at(counts, where, 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        cube = sums / counts  # (M, U, V)

    first_run = ~variant_of_run.duplicated()
    axis_codes, levels_out, n_runs = {}, {}, {}
    for axis in axes:
        order = _axis_order(runs, axis, axis_levels.get(axis))
        key_to_code = {_level_key(v): i for i, v in enumerate(order)}
        per_variant = runs.loc[first_run.to_numpy(), axis].map(_level_key).map(key_to_code).to_numpy()
        axis_codes[axis] = per_variant.astype(int)
        levels_out[axis] = order
        n_runs[axis] = np.bincount(runs[axis].map(_level_key).map(key_to_code).to_numpy().astype(int), minlength=len(order))
    return _Design(cube, metric_names, axis_codes, levels_out, n_runs), len(units)


def _cell_means(cube: np.ndarray, member: np.ndarray) -> np.ndarray:
    """Mean over the variants in each cell, NaN-aware.

    Args:
        cube: `(M, U, V)`; member: `(V, C)` 0/1 membership of variants in C cells.

    Returns:
        `(M, U, C)`; NaN where a unit has no scored variant in the cell.
    """
    present = ~np.isnan(cube)
    sums = np.where(present, cube, 0.0) @ member
    counts = present.astype(float) @ member
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / counts, np.nan)


# ----------------------------------------------------------------------------- verdicts


def _fmt(x: float) -> str:
    return f"{x:.3g}" if abs(x) < 1000 else f"{x:,.0f}"


def effect_verdict(axis: str, level_a, level_b, metric: str, est: float, low: float, high: float, higher_is_better: bool, confidence: float = 0.95) -> tuple[bool, str | None, str]:
    """(ci_includes_zero, better level or None, plain-language verdict) for effect = a - b."""
    if not np.isfinite(est) or not np.isfinite(low):
        return True, None, "not enough paired units to estimate"
    if low <= 0.0 <= high:
        return True, None, NO_EFFECT
    a_better = (est > 0) == higher_is_better
    better, worse = (level_a, level_b) if a_better else (level_b, level_a)
    pct = int(round(confidence * 100))
    direction = "higher" if est * (1 if a_better else -1) > 0 else "lower"
    return False, better, (
        f"{axis}={better} is better than {axis}={worse} by {_fmt(abs(est))} {metric} ({direction} is better; "
        f"{pct}% CI {_fmt(min(abs(low), abs(high)))} to {_fmt(max(abs(low), abs(high)))})"
    )


def interaction_verdict(axis_a: str, a0, a1, axis_b: str, b0, b1, metric: str, est: float, low: float, high: float, higher_is_better: bool, confidence: float = 0.95) -> tuple[bool, str]:
    """(ci_includes_zero, verdict) for (a1b1 - a0b1) - (a1b0 - a0b0)."""
    if not np.isfinite(est) or not np.isfinite(low):
        return True, "not enough paired units to estimate"
    if low <= 0.0 <= high:
        return True, NO_INTERACTION
    helps_more = (est > 0) == higher_is_better
    pct = int(round(confidence * 100))
    return False, (
        f"switching {axis_a} from {a0} to {a1} is {_fmt(abs(est))} {metric} {'better' if helps_more else 'worse'} "
        f"with {axis_b}={b1} than with {axis_b}={b0} ({pct}% CI {_fmt(low)} to {_fmt(high)})"
    )


# ----------------------------------------------------------------------------- effects


def factorial_effects(
    metrics: pd.DataFrame,
    runs: pd.DataFrame,
    axes: list[str],
    *,
    axis_levels: dict[str, list] | None = None,
    higher_is_better: dict[str, bool] | None = None,
    metric_names: list[str] | None = None,
    split: str | None = None,
    n_boot: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> EffectReport:
    """Main effects of every axis level pair and 2x2 interactions of two-level axes, per metric.

    Args:
        metrics: long format with run_id, seed, split, clip_id, metric, value.
        runs: one row per run with run_id, status and one column per axis.
        axes: the factors ("seed" is ignored: it is part of the unit).
        axis_levels: level order per axis (sweep.json "axes"); the first level is "0" for interactions.
        higher_is_better: per metric (default True), for verdicts.
        metric_names: metrics to analyse (default: all in `metrics`).
        split: only rows of this split (default: all, the split is part of the unit).

    Returns:
        an EffectReport; only `done` runs count, the rest are tallied in `runs_excluded`.
    """
    axes = [a for a in axes if a != "seed"]
    missing = [a for a in axes if a not in runs.columns]
    if missing:
        raise ValueError(f"Axis column(s) {', '.join(missing)} are not in the runs table; pass axes that are columns of runs.parquet.")
    hib = higher_is_better or {}
    status = runs["status"].astype(str) if "status" in runs.columns else pd.Series("done", index=runs.index)
    done = runs[status == "done"]
    if split is not None:
        metrics = metrics[metrics["split"] == split]
    metrics = metrics[metrics["run_id"].isin(done["run_id"])]
    scored = done[done["run_id"].isin(metrics["run_id"].unique())]
    excluded = {s: int(n) for s, n in status[status != "done"].value_counts().items()}
    if len(scored) < len(done):
        excluded["done without metrics"] = len(done) - len(scored)
    names = metric_names or sorted(metrics["metric"].unique())
    if scored.empty or not names:
        return EffectReport(_empty(EFFECT_COLUMNS), _empty(INTERACTION_COLUMNS), 0, excluded, 0, n_boot, confidence,
                            ["No finished run has metrics yet; effects appear when runs finish."])  # fmt: skip
    design, n_units = _design(metrics, scored, axes, axis_levels or {}, list(names))
    weights = bootstrap_weights(n_units, n_boot, seed)
    main_rows, inter_rows = [], []
    for axis in axes:
        main_rows += _main_rows(design, axis, weights, hib, confidence)
    two_level = [a for a in axes if len(design.axis_levels[a]) == 2]
    for axis_a, axis_b in itertools.combinations(two_level, 2):
        inter_rows += _interaction_rows(design, axis_a, axis_b, weights, hib, confidence)
    notes = [f"Axis {a} has a single level in the finished runs; it has no effect to estimate." for a in axes if len(design.axis_levels[a]) < 2]
    return EffectReport(
        pd.DataFrame(main_rows, columns=list(EFFECT_COLUMNS)), pd.DataFrame(inter_rows, columns=list(INTERACTION_COLUMNS)),
        len(scored), excluded, n_units, n_boot, confidence, notes,
    )  # fmt: skip


def _empty(columns: tuple[str, ...]) -> pd.DataFrame:
    return pd.DataFrame(columns=list(columns))


def _main_rows(design: _Design, axis: str, weights: np.ndarray, hib: dict[str, bool], confidence: float) -> list[dict]:
    codes, levels = design.axis_codes[axis], design.axis_levels[axis]
    if len(levels) < 2:
        return []
    member = np.eye(len(levels))[codes]  # (V, L) one-hot level of each variant
    means = _cell_means(design.values, member)  # (M, U, L)
    pairs = list(itertools.combinations(range(len(levels)), 2))
    # effect = later level minus earlier one, so a 2-level axis reads "switching to level 1"
    diffs = np.stack([means[:, :, j] - means[:, :, i] for i, j in pairs], axis=-1)  # (M, U, P)
    n_metrics, n_units, n_pairs = diffs.shape
    flat = diffs.transpose(1, 0, 2).reshape(n_units, n_metrics * n_pairs)  # (U, M*P): one bootstrap for all
    est_all, low_all, high_all, n_all = (a.reshape(n_metrics, n_pairs) for a in paired_bootstrap(flat, weights=weights, n_boot=len(weights), confidence=confidence))
    rows = []
    for k, metric in enumerate(design.metric_names):
        est, low, high, n = est_all[k], low_all[k], high_all[k], n_all[k]
        h = hib.get(metric, True)
        for p, (i, j) in enumerate(pairs):
            inc, better, verdict = effect_verdict(axis, levels[j], levels[i], metric, est[p], low[p], high[p], h, confidence)
            rows.append({
                "metric": metric, "axis": axis, "level_a": levels[j], "level_b": levels[i], "estimate": est[p],
                "ci_low": low[p], "ci_high": high[p], "n_units": int(n[p]), "n_units_missing": int(diffs.shape[1] - n[p]),
                "n_runs_a": int(design.n_runs[axis][j]), "n_runs_b": int(design.n_runs[axis][i]), "higher_is_better": h,
                "ci_includes_zero": inc, "better": better, "verdict": verdict,
            })  # fmt: skip
    return rows


def _interaction_rows(design: _Design, axis_a: str, axis_b: str, weights: np.ndarray, hib: dict[str, bool], confidence: float) -> list[dict]:
    cell = design.axis_codes[axis_a] * 2 + design.axis_codes[axis_b]  # (V,) 0=a0b0 1=a0b1 2=a1b0 3=a1b1
    means = _cell_means(design.values, np.eye(4)[cell])  # (M, U, 4)
    unit_inter = (means[..., 3] - means[..., 1]) - (means[..., 2] - means[..., 0])  # (M, U)
    est, low, high, n = paired_bootstrap(unit_inter.T, weights=weights, n_boot=len(weights), confidence=confidence)
    (a0, a1), (b0, b1) = design.axis_levels[axis_a], design.axis_levels[axis_b]
    rows = []
    for k, metric in enumerate(design.metric_names):
        h = hib.get(metric, True)
        inc, verdict = interaction_verdict(axis_a, a0, a1, axis_b, b0, b1, metric, est[k], low[k], high[k], h, confidence)
        rows.append({
            "metric": metric, "axis_a": axis_a, "axis_b": axis_b, "a0": a0, "a1": a1, "b0": b0, "b1": b1,
            "estimate": est[k], "ci_low": low[k], "ci_high": high[k], "n_units": int(n[k]),
            "n_units_missing": int(unit_inter.shape[1] - n[k]), "higher_is_better": h, "ci_includes_zero": inc, "verdict": verdict,
        })  # fmt: skip
    return rows


def variant_differences(
    metrics: pd.DataFrame,
    runs: pd.DataFrame,
    variants: list[str],
    *,
    higher_is_better: dict[str, bool] | None = None,
    metric_names: list[str] | None = None,
    n_boot: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Paired differences between chosen variants (runs' `variant` column), each pair, per metric.

    Returns:
        columns metric, variant_a, variant_b, estimate (a - b), ci_low, ci_high, n_units,
        ci_includes_zero, better, verdict.
    """
    if "variant" not in runs.columns:
        raise ValueError("The runs table has no 'variant' column; pass runs from runs.parquet.")
    chosen = runs[runs["variant"].isin(variants)]
    report = factorial_effects(
        metrics, chosen, ["variant"], axis_levels={"variant": list(variants)}, higher_is_better=higher_is_better,
        metric_names=metric_names, n_boot=n_boot, seed=seed, confidence=confidence,
    )  # fmt: skip
    out = report.main.rename(columns={"level_a": "variant_a", "level_b": "variant_b"})
    keep = ["metric", "variant_a", "variant_b", "estimate", "ci_low", "ci_high", "n_units", "ci_includes_zero", "better", "verdict"]
    return out[keep].reset_index(drop=True)


def pareto_front(df: pd.DataFrame, quality_col: str, cost_col: str, higher_is_better: bool = True) -> pd.Series:
    """Which rows are Pareto-optimal: no other row has lower-or-equal cost and better-or-equal quality (one strictly).

    Rows with NaN quality or cost are never on the front. Returns a boolean Series aligned with `df.index`.
    """
    quality = pd.to_numeric(df[quality_col], errors="coerce").to_numpy(dtype=float)
    cost = pd.to_numeric(df[cost_col], errors="coerce").to_numpy(dtype=float)
    q = quality if higher_is_better else -quality
    ok = np.isfinite(q) & np.isfinite(cost)
    on_front = np.zeros(len(df), dtype=bool)
    idx = np.flatnonzero(ok)
    # sweep by cost (ties: better quality first); a point is on the front if it beats the best quality so far
    order = idx[np.lexsort((-q[idx], cost[idx]))]
    best = -np.inf
    for i in order:
        if q[i] > best:
            on_front[i] = True
            best = q[i]
    return pd.Series(on_front, index=df.index, name="pareto")
