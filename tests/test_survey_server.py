"""Survey against a real uvicorn subprocess: blinding of everything a rater receives, SIGKILL durability.

Both run on SQLite with one server process and on several worker processes, SQLite and a real
PostgreSQL server (tests/_postgres.py): each `server` parameter is (database, workers).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from survey import build
from survey import db as t
from survey.examples import start_server, write_example_dir

# distinctive names, so that a substring hit can only be a leak
SYSTEMS = ["leakcheck_alpha", "leakcheck_beta", "leakcheck_gamma"]
STUDY = "leakcheck_study_name"


def database(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A fresh survey database: a SQLite file, or a new database on the session's PostgreSQL server."""
    return str(tmp_path / "survey.db") if kind == "sqlite" else request.getfixturevalue("postgres_url")


def _make(tmp_path: Path, systems=SYSTEMS, n_prompts: int = 3, db: str | None = None, **options) -> tuple[str, dict]:
    src = write_example_dir(tmp_path / "src", systems, n_prompts=n_prompts, i2v_prompts=1)
    db = db or str(tmp_path / "survey.db")
    # rater loops from one address, voting without fetching media: lift the per-client caps and the watch gate
    opts = dict(pairs_per_rater=4, gold_per_rater=1, min_watch_fraction=0.0, require_delivery=False,
                max_raters_per_client=None, start_burst=None)
    opts.update(options)
    summary = build.create_study(t.make_engine(db), STUDY, build.collect_from_dir(src), tmp_path / "media",
                                 build.StudyOptions(**opts))
    return db, summary


def _leaks(text: str) -> list[str]:
    low = text.lower()
    return [s for s in SYSTEMS + [STUDY, "leakcheck"] if s.lower() in low]


@pytest.mark.parametrize("server", [("sqlite", 1), ("postgres", 2)], ids=["sqlite-1", "postgres-2"])
def test_nothing_a_rater_receives_names_a_system(tmp_path, request, server):
    kind, workers = server
    db, summary = _make(tmp_path, db=database(kind, tmp_path, request), require_delivery=True)
    proc, base = start_server(db, workers=workers)
    try:
        with httpx.Client(base_url=base) as client:
            seen: list[tuple[str, httpx.Response]] = []

            def get(url: str) -> httpx.Response:
                res = client.get(url)
                seen.append((url, res))
                return res

            page = get(f"/s/{summary['public_id']}?pid=P7")
            assert page.status_code == 200
            for asset in ("/static/app.js", "/static/style.css"):
                assert get(asset).status_code == 200
            res = client.post(f"/api/s/{summary['public_id']}/start", json={"pid": "P7"})
            seen.append(("start", res))
            rater = res.json()["rater"]
            res = client.post(f"/api/s/{summary['public_id']}/next", json={"rater": rater})
            pair = res.json()
            seen.append(("next", res))
            while not pair["done"]:
                for url in (pair["left"], pair["right"], pair["image"]):
                    if url:
                        media = get(url)
                        assert media.status_code == 200
                        assert media.headers["content-type"] in ("video/mp4", "image/png")
                        assert "content-disposition" not in media.headers
                res = client.post(f"/api/s/{summary['public_id']}/vote", json={
                    "rater": rater, "assignment": pair["assignment"], "token": pair["token"], "answers": ["left"]})
                seen.append(("vote", res))
                pair = res.json()["next"]
        assert len(seen) > 10
        assert pair["done"] and pair["completion_code"]  # every vote passed the server-side watch gate
        for url, res in seen:
            assert not _leaks(url) and not _leaks(str(res.url)), url
            assert not _leaks(" ".join(f"{k}: {v}" for k, v in res.headers.items())), (url, res.headers)
            body = res.content
            assert not any(s.encode() in body for s in SYSTEMS + [STUDY]), url
            if res.headers.get("content-type", "").startswith(("text/", "application/json")):
                assert not _leaks(res.text), url
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _rater_loop(base: str, sid: str, pid: str, acked: list, stop: threading.Event) -> None:
    """One rater voting as fast as it can; appends (assignment id) only after a 200 reply."""
    try:
        # generous timeout: on a loaded machine a worker holding SQLite's write lock can be descheduled
        with httpx.Client(base_url=base, timeout=30) as client:
            rater = client.post(f"/api/s/{sid}/start", json={"pid": pid}).json()["rater"]
            pair = client.post(f"/api/s/{sid}/next", json={"rater": rater}).json()
            while not pair["done"] and not stop.is_set():
                res = client.post(f"/api/s/{sid}/vote", json={
                    "rater": rater, "assignment": pair["assignment"], "token": pair["token"], "answers": ["tie"]})
                if res.status_code != 200:
                    return
                acked.append(pair["assignment"])  # the server acknowledged: it must be on disk
                pair = res.json()["next"]
    except (httpx.HTTPError, OSError, ValueError):
        return  # the server died under us: whatever was acknowledged is already recorded


