"""Dashboard pages rendered with streamlit.testing.v1.AppTest on a generated results store and survey database.

Each test checks that a page runs without exception, shows the expected tables and charts,
that filters change what is shown, and that the awkward stores (empty root, failed runs,
runs in flight, a corrupt parquet) give one clear message while the other pages keep working.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from ablations.store import SweepStore

REPO = Path(__file__).resolve().parents[1]
APP = str(REPO / "dashboard" / "app.py")
PAGES = ["runs", "effects", "compare", "survey", "cost"]


def _load_make_store():  # noqa: ANN202 - the module
    spec = importlib.util.spec_from_file_location("make_store", REPO / "benchmarks" / "make_store.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_survey_db(folder: Path, systems: tuple[str, ...] = ("ltx", "conventional", "baseline"), raters: int = 6) -> Path:
    """A SQLite survey database with one study and votes cast through survey.store.Store.

    Raters prefer systems in the order given (first best) with probability 0.8; the last
    rater answers at random and picks the corrupted side of gold pairs, so it gets flagged.
    """
    from sqlalchemy import select

    from survey import db as tables
    from survey.build import StudyOptions, collect_from_dir, create_study
    from survey.examples import write_example_dir
    from survey.store import Store

    folder = Path(folder)
    source = write_example_dir(folder / "videos", list(systems), n_prompts=3)
    db_path = folder / "survey.db"
    engine = tables.make_engine(db_path)
    # in-process raters: no media is served, so the delivery gate and the per-client rater cap are off
    options = StudyOptions(pairs_per_rater=9, gold_per_rater=2, gold_items=2, min_watch_fraction=0.0, seed=0,
                           require_delivery=False, max_raters_per_client=None)
    summary = create_study(engine, "demo-study", collect_from_dir(source), folder / "media", options)
    store = Store(engine)
    state = store.study(summary["public_id"])
    strength = {name: len(systems) - k for k, name in enumerate(systems)}
    rng = np.random.default_rng(0)
    for r in range(raters):
        rid = store.rater_id(state, store.start(state, f"rater-{r}", "cookie")["rater"])
        pair = store.next_pair(state, rid)
        while not pair["done"]:
            with engine.connect() as conn:
                row = conn.execute(
                    select(tables.assignments.c.left_is_a, tables.comparisons.c.system_a, tables.comparisons.c.system_b,
                           tables.comparisons.c.is_gold)
                    .join(tables.comparisons, tables.comparisons.c.id == tables.assignments.c.comparison_id)
                    .where(tables.assignments.c.id == pair["assignment"])
                ).one()  # fmt: skip
                names = dict(conn.execute(select(tables.systems.c.id, tables.systems.c.name)).all())
            a_side = "left" if row.left_is_a else "right"
            b_side = "right" if row.left_is_a else "left"
            if r == raters - 1:  # the careless rater: random, and fooled by every gold pair
                choice = b_side if row.is_gold else str(rng.choice(["left", "right", "tie"]))
            elif row.is_gold:
                choice = a_side
            else:
                a_better = strength[names[row.system_a]] > strength[names[row.system_b]]
                choice = a_side if (rng.random() < 0.8) == a_better else b_side
            pair = store.vote(state, rid, {"assignment": pair["assignment"], "token": pair["token"], "answers": [choice], "elapsed_ms": 1500})["next"]
    engine.dispose()
    return db_path


@pytest.fixture(scope="module")
def store_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("results")
    _load_make_store().make_store(root, "synthetic", "small")
    return root


@pytest.fixture(scope="module")
def survey_db(tmp_path_factory) -> Path | None:
    try:
        return make_survey_db(tmp_path_factory.mktemp("survey"))
    except ImportError as exc:  # survey/ not in this checkout
        pytest.skip(f"survey package unavailable: {exc}")


@pytest.fixture
def app(monkeypatch, store_root):  # noqa: ANN201 - a factory
    def make(root: Path = store_root, survey: Path | None = None) -> AppTest:
        monkeypatch.setenv("LTXLAB_RESULTS", str(root))
        if survey:
            monkeypatch.setenv("LTXLAB_SURVEY_DB", str(survey))
        else:
            monkeypatch.delenv("LTXLAB_SURVEY_DB", raising=False)
        at = AppTest.from_file(APP, default_timeout=90)
        at.run()
        return at

    return make


def _open(at: AppTest, page: str) -> AppTest:
    at.switch_page(f"views/{page}.py")
    return at.run()


def _charts(at: AppTest) -> list:
    return list(at.get("vega_lite_chart"))


def _texts(elements) -> list[str]:
    return [str(e.value) for e in elements]


def test_sweeps_page_lists_the_sweep(app):
    at = app()
    assert not at.exception
    table = at.dataframe[0].value
    row = table.set_index("sweep").loc["synthetic"]
    assert (row.runs, row.done, row.failed, row.running, row.pending) == (16, 12, 2, 1, 1)
    assert row.git_commit == "0123abcd"
    assert at.sidebar.selectbox[0].value == "synthetic"


def test_runs_page_table_filters_grouping_failures(app):
    at = _open(app(), "runs")
    assert not at.exception
    table = at.dataframe[0].value
    assert len(table) == 16 and {"vae.kind", "loss.dwt", "dit.attention", "psnr", "failure_reason"} <= set(table.columns)
    assert any("2 run(s) failed" in w for w in _texts(at.warning))
    assert any("still pending or running" in i for i in _texts(at.info))
    reasons = at.table[0].value
    assert len(reasons) == 2 and reasons["failure_reason"].str.contains("NaN").all()
    assert len(_charts(at)) == 1  # parallel coordinates
    grouped = at.dataframe[1].value
    assert list(grouped["vae.kind"]) == ["ltx", "conventional"] and grouped["runs"].sum() == 12
    # filter on an axis: only ltx runs remain
    at.multiselect(key="filter:synthetic:vae.kind").set_value(["ltx"]).run()
    filtered = at.dataframe[0].value
    assert len(filtered) == 8 and set(filtered["vae.kind"]) == {"ltx"}
    # status filter: only failed
    at.multiselect(key="filter:synthetic:status").set_value(["failed"]).run()
    assert set(at.dataframe[0].value["status"]) == {"failed"}
    # grouping by two axes
    at.multiselect(key="filter:synthetic:status").set_value([]).run()
    at.multiselect(key="group:synthetic").set_value(["vae.kind", "loss.dwt"]).run()
    grouped = at.dataframe[1].value
    assert {"vae.kind", "loss.dwt", "psnr mean", "psnr std"} <= set(grouped.columns) and len(grouped) == 2  # ltx x 2 dwt levels


def test_runs_selection_carries_to_compare(app):
    at = _open(app(), "runs")
    done = at.dataframe[0].value.query("status == 'done'")["run_id"].tolist()
    picked = [done[0], done[5], done[-1]]
    at.multiselect(key="compare-pick:synthetic").set_value(picked).run()
    assert at.session_state["compare_runs"] == picked
    at = _open(at, "compare")
    assert not at.exception
    assert at.multiselect(key="cmp-runs:synthetic").value == picked


def test_effects_page_effects_interactions_pareto(app):
    at = _open(app(), "effects")
    assert not at.exception
    captions = " ".join(_texts(at.caption))
    assert "12 done runs over 2 seed block(s) x 2 source video(s)" in captions and "2 failed" in captions
    main = at.dataframe[0].value  # psnr tab
    assert set(main["axis"]) == {"vae.kind", "loss.dwt", "dit.attention"}
    assert {"p_value", "p_adjusted", "mde80", "n_seeds", "n_sources", "status"} <= set(main.columns)
    vae = main.set_index("axis").loc["vae.kind"]
    # the generator plants ltx = +1 dB; 2 seeds x 2 sources cannot resolve it, and the page says so
    assert vae.estimate < -0.5 and vae.n_seeds == 2 and vae.n_sources == 2
    assert vae.verdict.startswith("no significant difference") and "would likely be missed" in vae.verdict
    inter = at.dataframe[1].value
    assert len(inter) == 3 and "verdict" in inter.columns
    assert len(_charts(at)) >= 3  # effect bars per metric tab + quality/cost scatter
    front = at.dataframe[-1].value
    assert len(front) >= 1 and "variant" in front.columns
    # choosing another metric adds a tab with its own table
    at.multiselect(key="eff-metrics:synthetic").set_value(["psnr", "lpips"]).run()
    assert not at.exception and len(at.tabs) == 2
    lp = at.dataframe[2].value.set_index("axis").loc["vae.kind"]
    assert lp.estimate > 0 and lp.status == "estimated"  # lower lpips is better: conventional's is higher


def test_effects_page_shows_the_aa_check_and_one_seed_refusal(app, tmp_path):
    make_store = _load_make_store()
    make_store.make_store(tmp_path / "aa", "aa", "small", videos=False, replicate=True)
    at = _open(app(tmp_path / "aa"), "effects")
    assert not at.exception
    markdown = " ".join(_texts(at.markdown))
    assert "**A/A check** (baseline vs its replicate, disjoint seeds)" in markdown
    assert "between two copies of one config" in markdown or "A/A check FAILED" in markdown
    # the same store cut to one seed: no verdict anywhere, and the page says why
    runs = pd.read_parquet(tmp_path / "aa" / "aa" / "runs.parquet")
    runs.loc[runs["block"] == 1, "status"] = "failed"
    runs.to_parquet(tmp_path / "aa" / "aa" / "runs.parquet")
    at = _open(app(tmp_path / "aa"), "effects")
    assert not at.exception
    assert any("Every variant has one seed" in t for t in _texts(at.info))
    main = at.dataframe[0].value
    assert (main["status"] == "one_seed").all() and main["verdict"].str.startswith("one seed per variant").all()


def test_compare_page_videos_psnr_bands_curves(app):
    at = _open(app(), "compare")
    assert not at.exception
    chosen = at.multiselect(key="cmp-runs:synthetic").value
    assert len(chosen) == 2
    items = at.selectbox(key="cmp-item:synthetic").options
    assert any("recon" in o for o in items) and any("t2v" in o for o in items)
    iframes = at.get("iframe")
    html = iframes[0].proto.srcdoc if iframes else ""
    assert html.count("<video") == 3 and "data:video/mp4;base64," in html  # reference + 2 runs
    assert len(_charts(at)) == 3  # per-frame PSNR, DWT bands, curves
    at.selectbox(key="cmp-item:synthetic").set_value(("t2v", "p003")).run()
    assert not at.exception
    assert any("no per-frame PSNR" in c for c in _texts(at.caption))
    assert len(_charts(at)) == 2


def test_cost_page_assumptions(app):
    at = _open(app(), "cost")
    assert not at.exception
    table = at.dataframe[0].value
    assert len(table) == 8 and "H100 estimate at 121x512x768 (s)" in table.columns
    assumptions = at.table[0].value
    assert "h100_peak_tflops_bf16" in assumptions["assumption"].tolist()
    assert any("989 TFLOP/s x 0.4" in c for c in _texts(at.caption))
    assert len(_charts(at)) == 1


def test_survey_page_with_votes(app, survey_db):
    at = _open(app(survey=survey_db), "survey")
    assert not at.exception, at.exception
    assert at.selectbox(key="survey-study").value == "demo-study"
    assert len(_charts(at)) == 3  # win-rate heatmap, BT ratings, votes over time
    bt = at.dataframe[0].value
    assert bt.iloc[0]["system"] == "ltx" and set(bt["system"]) == {"ltx", "conventional", "baseline"}
    assert any("flagged" in w for w in _texts(at.warning))
    raters = at.dataframe[-1].value
    assert raters["flagged"].sum() == 1
    # pairwise verdicts are corrected over the matrix and said in words
    assert any("correction over the 3 pair(s)" in c for c in _texts(at.caption))
    # a folder study's systems are fixed models: the caption says its claims are about them, not their configs
    assert any("clustered by rater, prompt" in c and "fixed models" in c for c in _texts(at.caption))
    assert any("significant difference" in m or " beats " in m for m in _texts(at.markdown))
    used_before = " ".join(_texts(at.caption))
    at.checkbox(key="survey-flagged").check().run()
    assert not at.exception and " ".join(_texts(at.caption)) != used_before


def test_survey_page_without_database(app):
    at = _open(app(), "survey")
    assert not at.exception and any("No survey database given" in i for i in _texts(at.info))


def test_empty_results_root(app, tmp_path):
    at = app(root=tmp_path / "nothing")
    assert not at.exception and any("does not exist yet" in i for i in _texts(at.info))
    for page in PAGES:
        _open(at, page)
        assert not at.exception, page
        assert at.info, page
    empty = tmp_path / "empty"
    empty.mkdir()
    at = app(root=empty)
    assert any("No sweeps in" in i for i in _texts(at.info))


def test_corrupt_parquet_shows_error_and_rest_works(app, tmp_path):
    root = tmp_path / "results"
    make = _load_make_store()
    make.make_store(root, "good", "small", videos=False)
    bad = make.make_store(root, "bad", "small", videos=False)
    (bad / "metrics.parquet").write_bytes(b"PAR1 truncated")
    SweepStore(root, "bad").update_sweep_json(started_at="2026-11-25T00:00:00Z")  # newest: picked by default
    at = app(root=root)
    assert at.sidebar.selectbox[0].value == "bad"
    for page in ["runs", "effects", "cost"]:
        _open(at, page)
        assert not at.exception, page
        errors = _texts(at.error)
        assert len(errors) == 1 and "metrics.parquet" in errors[0] and "\n" not in errors[0]
    # AppTest drops the sidebar tree after switch_page, so pick the sweep through its widget key
    at.session_state["_sweep_pick"] = "good"
    at.run()
    assert not at.exception and not at.error and len(at.dataframe) >= 1


def test_in_flight_sweep_without_metrics(app, tmp_path):
    store = SweepStore(tmp_path, "fresh")
    store.write_sweep_json({"sweep": "fresh", "axes": {"vae.kind": ["ltx", "conventional"]}, "started_at": "2026-11-24T00:00:00Z"})
    store.upsert_run({"run_id": "a", "variant": "vae.kind=ltx", "seed": 0, "vae.kind": "ltx", "status": "running"})
    store.upsert_run({"run_id": "b", "variant": "vae.kind=conventional", "seed": 0, "vae.kind": "conventional", "status": "pending"})
    at = app(root=tmp_path)
    for page in PAGES:
        _open(at, page)
        assert not at.exception, page
    _open(at, "effects")
    assert any("no metrics yet" in i for i in _texts(at.info))
    _open(at, "runs")
    assert len(at.dataframe[0].value) == 2


def test_new_results_appear_without_restart(app, tmp_path):
    make = _load_make_store()
    root = tmp_path / "results"
    make.make_store(root, "s1", "small", videos=False)
    at = _open(app(root=root), "runs")
    assert len(at.dataframe[0].value) == 16
    SweepStore(root, "s1").upsert_run({"run_id": "late", "variant": "x", "seed": 0, "status": "running"})
    at.run()  # a browser refresh is a rerun: the changed mtime misses the cache
    assert len(at.dataframe[0].value) == 17


def test_dashboard_imports_no_torch_or_ray():
    code = (
        "import sys, dashboard.common, dashboard.charts, dashboard.video, evaluation.stats, ablations.store;"
        "print(json.dumps(sorted(m for m in ('torch', 'ray') if m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", "import json;" + code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == []


def test_dashboard_command_builds_streamlit_call(tmp_path):
    from ablations.commands.dashboard import dashboard_env, streamlit_command

    cmd = streamlit_command(Path(APP), "127.0.0.1", 8765)
    assert cmd[1:4] == ["-m", "streamlit", "run"] and "--server.headless" in cmd and cmd[cmd.index("--server.port") + 1] == "8765"
    assert cmd[cmd.index("--server.address") + 1] == "127.0.0.1"
    env = dashboard_env(str(tmp_path), "sqlite:///x.db")
    assert env["LTXLAB_RESULTS"] == str(tmp_path.resolve()) and env["LTXLAB_SURVEY_DB"] == "sqlite:///x.db"
    out = subprocess.run([str(Path(sys.executable).with_name("ltxlab")), "dashboard", "--survey-db", str(tmp_path / "no.db")],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert out.returncode == 2 and "does not exist" in out.stderr


def test_video_helpers(tmp_path):
    from dashboard.video import decode_frames, per_frame_psnr, synced_player_html

    make = _load_make_store()
    ref = make.reference_frames(0)
    path = make.write_mp4(tmp_path / "a.mp4", ref)
    frames, fps = decode_frames(path)
    assert frames.shape == ref.shape and fps == pytest.approx(24.0)
    psnr = per_frame_psnr(frames, ref)
    assert psnr.shape == (17,) and (psnr > 30).all()  # crf 18 H.264 of a smooth clip
    noisy = np.clip(ref + np.random.default_rng(0).normal(0, 20, ref.shape), 0, 255).astype(np.uint8)
    mse = ((noisy.astype(float) - ref) ** 2).reshape(17, -1).mean(1)
    assert np.allclose(per_frame_psnr(noisy, ref), 10 * np.log10(255**2 / mse))
    html = synced_player_html([("ref <x>", path), ("run", path)])
    assert html.count("<video") == 2 and "ref &lt;x&gt;" in html and "timeupdate" in html
    with pytest.raises(ValueError):
        per_frame_psnr(noisy[:, :32], ref)


def test_make_store_is_a_valid_store(store_root):
    from ablations.store import list_sweeps, load_sweep, run_samples

    data = load_sweep(store_root, "synthetic")
    assert data.axes == ["vae.kind", "loss.dwt", "dit.attention"] and len(data.runs) == 16
    assert len(data.metrics) == 12 * 4 * 11 and set(data.metrics["run_id"]) <= set(data.runs["run_id"])
    samples = run_samples(store_root, "synthetic", data.runs.query("status == 'done'").run_id.iloc[0])
    assert {s["task"] for s in samples} == {"recon", "t2v"} and all(Path(s["path"]).exists() for s in samples)
    assert list_sweeps(store_root).iloc[0].sweep == "synthetic"
    assert pd.notna(data.runs.query("status == 'failed'").failure_reason).all()


# --------------------------------------------------------------------------- issue 17: readable charts, live curves


def _chart_frames(chart) -> list[pd.DataFrame]:  # noqa: ANN001 - an AppTest element
    """The datasets Streamlit sends with a Vega-Lite chart (Arrow IPC), as DataFrames."""
    import pyarrow as pa

    return [pa.ipc.open_stream(d.data.data).read_all().to_pandas() for d in chart.proto.datasets]


def test_labels_name_only_the_axes_that_differ():
    from dashboard.labels import differing_labels, run_labels, variant_labels

    names = ["vae.patch=(4, 4, 2),loss.dwt=0.1,dit.attention=cross", "vae.patch=(8, 8, 1),loss.dwt=0.0,dit.attention=cross"]
    assert variant_labels(names) == {names[0]: "patch=4x4x2 · dwt=0.1", names[1]: "patch=8x8x1 · dwt=0"}
    # the A/A copy differs from its baseline by the replicate suffix alone
    base = "vae.kind=ltx,loss.dwt=0.0"
    assert variant_labels([base, base + ",replicate=b", "vae.kind=ltx,loss.dwt=0.1"]) == {
        base: "dwt=0 · replicate=a", base + ",replicate=b": "dwt=0 · replicate=b", "vae.kind=ltx,loss.dwt=0.1": "dwt=0.1 · replicate=a"}
    # replicate seeds of one variant: nothing but the seed tells them apart; then the run id's end
    runs = pd.DataFrame({"run_id": ["aaaa01", "aaaa02"], "seed": [0, 1], "vae.kind": ["ltx"] * 2, "loss.dwt": [0.1] * 2})
    assert run_labels(runs, ["vae.kind", "loss.dwt"]) == {"aaaa01": "seed 0", "aaaa02": "seed 1"}
    assert differing_labels({"run-x1": {"a": 1}, "run-x2": {"a": 1}}, {"run-x1": 0, "run-x2": 0}) == {"run-x1": "…run-x1", "run-x2": "…run-x2"}
    assert run_labels(runs.iloc[:1], ["vae.kind", "loss.dwt"]) == {"aaaa01": "kind=ltx · dwt=0.1"}  # alone: all its axes
    # two axes ending alike keep their whole names; survey systems that are not variants keep theirs
    assert differing_labels({1: {"vae.size": 1, "dit.size": 2}, 2: {"vae.size": 2, "dit.size": 3}}) == {1: "vae.size=1 · dit.size=2", 2: "vae.size=2 · dit.size=3"}
    assert variant_labels(["ltx", "baseline"]) == {"ltx": "ltx", "baseline": "baseline"}


def test_compare_captions_and_legends_show_the_differing_axes(app, store_root):
    at = _open(app(), "compare")
    html = at.get("iframe")[0].proto.srcdoc
    # the default pair is one variant's two seeds: captioned by seed, not by a cut variant string
    assert ">seed 0<" in html and ">seed 1<" in html and "vae.kind=ltx,loss.dwt" not in html
    done = pd.read_parquet(store_root / "synthetic" / "runs.parquet").query("status == 'done'")
    a = done[(done["loss.dwt"] == 0.0) & (done["dit.attention"] == "cross") & (done["vae.kind"] == "ltx")].iloc[0]
    b = done[(done["loss.dwt"] == 0.1) & (done["dit.attention"] == "mmdit") & (done["vae.kind"] == "ltx") & (done["seed"] == a["seed"])].iloc[0]
    at.multiselect(key="cmp-runs:synthetic").set_value([a.run_id, b.run_id]).run()
    assert not at.exception
    html = at.get("iframe")[0].proto.srcdoc
    assert ">dwt=0 · attention=cross<" in html and ">dwt=0.1 · attention=mmdit<" in html
    legends = {name for chart in _charts(at) for frame in _chart_frames(chart) if "run" in frame for name in frame["run"]}
    assert legends == {"dwt=0 · attention=cross", "dwt=0.1 · attention=mmdit"}


def test_parallel_coordinates_name_every_axis_with_ticks(store_root):
    from ablations.store import load_sweep
    from dashboard.charts import parallel_coordinates

    data = load_sweep(store_root, "synthetic")
    done = data.runs[data.runs["status"] == "done"]
    dims = [*data.axes, "psnr", "ssim", "cost.h100_estimate_s"]
    spec = parallel_coordinates(done, dims, "vae.kind").to_dict()
    axis = next(layer["encoding"]["x"]["axis"] for layer in spec["layer"] if "axis" in layer["encoding"]["x"])
    assert axis["labelOverlap"] is False and axis["labelLimit"] == 0 and "split(datum.label" in axis["labelExpr"]
    ticks = next(pd.DataFrame(rows) for rows in spec["datasets"].values() if rows and "tick" in rows[0])
    assert set(ticks["dimension"]) == set(dims)  # every dimension has its own tick values
    est = ticks[ticks["dimension"] == "cost.h100_estimate_s"]
    lo, hi = done["cost.h100_estimate_s"].min(), done["cost.h100_estimate_s"].max()
    assert set(est["tick"]) >= {f"{lo:,.3g} s", f"{hi:,.3g} s"} and set(est["scaled"]) >= {0.0, 1.0}
    assert set(ticks.loc[ticks["dimension"] == "vae.kind", "tick"]) == {"ltx", "conventional"}
    assert set(ticks.loc[ticks["dimension"] == "loss.dwt", "tick"]) >= {"0", "0.1"}


def test_cost_axes_say_their_unit(app):
    from dashboard.charts import format_quantity, quantity_axis, unit_of

    assert unit_of("cost.latency_s", [0.8]) == (1e-3, "ms")  # not "800m" (read as minutes)
    assert format_quantity("cost.params", 1.0e6) == "1 M params" and format_quantity("cost.flops_ref", 3.4e12) == "3.4 TFLOP"
    assert format_quantity("cost.h100_estimate_s", 1.2) == "1.2 s"
    assert quantity_axis("cost.params", [1.9e9, 2e9])[2].to_dict()["labelExpr"].endswith("+ ' B params'")
    at = _open(app(), "cost")
    for column, unit in [("cost.h100_estimate_s", "s"), ("cost.latency_s", "ms"), ("cost.params", "B params"), ("cost.flops_ref", "PFLOP")]:
        at.selectbox(key="cost-col:synthetic").set_value(column).run()
        assert not at.exception
        spec = json.loads(_charts(at)[0].proto.spec)
        x = spec["encoding"]["x"]
        assert x["axis"]["labelExpr"].endswith(f"+ ' {unit}'") and x["axis"].get("format") != "~s", column
        bars = _chart_frames(_charts(at)[0])[0]
        assert not bars["label"].str.contains("vae.kind=").any()  # named by the axes that differ
    at = _open(at, "effects")
    scatter = next(json.loads(c.proto.spec) for c in _charts(at) if "Pareto" in c.proto.spec)
    x_axes = [layer["encoding"]["x"].get("axis", {}) for layer in scatter["layer"]]
    assert any(a.get("labelExpr", "").endswith("+ ' PFLOP'") or a.get("labelExpr", "").endswith("+ ' s'") for a in x_axes)


def test_curve_smoothing_is_off_by_default_and_changes_the_series(app):
    from dashboard.charts import ema

    assert np.allclose(ema([1.0, 5.0, 2.0], 0.0), [1.0, 5.0, 2.0])
    assert ema([4.0, 4.0, 4.0], 0.9) == pytest.approx([4.0, 4.0, 4.0])  # debiased: no pull towards zero at the start
    at = _open(app(), "compare")
    slider = at.slider(key="smooth:cmp:synthetic")
    assert slider.value == 0.0 and slider.max == pytest.approx(0.99)
    curves = _charts(at)[-1]
    assert "smoothed" not in curves.proto.spec
    raw = _chart_frames(curves)[0]
    slider.set_value(0.9).run()
    assert not at.exception
    curves = _charts(at)[-1]
    spec = curves.proto.spec
    assert '"field": "smoothed"' in spec and '"opacity": 0.25' in spec  # the raw curve stays, faint
    smoothed = _chart_frames(curves)[0]
    assert np.allclose(np.sort(smoothed["value"]), np.sort(raw["value"]))
    assert not np.allclose(smoothed["smoothed"], smoothed["value"])  # the plotted series changed
    one = smoothed[(smoothed["run"] == smoothed["run"].iloc[0]) & (smoothed["panel"] == smoothed["panel"].iloc[0])].sort_values("step")
    assert np.allclose(one["smoothed"], ema(one["value"].to_numpy(), 0.9))


def add_live_curve(root: Path, sweep: str = "synthetic", steps: int = 40) -> str:
    """Give the store's running run stage folders as a sweep in flight has them: runs/<id>/stages.json
    (as ablations.runner writes it), a finished train_vae (curve.json) and a train_dit that is training,
    whose curve.live.jsonl the real executor progress writer appends to, with one resume from step 10."""
    from ablations.executor import _progress_writer

    runs = pd.read_parquet(root / sweep / "runs.parquet")
    run_id = runs.loc[runs["status"] == "running", "run_id"].iloc[0]
    SweepStore(root, sweep).write_run_json(run_id, "stages.json", {"train_vae": "vaekey01", "train_dit": "ditkey01"})
    vae = root / "_cache" / "train_vae" / "vaekey01"
    vae.mkdir(parents=True, exist_ok=True)
    (vae / "curve.json").write_text(json.dumps([{"stage": "train_vae", "step": s, "total": 0.2 + 1.0 / s} for s in range(1, 21)]))
    dit = root / "_cache" / "train_dit" / "ditkey01"
    dit.mkdir(parents=True, exist_ok=True)
    write = _progress_writer(dit, "train_dit", None)
    noise = np.random.default_rng(0).normal(0, 0.08, 2 * steps)
    for step in range(1, 21):  # first attempt, killed after step 20: its loss is 1 higher, so the test can tell
        write(step, steps, {"loss": 2.0 + 1.5 * np.exp(-step / 8) + noise[step]})
    for step in range(11, steps // 2 + 6):  # resumed from the step-10 checkpoint, now at step 25
        write(step, steps, {"loss": 1.0 + 1.5 * np.exp(-step / 8) + noise[steps + step]})
    return run_id


def test_running_runs_curve_is_shown_live(app, tmp_path):
    from dashboard.live import live_curve, live_progress

    root = tmp_path / "results"
    _load_make_store().make_store(root, "synthetic", "small", videos=False)
    run_id = add_live_curve(root)
    curve = live_curve(root / "synthetic", run_id)
    dit = curve[curve["stage"] == "train_dit"].sort_values("step")
    assert list(dit["step"]) == list(range(1, 26)) and (dit.loc[dit["step"] > 10, "value"] < 2).all()  # the resumed attempt's rows
    assert (dit.loc[dit["step"] <= 10, "value"] > 2).all() and len(curve[curve["stage"] == "train_vae"]) == 20
    assert live_progress(root / "synthetic", run_id) == ["train_dit 25/40"]
    at = _open(app(root=root), "runs")
    assert not at.exception
    assert at.multiselect(key="curves:synthetic").value == [run_id]  # running runs preselected
    assert any("1 run(s) training" in c and "train_dit " in c for c in _texts(at.caption))
    assert at.button(key="curves-refresh:synthetic")
    curves = _charts(at)[-1]
    frame = _chart_frames(curves)[0]
    assert set(frame["panel"]) == {"train_vae / total", "train_dit / loss"} and frame["step"].max() == 25
    # the next training steps appear on the next refresh, without restarting anything
    from ablations.executor import _progress_writer

    write = _progress_writer(root / "_cache" / "train_dit" / "ditkey01", "train_dit", None)
    for step in range(26, 31):
        write(step, 40, {"loss": 1.5})
    at.button(key="curves-refresh:synthetic").click().run()
    assert not at.exception and _chart_frames(_charts(at)[-1])[0]["step"].max() == 30
