"""Survey: win-rate matrix with CIs and verdicts, Bradley-Terry ratings, votes over time, raters, agreement.

Reads the survey database through `survey.reports` (pure pandas over SQLAlchemy; no torch). Win-rate
CIs and tests are clustered by rater, prompt and (sweep studies) seed block; p-values are adjusted over the matrix's pairs
by the correction chosen on the page (Holm by default), as in `ltxlab survey report`.
"""

from __future__ import annotations

from pathlib import Path

import altair as alt
import pandas as pd
import streamlit as st

from dashboard.charts import heatmap
from dashboard.common import survey_db
from dashboard.labels import variant_labels


def _db_key(db: str) -> tuple[float, ...]:
    """mtimes of a SQLite file and its WAL (votes land in the WAL first); URLs get a constant key."""
    if "://" in db:
        return (0.0,)
    out = []
    for suffix in ("", "-wal"):
        try:
            out.append(Path(db + suffix).stat().st_mtime_ns / 1e9)
        except OSError:
            out.append(0.0)
    return tuple(out)


@st.cache_data(show_spinner=False, max_entries=8)
def _studies(db: str, key: tuple) -> list[dict]:
    from survey.reports import list_studies

    return list_studies(db)


@st.cache_data(show_spinner=False, max_entries=16)
def _report(db: str, study: str, include_flagged: bool, question: int, correction: str, key: tuple) -> dict:
    from survey.reports import study_report

    return study_report(db, study, include_flagged=include_flagged, question=question, correction=correction)


CORRECTIONS = {"holm": "Holm (family-wise error)", "bh": "Benjamini-Hochberg (false discoveries)", "none": "none"}


def _correction_caption(report: dict) -> str:
    c, counts = report["correction"], report["counts"]
    how = ("No multiple-comparison correction" if c["method"] == "none"
           else f"{c['name']} correction over the {c['pairs']} pair(s) of the matrix (separately over the {c['systems']} overall rates)")
    blocks = counts.get("seed_blocks_used")
    by = ", ".join(c.get("clustered_by", ["rater", "prompt"]))
    sizes = f"{counts['raters_used']} raters, {counts['prompts_used']} prompts" + (
        f", {len(blocks)} seed block(s)" if blocks is not None else "")
    noise = ("the systems are fixed models, so the claims are about those models, not their configs" if blocks is None
             else "training noise is included through the seed blocks" if len(blocks) >= 2
             else "every vote compares models of one seed block, so training noise is not included and no pair or "
                  "system gets a verdict (survey a second seed)")
    return (f"{1 - c['alpha']:.0%} CIs and tests against 50% are clustered by {by} ({sizes}; t with the smallest "
            f"cluster count - 1 df); {noise}. {how}; significant means adjusted p < {c['alpha']:g}. "
            "\"No significant difference\" means the data cannot tell the two apart at this size, not that they are equal.")


def _verdicts(report: dict) -> None:
    """The matrix with CIs, one verdict sentence per pair, and the correction used."""
    st.subheader("Verdicts")
    st.caption(_correction_caption(report))
    verdicts = report["pair_verdicts"]
    if len(verdicts):
        st.markdown("\n".join(f"- {v}" for v in verdicts["verdict"]))
    st.dataframe(report["win_matrix_ci"], column_config={"_index": st.column_config.TextColumn("row beats column")})