@pytest.mark.slow
@pytest.mark.parametrize("server", [("sqlite", 1), ("sqlite", 2), ("postgres", 2)],
                         ids=["sqlite-1", "sqlite-2", "postgres-2"])
def test_sigkill_loses_no_acknowledged_vote(tmp_path, request, server):
    kind, workers = server
    systems = [f"sys{k}" for k in range(5)]  # 10 system pairs x 4 prompts: 40 comparisons, 320 votes for 8 raters
    db, summary = _make(tmp_path, systems=systems, n_prompts=4, pairs_per_rater=40, gold_per_rater=0,
                        db=database(kind, tmp_path, request))
    proc, base = start_server(db, workers=workers)
    acked: list[int] = []
    stop = threading.Event()
    threads = [threading.Thread(target=_rater_loop, args=(base, summary["public_id"], f"r{k}", acked, stop))
               for k in range(8)]
    for th in threads:
        th.start()
    deadline = time.monotonic() + 60
    while len(acked) < 150 and time.monotonic() < deadline:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)  # mid-stream, every server process at once: votes are still coming in
    proc.wait()
    stop.set()
    for th in threads:
        th.join(timeout=10)
    assert len(acked) >= 150, f"only {len(acked)} votes acknowledged in 60 s"
    acked_ids = set(acked)
    engine = t.make_engine(db)  # opening replays the WAL
    with engine.connect() as conn:
        stored = set(conn.execute(select(t.votes.c.assignment_id)).scalars())
        n_votes = conn.execute(select(func.count()).select_from(t.votes)).scalar_one()
    engine.dispose()
    missing = acked_ids - stored
    print(f"acknowledged {len(acked_ids)}, stored {len(stored)} ({n_votes} rows), lost {len(missing)}")
    assert not missing
    assert n_votes == len(stored)  # one row per assignment: exactly once
    assert len(stored) - len(acked_ids) <= len(threads)  # at most one in-flight commit per rater unacknowledged
    # the study carries on after a restart (a new rater: r0 may have seen every pair already)
    proc, base = start_server(db, workers=workers)
    try:
        with httpx.Client(base_url=base) as client:
            rater = client.post(f"/api/s/{summary['public_id']}/start", json={"pid": "late"}).json()["rater"]
            pair = client.post(f"/api/s/{summary['public_id']}/next", json={"rater": rater}).json()
            assert pair["done"] is False
            res = client.post(f"/api/s/{summary['public_id']}/vote", json={
                "rater": rater, "assignment": pair["assignment"], "token": pair["token"], "answers": ["left"]})
            assert res.status_code == 200
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()


def test_a_held_sqlite_write_lock_stalls_no_other_request(tmp_path):
    """A vote that meets another process's write lock waits off the event loop, then counts once.

    SQLite's busy handler sleeps inside the call: run on the event loop, it froze every request of
    that server process for as long as another process wrote (a page load waited out the lock).
    """
    import sqlite3

    db, summary = _make(tmp_path)
    sid = summary["public_id"]
    proc, base = start_server(db)
    holder = sqlite3.connect(db, isolation_level=None)
    try:
        with httpx.Client(base_url=base, timeout=30) as client:
            rater = client.post(f"/api/s/{sid}/start", json={"pid": "P1"}).json()["rater"]
            pair = client.post(f"/api/s/{sid}/next", json={"rater": rater}).json()
            assert client.get(f"/s/{sid}").status_code == 200  # the study is loaded: its page needs no database
            holder.execute("BEGIN IMMEDIATE")  # another process writing, for as long as this test says
            result: list[httpx.Response] = []
            voter = threading.Thread(target=lambda: result.append(httpx.post(f"{base}/api/s/{sid}/vote", timeout=30, json={
                "rater": rater, "assignment": pair["assignment"], "token": pair["token"], "answers": ["left"]})))
            voter.start()
            time.sleep(0.5)  # the vote is waiting for the lock now
            began = time.monotonic()
            assert client.get(f"/s/{sid}").status_code == 200
            assert time.monotonic() - began < 2.0, "a page request waited for another process's write lock"
            assert voter.is_alive() and not result  # no vote without the lock
            holder.execute("ROLLBACK")
            voter.join(timeout=20)
            assert result and result[0].status_code == 200, result
    finally:
        holder.close()
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()
    engine = t.make_engine(db)
    with engine.connect() as conn:
        assert conn.execute(select(t.votes.c.assignment_id)).scalars().all() == [pair["assignment"]]
    engine.dispose()


