"""Altair chart builders for the dashboard (pure functions of DataFrames, so tests can call them)."""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd


def _label(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def parallel_coordinates(runs: pd.DataFrame, dims: list[str], color: str) -> alt.Chart:
    """One line per run across axes and metrics, each dimension scaled to [0, 1].

    Categorical axes are placed at evenly spaced positions in their level order; the tooltip
    shows the raw value. `color` is a column of `runs` (an axis, usually).
    """
    rows = []
    for dim in dims:
        col = runs[dim]
        numeric = pd.to_numeric(col, errors="coerce")
        if numeric.notna().all() and col.dtype != object and col.dtype != bool:
            lo, hi = numeric.min(), numeric.max()
            scaled = (numeric - lo) / (hi - lo) if hi > lo else numeric * 0 + 0.5
        else:
            levels = list(dict.fromkeys(col.astype(str)))
            pos = {v: (i / (len(levels) - 1) if len(levels) > 1 else 0.5) for i, v in enumerate(levels)}
            scaled = col.astype(str).map(pos)
        rows.append(pd.DataFrame({"run_id": runs["run_id"].to_numpy(), "dimension": dim, "scaled": scaled.to_numpy(),
                                  "value": col.astype(str).to_numpy(), color: runs[color].astype(str).to_numpy()}))  # fmt: skip
    long = pd.concat(rows, ignore_index=True)
    return (
        alt.Chart(long)
        .mark_line(opacity=0.55, point=True)
        .encode(
            x=alt.X("dimension:N", sort=dims, title=None, axis=alt.Axis(labelAngle=0)),
            y=alt.Y("scaled:Q", title="scaled to the range of each column", scale=alt.Scale(domain=[0, 1])),
            color=alt.Color(f"{color}:N", title=color),
            detail="run_id:N",
            tooltip=["run_id:N", "dimension:N", "value:N"],
        )
        .properties(height=320)
    )


def effect_bars(effects: pd.DataFrame, metric: str) -> alt.Chart:
    """Main effects of one metric: a point at the estimate and a rule over the 95% CI, zero marked."""
    df = effects.loc[effects["metric"] == metric, ["axis", "level_a", "level_b", "estimate", "ci_low", "ci_high", "ci_includes_zero", "verdict"]]
    # levels of different axes have different types (str, float, bool): chart them as text
    df = df.assign(level_a=df["level_a"].map(_label), level_b=df["level_b"].map(_label))
    df["effect"] = df["axis"] + ": " + df["level_a"] + " vs " + df["level_b"]
    df["evidence"] = np.where(df["ci_includes_zero"], "CI includes 0", "CI excludes 0")
    base = alt.Chart(df).encode(y=alt.Y("effect:N", sort=None, title=None))
    rules = base.mark_rule(strokeWidth=2).encode(x=alt.X("ci_low:Q", title=f"difference in {metric}"), x2="ci_high:Q",
                                                 color=alt.Color("evidence:N", scale=alt.Scale(domain=["CI excludes 0", "CI includes 0"], range=["#d62728", "#999999"])))  # fmt: skip
    points = base.mark_point(filled=True, size=70).encode(
        x="estimate:Q", color="evidence:N", tooltip=["effect:N", alt.Tooltip("estimate:Q", format=".4g"),
                                                     alt.Tooltip("ci_low:Q", format=".4g"), alt.Tooltip("ci_high:Q", format=".4g"), "verdict:N"],
    )  # fmt: skip
    zero = alt.Chart(pd.DataFrame({"x": [0.0]})).mark_rule(strokeDash=[4, 4], color="black").encode(x="x:Q")
    return (rules + points + zero).properties(height=max(60, 28 * len(df)))


def quality_cost_scatter(points: pd.DataFrame, quality: str, cost: str, label: str, log_cost: bool) -> alt.Chart:
    """Variants as points (quality vs cost), the Pareto front as a connected, highlighted line."""
    scale = alt.Scale(type="log") if log_cost else alt.Scale(zero=False)
    base = alt.Chart(points).encode(x=alt.X(f"{cost}:Q", title=cost, scale=scale), y=alt.Y(f"{quality}:Q", title=quality, scale=alt.Scale(zero=False)))
    dots = base.mark_circle(size=90).encode(
        color=alt.Color("pareto:N", title="Pareto front", scale=alt.Scale(domain=[True, False], range=["#d62728", "#1f77b4"])),
        tooltip=[f"{label}:N", alt.Tooltip(f"{quality}:Q", format=".4g"), alt.Tooltip(f"{cost}:Q", format=".4g"), "runs:Q"],
    )
    front = points[points["pareto"]].sort_values(cost)
    line = alt.Chart(front).mark_line(color="#d62728", strokeDash=[5, 3]).encode(x=f"{cost}:Q", y=f"{quality}:Q")
    return (line + dots).properties(height=360)


def heatmap(matrix: pd.DataFrame, title: str, fmt: str = ".2f") -> alt.Chart:
    """A square matrix (row beats column) as a labelled heatmap; NaN cells left blank."""
    long = matrix.rename_axis(index="row", columns="column").reset_index().melt(id_vars="row", var_name="column", value_name="value")
    order = list(matrix.index)
    base = alt.Chart(long).encode(x=alt.X("column:N", sort=order, title="opponent"), y=alt.Y("row:N", sort=order, title="system"))
    cells = base.mark_rect().encode(color=alt.Color("value:Q", title=title, scale=alt.Scale(scheme="redblue", domain=[0, 1])))
    text = base.mark_text(fontSize=12).encode(text=alt.Text("value:Q", format=fmt))
    return (cells + text).properties(height=max(120, 40 * len(order)))


def curves_chart(curves: pd.DataFrame) -> alt.Chart:
    """Training curves of several runs overlaid, one panel per stage/name."""
    curves = curves.assign(panel=curves["stage"] + " / " + curves["name"])
    return (
        alt.Chart(curves)
        .mark_line()
        .encode(x=alt.X("step:Q"), y=alt.Y("value:Q", scale=alt.Scale(zero=False)), color="run:N", tooltip=["run:N", "step:Q", "value:Q"])
        .properties(height=220, width=320)
        .facet(facet=alt.Facet("panel:N", title=None), columns=2)
        .resolve_scale(y="independent")
    )


def frame_psnr_chart(psnr: pd.DataFrame) -> alt.Chart:
    """Per-frame PSNR against the reference: columns frame, psnr, run."""
    return (
        alt.Chart(psnr)
        .mark_line(point=True)
        .encode(x=alt.X("frame:Q"), y=alt.Y("psnr:Q", title="PSNR (dB)", scale=alt.Scale(zero=False)), color="run:N", tooltip=["run:N", "frame:Q", alt.Tooltip("psnr:Q", format=".2f")])
        .properties(height=260)
    )  # fmt: skip


def band_bars(bands: pd.DataFrame) -> alt.Chart:
    """DWT sub-band PSNR per run: columns band, run, value."""
    return (
        alt.Chart(bands)
        .mark_bar()
        .encode(x=alt.X("band:N", sort=None), xOffset="run:N", y=alt.Y("value:Q", title="PSNR (dB)"), color="run:N", tooltip=["run:N", "band:N", alt.Tooltip("value:Q", format=".2f")])
        .properties(height=260)
    )  # fmt: skip
