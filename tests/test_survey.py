"""Survey: building studies, the rater API (in process), scheduling, gold pairs, reports, CLI."""

from __future__ import annotations

import json
import random
import shutil
import time
from collections import Counter
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from ablations.cli import main as ltxlab
from survey import build, reports
from survey import db as t
from survey.app import create_app
from survey.examples import example_frames, write_example_dir, write_example_sweep
from survey.scheduler import Comparison, Coverage, choose

SYSTEMS = ["alphasys_x7q", "betasys_k2m", "gammasys_p9z"]
ADMIN = "secret-admin"


def _study(tmp_path: Path, name: str = "st", **options) -> tuple:
    src = write_example_dir(tmp_path / "src", SYSTEMS, n_prompts=4, i2v_prompts=1)
    engine = t.make_engine(tmp_path / "survey.db")
    # many raters from one test client: the per-client caps and start rate limit are tested in
    # test_survey_hardening.py
    opts = dict(pairs_per_rater=5, gold_per_rater=2, min_watch_fraction=0.0, max_raters_per_client=None,
                start_burst=None)
    opts.update(options)
    summary = build.create_study(engine, name, build.collect_from_dir(src), tmp_path / "media",
                                 build.StudyOptions(**opts))
    return engine, summary


def _clean_side(engine, assignment_id: int) -> tuple[bool, str]:
    """(is_gold, side showing the clean video) for an assignment: what a perfect rater would see."""
    a, c = t.assignments, t.comparisons
    with engine.connect() as conn:
        row = conn.execute(select(c.c.is_gold, a.c.left_is_a).join(c, c.c.id == a.c.comparison_id)
                           .where(a.c.id == assignment_id)).one()
    return bool(row.is_gold), "left" if row.left_is_a else "right"


def _run_rater(client: TestClient, engine, public_id: str, pid: str, policy) -> dict:
    """Drive one rater through the API; `policy(pair, is_gold, clean_side)` returns the choice."""
    rater = client.post(f"/api/s/{public_id}/start", json={"pid": pid}).json()["rater"]
    pair = client.post(f"/api/s/{public_id}/next", json={"rater": rater}).json()
    seen = []
    while not pair["done"]:
        seen.append(pair["assignment"])
        for side in ("left", "right"):  # votes count only once both videos were delivered
            assert client.get(pair[side]).status_code == 200
        choice = policy(pair, *_clean_side(engine, pair["assignment"]))
        res = client.post(f"/api/s/{public_id}/vote", json={
            "rater": rater, "assignment": pair["assignment"], "token": pair["token"], "answers": [choice],
            "elapsed_ms": 1234})
        assert res.status_code == 200, res.text
        pair = res.json()["next"]
    return {"rater": rater, "assignments": seen, "done": pair}


def _vote_count(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(t.votes)).scalar_one()


def test_build_from_dir_enumerates_pairs_and_gold(tmp_path):
    engine, summary = _study(tmp_path)
    assert summary["systems"] == sorted(SYSTEMS)
    assert summary["items"] == 4 and summary["comparisons"] == 4 * 3 and summary["gold_pairs"] == 4
    assert summary["tasks"] == ["i2v", "t2v"]
    with engine.connect() as conn:
        items = conn.execute(select(t.items)).all()
        assert sum(i.image_media is not None for i in items) == 1  # the i2v prompt shows its image
        gold = conn.execute(select(t.comparisons).where(t.comparisons.c.is_gold)).all()
        assert all(g.system_a == g.system_b and g.media_a != g.media_b for g in gold)


def test_gold_copy_is_heavily_corrupted(tmp_path):
    from survey.media import corrupt_frames

    frames = example_frames(0, frames=9, size=64)
    bad = corrupt_frames(frames, seed=1)
    assert bad.shape == frames.shape and bad.dtype == np.uint8
    assert np.abs(bad.astype(float) - frames).mean() > 25  # far from the original
    # frame order is shuffled: some frame no longer sits at its own index
    diffs = [np.abs(bad[k].astype(float) - frames[k]).mean() for k in range(9)]
    assert max(diffs) > 20