def test_a_sqlite_write_waits_in_place_for_a_brief_lock_and_gives_up_on_a_long_one(tmp_path):
    """Another process's lock held for a moment: the write waits in place and counts; held on: WriteLockBusy.

    Raising WriteLockBusy at once sent the retry to the back of the event loop's queue: with 2
    workers a third of the writes met the other's lock, and the retries made vote p99 135-280 ms.
    """
    import sqlite3

    from survey.store import LOCK_SPIN_S, Store, WriteLockBusy

    db, summary = _make(tmp_path)
    engine = t.make_engine(db)
    store = Store(engine)
    store.wait_for_lock = False  # as the server runs SQLite calls: on its event loop
    state = store.study(summary["public_id"])
    rid = store.rater_id(state, store.start(state, "pid:P1", "pid")["rater"])
    pair = store.next_pair(state, rid)
    vote = {"assignment": pair["assignment"], "token": pair["token"], "answers": ["left"]}
    holder = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    try:
        holder.execute("BEGIN IMMEDIATE")  # another process's write of a few milliseconds
        releaser = threading.Timer(LOCK_SPIN_S / 5, holder.execute, ["ROLLBACK"])
        releaser.start()
        following = store.vote(state, rid, vote)["next"]  # no WriteLockBusy
        # the vote can get the lock while the timer's execute is still returning: one connection used from two
        # threads at once can crash the sqlite3 module (a segfault, seen under load)
        releaser.join()
        holder.execute("BEGIN IMMEDIATE")  # a writer that keeps the lock
        began = time.monotonic()
        with pytest.raises(WriteLockBusy):
            store.vote(state, rid, {"assignment": following["assignment"], "token": following["token"],
                                    "answers": ["right"]})
        assert time.monotonic() - began >= LOCK_SPIN_S
        holder.execute("ROLLBACK")
    finally:
        holder.close()
    with engine.connect() as conn:  # the first vote once, the refused one not at all
        assert conn.execute(select(t.votes.c.assignment_id)).scalars().all() == [pair["assignment"]]
    engine.dispose()


def _before_write(steps, action):  # noqa: ANN001, ANN202 - a store operation's Read/Write generator
    """The store operation `steps`, with `action(write)` run as it hands over its first Write (another process racing it)."""
    from survey.store import Write

    def first_write(step) -> None:  # noqa: ANN001
        nonlocal action
        if isinstance(step, Write) and action is not None:
            action, _ = None, action(step)

    return (yield from _observed(steps, first_write))


def _observed(steps, on_step):  # noqa: ANN001, ANN202 - a store operation's Read/Write generator
    """The store operation `steps`, with `on_step(step)` called as it hands over each Read or Write."""
    reply, error = None, None
    while True:
        try:
            step = steps.throw(error) if error is not None else steps.send(reply)
        except StopIteration as done:
            return done.value
        on_step(step)
        error = None
        try:
            reply = yield step
        except Exception as exc:  # noqa: BLE001 - handed back to the operation, which decides
            error = exc


