"""Survey hardening (issue 15, items 1-5): a survey that bots and crowds cannot game.

1. Nothing about a medium (size, headers, duration, frame count) tells the clean from the degraded
   copy of a gold pair, or one system from another: a HEAD-size bot is at chance.
2. A vote counts only when both videos were delivered to that rater (distinct bytes, per
   assignment, in the database: two server processes share it) and their duration has passed.
3. One client cannot mint raters or lock a capped study; participant ids are normalised; `start`
   is rate-limited per address in the database.
4. Hostile input (non-ASCII signatures, deep JSON, bare admin tokens, fuzz) answers 4xx, never 5xx.
5. A database that cannot be written is refused at start-up in one sentence.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select, text
from starlette.applications import Starlette
from starlette.testclient import TestClient

from survey import build, reports
from survey import db as t
from survey.app import create_app
from survey.examples import free_port, start_server, write_example_dir
from survey.media import encode_matched, read_video
from survey.store import refusal_summary

ADMIN = "hardening-admin-token"
SYSTEMS = ["sys_one", "sys_two", "sys_three"]


def _study(tmp_path: Path, db: str | None = None, frames: int = 9, n_prompts: int = 4, **options) -> tuple:
    """(engine, summary) of a study over example clips; options override StudyOptions."""
    src = write_example_dir(tmp_path / "src", SYSTEMS, n_prompts=n_prompts, i2v_prompts=1, frames=frames)
    engine = t.make_engine(db or tmp_path / "survey.db")
    summary = build.create_study(engine, "hardening", build.collect_from_dir(src), tmp_path / "media",
                                 build.StudyOptions(**options))
    return engine, summary


def _binomial_tail(k: int, n: int, p: float = 0.5) -> float:
    """P(X >= k) for X ~ Binomial(n, p)."""
    return sum(math.comb(n, j) * p**j * (1 - p) ** (n - j) for j in range(k, n + 1))


def _clean_side(engine, aid: int) -> tuple[bool, str]:  # noqa: ANN001
    a, c = t.assignments, t.comparisons
    with engine.connect() as conn:
        row = conn.execute(select(c.c.is_gold, a.c.left_is_a).join(c, c.c.id == a.c.comparison_id)
                           .where(a.c.id == aid)).one()
    return bool(row.is_gold), "left" if row.left_is_a else "right"


# ---- 1. media do not give pairs away ---------------------------------------------------------
def test_gold_pairs_and_systems_are_not_told_apart_by_size_headers_or_length(tmp_path):
    engine, summary = _study(tmp_path, pairs_per_rater=1, gold_per_rater=2, gold_items=4, require_delivery=False,
                             min_watch_fraction=0.0, max_raters_per_client=None, start_burst=None)
    root = Path(summary["media_dir"])
    m = t.media
    with engine.connect() as conn:
        media = {r.id: r for r in conn.execute(select(m).where(m.c.duration_s.is_not(None)))}
        comps = conn.execute(select(t.comparisons)).all()
        by_item: dict[int, set[int]] = {}
        for c in comps:
            for mid in (c.media_a, c.media_b):
                by_item.setdefault(c.item_id, set()).add((root / media[mid].file).stat().st_size)
    assert sum(c.is_gold for c in comps) == 4
    # every video of an item (each system and the gold copy) has one exact size: no system, and no
    # clean or degraded copy, can be picked out by Content-Length
    assert all(len(sizes) == 1 for sizes in by_item.values()), by_item
    for c in comps:
        a, b = media[c.media_a], media[c.media_b]
        assert a.duration_s == b.duration_s
        frames_a, fps_a = read_video(root / a.file)
        frames_b, fps_b = read_video(root / b.file)  # padded files still decode, every frame
        assert frames_a.shape == frames_b.shape and fps_a == fps_b
        # the padding is small next to the payload (the encoder, not padding, matches the sizes)
        assert min(a.payload_bytes, b.payload_bytes) >= 0.9 * max(a.payload_bytes, b.payload_bytes)
    # a bot that reads sizes with HEAD and picks the smaller video (left on a tie) on gold pairs
    client = TestClient(create_app(engine, ADMIN))
    sid = summary["public_id"]
    passed = shown = 0
    for r in range(30):
        rater = client.post(f"/api/s/{sid}/start", json={"pid": f"bot{r}"}).json()["rater"]
        pair = client.post(f"/api/s/{sid}/next", json={"rater": rater}).json()
        while not pair["done"]:
            heads = {side: client.head(pair[side]) for side in ("left", "right")}
            assert heads["left"].status_code == heads["right"].status_code == 200
            assert dict(heads["left"].headers) == dict(heads["right"].headers)  # identical, byte for byte
            pick = "right" if int(heads["right"].headers["content-length"]) < int(
                heads["left"].headers["content-length"]) else "left"
            is_gold, clean = _clean_side(engine, pair["assignment"])
            if is_gold:
                shown += 1
                passed += pick == clean
            pair = client.post(f"/api/s/{sid}/vote", json={"rater": rater, "assignment": pair["assignment"],
                                                           "token": pair["token"], "answers": [pick]}).json()["next"]
    assert shown >= 50
    # not above chance: a pass rate this high or higher is likely for a coin (one-sided, p > 0.001)
    assert _binomial_tail(passed, shown) > 1e-3, (passed, shown)


def _mp4_payload(path: Path) -> int:
    """Where a file's trailing `free` box starts: what a bot that parses the container would read."""
    data, at = path.read_bytes(), 0
    while at < len(data):
        size, kind = int.from_bytes(data[at: at + 4], "big"), data[at + 4: at + 8]
        if kind == b"free" and at + size == len(data):
            return at
        at += size
    return len(data)