def test_build_from_sweep_surveys_every_seed_and_clusters_on_the_seed_block(tmp_path):
    """Each variant's video is one trained model: every seed is surveyed, pairs stay within a seed block,
    and the report clusters on the block (a single block would give rates but no verdict)."""
    write_example_sweep(tmp_path / "results", "sw", ["vae.kind=ltx", "vae.kind=conventional"], failed=["broken"],
                        n_prompts=1, seeds=(0, 1))
    sources = build.collect_from_sweep(tmp_path / "results", "sw")
    assert {s.system for s in sources} == {"vae.kind=ltx", "vae.kind=conventional"}  # failed run left out
    assert {s.task for s in sources} == {"t2v", "i2v"}  # recon samples are not surveyed
    assert all(s.image is not None for s in sources if s.task == "i2v")
    variants = ("vae.kind=ltx", "vae.kind=conventional")
    assert Counter((s.system, s.block) for s in sources) == {(v, b): 2 for v in variants for b in (0, 1)}  # every seed
    with pytest.raises(build.StudyError, match="no finished run"):
        build.collect_from_sweep(tmp_path / "results", "sw", ["broken"])
    code = ltxlab(["survey", "create", "s1", "--sweep", "sw", "--results", str(tmp_path / "results"),
                   "--db", str(tmp_path / "x.db"), "--variants", "vae.kind=ltx"])
    assert code == 2  # one variant alone has nothing to compare
    assert ltxlab(["survey", "create", "s1", "--sweep", "nope", "--results", str(tmp_path / "results"),
                   "--db", str(tmp_path / "x.db")]) == 2
    assert ltxlab(["survey", "create", "s1", "--sweep", "sw", "--results", str(tmp_path / "results"),
                   "--db", str(tmp_path / "x.db"), "--question", "Which looks more real?",
                   "--question", "Which follows the text better?", "--pairs-per-rater", "4",
                   "--min-watch-fraction", "0", "--max-raters-per-client", "0", "--start-burst", "0"]) == 0
    engine = t.make_engine(tmp_path / "x.db")
    with engine.connect() as conn:
        config = json.loads(conn.execute(select(t.studies.c.config)).scalar_one())
        assert config["questions"] == ["Which looks more real?", "Which follows the text better?"]
        items = conn.execute(select(t.items.c.task, t.items.c.prompt_id, t.items.c.seed_block)).all()
        assert sorted(items) == [(task, "p000", b) for task in ("i2v", "t2v") for b in (0, 1)]
    client = TestClient(create_app(engine, ADMIN))
    public_id = reports.list_studies(engine)[0]["url"].rsplit("/", 1)[1]
    for r in range(3):
        rater = client.post(f"/api/s/{public_id}/start", json={"pid": f"r{r}"}).json()["rater"]
        pair = client.post(f"/api/s/{public_id}/next", json={"rater": rater}).json()
        while not pair["done"]:
            for side in ("left", "right"):
                client.get(pair[side])
            pair = client.post(f"/api/s/{public_id}/vote", json={
                "rater": rater, "assignment": pair["assignment"], "token": pair["token"],
                "answers": ["left", "tie"]}).json()["next"]
    rep = reports.study_report(engine, "s1", include_flagged=True, n_boot=50)
    assert rep["counts"]["seed_blocks_used"] == [0, 1]
    assert rep["correction"]["clustered_by"][-1] == "training seed block"
    assert (rep["pairwise"]["seed_blocks"] == 2).all() and rep["pairwise"]["p_value"].notna().all()
    assert (rep["overall"]["seed_blocks"] == 2).all()


def test_a_one_seed_sweep_study_reports_rates_but_no_verdict_and_says_why(tmp_path):
    """A study built from a one-seed sweep: one seed block, which is no clustering dimension, so the report gives
    win rates but no test, and the CLI header and the Survey page both say that training noise is not included."""
    from dashboard.views.survey import _correction_caption
    from survey.cli import _correction_line

    write_example_sweep(tmp_path / "results", "sw", ["vae.kind=ltx", "vae.kind=conventional"], n_prompts=2, seeds=(4,))
    assert ltxlab(["survey", "create", "s1", "--sweep", "sw", "--results", str(tmp_path / "results"),
                   "--db", str(tmp_path / "x.db"), "--pairs-per-rater", "4", "--min-watch-fraction", "0",
                   "--max-raters-per-client", "0", "--start-burst", "0", "--gold-per-rater", "0"]) == 0
    engine = t.make_engine(tmp_path / "x.db")
    client = TestClient(create_app(engine, ADMIN))
    public_id = reports.list_studies(engine)[0]["url"].rsplit("/", 1)[1]
    for r in range(4):
        _run_rater(client, engine, public_id, f"r{r}", lambda pair, gold, clean: "left")
    rep = reports.study_report(engine, "s1", include_flagged=True, n_boot=50)
    assert rep["counts"]["seed_blocks_used"] == [4] and _vote_count(engine) > 0
    assert "training seed block" not in rep["correction"]["clustered_by"]
    assert rep["pairwise"]["win_rate"].notna().all() and rep["pairwise"]["p_value"].isna().all()
    assert "no pair or system gets a verdict" in _correction_line(rep)
    caption = _correction_caption(rep)
    assert "training noise is not included and no pair or system gets a verdict" in caption
    assert "training seed block" not in caption


