"""Altair chart builders for the dashboard (pure functions of DataFrames, so tests can call them)."""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from dashboard.labels import level_text


# distinct hues for runs and levels (Streamlit's default palette shades one hue for few categories)
CATEGORICAL = alt.Scale(scheme="category10")


def _label(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# Units of the quantity columns charted with an axis. Altair's "~s" wrote 0.8 s as "800m" and 1e6 as
# "1M": "m" read as minutes and "M" as mega or milli. Each axis now says its unit on every label.
COUNT_PREFIXES = ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K"), (1.0, ""))  # params, tokens: 1.9 B params
SI_PREFIXES = ((1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"), (1.0, ""))  # FLOP: 6.1 PFLOP
UNITS = {"cost.params": ("params", COUNT_PREFIXES), "cost.dit_params": ("params", COUNT_PREFIXES),
         "cost.tokens": ("tokens", COUNT_PREFIXES), "cost.flops_run": ("FLOP", SI_PREFIXES),
         "cost.flops_ref": ("FLOP", SI_PREFIXES), "speed.flops": ("FLOP", SI_PREFIXES),
         "speed.tflops_achieved": ("TFLOP/s", None), "cost.rope_max_rad_t": ("rad", None),
         "cost.rope_max_rad_h": ("rad", None), "cost.rope_max_rad_w": ("rad", None)}  # fmt: skip


def unit_of(column: str, values) -> tuple[float, str]:
    """(divisor, unit text) for charting `column` with an explicit unit: "M params", "TFLOP", "s", "ms", "".

    The prefix is chosen from the largest magnitude in `values`, so one axis has one unit. Columns
    ending in `_s` are seconds (milliseconds below 1 s); unknown columns get no unit.
    """
    top = float(np.nanmax(np.abs(np.asarray(values, dtype=float)))) if len(values) else 0.0
    top = top if np.isfinite(top) else 0.0
    if column.endswith("_s"):
        return (1e-3, "ms") if 0 < top < 1 else (1.0, "s")
    unit, prefixes = UNITS.get(column, ("", None))
    if prefixes is None:
        return 1.0, unit
    factor, prefix = next(((f, p) for f, p in prefixes if top >= f), prefixes[-1])
    if unit == "FLOP":
        return factor, f"{prefix}FLOP"
    return factor, f"{prefix} {unit}".strip()


def format_quantity(column: str, value: float, values=None) -> str:
    """`value` as text in its column's unit ("1.9 B params", "15.4 s", "6.1 PFLOP"), scaled like `values`."""
    factor, unit = unit_of(column, [value] if values is None else values)
    return f"{value / factor:,.3g} {unit}".strip()


def quantity_axis(column: str, values, title: str | None = None) -> tuple[float, str, alt.Axis]:
    """(divisor, unit, axis) for a quantitative channel of `column` divided by the divisor: every label
    carries the unit (e.g. "2 s", "6.1 PFLOP") instead of an SI suffix."""
    factor, unit = unit_of(column, values)
    suffix = f" + ' {unit}'" if unit else ""
    name = title if title is not None else column
    axis = alt.Axis(labelExpr=f"format(datum.value, ',.3~g'){suffix}", title=f"{name} ({unit})" if unit else name)
    return factor, unit, axis


def parallel_coordinates(runs: pd.DataFrame, dims: list[str], color: str) -> alt.LayerChart:
    """One line per run across axes and metrics, each dimension scaled to [0, 1], with its own axis.

    Categorical axes are placed at evenly spaced positions in their level order, each level
    written beside its axis; numeric ones show their min, middle and max in their unit. Every
    dimension's name is shown, wrapped at dots (never dropped for overlap). `color` is a column of
    `runs` (an axis, usually); the tooltip shows the raw value.
    """
    rows, ticks = [], []
    for dim in dims:
        col = runs[dim]
        numeric = pd.to_numeric(col, errors="coerce")
        if numeric.notna().all() and col.dtype != object and col.dtype != bool:
            lo, hi = float(numeric.min()), float(numeric.max())
            scaled = (numeric - lo) / (hi - lo) if hi > lo else numeric * 0 + 0.5
            stops = [(0.0, lo), (0.5, (lo + hi) / 2), (1.0, hi)] if hi > lo else [(0.5, lo)]
            ticks += [{"dimension": dim, "scaled": pos, "tick": format_quantity(dim, v, numeric)} for pos, v in stops]
        else:
            levels = list(dict.fromkeys(col.astype(str)))
            pos = {v: (i / (len(levels) - 1) if len(levels) > 1 else 0.5) for i, v in enumerate(levels)}
            scaled = col.astype(str).map(pos)
            ticks += [{"dimension": dim, "scaled": p, "tick": level_text(v)} for v, p in pos.items()]
        rows.append(pd.DataFrame({"run_id": runs["run_id"].to_numpy(), "dimension": dim, "scaled": scaled.to_numpy(),
                                  "value": col.astype(str).to_numpy(), "colour": runs[color].map(_label).to_numpy()}))  # fmt: skip
    long = pd.concat(rows, ignore_index=True)
    # every name shown, wrapped at dots onto lines (labelOverlap would hide every second one)
    x = alt.X("dimension:N", sort=dims, title=None, scale=alt.Scale(padding=0.1),
              axis=alt.Axis(labelAngle=0, labelOverlap=False, labelLimit=0, labelExpr="split(datum.label, '.')",
                            labelFontSize=12, labelFontWeight="bold", labelPadding=8, ticks=False,
                            domain=False, orient="bottom"))  # fmt: skip
    y = alt.Y("scaled:Q", axis=None, scale=alt.Scale(domain=[-0.04, 1.04]))  # room for the end ticks' text
    lines = alt.Chart(long).mark_line(opacity=0.55, point=True).encode(
        x=x, y=y, color=alt.Color("colour:N", title=color, scale=CATEGORICAL), detail="run_id:N",
        tooltip=["run_id:N", "dimension:N", "value:N"])  # fmt: skip
    # each dimension's axis as a vertical rule; every layer carries the same x (a layer without the
    # axis settings, drawn first, left the whole chart at height 0 in the browser)
    spans = pd.DataFrame({"dimension": dims, "low": 0.0, "high": 1.0})
    axis_lines = alt.Chart(spans).mark_rule(color="#666666").encode(x=x, y=alt.Y("low:Q", axis=None), y2="high:Q")
    marks = alt.Chart(pd.DataFrame(ticks)).encode(x=x, y=y)
    tick_marks = marks.mark_tick(color="#666666", size=8, thickness=1)
    tick_text = marks.mark_text(align="left", dx=6, fontSize=11, color="#333333").encode(text="tick:N")
    return alt.layer(axis_lines, lines, tick_marks, tick_text).properties(height=340)


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


def quality_cost_scatter(points: pd.DataFrame, quality: str, cost: str, label: str, log_cost: bool) -> alt.LayerChart:
    """Variants as points (quality vs cost) coloured by their label, the Pareto front ringed and joined.

    `points` has columns `label` (the short name shown; dashboard.labels), `quality`, `cost`, runs
    and pareto (bool). The cost axis is in `cost`'s unit (`quantity_axis`).
    """
    # Vega-Lite reads "cost.flops_ref" as a nested field: chart renamed copies
    df = points.rename(columns={quality: "quality", cost: "cost", label: "label"})
    df = df[["label", "quality", "cost", "runs", "pareto", *(["variant"] if "variant" in df.columns else [])]]
    factor, unit, axis = quantity_axis(cost, df["cost"])
    df = df.assign(cost=df["cost"] / factor)
    scale = alt.Scale(type="log") if log_cost else alt.Scale(zero=False)
    x = alt.X("cost:Q", scale=scale, axis=axis)
    y = alt.Y("quality:Q", title=quality, scale=alt.Scale(zero=False))
    # variants by colour, named in the legend (whole labels: text beside the points overlapped and ran
    # off the plot); the Pareto front as black-ringed points on a dashed line
    dots = alt.Chart(df).mark_point(filled=True, size=120).encode(
        x=x, y=y,
        color=alt.Color("label:N", title=label, scale=alt.Scale(scheme="category20"), legend=alt.Legend(labelLimit=0)),
        stroke=alt.Stroke("pareto:N", title="Pareto front", scale=alt.Scale(domain=[True, False], range=["black", "transparent"])),
        strokeWidth=alt.value(2),
        tooltip=[*(["variant:N"] if "variant" in df.columns else []), alt.Tooltip("quality:Q", format=".4g", title=quality),
                 alt.Tooltip("cost:Q", format=".4g", title=f"{cost} ({unit or 'value'})"), "runs:Q", "pareto:N"],
    )  # fmt: skip
    line = alt.Chart(df[df["pareto"]].sort_values("cost")).mark_line(color="black", strokeDash=[5, 3]).encode(x=x, y=y)
    return (line + dots).properties(height=380)


def heatmap(matrix: pd.DataFrame, title: str, fmt: str = ".2f") -> alt.Chart:
    """A square matrix (row beats column) as a labelled heatmap; NaN cells left blank."""
    long = matrix.rename_axis(index="row", columns="column").reset_index().melt(id_vars="row", var_name="column", value_name="value")
    order = list(matrix.index)
    # whole labels (short ones from dashboard.labels), slanted on x so neighbours do not overlap
    base = alt.Chart(long).encode(x=alt.X("column:N", sort=order, title="opponent", axis=alt.Axis(labelAngle=-35, labelLimit=0)),
                                  y=alt.Y("row:N", sort=order, title="system", axis=alt.Axis(labelLimit=0)))  # fmt: skip
    cells = base.mark_rect().encode(color=alt.Color("value:Q", title=title, scale=alt.Scale(scheme="redblue", domain=[0, 1])))
    text = base.mark_text(fontSize=12).encode(text=alt.Text("value:Q", format=fmt)).transform_filter("isValid(datum.value)")
    return (cells + text).properties(height=alt.Step(44))


def ema(values, weight: float) -> np.ndarray:
    """TensorBoard's debiased exponential moving average: weight 0 returns the values, 0.99 is very smooth.

    Debiased (divided by 1 - weight^n) so the start is not pulled towards zero; NaNs are skipped.
    """
    out = np.asarray(values, dtype=float).copy()
    last, count = 0.0, 0
    for i, v in enumerate(out):
        if not np.isfinite(v):
            continue
        count += 1
        last = last * weight + (1 - weight) * v
        out[i] = last / (1 - weight**count)
    return out


def smooth_curves(curves: pd.DataFrame, weight: float) -> pd.DataFrame:
    """`curves` (stage, step, name, value, run) with `smoothed`: the EMA of each run's stage/name series in step order."""
    curves = curves.sort_values(["run", "stage", "name", "step"], kind="stable").reset_index(drop=True)
    smoothed = curves.groupby(["run", "stage", "name"], sort=False)["value"].transform(lambda v: ema(v.to_numpy(), weight))
    return curves.assign(smoothed=smoothed)


def curves_chart(curves: pd.DataFrame, smoothing: float = 0.0) -> alt.FacetChart:
    """Training curves of several runs overlaid, one panel per stage/name.

    With `smoothing` > 0 each curve is its EMA (`ema`) drawn over the raw curve, which stays faint.
    """
    curves = smooth_curves(curves, smoothing).assign(panel=lambda d: d["stage"] + " / " + d["name"])
    colour = alt.Color("run:N", scale=CATEGORICAL, legend=alt.Legend(labelLimit=0, orient="bottom", columns=2, symbolOpacity=1))
    base = alt.Chart().encode(x=alt.X("step:Q"), color=colour)
    title = f"value (EMA {smoothing:g}; raw faint)" if smoothing > 0 else "value"
    y = alt.Y("value:Q", scale=alt.Scale(zero=False), title=title)
    if smoothing > 0:
        raw = base.mark_line(opacity=0.25).encode(y=y)
        smooth = base.mark_line().encode(y=alt.Y("smoothed:Q", title=title),
                                         tooltip=["run:N", "step:Q", "value:Q", alt.Tooltip("smoothed:Q", format=".4g")])
        layered = alt.layer(raw, smooth, data=curves)
    else:
        layered = alt.layer(base.mark_line().encode(y=y, tooltip=["run:N", "step:Q", "value:Q"]), data=curves)
    return (
        layered.properties(height=220, width=320)
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
