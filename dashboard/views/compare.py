"""Compare: one held-out clip or prompt for 2-4 runs and the reference, played in sync; per-frame PSNR,
DWT sub-band PSNR and training curves of the same runs."""

from __future__ import annotations

import pandas as pd
import streamlit as st
import streamlit.components.v1 as components

from ablations.store import DWT_BANDS, StoreError
from dashboard.charts import band_bars, frame_psnr_chart
from dashboard.common import compare_selection, current_sweep, curves_panel, metric_availability, samples_of
from dashboard.labels import run_labels
from dashboard.video import decode_frames, per_frame_psnr, synced_player_html


@st.cache_data(show_spinner=False, max_entries=64)
def _frames(path: str, mtime: float):
    return decode_frames(path)


def _mtime(path: str) -> float:
    from pathlib import Path

    try:
        return Path(path).stat().st_mtime
    except OSError:
        return 0.0


def main() -> None:
    """Render the Compare page (a function, so early exits are `return`, not st.stop)."""
    st.title("Compare")
    data = current_sweep()
    if data is None:
        return
    metric_availability(data, set_table=False)
    runs = data.runs
    done_ids = runs.loc[runs["status"] == "done", "run_id"].tolist()
    if len(done_ids) < 2:
        st.info(f"Sweep {data.name} has {len(done_ids)} finished run(s); comparing needs at least two.")
        return
    every = run_labels(runs[runs["status"] == "done"], data.axes)  # the picker: what tells all finished runs apart
    preset = [r for r in compare_selection() if r in done_ids] or done_ids[:2]
    chosen = st.multiselect(
        "Runs (2-4; the Runs page's selection is preselected)", done_ids, default=preset, max_selections=4,
        format_func=lambda r: f"{every.get(r, '')} ({r})", key=f"cmp-runs:{data.name}",
    )  # fmt: skip
    st.session_state["compare_runs"] = chosen
    if len(chosen) < 2:
        st.info("Pick at least two runs to compare.")
        return
    # captions and legends name each chosen run by what differs between the chosen runs only
    label = run_labels(runs[runs["run_id"].isin(chosen)], data.axes)

    # --- the same item (task + prompt_id) across the chosen runs
    try:
        samples = {r: {(s["task"], s["prompt_id"]): s for s in samples_of(data, r)} for r in chosen}
    except StoreError as exc:
        st.error(str(exc))
        samples = {}
    common = set.intersection(*(set(s) for s in samples.values())) if samples else set()
    st.subheader("Samples")
    if not common:
        st.info("The chosen runs share no sample (same task and prompt id); pick runs that were sampled, or wait for the sample stage.")
        item = None
    else:
        items = sorted(common)
        first = samples[chosen[0]]
        item = st.selectbox(
            "Item", items, key=f"cmp-item:{data.name}",
            format_func=lambda k: f"{k[0]} {k[1]}" + (f": {first[k].get('text')}" if first[k].get("text") else ""),
        )  # fmt: skip
    if item is not None:
        rows = {r: samples[r][item] for r in chosen}
        reference = next((s.get("reference") for s in rows.values() if s.get("reference")), None)
        videos = ([("reference", reference)] if reference else []) + [(label[r], rows[r]["path"]) for r in chosen]
        missing = [cap for cap, p in videos if not _mtime(p)]
        if missing:
            st.warning(f"Sample file(s) missing on disk for {', '.join(missing)}; the run may still be writing them.")
        else:
            fps = rows[chosen[0]].get("fps")
            if rows[chosen[0]].get("text"):
                st.markdown(f"Prompt: *{rows[chosen[0]]['text']}*")
            first_frames, _ = _frames(videos[0][1], _mtime(videos[0][1]))
            aspect = first_frames.shape[2] / first_frames.shape[1]  # width / height
            # side by side in about 880 px, never taller than 360 px
            video_height = int(min(360, 880 / len(videos) / aspect))
            player = synced_player_html(videos, height=video_height)
            if hasattr(st, "iframe"):  # Streamlit >= 1.52; components.html is deprecated there
                st.iframe(player, height=video_height + 80)
            else:
                components.html(player, height=video_height + 80)
            st.caption(f"Played at the files' native frame rate ({fps} fps); the first video drives the others.")
            if reference:
                ref_frames, _ = _frames(reference, _mtime(reference))
                curves = []
                for r in chosen:
                    frames, _ = _frames(rows[r]["path"], _mtime(rows[r]["path"]))
                    try:
                        psnr = per_frame_psnr(frames, ref_frames)
                    except ValueError as exc:
                        st.warning(f"{r}: {exc}")
                        continue
                    curves.append(pd.DataFrame({"frame": range(len(psnr)), "psnr": psnr, "run": label[r]}))
                if curves:
                    st.markdown("Per-frame PSNR against the reference (decoded mp4s)")
                    st.altair_chart(frame_psnr_chart(pd.concat(curves, ignore_index=True)), width="stretch")
            else:
                st.caption("No reference for this item (generated from a prompt), so there is no per-frame PSNR.")

    # --- DWT sub-band PSNR from metrics.parquet (mean over held-out clips, or this clip for recon items)
    st.subheader("DWT sub-band PSNR")
    metrics = data.metrics[data.metrics["run_id"].isin(chosen) & data.metrics["metric"].str.startswith("dwt_psnr_")]
    clip_id = rows[chosen[0]].get("clip_id") if item is not None else None
    if clip_id and (metrics["clip_id"] == clip_id).any():
        metrics = metrics[metrics["clip_id"] == clip_id]
        scope = f"clip {clip_id}"
    else:
        scope = "mean over held-out clips"
    if metrics.empty:
        st.info("No dwt_psnr_<band> metrics for these runs yet.")
    else:
        bands = metrics.groupby(["run_id", "metric"])["value"].mean().reset_index()
        bands["band"] = bands["metric"].str.removeprefix("dwt_psnr_").str.upper()
        bands = bands.assign(run=bands["run_id"].map(label))
        bands["band"] = pd.Categorical(bands["band"], categories=[b for b in DWT_BANDS if b in set(bands["band"])], ordered=True)
        st.caption(f"{scope}; band letters are time, height, width (L = low-pass, H = high-pass)")
        st.altair_chart(band_bars(bands.sort_values("band")), width="stretch")

    # --- training curves overlaid
    st.subheader("Training curves")
    curves_panel(data, chosen, label, key=f"cmp:{data.name}")

main()
