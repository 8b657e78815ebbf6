"""Altair chart builders for the dashboard (pure functions of DataFrames, so tests can call them)."""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd


# distinct hues for runs and levels (Streamlit's default palette shades one hue for few categories)
CATEGORICAL = alt.Scale(scheme="category10")


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
                                  "value": col.astype(str).to_numpy(), "colour": runs[color].map(_label).to_numpy()}))  # fmt: skip
    long = pd.concat(rows, ignore_index=True)
    return (
        alt.Chart(long)
        .mark_line(opacity=0.55, point=True)
        .encode(
            x=alt.X("dimension:N", sort=dims, title=None, axis=alt.Axis(labelAngle=0, labelLimit=160)),
            y=alt.Y("scaled:Q", title="scaled to the range of each column", scale=alt.Scale(domain=[0, 1])),
            color=alt.Color("colour:N", title=color, scale=CATEGORICAL),
            detail="run_id:N",
            tooltip=["run_id:N", "dimension:N", "value:N"],
        )
        .properties(height=320)
    )


def effect_bars(effects: pd.DataFrame, metric: str) -> alt.Chart:
    """Tested main effects of one metric: a point at the estimate and a rule over the 95% CI, zero marked."""
    df = effects.loc[(effects["metric"] == metric) & (effects["status"] == "estimated"),
                     ["axis", "level_a", "level_b", "estimate", "ci_low", "ci_high", "significant", "verdict"]]
    # levels of different axes have different types (str, float, bool): chart them as text
    df = df.assign(level_a=df["level_a"].map(_label), level_b=df["level_b"].map(_label))
    df["effect"] = df["axis"] + ": " + df["level_a"] + " vs " + df["level_b"]
    df["evidence"] = np.where(df["significant"].astype(bool), "significant (adjusted)", "no significant difference")
    base = alt.Chart(df).encode(y=alt.Y("effect:N", sort=None, title=None, axis=alt.Axis(labelLimit=320)))
    rules = base.mark_rule(strokeWidth=2).encode(x=alt.X("ci_low:Q", title=f"difference in {metric}"), x2="ci_high:Q",
                                                 color=alt.Color("evidence:N", scale=alt.Scale(domain=["significant (adjusted)", "no significant difference"], range=["#d62728", "#999999"])))  # fmt: skip
    points = base.mark_point(filled=True, size=70).encode(
        x="estimate:Q", color="evidence:N", tooltip=["effect:N", alt.Tooltip("estimate:Q", format=".4g"),
                                                     alt.Tooltip("ci_low:Q", format=".4g"), alt.Tooltip("ci_high:Q", format=".4g"), "verdict:N"],
    )  # fmt: skip
    zero = alt.Chart(pd.DataFrame({"zero": [0.0]})).mark_rule(strokeDash=[4, 4], color="black").encode(x="zero:Q")
    # a step height: Streamlit squeezes a fixed pixel height of a layered chart with a discrete y
    return (rules + points + zero).properties(height=alt.Step(30))


def quality_cost_scatter(points: pd.DataFrame, quality: str, cost: str, label: str, log_cost: bool) -> alt.Chart:
    """Variants as points (quality vs cost), the Pareto front as a connected, highlighted line.

    `points` has columns `label`, `quality`, `cost`, runs and pareto (bool).
    """
    # Vega-Lite reads "cost.flops_ref" as a nested field: chart renamed copies
    df = points.rename(columns={quality: "quality", cost: "cost", label: "label"})[["label", "quality", "cost", "runs", "pareto"]]
    scale = alt.Scale(type="log") if log_cost else alt.Scale(zero=False)
    x = alt.X("cost:Q", title=cost, scale=scale, axis=alt.Axis(format="~s"))
    y = alt.Y("quality:Q", title=quality, scale=alt.Scale(zero=False))
    dots = alt.Chart(df).mark_circle(size=110).encode(
        x=x, y=y,
        color=alt.Color("pareto:N", title="Pareto front", scale=alt.Scale(domain=[True, False], range=["#d62728", "#1f77b4"])),
        tooltip=[alt.Tooltip("label:N", title=label), alt.Tooltip("quality:Q", format=".4g", title=quality),
                 alt.Tooltip("cost:Q", format=".4g", title=cost), "runs:Q"],
    )  # fmt: skip
    line = alt.Chart(df[df["pareto"]].sort_values("cost")).mark_line(color="#d62728", strokeDash=[5, 3]).encode(x=x, y=y)
    return (line + dots).properties(height=380)