def test_create_refuses_bad_sources_and_options_in_one_sentence_and_leaves_nothing(tmp_path, capsys):
    """Unreadable videos, unmatched files, bad image fields and impossible options are refused before any
    encoding, naming what to fix; a failed create leaves no study and no media behind."""
    src = write_example_dir(tmp_path / "src", SYSTEMS[:2], n_prompts=2, i2v_prompts=1)
    db, media = str(tmp_path / "x.db"), tmp_path / "media"

    def create(*flags: str) -> str:
        assert ltxlab(["survey", "create", "st", "--from-dir", str(src), "--db", db, "--media-dir", str(media),
                       *flags]) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and err.count("\n") == 1
        return err

    for flags, says in ((["--gold-fail-max", "-0.5"], "--gold-fail-max is a share of gold pairs, between 0 and 1"),
                        (["--max-raters", "0"], "--max-raters must be 1 or more"),
                        (["--min-watch-fraction", "-3"], "--min-watch-fraction is a fraction"),
                        (["--gold-per-rater", "50"], "--gold-per-rater must be at most 4")):
        assert says in create(*flags)
    (src / "gammasys" / "unused").mkdir(parents=True)
    (src / "gammasys" / "P000.mp4").write_bytes((src / SYSTEMS[0] / "p000.mp4").read_bytes())
    (src / "gammasys" / "p001.webm").write_bytes(b"x")
    assert "2 file(s) in" in create() and "gammasys/P000.mp4, gammasys/p001.webm" in create()
    shutil.rmtree(src / "gammasys")
    good = (src / SYSTEMS[0] / "p001.mp4").read_bytes()
    (src / SYSTEMS[0] / "p001.mp4").write_bytes(good[: len(good) // 2])  # an interrupted copy
    assert f"{SYSTEMS[0]}/p001.mp4 cannot be read as a video" in create()
    (src / SYSTEMS[0] / "p001.mp4").write_bytes(good)
    (src / "p001.png").unlink()  # the i2v prompt's image
    assert "p001.png cannot be read as an image" in create()
    prompts = (src / "prompts.jsonl").read_text()
    (src / "prompts.jsonl").write_text(prompts.replace('"p001.png"', "5"))
    assert "line 2 is not a JSON object with an 'id' and an optional 'image' path" in create()
    assert not media.exists() or not any(media.iterdir())
    engine = t.make_engine(db)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(t.studies)).scalar_one() == 0
    # a failure while writing (here: the database refuses an insert) removes the half-written media folder
    (src / "prompts.jsonl").write_text(prompts.replace('"image": "p001.png"', '"image": null'))
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TRIGGER no_media BEFORE INSERT ON media BEGIN SELECT RAISE(ABORT, 'x'); END")
    with pytest.raises(Exception, match="x"):
        build.create_study(engine, "st", build.collect_from_dir(src), media)
    assert not any(media.iterdir())


def test_media_names_and_bytes_carry_no_system_name(tmp_path):
    import av

    src = write_example_dir(tmp_path / "src", SYSTEMS, n_prompts=2)
    # a source file whose container metadata names its system: the copy must not
    tagged = src / SYSTEMS[0] / "p000.mp4"
    out = av.open(str(tagged), "w", format="mp4")
    out.metadata["title"] = SYSTEMS[0]
    stream = out.add_stream("libx264", rate=Fraction(24))
    stream.width = stream.height = 64
    stream.pix_fmt = "yuv420p"
    for frame in example_frames(5):
        for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)
    out.close()
    assert SYSTEMS[0].encode() in tagged.read_bytes()
    engine = t.make_engine(tmp_path / "s.db")
    summary = build.create_study(engine, "st", build.collect_from_dir(src), tmp_path / "media",
                                 build.StudyOptions(gold_per_rater=1))
    files = list(Path(summary["media_dir"]).iterdir())
    assert len(files) == 2 * 3 + 2  # six videos, two gold corruptions
    mtimes = {f.stat().st_mtime for f in files}
    assert len(mtimes) == 1  # write order cannot be read off file times
    for f in files:
        assert not any(s in f.name for s in SYSTEMS)
        data = f.read_bytes()
        assert not any(s.encode() in data for s in SYSTEMS), f


