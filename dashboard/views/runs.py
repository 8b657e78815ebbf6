"""Runs: the run table of a sweep, filters and grouping by any axis, failures, parallel coordinates, compare picks."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from ablations.report import data_warning_lines
from dashboard.charts import parallel_coordinates
from dashboard.common import (LIVE_REFRESH_S, axis_label, compare_selection, current_sweep, curves_panel, metric_availability,
                              reload_sweep, runs_with_axes)
from dashboard.labels import run_labels
from dashboard.live import live_progress

def main() -> None:
    """Render the Runs page (a function, so early exits are `return`, not st.stop)."""
    st.title("Runs")
    data = current_sweep()
    if data is None:
        return
    runs = data.runs
    if runs.empty:
        st.info(f"Sweep {data.name} has no runs recorded yet; they appear here as the runner starts them.")
        return

    # --- filters: one multiselect per axis plus status; an empty selection means "all"
    filter_cols = st.columns(min(4, len(data.axes) + 1))
    mask = pd.Series(True, index=runs.index)
    for i, axis in enumerate(data.axes):
        levels = list(dict.fromkeys(runs[axis].map(axis_label)))
        picked = filter_cols[i % len(filter_cols)].multiselect(axis, levels, key=f"filter:{data.name}:{axis}", placeholder="all")
        if picked:
            mask &= runs[axis].map(axis_label).isin(picked)
    statuses = [s for s in ("done", "failed", "running", "pending") if s in set(runs["status"])]
    picked_status = filter_cols[len(data.axes) % len(filter_cols)].multiselect("status", statuses, key=f"filter:{data.name}:status", placeholder="all")
    if picked_status:
        mask &= runs["status"].isin(picked_status)
    shown = runs[mask]
    counts = shown["status"].value_counts().to_dict()
    st.caption(f"{len(shown)} of {len(runs)} runs shown: " + ", ".join(f"{n} {s}" for s, n in counts.items()))

    warnings = data_warning_lines(shown)
    if warnings:  # broken input files are skipped by training, so the runs trained on less than asked
        st.warning("Data warnings: input files the runs skipped (the data_warnings column):\n\n"
                   + "\n".join(f"- {line}" for line in warnings))
    failed = shown[shown["status"] == "failed"]
    if len(failed):
        st.warning(f"{len(failed)} run(s) failed; their reasons are in the failure_reason column and listed below the table.")

    columns = runs_with_axes(data) + (["data_warnings"] if warnings else [])
    headline = [m for m in data.headline_metrics if m in runs.columns]
    st.dataframe(
        shown[columns], hide_index=True,
        column_config={m: st.column_config.NumberColumn(m, format="%.4g") for m in [*headline, "cost.h100_estimate_s", "wall_time_s"]},
    )  # fmt: skip
    metric_availability(data)
    if len(failed):
        with st.expander(f"Failure reasons ({len(failed)})", expanded=True):
            st.table(failed[["run_id", "variant", "failure_reason"]].set_index("run_id"))

    # --- grouping: mean and spread of headline metrics and cost per level of the chosen axes
    st.subheader("Grouped")
    group_by = st.multiselect("Group by", data.axes, default=data.axes[:1], key=f"group:{data.name}")
    done = shown[shown["status"] == "done"]
    value_cols = [c for c in [*headline, "cost.h100_estimate_s", "wall_time_s"] if c in done.columns]
    if group_by and len(done) and value_cols:
        keyed = done.assign(**{a: done[a].map(axis_label) for a in group_by})
        grouped = keyed.groupby(group_by, sort=False)[value_cols].agg(["mean", "std"])
        grouped.columns = [f"{c} {s}" for c, s in grouped.columns]
        grouped.insert(0, "runs", keyed.groupby(group_by, sort=False).size())
        st.dataframe(grouped.reset_index(), hide_index=True)
    elif not len(done):
        st.info("No finished runs match the filters yet, so there is nothing to group.")

    # --- parallel coordinates over axes and headline metrics
    st.subheader("Parallel coordinates")
    if len(done) >= 1 and data.axes:
        dims = [*data.axes, *headline, *(["cost.h100_estimate_s"] if "cost.h100_estimate_s" in done.columns else [])]
        color = st.selectbox("Colour by", data.axes, key=f"pc-color:{data.name}")
        st.altair_chart(parallel_coordinates(done, dims, color), width="stretch")
    else:
        st.info("Parallel coordinates need at least one finished run with axes.")

    # --- choose runs for the Compare page (kept in session state across pages)
    st.subheader("Compare")
    done_ids = runs.loc[runs["status"] == "done", "run_id"].tolist()
    kept = [r for r in compare_selection() if r in done_ids]
    label = run_labels(runs[runs["status"] == "done"], data.axes)
    chosen = st.multiselect(
        "Runs to compare (2-4)", done_ids, default=kept, max_selections=4, format_func=lambda r: f"{label.get(r, '')} ({r})",
        key=f"compare-pick:{data.name}",
    )  # fmt: skip
    st.session_state["compare_runs"] = chosen
    if len(chosen) >= 2:
        st.page_link("views/compare.py", label=f"Compare {len(chosen)} runs side by side")
    else:
        st.caption("Pick two to four finished runs, then open the Compare page.")

    # --- training curves, live while runs train: a fragment that reruns itself every few seconds then
    running = bool((runs["status"] == "running").any())
    st.fragment(run_every=LIVE_REFRESH_S if running else None)(training_curves)(data.name)


def training_curves(sweep: str) -> None:
    """Curves of the chosen runs (running ones by default), read again on every refresh."""
    st.subheader("Training curves")
    data = reload_sweep(sweep)
    if data is None:
        return
    runs = data.runs
    running = runs.loc[runs["status"] == "running", "run_id"].tolist()
    candidates = runs.loc[runs["status"].isin(["running", "done"]), "run_id"].tolist()
    label = run_labels(runs[runs["run_id"].isin(candidates)], data.axes)
    left, right = st.columns([5, 1])
    picked = left.multiselect("Runs", candidates, default=running[:4], max_selections=8, key=f"curves:{sweep}",
                              format_func=lambda r: f"{label.get(r, r)} ({'training' if r in running else 'done'})")  # fmt: skip
    right.button("Refresh", key=f"curves-refresh:{sweep}", help="Reads the curves again (also done every "
                 f"{LIVE_REFRESH_S} s while a run is training).")  # fmt: skip
    if running:
        steps = "; ".join(f"{label.get(r, r)}: {', '.join(live_progress(data.path, r)) or 'starting'}" for r in running[:8])
        st.caption(f"{len(running)} run(s) training ({steps}); their curves come from the stage folders and refresh "
                   f"every {LIVE_REFRESH_S} s.")  # fmt: skip
    if picked:
        shown = run_labels(runs[runs["run_id"].isin(picked)], data.axes)
        curves_panel(data, picked, shown, key=f"runs:{sweep}")
    else:
        st.caption("Pick runs to see their training curves.")


main()