def heatmap(matrix: pd.DataFrame, title: str, fmt: str = ".2f") -> alt.Chart:
    """A square matrix (row beats column) as a labelled heatmap; NaN cells left blank."""
    long = matrix.rename_axis(index="row", columns="column").reset_index().melt(id_vars="row", var_name="column", value_name="value")
    order = list(matrix.index)
    base = alt.Chart(long).encode(x=alt.X("column:N", sort=order, title="opponent"), y=alt.Y("row:N", sort=order, title="system"))
    cells = base.mark_rect().encode(color=alt.Color("value:Q", title=title, scale=alt.Scale(scheme="redblue", domain=[0, 1])))
    text = base.mark_text(fontSize=12).encode(text=alt.Text("value:Q", format=fmt)).transform_filter("isValid(datum.value)")
    return (cells + text).properties(height=alt.Step(44))


def curves_chart(curves: pd.DataFrame) -> alt.Chart:
    """Training curves of several runs overlaid, one panel per stage/name."""
    curves = curves.assign(panel=curves["stage"] + " / " + curves["name"])
    return (
        alt.Chart(curves)
        .mark_line()
        .encode(x=alt.X("step:Q"), y=alt.Y("value:Q", scale=alt.Scale(zero=False)), color=alt.Color("run:N", scale=CATEGORICAL), tooltip=["run:N", "step:Q", "value:Q"])
        .properties(height=220, width=320)
        .facet(facet=alt.Facet("panel:N", title=None), columns=2)
        .resolve_scale(y="independent")
    )


def frame_psnr_chart(psnr: pd.DataFrame) -> alt.Chart:
    """Per-frame PSNR against the reference: columns frame, psnr, run."""
    return (
        alt.Chart(psnr)
        .mark_line(point=True)
        .encode(x=alt.X("frame:Q"), y=alt.Y("psnr:Q", title="PSNR (dB)", scale=alt.Scale(zero=False)), color=alt.Color("run:N", scale=CATEGORICAL), tooltip=["run:N", "frame:Q", alt.Tooltip("psnr:Q", format=".2f")])
        .properties(height=260)
    )  # fmt: skip


def band_bars(bands: pd.DataFrame) -> alt.Chart:
    """DWT sub-band PSNR per run: columns band, run, value."""
    return (
        alt.Chart(bands)
        .mark_bar()
        .encode(x=alt.X("band:N", sort=None, axis=alt.Axis(labelAngle=0)), xOffset="run:N", y=alt.Y("value:Q", title="PSNR (dB)"), color=alt.Color("run:N", scale=CATEGORICAL), tooltip=["run:N", "band:N", alt.Tooltip("value:Q", format=".2f")])
        .properties(height=260)
    )  # fmt: skip


# Data page: kept and dropped clips in fixed colours, so every chart on the page reads the same way.
OUTCOME_COLOURS = {"kept": "#1f77b4", "passed": "#1f77b4", "dropped": "#d62728", "dropped by another filter": "#bbbbbb"}


