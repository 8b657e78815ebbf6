"""`ltxlab report`: effects with intervals that include training noise, corrected verdicts, the A/A check,
the best variant per metric and the cost table (docs/statistics.md says how to read it)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

COST_SHOWN = ("cost.params", "cost.dit_params", "cost.tokens", "cost.flops_run", "cost.flops_ref", "cost.latency_s",
              "cost.h100_estimate_s", "speed.wall_s", "speed.dit_s", "speed.decode_s", "speed.tflops_achieved",
              "speed.mfu", "cost.rope_max_rad_t", "cost.rope_max_rad_h", "cost.rope_max_rad_w")
COST_HEADER = ("Cost per variant (estimated: the H100 column is FLOPs / (peak x utilisation); measured: speed.* is the median "
               "of cost.latency_repeats generations at the run's shape, each speed stage timed alone on its node (without "
               "GPUs it holds every CPU of the node and times on all but one), so the seeds of one variant show the "
               "timing noise between runs; cost.latency_s is a rough figure taken beside other stages):")


def build_report(root: str | Path, sweep: str, *, metrics: list[str] | None = None, correction: str = "holm",
                 confidence: float = 0.95) -> dict[str, Any]:
    """Everything `ltxlab report` prints (and --json writes) for one sweep.

    `metrics` (default: the sweep's headline metrics that have scores) are the family the
    multiple-comparison correction adjusts over, so the verdicts printed are the ones corrected.
    """
    from ablations.collect import sweep_evaluation
    from ablations.provenance import mixed_machines_note
    from ablations.store import load_sweep
    from evaluation.stats import factorial_effects

    data = load_sweep(root, sweep)
    scored = set(data.metrics["metric"].unique()) if not data.metrics.empty else set()
    chosen = [m for m in (metrics or data.headline_metrics) if m in scored] or sorted(scored)
    hib = {m: data.higher_is_better(m) for m in scored}
    axes = [a for a in data.axes if a in data.runs.columns]
    effects = factorial_effects(data.metrics, data.runs, axes, axis_levels=data.axis_levels, higher_is_better=hib,
                                metric_names=chosen or None, correction=correction, confidence=confidence,
                                replicate_baseline=data.sweep.get("replicate"))  # fmt: skip
    cost_cols = [c for c in COST_SHOWN if c in data.runs.columns]
    cost = data.runs[["variant", "seed", *cost_cols]] if cost_cols else pd.DataFrame()
    failed = data.runs[data.runs.get("status", pd.Series(dtype=str)) == "failed"] if "status" in data.runs else []
    done = data.runs[data.runs["status"] == "done"] if "status" in data.runs else data.runs
    evaluation = sweep_evaluation(root, sweep, done)
    return {
        "sweep": sweep, "summary": effects.summary, "notes": list(data.notes) + list(effects.notes),
        "metrics": chosen, "available_metrics": sorted(scored), "correction": {"method": correction, "family_size": effects.family_size, "confidence": confidence},
        "units": {"seed_blocks": effects.n_seeds, "sources": effects.n_sources, "clips": effects.n_clips},
        "effects": effects.main, "interactions": effects.interactions, "replicate": effects.replicate,
        "best": effects.best, "cost": cost, "cost_assumptions": data.sweep.get("cost_assumptions", {}),
        "headline_metrics": list(data.headline_metrics),
        "failed": [] if len(failed) == 0 else failed[["variant", "failure_reason"]].to_dict("records"),
        "set_metrics": evaluation["set_metrics"], "not_applicable": evaluation["not_applicable"], "done_runs": len(done),
        "data_warnings": data_warning_lines(data.runs), "speed_machines": mixed_machines_note(done),
    }  # fmt: skip


def data_warning_lines(runs: pd.DataFrame) -> list[str]:
    """'<sentence> (k of n runs)' per broken input file the runs skipped (the run table's `data_warnings`,
    one sentence per line); [] for sweeps without that column or without warnings."""
    if "data_warnings" not in runs.columns or not len(runs):
        return []
    counts: dict[str, int] = {}
    for text in runs["data_warnings"].dropna():
        for sentence in dict.fromkeys(str(text).splitlines()):
            counts[sentence] = counts.get(sentence, 0) + 1
    return [f"{sentence} ({k} of {len(runs)} runs)" for sentence, k in counts.items()]


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


EFFECT_SHOWN = ["metric", "axis", "level_a", "level_b", "estimate", "ci_low", "ci_high", "p_value", "p_adjusted", "mde80",
                "n_seeds", "n_sources", "status"]  # fmt: skip
INTERACTION_SHOWN = ["metric", "axis_a", "axis_b", "estimate", "ci_low", "ci_high", "p_value", "p_adjusted", "mde80",
                     "n_seeds", "n_sources", "status"]  # fmt: skip
REPLICATE_SHOWN = ["metric", "estimate", "ci_low", "ci_high", "p_value", "mde80", "n_seeds", "n_sources", "status"]


def _method_name(method: str) -> str:
    """'Holm' for 'holm': the correction's name as the verdicts say it."""
    return {"holm": "Holm", "bh": "Benjamini-Hochberg", "none": "no"}[method]


def _verdict_lines(effects: pd.DataFrame, interactions: pd.DataFrame, method: str, family: int) -> list[str]:
    """Every verdict, grouped: effects found, found only before correction, no difference, untested."""
    rows = pd.concat([effects.assign(what=effects["axis"]) if len(effects) else effects,
                      interactions.assign(what=interactions["axis_a"] + " x " + interactions["axis_b"]) if len(interactions) else interactions],
                     ignore_index=True)  # fmt: skip
    if not len(rows):
        return []
    sig = rows["significant"].astype(bool)
    raw = rows["significant_raw"].astype(bool) & ~sig
    tested = rows["status"] == "estimated"
    below = tested & ~sig & (rows["estimate"].abs() < rows["mde80"])
    name = _method_name(method)
    out = ["", f"Verdicts ({name} correction over {family} tests; a verdict needs the adjusted p < 0.05):"]
    out.append(f"  {int(sig.sum())} significant, {int(raw.sum())} significant only before correction, "
               f"{int((tested & ~sig & ~raw).sum())} with no significant difference, {int((~tested).sum())} not tested.")
    for label, pick in (("effect found", sig), ("not after correction", raw), ("no significant difference", tested & ~sig & ~raw),
                        ("not tested", ~tested)):  # fmt: skip
        for r in rows[pick].itertuples():
            out.append(f"  [{label}] {r.metric}, {r.what}: {r.verdict}")
    if below.any():
        out.append(f"  {int(below.sum())} of the effects without a significant difference are smaller than their noise floor "
                   "(|estimate| < mde80): this sweep was too small to detect them; `ltxlab plan` sizes one that can.")  # fmt: skip
    return out


def format_report(report: dict[str, Any], metrics: list[str] | None = None) -> str:
    """The printed report; `metrics` narrows the tables (the correction stays over the report's family)."""
    effects, inter = report["effects"], report["interactions"]
    if metrics:
        effects = effects[effects["metric"].isin(metrics)] if len(effects) else effects
        inter = inter[inter["metric"].isin(metrics)] if len(inter) else inter
    corr = report["correction"]
    out = [f"Sweep {report['sweep']}: {report['summary']}"]
    out += [f"  note: {n}" for n in report["notes"]]
    out += ["", "Main effects (estimate = level_a - level_b; 95% t interval over seed blocks x source videos, "
                "docs/statistics.md; p_adjusted over the family; mde80 = noise floor, the effect found with 80% power):"]
    out.append(table(effects, EFFECT_SHOWN))
    if len(inter):
        out += ["", "2x2 interactions ((a1b1 - a0b1) - (a1b0 - a0b0)):", table(inter, INTERACTION_SHOWN)]
    out += _verdict_lines(effects, inter, corr["method"], corr["family_size"])
    aa = report["replicate"]
    if len(aa):
        out += ["", f"A/A check: the baseline ({aa['variant'].iloc[0]}) against its replicate with disjoint seeds; "
                    "identical configs, so any difference is noise:", table(aa, REPLICATE_SHOWN)]
        out += [f"  {r.metric}: {r.verdict}" for r in aa.itertuples()]
    adjusted = "uncorrected" if corr["method"] == "none" else f"after {_method_name(corr['method'])} correction over the metrics"
    out += ["", f"Best variant per metric (each of {', '.join(report['metrics'])}; named only where it beats every other "
                f"variant, {adjusted}, and the main effects above agree):"]
    out += [f"  {r.metric}: {r.verdict}" for r in report["best"].itertuples()] if len(report["best"]) else ["  (none)"]
    out.append(f"  (metrics: {', '.join(report['metrics'])}; `ltxlab report {report['sweep']} --metrics a,b` or --json for others)")
    out += _evaluation_lines(report)
    out += ["", COST_HEADER, table(report["cost"], ["variant", "seed", *COST_SHOWN])]
    if report.get("speed_machines"):
        out.append(f"  note: {report['speed_machines']}")
    assumptions = report["cost_assumptions"]
    if assumptions:
        out.append(f"  assumptions: peak {assumptions.get('h100_peak_tflops_bf16')} TFLOP/s bf16, utilisation "
                   f"{assumptions.get('utilisation')}, reference shape {assumptions.get('reference_shape')}")
    if report["failed"]:
        out += ["", "Failed runs:"] + [f"  {r['variant']}: {r['failure_reason']}" for r in report["failed"]]
    if report.get("data_warnings"):
        out += ["", "Data warnings (input files the runs skipped; fix or remove them):"]
        out += [f"  {line}" for line in report["data_warnings"]]
    return "\n".join(out)


SET_SHOWN = ["variant", "seed", "metric", "value", "n_reference", "n_test", "clip_frames", "detector"]


def _evaluation_lines(report: dict[str, Any]) -> list[str]:
    """Set-level metrics per run (with their protocol) and the sentence for every metric that has no value."""
    from ablations.collect import not_applicable_lines

    out: list[str] = []
    sets = report.get("set_metrics")
    valued = sets[sets["value"].notna()] if sets is not None and len(sets) else None
    if valued is not None and len(valued):
        shown = valued.assign(detector=valued["detector_sha256"].astype(str).str[:12])
        out += ["", "Set-level metrics (one value per run from all its held-out clips, n=1 per run: their effects' "
                    "intervals come from the seed replicates alone; StyleGAN-V I3D protocol, first clip_frames frames "
                    "at 224x224; detector = sha256 prefix):", table(shown, SET_SHOWN)]  # fmt: skip
    lines = not_applicable_lines(report["not_applicable"], report.get("done_runs", 0)) if len(report.get(
        "not_applicable", [])) else []
    if lines:
        out += ["", "Metrics without a value (n/a), and what each needs:"] + [f"  {line}" for line in lines]
    return out


def report_json(report: dict[str, Any]) -> dict[str, Any]:
    def records(df: pd.DataFrame) -> list[dict]:
        return [] if df is None or len(df) == 0 else df.astype(object).where(df.notna(), None).to_dict("records")

    return {k: records(v) if isinstance(v, pd.DataFrame) else v for k, v in report.items()}