def test_rater_flow_records_each_vote_exactly_once(tmp_path):
    engine, summary = _study(tmp_path)
    client = TestClient(create_app(engine, ADMIN))
    run = _run_rater(client, engine, summary["public_id"], "PROLIFIC_1", lambda *_: "left")
    assert len(run["assignments"]) == 5 + 2 and _vote_count(engine) == 7
    with engine.connect() as conn:
        comps = conn.execute(select(t.assignments.c.comparison_id)).scalars().all()
        code = conn.execute(select(t.raters.c.completion_code)).scalar_one()
    assert len(set(comps)) == len(comps)  # never the same pair twice
    assert run["done"]["completion_code"] == code
    # coming back with the same pid resumes as the same rater and gets the same code
    again = client.post(f"/api/s/{summary['public_id']}/start", json={"pid": "PROLIFIC_1"}).json()
    assert again["rater"] == run["rater"]
    done = client.post(f"/api/s/{summary['public_id']}/next", json=again).json()
    assert done == {"done": True, "completion_code": code, "redirect": None}
    # without a pid, a cookie identifies the browser
    cookie_rater = client.post(f"/api/s/{summary['public_id']}/start", json={}).json()["rater"]
    assert client.post(f"/api/s/{summary['public_id']}/start", json={}).json()["rater"] == cookie_rater
    assert cookie_rater != run["rater"]


def test_reload_serves_the_same_open_pair(tmp_path):
    engine, summary = _study(tmp_path)
    client = TestClient(create_app(engine, ADMIN))
    sid = summary["public_id"]
    rater = client.post(f"/api/s/{sid}/start", json={"pid": "r"}).json()
    first = client.post(f"/api/s/{sid}/next", json=rater).json()
    assert client.post(f"/api/s/{sid}/next", json=rater).json() == first


def _bad_requests(client: TestClient, sid: str, rater: str, pair: dict, other: dict) -> list[tuple[str, object, int]]:
    vote = {"rater": rater, "assignment": pair["assignment"], "token": pair["token"], "answers": ["left"]}
    cases = [
        ("forged token", {**vote, "token": "A" * 24}, 403),
        ("token of another assignment", {**vote, "assignment": pair["assignment"] + 1000}, 403),
        ("another rater's pair", {**vote, "assignment": other["assignment"], "token": other["token"]}, 403),
        ("forged rater", {**vote, "rater": "1.AAAAAAAAAAAAAAAAAAAAAAAA"}, 403),
        ("no rater", {k: v for k, v in vote.items() if k != "rater"}, 403),
        ("bad choice", {**vote, "answers": ["middle"]}, 400),
        ("too many answers", {**vote, "answers": ["left", "left"]}, 400),
        ("string assignment", {**vote, "assignment": str(pair["assignment"])}, 400),
        ("negative elapsed", {**vote, "elapsed_ms": -5}, 400),
        ("not an object", [1, 2], 400),
        ("malformed json", b"{not json", 400),
        ("oversized body", {**vote, "pad": "x" * 40_000}, 413),
    ]
    out = []
    for label, body, status in cases:
        if isinstance(body, bytes):
            res = client.post(f"/api/s/{sid}/vote", content=body, headers={"content-type": "application/json"})
        else:
            res = client.post(f"/api/s/{sid}/vote", json=body)
        out.append((label, res, status))
    out.append(("unknown study", client.post("/api/s/NoSuchStudy123/vote", json=vote), 404))
    out.append(("unknown study page", client.get("/s/NoSuchStudy123"), 404))
    for path in ["/m/..%2F..%2Fetc%2Fpasswd", "/m/%2e%2e%2fsurvey.db", "/m/../survey.db", "/m/AAAAAAAAAAAAAAAAAAAAAA",
                 "/m/a.b", "/static/../db.py", "/static/..%2Fdb.py"]:
        out.append((f"media {path}", client.get(path), 404))
    return out


def test_bad_input_is_refused_and_nothing_is_written(tmp_path):
    engine, summary = _study(tmp_path, require_delivery=False)
    client = TestClient(create_app(engine, ADMIN), raise_server_exceptions=False)
    sid = summary["public_id"]
    rater = client.post(f"/api/s/{sid}/start", json={"pid": "a"}).json()["rater"]
    other_rater = client.post(f"/api/s/{sid}/start", json={"pid": "b"}).json()["rater"]
    pair = client.post(f"/api/s/{sid}/next", json={"rater": rater}).json()
    other = client.post(f"/api/s/{sid}/next", json={"rater": other_rater}).json()
    for label, res, status in _bad_requests(client, sid, rater, pair, other):
        assert res.status_code == status, (label, res.status_code, res.text)
        if res.headers.get("content-type", "").startswith("application/json"):
            message = res.json()["error"]
            assert message.endswith(".") and message.count(". ") == 0, (label, message)
        assert _vote_count(engine) == 0, label
    # the server keeps serving: the genuine vote goes through once, the replay is refused
    vote = {"rater": rater, "assignment": pair["assignment"], "token": pair["token"], "answers": ["tie"]}
    assert client.post(f"/api/s/{sid}/vote", json=vote).status_code == 200
    replay = client.post(f"/api/s/{sid}/vote", json=vote)
    assert replay.status_code == 409 and "already" in replay.json()["error"]
    assert _vote_count(engine) == 1
    # a pid with odd characters is refused too
    assert client.post(f"/api/s/{sid}/start", json={"pid": "../../x y"}).status_code == 400


