"""Every dashboard page renders on a results store written by a real smoke sweep (embedded
Ray, real training, samples and metrics), and on a survey built from that sweep's samples."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ray = pytest.importorskip("ray")
APP = str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py")


@pytest.fixture(scope="module")
def real_store(ray_local, tmp_path_factory) -> tuple[Path, Path]:
    from ablations.cli import main

    root = tmp_path_factory.mktemp("real")
    assert main(["sweep", "tiny-pair", "--results", str(root), "--quiet", "--no-report"]) == 0
    db = root / "survey.db"
    assert main(["survey", "create", "real-study", "--sweep", "tiny-pair", "--results", str(root),
                 "--db", str(db), "--min-watch-fraction", "0", "--gold-per-rater", "0",
                 # in-process raters on one cookie: no media is served, so no delivery gate or per-client cap
                 "--no-require-delivery", "--max-raters-per-client", "0", "--start-burst", "0"]) == 0
    # no gold pairs: these raters always answer "left", so each would fail a gold pair half the
    # time, and with all four flagged (1 run in 16) the page rightly shows no results at all
    _vote(db)
    return root, db


def _vote(db: Path, raters: int = 4) -> None:
    """Raters who always pick the left video, through the same store the server uses."""
    from survey import db as tables
    from survey.reports import list_studies
    from survey.store import Store

    engine = tables.make_engine(db)
    store = Store(engine)
    (study,) = list_studies(str(db))
    state = store.study(study["url"].removeprefix("/s/"))
    for r in range(raters):
        rid = store.rater_id(state, store.start(state, f"rater-{r}", "cookie")["rater"])
        pair = store.next_pair(state, rid)
        while not pair["done"]:
            reply = store.vote(state, rid, {"assignment": pair["assignment"], "token": pair["token"],
                                            "answers": ["left"], "elapsed_ms": 2000})
            pair = reply["next"]
    engine.dispose()


@pytest.fixture
def app(monkeypatch, real_store):
    root, db = real_store
    monkeypatch.setenv("LTXLAB_RESULTS", str(root))
    monkeypatch.setenv("LTXLAB_SURVEY_DB", str(db))
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    return at


def _open(at: AppTest, page: str) -> AppTest:
    at.switch_page(f"views/{page}.py")
    return at.run()


def test_sweeps_and_runs_pages_show_the_real_sweep(app):
    assert not app.exception
    sweeps = app.dataframe[0].value.set_index("sweep")
    assert sweeps.loc["tiny-pair", "done"] == 2
    at = _open(app, "runs")
    assert not at.exception
    table = at.dataframe[0].value
    assert set(table["dit.text_conditioning"]) == {"cross_attention", "mmdit"}
    assert {"psnr", "t2v.oracle_color", "cost.h100_estimate_s"} <= set(table.columns)
    assert list(at.get("vega_lite_chart"))  # parallel coordinates


@pytest.mark.parametrize("page", ["effects", "compare", "cost", "survey"])
def test_every_page_renders_on_real_results(app, page):
    at = _open(app, page)
    assert not at.exception, at.exception
    assert list(at.get("vega_lite_chart")) or list(at.dataframe), f"{page} shows no chart or table"


def test_compare_page_plays_real_samples(app):
    at = _open(app, "runs")
    run_ids = at.dataframe[0].value["run_id"].tolist()
    at.multiselect(key="compare-pick:tiny-pair").set_value(run_ids).run()
    at = _open(at, "compare")
    assert not at.exception
    html = " ".join(str(getattr(e, "proto", "")) for e in at.get("iframe")) if at.get("iframe") else ""
    videos = [e for e in at.main if "video" in str(getattr(e, "proto", "")).lower()]
    assert html.count("<video") >= 2 or videos, "the Compare page shows the runs' videos"


def test_real_sweep_leaves_the_live_curve_files(real_store):
    """What the Runs page reads while a run trains, as the real runner and executor left it: each run's
    stages.json names existing stage folders, and each training stage's curve.live.jsonl holds every
    step's losses, the same rows as the curve.json it wrote at the end."""
    import json

    import pandas as pd

    from dashboard.live import FINISHED_CURVE, _after_restarts, _jsonl_rows, _long, stage_folders

    root, _ = real_store
    runs = pd.read_parquet(root / "tiny-pair" / "runs.parquet")
    for run_id in runs["run_id"]:
        folders = stage_folders(root / "tiny-pair", run_id)
        assert {"train_vae", "train_dit"} <= set(folders) and all(f.is_dir() for f in folders.values()), run_id
        for stage in ("train_vae", "train_dit"):
            live = _long(_after_restarts(_jsonl_rows(folders[stage] / "curve.live.jsonl")), stage)
            final = _long(json.loads((folders[stage] / FINISHED_CURVE).read_text()), stage)
            assert live and pd.DataFrame(live).equals(pd.DataFrame(final)), (run_id, stage)