def main() -> None:
    """Render the Survey page (a function, so early exits are `return`, not st.stop)."""
    st.title("Survey")
    db = survey_db()
    if not db:
        st.info("No survey database given; start the dashboard with `ltxlab dashboard --survey-db PATH` to see study results.")
        return
    if "://" not in db and not Path(db).exists():
        st.warning(f"The survey database {db} does not exist; create a study with `ltxlab survey create` first.")
        return
    try:
        studies = _studies(db, _db_key(db))
    except Exception as exc:  # a locked, corrupt or foreign database must not take the page down
        st.error(f"Could not read the survey database {db} ({type(exc).__name__}: {str(exc).splitlines()[0][:160]}).")
        return
    if not studies:
        st.info(f"The survey database {db} has no studies yet; create one with `ltxlab survey create`.")
        return

    names = [s["name"] for s in studies]
    c1, c2, c3, c4 = st.columns([2, 1, 1, 1])
    study = c1.selectbox("Study", names, key="survey-study")
    include_flagged = c2.checkbox("Include flagged raters", value=False, key="survey-flagged")
    correction = c3.selectbox("Correction", list(CORRECTIONS), format_func=CORRECTIONS.get, key="survey-correction",
                              help="multiple-comparison adjustment over the win-rate matrix's pairs")
    meta = next(s for s in studies if s["name"] == study)
    c4.metric("Votes", meta["votes"])
    try:
        report = _report(db, study, include_flagged, 0, correction, _db_key(db))
    except Exception as exc:
        st.error(f"Could not build the report of study {study} ({type(exc).__name__}: {str(exc).splitlines()[0][:160]}).")
        return
    counts = report["counts"]
    st.caption(
        f"Question: *{counts.get('question')}*. {counts['votes_used']} of {counts['votes_real']} real votes used "
        f"({counts['votes_excluded_flagged']} from flagged raters left out, {counts['votes_gold']} gold-pair votes checked), "
        f"{counts['raters_used']} of {counts['raters_total']} raters; ties count as half a win."
    )
    if counts["votes_used"] == 0:
        st.info(f"Study {study} has no usable votes yet; results appear as raters vote.")
        return

    matrix = report["win_matrix"]
    names = variant_labels(matrix.index)  # sweep variants named by the axes that differ between them
    if any(k != v for k, v in names.items()):
        st.caption("Systems are named by the axes that differ between them: "
                   + "; ".join(f"**{v}** = `{k}`" for k, v in names.items()))
    left, right = st.columns(2)
    with left:
        st.subheader("Win rate (row beats column)")
        st.altair_chart(heatmap(matrix.rename(index=names, columns=names), "win rate"), width="stretch")
    with right:
        st.subheader("Bradley-Terry ratings")
        bt = report["bradley_terry"]
        short = bt.assign(system=bt["system"].map(lambda s: names.get(s, s)))
        base = alt.Chart(short).encode(y=alt.Y("system:N", sort=list(short["system"]), title=None, axis=alt.Axis(labelLimit=0)))
        chart = base.mark_rule(strokeWidth=2).encode(x=alt.X("ci_low:Q", title="rating (log-odds, 95% CI)"), x2="ci_high:Q") + base.mark_point(
            filled=True, size=80
        ).encode(x="rating:Q", tooltip=["system:N", alt.Tooltip("rating:Q", format=".3f"), "rank:Q", "votes:Q"])  # fmt: skip
        st.altair_chart(chart.properties(height=alt.Step(36)), width="stretch")
        st.dataframe(bt, hide_index=True, column_config={c: st.column_config.NumberColumn(format="%.3f") for c in ("rating", "ci_low", "ci_high", "p_beats_average")})

    _verdicts(report)

    st.subheader("Overall win rates")
    overall = report["overall"]
    shown = overall[overall["votes"] > 0]
    st.markdown("\n".join(f"- {v}" for v in shown["verdict"]))
    numbers = ("win_rate", "ci_low", "ci_high", "p_value", "p_adjusted")
    st.dataframe(shown.drop(columns=["verdict", "se", "df"]), hide_index=True,
                 column_config={c: st.column_config.NumberColumn(format="%.3f") for c in numbers})

    over_time = report["votes_over_time"]
    a, b = st.columns(2)
    with a:
        st.subheader("Votes over time")
        if len(over_time):
            st.altair_chart(alt.Chart(over_time).mark_line(point=True).encode(x=alt.X("hour:T"), y=alt.Y("cumulative:Q", title="votes (cumulative)")), width="stretch")
    with b:
        st.subheader("Agreement")
        agreement = report["agreement"]
        if agreement["items"]:
            st.metric("Fleiss' kappa", f"{agreement['fleiss_kappa']:.3f}")
            st.metric("Krippendorff's alpha (nominal)", f"{agreement['krippendorff_alpha']:.3f}")
            st.caption(f"over {agreement['items']} comparisons with two or more ratings ({agreement['ratings']} ratings)")
        else:
            st.info("No comparison has two or more ratings yet, so agreement cannot be measured.")

    st.subheader("Raters")
    raters = report["raters"]
    n_flagged = int(raters["flagged"].sum()) if len(raters) else 0
    if n_flagged:
        st.warning(f"{n_flagged} rater(s) flagged for failing gold pairs; their votes are {'included' if include_flagged else 'left out'}.")
    raters = pd.DataFrame(raters)
    if "first_vote_at" in raters.columns:  # epoch seconds -> readable UTC time
        raters["first_vote_at"] = pd.to_datetime(raters["first_vote_at"], unit="s", utc=True).dt.strftime("%Y-%m-%d %H:%M UTC")
    st.dataframe(raters, hide_index=True, column_config={"median_seconds_per_vote": st.column_config.NumberColumn(format="%.1f")})


main()
