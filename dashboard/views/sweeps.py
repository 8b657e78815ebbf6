"""Sweeps: every sweep in the results root with status counts, start time and git commit."""

from __future__ import annotations

import streamlit as st

from dashboard.common import chosen_sweep, results_root, sweep_table

def main() -> None:
    """Render the Sweeps page (a function, so early exits are `return`, not st.stop)."""
    st.title("Sweeps")
    root = results_root()
    table = sweep_table()
    if table.empty:
        if root.is_dir():
            st.info(f"No sweeps in {root} yet; run `ltxlab sweep demo --results {root}` to make one.")
        else:
            st.info(f"The results folder {root} does not exist yet; run `ltxlab sweep demo --results {root}` to make a sweep.")
        return

    for row in table[table["error"].notna()].itertuples():
        st.warning(f"Sweep {row.sweep}: {row.error}")
    shown = table.assign(progress=(table["done"] + table["failed"]) / table["runs"].where(table["runs"] > 0))
    st.dataframe(
        shown[["sweep", "status", "progress", "runs", "done", "failed", "running", "pending", "started_at", "git_commit", "dirty", "recipe"]],
        hide_index=True,
        column_config={
            "progress": st.column_config.ProgressColumn("finished", help="done + failed over all runs", min_value=0.0, max_value=1.0, format="percent"),
            "git_commit": st.column_config.TextColumn("commit"),
        },
    )
    chosen = chosen_sweep()
    st.caption(f"{len(table)} sweeps in `{root}`. Pick one in the sidebar (now: **{chosen}**) to see its runs, effects, samples and cost.")


main()
