"""Shared plumbing of the dashboard pages: paths, the sweep picker, cached loaders, messages.

Loaders are `st.cache_data` functions whose arguments include the files' modification
times, so a rerun (browser refresh or any widget change) after the runner writes new
results misses the cache and reads the new files, without restarting the server.
No torch, no ray: the dashboard reads the results store and the survey database only.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import streamlit as st

from ablations.store import StoreError, SweepData, list_sweeps, load_sweep, run_curve, run_samples, sweep_mtimes
from dashboard.charts import curves_chart
from dashboard.live import live_curve, live_files
from evaluation.stats import EffectReport, factorial_effects

RESULTS_ENV = "LTXLAB_RESULTS"  # results root (set by `ltxlab dashboard --results`)
SURVEY_DB_ENV = "LTXLAB_SURVEY_DB"  # survey database path or URL (`--survey-db`)
COST_COLUMNS = ["cost.params", "cost.dit_params", "cost.tokens", "cost.flops_run", "cost.flops_ref", "cost.latency_s",
                "cost.h100_estimate_s", "cost.rope_max_rad_t", "cost.rope_max_rad_h", "cost.rope_max_rad_w"]  # fmt: skip
COST_LABELS = {
    "cost.params": "parameters", "cost.tokens": "tokens per sample", "cost.flops_run": "FLOPs (run shape)",
    "cost.flops_ref": "FLOPs at 121x512x768", "cost.latency_s": "measured latency (s)",
    "cost.h100_estimate_s": "H100 estimate at 121x512x768 (s)", "cost.dit_params": "DiT parameters",
    "cost.rope_max_rad_t": "RoPE max turn, time (rad)", "cost.rope_max_rad_h": "RoPE max turn, height (rad)",
    "cost.rope_max_rad_w": "RoPE max turn, width (rad)",
}  # fmt: skip


def results_root() -> Path:
    return Path(os.environ.get(RESULTS_ENV, "results")).expanduser()


def survey_db() -> str | None:
    return os.environ.get(SURVEY_DB_ENV) or None


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime_ns / 1e9
    except OSError:
        return 0.0


def root_mtime(root: Path) -> tuple[float, ...]:
    """Cache key for the sweep list: the root's and each sweep's files' mtimes."""
    keys = [_mtime(root)]
    if root.is_dir():
        for child in sorted(root.iterdir()):
            if child.is_dir():
                keys += [_mtime(child), _mtime(child / "sweep.json"), _mtime(child / "runs.parquet")]
    return tuple(keys)


@st.cache_data(show_spinner=False, max_entries=8)
def cached_sweeps(root: str, _key: tuple) -> pd.DataFrame:
    return list_sweeps(root)


# `mtimes` is hashed (not `_`-prefixed): a changed file means a new cache entry.
@st.cache_data(show_spinner=False, max_entries=8)
def cached_sweep(root: str, sweep: str, mtimes: tuple) -> SweepData:
    return load_sweep(root, sweep)


@st.cache_data(show_spinner=False, max_entries=16)
def cached_effects(root: str, sweep: str, mtimes: tuple, split: str | None, metrics: tuple[str, ...],
                   correction: str = "holm") -> EffectReport:
    """Effects of `metrics` (the family the correction adjusts over, as `ltxlab report --metrics`)."""
    data = load_sweep(root, sweep)
    hib = {m: data.higher_is_better(m) for m in data.metric_specs} | {m: data.higher_is_better(m) for m in metrics}
    return factorial_effects(
        data.metrics, data.runs, data.axes, axis_levels=data.axis_levels, higher_is_better=hib,
        metric_names=list(metrics) or None, split=split, correction=correction,
        replicate_baseline=data.sweep.get("replicate"),
    )  # fmt: skip


@st.cache_data(show_spinner=False, max_entries=64)
def cached_samples(root: str, sweep: str, run_id: str, mtime: float) -> list[dict]:
    return run_samples(root, sweep, run_id)


