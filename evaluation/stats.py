"""Statistics of ablations: factorial main effects, 2x2 interactions, the A/A check, the best variant.

numpy, pandas and scipy.special only (the dashboard imports this and must not pull in torch).
docs/statistics.md is the reader's guide; this is the implementation.

What is replicated. A metric value of one run on one held-out clip is

    variant effect + trained-model noise (variant x seed) + source-video effect + clip noise.

Every clip scored by one trained model shares that model's luck, and clips cut from one
source video share its content, so neither a clip nor a (clip, seed) pair is an
independent unit. The units are the *seed block* (the runs of one seed across all
variants; a replicate-baseline copy belongs to the block of the seed it replicates) and
the *source video* (`source_id` in metrics.parquet). For an effect, each (block, clip)
gets the factorial contrast (within each stratum of the other axes, the run with A=a minus
the run with A=b, averaged over the strata; an interaction is (m11 - m01) - (m10 - m00) the same way),
clips are averaged within their source, and the resulting blocks x sources table goes to
the crossed random-effects model of `evaluation.crossed`: a Satterthwaite t interval that
includes training noise, source-to-source variation and clip noise.

Verdicts. Each estimated effect has a two-sided p-value; all the effects of one report
(main effects and interactions, over the metrics asked for) are one family, adjusted by
Holm (default) or Benjamini-Hochberg (`evaluation.multiplicity`). A "better" verdict needs
the adjusted p below alpha; the raw verdict is shown beside it. With one seed block no
verdict is given at all (training noise is not estimable); the clip-level interval is kept,
labelled as such. A contrast that is exactly 0 on every unit while the scores vary (a DiT
axis on a VAE metric: both sides' scores come from the same stage runs, metrics' `producer`) is "not
applicable", not an effect of 0; zero on every unit between sides computed by separate runs is
"identical" (the switch changed nothing the metric sees); one whose every unit shows
the same value (a 0/1 metric at its floor, or a perfect separation) has no spread to build
an interval from and is not tested. Main effects and interactions are contrasts within
strata of the other axes, averaged in each block over the strata that have every side, so a
failed variant cannot mix another axis in; a contrast that no stratum has is "not
estimable", and one that some strata lack in every block says which variant is missing. Every estimated
effect carries its noise floor `mde80`: the smallest true effect its test would find with
80% power. The best variant per metric is named only when it survives the same correction
and the report's main effects agree.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from evaluation.crossed import Crossed, crossed_contrasts, min_detectable, t_pvalue, t_quantile
from evaluation.multiplicity import METHOD_NAMES, adjust

NO_EFFECT = "no significant difference"
NO_INTERACTION = "no significant interaction"
ONE_SEED = "one seed per variant: training noise cannot be estimated, so no verdict"
NOT_APPLICABLE = "not applicable"
NOT_TESTED = "not tested"
NOT_ESTIMABLE = "not estimable"
SET_SOURCE = "__set__"  # clip_id and source_id of a set-level metric's row (rfvd, fvd): one value per run, not a video
REPLICATE_AXIS = "replicate"  # runs.parquet column of the replicate-baseline copies ("b")
_STAT_COLUMNS = (
    "estimate", "ci_low", "ci_high", "se", "df", "p_value", "p_adjusted", "significant_raw", "significant", "mde80",
    "n_seeds", "n_sources", "n_seeds_missing", "var_seed", "var_source", "var_resid", "var_seed_upper", "clip_ci_low", "clip_ci_high",
    "status", "higher_is_better", "ci_includes_zero",
)  # fmt: skip
EFFECT_COLUMNS = ("metric", "axis", "level_a", "level_b", *_STAT_COLUMNS, "n_runs_a", "n_runs_b", "better", "verdict")
INTERACTION_COLUMNS = ("metric", "axis_a", "axis_b", "a0", "a1", "b0", "b1", *_STAT_COLUMNS, "verdict")
REPLICATE_COLUMNS = ("metric", "variant", *_STAT_COLUMNS, "verdict")
BEST_COLUMNS = ("metric", "best_variant", "value", "runner_up", "margin", "p_value", "n_seeds", "status", "tied_with", "verdict")


@dataclass(frozen=True)
class EffectReport:
    """Main effects, interactions, the A/A check and the best variants, with what went into them."""

    main: pd.DataFrame  # one row per (metric, axis, level pair); EFFECT_COLUMNS; effect = level_a - level_b
    interactions: pd.DataFrame  # one row per (metric, pair of two-level axes); INTERACTION_COLUMNS
    replicate: pd.DataFrame  # the A/A contrast per metric (baseline vs its replicate copy); REPLICATE_COLUMNS
    best: pd.DataFrame  # per metric: the best variant if it beats every other, else the tied top set
    runs_used: int  # `done` runs with at least one metric row
    runs_excluded: dict[str, int]  # status -> count of runs left out (pending, running, failed, done-without-metrics)
    n_seeds: int  # seed blocks seen
    n_sources: int  # independent source videos seen
    n_clips: int  # held-out clips seen
    confidence: float  # e.g. 0.95
    correction: str  # "holm" | "bh" | "none"
    family_size: int  # tests the correction adjusted over
    notes: list[str] = field(default_factory=list)  # one-sentence remarks for the reader

    @property
    def summary(self) -> str:
        """One sentence: what went into the estimates."""
        excluded = ", ".join(f"{n} {s}" for s, n in self.runs_excluded.items() if n)
        left = f"; left out: {excluded}" if excluded else ""
        return (
            f"{self.runs_used} done runs over {self.n_seeds} seed block(s) x {self.n_sources} source video(s) "
            f"({self.n_clips} held-out clips); {int(round(self.confidence * 100))}% t intervals from a seed x source "
            f"random-effects model; {METHOD_NAMES[self.correction]} over {self.family_size} tests{left}."
        )


# ----------------------------------------------------------------------------- data layout


@dataclass(frozen=True)
class _Design:
    values: np.ndarray  # (M, B, C, V) metric value per metric, seed block, clip, variant (NaN = no score)
    clip_source: np.ndarray  # (C,) source index of each clip
    n_sources: int
    metric_names: list[str]  # M
    variant_names: list[str]  # V (the runs' `variant` column where present)
    axis_codes: dict[str, np.ndarray]  # axis -> (V,) level index of each variant
    axis_levels: dict[str, list]  # axis -> levels (index order)
    n_runs: dict[str, np.ndarray]  # axis -> (L,) done runs per level
    n_video_sources: int = 0  # sources that are videos: n_sources less the set-level "__set__" pseudo-source
    n_video_clips: int = 0  # clips less the set-level rows (rfvd, fvd: one value per run, no clip)
    n_run_blocks: int = 0  # seed blocks of the runs (with or without rows of the chosen metrics)
    # (M, B, C, V) code of the stage instance that computed each value (metrics' `producer`); -1 = no score or
    # unknown. None when no row names its producer (stores written before the column)
    producers: np.ndarray | None = None


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
    ordered = [by_key.get(_level_key(v), v) for v in levels if _level_key(v) in by_key]
    return ordered + [v for v in seen if _level_key(v) not in {_level_key(o) for o in ordered}]


def run_blocks(runs: pd.DataFrame) -> pd.Series:
    """The seed block of each run: `block` where runs.parquet has it, else the seed."""
    seed = pd.to_numeric(runs["seed"], errors="coerce") if "seed" in runs.columns else pd.Series(0, index=runs.index)
    if "block" in runs.columns:
        return pd.to_numeric(runs["block"], errors="coerce").fillna(seed).astype("int64")
    return seed.fillna(0).astype("int64")


def _design(metrics: pd.DataFrame, runs: pd.DataFrame, axes: list[str], axis_levels: dict[str, list], metric_names: list[str]) -> _Design:
    # level keys per run, in plain Python: a sweep has tens of runs, where pandas' per-call cost dominates
    keys = {col: [_level_key(v) for v in runs[col].tolist()] for col in axes}
    variant_of_run = pd.Series(["|".join(parts) for parts in zip(*keys.values())] if axes else "all", index=runs.index)
    variants = list(dict.fromkeys(variant_of_run.tolist()))
    variant_code = {v: i for i, v in enumerate(variants)}
    run_variant = np.array([variant_code[v] for v in variant_of_run.tolist()], dtype=int)  # (R,)
    run_index = pd.Index(runs["run_id"].to_numpy())

    m = metrics[metrics["run_id"].isin(run_index) & metrics["metric"].isin(metric_names)]
    row_run = run_index.get_indexer(m["run_id"].to_numpy())  # (N,) the run of each metric row
    clip_codes, clips = pd.factorize(m["split"].astype(str) + "\x1f" + m["clip_id"].astype(str))
    source = m["source_id"].astype(str) if "source_id" in m.columns else m["clip_id"].astype(str)
    clip_source_raw = pd.Series(source.to_numpy()).groupby(clip_codes).first() if len(m) else pd.Series(dtype=str)
    source_codes, sources = pd.factorize(clip_source_raw)
    run_block = run_blocks(runs).to_numpy()  # (R,)
    block_codes, _blocks = pd.factorize(run_block[row_run])
    metric_codes = pd.Index(metric_names).get_indexer(m["metric"].to_numpy())
    var_codes = run_variant[row_run]
    shape = (len(metric_names), max(block_codes.max(initial=-1) + 1, 1), len(clips), len(variants))
    sums, counts = np.zeros(shape), np.zeros(shape)
    values = m["value"].to_numpy(dtype=float)
    ok = np.isfinite(values)
    where = (metric_codes[ok], block_codes[ok], clip_codes[ok], var_codes[ok])
    np.add.at(sums, where, values[ok])  # reruns of one variant in one block average
    np.add.at(counts, where, 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        cube = sums / counts  # (M, B, C, V)
    producers = None
    named = m["producer"].astype(str).to_numpy() != "" if "producer" in m.columns else np.zeros(len(m), dtype=bool)
    if named[ok].any():
        codes, _ = pd.factorize(np.where(named, m["producer"].astype(str).to_numpy(), ""))
        producers = np.full(shape, -1, dtype=np.int64)
        keep = ok & named
        producers[metric_codes[keep], block_codes[keep], clip_codes[keep], var_codes[keep]] = codes[keep]

    first_run = ~variant_of_run.duplicated()
    names = runs.loc[first_run.to_numpy(), "variant"].astype(str).tolist() if "variant" in runs.columns else variants
    axis_codes, levels_out, n_runs = {}, {}, {}
    for axis in axes:
        order = _axis_order(runs, axis, axis_levels.get(axis))
        key_to_code = {_level_key(v): i for i, v in enumerate(order)}
        codes = np.array([key_to_code[k] for k in keys[axis]], dtype=int)
        axis_codes[axis] = codes[first_run.to_numpy()]
        levels_out[axis] = order
        n_runs[axis] = np.bincount(codes, minlength=len(order))
    is_set = np.asarray(clip_source_raw.astype(str) == SET_SOURCE) if len(m) else np.zeros(0, dtype=bool)
    return _Design(cube, np.asarray(source_codes), len(sources), metric_names, names, axis_codes, levels_out, n_runs,
                   n_video_sources=len(sources) - int(SET_SOURCE in set(map(str, sources))),
                   n_video_clips=int((~is_set).sum()), n_run_blocks=len(np.unique(run_block)), producers=producers)


def _cell_means(cube: np.ndarray, member: np.ndarray) -> np.ndarray:
    """Mean over the variants in each cell, NaN-aware: `(M, B, C, V)` x `(V, K)` -> `(M, B, C, K)`."""
    present = ~np.isnan(cube)
    sums = np.where(present, cube, 0.0) @ member
    counts = present.astype(float) @ member
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / counts, np.nan)


def _by_source(x: np.ndarray, design: _Design) -> np.ndarray:
    """Average clips within their source: `(M, B, C, K)` -> `(M, B, G, K)`, NaN-aware."""
    onehot = np.eye(max(design.n_sources, 1))[design.clip_source] if len(design.clip_source) else np.zeros((0, 1))  # (C, G)
    present = ~np.isnan(x)
    sums = np.einsum("mbck,cg->mbgk", np.where(present, x, 0.0), onehot)
    counts = np.einsum("mbck,cg->mbgk", present.astype(float), onehot)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / counts, np.nan)


def _crossed(by_source: np.ndarray) -> tuple[Crossed, tuple[int, int]]:
    """`(M, B, G, K)` contrasts -> crossed estimates flattened over (M, K), and that shape."""
    n_m, n_b, n_g, n_k = by_source.shape
    flat = by_source.transpose(0, 3, 1, 2).reshape(n_m * n_k, n_b, n_g)  # (M*K, B, G)
    return crossed_contrasts(flat), (n_m, n_k)


# ----------------------------------------------------------------------------- statistics of one contrast


def _stat_fields(c: Crossed, i: int, confidence: float, higher_is_better: bool, constant: float = np.nan,
                 shared: bool = True) -> dict:
    """Interval, test and noise floor of contrast `i` (before the family correction).

    `constant` is the one score every run on both sides has (NaN where the scores vary): an
    exactly-zero contrast between sides that all sit at one value is a measured floor or
    ceiling, not a factor that cannot reach the metric. `shared`: the sides' scores come from
    the same stage instances (`_shared`; True where the store does not say): an exactly-zero
    contrast is then "not applicable" (the axis does not reach this metric's computation);
    between sides computed apart it is "identical" (the switch changed nothing the metric sees).
    """
    est, se, df = float(c.estimate[i]), float(c.se[i]), float(c.df[i])
    half = float(t_quantile(np.array(df), 0.5 + confidence / 2.0)) * se if np.isfinite(se) else np.nan
    clip_half = float(t_quantile(np.array(c.clip_df[i]), 0.5 + confidence / 2.0)) * float(c.clip_se[i])
    if bool(c.exactly_zero[i]):
        status = "no_spread" if np.isfinite(constant) else "not_applicable" if shared else "identical"
    elif not np.isfinite(est) or c.n_sources[i] < 1:
        status = "insufficient"
    elif c.n_seeds[i] < 2:
        status = "one_seed"
    elif bool(c.no_spread[i]):  # every unit shows the same difference: a zero-width interval would claim certainty
        status = "no_spread"
    else:
        status = "estimated"
    estimated = status == "estimated"
    p = float(t_pvalue(np.array(est), np.array(se), np.array(df))) if estimated else np.nan
    low, high = (est - half, est + half) if estimated else (np.nan, np.nan)
    return {
        "estimate": est, "ci_low": low, "ci_high": high, "se": se if estimated else np.nan, "df": df if estimated else np.nan,
        "p_value": p, "p_adjusted": np.nan, "significant_raw": bool(estimated and p < 1.0 - confidence), "significant": False,
        "mde80": float(min_detectable(np.array(se), np.array(df), confidence)) if estimated else np.nan,
        "n_seeds": int(c.n_seeds[i]), "n_sources": int(c.n_sources[i]), "n_seeds_missing": int(c.n_seeds_missing[i]),
        "var_seed": float(c.var_seed[i]), "var_source": float(c.var_source[i]), "var_resid": float(c.var_resid[i]),
        "var_seed_upper": float(c.var_seed_upper[i]),
        "clip_ci_low": est - clip_half, "clip_ci_high": est + clip_half, "status": status,
        "higher_is_better": higher_is_better, "ci_includes_zero": not (estimated and (low > 0 or high < 0)),
        "constant": constant,  # not a column: read by the verdict of a "no_spread" contrast
    }  # fmt: skip


def _constant_value(sides: np.ndarray) -> np.ndarray:
    """`(M, B, C, ..., n_sides)` -> `(M,)`: the one value every score of a metric shares; NaN where they differ.

    NaN too where a side has scores on fewer than 2 (block, clip) units (one seed of a
    set-level metric): one value per side cannot tell a floor from two variants that share
    the computation.
    """
    n_m, n_b, n_c = sides.shape[:3]
    flat = sides.reshape(n_m, n_b * n_c, -1, sides.shape[-1])  # (M, units, strata, sides)
    finite = np.isfinite(flat)
    low = np.where(finite, flat, np.inf).min(axis=(1, 2, 3), initial=np.inf)
    high = np.where(finite, flat, -np.inf).max(axis=(1, 2, 3), initial=-np.inf)
    units = finite.any(axis=2).sum(axis=1)  # (M, sides)
    return np.where((units >= 2).all(axis=1) & (low == high), low, np.nan)


def _fmt(x: float) -> str:
    return f"{x:.3g}" if abs(x) < 1000 else f"{x:,.0f}"


def _fmt_p(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"{p:.3f}" if p < 0.1 else f"{p:.2f}"


def _evidence(row: dict, confidence: float) -> str:
    pct = int(round(confidence * 100))
    return f"{pct}% CI {_fmt(row['ci_low'])} to {_fmt(row['ci_high'])}; {row['n_seeds']} seeds x {row['n_sources']} sources"


def _status_verdict(row: dict, what: str) -> str | None:
    """The verdict of a contrast that was not tested, or None."""
    if row["status"] == "not_applicable":
        return (f"{NOT_APPLICABLE}: both sides of {what} score the same on every clip and seed while the scores vary, "
                "so they share what this metric measures (e.g. a DiT axis on a VAE metric)")  # fmt: skip
    if row["status"] == "identical":
        return (f"{NOT_TESTED}: both sides of {what} score exactly the same on every clip and seed although separate "
                "stage runs computed them, so the switch changed nothing this metric measures: check that it reaches "
                "the model (a config field nothing reads looks like this)")  # fmt: skip
    if row["status"] == "no_spread" and row["estimate"] == 0:
        return (f"{NOT_TESTED}: every run on both sides of {what} scores {_fmt(row['constant'])} on every clip and seed "
                "(this metric's floor or ceiling here), so this sweep measures no difference and could not measure one")  # fmt: skip
    if row["status"] == "no_spread":
        sign_p = 2.0 ** (1 - row["n_seeds"])  # all blocks on one side: the exact two-sided sign test over seed blocks
        return (f"{NOT_TESTED}: the difference is exactly {_fmt(row['estimate'])} in every seed block and source, so its "
                f"spread measures 0 and no t interval exists; an exact sign test over the {row['n_seeds']} seed blocks "
                f"gives p = {sign_p:.2g} (uncorrected)")  # fmt: skip
    if row["status"] == "not_estimable":
        return (f"{NOT_ESTIMABLE}: no finished run of {row['missing_variant']} has a score for this metric, so the "
                f"effect of {what} would be confounded with the other axes")  # fmt: skip
    if row["status"] == "insufficient":
        return "not enough seeds and sources with scores on both sides to estimate"
    if row["status"] == "one_seed":
        return (f"{ONE_SEED} (clip-level interval {_fmt(row['clip_ci_low'])} to {_fmt(row['clip_ci_high'])} over "
                f"{row['n_sources']} sources ignores it; rerun with 3 or more seeds)")  # fmt: skip
    return None


def _null_verdict(row: dict, label: str, correction: str, family: int, confidence: float) -> str:
    if row["significant_raw"]:
        return (f"{label} after {METHOD_NAMES[correction].split(' (')[0]} correction over {family} tests "
                f"(uncorrected p = {_fmt_p(row['p_value'])}; {_evidence(row, confidence)})")  # fmt: skip
    pct = int(round(confidence * 100))
    return (f"{label} ({pct}% CI {_fmt(row['ci_low'])} to {_fmt(row['ci_high'])} includes 0; p = {_fmt_p(row['p_value'])}; "
            f"{row['n_seeds']} seeds x {row['n_sources']} sources); a true effect below {_fmt(row['mde80'])} would likely be missed")  # fmt: skip


def effect_verdict(row: dict, correction: str, family: int, confidence: float) -> tuple[str | None, str]:
    """(better level or None, plain-language verdict) for a main-effect row (level_a - level_b), after correction."""
    axis, level_a, level_b, metric = row["axis"], row["level_a"], row["level_b"], row["metric"]
    early = _status_verdict(row, axis)
    if early:
        return None, early
    if not row["significant"]:
        return None, _null_verdict(row, NO_EFFECT, correction, family, confidence)
    est = row["estimate"]
    a_better = (est > 0) == row["higher_is_better"]
    better, worse = (level_a, level_b) if a_better else (level_b, level_a)
    direction = "higher" if row["higher_is_better"] else "lower"
    return better, (
        f"{axis}={better} is better than {axis}={worse} by {_fmt(abs(est))} {metric} ({direction} is better; "
        f"{_evidence(row, confidence)}; adjusted p = {_fmt_p(row['p_adjusted'])})"
    )


def interaction_verdict(row: dict, correction: str, family: int, confidence: float) -> str:
    """Verdict for an interaction row, (a1b1 - a0b1) - (a1b0 - a0b0), after correction."""
    axis_a, a0, a1, axis_b, b0, b1 = (row[k] for k in ("axis_a", "a0", "a1", "axis_b", "b0", "b1"))
    early = _status_verdict(row, f"{axis_a} x {axis_b}")
    if early:
        return early
    if not row["significant"]:
        return _null_verdict(row, NO_INTERACTION, correction, family, confidence)
    helps_more = (row["estimate"] > 0) == row["higher_is_better"]
    return (
        f"switching {axis_a} from {a0} to {a1} is {_fmt(abs(row['estimate']))} {row['metric']} "
        f"{'better' if helps_more else 'worse'} with {axis_b}={b1} than with {axis_b}={b0} "
        f"({_evidence(row, confidence)}; adjusted p = {_fmt_p(row['p_adjusted'])})"
    )


# ----------------------------------------------------------------------------- effects


def _split_runs(metrics: pd.DataFrame, runs: pd.DataFrame, split: str | None) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, int]]:
    """Scored done runs and their metric rows; the counts of runs left out."""
    status = runs["status"].astype(str) if "status" in runs.columns else pd.Series("done", index=runs.index)
    done = runs[status == "done"]
    if split is not None:
        metrics = metrics[metrics["split"] == split]
    metrics = metrics[metrics["run_id"].isin(done["run_id"])]
    scored = done[done["run_id"].isin(metrics["run_id"].unique())]
    excluded = {s: int(n) for s, n in status[status != "done"].value_counts().items()}
    if len(scored) < len(done):
        excluded["done without metrics"] = len(done) - len(scored)
    return metrics, scored, excluded


def _is_replicate(runs: pd.DataFrame) -> pd.Series:
    return runs[REPLICATE_AXIS].astype(str).eq("b") if REPLICATE_AXIS in runs.columns else pd.Series(False, index=runs.index)


def factorial_effects(
    metrics: pd.DataFrame,
    runs: pd.DataFrame,
    axes: list[str],
    *,
    axis_levels: dict[str, list] | None = None,
    higher_is_better: dict[str, bool] | None = None,
    metric_names: list[str] | None = None,
    split: str | None = None,
    confidence: float = 0.95,
    correction: str = "holm",
    replicate_baseline: dict | None = None,
) -> EffectReport:
    """Main effects of every axis level pair and 2x2 interactions of two-level axes, per metric.

    Args:
        metrics: long format with run_id, split, clip_id, metric, value (and source_id; without
            it every clip counts as its own source).
        runs: one row per run with run_id, seed, status, one column per axis (and block,
            replicate where the sweep has them).
        axes: the factors ("seed" and "replicate" are ignored: they are not factors).
        axis_levels: level order per axis (sweep.json "axes"); the first level is "0" for interactions.
        higher_is_better: per metric (default True), for verdicts.
        metric_names: metrics to analyse (default: all in `metrics`); they make up the family
            that `correction` adjusts over, with every axis and interaction.
        split: only rows of this split (default: all).
        correction: "holm" (family-wise error), "bh" (false-discovery rate) or "none".
        replicate_baseline: sweep.json's "replicate" entry ({"baseline": {axis: level}}), for the A/A check.

    Returns:
        an EffectReport; only `done` runs count, the rest are tallied in `runs_excluded`.
    """
    axes = [a for a in axes if a not in ("seed", REPLICATE_AXIS)]
    missing = [a for a in axes if a not in runs.columns]
    if missing:
        raise ValueError(f"Axis column(s) {', '.join(missing)} are not in the runs table; pass axes that are columns of runs.parquet.")
    if correction not in METHOD_NAMES:
        raise ValueError(f"Unknown correction {correction!r}; use one of {', '.join(METHOD_NAMES)}.")
    hib = higher_is_better or {}
    metrics, scored, excluded = _split_runs(metrics, runs, split)
    names = list(metric_names or sorted(metrics["metric"].unique()))
    if scored.empty or not names:
        return _empty_report(excluded, confidence, correction, ["No finished run has metrics yet; effects appear when runs finish."])
    replicate = _is_replicate(scored)
    factorial = scored[~replicate]
    design = _design(metrics, factorial, axes, axis_levels or {}, names)
    main_rows, inter_rows = [], []
    for axis in axes:
        main_rows += _main_rows(design, axis, hib, confidence)
    two_level = [a for a in axes if len(design.axis_levels[a]) == 2]
    for axis_a, axis_b in itertools.combinations(two_level, 2):
        inter_rows += _interaction_rows(design, axis_a, axis_b, hib, confidence)
    family = _adjust_family(main_rows + inter_rows, correction, confidence)
    for row in main_rows:
        row["better"], row["verdict"] = effect_verdict(row, correction, family, confidence)
    for row in inter_rows:
        row["verdict"] = interaction_verdict(row, correction, family, confidence)
    for row in main_rows + inter_rows:  # a contrast over fewer strata than the design has says which
        if row.get("partial") and row["status"] != "not_estimable":
            row["verdict"] += f" ({row['partial']})"
    aa = replicate_check(metrics, scored, axes, replicate_baseline, hib, names, confidence) if replicate.any() else _empty(REPLICATE_COLUMNS)
    best = best_variants(design, hib, confidence, correction, main_rows)
    blocks = design.n_run_blocks
    notes = _design_notes(design, factorial, axes, blocks)
    return EffectReport(
        pd.DataFrame(main_rows, columns=list(EFFECT_COLUMNS)), pd.DataFrame(inter_rows, columns=list(INTERACTION_COLUMNS)),
        aa, best, len(scored), excluded, int(blocks), design.n_video_sources, design.n_video_clips, confidence, correction, family, notes,
    )  # fmt: skip


def _design_notes(design: _Design, runs: pd.DataFrame, axes: list[str], blocks: int) -> list[str]:
    notes = [f"Axis {a} has a single level in the finished runs; it has no effect to estimate." for a in axes if len(design.axis_levels[a]) < 2]
    if blocks < 2:
        notes.append("Every variant has one seed, so the variance between trained models is not estimable and this "
                     "report gives no verdicts; rerun with --seeds 0,1,2 (three or more).")  # fmt: skip
    elif blocks < 3:
        notes.append(f"Only {blocks} seed blocks: training noise is estimated from one degree of freedom, so intervals are "
                     "wide (the 95% t quantile is up to 12.7) and only large effects can be significant; 3 or more seeds "
                     "are advised.")  # fmt: skip
    if design.n_video_sources == 1:
        notes.append("Every held-out clip comes from one source video: the intervals hold for that video only.")
    elif design.n_video_clips > design.n_video_sources:
        notes.append(f"The {design.n_video_clips} held-out clips come from {design.n_video_sources} independent source videos; "
                     "the source, not the clip, is the unit.")  # fmt: skip
    return notes


_EMPTY: dict[tuple[str, ...], pd.DataFrame] = {}  # built once: a frame with 25 columns costs 0.5 ms, a copy 0.01 ms


def _empty(columns: tuple[str, ...]) -> pd.DataFrame:
    if columns not in _EMPTY:
        _EMPTY[columns] = pd.DataFrame(columns=list(columns))
    return _EMPTY[columns].copy()


def _empty_report(excluded: dict, confidence: float, correction: str, notes: list[str]) -> EffectReport:
    return EffectReport(_empty(EFFECT_COLUMNS), _empty(INTERACTION_COLUMNS), _empty(REPLICATE_COLUMNS), _empty(BEST_COLUMNS),
                        0, excluded, 0, 0, 0, confidence, correction, 0, notes)  # fmt: skip


def _adjust_family(rows: list[dict], correction: str, confidence: float) -> int:
    """Adjust the p-values of every tested row in place; returns the family size."""
    p = np.array([r["p_value"] for r in rows], dtype=float)
    adjusted = adjust(p, correction)
    for row, q in zip(rows, adjusted):
        row["p_adjusted"] = float(q)
        row["significant"] = bool(np.isfinite(q) and q < 1.0 - confidence)
    return int(np.isfinite(p).sum())


def _radix(design: _Design, axes: list[str]) -> tuple[np.ndarray, list[int]]:
    """(V,) mixed-radix code of each variant's levels of `axes` (first axis slowest), and the axes' sizes."""
    sizes = [len(design.axis_levels[a]) for a in axes]
    code = np.zeros(design.values.shape[-1], dtype=int)
    for axis, size in zip(axes, sizes):
        code = code * size + design.axis_codes[axis]
    return code, sizes


def _stratified_cells(design: _Design, focus: list[str]) -> tuple[np.ndarray, np.ndarray, Callable[[int, int], str]]:
    """Cell means of the `focus` axes' level combinations within each stratum of the other axes.

    A main effect or interaction is a contrast within each stratum (one combination of the
    other axes' levels), averaged over the strata, so a variant missing from a block, or
    from every block, cannot tilt it toward another axis: averaging whatever variants are
    present turned A's contrast into A + B/2 when A=1,B=y had failed on every seed.

    Returns:
        cells `(M, B, C, K, F)` (K = every combination of the other axes' levels, F = the
        focus combinations, first focus axis slowest; NaN = no score), present `(M, K, F)`
        (a score in some block), and name(k, f) -> "A=1,B=y,C=False".
    """
    others = [a for a in design.axis_codes if a not in focus]
    (k_code, k_sizes), (f_code, f_sizes) = _radix(design, others), _radix(design, focus)
    n_k, n_f = int(np.prod(k_sizes)), int(np.prod(f_sizes))
    cells = _cell_means(design.values, np.eye(n_k * n_f)[k_code * n_f + f_code])  # (M, B, C, K*F)
    cells = cells.reshape(*cells.shape[:3], n_k, n_f)

    def name(k: int, f: int) -> str:
        codes = {}
        for axes, sizes, code in ((focus, f_sizes, f), (others, k_sizes, k)):
            for axis, size in reversed(list(zip(axes, sizes))):
                codes[axis], code = code % size, code // size
        return ",".join(f"{a}={design.axis_levels[a][codes[a]]}" for a in design.axis_codes)

    return cells, np.isfinite(cells).any(axis=(1, 2)), name


def _cell_producers(design: _Design, focus: list[str]) -> np.ndarray | None:
    """`_stratified_cells`' layout for the producer codes: `(M, B, C, K, F)`, -1 where no variant or no code.
    Each (stratum, focus combination) is one variant, so its code is that variant's. None without codes."""
    if design.producers is None:
        return None
    others = [a for a in design.axis_codes if a not in focus]
    (k_code, k_sizes), (f_code, f_sizes) = _radix(design, others), _radix(design, focus)
    n_k, n_f = int(np.prod(k_sizes)), int(np.prod(f_sizes))
    out = np.full((*design.producers.shape[:3], n_k * n_f), -1, dtype=np.int64)
    out[..., k_code * n_f + f_code] = design.producers
    return out.reshape(*out.shape[:3], n_k, n_f)


def _shared(producers: np.ndarray | None, pairs: list[tuple[list[int], list[int]]]) -> np.ndarray | None:
    """`(M, B, C, K, F)` producer codes -> `(M,)`: whether, in every unit where all the cells have codes, one of
    `pairs` (two lists of focus cells, matched position by position) has the same producer on both sides. None
    without codes."""
    if producers is None:
        return None
    cells = sorted({c for left, right in pairs for c in left + right})
    known = (producers[..., cells] >= 0).all(axis=-1)  # (M, B, C, K)
    same = np.zeros(known.shape, dtype=bool)
    for left, right in pairs:
        same |= (producers[..., left] == producers[..., right]).all(axis=-1)
    return np.where(known, same, True).all(axis=(1, 2, 3))


def _over_strata(per_stratum: np.ndarray) -> np.ndarray:
    """`(..., K)` -> `(...)`: the mean over the strata that have the whole contrast; NaN where none has."""
    ok = np.isfinite(per_stratum)
    n = ok.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, np.where(ok, per_stratum, 0.0).sum(axis=-1) / n, np.nan)


def _coverage(present: np.ndarray, sides: list[int], name: Callable[[int, int], str]) -> list[tuple[int, int, str | None]]:
    """Per metric: (strata with every side scored, strata in all, the first missing cell named or None)."""
    sub = present[:, :, sides]  # (M, K, F')
    out = []
    for m in range(len(sub)):
        gaps = np.argwhere(~sub[m])
        missing = name(int(gaps[0][0]), sides[int(gaps[0][1])]) if len(gaps) and sub[m].any() else None
        out.append((int(sub[m].all(axis=1).sum()), sub.shape[1], missing))
    return out


def _contrast_row(crossed: Crossed, index: int, coverage: tuple[int, int, str | None], confidence: float, hib: bool,
                  constant: float, shared: bool = True) -> dict:
    """`_stat_fields`, and what the strata left out: "not_estimable" where no stratum has every side."""
    row = _stat_fields(crossed, index, confidence, hib, constant, shared)
    used, total, missing = coverage
    if missing is not None and used == 0:
        row.update(status="not_estimable", missing_variant=missing, estimate=np.nan, clip_ci_low=np.nan, clip_ci_high=np.nan)
    elif missing is not None:
        row["partial"] = f"within {used} of {total} combinations of the other axes: {missing} has no finished run with a score"
    return row


def _main_rows(design: _Design, axis: str, hib: dict[str, bool], confidence: float) -> list[dict]:
    levels = design.axis_levels[axis]
    if len(levels) < 2:
        return []
    cells, present, name = _stratified_cells(design, [axis])  # (M, B, C, K, L)
    pairs = list(itertools.combinations(range(len(levels)), 2))
    # effect = later level minus earlier one, so a 2-level axis reads "switching to level 1"
    diffs = np.stack([_over_strata(cells[..., j] - cells[..., i]) for i, j in pairs], axis=-1)  # (M, B, C, P)
    crossed, (_, n_pairs) = _crossed(_by_source(diffs, design))
    coverage = [_coverage(present, [i, j], name) for i, j in pairs]  # (P, M)
    constant = [_constant_value(cells[..., [i, j]]) for i, j in pairs]  # (P, M)
    producers = _cell_producers(design, [axis])
    shared = [_shared(producers, [([i], [j])]) for i, j in pairs]  # (P, M) or None
    rows = []
    for k, metric in enumerate(design.metric_names):
        for p, (i, j) in enumerate(pairs):
            row = {"metric": metric, "axis": axis, "level_a": levels[j], "level_b": levels[i]}
            row.update(_contrast_row(crossed, k * n_pairs + p, coverage[p][k], confidence, hib.get(metric, True), constant[p][k],
                                     shared[p] is None or bool(shared[p][k])))
            row.update({"n_runs_a": int(design.n_runs[axis][j]), "n_runs_b": int(design.n_runs[axis][i])})
            rows.append(row)
    return rows


def _interaction_rows(design: _Design, axis_a: str, axis_b: str, hib: dict[str, bool], confidence: float) -> list[dict]:
    cells, present, name = _stratified_cells(design, [axis_a, axis_b])  # (M, B, C, K, 4): a0b0 a0b1 a1b0 a1b1
    inter = _over_strata((cells[..., 3] - cells[..., 1]) - (cells[..., 2] - cells[..., 0]))[..., None]  # (M, B, C, 1)
    crossed, _ = _crossed(_by_source(inter, design))
    coverage, constant = _coverage(present, [0, 1, 2, 3], name), _constant_value(cells)
    # zero because one axis does not reach the metric: its two levels share a producer at each level of the other
    shared = _shared(_cell_producers(design, [axis_a, axis_b]), [([0, 2], [1, 3]), ([0, 1], [2, 3])])
    (a0, a1), (b0, b1) = design.axis_levels[axis_a], design.axis_levels[axis_b]
    rows = []
    for k, metric in enumerate(design.metric_names):
        row = {"metric": metric, "axis_a": axis_a, "axis_b": axis_b, "a0": a0, "a1": a1, "b0": b0, "b1": b1}
        row.update(_contrast_row(crossed, k, coverage[k], confidence, hib.get(metric, True), constant[k],
                                 shared is None or bool(shared[k])))
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------- the A/A check and the best variant


def replicate_check(
    metrics: pd.DataFrame, runs: pd.DataFrame, axes: list[str], replicate: dict | None, hib: dict[str, bool],
    metric_names: list[str], confidence: float = 0.95,
) -> pd.DataFrame:
    """The baseline against its replicate copy (same config, disjoint seeds), per metric.

    Identical configs differ only by noise, so a correct noise model finds no difference
    here 95% of the time; `mde80` of this contrast is the sweep's noise floor for a
    comparison of two single variants that share no seeds. Variants of one seed block
    often share more (the same DiT initialisation and noise draws, a shared VAE), so a
    paired effect's own `mde80` can be far smaller. Not part of the report's family: it is a check of
    the model, and a failed check should be seen without correction.
    """
    baseline = dict((replicate or {}).get("baseline") or {})
    is_copy = _is_replicate(runs)
    original = ~is_copy
    for axis in axes:  # the copies hold the baseline's levels; sweep.json's entry is the fallback
        levels = set(runs.loc[is_copy, axis].map(_level_key)) or ({_level_key(baseline[axis])} if axis in baseline else set())
        original &= runs[axis].map(_level_key).isin(levels)
    keep = is_copy | original
    pair = runs[keep].assign(**{REPLICATE_AXIS: np.where(is_copy[keep], "b", "a")})
    design = _design(metrics, pair, [REPLICATE_AXIS], {REPLICATE_AXIS: ["a", "b"]}, metric_names)
    if len(design.axis_levels[REPLICATE_AXIS]) < 2:
        return _empty(REPLICATE_COLUMNS)
    means = _cell_means(design.values, np.eye(2)[design.axis_codes[REPLICATE_AXIS]])
    crossed, _ = _crossed(_by_source((means[..., 1] - means[..., 0])[..., None], design))
    constant = _constant_value(means[..., None, :])  # one stratum
    name = str(runs.loc[original, "variant"].iloc[0]) if "variant" in runs.columns and original.any() else "baseline"
    rows = []
    for k, metric in enumerate(design.metric_names):
        row = {"metric": metric, "variant": name, **_stat_fields(crossed, k, confidence, hib.get(metric, True), constant[k])}
        row["p_adjusted"], row["significant"] = row["p_value"], row["significant_raw"]
        early = _status_verdict(row, "the replicate")
        if early:
            row["verdict"] = early
        elif row["significant"]:
            row["verdict"] = (f"A/A check FAILED: two copies of one config differ by {_fmt(row['estimate'])} "
                              f"(p = {_fmt_p(row['p_value'])}); the noise model misses a source of variance "
                              "(expected in 5% of sweeps)")  # fmt: skip
        else:
            row["verdict"] = (f"{NO_EFFECT} between two copies of one config, as it should be "
                              f"({_evidence(row, confidence)}); noise floor {_fmt(row['mde80'])} for two variants "
                              "that share no seeds")  # fmt: skip
        rows.append(row)
    return pd.DataFrame(rows, columns=list(REPLICATE_COLUMNS))


def best_variants(design: _Design, hib: dict[str, bool], confidence: float = 0.95, correction: str = "none",
                  main_rows: list[dict] | None = None) -> pd.DataFrame:
    """Per metric, the best variant if it is significantly better than every other, else the tied top set.

    "Better than every other" is an intersection-union test (Berger 1982, Technometrics
    24:295): each pairwise t test at level alpha, so its p-value is the largest pairwise
    one. The report makes one such claim per metric, so those p-values are adjusted over
    the metrics by `correction`, and with `main_rows` (the report's corrected main effects)
    "best" also needs every main effect that compares the best variant's level of an axis
    with another level to be significant in its favour: a report never names a best
    variant where its own corrected effects say the axis made no significant difference.
    """
    n_v = design.values.shape[-1]
    if n_v < 2:
        return _empty(BEST_COLUMNS)
    means = _by_source(design.values, design)  # (M, B, G, V)
    with np.errstate(invalid="ignore"):
        overall = np.nanmean(means, axis=(1, 2))  # (M, V)
    rows = []
    for k, metric in enumerate(design.metric_names):
        h = hib.get(metric, True)
        score = overall[k] if h else -overall[k]
        if np.isfinite(score).any():
            rows.append(_best_of_metric(design, means[k], overall[k], score, metric, h, confidence))
    iut = adjust(np.array([r["p_iut"] for r in rows], dtype=float), correction)  # one claim per metric: one family
    for row, q in zip(rows, iut):
        if row["status"] == "best":
            _confirm_best(row, q, design, correction, main_rows, confidence, sum(np.isfinite(iut)))
    return pd.DataFrame([{k: r[k] for k in BEST_COLUMNS} for r in rows], columns=list(BEST_COLUMNS))


def _best_of_metric(design: _Design, means: np.ndarray, overall: np.ndarray, score: np.ndarray, metric: str, h: bool,
                    confidence: float) -> dict:
    """The uncorrected intersection-union test of the top variant of one metric; `means` is `(B, G, V)`."""
    order = np.argsort(-np.where(np.isfinite(score), score, -np.inf), kind="stable")
    top, others = order[0], order[1:]
    diffs = (means[:, :, top, None] - means[:, :, others])[None]  # (1, B, G, V-1) top minus each other
    c, _ = _crossed(diffs)
    sides = np.stack([np.broadcast_to(means[:, :, top, None], diffs.shape[1:]), means[:, :, others]], axis=-1)  # (B, G, V-1, 2)
    constant = _constant_value(np.moveaxis(sides, 2, 0))  # (V-1,)
    stats = [_stat_fields(c, i, confidence, h, float(constant[i])) for i in range(len(others))]
    # variants with the very same scores (they differ only in an axis this metric cannot see) share the top place
    same = [design.variant_names[o] for o, st in zip(others, stats) if st["status"] == "not_applicable"]
    rest = [(o, st) for o, st in zip(others, stats) if st["status"] != "not_applicable"]
    top_name = design.variant_names[top] + (f" (identical on this metric: {', '.join(same)})" if same else "")
    tied = [design.variant_names[o] for o, st in rest
            if not (st["status"] == "estimated" and st["significant_raw"] and (st["estimate"] > 0) == h)]  # fmt: skip
    first = rest[0][1] if rest else stats[0]
    tested = bool(rest) and all(st["status"] == "estimated" for _, st in rest)
    p_iut = max(st["p_value"] for _, st in rest) if tested else np.nan  # the intersection-union test's p
    if not rest:
        status, verdict = "not_applicable", f"{NOT_APPLICABLE}: every variant scores identically on this metric"
    elif first["status"] != "estimated":
        status, verdict = first["status"], _status_verdict(first, "the top two variants") or ""
    elif not tied:
        status = "best"
        verdict = f"{top_name} is significantly better than every other variant (largest pairwise p = {_fmt_p(p_iut)})"
    else:
        status = "tied"
        verdict = f"no single best variant: {top_name} is indistinguishable from {', '.join(tied)}"
    return {
        "metric": metric, "best_variant": design.variant_names[top], "value": float(overall[top]),
        "runner_up": design.variant_names[rest[0][0]] if rest else None, "margin": abs(first["estimate"]),
        "p_value": p_iut if status == "best" else first["p_value"], "n_seeds": first["n_seeds"], "status": status,
        "tied_with": ", ".join(tied), "verdict": verdict, "top": int(top), "top_name": top_name, "p_iut": p_iut,
    }  # fmt: skip


def _confirm_best(row: dict, p_adjusted: float, design: _Design, correction: str, main_rows: list[dict] | None,
                  confidence: float, family: int) -> None:
    """Downgrade a raw "best" to "tied" unless it survives the correction and the main effects agree (in place)."""
    alpha = 1.0 - confidence
    method = METHOD_NAMES[correction].split(" (")[0]
    if not p_adjusted < alpha:
        row["status"] = "tied"
        row["verdict"] = (f"no single best variant after {method} correction over {family} metrics: {row['top_name']} "
                          f"beats every other variant only before it (largest pairwise p = {_fmt_p(row['p_value'])}, "
                          f"adjusted {_fmt_p(p_adjusted)})")  # fmt: skip
        return
    for effect in main_rows or []:
        if effect["metric"] != row["metric"] or effect["status"] == "not_applicable":
            continue
        level = design.axis_levels[effect["axis"]][design.axis_codes[effect["axis"]][row["top"]]]
        if _level_key(level) not in (_level_key(effect["level_a"]), _level_key(effect["level_b"])):
            continue
        if not (effect["significant"] and _level_key(effect.get("better")) == _level_key(level)):
            row["status"] = "tied"
            row["verdict"] = (f"no single best variant: {row['top_name']} beats every other variant pairwise, but the "
                              f"main effect of {effect['axis']} ({effect['level_a']} vs {effect['level_b']}) does not "
                              f"favour it significantly after {method} correction")  # fmt: skip
            return
    if correction != "none":
        row["verdict"] += f"; {method}-adjusted over {family} metrics: {_fmt_p(p_adjusted)}"


def variant_differences(
    metrics: pd.DataFrame,
    runs: pd.DataFrame,
    variants: list[str],
    *,
    higher_is_better: dict[str, bool] | None = None,
    metric_names: list[str] | None = None,
    confidence: float = 0.95,
    correction: str = "holm",
) -> pd.DataFrame:
    """Differences between chosen variants (runs' `variant` column), each pair, per metric.

    Returns:
        EFFECT_COLUMNS with level_a/level_b renamed variant_a/variant_b (estimate = a - b).
    """
    if "variant" not in runs.columns:
        raise ValueError("The runs table has no 'variant' column; pass runs from runs.parquet.")
    chosen = runs[runs["variant"].isin(variants)]
    report = factorial_effects(
        metrics, chosen, ["variant"], axis_levels={"variant": list(variants)}, higher_is_better=higher_is_better,
        metric_names=metric_names, confidence=confidence, correction=correction,
    )  # fmt: skip
    out = report.main.rename(columns={"level_a": "variant_a", "level_b": "variant_b"})
    return out.drop(columns=["axis"]).reset_index(drop=True)


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
