"""Cost: parameters, tokens, FLOPs, measured latency and the H100 estimate per variant, with the assumptions;
and the `speed` stage's measured generation wall time beside the estimate, with the implied MFU."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from ablations.provenance import mixed_machines_note
from dashboard.charts import quantity_axis
from dashboard.common import COST_COLUMNS, COST_LABELS, current_sweep
from dashboard.labels import variant_labels

# parameters and tokens read best as 1.9B / 7.7K, FLOPs in scientific notation, seconds plain
COST_FORMATS = {"cost.params": "compact", "cost.tokens": "compact", "cost.flops_run": "scientific",
                "cost.flops_ref": "scientific", "cost.latency_s": "%.3f", "cost.h100_estimate_s": "%.2f",
                "cost.dit_params": "compact", "cost.rope_max_rad_t": "%.3g", "cost.rope_max_rad_h": "%.3g",
                "cost.rope_max_rad_w": "%.3g"}  # fmt: skip

# the speed stage's columns (ablations/stages/speed.py::speed_columns): run shape, then 121x512x768 on a GPU
SPEED_LABELS = {"speed.wall_s": "measured generation (s)", "speed.dit_s": "DiT steps (s)", "speed.decode_s": "decode (s)",
                "speed.text_s": "text (s)", "speed.flops": "generation FLOPs", "speed.tflops_achieved": "achieved TFLOP/s",
                "speed.mfu": "MFU", "speed.ref_wall_s": "measured at 121x512x768 (s)",
                "speed.ref_mfu": "MFU at 121x512x768"}  # fmt: skip
SPEED_FORMATS = {"speed.flops": "scientific", "speed.tflops_achieved": "%.4f", "speed.mfu": "percent",
                 "speed.ref_mfu": "percent"}  # fmt: skip


def speed_table(runs):  # type: ignore[no-untyped-def]
    """Per variant: the H100 estimate beside the measured generation and the implied MFU, or None without speed rows."""
    present = [c for c in SPEED_LABELS if c in runs.columns and runs[c].notna().any()]
    if "speed.wall_s" not in present:
        return None
    columns = (["cost.h100_estimate_s"] if "cost.h100_estimate_s" in runs.columns else []) + present
    groups = runs.groupby("variant", sort=False)
    table = groups[columns].median().reset_index()
    if "speed.ref_wall_s" in table and "cost.h100_estimate_s" in table:
        table["measured / estimate"] = table["speed.ref_wall_s"] / table["cost.h100_estimate_s"]
    # the median hides how much one variant's timings moved between its runs: show that range beside it
    wall = groups["speed.wall_s"]
    table["measured range over runs (s)"] = [f"{lo:.3g}-{hi:.3g} ({n} runs)" if n > 1 else f"one run: {lo:.3g}"
                                            for lo, hi, n in zip(wall.min(), wall.max(), wall.count())]
    return named_by_axes(table).rename(columns={**SPEED_LABELS, **COST_LABELS})


def named_by_axes(per_variant):  # type: ignore[no-untyped-def]
    """The table with each row named first by the axes that differ (`variant_labels`, as the bars are) and the
    full variant string moved to the last column, so the figures fit the page and the name is still there."""
    names = variant_labels(per_variant["variant"])
    table = per_variant.rename(columns={"variant": "full variant"})
    table.insert(0, "variant", table["full variant"].map(names))
    return table[[c for c in table.columns if c != "full variant"] + ["full variant"]]


def show_speed(runs) -> None:  # type: ignore[no-untyped-def]
    st.subheader("Measured generation (speed stage) beside the estimate")
    table = speed_table(runs)
    if table is None:
        st.info("No measured generation times yet: add the `speed` stage to the sweep (it is in `demo`).")
        return
    mixed = mixed_machines_note(runs)
    if mixed:
        st.warning(mixed)
    formats = {SPEED_LABELS.get(c, c): SPEED_FORMATS.get(c, "%.3f") for c in SPEED_LABELS}
    st.dataframe(table, hide_index=True,
                 column_config={k: st.column_config.NumberColumn(format=v) for k, v in formats.items() if k in table})
    st.caption("Measured = median over a variant's runs (seeds) of each run's median wall time of a whole generation "
               "(text, every DiT step with CFG, decode) with its trained models at the run's shape, on the worker's "
               "hardware, timed alone on its node; the range column is how far the runs of one variant spread, so two "
               "variants whose ranges overlap are not shown to differ in speed. MFU = generation FLOPs / wall / H100 "
               "peak, shown for CUDA workers only; 121x512x768 is measured on GPU workers only, so without one the "
               "estimate stands alone at that shape.")

def cost_bars(per_variant, column: str) -> alt.Chart:  # type: ignore[no-untyped-def]
    """One bar per variant, named by the axes that differ between the variants (`variant_labels`), the
    axis in the column's unit ("2 s", "6.1 PFLOP", "1.9 B params"), never an SI suffix like "800m"."""
    label = COST_LABELS[column]
    name = label.removesuffix(" (s)")  # the axis says its own unit (s or ms)
    factor, unit, axis = quantity_axis(column, per_variant[label], name)
    names = variant_labels(per_variant["variant"])
    df = pd.DataFrame({"variant": per_variant["variant"], "label": per_variant["variant"].map(names),
                       "value": per_variant[label] / factor})  # fmt: skip
    return alt.Chart(df).mark_bar().encode(
        x=alt.X("value:Q", axis=axis), y=alt.Y("label:N", sort="-x", title=None, axis=alt.Axis(labelLimit=0)),
        tooltip=["variant:N", alt.Tooltip("value:Q", format=".4g", title=f"{name} ({unit})" if unit else name)],
    ).properties(height=alt.Step(26))  # fmt: skip


def main() -> None:
    """Render the Cost page (a function, so early exits are `return`, not st.stop)."""
    st.title("Cost")
    data = current_sweep()
    if data is None:
        return
    runs = data.runs
    present = [c for c in COST_COLUMNS if c in runs.columns and runs[c].notna().any()]
    if runs.empty or not present:
        st.info(f"Sweep {data.name} has no cost figures yet; the cost stage writes cost.* columns into runs.parquet.")
        return

    per_variant = runs.groupby("variant", sort=False).agg(
        **{COST_LABELS[c]: (c, "mean") for c in present}, runs=("run_id", "size")
    ).reset_index()  # fmt: skip
    st.dataframe(named_by_axes(per_variant), hide_index=True, column_config={COST_LABELS[c]: st.column_config.NumberColumn(format=COST_FORMATS[c]) for c in present})

    assumptions = data.sweep.get("cost_assumptions") or {}
    left, right = st.columns([2, 1])
    with right:
        st.markdown("**Assumptions behind the H100 estimate**")
        if assumptions:
            st.table({"assumption": list(assumptions), "value": [str(v) for v in assumptions.values()]})
            peak, util = assumptions.get("h100_peak_tflops_bf16"), assumptions.get("utilisation")
            if peak and util:
                st.caption(f"estimate = FLOPs at 121x512x768 / ({peak} TFLOP/s x {util}); measured latency is on this machine's hardware.")
        else:
            st.warning("sweep.json has no cost_assumptions, so the H100 estimate's peak throughput and utilisation are unknown.")
    with left:
        target = "cost.h100_estimate_s" if "cost.h100_estimate_s" in present else present[0]
        metric = st.selectbox("Show", present, index=present.index(target), format_func=lambda c: COST_LABELS[c], key=f"cost-col:{data.name}")
        st.altair_chart(cost_bars(per_variant, metric), width="stretch")
    show_speed(runs)


main()