def test_payload_inside_the_file_does_not_rank_gold_copies(tmp_path):
    from fractions import Fraction

    from survey.examples import example_frames
    from survey.media import corrupt_frames

    rng = random.Random(7)
    passed = 0
    n = 24
    for k in range(n):  # a bot that downloads both videos, parses them and picks the smaller payload
        clean = example_frames(k, frames=9, size=32)
        paths = [tmp_path / f"{k}-clean.mp4", tmp_path / f"{k}-bad.mp4"]
        encode_matched([clean, corrupt_frames(clean, seed=k)], paths, Fraction(24), "mp4", rng)
        assert paths[0].stat().st_size == paths[1].stat().st_size
        passed += _mp4_payload(paths[0]) < _mp4_payload(paths[1])
    assert _binomial_tail(passed, n) > 1e-3, (passed, n)


def test_padding_keeps_webm_and_mp4_playable(tmp_path):
    from survey.examples import example_frames
    from survey.media import corrupt_frames

    clean = example_frames(5, frames=12, size=48)
    clips = [clean, example_frames(6, frames=12, size=48), corrupt_frames(clean, seed=3)]
    for fmt in ("mp4", "webm"):
        paths = [tmp_path / f"{k}.{fmt}" for k in range(3)]
        payloads = encode_matched(clips, paths, fps=__import__("fractions").Fraction(24), fmt=fmt)
        sizes = {p.stat().st_size for p in paths}
        assert len(sizes) == 1 and sizes.pop() > max(payloads)
        for path in paths:
            frames, fps = read_video(path)
            assert frames.shape == (12, 48, 48, 3) and fps == 24