@pytest.mark.parametrize("driver", ["sqlite", "postgres-thread", "postgres-loop"])
def test_a_vote_and_its_next_pair_commit_together_on_every_driver(tmp_path, request, driver):
    """The watch gate's refusal is kept; a vote whose next pair loses a race to another process is not.

    On PostgreSQL the server runs votes on its event loop (survey.db.AsyncPostgres), where the
    vote and the next pair are one data-modifying statement: it must be as atomic as the
    transaction the other drivers use, and map each unique constraint to its own 409. A vote on
    pairs remembered from the rater's last request that went stale (a pair served elsewhere)
    is decided again on fresh rows: counted once, and the pair served elsewhere comes next.
    """
    import asyncio

    from survey.db import AsyncPostgres
    from survey.store import ApiError, Store

    db, summary = _make(tmp_path, db=database(driver.split("-")[0], tmp_path, request), require_delivery=True,
                        gold_per_rater=0)
    engine = t.make_engine(db, create_schema=False)
    store, loop_pool = Store(engine), AsyncPostgres(engine.url) if driver == "postgres-loop" else None
    state = store.study(summary["public_id"])
    rid = store.rater_id(state, store.start(state, "pid:P1", "pid")["rater"])
    a = t.assignments

    def run(steps):  # noqa: ANN001, ANN202
        if loop_pool is None:
            return store._run(steps)
        return asyncio.run(loop_pool.run(steps, store.integrity_errors))

    def vote(pair: dict, race_at: int | None = None, known: bool = True) -> dict:
        steps = store.vote_steps(state, rid, {"assignment": pair["assignment"], "token": pair["token"],
                                              "answers": ["left"]}, known=known)
        return run(_before_write(steps, lambda _write: race(race_at)) if race_at is not None else steps)

    def deliver(pair: dict) -> None:
        with engine.connect() as conn:
            cid = conn.execute(select(a.c.comparison_id).where(a.c.id == pair["assignment"])).scalar_one()
        for part in (0, 1):  # both videos, whole
            store.record_delivery(pair["assignment"], part, 0, max(state.payloads[m] for m in state.comp_media[cid]),
                                  time.time())

    def race(position: int) -> None:  # another process serves this rater's pair at `position` first
        with engine.begin() as conn:
            seen = set(conn.execute(select(a.c.comparison_id).where(a.c.rater_id == rid)).scalars())
            free = next(c for c in state.comparison_list if c.id not in seen)
            conn.execute(a.insert().values(study_id=state.id, rater_id=rid, comparison_id=free.id, position=position,
                                           left_is_a=True, served_at=time.time()))

    def stored() -> list[int]:
        with engine.connect() as conn:
            return sorted(conn.execute(select(t.votes.c.assignment_id)).scalars())

    def served_at(position: int) -> int:
        with engine.connect() as conn:
            return conn.execute(select(a.c.id).where(a.c.position == position)).scalar_one()

    first = run(store.next_steps(state, rid))
    with pytest.raises(ApiError) as refused:  # nothing delivered yet: refused, and the refusal recorded
        vote(first)
    assert refused.value.status == 425
    deliver(first)
    second = vote(first)["next"]
    with pytest.raises(ApiError, match="already has your vote") as again:
        vote(first)
    assert again.value.status == 409
    deliver(second)
    with pytest.raises(ApiError, match="already fetching a pair") as lost:  # rows read afresh, then the race
        vote(second, race_at=2, known=False)
    assert lost.value.status == 409 and stored() == [first["assignment"]]  # the losing vote left nothing
    third = vote(second)["next"]  # counted now; the racer's pair is this rater's open one
    assert third["assignment"] == served_at(2) and stored() == sorted([first["assignment"], second["assignment"]])
    deliver(third)
    fourth = vote(third, race_at=3)["next"]  # remembered rows, stale once the race is done: decided afresh
    assert fourth["assignment"] == served_at(3)
    assert stored() == sorted([first["assignment"], second["assignment"], third["assignment"]])
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(t.refusals)).scalar_one() == 1
    engine.dispose()


def test_a_pick_counts_as_served_while_its_write_is_awaited(tmp_path):
    """Requests that run while a pick's write is awaited (PostgreSQL on the event loop) must see it as served,
    or they all choose the same least-served pair; a write that fails takes the count back."""
    from survey.store import ApiError, Store

    db, summary = _make(tmp_path, gold_per_rater=0)
    engine = t.make_engine(db, create_schema=False)
    store = Store(engine)
    state = store.study(summary["public_id"])
    rid = store.rater_id(state, store.start(state, "pid:P1", "pid")["rater"])
    pending: list[tuple[int, int]] = []  # (picked comparison, its served count as the write is handed over)

    def watch(steps, race=False):  # noqa: ANN001, ANN202 - a store operation's Read/Write generator
        def record(write) -> None:  # noqa: ANN001 - survey.store.Write
            cid = write.steps[-1][1]["cid"]
            pending.append((cid, state.coverage.served[cid]))
            if race:  # another process serves this rater's next position first
                with engine.begin() as conn:
                    conn.execute(t.assignments.insert().values(
                        study_id=state.id, rater_id=rid, comparison_id=cid, position=0, left_is_a=True,
                        served_at=time.time()))

        return _before_write(steps, record)

    with pytest.raises(ApiError):
        store._run(watch(store.next_steps(state, rid), race=True))
    cid, while_pending = pending[-1]
    assert while_pending == 1 and state.coverage.served[cid] == 0  # reserved, then taken back with the write
    store._run(watch(store.next_steps(state, rid)))  # the racer's pair is open: served again, nothing written
    other = store.rater_id(state, store.start(state, "pid:P2", "pid")["rater"])
    store._run(watch(store.next_steps(state, other)))
    cid, while_pending = pending[-1]
    assert while_pending == 1 and state.coverage.served[cid] == 1  # counted once, when chosen
    engine.dispose()