def test_votes_faster_than_the_clips_are_refused(tmp_path):
    engine, summary = _study(tmp_path, min_watch_fraction=0.9)  # clips last 9/24 s
    client = TestClient(create_app(engine, ADMIN))
    sid = summary["public_id"]
    rater = client.post(f"/api/s/{sid}/start", json={"pid": "fast"}).json()["rater"]
    pair = client.post(f"/api/s/{sid}/next", json={"rater": rater}).json()
    for side in ("left", "right"):  # delivered now: the watch clock starts
        assert client.get(pair[side]).status_code == 200
    vote = {"rater": rater, "assignment": pair["assignment"], "token": pair["token"], "answers": ["left"]}
    res = client.post(f"/api/s/{sid}/vote", json=vote)
    assert res.status_code == 425 and _vote_count(engine) == 0
    import time

    time.sleep(0.4)
    assert client.post(f"/api/s/{sid}/vote", json=vote).status_code == 200


def test_a_refused_vote_repeated_in_a_loop_records_a_bounded_number_of_refusals(tmp_path):
    """Every early vote is refused (425), but at most REFUSALS_RECORDED_PER_PAIR are written per pair: a client
    that repeats one cannot grow the database. The server keeps serving: the vote counts once it is on time."""
    from sqlalchemy import func, select

    from survey import db as t
    from survey.store import REFUSALS_RECORDED_PER_PAIR, refusal_summary

    engine, summary = _study(tmp_path, min_watch_fraction=0.9)  # clips last 9/24 s
    client = TestClient(create_app(engine, ADMIN))
    sid = summary["public_id"]
    rater = client.post(f"/api/s/{sid}/start", json={"pid": "loop"}).json()["rater"]
    pair = client.post(f"/api/s/{sid}/next", json={"rater": rater}).json()
    for side in ("left", "right"):
        assert client.get(pair[side]).status_code == 200
    vote = {"rater": rater, "assignment": pair["assignment"], "token": pair["token"], "answers": ["left"]}
    statuses = [client.post(f"/api/s/{sid}/vote", json=vote).status_code for _ in range(REFUSALS_RECORDED_PER_PAIR + 7)]
    assert set(statuses) == {425}
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(t.refusals)).scalar_one() == REFUSALS_RECORDED_PER_PAIR
        study_id = conn.execute(select(t.studies.c.id)).scalar_one()
    assert next(iter(refusal_summary(engine, study_id).values()))["refused"] == REFUSALS_RECORDED_PER_PAIR
    import time

    time.sleep(0.4)
    assert client.post(f"/api/s/{sid}/vote", json=vote).status_code == 200 and _vote_count(engine) == 1


def test_scheduler_balances_pairs_across_raters(tmp_path):
    engine, summary = _study(tmp_path, gold_per_rater=0)
    client = TestClient(create_app(engine, ADMIN))
    for r in range(12):  # 12 raters x 5 pairs = 60 = 5 x 12 comparisons
        _run_rater(client, engine, summary["public_id"], f"r{r}", lambda *_: "tie")
    votes = reports.load_votes(engine, "st")
    per_comparison = votes.groupby("comparison_id").size()
    assert len(per_comparison) == 12 and per_comparison.min() == per_comparison.max() == 5
    pairs = votes.apply(lambda r: tuple(sorted([r.system_a, r.system_b])), axis=1).value_counts()
    assert pairs.max() - pairs.min() <= 1
    assert not votes.duplicated(["rater", "comparison_id"]).any()


def test_adaptive_mode_prefers_the_uncertain_pair():
    comps = [Comparison(id=1, item_id=1, pair=(1, 2), is_gold=False),
             Comparison(id=2, item_id=1, pair=(1, 3), is_gold=False)]
    cov = Coverage()
    for _ in range(20):
        cov.add_vote(comps[0], 1.0)  # (1, 2): settled, system 1 always wins
    for k in range(20):
        cov.add_vote(comps[1], float(k % 2))  # (1, 3): a coin flip
        cov.add_served(comps[1])  # and served more often, so balance alone would pick (1, 2)
    rng = random.Random(0)
    assert choose(comps, cov, set(), set(), rng, adaptive=True).id == 2
    assert choose(comps, cov, set(), set(), rng, adaptive=False).id == 1
    assert choose(comps, cov, {1, 2}, set(), rng) is None