def funnel_chart(funnel: pd.DataFrame) -> alt.Chart:
    """One horizontal bar per filter, in pipeline order: the rows that passed it and those it dropped.

    `funnel` has columns filter, entering, dropped, passed (dashboard.curated.funnel).
    """
    order = list(funnel["filter"])
    long = funnel.melt(id_vars=["filter", "entering"], value_vars=["passed", "dropped"], var_name="outcome", value_name="rows")
    bars = alt.Chart(long).mark_bar().encode(
        y=alt.Y("filter:N", sort=order, title="filter (pipeline order)", axis=alt.Axis(labelLimit=200)),
        x=alt.X("rows:Q", title="manifest rows (clips; unusable files at probe)", stack="zero"),
        color=alt.Color("outcome:N", title=None, sort=["passed", "dropped"], legend=alt.Legend(orient="top"),
                        scale=alt.Scale(domain=["passed", "dropped"], range=[OUTCOME_COLOURS["passed"], OUTCOME_COLOURS["dropped"]])),
        order=alt.Order("outcome:N", sort="descending"),
        tooltip=["filter:N", "outcome:N", "rows:Q", alt.Tooltip("entering:Q", title="entering")],
    )  # fmt: skip
    labels = alt.Chart(funnel.assign(label="dropped " + funnel["dropped"].astype(str))).mark_text(align="left", dx=6).encode(
        y=alt.Y("filter:N", sort=order), x="entering:Q", text="label:N")  # fmt: skip
    return (bars + labels).properties(height=alt.Step(34))


def reason_bars(counts: pd.DataFrame) -> alt.Chart:
    """Unusable files per probe reason code (columns reason, files), most frequent first."""
    return (
        alt.Chart(counts)
        .mark_bar(color=OUTCOME_COLOURS["dropped"])
        .encode(y=alt.Y("reason:N", sort=list(counts["reason"]), title="probe reason", axis=alt.Axis(labelLimit=240)),
                x=alt.X("files:Q", title="files", axis=alt.Axis(tickMinStep=1, format="d")), tooltip=["reason:N", "files:Q"])
        .properties(height=alt.Step(28))
    )  # fmt: skip


def score_histogram(counts: pd.DataFrame, filter_name: str, title: str, rules: list[tuple[float, str]]) -> alt.Chart:
    """Stacked histogram of one score coloured by outcome, with each (value, label) rule drawn over it.

    `counts` is binned already (dashboard.curated.histogram: start, end, outcome, clips), so the
    chart's size does not grow with the dataset; outcomes are 'kept', 'dropped by <filter_name>'
    and 'dropped by another filter'.
    """
    outcomes = ["kept", f"dropped by {filter_name}", "dropped by another filter"]
    colours = [OUTCOME_COLOURS["kept"], OUTCOME_COLOURS["dropped"], OUTCOME_COLOURS["dropped by another filter"]]
    bars = alt.Chart(counts).mark_bar(opacity=0.9, binSpacing=1).encode(
        x=alt.X("start:Q", title=title, scale=alt.Scale(zero=False, nice=False)), x2="end:Q",
        y=alt.Y("sum(clips):Q", title="clips", stack="zero", axis=alt.Axis(tickMinStep=1, format="d")),
        color=alt.Color("outcome:N", title=None, sort=outcomes, scale=alt.Scale(domain=outcomes, range=colours),
                        legend=alt.Legend(orient="top", labelLimit=0)),
        order=alt.Order("outcome:N"),
        tooltip=["outcome:N", alt.Tooltip("start:Q", format=".3g", title="from"), alt.Tooltip("end:Q", format=".3g", title="to"),
                 alt.Tooltip("sum(clips):Q", title="clips")],
    )  # fmt: skip
    chart = bars
    if rules:
        # labels stacked 16 px apart from the top, so two rules close together stay readable
        lines = pd.DataFrame({"value": [v for v, _ in rules], "label": [text for _, text in rules],
                              "offset": [4 + 16 * i for i in range(len(rules))]})  # fmt: skip
        rule = alt.Chart(lines).mark_rule(color="black", strokeDash=[5, 3], size=2).encode(x="value:Q", tooltip=["label:N"])
        text = alt.Chart(lines).mark_text(align="left", dx=5, baseline="top", fontSize=12, fontWeight="bold").encode(
            x="value:Q", y=alt.Y("offset:Q", scale=None), text="label:N")  # fmt: skip
        chart = bars + rule + text
    return chart.properties(height=240)
