"""Effects: per-metric main effects with 95% paired-bootstrap CIs, 2x2 interactions, quality vs cost with the Pareto front."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from ablations.store import sweep_mtimes
from dashboard.charts import effect_bars, quality_cost_scatter
from dashboard.common import axis_label, cached_effects, current_sweep, results_root
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
    report = cached_effects(str(root), data.name, sweep_mtimes(root, data.name), split, tuple(all_metrics))
    st.caption(report.summary + " Effect = first level minus second; CIs are 95% percentile intervals over resampled clip x seed units.")
    for note in report.notes:
        st.info(note)
    if report.main.empty:
        return

    tabs = st.tabs(chosen)
    for tab, metric in zip(tabs, chosen):
        with tab:
            rows = report.main[report.main["metric"] == metric]
            direction = "higher" if data.higher_is_better(metric) else "lower"
            st.markdown(f"**{metric}** ({direction} is better)")
            st.altair_chart(effect_bars(report.main, metric), width="stretch")
            st.markdown("\n".join(f"- **{r.axis}** ({axis_label(r.level_a)} vs {axis_label(r.level_b)}): {r.verdict}" for r in rows.itertuples()))
            table = rows[["axis", "level_a", "level_b", "estimate", "ci_low", "ci_high", "n_units", "n_units_missing", "verdict"]].copy()
            table[["level_a", "level_b"]] = table[["level_a", "level_b"]].map(axis_label)
            st.dataframe(table, hide_index=True, column_config={c: st.column_config.NumberColumn(format="%.4g") for c in ("estimate", "ci_low", "ci_high")})
            inter = report.interactions[report.interactions["metric"] == metric]
            if len(inter):
                st.markdown("**2x2 interactions**: (a1b1 - a0b1) - (a1b0 - a0b0), averaged over the other axes")
                st.markdown("\n".join(f"- **{r.axis_a} x {r.axis_b}**: {r.verdict}" for r in inter.itertuples()))
                cols = ["axis_a", "a0", "a1", "axis_b", "b0", "b1", "estimate", "ci_low", "ci_high", "n_units", "verdict"]
                shown = inter[cols].copy()
                shown[["a0", "a1", "b0", "b1"]] = shown[["a0", "a1", "b0", "b1"]].map(axis_label)
                st.dataframe(shown, hide_index=True, column_config={c: st.column_config.NumberColumn(format="%.4g") for c in ("estimate", "ci_low", "ci_high")})
            else:
                st.caption("No interactions: they need at least two axes with exactly two levels each.")

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
    per_run = data.metrics[(data.metrics["metric"] == quality) & (data.metrics["split"] == split)].groupby("run_id")["value"].mean()
    points = done.assign(**{quality: done["run_id"].map(per_run)}).groupby("variant", sort=False).agg(
        **{quality: (quality, "mean"), cost: (cost, "mean"), "runs": ("run_id", "size")}
    ).reset_index()  # fmt: skip
    points = points[np.isfinite(points[quality]) & np.isfinite(points[cost])]
    if points.empty:
        st.info(f"No finished run has both {quality} and {cost} yet.")
        return
    points["pareto"] = pareto_front(points, quality, cost, higher_is_better=data.higher_is_better(quality))
    st.altair_chart(quality_cost_scatter(points, quality, cost, "variant", log_cost), width="stretch")
    front = points[points["pareto"]].sort_values(cost)
    st.caption(f"{int(points['pareto'].sum())} of {len(points)} variants are on the Pareto front (no other variant is both cheaper and better).")
    st.dataframe(pd.DataFrame(front[["variant", quality, cost, "runs"]]), hide_index=True,
                 column_config={quality: st.column_config.NumberColumn(format="%.4f"), cost: st.column_config.NumberColumn(format="scientific")})


main()