def test_an_operation_its_driver_abandons_takes_its_pick_back_at_once(tmp_path):
    """A vote retried on fresh rows that then meets another worker's write lock (WriteLockBusy) leaves
    its generator in a reference cycle: its clean-up (taking back the reserved pick) must run as the
    driver gives up, not at a garbage collection, which could come inside `state.lock` and hang the
    server process on its own lock (found hung in the load benchmark, SQLite with 2 workers)."""
    import gc

    from survey.store import Store, WriteLockBusy

    db, summary = _make(tmp_path, gold_per_rater=0)
    engine = t.make_engine(db, create_schema=False)
    store = Store(engine)
    state = store.study(summary["public_id"])
    rid = store.rater_id(state, store.start(state, "pid:P1", "pid")["rater"])
    first = store.next_pair(state, rid)  # remembered: the vote will write without reading first
    with engine.begin() as conn:  # another worker serves this rater's next pair, and it is voted, meanwhile
        free = next(c for c in state.comparison_list if c.id not in {
            cid for (cid,) in conn.execute(select(t.assignments.c.comparison_id)).all()})
        aid = conn.execute(t.assignments.insert().values(
            study_id=state.id, rater_id=rid, comparison_id=free.id, position=1, left_is_a=True,
            served_at=time.time())).inserted_primary_key[0]
        conn.execute(t.votes.insert().values(assignment_id=aid, question=0, choice="tie", created_at=time.time(),
                                             server_elapsed_s=1.0))
    served = sum(state.coverage.served.values())
    writes = [0]
    real_lock = store._write_lock

    def busy_on_retry(conn) -> None:  # noqa: ANN001 - the stale write fails its insert, the retry meets a lock
        writes[0] += 1
        if writes[0] == 2:
            raise WriteLockBusy
        real_lock(conn)

    store._write_lock = busy_on_retry
    gc.disable()
    try:
        with pytest.raises(WriteLockBusy):
            store.vote(state, rid, {"assignment": first["assignment"], "token": first["token"], "answers": ["left"]})
        assert writes[0] == 2 and sum(state.coverage.served.values()) == served  # the retry's pick taken back
        collector = threading.Thread(target=lambda: state.lock.acquire() and (gc.collect(), state.lock.release()),
                                     daemon=True)
        collector.start()  # a collection inside the lock finds nothing left to clean up
        collector.join(timeout=5)
        assert not collector.is_alive(), "a garbage collection inside state.lock hung on the lock"
    finally:
        gc.enable()
    assert sum(state.coverage.served.values()) == served
    engine.dispose()


def test_a_new_raters_first_vote_is_one_write_on_remembered_pairs(tmp_path):
    """The pairs a process remembers after serving a new rater's first pair are that pair alone: the
    first vote writes once, with no read (it wrote position 0 again, failed and was retried)."""
    from survey.store import Read, Store, Write

    db, summary = _make(tmp_path, require_delivery=False, gold_per_rater=0)
    engine = t.make_engine(db, create_schema=False)
    store = Store(engine)
    state = store.study(summary["public_id"])
    rid = store.rater_id(state, store.start(state, "pid:P1", "pid")["rater"])
    pair = store.next_pair(state, rid)
    steps: list[str] = []

    def count(step) -> None:  # noqa: ANN001
        steps.append("read" if isinstance(step, Read) else "write" if isinstance(step, Write) else "?")

    body = {"assignment": pair["assignment"], "token": pair["token"], "answers": ["left"]}
    following = store._run(_observed(store.vote_steps(state, rid, body), count))["next"]
    assert steps == ["write"] and following["position"] == 2
    with engine.connect() as conn:
        assert conn.execute(select(t.votes.c.assignment_id)).scalars().all() == [pair["assignment"]]
    engine.dispose()
