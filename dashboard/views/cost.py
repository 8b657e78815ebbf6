"""Cost: parameters, tokens, FLOPs, measured latency and the H100 estimate per variant, with the assumptions."""

from __future__ import annotations

import altair as alt
import streamlit as st

from dashboard.common import COST_COLUMNS, COST_LABELS, current_sweep

# parameters and tokens read best as 1.9B / 7.7K, FLOPs in scientific notation, seconds plain
COST_FORMATS = {"cost.params": "compact", "cost.tokens": "compact", "cost.flops_run": "scientific",
                "cost.flops_ref": "scientific", "cost.latency_s": "%.3f", "cost.h100_estimate_s": "%.2f",
                "cost.dit_params": "compact", "cost.rope_max_rad_t": "%.3g", "cost.rope_max_rad_h": "%.3g",
                "cost.rope_max_rad_w": "%.3g"}  # fmt: skip

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
    st.dataframe(per_variant, hide_index=True, column_config={COST_LABELS[c]: st.column_config.NumberColumn(format=COST_FORMATS[c]) for c in present})

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
        chart = alt.Chart(per_variant).mark_bar().encode(
            x=alt.X(f"{COST_LABELS[metric]}:Q", axis=alt.Axis(format="~s")), y=alt.Y("variant:N", sort="-x", title=None, axis=alt.Axis(labelLimit=420)), tooltip=["variant:N", alt.Tooltip(f"{COST_LABELS[metric]}:Q", format=".4g")]
        )  # fmt: skip
        st.altair_chart(chart.properties(height=alt.Step(26)), width="stretch")


main()
