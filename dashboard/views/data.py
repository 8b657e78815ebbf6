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
from clips.errors import ClipError
from dashboard.charts import funnel_chart, reason_bars, score_histogram
from dashboard.curated import (
    SCORE_LABELS, SCORES, CuratedDataset, config_hash, data_paths, dataset_key, discover, draw_box, example_caption,
    examples, finetune_summary, flatten, folder_key, funnel, has_crop, load_dataset, middle_frame, probe_failures,
    reason_counts, score_frame, thresholds, thumbnail_source,
)  # fmt: skip


MAX_FAILURES_SHOWN = 20  # unusable files listed by name (the reason counts cover all of them)


@st.cache_data(show_spinner=False, max_entries=16)
def _discover(folders: tuple[str, ...], key: tuple) -> list[str]:
    return [str(p) for p in discover([Path(f) for f in folders])]


@st.cache_data(show_spinner=False, max_entries=8)
def _load(path: str, key: tuple) -> CuratedDataset:
    return load_dataset(path)


@st.cache_data(show_spinner=False, max_entries=256)
def _frame(path: str, mtime: float, frame: int) -> np.ndarray | str:
    """The decoded frame, or the one-sentence reason it could not be decoded (cached either way)."""
    try:
        return middle_frame(path, frame)
    except ClipError as exc:
        return f"no thumbnail: {exc}"


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


def _headline(data: CuratedDataset) -> None:
    m = data.manifest
    probe = m["dropped_by"] == "probe"
    cols = st.columns(5)
    cols[0].metric("Source files", int(m["source"].nunique()))
    cols[1].metric("Unusable files", int(probe.sum()))
    cols[2].metric("Candidate clips", int((~probe).sum()))
    cols[3].metric("Kept clips", int(m["keep"].sum()))
    cols[4].metric("Finetune subset", int(m["finetune"].sum()))


def _funnel(data: CuratedDataset) -> None:
    st.subheader("Filters")
    table = funnel(data.manifest)
    left, right = st.columns([3, 2])
    left.altair_chart(funnel_chart(table), width="stretch")
    shown = table.assign(dropped_share=table["dropped"] / table["entering"].where(table["entering"] > 0))
    right.dataframe(shown, hide_index=True, key="data-funnel-table", column_config={
        "dropped_share": st.column_config.NumberColumn("share dropped", format="percent")})
    st.caption(f"Filters run in this order: {' → '.join(FILTERS)}. A clip is counted at the first filter that "
               "dropped it; the probe row counts unusable files (one manifest row each).")  # fmt: skip


def _probe_section(data: CuratedDataset) -> None:
    st.subheader("Probe failures")
    failures = probe_failures(data.manifest)
    if failures.empty:
        st.caption("Every source file passed the probe.")
        return
    counts = reason_counts(failures)
    left, right = st.columns([2, 3])
    left.altair_chart(reason_bars(counts), width="stretch")
    right.dataframe(counts, hide_index=True, key="data-reasons")
    shown = failures.head(MAX_FAILURES_SHOWN)
    st.table(shown.rename(columns={"source": "file"}).set_index("file"))  # wraps long sentences: nothing cut off
    if len(failures) > len(shown):
        st.caption(f"{len(shown)} of {len(failures)} unusable files listed; report.json's `failures` has all of them.")


def _rules(data: CuratedDataset, column: str, limits: dict) -> list[tuple[float, str]]:
    rules = [(limits[column], f"{SCORES[column][1]} = {limits[column]:g}")] if column in limits else []
    if column == "aesthetic":
        low = finetune_summary(data)["aesthetic"][0]
        if math.isfinite(low):
            rules.append((low, f"finetune ≥ {low:.3g}"))
    return rules


def _scores(data: CuratedDataset) -> None:
    st.subheader("Scores and thresholds")
    limits = thresholds(data.config)
    columns = list(SCORES)
    cells = [cell for _ in range(0, len(columns), 2) for cell in st.columns(2)]
    for cell, column in zip(cells, columns):
        filter_name, path, meaning = SCORES[column]
        with cell:
            scores = score_frame(data.manifest, column)
            if scores.empty:
                st.caption(f"{column}: no clip has this score (none reached the {filter_name} filter, or it was not computed).")
                continue
            st.altair_chart(score_histogram(scores, filter_name, SCORE_LABELS[column], _rules(data, column, limits)),
                            width="stretch")  # fmt: skip
            if column in limits:
                st.caption(f"{column}: threshold `{path}` = {limits[column]:g} from report.json's config "
                           f"({meaning}); {len(scores)} clips scored.")  # fmt: skip
            else:
                st.caption(f"{column}: report.json's config sets no `{path}`, so no threshold is drawn; "
                           f"{len(scores)} clips scored.")  # fmt: skip


def _thumbnail(data: CuratedDataset, row, limits: dict) -> None:
    """One example: the middle frame (crop box drawn when it is the source), caption below."""
    path, is_source, why = thumbnail_source(data.path, row)
    if path is not None:
        mid = (row.start_frame + row.end_frame) // 2 if is_source else (row.end_frame - row.start_frame) // 2
        image = _frame(str(path), path.stat().st_mtime, int(mid))
        if isinstance(image, str):
            why = image
        else:
            if is_source and has_crop(row):
                image = draw_box(image, (row.crop_x0, row.crop_y0, row.crop_x1, row.crop_y1), (row.width, row.height))
            st.image(image, width="stretch")
    if why:
        st.info(why)
    st.caption(example_caption(row, limits))


def _examples(data: CuratedDataset) -> None:
    st.subheader("Examples")
    count = st.slider("Examples per group", 1, 8, 4, key="data-examples",
                      help="The same clips every time: a fixed hash order of clip ids.")  # fmt: skip
    limits = thresholds(data.config)
    st.caption("The middle frame of each clip, decoded from its source video; a red box is the black-bar crop.")
    for which in ("kept", *FILTERS[1:]):
        rows = examples(data.manifest, which, count)
        total = int(data.manifest["keep"].sum()) if which == "kept" else int((data.manifest["dropped_by"] == which).sum())
        if not total:
            continue
        st.markdown(f"**{'Kept' if which == 'kept' else f'Dropped by {which}'}**: {len(rows)} of {total}")
        for col, row in zip(st.columns(count), rows.itertuples()):
            with col:
                _thumbnail(data, row, limits)


def _finetune(data: CuratedDataset) -> None:
    st.subheader("Finetune subset")
    s = finetune_summary(data)
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
    st.caption(f"Curated from `{report.get('source')}` at {report.get('created_at')}; "
               f"{timing.get('wall_s', math.nan):.1f} s wall on {timing.get('workers', '?')} worker(s).")  # fmt: skip
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
    _headline(data)
    _funnel(data)
    _probe_section(data)
    _scores(data)
    _examples(data)
    _finetune(data)
    _provenance(data)


main()