def test_gold_failures_flag_raters_and_reports_exclude_them(tmp_path):
    engine, summary = _study(tmp_path, completion_url="https://example.org/done?cc={code}")
    client = TestClient(create_app(engine, ADMIN))
    sid = summary["public_id"]
    good = lambda pair, gold, clean: clean if gold else "left"  # noqa: E731 - prefers left videos
    bad = lambda pair, gold, clean: ("right" if clean == "left" else "left") if gold else "right"  # noqa: E731
    for r in range(4):
        run = _run_rater(client, engine, sid, f"good{r}", good)
    assert run["done"]["redirect"] == f"https://example.org/done?cc={run['done']['completion_code']}"
    _run_rater(client, engine, sid, "careless", bad)
    rep = reports.study_report(engine, "st", n_boot=50)
    raters = rep["raters"].set_index("rater")
    assert raters.loc["pid:careless", "flagged"] and raters.loc["pid:careless", "gold_failed"] == 2
    assert not raters.drop("pid:careless")["flagged"].any()
    c = rep["counts"]
    assert (c["raters_total"], c["raters_flagged"], c["raters_used"]) == (5, 1, 4)
    assert c["votes_total"] == 5 * 7 and c["votes_gold"] == 10 and c["votes_used"] == 4 * 5
    assert c["votes_excluded_flagged"] == 5
    with_flagged = reports.study_report(engine, "st", include_flagged=True, n_boot=50)
    assert with_flagged["counts"]["votes_used"] == 25
    # the win matrix agrees with a direct count from the export (ties as half)
    ex = reports.export_votes(engine, "st")
    ex = ex[~ex["is_gold"] & ~ex["rater_flagged"]]
    a_name, b_name = SYSTEMS[0], SYSTEMS[1]
    sub = ex[{a_name, b_name} == ex[["system_a", "system_b"]].apply(set, axis=1)]
    expected = ((sub["chosen_system"] == a_name).sum() + 0.5 * sub["chosen_system"].isna().sum()) / len(sub)
    assert rep["win_matrix"].loc[a_name, b_name] == pytest.approx(expected)
    # its CI and test are clustered by rater and by prompt (task + prompt_id), as recomputed here
    from evaluation.bradley_terry import win_rate_test

    sub = sub.assign(score=np.where(sub["chosen_system"] == a_name, 1.0, np.where(sub["chosen_system"].isna(), 0.5, 0.0)))
    direct = win_rate_test(sub["score"], sub["rater"], prompt_clusters=sub["task"] + ":" + sub["prompt_id"])
    row = rep["pairwise"].set_index(["system", "opponent"]).loc[(a_name, b_name)]
    assert (row["ci_low"], row["ci_high"], row["p_value"], row["df"]) == pytest.approx(
        (direct.ci_low, direct.ci_high, direct.p_value, direct.df))
    assert direct.df == min(4, sub["prompt_id"].nunique()) - 1  # 4 raters used, few prompts
    assert rep["correction"] == {"method": "holm", "name": "Holm (family-wise error)", "pairs": 3, "systems": 3,
                                 "alpha": 0.05, "clustered_by": ["rater", "prompt (task + prompt_id)"]}
    assert len(rep["pair_verdicts"]) == 3 and rep["pairwise"]["verdict"].str.endswith(".").all()
    assert rep["win_matrix_ci"].loc[a_name, b_name].startswith(f"{row['win_rate']:.0%} [")
    bh = reports.study_report(engine, "st", n_boot=20, correction="bh")
    assert bh["correction"]["method"] == "bh" and (bh["pairwise"]["p_value"] == rep["pairwise"]["p_value"]).all()
    with pytest.raises(ValueError, match="holm, bh, none"):
        reports.study_report(engine, "st", n_boot=20, correction="bonferroni")
    assert set(rep["bradley_terry"]["system"]) == set(SYSTEMS)
    assert rep["agreement"]["items"] > 0  # 20 real votes on 12 pairs: some pairs have 2+ raters


