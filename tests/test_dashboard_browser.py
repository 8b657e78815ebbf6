"""The real dashboard in headless Chromium: `ltxlab dashboard` on a free loopback port, every page opened,
checked for Streamlit exceptions and screenshotted (to a tmp dir, and to $LTXLAB_SCREENSHOTS if set)."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._ports import free_port

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]  # fmt: skip
REPO = Path(__file__).resolve().parents[1]
VARIANT_SYSTEMS = ("vae.kind=ltx,loss.dwt=0.1,dit.attention=mmdit", "vae.kind=ltx,loss.dwt=0.0,dit.attention=cross",
                   "vae.kind=conventional,loss.dwt=0.0,dit.attention=cross")  # fmt: skip
PAGES = {"sweeps": ("", "Sweeps"), "runs": ("runs", "Runs"), "effects": ("effects", "Effects"),
         "compare": ("compare", "Compare"), "survey": ("survey", "Survey"), "cost": ("cost", "Cost")}  # fmt: skip


def _load(name: str, path: Path):  # noqa: ANN202 - a module
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


base_urls_with_survey: dict[str, bool] = {}


def survey_db_used(base: str) -> bool:
    return base_urls_with_survey.get(base, False)


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (make browser installs it)")
    pytest.importorskip("playwright")
    root = tmp_path_factory.mktemp("results")
    _load("make_store", REPO / "benchmarks" / "make_store.py").make_store(root, "synthetic", "small")
    survey_db = None
    helpers = _load("dash_helpers", REPO / "tests" / "test_dashboard.py")
    helpers.add_live_curve(root)  # the running run has trained 25 of 40 train_dit steps
    try:  # systems named like sweep variants, as `survey create --sweep` names them
        survey_db = helpers.make_survey_db(tmp_path_factory.mktemp("survey"), systems=VARIANT_SYSTEMS)
    except ImportError:  # survey/ not importable: the Survey page then shows its "no database" message
        pass
    args = ["--results", str(root)] + (["--survey-db", str(survey_db)] if survey_db else [])
    with running_dashboard(args) as base:
        base_urls_with_survey[base] = survey_db is not None
        yield base


@contextlib.contextmanager
def running_dashboard(args: list[str]) -> Iterator[str]:
    """`ltxlab dashboard ARGS` on a free loopback port, in its own session; yields its base URL once
    /_stcore/health answers, then stops exactly that process group."""
    port = free_port()
    cmd = [str(Path(sys.executable).with_name("ltxlab")), "dashboard", *args, "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"dashboard exited early: {proc.stderr.read().decode()[-2000:]}")
            try:
                if urllib.request.urlopen(base + "/_stcore/health", timeout=1).status == 200:
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("dashboard did not answer on /_stcore/health within 60 s")
                time.sleep(0.3)
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # streamlit runs in its own session: stop exactly it
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def _wait_rendered(page, title: str) -> None:
    page.wait_for_selector(f"h1:has-text('{title}')", timeout=60_000)
    # stApp carries the script state; wait for the run to finish, then for charts to draw
    page.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']", timeout=90_000)
    page.wait_for_timeout(1500)


@pytest.mark.parametrize("name", list(PAGES))
def test_page_renders_in_chromium(dashboard, browser, tmp_path, name):
    path, title = PAGES[name]
    page = browser.new_page(viewport={"width": 1400, "height": 2200})
    try:
        if name == "compare":  # reach it through the sidebar link, as a user would (same session)
            page.goto(f"{dashboard}/runs")
            _wait_rendered(page, "Runs")
            page.locator("[data-testid='stSidebarNav'] a", has_text="Compare").click()
        else:
            page.goto(f"{dashboard}/{path}")
        _wait_rendered(page, title)
        errors = page.locator("[data-testid='stException']")
        assert errors.count() == 0, errors.first.inner_text()
        expected = {"runs": 1, "effects": 2, "cost": 1, "compare": 3, "survey": 3 if survey_db_used(dashboard) else 0, "sweeps": 0}
        tables = 1 if name in ("sweeps", "runs", "cost") else 0
        # charts and tables are attached one by one after the script run ends; a loaded machine (a
        # parallel test worker) can count the first before the rest are there, so poll up to 30 s
        deadline = time.monotonic() + 30
        while ((charts := page.locator("[data-testid='stVegaLiteChart']").count()) < expected[name]
               or page.locator("[data-testid='stDataFrame']").count() < tables) and time.monotonic() < deadline:
            page.wait_for_timeout(250)
        assert charts >= expected[name], (name, charts)
        assert page.locator("[data-testid='stDataFrame']").count() >= tables, name
        if name == "compare":
            frame = page.frame_locator("iframe").first
            assert frame.locator("video").count() >= 3  # reference + two runs
        shot = tmp_path / f"{name}.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        if os.environ.get("LTXLAB_SCREENSHOTS"):
            out = Path(os.environ["LTXLAB_SCREENSHOTS"])
            out.mkdir(parents=True, exist_ok=True)
            shutil.copy(shot, out / f"{name}.png")
    finally:
        page.close()


def _keep(shot: Path) -> None:
    if os.environ.get("LTXLAB_SCREENSHOTS"):
        out = Path(os.environ["LTXLAB_SCREENSHOTS"])
        out.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, out / shot.name)


def _chart_shot(page, index: int, path: Path) -> None:
    chart = page.locator("[data-testid='stVegaLiteChart']").nth(index)
    chart.wait_for(state="attached", timeout=30_000)
    deadline = time.monotonic() + 20
    while (box := chart.bounding_box()) is None or box["height"] < 50:  # a spec Vega cannot draw is 0 px high
        assert time.monotonic() < deadline, f"{path.name}: the chart was not drawn ({box})"
        page.wait_for_timeout(250)
    chart.scroll_into_view_if_needed()
    page.wait_for_timeout(800)  # vega draws after it scrolls into view
    chart.screenshot(path=str(path))
    assert path.stat().st_size > 5_000
    _keep(path)


def test_readable_charts_and_live_curve_in_chromium(dashboard, browser, tmp_path):
    """Issue 17's charts as a user sees them: each screenshotted alone (kept with LTXLAB_SCREENSHOTS)."""
    page = browser.new_page(viewport={"width": 1400, "height": 1400})
    try:
        page.goto(f"{dashboard}/runs")
        _wait_rendered(page, "Runs")
        assert page.get_by_role("button", name="Refresh").count() == 1
        assert page.get_by_text("1 run(s) training").count() >= 1
        _chart_shot(page, 0, tmp_path / "runs-parallel-coordinates.png")
        _chart_shot(page, -1, tmp_path / "runs-live-curve.png")  # the running run's curve, from its stage folders

        page.locator("[data-testid='stSidebarNav'] a", has_text="Compare").click()
        _wait_rendered(page, "Compare")
        captions = page.frame_locator("iframe").first.locator(".cap").all_inner_texts()
        assert captions == ["reference", "seed 0", "seed 1"], captions
        page.locator("iframe").first.screenshot(path=str(tmp_path / "compare-captions.png"))
        _keep(tmp_path / "compare-captions.png")
        _chart_shot(page, -1, tmp_path / "compare-curves-raw.png")
        slider = page.locator("[data-testid='stSlider'] input[type='range']").first  # react-aria's range input
        slider.focus()
        slider.press("End")  # 0.99
        for _ in range(9):
            slider.press("ArrowLeft")  # 0.90
        page.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']", timeout=60_000)
        page.wait_for_timeout(1500)
        assert float(slider.input_value()) == 0.9
        page.screenshot(path=str(tmp_path / "compare-page.png"), full_page=True)
        _keep(tmp_path / "compare-page.png")
        _chart_shot(page, -1, tmp_path / "compare-curves-smoothed.png")

        for path, title, index, name in [("cost", "Cost", 0, "cost-axis.png"), ("effects", "Effects", -1, "effects-quality-cost.png")]:
            page.goto(f"{dashboard}/{path}")
            _wait_rendered(page, title)
            assert page.locator("[data-testid='stException']").count() == 0
            _chart_shot(page, index, tmp_path / name)
        if survey_db_used(dashboard):
            page.goto(f"{dashboard}/survey")
            _wait_rendered(page, "Survey")
            assert page.get_by_text("Systems are named by the axes that differ").count() == 1
            _chart_shot(page, 0, tmp_path / "survey-heatmap.png")
            _chart_shot(page, 1, tmp_path / "survey-ratings.png")
    finally:
        page.close()
