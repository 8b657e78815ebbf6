"""Data: a curated dataset written by `ltxlab curate` (the filter funnel, probe failures, score
histograms with the thresholds used, kept and dropped examples, the finetune subset, provenance).

Reads DATASET/manifest.parquet, finetune.parquet and report.json through `clips.curate.manifest`
(pandas only) and decodes one frame per example with PyAV; no torch. Datasets come from
`ltxlab dashboard --data DIR [DIR ...]` (each a dataset or a folder searched for them) and from
the path typed on the page.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from clips.curate.manifest import FILTERS, ManifestError
from dashboard.charts import funnel_chart, reason_bars, score_histogram
from dashboard.curated import (
    MAX_EXAMPLES, SCORE_LABELS, SCORES, CuratedDataset, Summary, config_hash, data_paths, dataset_key, decode_thumbnails,
    discover, draw_box, example_caption, flatten, folder_key, has_crop, load_dataset, summarise, thumbnail_plan,
)  # fmt: skip


MAX_FAILURES_SHOWN = 20  # unusable files listed by name (the reason counts cover all of them)


@st.cache_data(show_spinner=False, max_entries=16)
def _discover(folders: tuple[str, ...], key: tuple) -> list[str]:
    return [str(p) for p in discover([Path(f) for f in folders])]


# cache_resource, not cache_data: the manifest can be millions of rows, and cache_data would
# unpickle a copy on every rerun. Nothing below mutates it.
@st.cache_resource(show_spinner=False, max_entries=4)
def _load(path: str, key: tuple) -> CuratedDataset:
    return load_dataset(path)


@st.cache_data(show_spinner=False, max_entries=8)
def _summary(path: str, key: tuple) -> Summary:
    return summarise(_load(path, key))


@st.cache_data(show_spinner=False, max_entries=32)
def _thumbnails(wanted: tuple) -> list[np.ndarray | str]:
    """Decoded thumbnails (or the sentence why not), cached on paths, mtimes and frame numbers."""
    return decode_thumbnails(wanted)


def _pick_dataset() -> str | None:
    """The dataset chosen from the typed path (or `?dataset=PATH`) and the --data folders; None after a
    sentence when there is none. A newly typed path selects the first dataset found under it."""
    given = data_paths()
    typed = st.text_input("Dataset folder, or a folder holding several", key="data-typed",
                          value=st.query_params.get("dataset", ""), placeholder="/path/to/DATASET",
                          help="A folder written by `ltxlab curate SRC --out DATASET`.").strip()  # fmt: skip
    where = Path(typed).expanduser() if typed else None
    folders = ([where] if where else []) + given
    found = _discover(tuple(str(f) for f in folders), folder_key(folders))
    under = [f for f in found if where and Path(f).is_relative_to(where.resolve())]
    if where and not where.exists():
        st.warning(f"{where} does not exist; type the folder `ltxlab curate --out` wrote.")
    elif where and not under:
        st.warning(f"No curated dataset (a folder with manifest.parquet) at or below {where}.")
    if not found:
        if not given and not where:
            st.info("No curated dataset given; start the dashboard with `ltxlab dashboard --data DIR` "
                    "(a folder written by `ltxlab curate SRC --out DIR`, or one holding several) or type a path above.")
        elif given:
            st.info(f"No curated dataset (a folder with manifest.parquet) in {', '.join(map(str, given))}; "
                    "run `ltxlab curate SRC --out DIR` first.")  # fmt: skip
        return None
    if under and st.session_state.get("_data_typed_seen") != typed:
        st.session_state["data-pick"] = under[0]  # follow what was just typed, once
    st.session_state["_data_typed_seen"] = typed
    if st.session_state.get("data-pick") not in found:
        st.session_state["data-pick"] = found[0]
    return st.selectbox("Dataset", found, key="data-pick")


def _headline(summary: Summary) -> None:
    for col, (label, value) in zip(st.columns(len(summary.counts)), summary.counts.items()):
        col.metric(label, value)


def _funnel(summary: Summary) -> None:
    st.subheader("Filters")
    table = summary.funnel
    left, right = st.columns([3, 2])
    left.altair_chart(funnel_chart(table), width="stretch")
    shown = table.assign(dropped_share=table["dropped"] / table["entering"].where(table["entering"] > 0))
    right.dataframe(shown, hide_index=True, key="data-funnel-table", column_config={
        "dropped_share": st.column_config.NumberColumn("share dropped", format="percent")})
    st.caption(f"Filters run in this order: {' → '.join(FILTERS)}. A clip is counted at the first filter that "
               "dropped it; the probe row counts unusable files (one manifest row each).")  # fmt: skip


def _probe_section(summary: Summary) -> None:
    st.subheader("Probe failures")
    failures = summary.failures
    if failures.empty:
        st.caption("Every source file passed the probe.")
        return
    left, right = st.columns([2, 3])
    left.altair_chart(reason_bars(summary.reasons), width="stretch")
    right.dataframe(summary.reasons, hide_index=True, key="data-reasons")
    shown = failures.head(MAX_FAILURES_SHOWN)
    st.table(shown.rename(columns={"source": "file"}).set_index("file"))  # wraps long sentences: nothing cut off
    if len(failures) > len(shown):
        st.caption(f"{len(shown)} of {len(failures)} unusable files listed; report.json's `failures` has all of them.")


def _scores(summary: Summary) -> None:
    st.subheader("Scores and thresholds")
    columns = list(SCORES)
    cells = [cell for _ in range(0, len(columns), 2) for cell in st.columns(2)]
    for cell, column in zip(cells, columns):
        filter_name, path, meaning = SCORES[column]
        counts = summary.histograms[column]
        with cell:
            if counts.empty:
                st.caption(f"{column}: no clip has this score (none reached the {filter_name} filter, or it was not computed).")
                continue
            st.altair_chart(score_histogram(counts, filter_name, SCORE_LABELS[column], summary.rules[column]), width="stretch")
            scored = int(counts["clips"].sum())
            if column in summary.limits:
                st.caption(f"{column}: threshold `{path}` = {summary.limits[column]:g} from report.json's config "
                           f"({meaning}); {scored} clips scored.")  # fmt: skip
            else:
                st.caption(f"{column}: report.json's config sets no `{path}`, so no threshold is drawn; {scored} clips scored.")


def _thumbnail(row, plan: tuple, images: dict, limits: dict) -> None:
    """One example: the middle frame (crop box drawn when it is the source), caption below."""
    thumb, is_source, why = plan
    image = images.get(thumb) if thumb else None
    if isinstance(image, str):
        why = image
    elif image is not None:
        if is_source and has_crop(row):
            image = draw_box(image, (row.crop_x0, row.crop_y0, row.crop_x1, row.crop_y1), (row.width, row.height))
        st.image(image, width="stretch")
    if why:
        st.info(why)
    st.caption(example_caption(row, limits))


def _examples(data: CuratedDataset, summary: Summary) -> None:
    st.subheader("Examples")
    count = st.slider("Examples per group", 1, MAX_EXAMPLES, 4, key="data-examples",
                      help="The same clips every time: a fixed hash order of clip ids.")  # fmt: skip
    st.caption("The middle frame of each clip, decoded from its source video; a red box is the black-bar crop.")
    groups = [(which, rows.head(count), summary.totals[which]) for which, rows in summary.examples.items()]
    plans = {row.clip_id: thumbnail_plan(data.path, row) for _, rows, _ in groups for row in rows.itertuples()}
    wanted = tuple(dict.fromkeys(thumb for thumb, _, _ in plans.values() if thumb))  # decoded together, in parallel
    images = dict(zip(wanted, _thumbnails(wanted)))
    for which, rows, total in groups:
        if not total:
            continue
        st.markdown(f"**{'Kept' if which == 'kept' else f'Dropped by {which}'}**: {len(rows)} of {total}")
        for col, row in zip(st.columns(count), rows.itertuples()):
            with col:
                _thumbnail(row, plans[row.clip_id], images, summary.limits)


def _finetune(summary: Summary) -> None:
    st.subheader("Finetune subset")
    s = summary.finetune
    lo, hi = s["aesthetic"]
    klo, khi = s["kept_aesthetic"]
    cols = st.columns(4)
    cols[0].metric("Clips", f"{s['clips']} of {s['kept']} kept")
    cols[1].metric("Source videos", s["sources"])
    cols[2].metric("Seconds of video", f"{s['seconds']:.1f}")
    cols[3].metric("Aesthetic range", f"{lo:.3g} – {hi:.3g}" if math.isfinite(lo) else "not scored")
    where = "finetune.parquet" if s["from_file"] else "the manifest's finetune column (finetune.parquet is missing)"
    kept = f"; the kept clips span {klo:.3g} – {khi:.3g}" if math.isfinite(klo) else ""
    st.caption(f"From {where}: the kept clips with the top aesthetic scores{kept}.")


def _provenance(data: CuratedDataset) -> None:
    st.subheader("Provenance")
    report = data.report
    if report is None:
        st.caption("No report.json, so the config, scorer and captioner are unknown.")
        return
    timing = report.get("timing") or {}
    wall = timing.get("wall_s")
    took = f"; {wall:.1f} s wall on {timing.get('workers', '?')} worker(s)" if isinstance(wall, (int, float)) else ""
    st.caption(f"Curated from `{report.get('source')}` at {report.get('created_at')}{took}.")
    rows = [("config hash", config_hash(data.config))] + flatten(report.get("provenance") or {})
    st.table(pd.DataFrame(rows, columns=["key", "value"]).set_index("key"))  # plain text: hashes get copied
    with st.expander("Config (every threshold)"):
        st.json(data.config, expanded=True)


def main() -> None:
    """Render the Data page (a function, so early exits are `return`, not st.stop)."""
    st.title("Data")
    chosen = _pick_dataset()
    if chosen is None:
        return
    try:
        data = _load(chosen, dataset_key(Path(chosen)))
    except ManifestError as exc:
        st.error(str(exc))
        return
    for note in data.notes:
        st.warning(note)
    for note in (data.report or {}).get("notes") or []:  # the pipeline's own remarks (e.g. no aesthetic scorer)
        st.info(str(note))
    if data.manifest.empty:
        st.info(f"The manifest of {data.path} has no rows: `ltxlab curate` found no video in its source.")
        return
    summary = _summary(chosen, dataset_key(Path(chosen)))
    _headline(summary)
    _funnel(summary)
    _probe_section(summary)
    _scores(summary)
    _examples(data, summary)
    _finetune(summary)
    _provenance(data)


main()
