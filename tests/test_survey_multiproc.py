"""`ltxlab survey serve --workers N` on SQLite and PostgreSQL: balance and exactly-once across processes.

Also the serve/create command lines: printed links, one-sentence refusals, the anti-gaming flags.

Each request opens a new connection, so one rater's requests land on different worker
processes; the database (unique constraints, not process memory) must keep every vote counted
once and every rater's positions unique, and the scheduler's per-process coverage must still
spread pairs evenly.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from test_survey_server import _make, database

from survey import db as t
from survey.examples import free_port, start_server, write_example_dir

WORKERS = 2
RACERS = 12  # concurrent copies of one request


def _worker_cpu(supervisor: int) -> dict[int, float]:
    """CPU seconds of each worker process in the server's process group (Linux /proc)."""
    out = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[2]) == supervisor and int(stat.parent.name) != supervisor and b"spawn_main" in cmdline:
            out[int(stat.parent.name)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def _client(base: str) -> httpx.Client:
    """A client that opens a new connection for every request (so requests spread over the workers)."""
    return httpx.Client(base_url=base, timeout=30, limits=httpx.Limits(max_keepalive_connections=0))


def _rate(client: httpx.Client, sid: str, pid: str) -> int:
    """One rater votes through all its pairs; returns the votes cast."""
    rater = client.post(f"/api/s/{sid}/start", json={"pid": pid}).json()["rater"]
    pair = client.post(f"/api/s/{sid}/next", json={"rater": rater}).json()
    votes = 0
    while not pair["done"]:
        res = client.post(f"/api/s/{sid}/vote", json={
            "rater": rater, "assignment": pair["assignment"], "token": pair["token"], "answers": ["left"]})
        assert res.status_code == 200, res.text
        votes += 1
        pair = res.json()["next"]
    return votes


def _race(base: str, path: str, body: dict) -> list[httpx.Response]:
    """POST RACERS copies of one request at the same moment, each on its own connection."""
    barrier, out = threading.Barrier(RACERS), []

    def one(client: httpx.Client) -> None:
        barrier.wait()
        out.append(client.post(path, json=body))

    threads = [threading.Thread(target=one, args=(_client(base),)) for _ in range(RACERS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return out


def _served_spread(db: str) -> tuple[int, int]:
    """(max - min assignments over the study's non-gold comparisons, total assignments)."""
    a, c = t.assignments, t.comparisons
    engine = t.make_engine(db, create_schema=False)
    with engine.connect() as conn:
        served = conn.execute(select(func.count(a.c.id)).select_from(c.outerjoin(a, a.c.comparison_id == c.c.id))
                              .where(c.c.is_gold.is_(False)).group_by(c.c.id)).scalars().all()
    engine.dispose()
    return max(served) - min(served), sum(served)


def _check_balance(base: str, sid: str, db: str, supervisor: int) -> None:
    raters, threads = 24, 8
    cpu0 = _worker_cpu(supervisor)
    votes: list[int] = []
    chunks = [[f"B{k}" for k in range(raters) if k % threads == j] for j in range(threads)]
    pool = [threading.Thread(target=lambda c, ids: votes.extend(_rate(c, sid, p) for p in ids), args=(_client(base), ids))
            for ids in chunks]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    assert sum(votes) == raters * 6
    cpu1 = _worker_cpu(supervisor)
    assert len(cpu0) == WORKERS, cpu0
    busy = {pid: cpu1[pid] - cpu0[pid] for pid in cpu0}
    assert all(used > 0.02 for used in busy.values()), busy  # every worker process served part of the load
    spread, total = _served_spread(db)
    print(f"served-count spread with {WORKERS} workers: {spread} over {total} assignments; worker CPU {busy}")
    # one process keeps max - min <= 1 (the rater's unseen pairs permitting); each process balances its own
    # share on top of the counts it last read, so N processes stay within about N + 1; choosing at random
    # would spread ~7 here (24 raters x 6 of 36 comparisons: counts ~ Binomial(24, 1/6))
    assert total == raters * 6
    assert spread <= WORKERS + 2


def _check_exactly_once(base: str, sid: str, db: str) -> None:
    rater = httpx.post(f"{base}/api/s/{sid}/start", json={"pid": "racer"}).json()["rater"]
    nexts = _race(base, f"/api/s/{sid}/next", {"rater": rater})
    codes = Counter(r.status_code for r in nexts)
    assert set(codes) <= {200, 409}, codes
    assert len({r.json()["assignment"] for r in nexts if r.status_code == 200}) == 1  # one pair, however racing
    pair = httpx.post(f"{base}/api/s/{sid}/next", json={"rater": rater}).json()
    body = {"rater": rater, "assignment": pair["assignment"], "token": pair["token"], "answers": ["right"]}
    votes = _race(base, f"/api/s/{sid}/vote", body)
    codes = Counter(r.status_code for r in votes)
    assert codes[200] == 1 and codes[409] == RACERS - 1, codes
    a, v = t.assignments, t.votes
    engine = t.make_engine(db, create_schema=False)
    with engine.connect() as conn:
        rid = int(rater.split(".")[0])
        positions = conn.execute(select(a.c.position).where(a.c.rater_id == rid)).scalars().all()
        rows = conn.execute(select(func.count()).select_from(v).where(v.c.assignment_id == pair["assignment"]))
        assert rows.scalar_one() == 1
    engine.dispose()
    assert sorted(positions) == list(range(len(positions))) and len(positions) == 2  # voted pair + the next one


def _check_survives_restart(base: str, sid: str, server) -> None:  # noqa: ANN001 - _postgres.PostgresServer
    """Votes right after a PostgreSQL restart (every pooled connection of every worker dead) all count."""
    clients = [_client(base) for _ in range(4)]  # fresh connections: both workers' pools get used
    raters = [c.post(f"/api/s/{sid}/start", json={"pid": f"R{k}"}).json()["rater"] for k, c in enumerate(clients)]
    pairs = [c.post(f"/api/s/{sid}/next", json={"rater": r}).json() for c, r in zip(clients, raters)]
    server.restart()
    for _ in range(3):
        for k, (client, rater) in enumerate(zip(clients, raters)):
            res = client.post(f"/api/s/{sid}/vote", json={"rater": rater, "assignment": pairs[k]["assignment"],
                                                         "token": pairs[k]["token"], "answers": ["tie"]})
            assert res.status_code == 200, res.text
            pairs[k] = res.json()["next"]


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_workers_balance_pairs_and_count_each_vote_once(tmp_path, request, kind):
    db, summary = _make(tmp_path, systems=["s0", "s1", "s2", "s3"], n_prompts=6, pairs_per_rater=6, gold_per_rater=0,
                        db=database(kind, tmp_path, request))
    proc, base = start_server(db, workers=WORKERS)
    try:
        _check_balance(base, summary["public_id"], db, proc.pid)
        _check_exactly_once(base, summary["public_id"], db)
        if kind == "postgres":
            _check_survives_restart(base, summary["public_id"], request.getfixturevalue("postgres_server"))
        workers = _worker_cpu(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)  # the supervisor alone: its workers must not outlive it
        proc.wait()
        deadline = time.monotonic() + 20
        while any(_alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [w for w in workers if _alive(w)], "orphaned worker processes keep serving"
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{base}/api/admin/studies", timeout=2)
    finally:
        if proc.poll() is None or any(_alive(w) for w in _worker_cpu(proc.pid)):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _alive(pid: int) -> bool:
    """Running (not gone, not a zombie waiting for its reaper)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _serve(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ablations.cli", "survey", "serve", *args], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def test_serve_prints_rater_and_admin_links(tmp_path):
    db, summary = _make(tmp_path)
    port = free_port()
    proc = _serve("--db", db, "--port", str(port), "--workers", "2")
    try:
        lines = [proc.stdout.readline() for _ in range(2)]
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert lines[0].strip() == f"Rater links: http://127.0.0.1:{port}/s/{summary['public_id']} (leakcheck_study_name)"
    assert lines[1].startswith(f"Admin page: http://127.0.0.1:{port}/admin  (token: ")
    assert "2 worker process(es)" in lines[1]


@pytest.mark.parametrize("args, words", [
    (["--workers", "0"], "--workers must be between 1 and"),
    (["--db", f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nothing"], "Cannot open the survey database"),
])
def test_serve_refuses_bad_settings_in_one_sentence(tmp_path, args, words):
    db_args = [] if "--db" in args else ["--db", str(tmp_path / "s.db")]
    proc = _serve(*db_args, *args)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    assert words in err and len(err.strip().splitlines()) == 1, err



def test_create_flags_set_the_anti_gaming_options(tmp_path):
    src = write_example_dir(tmp_path / "src", ["a", "b"], n_prompts=2)
    db = tmp_path / "flags.db"
    cmd = [sys.executable, "-m", "ablations.cli", "survey", "create", "flags", "--from-dir", str(src), "--db", str(db),
           "--no-require-delivery", "--max-raters-per-client", "0", "--start-burst", "4", "--start-refill-s", "0.5"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    with t.make_engine(db).connect() as conn:
        config = json.loads(conn.execute(select(t.studies.c.config)).scalar_one())
    assert (config["require_delivery"], config["max_raters_per_client"], config["start_burst"],
            config["start_refill_s"]) == (False, None, 4, 0.5)
    bad = subprocess.run(cmd[:10] + ["--start-burst", "-1"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip() == "ltxlab survey: --start-burst must be zero or more, got -1."
