"""The whole rater flow in headless Debian chromium (driven by Playwright, never downloaded)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import func, select

from survey import build
from survey import db as t
from survey.examples import start_server, write_example_dir

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
SYSTEMS = ["browserleak_one", "browserleak_two", "browserleak_three"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"Debian's chromium is not installed at {CHROMIUM} "
                       "(`make browser` installs it); Playwright must not download a browser."),
]


def _body(response) -> bytes:  # noqa: ANN001 - playwright Response
    try:
        return response.body()
    except Exception:  # noqa: BLE001 - media streamed in ranges may have no retained body
        return b""


def test_rater_flow_in_chromium(tmp_path: Path):
    sync_api = pytest.importorskip("playwright.sync_api")
    src = write_example_dir(tmp_path / "src", SYSTEMS, n_prompts=3, i2v_prompts=1)
    db = tmp_path / "survey.db"
    engine = t.make_engine(db)
    # defaults: the server refuses votes before both videos were delivered (require_delivery) or
    # sooner than min_watch_fraction (0.9) x their duration; the real page must pass both
    summary = build.create_study(engine, "browser_study", build.collect_from_dir(src), tmp_path / "media",
                                 build.StudyOptions(pairs_per_rater=3, gold_per_rater=1,
                                                    completion_url="https://platform.example/done?cc={code}"))
    proc, base = start_server(db)
    responses = []
    try:
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page()
            page.on("response", lambda r: responses.append(r))
            page.goto(f"{base}/s/{summary['public_id']}?pid=PW_RATER_1")
            page.click("#consent-agree")
            page.click("#begin")
            total = 4
            ended_flags = []
            for position in range(1, total + 1):
                # selectors, not wait_for_function: the page's CSP forbids eval
                page.wait_for_selector(f'body[data-state="pair"][data-position="{position}"]', timeout=15000)
                # answers stay locked until both clips have played to the end
                page.wait_for_selector('button[data-vote="left"]:enabled', timeout=15000)
                ended_flags.append(page.evaluate(
                    "[document.getElementById('video-left').ended, document.getElementById('video-right').ended,"
                    " document.getElementById('video-left').duration]"))
                if not page.is_hidden("#image-box"):
                    assert page.evaluate("document.getElementById('cond-image').naturalWidth") == 64
                if position % 2:
                    page.keyboard.press(str(position % 4 + 1))  # keys 1-4
                else:
                    page.click('button[data-vote="tie"]')
            page.wait_for_selector('body[data-state="done"]', timeout=15000)
            code = page.text_content("#completion-code")
            href = page.get_attribute("#return-link", "href")
            texts = {r.url: (r.all_headers(), _body(r)) for r in responses}
            browser.close()
    finally:
        proc.kill()
        proc.wait()
    assert all(left and right and duration > 0.3 for left, right, duration in ended_flags), ended_flags
    with engine.connect() as conn:
        assert code == conn.execute(select(t.raters.c.completion_code)).scalar_one()
        n_votes = conn.execute(select(func.count()).select_from(t.votes)).scalar_one()
        n_assign = conn.execute(select(func.count()).select_from(t.assignments)).scalar_one()
        per = conn.execute(select(t.votes.c.assignment_id, func.count()).group_by(t.votes.c.assignment_id)).all()
        delivered = set(conn.execute(select(t.deliveries.c.assignment_id, t.deliveries.c.part)
                                     .where(t.deliveries.c.part < 2)).all())
    assert n_votes == n_assign == total and all(c == 1 for _, c in per)
    assert {aid for aid, _ in per} == {aid for aid, _ in delivered} and len(delivered) == 2 * total
    assert href == f"https://platform.example/done?cc={code}"
    # blinding, as the browser saw it: URLs, headers, bodies
    assert any("/m/" in url for url in texts)
    for url, (headers, body) in texts.items():
        hay = (url + " " + " ".join(f"{k}: {v}" for k, v in headers.items())).lower().encode() + body.lower()
        assert b"browserleak" not in hay and b"browser_study" not in hay, url