# ---- 2. server-side watch gate ---------------------------------------------------------------
def test_votes_need_both_videos_delivered_and_watched_across_two_servers(tmp_path):
    # clips last 2 s: long enough that a loaded 2-core machine answers "too fast" in time
    engine, summary = _study(tmp_path, frames=48, n_prompts=2, pairs_per_rater=2, gold_per_rater=0,
                             min_watch_fraction=0.9)
    sid = summary["public_id"]
    with ThreadPoolExecutor(2) as pool:  # two server processes on one database, started side by side
        procs = list(pool.map(lambda _: start_server(tmp_path / "survey.db", admin_token=ADMIN), range(2)))
    try:
        (_, a_url), (_, b_url) = procs
        with httpx.Client(base_url=a_url, timeout=10) as a, httpx.Client(base_url=b_url, timeout=10) as b:
            rater = a.post(f"/api/s/{sid}/start", json={"pid": "P1"}).json()["rater"]
            pair = a.post(f"/api/s/{sid}/next", json={"rater": rater}).json()
            vote = {"rater": rater, "assignment": pair["assignment"], "token": pair["token"], "answers": ["left"]}
            time.sleep(2.0)  # as long as the clips: only delivery is missing now
            res = b.post(f"/api/s/{sid}/vote", json=vote)
            assert res.status_code == 425 and "delivered" in res.json()["error"], res.text
            # headers only, and the first KB fifty times over: still nothing like the whole videos
            for side in ("left", "right"):
                head = a.head(pair[side])
                assert head.status_code == 200 and head.content == b""
                for _ in range(50):
                    part = b.get(pair[side], headers={"Range": "bytes=0-1023"})
                    assert part.status_code == 206 and len(part.content) == 1024
            assert b.post(f"/api/s/{sid}/vote", json=vote).status_code == 425
            # now the whole of both, the left one in two ranges from different servers
            size = int(a.head(pair["left"]).headers["content-length"])
            first = a.get(pair["left"], headers={"Range": f"bytes=0-{size // 2 - 1}"})
            rest = b.get(pair["left"], headers={"Range": f"bytes={size // 2}-"})
            assert first.headers["content-range"] == f"bytes 0-{size // 2 - 1}/{size}"
            whole = a.get(pair["left"]).content
            assert first.content + rest.content == whole and len(whole) == size
            assert b.get(pair["right"]).status_code == 200
            res = a.post(f"/api/s/{sid}/vote", json=vote)  # delivered, but not yet played out
            assert res.status_code == 425 and "played" in res.json()["error"], res.text
            time.sleep(1.9)
            res = b.post(f"/api/s/{sid}/vote", json=vote)
            assert res.status_code == 200, res.text
            # X-Forwarded-For from a loopback client does not make it a new address: P1 plus two more
            # raters fill this address's cap (3), whatever the header says
            codes = [a.post(f"/api/s/{sid}/start", json={"pid": f"spoof{k}"},
                            headers={"X-Forwarded-For": f"203.0.113.{k}"}).status_code for k in range(5)]
            assert codes == [200, 200, 429, 429, 429], codes
            # a media URL is signed per assignment: a forged signature is a 404, like any unknown id
            forged = pair["left"][:-4] + ("AAAA" if not pair["left"].endswith("AAAA") else "BBBB")
            assert a.get(forged).status_code == 404
    finally:
        for proc, _ in procs:
            proc.kill()
            proc.wait()
    with engine.connect() as conn:
        study_id = conn.execute(select(t.studies.c.id)).scalar_one()
        reasons = conn.execute(select(t.refusals.c.reason).order_by(t.refusals.c.id)).scalars().all()
        n_votes = conn.execute(select(func.count()).select_from(t.votes)).scalar_one()
    assert reasons == ["not_delivered", "not_delivered", "too_fast"] and n_votes == 1
    assert refusal_summary(engine, study_id) == {"pid:P1": {"refused": 3, "not_delivered": 2, "too_fast": 1}}
    # the admin status and the export show who was refused
    status = reports.study_status(engine, "hardening")
    assert status["counts"]["refused_raters"] == 1 and status["refused"][0]["rater"] == "pid:P1"
    assert reports.export_votes(engine, "hardening")["rater_refused_votes"].tolist() == [3]


