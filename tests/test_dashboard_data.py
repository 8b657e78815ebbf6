"""The dashboard's Data page on curated datasets that follow `clips.curate.manifest`'s contract.

The dataset is built here, not by `ltxlab curate`: real H.264 files from `clips.curate.synthetic`,
probed, bar-checked and motion-scored with the real detectors (`clips.curate.probe`, `bars`,
`motion`); the aesthetic scores and which clip each filter drops are planted, so the page's counts,
thresholds and reasons have a known answer. Every filter but `caption` drops at least one row.
The page runs under `streamlit.testing.v1.AppTest`, and once for real in headless Chromium.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from clips.curate.manifest import FILTERS, MANIFEST, REPORT, REPORT_KEYS, score_summary, to_frame

REPO = Path(__file__).resolve().parents[1]
APP = str(REPO / "dashboard" / "app.py")
MISSING_SOURCE = "/nonexistent/elsewhere/gone.mp4"  # a kept clip whose source is not on this machine
AESTHETIC_THRESHOLD = 3.0
TOP_K = 2


def _clip_id(path: Path | str, start: int, end: int) -> str:
    return f"{Path(path).stem}-{hashlib.sha256(str(path).encode()).hexdigest()[:8]}:f{start}-{end}"


def _row(path: Path | str, start: int, end: int, fps: float, size: tuple[int, int], **fields) -> dict:
    """A manifest row of a clip with every column; scores NaN and crop -1 unless given."""
    row = {"clip_id": _clip_id(path, start, end), "source": str(path), "source_id": Path(path).stem,
           "start_frame": start, "end_frame": end, "fps": fps, "width": size[0], "height": size[1],
           "duration_s": (end - start) / fps, "crop_x0": -1, "crop_y0": -1, "crop_x1": -1, "crop_y1": -1,
           "motion_flow": float("nan"), "motion_diff": float("nan"), "aesthetic": float("nan"), "caption": None,
           "caption_source": "none", "keep": False, "dropped_by": None, "drop_reason": None, "finetune": False,
           "clip_path": None}  # fmt: skip
    return row | fields


def _measured(path: Path, start: int, end: int, cfg) -> dict:
    """Crop box and motion scores of a clip from the real detectors."""
    from clips.curate.bars import detect_bars_file
    from clips.curate.motion import motion_scores_file

    box = detect_bars_file(path, cfg.bars, start=start, end=end)
    scores = motion_scores_file(path, cfg.motion, start=start, end=end)
    return {"crop_x0": box.x0, "crop_y0": box.y0, "crop_x1": box.x1, "crop_y1": box.y1,
            "motion_flow": scores.flow, "motion_diff": scores.diff}  # fmt: skip


def curate_config():  # noqa: ANN201 - CurateConfig
    from clips.curate.config import AestheticFilter, CurateConfig
    from clips.curate.shots import ShotConfig

    return CurateConfig(shots=ShotConfig(min_duration_s=0.75, max_duration_s=2.0),
                        aesthetic=AestheticFilter(scorer="/models/aesthetic-v1", threshold=AESTHETIC_THRESHOLD, top_k=TOP_K))  # fmt: skip


def make_curated_dataset(folder: Path) -> Path:
    """DATASET = folder/"dataset" with manifest.parquet, finetune.parquet, report.json; sources in folder/"videos".

    Rows: 5 kept (one of them from a source that is not on this machine), 3 unusable files
    (empty, not_video, truncated), one each dropped by duration, bars, motion and aesthetic.
    """
    from clips.curate import synthetic
    from clips.curate.probe import ProbeError, probe
    from models.config import to_dict

    cfg = curate_config()
    videos, out = folder / "videos", folder / "dataset"
    videos.mkdir(parents=True)
    out.mkdir()
    moving_a = synthetic.write_motion_video(videos / "moving_a.mp4", speed=2.0, frames=48, seed=1)
    moving_b = synthetic.write_motion_video(videos / "moving_b.mp4", speed=3.0, frames=48, seed=2)
    static = synthetic.write_motion_video(videos / "static.mp4", speed=0.0, frames=24, seed=3)
    letterbox = synthetic.write_bars_video(videos / "letterbox.mp4", bars=(36, 36, 0, 0), frames=24, seed=4)
    cuts = synthetic.write_cut_video(videos / "cuts.mp4", shot_lengths=(12, 30), seed=5)
    broken = [synthetic.write_broken(videos / f"{kind}.mp4", kind, seed=6) for kind in ("empty", "not_video", "truncated")]

    def clip(video, start, end, aesthetic=float("nan"), **fields) -> dict:
        """A clip row measured by the detectors; `fields` override (NaN scores a drop stopped short of)."""
        measured = _measured(video.path, start, end, cfg) | fields
        return _row(video.path, start, end, video.fps, (video.width, video.height), aesthetic=aesthetic, **measured)

    kept = {"keep": True, "caption_source": "none"}
    rows = [
        clip(moving_a, 0, 24, 6.1, **kept), clip(moving_a, 24, 48, 5.2, **kept), clip(moving_b, 0, 24, 4.4, **kept),
        clip(cuts, 12, 42, 3.5, **kept),
        _row(MISSING_SOURCE, 0, 24, 24.0, (160, 96), crop_x0=0, crop_y0=0, crop_x1=160, crop_y1=96, motion_flow=1.8,
             motion_diff=9.0, aesthetic=5.0, **kept),
        _row(cuts.path, 0, 12, cuts.fps, (cuts.width, cuts.height), dropped_by="duration",
             drop_reason="the shot lasts 0.5 s, under shots.min_duration_s = 0.75 s"),
        clip(letterbox, 0, 24, dropped_by="bars", motion_flow=float("nan"), motion_diff=float("nan"),
             drop_reason="the crop keeps 25% of the frame, under bars.min_area_fraction = 0.3"),
        clip(static, 0, 24, dropped_by="motion", drop_reason="static: motion under motion.static_flow or static_diff"),
        clip(moving_b, 24, 48, 2.1, dropped_by="aesthetic", drop_reason="aesthetic 2.1 under aesthetic.threshold = 3"),
    ]  # fmt: skip
    failures = []
    for item in broken:
        try:
            probe(item.path, cfg.probe)
            raise AssertionError(f"{item.path} should not probe")
        except ProbeError as exc:
            failures.append({"path": str(item.path), "reason": exc.reason, "message": str(exc)})
            rows.append(_row(item.path, -1, -1, float("nan"), (-1, -1), duration_s=float("nan"), dropped_by="probe",
                             drop_reason=f"{exc.reason}: {exc}", clip_id=f"{item.path.stem}-file"))  # fmt: skip
    manifest = to_frame(rows)
    top = manifest[manifest["keep"]].nlargest(TOP_K, "aesthetic").index
    manifest.loc[top, "finetune"] = True
    manifest.to_parquet(out / MANIFEST)
    manifest[manifest["finetune"]].reset_index(drop=True).to_parquet(out / "finetune.parquet")
    write_report(out, manifest, to_dict(cfg), failures)
    return out


def write_report(out: Path, manifest: pd.DataFrame, config: dict, failures: list[dict]) -> None:
    """report.json with every REPORT_KEY, its counts taken from the manifest."""
    probe_rows = manifest["dropped_by"] == "probe"
    report = {
        "format": "ltxlab-curated/1", "created_at": "2026-12-06T10:00:00Z", "source": str(out.parent / "videos"),
        "config": config,
        "counts": {"files": int(manifest["source"].nunique()), "probed_ok": int(manifest.loc[~probe_rows, "source"].nunique()),
                   "probe_failed": int(probe_rows.sum()), "clips": int((~probe_rows).sum()), "kept": int(manifest["keep"].sum()),
                   "finetune": int(manifest["finetune"].sum()),
                   "dropped_by": {f: int((manifest["dropped_by"] == f).sum()) for f in FILTERS},
                   "probe_reasons": {f["reason"]: 1 for f in failures}},
        "scores": {c: score_summary(manifest[c]) for c in ("motion_flow", "motion_diff", "aesthetic")},
        "failures": failures, "timing": {"wall_s": 3.25, "clips_per_s": 3.1, "workers": 2},
        "provenance": {"commit": "0123abcd", "versions": {"ray": "2.x", "av": "14"},
                       "aesthetic": {"path": "/models/aesthetic-v1", "weights_sha256": "feedfacecafe1234"}, "captioner": None},
    }  # fmt: skip
    assert set(report) == set(REPORT_KEYS)
    (out / REPORT).write_text(json.dumps(report, indent=2))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_curated_dataset(tmp_path_factory.mktemp("curated"))


@pytest.fixture
def data_page(monkeypatch, tmp_path):  # noqa: ANN201 - a factory
    """Run the Data page with LTXLAB_DATA = `folders` (and an empty results root)."""

    def run(*folders: Path, typed: str | None = None, query: dict | None = None) -> AppTest:
        monkeypatch.setenv("LTXLAB_RESULTS", str(tmp_path / "no-results"))
        monkeypatch.setenv("LTXLAB_DATA", os.pathsep.join(map(str, folders)))
        at = AppTest.from_file(APP, default_timeout=90)
        at.query_params.update(query or {})
        at.run()
        at.switch_page("views/data.py")
        at.run()
        if typed is not None:
            at.text_input(key="data-typed").input(typed).run()
        assert not at.exception, at.exception
        return at

    return run


def _texts(elements) -> list[str]:
    return [str(e.value) for e in elements]


def _frame_with(at: AppTest, column: str) -> pd.DataFrame:
    return next(d.value for d in at.dataframe if column in d.value.columns)


def _chart_rows(at: AppTest) -> list[dict]:
    """Every data row of every Altair chart on the page (Streamlit ships each chart's data as Arrow IPC)."""
    import pyarrow as pa

    tables = [pa.ipc.open_stream(d.data.data).read_all() for c in at.get("vega_lite_chart") for d in c.proto.datasets]
    return [row for table in tables for row in table.to_pylist()]


def test_counts_funnel_and_reasons(dataset, data_page):
    at = data_page(dataset)
    assert at.selectbox(key="data-pick").value == str(dataset.resolve())
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Source files"] == "9" and metrics["Unusable files"] == "3"
    assert metrics["Candidate clips"] == "9" and metrics["Kept clips"] == "5" and metrics["Finetune subset"] == "2"
    funnel = _frame_with(at, "entering").set_index("filter")
    assert list(funnel.index) == list(FILTERS)
    assert funnel["dropped"].to_dict() == {"probe": 3, "duration": 1, "bars": 1, "motion": 1, "aesthetic": 1, "caption": 0}
    assert funnel.loc["probe", "entering"] == 12 and funnel.loc["caption", "passed"] == 5
    reasons = _frame_with(at, "files").set_index("reason")["files"].to_dict()
    assert reasons == {"empty": 1, "not_video": 1, "truncated": 1}
    failures = at.table[0].value
    assert sorted(Path(s).name for s in failures.index) == ["empty.mp4", "not_video.mp4", "truncated.mp4"]
    assert failures.loc[str(dataset.parent / "videos" / "empty.mp4"), "reason"] == "empty"
    assert not at.warning and not at.error  # a consistent dataset raises no note


def test_thresholds_drawn_from_the_config(dataset, data_page):
    at = data_page(dataset)
    captions = " ".join(_texts(at.caption))
    for path, value in (("shots.min_duration_s", 0.75), ("bars.min_area_fraction", 0.3), ("motion.static_flow", 4.8),
                        ("motion.static_diff", 0.5), ("aesthetic.threshold", AESTHETIC_THRESHOLD)):  # fmt: skip
        assert f"`{path}` = {value:g}" in captions, path
    rules = {r["label"] for r in _chart_rows(at) if "label" in r and "value" in r}
    assert {"motion.static_flow = 4.8", "aesthetic.threshold = 3", "bars.min_area_fraction = 0.3",
            "finetune ≥ 5.2"} <= rules  # fmt: skip
    assert len(at.get("vega_lite_chart")) == 2 + 5  # funnel, reasons, five score histograms


def test_examples_thumbnails_and_missing_source(dataset, data_page):
    at = data_page(dataset)
    at.slider(key="data-examples").set_value(8).run()
    assert not at.exception
    groups = [m for m in _texts(at.markdown) if m.startswith("**Kept**") or m.startswith("**Dropped by")]
    assert groups == ["**Kept**: 5 of 5", "**Dropped by duration**: 1 of 1", "**Dropped by bars**: 1 of 1",
                      "**Dropped by motion**: 1 of 1", "**Dropped by aesthetic**: 1 of 1"]  # fmt: skip
    assert len(at.get("image")) == 8  # every example but the clip whose source is gone
    assert any(f"{MISSING_SOURCE} is not on this machine" in i for i in _texts(at.info))
    captions = " ".join(_texts(at.caption))
    assert "crop 160x24 of 160x96" in captions  # the letterbox's measured crop, under its thumbnail
    # the deterministic choice: a second run shows the same clips in the same order
    first = [c for c in _texts(at.caption) if ":f" in c]
    again = [c for c in _texts(data_page(dataset).caption) if ":f" in c]
    assert first[:4] == again[:4]


def test_finetune_and_provenance(dataset, data_page):
    at = data_page(dataset)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Clips"] == "2 of 5 kept" and metrics["Aesthetic range"] == "5.2 – 6.1"
    provenance = at.table[1].value["value"]
    assert provenance["aesthetic.weights_sha256"] == "feedfacecafe1234" and provenance["commit"] == "0123abcd"
    assert provenance["captioner"] == "none" and len(provenance["config hash"]) == 12


def test_broken_datasets_give_one_sentence(dataset, data_page, tmp_path):
    # a manifest without a column: the contract's one sentence, nothing else
    lacking = tmp_path / "lacking"
    shutil.copytree(dataset, lacking)
    pd.read_parquet(lacking / MANIFEST).drop(columns=["motion_flow"]).to_parquet(lacking / MANIFEST)
    at = data_page(lacking)
    assert len(at.error) == 1 and "lacks the column(s) motion_flow" in at.error[0].value
    assert not at.get("vega_lite_chart")
    # not parquet at all
    torn = tmp_path / "torn"
    shutil.copytree(dataset, torn)
    (torn / MANIFEST).write_bytes(b"PAR1 this is not parquet")
    at = data_page(torn)
    assert len(at.error) == 1 and "is not a readable parquet file" in at.error[0].value
    # no report.json: the counts still show, the thresholds are said to be unknown
    bare = tmp_path / "bare"
    shutil.copytree(dataset, bare)
    (bare / REPORT).unlink()
    at = data_page(bare)
    assert any("No report.json" in w for w in _texts(at.warning))
    assert {m.label: m.value for m in at.metric}["Kept clips"] == "5"
    assert "sets no `motion.static_flow`" in " ".join(_texts(at.caption))
    # counts that disagree with the manifest
    off = tmp_path / "off"
    shutil.copytree(dataset, off)
    report = json.loads((off / REPORT).read_text())
    report["counts"]["kept"] = 7
    (off / REPORT).write_text(json.dumps(report))
    at = data_page(off)
    assert any("disagree (kept 7 vs 5)" in w for w in _texts(at.warning))


def test_sources_moved_away(dataset, data_page, tmp_path):
    moved = tmp_path / "moved"
    shutil.copytree(dataset.parent, moved)
    shutil.rmtree(moved / "videos")  # the manifest names the old absolute paths; now none exists here
    manifest = pd.read_parquet(moved / "dataset" / MANIFEST)
    manifest["source"] = manifest["source"].str.replace(str(dataset.parent), str(moved), regex=False)
    manifest.to_parquet(moved / "dataset" / MANIFEST)
    at = data_page(moved / "dataset")
    missing = [i for i in _texts(at.info) if "is not on this machine" in i]
    assert missing and all(str(moved / "videos") in m or MISSING_SOURCE in m for m in missing)
    assert not at.get("image")


def test_discovery_text_input_and_no_dataset(dataset, data_page, tmp_path):
    # a parent folder holding two datasets: both offered
    parent = tmp_path / "many"
    for name in ("a", "b"):
        shutil.copytree(dataset, parent / "runs" / name)
    at = data_page(parent)
    assert at.selectbox(key="data-pick").options == [str((parent / "runs" / n).resolve()) for n in ("a", "b")]
    # nothing given: one sentence; then a typed path finds the dataset
    at = data_page()
    assert any("ltxlab dashboard --data DIR" in i for i in _texts(at.info))
    at = data_page(typed=str(dataset))
    assert at.selectbox(key="data-pick").value == str(dataset.resolve())
    at = data_page(typed=str(tmp_path / "nowhere"))
    assert any("does not exist" in w for w in _texts(at.warning))
    # with --data datasets offered, typing another path selects it; ?dataset=PATH fills the box
    at = data_page(parent, typed=str(dataset))
    assert at.selectbox(key="data-pick").value == str(dataset.resolve())
    assert len(at.selectbox(key="data-pick").options) == 3
    at = data_page(parent, query={"dataset": str(parent / "runs" / "b")})
    assert at.selectbox(key="data-pick").value == str((parent / "runs" / "b").resolve())


def test_page_on_the_real_pipelines_output(data_page, tmp_path):
    """`clips.curate.pipeline.curate` (single-process engine, no scorer) -> the page agrees with its report."""
    from clips.curate import synthetic
    from clips.curate.config import config_from_dict
    from clips.curate.pipeline import curate

    src = tmp_path / "src"
    synthetic.write_motion_video(src / "moving.mp4", speed=2.0, frames=48, seed=1)
    synthetic.write_motion_video(src / "static.mp4", speed=0.0, frames=36, seed=2)
    synthetic.write_bars_video(src / "letterbox.mp4", bars=(36, 36, 0, 0), frames=36, seed=3)
    synthetic.write_broken(src / "empty.mp4", "empty")
    cfg = config_from_dict({"shots": {"min_duration_s": 1.0}, "workers": 1})
    report = curate(src, tmp_path / "out", cfg, engine="local").report
    at = data_page(tmp_path / "out")
    funnel = _frame_with(at, "entering").set_index("filter")
    assert funnel["dropped"].to_dict() == report["counts"]["dropped_by"]
    assert {m.label: m.value for m in at.metric}["Kept clips"] == str(report["counts"]["kept"])
    assert _frame_with(at, "files").set_index("reason")["files"].to_dict() == report["counts"]["probe_reasons"]
    assert any("No aesthetic scorer" in i for i in _texts(at.info))  # the report's own note
    assert "aesthetic: no clip has this score" in " ".join(_texts(at.caption))
    assert not at.warning and not at.error
    assert len(at.get("image")) >= 2  # a kept and a dropped example, decoded from the sources


def test_histogram_bins_every_clip_and_spans_the_thresholds():
    from dashboard.curated import histogram

    scores = pd.DataFrame({"value": [0.0, 0.5, 1.0, 1.0, 2.0], "outcome": ["kept", "kept", "dropped by motion", "kept", "kept"]})
    counts = histogram(scores, extra=[3.0], bins=6)  # edges 0, 0.5, ..., 3: the threshold widens the range
    assert counts["clips"].sum() == 5 and counts["start"].min() == 0.0
    assert np.allclose(counts["end"] - counts["start"], 0.5)  # only non-empty cells are listed
    at_one = counts[counts["start"] == 1.0].set_index("outcome")["clips"].to_dict()
    assert at_one == {"dropped by motion": 1, "kept": 1}  # a value on an edge falls in the bin it starts
    single = histogram(pd.DataFrame({"value": [2.0], "outcome": ["kept"]}))
    assert single["clips"].tolist() == [1] and single["start"].iloc[0] <= 2.0 < single["end"].iloc[0]


def test_dashboard_data_flag(tmp_path):
    from ablations.cli import UserError
    from ablations.commands.dashboard import dashboard_env, run

    env = dashboard_env(str(tmp_path), None, [str(tmp_path / "a"), str(tmp_path / "b")])
    assert env["LTXLAB_DATA"].split(os.pathsep) == [str(tmp_path / "a"), str(tmp_path / "b")]
    args = type("Args", (), {"port": 8501, "host": "127.0.0.1", "survey_db": None, "results": str(tmp_path),
                             "data": [str(tmp_path / "nowhere")]})()  # fmt: skip
    with pytest.raises(UserError, match="--data .*nowhere is not a folder"):
        run(args)


def test_data_page_imports_no_torch_or_ray():
    code = ("import sys, json; sys.argv = ['x']; import dashboard.curated, dashboard.charts; "
            "from dashboard.curated import decode_thumbnails; "
            "print(json.dumps(sorted(m for m in ('torch', 'ray', 'cv2') if m in sys.modules)))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


@pytest.mark.browser
def test_data_page_in_chromium(dataset, tmp_path):
    """`ltxlab dashboard --data` for real, the page opened in headless Chromium, content checked, screenshot kept."""
    spec = importlib.util.spec_from_file_location("dash_browser", REPO / "tests" / "test_dashboard_browser.py")
    browser_helpers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(browser_helpers)
    if not Path(browser_helpers.CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (make browser installs it)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with browser_helpers.running_dashboard(["--results", str(tmp_path / "results"), "--data", str(dataset.parent)]) as base:
        with sync_api.sync_playwright() as pw:
            chromium = pw.chromium.launch(executable_path=browser_helpers.CHROMIUM, args=browser_helpers.CHROMIUM_ARGS)
            page = chromium.new_page(viewport={"width": 1400, "height": 2200})
            page.goto(f"{base}/data")
            browser_helpers._wait_rendered(page, "Data")
            page.wait_for_selector("[data-testid='stImage'] img", timeout=60_000)
            # every example (the slider to its end): which 4 of the 5 kept clips show first follows the
            # sha1 of clip ids that hash tmp paths, so the clip whose source is gone may be the fifth
            page.get_by_role("slider").first.press("End")
            page.wait_for_function("document.querySelectorAll(\"[data-testid='stImage'] img\").length >= 8",
                                   timeout=60_000)
            page.wait_for_timeout(1500)
            nav = page.locator("[data-testid='stSidebarNav'] a").all_inner_texts()
            assert [t.strip() for t in nav] == ["Sweeps", "Runs", "Effects", "Compare", "Survey", "Cost", "Data"]
            height = page.evaluate("document.querySelector('[data-testid=\"stMain\"]').scrollHeight")
            page.set_viewport_size({"width": 1400, "height": int(height) + 80})  # the whole page in one shot
            page.wait_for_timeout(1000)
            shot = tmp_path / "data.png"
            page.screenshot(path=str(shot), full_page=True)
            if os.environ.get("LTXLAB_SCREENSHOTS"):
                target = Path(os.environ["LTXLAB_SCREENSHOTS"])
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy(shot, target / "data.png")
            errors = page.locator("[data-testid='stException']")
            assert errors.count() == 0, errors.first.inner_text()
            body = page.locator("[data-testid='stMain']").inner_text()
            for text in ("Dropped by bars", "motion.static_flow", "not on this machine", "feedfacecafe1234"):
                assert text in body, text
            assert page.locator("[data-testid='stVegaLiteChart']").count() == 7
            assert page.locator("[data-testid='stImage'] img").count() == 8  # every example but the one whose source is gone
            chromium.close()
    assert shot.stat().st_size > 10_000
