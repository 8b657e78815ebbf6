"""`ltxlab report`: the effects table, the best variant per metric and the cost table."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

COST_SHOWN = ("cost.params", "cost.tokens", "cost.flops_run", "cost.flops_ref", "cost.latency_s", "cost.h100_estimate_s")


def build_report(root: str | Path, sweep: str, *, n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    from ablations.store import load_sweep
    from evaluation.stats import factorial_effects

    data = load_sweep(root, sweep)
    hib = {m: data.higher_is_better(m) for m in data.metrics["metric"].unique()} if not data.metrics.empty else {}
    axes = [a for a in data.axes if a in data.runs.columns]
    effects = factorial_effects(data.metrics, data.runs, axes, axis_levels=data.axis_levels, higher_is_better=hib,
                                n_boot=n_boot, seed=seed)
    done = data.runs[data.runs["status"] == "done"] if "status" in data.runs.columns else data.runs
    best = []
    for metric in data.headline_metrics:
        if metric in done.columns and done[metric].notna().any():
            column = done[metric].astype(float)
            row = done.loc[column.idxmax() if hib.get(metric, True) else column.idxmin()]
            best.append({"metric": metric, "best_variant": row["variant"], "value": float(row[metric]),
                         "higher_is_better": hib.get(metric, True)})
    cost_cols = [c for c in COST_SHOWN if c in data.runs.columns]
    cost = data.runs[["variant", "seed", *cost_cols]] if cost_cols else pd.DataFrame()
    failed = data.runs[data.runs.get("status", pd.Series(dtype=str)) == "failed"] if "status" in data.runs else []
    return {
        "sweep": sweep, "summary": effects.summary, "notes": list(data.notes) + list(effects.notes),
        "effects": effects.main, "interactions": effects.interactions, "best": pd.DataFrame(best), "cost": cost,
        "cost_assumptions": data.sweep.get("cost_assumptions", {}),
        "headline_metrics": list(data.headline_metrics),
        "failed": [] if len(failed) == 0 else failed[["variant", "failure_reason"]].to_dict("records"),
    }


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.3g}" if abs(value) < 1e4 else f"{value:.3e}"
    if isinstance(value, (int,)) and not isinstance(value, bool) and abs(value) >= 1e4:
        return f"{value:,}"
    return str(value)


def table(df: pd.DataFrame, columns: list[str]) -> str:
    if df is None or len(df) == 0:
        return "  (none)"
    cols = [c for c in columns if c in df.columns]
    cells = [[_fmt(v) for v in row] for row in df[cols].itertuples(index=False)]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(cols)]
    lines = ["  " + "  ".join(c.ljust(w) for c, w in zip(cols, widths))]
    lines += ["  " + "  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in cells]
    return "\n".join(lines)


def format_report(report: dict[str, Any], metrics: list[str] | None = None) -> str:
    """The printed report; `metrics` (default: the headline metrics) limits the effect tables."""
    metrics = metrics or report.get("headline_metrics") or None
    effects = report["effects"]
    if metrics and len(effects):
        effects = effects[effects["metric"].isin(metrics)]
    out = [f"Sweep {report['sweep']}: {report['summary']}"]
    out += [f"  note: {n}" for n in report["notes"]]
    out += ["", "Main effects (estimate = level_a - level_b, 95% paired-bootstrap CI over clip x seed):"]
    out.append(table(effects, ["metric", "axis", "level_a", "level_b", "estimate", "ci_low", "ci_high", "n_units"]))
    if len(effects):
        found = effects[~effects["ci_includes_zero"].astype(bool)]
        out += ["", f"Verdicts: {len(effects) - len(found)} of {len(effects)} effects have a 95% CI that includes 0 "
                    "(no evidence of an effect)" + ("; the others:" if len(found) else ".")]
        out += [f"  {v}" for v in found["verdict"]]
    inter = report["interactions"]
    if len(inter):
        if metrics:
            inter = inter[inter["metric"].isin(metrics)]
        out += ["", "2x2 interactions:", table(inter, ["metric", "axis_a", "axis_b", "estimate", "ci_low", "ci_high"])]
    if metrics:
        out.append(f"  (headline metrics only; `ltxlab report {report['sweep']} --metrics a,b` or --json for all)")
    out += ["", "Best variant per headline metric:", table(report["best"], ["metric", "best_variant", "value"])]
    out += ["", "Cost per variant (H100 column is an estimate: FLOPs / (peak x utilisation)):",
            table(report["cost"], ["variant", "seed", *COST_SHOWN])]
    assumptions = report["cost_assumptions"]
    if assumptions:
        out.append(f"  assumptions: peak {assumptions.get('h100_peak_tflops_bf16')} TFLOP/s bf16, utilisation "
                   f"{assumptions.get('utilisation')}, reference shape {assumptions.get('reference_shape')}")
    if report["failed"]:
        out += ["", "Failed runs:"] + [f"  {r['variant']}: {r['failure_reason']}" for r in report["failed"]]
    return "\n".join(out)


def report_json(report: dict[str, Any]) -> dict[str, Any]:
    def records(df: pd.DataFrame) -> list[dict]:
        return [] if df is None or len(df) == 0 else df.astype(object).where(df.notna(), None).to_dict("records")

    return {k: records(v) if isinstance(v, pd.DataFrame) else v for k, v in report.items()}