# ---- 3. rater minting and lock-out -----------------------------------------------------------
def test_one_client_cannot_mint_raters_or_lock_out_a_capped_study(tmp_path):
    import uvicorn

    from survey.cli import serve_options

    engine, summary = _study(tmp_path, require_delivery=False, min_watch_fraction=0.0)  # default caps
    app = create_app(engine, ADMIN)
    sid = summary["public_id"]
    bot = TestClient(app, client=("203.0.113.7", 40000))
    statuses = []
    for k in range(60):  # no cookie kept, a new pid each time: one address all the same (cap 3, burst 10)
        bot.cookies.clear()
        body = {"pid": f"minted{k}"} if k % 2 else {}
        statuses.append(bot.post(f"/api/s/{sid}/start", json=body).status_code)
    with engine.connect() as conn:
        n_raters = conn.execute(select(func.count()).select_from(t.raters)).scalar_one()
    assert n_raters <= 3 and set(statuses) == {200, 429}, (n_raters, set(statuses))
    # someone else on another address is not locked out
    other = TestClient(app, client=("198.51.100.2", 40000))
    assert other.post(f"/api/s/{sid}/start", json={"pid": "REAL_1"}).status_code == 200
    # ids are normalised: a trailing newline, spaces or full-width letters are the same participant
    first = other.post(f"/api/s/{sid}/start", json={"pid": "REAL_1\n"}).json()["rater"]
    for variant in (" REAL_1 ", "ＲＥＡＬ＿１", "REAL_1\r\n"):
        assert other.post(f"/api/s/{sid}/start", json={"pid": variant}).json()["rater"] == first
    # `serve --forwarded-allow-ips`: behind the named proxy each rater counts from their own address
    # (X-Forwarded-For); from anyone else the header is ignored, so it cannot spoof the cap
    args = argparse.Namespace(host="127.0.0.1", port=0, log_level="warning", forwarded_allow_ips="127.0.0.1")
    config = uvicorn.Config(app, **serve_options(args))
    config.load()
    for client, expected in ((("127.0.0.1", 40000), [200] * 5), (("198.51.100.9", 40000), [200] * 3 + [429] * 2)):
        behind = TestClient(config.loaded_app, client=client)
        codes = []
        for k in range(5):
            behind.cookies.clear()
            codes.append(behind.post(f"/api/s/{sid}/start", json={"pid": f"PROXIED{client[0]}-{k}"},
                                     headers={"X-Forwarded-For": f"192.0.2.{k + 1}"}).status_code)
        assert codes == expected, (client, codes)
    assert serve_options(argparse.Namespace(host="h", port=1, log_level="warning",
                                            forwarded_allow_ips=None))["proxy_headers"] is False