@st.cache_data(show_spinner=False, max_entries=64)
def cached_curve(root: str, sweep: str, run_id: str, mtime: float) -> pd.DataFrame:
    return run_curve(root, sweep, run_id)


def samples_of(data: SweepData, run_id: str) -> list[dict]:
    """Sample index rows of a run (cached on index.jsonl's mtime); StoreError shown by caller."""
    index = data.path / "runs" / run_id / "samples" / "index.jsonl"
    return cached_samples(str(data.path.parent), data.name, run_id, _mtime(index))


def curve_of(data: SweepData, run_id: str) -> pd.DataFrame:
    path = data.path / "runs" / run_id / "curve.parquet"
    return cached_curve(str(data.path.parent), data.name, run_id, _mtime(path))


@st.cache_data(show_spinner=False, max_entries=64)
def cached_live_curve(sweep_path: str, run_id: str, mtimes: tuple) -> pd.DataFrame:
    return live_curve(Path(sweep_path), run_id)


def curve_so_far(data: SweepData, run_id: str) -> pd.DataFrame:
    """The run's curve.parquet once it has one, else its live curve from the stage folders (dashboard.live),
    cached on those files' mtimes so a rerun after the next training step reads the new rows."""
    curve = curve_of(data, run_id)
    if len(curve):
        return curve
    files = live_files(data.path, run_id)
    return cached_live_curve(str(data.path), run_id, tuple(_mtime(f) for f in files))


SMOOTHING_HELP = ("Exponential moving average of each curve, as TensorBoard's (debiased): 0 is off, 0.99 is very "
                  "smooth. The raw curve stays drawn faintly.")  # fmt: skip


def curves_panel(data: SweepData, run_ids: list[str], labels: dict[str, str], key: str) -> None:
    """Training curves of `run_ids` (finished or still training) overlaid, named by `labels`, with a
    smoothing slider (off by default)."""
    try:
        curves = [curve_so_far(data, r).assign(run=labels.get(r, r)) for r in run_ids]
    except StoreError as exc:
        st.error(str(exc))
        return
    curves = [c for c in curves if len(c)]
    if not curves:
        st.info("None of these runs has a training curve yet (it appears once a training stage has taken a step).")
        return
    smoothing = st.slider("Smoothing", 0.0, 0.99, 0.0, 0.01, key=f"smooth:{key}", help=SMOOTHING_HELP)
    st.altair_chart(curves_chart(pd.concat(curves, ignore_index=True), smoothing))


def sweep_table() -> pd.DataFrame:
    root = results_root()
    return cached_sweeps(str(root), root_mtime(root))


LIVE_REFRESH_S = 5  # seconds between the Runs page's curve refreshes while a run is training


def reload_sweep(name: str) -> SweepData | None:
    """The sweep `name` read again (cached on its files' mtimes), or None after one sentence: for fragments
    that rerun on their own and must see runs that finished since the page ran."""
    root = results_root()
    try:
        return cached_sweep(str(root), name, sweep_mtimes(root, name))
    except StoreError as exc:
        st.error(str(exc))
        return None


def sidebar() -> None:
    """Results root and sweep picker, shown on every page; the choice lives in st.session_state["_sweep_pick"]."""
    root = results_root()
    st.sidebar.caption(f"Results: `{root}`")
    table = sweep_table()
    names = table["sweep"].tolist()
    if not names:
        return
    wanted = st.query_params.get("sweep")
    if wanted in names and st.session_state.get("_sweep_from_url") != wanted:
        st.session_state["_sweep_pick"] = wanted  # a deep link (?sweep=NAME) wins once
        st.session_state["_sweep_from_url"] = wanted
    if st.session_state.get("_sweep_pick") not in names:
        st.session_state["_sweep_pick"] = names[0]
    st.sidebar.selectbox("Sweep", names, key="_sweep_pick")
    if st.sidebar.button("Reload results", help="Reads any files written since the last view."):
        st.cache_data.clear()