def test_every_answer_but_the_clean_side_fails_a_gold_pair():
    """An always-"both bad" rater fails every gold pair (else they pass and their votes count as ties)."""
    policies = {"clean": "a", "lazy": "both_bad", "tier": "tie", "wrong": "b"}
    votes = pd.DataFrame([dict(rater=r, question=0, is_gold=gold, outcome=out if gold else "tie",
                               server_elapsed_s=1.0, voted_at=float(k))
                          for r, out in policies.items() for k, gold in enumerate([True, True, False])])
    table = reports.rater_table(votes, 0.25).set_index("rater")
    assert table["gold_failed"].to_dict() == {"clean": 0, "lazy": 2, "tier": 2, "wrong": 2}
    assert table["flagged"].to_dict() == {"clean": False, "lazy": True, "tier": True, "wrong": True}


def test_report_header_says_whether_training_noise_is_included():
    from survey.cli import _correction_line

    def line(blocks: list[int] | None) -> str:
        return _correction_line({"correction": {"method": "holm", "name": "Holm (family-wise error)", "pairs": 1,
                                                "systems": 2, "alpha": 0.05},
                                 "counts": {"raters_used": 9, "prompts_used": 4, "seed_blocks_used": blocks}})

    assert "clustered by rater and by prompt" in line([3]) and "compares seed-3 models only" in line([3])
    assert "no pair or system gets a verdict" in line([3])
    assert "clustered by rater, prompt and seed block (9 raters, 4 prompts, 2 seed blocks" in line([0, 1])
    assert "training noise is included" in line([0, 1])
    assert "the claims are about these models" in line(None)


def test_dashboard_caption_says_whether_training_noise_is_included():
    """The Survey page's caption tells the same story as the report header: one seed block is not a clustering
    dimension and gives no verdict; two or more include training noise; a folder study's systems are fixed models."""
    from dashboard.views.survey import _correction_caption

    def caption(blocks: list[int] | None) -> str:
        clustered = ["rater", "prompt (task + prompt_id)"] + (["training seed block"] if blocks and len(blocks) > 1 else [])
        return _correction_caption({"correction": {"method": "holm", "name": "Holm (family-wise error)", "pairs": 1,
                                                   "systems": 2, "alpha": 0.05, "clustered_by": clustered},
                                    "counts": {"raters_used": 9, "prompts_used": 4, "seed_blocks_used": blocks}})

    one = caption([3])
    assert "training noise is not included and no pair or system gets a verdict" in one
    assert "training noise is included through" not in one and "seed block," not in one.split("(")[0]
    assert "clustered by rater, prompt (task + prompt_id), training seed block (9 raters, 4 prompts, 2 seed block(s)" \
        in caption([0, 1]) and "training noise is included through the seed blocks" in caption([0, 1])
    assert "fixed models" in caption(None)


def test_admin_routes_need_the_token(tmp_path):
    engine, summary = _study(tmp_path)
    client = TestClient(create_app(engine, ADMIN))
    _run_rater(client, engine, summary["public_id"], "x", lambda *_: "left")
    assert client.get("/api/admin/studies").status_code == 401
    assert client.get("/api/admin/studies", headers={"Authorization": "Bearer wrong"}).status_code == 401
    auth = {"Authorization": f"Bearer {ADMIN}"}
    studies = client.get("/api/admin/studies", headers=auth).json()
    assert studies[0]["votes"] == 7 and studies[0]["url"] == f"/s/{summary['public_id']}"
    status = client.get("/api/admin/studies/st/status", headers=auth).json()
    assert status["counts"]["votes"] == 7 and sum(p["votes"] for p in status["votes_per_pair"]) == 5
    csv = client.get("/api/admin/studies/st/export", headers=auth)
    assert csv.status_code == 200 and csv.text.count("\n") == 8
    assert client.get("/api/admin/studies/nope/status", headers=auth).status_code == 404
    assert client.get("/admin").status_code == 200