def test_capped_study_counts_voters_and_needs_a_participant_id(tmp_path):
    engine, summary = _study(tmp_path, max_raters=2, require_delivery=False, min_watch_fraction=0.0)
    app = create_app(engine, ADMIN)
    sid = summary["public_id"]
    clients = [TestClient(app, client=(f"192.0.2.{k}", 40000)) for k in range(1, 8)]
    res = clients[0].post(f"/api/s/{sid}/start", json={})
    assert res.status_code == 400 and "participant id" in res.json()["error"]
    # 25 anonymous starts cannot fill the study: they are refused outright
    assert {clients[1].post(f"/api/s/{sid}/start", json={}).status_code for _ in range(25)} == {400}
    # five participants start; starting is not taking a place
    raters = [c.post(f"/api/s/{sid}/start", json={"pid": f"P{k}"}).json()["rater"] for k, c in enumerate(clients[:5])]
    for c, rater in list(zip(clients, raters))[:2]:  # two of them vote: the study is now full
        pair = c.post(f"/api/s/{sid}/next", json={"rater": rater}).json()
        assert c.post(f"/api/s/{sid}/vote", json={"rater": rater, "assignment": pair["assignment"],
                                                  "token": pair["token"], "answers": ["tie"]}).status_code == 200
    late = clients[5].post(f"/api/s/{sid}/start", json={"pid": "LATE"})
    assert late.status_code == 403 and "all the raters" in late.json()["error"]
    # those already admitted carry on
    assert clients[3].post(f"/api/s/{sid}/start", json={"pid": "P3"}).json()["rater"] == raters[3]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_start_is_rate_limited_per_address_in_the_database(tmp_path, backend, request):
    db = request.getfixturevalue("postgres_url") if backend == "postgresql" else None
    engine, summary = _study(tmp_path, db=db, n_prompts=2, max_raters_per_client=None, start_burst=5,
                             start_refill_s=60.0, gold_per_rater=0)
    sid = summary["public_id"]
    # two apps over one database stand for two server processes: the bucket is shared
    apps = [TestClient(create_app(t.make_engine(db or tmp_path / "survey.db"), ADMIN), client=("192.0.2.9", 1))
            for _ in range(2)]
    codes = [apps[k % 2].post(f"/api/s/{sid}/start", json={"pid": f"R{k}"}).status_code for k in range(7)]
    assert codes == [200] * 5 + [429] * 2, codes
    assert TestClient(apps[0].app, client=("192.0.2.10", 1)).post(
        f"/api/s/{sid}/start", json={"pid": "elsewhere"}).status_code == 200  # per address
    with engine.begin() as conn:  # a minute passes for this address's bucket: one token back
        conn.execute(text("UPDATE start_buckets SET at = at - 60"))
    assert apps[1].post(f"/api/s/{sid}/start", json={"pid": "R9"}).status_code == 200
    assert apps[0].post(f"/api/s/{sid}/start", json={"pid": "R10"}).status_code == 429
    engine.dispose()


# ---- 4. hostile input ------------------------------------------------------------------------
def _fuzz_requests(rng: random.Random, sid: str, rater: str, pair: dict) -> list[tuple[str, str, dict, bytes]]:
    """(method, path, headers, body) of many malformed requests, reproducible from `rng`."""
    junk = ["", "é", "\u00ff" * 30, "²", "٣", "\ud7ff", "%00", "..", "/", "\\", "a" * 300, "𝟘𝟙", "\x7f", " ", "\t"]
    ids = [rater, rater.split(".")[0] + "." + "é" * 24, "²." + "A" * 24, "1." + "\u00e9" * 24, "9" * 40 + ".x",
           "", None, 5, [], {}, True, 1e308, "-1.AAAA"]
    tokens = [pair["token"], "é" * 24, "\u2603" * 10, "", None, 0, "A" * 65, "\x00" * 24]
    paths = [f"/api/s/{sid}/start", f"/api/s/{sid}/next", f"/api/s/{sid}/vote", f"/s/{sid}", pair["left"],
             "/m/1.0." + "é" * 24, "/m/" + "9" * 13 + ".0." + "A" * 24, "/m/%00", "/api/admin/studies",
             "/api/admin/studies/%00/status", "/api/admin/studies/hardening/export", "/s/%00%00%00%00",
             "/api/s/%C3%A9%C3%A9%C3%A9%C3%A9/start", "/static/%2e%2e/app.py"]
    nested = [b"[" * n + b"]" * n for n in (2500, 5000)] + [b'{"a":' * 3000 + b"1" + b"}" * 3000]
    out = []
    for _ in range(400):
        body: object = {"rater": rng.choice(ids), "assignment": rng.choice([pair["assignment"], -1, 2**70, "1", None,
                                                                            1.5, True]),
                        "token": rng.choice(tokens), "answers": rng.choice([["left"], ["é"], [None], "left", [[]] * 3]),
                        "elapsed_ms": rng.choice([1, -1, float("nan"), 1e400, "x", None]),
                        "pid": rng.choice(junk + ["P1\n", "Ｐ１"])}
        raw = rng.choice([json.dumps(body).encode(), rng.choice(nested), rng.choice(junk).encode("utf-8", "replace"),
                          bytes(rng.randrange(256) for _ in range(rng.randrange(64))), b"null", b"[]", b"\"x\""])
        headers = {"content-type": rng.choice(["application/json", "text/plain", "\u00e9"])}
        if rng.random() < 0.3:
            headers["range"] = rng.choice(["bytes=0-", "bytes=-0", "bytes=5-2", "bytes=" + "9" * 30 + "-",
                                           "bytes=0-1,4-9", "items=1-2", "bytes=999999-", "bytes=\u00e9-"])
        if rng.random() < 0.3:
            headers["authorization"] = rng.choice([ADMIN, "Bearer", "Bearer  " + ADMIN, "bearer " + ADMIN,
                                                   "Bearer \u00e9\u00e9", "Basic x", ""])
        if rng.random() < 0.2:
            headers["cookie"] = rng.choice(["ltxs_rater=\u00e9\u00e9", "ltxs_rater=" + "A" * 5000, "=;=;", "ltxs_rater"])
        if rng.random() < 0.2:
            headers["content-length"] = rng.choice(["-1", "1e3", "٣", "99999999999999999999"])
        path = rng.choice(paths) + rng.choice(["", "", "?pid=\u00e9", "/x", "%ff"])
        out.append((rng.choice(["GET", "POST", "POST", "HEAD", "PUT"]), path, headers, raw))
    return out


