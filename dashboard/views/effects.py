"""Effects: per-metric main effects and 2x2 interactions with intervals that include training noise, corrected
verdicts, noise floors, the A/A check and the best variant; quality vs cost with the Pareto front."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from ablations.store import sweep_mtimes
from dashboard.charts import effect_bars, quality_cost_scatter
from dashboard.common import axis_label, cached_effects, current_sweep, metric_availability, results_root
from dashboard.labels import variant_labels
from evaluation.stats import pareto_front

def main() -> None:
    """Render the Effects page (a function, so early exits are `return`, not st.stop)."""
    st.title("Effects")
    data = current_sweep()
    if data is None:
        return
    if data.metrics.empty:
        st.info(f"Sweep {data.name} has no metrics yet; effects appear once runs finish and are scored.")
        return
    if not data.axes:
        st.info(f"Sweep {data.name} has no axes in sweep.json, so there are no effects to estimate.")
        return

    metric_availability(data, set_table=False)
    all_metrics = sorted(data.metrics["metric"].unique())
    splits = sorted(data.metrics["split"].unique())
    c1, c2 = st.columns([3, 1])
    default = [m for m in data.headline_metrics if m in all_metrics] or all_metrics[:2]
    chosen = c1.multiselect("Metrics", all_metrics, default=default, key=f"eff-metrics:{data.name}")
    split = c2.selectbox("Split", splits, key=f"eff-split:{data.name}") if len(splits) > 1 else splits[0]
    if not chosen:
        st.info("Pick at least one metric.")
        return

    root = results_root()
    correction = st.radio("Correction", ["holm", "bh", "none"], horizontal=True, key=f"eff-corr:{data.name}",
                          format_func=lambda m: {"holm": "Holm (family-wise)", "bh": "Benjamini-Hochberg (FDR)", "none": "none"}[m],
                          help="Adjusts the p-values over every effect and interaction of the chosen metrics.")  # fmt: skip
    report = cached_effects(str(root), data.name, sweep_mtimes(root, data.name), split, tuple(sorted(chosen)), correction)
    st.caption(report.summary + " Effect = first level minus second. Intervals include the variance between trained "
               "models (seeds) and between source videos; mde80 is the noise floor (the effect found with 80% power). "
               "See docs/statistics.md.")  # fmt: skip
    for note in report.notes:
        st.info(note)
    if report.main.empty:
        return

    tabs = st.tabs(chosen)
    numbers = {c: st.column_config.NumberColumn(format="%.4g") for c in ("estimate", "ci_low", "ci_high", "p_value", "p_adjusted", "mde80")}
    for tab, metric in zip(tabs, chosen):
        with tab:
            rows = report.main[report.main["metric"] == metric]
            direction = "higher" if data.higher_is_better(metric) else "lower"
            st.markdown(f"**{metric}** ({direction} is better)")
            if data.metric_specs.get(metric, {}).get("set_level"):
                st.caption(f"{metric} is set-level: one value per run (n=1, its set counts as one source), so the "
                           "interval comes from the seed replicates alone.")
            if (rows["status"] == "estimated").any():
                st.altair_chart(effect_bars(report.main, metric), width="stretch")
            st.markdown("\n".join(f"- **{r.axis}** ({axis_label(r.level_a)} vs {axis_label(r.level_b)}): {r.verdict}" for r in rows.itertuples()))
            cols = ["axis", "level_a", "level_b", "estimate", "ci_low", "ci_high", "p_value", "p_adjusted", "mde80",
                    "n_seeds", "n_sources", "status", "verdict"]  # fmt: skip
            table = rows[cols].copy()
            table[["level_a", "level_b"]] = table[["level_a", "level_b"]].map(axis_label)
            st.dataframe(table, hide_index=True, column_config=numbers)
            inter = report.interactions[report.interactions["metric"] == metric]
            if len(inter):
                st.markdown("**2x2 interactions**: (a1b1 - a0b1) - (a1b0 - a0b0), averaged over the other axes")
                st.markdown("\n".join(f"- **{r.axis_a} x {r.axis_b}**: {r.verdict}" for r in inter.itertuples()))
                cols = ["axis_a", "a0", "a1", "axis_b", "b0", "b1", "estimate", "ci_low", "ci_high", "p_value", "p_adjusted",
                        "mde80", "n_seeds", "n_sources", "status", "verdict"]  # fmt: skip
                shown = inter[cols].copy()
                shown[["a0", "a1", "b0", "b1"]] = shown[["a0", "a1", "b0", "b1"]].map(axis_label)
                st.dataframe(shown, hide_index=True, column_config=numbers)
            else:
                st.caption("No interactions: they need at least two axes with exactly two levels each.")
            best = report.best[report.best["metric"] == metric]
            if len(best):
                st.markdown(f"**Best variant**: {best.iloc[0].verdict}")
            aa = report.replicate[report.replicate["metric"] == metric] if len(report.replicate) else report.replicate
            if len(aa):
                st.markdown(f"**A/A check** (baseline vs its replicate, disjoint seeds): {aa.iloc[0].verdict}")

    # --- quality versus cost, one point per variant (mean over its done runs), Pareto front marked
    st.subheader("Quality versus cost")
    cost_options = [c for c in ("cost.flops_ref", "cost.h100_estimate_s", "cost.latency_s", "cost.params") if c in data.runs.columns]
    if not cost_options:
        st.info("This sweep has no cost columns (cost.flops_ref, cost.h100_estimate_s); the cost stage has not run.")
        return
    q1, q2, q3 = st.columns([2, 2, 1])
    quality = q1.selectbox("Quality metric", chosen, key=f"qc-metric:{data.name}")
    cost = q2.selectbox("Cost", cost_options, key=f"qc-cost:{data.name}", help="FLOPs or H100 seconds for one 121x512x768 sample")
    log_cost = q3.checkbox("log cost", value=False, key=f"qc-log:{data.name}")
    done = data.runs[data.runs["status"] == "done"]
    if "replicate" in done.columns:  # the A/A copies are the baseline's config again, not a variant
        done = done[done["replicate"].astype(str) != "b"]
    per_run = data.metrics[(data.metrics["metric"] == quality) & (data.metrics["split"] == split)].groupby("run_id")["value"].mean()
    points = done.assign(**{quality: done["run_id"].map(per_run)}).groupby("variant", sort=False).agg(
        **{quality: (quality, "mean"), cost: (cost, "mean"), "runs": ("run_id", "size")}
    ).reset_index()  # fmt: skip
    points = points[np.isfinite(points[quality]) & np.isfinite(points[cost])]
    if points.empty:
        st.info(f"No finished run has both {quality} and {cost} yet.")
        return
    points["pareto"] = pareto_front(points, quality, cost, higher_is_better=data.higher_is_better(quality))
    points["variant (axes that differ)"] = points["variant"].map(variant_labels(points["variant"]))  # not a cut string
    st.altair_chart(quality_cost_scatter(points, quality, cost, "variant (axes that differ)", log_cost), width="stretch")
    front = points[points["pareto"]].sort_values(cost)
    st.caption(f"{int(points['pareto'].sum())} of {len(points)} variants are on the Pareto front (no other variant is both cheaper and better).")
    st.dataframe(pd.DataFrame(front[["variant", quality, cost, "runs"]]), hide_index=True,
                 column_config={quality: st.column_config.NumberColumn(format="%.4f"), cost: st.column_config.NumberColumn(format="scientific")})


main()