def test_cli_report_and_export(tmp_path, capsys):
    engine, summary = _study(tmp_path)
    client = TestClient(create_app(engine, ADMIN))
    for r in range(3):
        _run_rater(client, engine, summary["public_id"], f"r{r}", lambda pair, gold, clean: clean if gold else "left")
    db = str(tmp_path / "survey.db")
    assert ltxlab(["survey", "report", "st", "--db", db, "--json", "--n-boot", "50"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["counts"]["votes_used"] == 15 and len(out["bradley_terry"]) == 3
    assert out["correction"]["method"] == "holm" and out["correction"]["pairs"] == 3
    assert {"p_value", "p_adjusted", "significant", "verdict"} <= set(out["pairwise"][0]) <= set(out["pairwise"][-1])
    assert {"p_value", "p_adjusted", "significant", "verdict"} <= set(out["overall"][0])
    assert len(out["win_matrix_ci"]["data"]) == 3
    assert ltxlab(["survey", "report", "st", "--db", db, "--json", "--n-boot", "50", "--correction", "none"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["correction"]["method"] == "none"
    assert all(r["p_adjusted"] == r["p_value"] for r in out["pairwise"])
    assert ltxlab(["survey", "report", "st", "--db", db, "--n-boot", "50", "--correction", "bh"]) == 0
    text = capsys.readouterr().out
    assert "Benjamini-Hochberg (false-discovery rate) correction over 3 pair(s)" in text
    assert "Bradley-Terry (pigeonhole bootstrap over raters and prompts, 95% CI" in text
    assert "the claims are about these models, not about how they were trained" in text  # a folder study
    assert "clustered by rater and by prompt" in text and "Win-rate matrix (row beats column, 95% CI" in text
    verdicts = text.split("Verdicts, one per pair:\n")[1].split("\n\n")[0].splitlines()
    assert len(verdicts) == 3 and all(v.startswith("  - ") for v in verdicts)
    with pytest.raises(SystemExit):  # argparse lists the valid corrections
        ltxlab(["survey", "report", "st", "--db", db, "--correction", "bonferroni"])
    assert "choose from 'holm', 'bh', 'none'" in capsys.readouterr().err
    for fmt in ("csv", "parquet"):
        path = tmp_path / f"votes.{fmt}"
        assert ltxlab(["survey", "export", "st", "--db", db, "--format", fmt, "--out", str(path)]) == 0
        frame = pd.read_csv(path) if fmt == "csv" else pd.read_parquet(path)
        assert len(frame) == 21 and frame["vote_id"].is_unique
        assert {"rater", "system_left", "system_right", "choice", "served_at", "voted_at", "prompt_id", "seed_block"} <= set(frame)
    assert ltxlab(["survey", "report", "nope", "--db", db]) == 2
    assert ltxlab(["survey", "export", "st", "--db", str(tmp_path / "missing.db")]) == 2
    capsys.readouterr()
    for flags, says in ((["--question", "3"], "asks 1 question(s), numbered 0 to 0; got question 3"),
                        (["--n-boot", "0"], "--n-boot must be at least 50")):
        assert ltxlab(["survey", "report", "st", "--db", db, *flags]) == 2
        assert says in capsys.readouterr().err


def test_indexed_choice_is_the_lowest_key_of_all_comparisons():
    """The bucketed pick equals the order defined by keying every comparison, as served counts move."""
    rng = random.Random(7)
    systems, items = range(5), range(12)
    comps = [Comparison(id=10 * i + k, item_id=i, pair=pair, is_gold=False)
             for i in items for k, pair in enumerate((a, b) for a in systems for b in systems if a < b)]
    comps += [Comparison(id=1000 + i, item_id=i, pair=(i % 5, i % 5), is_gold=True) for i in items]
    cov = Coverage()
    for _ in range(40):  # some history before the index is built: it must start from these counts
        cov.add_served(rng.choice(comps))
    for _ in range(600):
        seen = {c.id for c in rng.sample(comps, rng.randrange(0, 30))}
        seen_items = {c.item_id for c in comps if c.id in seen}
        gold = rng.random() < 0.2
        pool = [c for c in comps if c.is_gold == gold and c.id not in seen]
        key = {c.id: (cov.served[c.id], cov.pair_served[c.pair], c.item_id in seen_items, cov.item_served[c.item_id])
               for c in pool}
        picked = choose(comps, cov, seen, seen_items, rng, gold=gold)
        assert picked is not None and key[picked.id] == min(key.values())
        cov.add_served(picked if rng.random() < 0.8 else rng.choice(comps))  # other processes' picks too
    assert choose(comps, cov, {c.id for c in comps}, set(), rng) is None


def test_wal_is_checkpointed_in_the_background_not_in_commits(tmp_path):
    """While the server runs, commits only append to the WAL and a thread moves it into the database."""
    db = tmp_path / "ck.db"
    engine = t.make_engine(db)
    checkpointer = t.WalCheckpointer(engine, every_s=0.05)
    checkpointer.start()
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one() == 0
        size = db.stat().st_size
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE filler (x TEXT)")
            conn.exec_driver_sql("INSERT INTO filler VALUES (?)", [(f"row {k} " * 40,) for k in range(3000)])
        deadline = time.monotonic() + 10
        while db.stat().st_size == size and time.monotonic() < deadline:
            time.sleep(0.05)
        assert db.stat().st_size > size  # the rows reached the database file with no checkpoint by a writer
    finally:
        checkpointer.stop()
    with engine.connect() as conn:  # stopped: connections checkpoint in commits again
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one() == 1000
    engine.dispose()