def test_hostile_input_gets_4xx_not_500(tmp_path):
    engine, summary = _study(tmp_path, n_prompts=2, require_delivery=False, min_watch_fraction=0.0,
                             max_raters_per_client=None, start_burst=None)
    client = TestClient(create_app(engine, ADMIN), raise_server_exceptions=False)
    sid = summary["public_id"]
    rater = client.post(f"/api/s/{sid}/start", json={"pid": "H1"}).json()["rater"]
    pair = client.post(f"/api/s/{sid}/next", json={"rater": rater}).json()
    rid = rater.split(".")[0]

    def one_sentence(res: httpx.Response) -> None:
        message = res.json()["error"]
        assert message.endswith(".") and ". " not in message, message

    # the review's cases, one by one
    for body in ({"rater": f"{rid}." + "é" * 24}, {"rater": f"{rid}." + "\u2603" * 24}):
        res = client.post(f"/api/s/{sid}/next", json=body)
        assert res.status_code == 403, res.text
        one_sentence(res)
    res = client.post(f"/api/s/{sid}/vote", json={"rater": rater, "assignment": pair["assignment"],
                                                  "token": "é" * 24, "answers": ["left"]})
    assert res.status_code == 403, res.text
    for depth in (2500, 5000):
        raw = b"[" * depth + b"]" * depth
        assert len(raw) <= 16 * 1024
        res = client.post(f"/api/s/{sid}/vote", content=raw, headers={"content-type": "application/json"})
        assert res.status_code == 400, res.text
        one_sentence(res)
    assert client.get("/api/admin/studies", headers={"authorization": f"Bearer {ADMIN}"}).status_code == 200
    for header in (ADMIN, f"bearer {ADMIN}", f"Bearer  {ADMIN}", f"Token {ADMIN}", f"{ADMIN}Bearer "):
        res = client.get("/api/admin/studies", headers={"authorization": header})
        assert res.status_code == 401, header
    # then many malformed requests at random; the vote and next-pair requests that survey.app.SurveyApp answers
    # before Starlette must get what Starlette's own routes answer, byte for byte (`plain` skips that shortcut)
    async def starlette_only(scope, receive, send) -> None:  # noqa: ANN001 - ASGI
        await Starlette.__call__(client.app, scope, receive, send)

    plain = TestClient(starlette_only, raise_server_exceptions=False)
    again = [c.post(f"/api/s/{sid}/next", json={"rater": rater}) for c in (client, plain)]  # the open pair, twice
    assert again[0].status_code == 200 and len({(tuple(r.headers.items()), r.content) for r in again}) == 1
    rng = random.Random(15)
    failures, compared = [], 0
    for method, path, headers, raw in _fuzz_requests(rng, sid, rater, pair):
        request = dict(headers={k: v.encode("utf-8") for k, v in headers.items()}, content=raw)
        res = client.request(method, path, **request)
        if method == "POST" and path.split("?")[0].endswith(("/vote", "/next")) and res.status_code != 200:  # nothing written
            same = plain.request(method, path, **request)
            assert (same.status_code, same.headers.items(), same.content) == (
                res.status_code, res.headers.items(), res.content), (path, raw[:80])
            compared += 1
        if res.status_code >= 500:
            failures.append((method, path, headers, raw[:80], res.status_code, res.text[:200]))
        elif res.status_code >= 400 and method != "HEAD" and "json" in res.headers.get("content-type", ""):
            one_sentence(res)
    assert not failures, failures[:5]
    assert compared >= 10
    # and the server still serves a genuine vote
    res = client.post(f"/api/s/{sid}/vote", json={"rater": rater, "assignment": pair["assignment"],
                                                  "token": pair["token"], "answers": ["left"]})
    assert res.status_code in (200, 409), res.text