def chosen_sweep() -> str | None:
    """The sweep picked in the sidebar, else the newest; None when the root has no sweeps.

    Resolved here rather than read from the sidebar's run, so a page is right even when
    it runs on its own (AppTest.switch_page runs only the page script).
    """
    names = sweep_table()["sweep"].tolist()
    picked = st.session_state.get("_sweep_pick")
    return picked if picked in names else (names[0] if names else None)


def current_sweep() -> SweepData | None:
    """The chosen sweep's data, or None after showing a one-sentence message in the page."""
    root = results_root()
    name = chosen_sweep()
    if not name:
        if not root.is_dir():
            st.info(f"The results folder {root} does not exist yet; run `ltxlab sweep demo --results {root}` to make a sweep.")
        else:
            st.info(f"No sweeps in {root} yet; run `ltxlab sweep demo --results {root}` to make one.")
        return None
    try:
        data = cached_sweep(str(root), name, sweep_mtimes(root, name))
    except StoreError as exc:
        st.error(str(exc))
        return None
    for note in data.notes:
        st.info(note)
    return data


def runs_with_axes(data: SweepData) -> list[str]:
    """Columns to show for a run table: id, axes, seed, status, headline metrics, wall time, cost, failure."""
    runs = data.runs
    headline = [m for m in data.headline_metrics if m in runs.columns]
    cols = ["run_id", "variant", *data.axes, "seed", "status", *headline, "wall_time_s", "cost.h100_estimate_s", "failure_reason"]
    return [c for c in dict.fromkeys(cols) if c in runs.columns]


def axis_label(value) -> str:
    """Axis levels as text for widgets and chart colours (0.0 and 0 read the same)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def compare_selection() -> list[str]:
    """Run ids chosen on the Runs page for the Compare page (kept outside widget state)."""
    return list(st.session_state.get("compare_runs", []))


@st.cache_data(show_spinner=False, max_entries=8)
def cached_evaluation(root: str, sweep: str, mtimes: tuple) -> dict:
    """Set-level metrics and not-applicable sentences from the done runs' manifests (`ablations.collect`)."""
    from ablations.collect import sweep_evaluation

    data = load_sweep(root, sweep)
    done = data.runs[data.runs["status"] == "done"] if "status" in data.runs else data.runs
    return {**sweep_evaluation(root, sweep, done), "done_runs": len(done)}


def metric_availability(data: SweepData, *, set_table: bool = True) -> None:
    """Set-level metrics (rFVD, FVD) with their protocol, and, for every metric without a value, the
    sentence saying which weight file (or what else) it needs; shown on every page that shows metrics."""
    from ablations.collect import not_applicable_lines

    root = results_root()
    evaluation = cached_evaluation(str(root), data.name, sweep_mtimes(root, data.name))
    sets = evaluation["set_metrics"]
    valued = sets[sets["value"].notna()] if len(sets) else sets
    if set_table and len(valued):
        st.subheader("Set-level metrics")
        st.caption("One value per run from all its held-out clips (rFVD: reconstructions vs originals; FVD: generated "
                   "videos vs held-out scenes), StyleGAN-V's I3D protocol: first clip_frames frames at 224x224, float64 "
                   "statistics. n=1 per run, so effects on them get their intervals from seed replicates alone.")  # fmt: skip
        shown = valued.assign(detector_sha256=valued["detector_sha256"].astype(str).str[:12])
        st.dataframe(shown.drop(columns=["not_applicable"]), hide_index=True,
                     column_config={"value": st.column_config.NumberColumn(format="%.4g")})
    lines = not_applicable_lines(evaluation["not_applicable"], evaluation["done_runs"])
    if lines:
        st.warning("Metrics without a value (n/a), and what each needs:\n\n" + "\n".join(f"- {line}" for line in lines))