# ---- 5. unwritable database ------------------------------------------------------------------
def _read_only_url(path: Path) -> str:
    return f"sqlite:///file:{path}?mode=ro&uri=true"


def test_unwritable_database_is_refused_at_start(tmp_path, postgres_url, capsys):
    from ablations.cli import main as ltxlab
    from survey.store import check_media

    engine, summary = _study(tmp_path, n_prompts=2)
    engine.dispose()
    db = tmp_path / "survey.db"
    # `ltxlab survey serve` exits 2 with that one sentence instead of serving 500s
    port = free_port()
    done = subprocess.run([sys.executable, "-m", "ablations.cli", "survey", "serve", "--db", _read_only_url(db),
                           "--port", str(port), "--admin-token", ADMIN], capture_output=True, text=True, timeout=30)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and len(lines) == 1 and "cannot be written" in lines[0], done.stderr[-2000:]
    for url in (_read_only_url(db), postgres_url + "?options=-c%20default_transaction_read_only%3Don"):
        if "postgresql" in url:
            t.make_engine(postgres_url).dispose()  # the schema exists; the connection is read-only
        ro = t.make_engine(url, create_schema=False)
        with pytest.raises(t.DatabaseNotWritable) as caught:
            create_app(ro, ADMIN)
        message = str(caught.value)
        assert "cannot be written" in message and message.count(". ") == 0 and message.endswith("."), message
        ro.dispose()
    # an older schema (a column missing) is refused too, before any request could fail on it
    old = tmp_path / "old.db"
    t.make_engine(old).dispose()
    with t.make_engine(old).begin() as conn:
        conn.execute(text("ALTER TABLE raters DROP COLUMN client_addr"))
    with pytest.raises(t.DatabaseNotWritable, match="older"):
        t.check_writable(t.make_engine(old, create_schema=False))
    # a missing, truncated or altered media file would leave every rater of its pair refused forever:
    # `serve` checks every file against the size and sha256 recorded at create and names the first bad one
    assert check_media(engine) == len(list(Path(summary["media_dir"]).iterdir()))
    video = sorted(Path(summary["media_dir"]).glob("*.mp4"))[0]
    good = video.read_bytes()

    def serve() -> str:
        assert ltxlab(["survey", "serve", "--db", str(db), "--port", "1"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and str(video) in err
        return err

    video.write_bytes(good[:2000])  # an interrupted copy
    assert f"is 2000 bytes, not the {len(good)} written at create" in serve()
    video.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))  # same size, other bytes
    assert "has changed since create" in serve()
    video.unlink()
    assert "is missing; copy the study's media folder whole to" in serve()
    assert ltxlab(["survey", "serve", "--db", str(db), "--forwarded-allow-ips", "nginx"]) == 2
    assert "'nginx' is neither" in capsys.readouterr().err
