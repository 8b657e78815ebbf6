"""Rater-facing operations on the vote store: start a rater, serve the next pair, record a vote.

Every state change commits before the caller answers the HTTP request, so an acknowledged vote is
on disk (see `survey.db.make_engine` for the durability reasoning). Assignments and rater ids are
signed with the study's secret (HMAC-SHA256): a vote must carry the token of a pair that was
actually served to that rater.

Anti-gaming state lives in the database, never in one process, so it holds with several server
processes: media are served per assignment (`/m/<assignment>.<part>.<signature>`) and every byte
range sent is a `deliveries` row; a vote is accepted only when both videos' bytes were delivered
and the clips' duration has passed since (`refusals` records why one was not); `start` is
rate-limited per client address by a token bucket row (`start_buckets`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import random
import re
import sqlite3
import threading
import time
from dataclasses import dataclass, field

from sqlalchemy import Engine, func, select
from sqlalchemy.exc import IntegrityError

from survey import db as t
from survey.scheduler import Comparison, Coverage, choose

COVERAGE_REFRESH_S = 30.0  # other server processes' assignments are folded in this often
KNOWN_RATERS = 4096  # raters whose pairs a server process remembers between their votes (see Store.vote_steps)

# A SQLite write that meets another server process's lock waits in place this long, in pauses of
# LOCK_SPIN_PAUSE_S, before the server retries it from the event loop (see Store._begin_soon)
LOCK_SPIN_S = 0.005
LOCK_SPIN_PAUSE_S = 0.0001


class Sql:
    """A hot-path statement run on the DBAPI cursor of a SQLAlchemy connection, in its transaction.

    Built once, as plain SQL that SQLite and PostgreSQL share, with :name parameters (SQLite's
    own style; psycopg gets %(name)s). SQLAlchemy's per-statement result machinery cost more than
    SQLite's own work (profiled: 2.3 of 5.3 s in a vote's store call, against 0.4 s in sqlite3),
    so these statements skip it; rows come back as tuples. Errors are the driver's own
    (`dbapi_errors` maps them).
    """

    def __init__(self, sql: str) -> None:
        self.named = sql
        self.pyformat = re.sub(r":([a-z_]+)", r"%(\1)s", sql)

    def run(self, conn, params: dict | list[dict]):  # noqa: ANN001, ANN201 - SQLAlchemy connection, DBAPI cursor
        cursor = conn.connection.cursor()
        sql = self.named if conn.dialect.paramstyle in ("named", "qmark") else self.pyformat
        if isinstance(params, list) and len(params) > 1:
            cursor.executemany(sql, params)  # psycopg sends these in a pipeline: worth it for several only
        else:
            cursor.execute(sql, params[0] if isinstance(params, list) else params)
        return cursor



@dataclass(frozen=True)
class Read:
    """A store operation's request to run one read-only statement; the driver sends back its rows."""

    sql: Sql
    params: dict


@dataclass(frozen=True)
class Write:
    """Statements that commit together, all or nothing, as soon as they ran; the driver sends back
    the last statement's rows, or throws the driver's IntegrityError into the operation.

    Store operations (`vote_steps`, `next_steps`) are generators of Read and Write steps, so one
    piece of logic runs on either driver: `Store._run` (a SQLAlchemy connection, in the calling
    thread: SQLite on the event loop, tests) and `survey.db.AsyncPostgres.run` (psycopg on the
    event loop, where a Write is one statement: a vote is two round trips instead of five).
    """

    steps: tuple[tuple[Sql, dict], ...]



class Operation:
    """Drives a store operation's Read/Write generator for a driver (`Store._run`, `AsyncPostgres.run`).

        op = Operation(steps)
        try:
            while (step := op.step()) is not None:
                try:
                    op.rows = <run step>
                except <the driver's IntegrityError> as exc:
                    op.error = exc  # thrown into the operation, which decides
            return op.value
        finally:
            op.close()  # an operation left at a step (any other error) runs its clean-up now
    """

    def __init__(self, steps) -> None:  # noqa: ANN001 - generator of Read/Write steps
        self.steps = steps
        self.rows: list[tuple] | None = None  # what the last step gave
        self.error: Exception | None = None  # or the error its Write raised
        self.value = None  # what the operation returned

    def step(self) -> Read | Write | None:
        """The next step, or None once the operation has returned (`value`)."""
        try:
            return self.steps.throw(self.error) if self.error is not None else self.steps.send(self.rows)
        except StopIteration as done:
            self.value = done.value
            return None
        finally:
            self.rows = self.error = None

    def close(self) -> None:
        """End an operation its driver left at a step (an error other than IntegrityError escaped).

        GeneratorExit runs the operation's clean-up (a pick reserved for its Write is taken back,
        `Store._unreserve`) here, where no lock is held. Left to the garbage collector (an
        operation retried inside an `except` sits in a reference cycle), that clean-up ran at
        whatever allocation triggered a collection: inside the scheduler's `state.lock` it waited
        for the lock its own thread held, and the server process hung (seen with SQLite and 2
        workers: a stale-rows retry that met the other worker's write lock).
        """
        self.steps.close()


# The rater and their pairs in one round trip: no row means no such rater in this study; a rater
# without pairs yet is one row with NULL pair columns. A vote reads its assignment from these rows
# too, and then schedules the next pair from them (one statement per vote fewer).
_SEL_RATER_PAIRS = Sql("SELECT r.n_pairs, r.gold_slots, r.completion_code, r.completed_at, "
                       "a.id, a.comparison_id, a.position, a.left_is_a, v.id, a.served_at FROM raters r "
                       "LEFT OUTER JOIN assignments a ON a.rater_id = r.id "
                       "LEFT OUTER JOIN votes v ON v.assignment_id = a.id AND v.question = 0 "
                       "WHERE r.id = :rid AND r.study_id = :sid ORDER BY a.position")
_INS_ASSIGNMENT = Sql("INSERT INTO assignments (study_id, rater_id, comparison_id, position, left_is_a, served_at) "
                      "VALUES (:sid, :rid, :cid, :pos, :left_is_a, :now) RETURNING id")
_INS_VOTE = Sql("INSERT INTO votes (assignment_id, question, choice, created_at, client_elapsed_ms, server_elapsed_s) "
                "VALUES (:aid, :q, :choice, :now, :client_ms, :server_s)")
_UPD_DONE = Sql("UPDATE raters SET completed_at = :now, n_pairs = :n WHERE id = :rid")
_SEL_DELIVERED = Sql("SELECT part, first_byte, end_byte, at FROM deliveries WHERE assignment_id = :aid AND part < 2")
_INS_DELIVERY = Sql("INSERT INTO deliveries (assignment_id, part, first_byte, end_byte, at) "
                    "VALUES (:aid, :part, :first, :end, :at)")
_INS_REFUSAL = Sql("INSERT INTO refusals (study_id, rater_id, assignment_id, reason, at) "
                   "VALUES (:sid, :rid, :aid, :reason, :now)")
_SEL_REFUSALS_OF = Sql("SELECT COUNT(*) FROM refusals WHERE assignment_id = :aid")
# refused votes recorded per pair: enough to show a rater who votes before watching (the rater table and the
# export count them), bounded so a client that repeats a refused vote in a loop cannot grow the database
REFUSALS_RECORDED_PER_PAIR = 5
_SEL_MEDIA_ASSIGNMENT = Sql("SELECT study_id, comparison_id, left_is_a FROM assignments WHERE id = :aid")
# One atomic statement takes a token from the client's bucket (refilled by elapsed time, capped at
# the burst): no read-then-write race between server processes. CASE, not MIN/LEAST, so that
# SQLite and PostgreSQL share it.
_TAKE_TOKEN = Sql(
    "UPDATE start_buckets SET at = :now, tokens = (CASE WHEN tokens + (:now - at) / :refill > :burst THEN :burst "
    "ELSE tokens + (:now - at) / :refill END) - 1 "
    "WHERE study_id = :sid AND client_addr = :addr AND tokens + (:now - at) / :refill >= 1 RETURNING tokens")
_SEL_BUCKET = Sql("SELECT at FROM start_buckets WHERE study_id = :sid AND client_addr = :addr")
_INS_BUCKET = Sql("INSERT INTO start_buckets (study_id, client_addr, tokens, at) VALUES (:sid, :addr, :tokens, :now)")
_SEL_RATER = Sql("SELECT id FROM raters WHERE study_id = :sid AND external_id = :external")
_INS_RATER = Sql("INSERT INTO raters (study_id, external_id, source, completion_code, gold_slots, n_pairs, created_at, "
                 "client_addr, client_cookie) VALUES (:sid, :external, :source, :code, :gold_slots, :n_pairs, :now, "
                 ":addr, :cookie) RETURNING id")
_SEL_VOTERS = Sql("SELECT COUNT(DISTINCT a.rater_id) FROM assignments a JOIN votes v ON v.assignment_id = a.id "
                  "WHERE a.study_id = :sid AND v.question = 0")
_SEL_CLIENT_RATERS = Sql("SELECT COUNT(*) FROM raters WHERE study_id = :sid AND "
                         "(client_addr = :addr OR client_cookie = :cookie)")
_MEDIA_TOKEN = re.compile(r"([0-9]{1,12})\.([012])\.([A-Za-z0-9_-]{24})")
_RATER_TOKEN = re.compile(r"([0-9]{1,12})\.([A-Za-z0-9_-]{24})")
_NOT_SERVED = "This pair was not served to you; vote only on pairs the study page shows."
_BAD_RATER = "Missing or invalid rater token; open the study from its link again."
_FETCHING = "Another request of yours is already fetching a pair; reload the page."
_REFUSED = {"not_delivered": "This vote came before both videos were delivered to you; let both play to the end.",
            "too_fast": "This vote came before both videos could have played to the end; watch both first."}


class WriteLockBusy(Exception):
    """Another process holds SQLite's write lock; nothing was done, so the whole call may be retried."""


class ApiError(Exception):
    """Refused request: HTTP status and a one-sentence message for the JSON body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(kw_only=True)
class StudyState:
    """Immutable study data plus the in-memory coverage used by the scheduler."""

    id: int
    name: str
    public_id: str
    secret: bytes
    config: dict
    media_root: str
    comparisons: dict[int, Comparison]
    comparison_list: list[Comparison]  # the same, in id order: one list, so the scheduler's index is kept
    comp_media: dict[int, tuple[str, str]]  # comparison id -> (media_a, media_b)
    items: dict[int, dict]  # item id -> {task, text, image}
    durations: dict[str, float]  # media id -> seconds
    payloads: dict[str, int]  # media id -> bytes a rater must receive (the file less its padding)
    files: dict[str, tuple[str, str]]  # media id -> (file path, mime type)
    coverage: Coverage = field(default_factory=Coverage)
    coverage_at: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)


def sign(secret: bytes, message: str) -> str:
    digest = hmac.new(secret, message.encode(), hashlib.sha256).digest()[:18]
    return base64.urlsafe_b64encode(digest).decode()


def signed(secret: bytes, message: str, signature: object) -> bool:
    """Whether `signature` is sign(secret, message); any other type or text (non-ASCII too) is False.

    Compares bytes: hmac.compare_digest raises TypeError on str holding non-ASCII characters.
    """
    if not isinstance(signature, str) or len(signature) > 64:
        return False
    return hmac.compare_digest(sign(secret, message).encode(), signature.encode("utf-8", "replace"))


def covered_prefix(spans: list[tuple[int, int]]) -> int:
    """End of the contiguous run of bytes from 0 covered by [first, end) spans: re-sent bytes count once."""
    reach = 0
    for first, end in sorted(spans):
        if first > reach:
            break
        reach = max(reach, end)
    return reach


class Store:
    """Thin service over the engine; one per server process."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # a duplicate from a raw `Sql` statement is the driver's IntegrityError, not SQLAlchemy's
        self.integrity_errors = (IntegrityError, engine.dialect.loaded_dbapi.IntegrityError)
        self.sqlite = engine.dialect.name == "sqlite"
        # False: a SQLite write lock held by another process raises WriteLockBusy soon (see _begin_soon)
        self.wait_for_lock = True
        self._studies: dict[str, StudyState] = {}
        self._rng = random.SystemRandom()
        self._ids: dict[int, str] = {}  # study id -> public id
        self._known: dict[int, list[tuple]] = {}  # rater id -> their pairs as last seen here (see vote_steps)

    def _write_lock(self, conn) -> None:  # noqa: ANN001 - SQLAlchemy connection
        """On SQLite, take the write lock (BEGIN IMMEDIATE) before the first statement of a Write.

        With `wait_for_lock` off (the server runs SQLite calls on its event loop) see _begin_soon.
        """
        if not self.sqlite:
            return
        cursor = conn.connection.cursor()
        if self.wait_for_lock:
            cursor.execute("BEGIN IMMEDIATE")
        else:
            self._begin_soon(cursor)

    def _begin_soon(self, cursor) -> None:  # noqa: ANN001 - DBAPI cursor
        """BEGIN IMMEDIATE, waiting here up to LOCK_SPIN_S in short sleeps, else WriteLockBusy.

        Another worker holds the lock for one request's inserts and commit (well under 1 ms), so a
        short wait in place mostly gets it. Going back to the event loop at once cost far more
        under load: the retry then queued behind every request that process had ready (measured
        with 2 workers: 34-39% of writes retried, up to 17 times, each pause ~25 ms instead of
        1 ms; vote p99 135-280 ms). The sleeps leave the CPU to the holder; SQLite's own busy
        handler sleeps 1, 2, 5, 10... ms. A lock held longer (another program writing, a holder
        descheduled) still raises WriteLockBusy, and the server retries after an async pause.
        """
        cursor.execute("PRAGMA busy_timeout = 0")
        try:
            deadline = time.perf_counter() + LOCK_SPIN_S
            while True:
                try:
                    cursor.execute("BEGIN IMMEDIATE")
                    return
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc):
                        raise
                    if time.perf_counter() > deadline:
                        raise WriteLockBusy from None
                    time.sleep(LOCK_SPIN_PAUSE_S)
        finally:
            cursor.execute(f"PRAGMA busy_timeout = {t.BUSY_TIMEOUT_MS}")

    # ---- studies -------------------------------------------------------------------------
    def study(self, public_id: str) -> StudyState:
        state = self._studies.get(public_id)
        if state is None:
            state = self._load_study(public_id)
            self._studies[public_id] = state
        if time.monotonic() - state.coverage_at > COVERAGE_REFRESH_S:
            self._refresh_coverage(state)
        return state

    def cached_study(self, public_id: str) -> StudyState | None:
        """The study if it is loaded and its coverage fresh (no database work), else None."""
        state = self._studies.get(public_id)
        return state if state is not None and time.monotonic() - state.coverage_at <= COVERAGE_REFRESH_S else None

    def study_by_id(self, study_id: int) -> StudyState:
        public_id = self._ids.get(study_id)
        if public_id is None:
            with self.engine.connect() as conn:
                public_id = conn.execute(select(t.studies.c.public_id).where(t.studies.c.id == study_id)).scalar_one()
        return self.study(public_id)

    def _load_study(self, public_id: str) -> StudyState:
        if not re.fullmatch(r"[A-Za-z0-9_-]{4,40}", public_id):
            raise ApiError(404, "No study with this id; check the link you were given.")
        with self.engine.connect() as conn:
            row = conn.execute(select(t.studies).where(t.studies.c.public_id == public_id)).first()
            if row is None:
                raise ApiError(404, "No study with this id; check the link you were given.")
            comps = conn.execute(select(t.comparisons).where(t.comparisons.c.study_id == row.id)).all()
            items = conn.execute(select(t.items).where(t.items.c.study_id == row.id)).all()
            media = conn.execute(select(t.media).where(t.media.c.study_id == row.id)).all()
        self._ids[row.id] = row.public_id
        files = {m.id: (f"{row.media_root}/{m.file}", m.mime) for m in media}
        comparisons = [Comparison(id=c.id, item_id=c.item_id, is_gold=bool(c.is_gold),
                                  pair=(min(c.system_a, c.system_b), max(c.system_a, c.system_b)),
                                  a_is_low=c.system_a <= c.system_b)
                       for c in sorted(comps, key=lambda c: c.id)]
        return StudyState(
            id=row.id, name=row.name, public_id=row.public_id, secret=row.secret.encode(),
            config=json.loads(row.config), media_root=row.media_root,
            comparisons={c.id: c for c in comparisons}, comparison_list=comparisons,
            comp_media={c.id: (c.media_a, c.media_b) for c in comps},
            items={i.id: {"task": i.task, "text": i.text, "image": i.image_media} for i in items},
            durations={m.id: m.duration_s or 0.0 for m in media},
            payloads={m.id: m.payload_bytes if m.payload_bytes is not None else _file_size(files[m.id][0])
                      for m in media},
            files=files,
        )

    def _refresh_coverage(self, state: StudyState) -> None:
        cov = Coverage()
        a, v = t.assignments, t.votes
        with self.engine.connect() as conn:
            for (cid,) in conn.execute(select(a.c.comparison_id).where(a.c.study_id == state.id)):
                cov.add_served(state.comparisons[cid])
            rows = conn.execute(select(a.c.comparison_id, a.c.left_is_a, v.c.choice)
                                .join(v, v.c.assignment_id == a.c.id)
                                .where(a.c.study_id == state.id, v.c.question == 0))
            for cid, left_is_a, choice in rows:
                self._tally(state, cid, left_is_a, choice, cov)
        with state.lock:
            state.coverage, state.coverage_at = cov, time.monotonic()

    @staticmethod
    def _tally(state: StudyState, cid: int, left_is_a: bool, choice: str, cov: Coverage) -> None:
        comp = state.comparisons[cid]
        if comp.is_gold:
            return
        score_a = {"left": 1.0, "right": 0.0}.get(choice, 0.5)
        if not left_is_a:
            score_a = 1.0 - score_a
        cov.add_vote(comp, score_a if comp.a_is_low else 1.0 - score_a)

    # ---- raters --------------------------------------------------------------------------
    def start(self, state: StudyState, external_id: str, source: str, client_addr: str = "",
              cookie: str = "") -> dict:
        """Find or create the rater; returns {rater: signed token}.

        client_addr is the client's address and cookie its browser cookie: `start` is rate-limited
        per address, and a new rater is refused when that address or cookie already made
        `max_raters_per_client` raters, or when `max_raters` raters have voted.
        """
        return self._run(self.start_steps(state, external_id, source, client_addr, cookie))

    def start_steps(self, state: StudyState, external_id: str, source: str, client_addr: str = "",
                    cookie: str = ""):  # noqa: ANN202 - generator of Read/Write steps
        """start as a Read/Write generator; the unique (study, external id) decides two starts at once."""
        addr = sign(state.secret, f"ip:{client_addr}")
        yield from self._take_start_token(state, addr)
        found = yield Read(_SEL_RATER, {"sid": state.id, "external": external_id})
        if found:
            rid = found[0][0]
        else:
            yield from self._check_admission(state, addr, cookie)
            n_real = min(state.config["pairs_per_rater"], sum(not c.is_gold for c in state.comparisons.values()))
            n_gold = min(state.config["gold_per_rater"], sum(c.is_gold for c in state.comparisons.values()))
            total = n_real + n_gold
            try:
                rid = (yield Write(((_INS_RATER, {
                    "sid": state.id, "external": external_id, "source": source,
                    "code": t.random_id(9).upper().replace("-", "X").replace("_", "Y"),
                    "gold_slots": json.dumps(sorted(self._rng.sample(range(total), n_gold))), "n_pairs": total,
                    "now": time.time(), "addr": addr, "cookie": cookie or None}),)))[0][0]
            except self.integrity_errors:  # the same rater started twice at once: find the other's
                rid = (yield Read(_SEL_RATER, {"sid": state.id, "external": external_id}))[0][0]
        return {"rater": f"{rid}.{sign(state.secret, f'r:{rid}')}"}

    @staticmethod
    def _check_admission(state: StudyState, addr: str, cookie: str):  # noqa: ANN205 - Read steps
        cap = state.config.get("max_raters")
        if cap is not None and (yield Read(_SEL_VOTERS, {"sid": state.id}))[0][0] >= cap:
            raise ApiError(403, "This study has all the raters it needs; thank you for your interest.")
        per_client = state.config.get("max_raters_per_client")
        if per_client is not None and (yield Read(_SEL_CLIENT_RATERS, {
                "sid": state.id, "addr": addr, "cookie": cookie or "-"}))[0][0] >= per_client:
            raise ApiError(429, "This browser or network has already started the study as many times as it may; "
                                "please finish the session you began.")

    def _take_start_token(self, state: StudyState, addr: str):  # noqa: ANN202 - Read/Write steps
        """Spend one `start` token of this client address (in the database: shared by every process).

        Its own Write: a start that then meets another SQLite worker's write lock for longer than
        LOCK_SPIN_S is retried whole by the server and spends a second token.
        """
        burst = state.config.get("start_burst")
        if burst is None:
            return
        args = {"sid": state.id, "addr": addr, "now": time.time(), "burst": float(burst),
                "refill": max(float(state.config.get("start_refill_s", 3.0)), 1e-6)}
        for _ in range(2):
            if (yield Write(((_TAKE_TOKEN, args),))):
                return
            if (yield Read(_SEL_BUCKET, {"sid": state.id, "addr": addr})):
                break
            try:
                yield Write(((_INS_BUCKET, {"sid": state.id, "addr": addr, "tokens": float(burst) - 1,
                                            "now": args["now"]}),))
                return
            except self.integrity_errors:  # another process made the bucket first: take from it
                pass
        raise ApiError(429, f"Too many starts from your network; wait {args['refill']:.0f} seconds and try again.")

    def rater_id(self, state: StudyState, token: object) -> int:
        match = _RATER_TOKEN.fullmatch(token) if isinstance(token, str) else None
        if match is None or not signed(state.secret, f"r:{match[1]}", match[2]):
            raise ApiError(403, _BAD_RATER)
        return int(match[1])

    # ---- pairs and votes -----------------------------------------------------------------
    def next_pair(self, state: StudyState, rid: int) -> dict:
        """The rater's open pair, a newly scheduled one, or the completion payload."""
        return self._run(self.next_steps(state, rid))

    def vote(self, state: StudyState, rid: int, body: dict) -> dict:
        """Record one vote (one choice per question) and return the next pair; all or nothing."""
        return self._run(self.vote_steps(state, rid, body))

    # (vote_steps and next_steps are these operations as Read/Write generators, for survey.db.AsyncPostgres)

    def _run(self, steps):  # noqa: ANN001, ANN202 - generator of Read/Write steps, its return value
        """Run a store operation on a SQLAlchemy connection in this thread; each Write commits at once.

        On SQLite the reads run before the write lock is taken, so the lock is held only for the
        inserts and the commit (the reads, the watch gate and the scheduler's pick ran inside it
        before, and 2 worker processes met each other's lock on 34-39% of writes). Reads may thus
        be stale, as they always were on PostgreSQL (read committed): the unique constraints
        decide races (a second vote on a pair, two pairs at one position are refused, 409), and
        the watch gate's stale reads can only miss deliveries, so only refuse.
        """
        op = Operation(steps)
        try:
            with self.engine.connect() as conn:
                while (step := op.step()) is not None:
                    if isinstance(step, Read):
                        op.rows = step.sql.run(conn, step.params).fetchall()
                        continue
                    try:
                        self._write_lock(conn)
                        for sql, params in step.steps:
                            cursor = sql.run(conn, params)
                        op.rows = cursor.fetchall() if cursor.description else []
                        conn.connection.commit()
                    except self.integrity_errors as exc:
                        conn.connection.rollback()
                        op.error = exc
            return op.value
        finally:
            op.close()  # e.g. WriteLockBusy: the server retries with a new operation

    def next_steps(self, state: StudyState, rid: int):  # noqa: ANN202 - generator of Read/Write steps
        """The next_pair operation: the rater's pairs (always read: a reload refreshes), then at most one Write."""
        rows = yield Read(_SEL_RATER_PAIRS, {"rid": rid, "sid": state.id})
        self._remember(rid, rows)
        writes, finish = self._plan_next(state, rid, rows)
        if not writes:
            return finish(None)
        try:
            written = yield Write(writes)
        except BaseException as exc:
            self._unreserve(state, writes)
            if not isinstance(exc, self.integrity_errors):
                raise
            self._known.pop(rid, None)
            raise ApiError(409, _FETCHING) from None
        self._remember(rid, rows, writes, written)
        return finish(written)

    @staticmethod
    def _unreserve(state: StudyState, writes: tuple) -> None:
        """Take back the served count `_plan_next` reserved for the pair of a Write that failed."""
        if writes and writes[-1][0] is _INS_ASSIGNMENT:
            with state.lock:
                state.coverage.remove_served(state.comparisons[writes[-1][1]["cid"]])

    def _remember(self, rid: int, rows: list[tuple], writes: tuple = (), written: list[tuple] | None = None) -> None:
        """Keep a rater's _SEL_RATER_PAIRS rows as this process last saw them, plus a pair it just served.

        Rows of no pair yet, or of a rater who is done, are not kept (see vote_steps). At most
        KNOWN_RATERS raters, the least recently used forgotten first.
        """
        if writes and writes[-1][0] is _INS_ASSIGNMENT:
            new = writes[-1][1]
            # a rater with no pair yet reads as one row of NULL pair columns: not a pair, so not kept
            # beside the new one (kept, `_plan_next` read the rows as "no pair served" and the first
            # vote of every rater wrote position 0 again, failed its unique insert and was retried)
            kept = rows if rows[0][4] is not None else []
            rows = [*kept, (*rows[0][:4], written[0][0], new["cid"], new["pos"], new["left_is_a"], None, new["now"])]
        self._known.pop(rid, None)
        if rows and rows[-1][4] is not None:
            self._known[rid] = rows
            if len(self._known) > KNOWN_RATERS:
                del self._known[next(iter(self._known))]

    def _plan_next(self, state: StudyState, rid: int, rows: list[tuple]) -> tuple[tuple, object]:
        """What serving the next pair writes, and a function of that Write's rows giving the reply.

        `rows` are the rater's _SEL_RATER_PAIRS rows (none: no such rater). The scheduler's pick
        is counted in the coverage at once, under the lock, so requests that interleave while its
        write is awaited (PostgreSQL on the event loop) balance around it; a write that fails
        takes it back (`_unreserve`).
        """
        if not rows:
            raise ApiError(403, _BAD_RATER)
        n_pairs, gold_slots, completion_code, completed_at = rows[0][:4]
        if rows[0][4] is None:  # no pair served yet
            rows = []
        for _, _, _, _, aid, cid, pos, left_is_a, vote, _ in rows:
            if vote is None:  # reload or second tab: serve the same open pair again
                payload = self._pair_payload(state, rid, aid, cid, pos, bool(left_is_a), n_pairs)
                return (), lambda _rows: payload
        done = self._done_payload(state, completion_code)
        position = len(rows)
        if position >= n_pairs:
            finish = ((_UPD_DONE, {"now": time.time(), "n": n_pairs, "rid": rid}),) if completed_at is None else ()
            return finish, lambda _rows: done
        seen = {row[5] for row in rows}
        seen_items = {state.comparisons[c].item_id for c in seen}
        want_gold = position in json.loads(gold_slots)
        comps = state.comparison_list
        adaptive = bool(state.config.get("adaptive"))
        with state.lock:  # not while waiting for the write lock: a thread holding it may want this one
            comp = choose(comps, state.coverage, seen, seen_items, self._rng, gold=want_gold, adaptive=adaptive)
            if comp is None:
                comp = choose(comps, state.coverage, seen, seen_items, self._rng, gold=not want_gold,
                              adaptive=adaptive)
            if comp is not None:
                state.coverage.add_served(comp)
        if comp is None:  # the study ran out of pairs this rater has not seen
            return ((_UPD_DONE, {"now": time.time(), "n": position, "rid": rid}),), lambda _rows: done
        left_is_a = self._rng.random() < 0.5

        def served(written: list[tuple]) -> dict:
            return self._pair_payload(state, rid, written[0][0], comp.id, position, left_is_a, n_pairs)

        return ((_INS_ASSIGNMENT, {"sid": state.id, "rid": rid, "cid": comp.id, "pos": position,
                                   "left_is_a": left_is_a, "now": time.time()}),), served

    def _pair_payload(self, state: StudyState, rid: int, aid: int, cid: int, position: int, left_is_a: bool,
                      total: int) -> dict:
        media_a, media_b = state.comp_media[cid]
        left, right = (media_a, media_b) if left_is_a else (media_b, media_a)
        item = state.items[state.comparisons[cid].item_id]

        def url(part: int) -> str:  # per assignment: serving it is counted for this rater and pair
            return f"/m/{aid}.{part}.{sign(state.secret, f'm:{aid}:{part}')}"

        return {
            "done": False, "assignment": aid, "token": sign(state.secret, f"a:{aid}:{rid}"),
            "position": position + 1, "total": total, "task": item["task"], "prompt": item["text"],
            "image": url(2) if item["image"] else None,
            "left": url(0), "right": url(1), "questions": state.config["questions"],
        }

    @staticmethod
    def _done_payload(state: StudyState, code: str) -> dict:
        url = state.config.get("completion_url")
        return {"done": True, "completion_code": code, "redirect": url.replace("{code}", code) if url else None}

    def vote_steps(self, state: StudyState, rid: int, body: dict, known: bool = True):  # noqa: ANN202
        """The vote operation (a Read/Write generator): the rater's pairs (and deliveries), then one Write of
        the vote and the next pair.

        The rater's pairs come from this process's memory (`_remember`) when it holds the voted
        pair and the vote serves a new one: the Write then proves the rows current, so a vote is
        one round trip. Assignments never change and votes are never removed, so the remembered
        pairs 0..p-1 are right, and kept votes are real; what another process added since (a pair
        served or voted elsewhere: a second tab, a reconnect to another worker) makes the insert
        at position p fail its unique constraint, and the vote is retried on rows read afresh.
        Any other outcome (an open pair to serve again, the rater done) is decided on fresh rows.
        """
        aid, answers, elapsed_ms = self._check_vote(state, rid, body)
        rows = self._known.get(rid) if known else None
        if rows is None or not any(row[4] == aid for row in rows):
            rows, known = (yield Read(_SEL_RATER_PAIRS, {"rid": rid, "sid": state.id})), False
        row = next((row for row in rows if row[4] == aid), None)
        if row is None:
            raise ApiError(403, _NOT_SERVED)
        cid, left_is_a, served_at = row[5], bool(row[7]), row[9]
        now = time.time()
        delivered = (yield Read(_SEL_DELIVERED, {"aid": aid})) if state.config.get("require_delivery", True) else None
        refused = self._watch_refusal(state, cid, served_at, left_is_a, now, delivered)
        if refused is not None:  # recorded (its own Write, committed; up to REFUSALS_RECORDED_PER_PAIR), then refused
            if (yield Read(_SEL_REFUSALS_OF, {"aid": aid}))[0][0] < REFUSALS_RECORDED_PER_PAIR:
                yield Write(((_INS_REFUSAL, {"sid": state.id, "rid": rid, "aid": aid, "reason": refused, "now": now}),))
            raise ApiError(425, _REFUSED[refused])
        votes = tuple((_INS_VOTE, {"aid": aid, "q": q, "choice": choice, "now": now, "server_s": now - served_at,
                                   "client_ms": float(elapsed_ms) if elapsed_ms is not None else None})
                      for q, choice in enumerate(answers))
        # the rows as they will be: this pair voted (a duplicate vote fails the whole Write)
        rows = [(*r[:8], r[8] if r[4] != aid else 0, r[9]) for r in rows]
        writes, finish = self._plan_next(state, rid, rows)
        if known and not (writes and writes[-1][0] is _INS_ASSIGNMENT):
            return (yield from self.vote_steps(state, rid, body, known=False))
        try:
            written = yield Write(votes + writes)
        except BaseException as exc:
            self._unreserve(state, writes)
            if not isinstance(exc, self.integrity_errors):
                raise
            self._known.pop(rid, None)
            if known:  # remembered rows gone stale: decide on fresh ones
                return (yield from self.vote_steps(state, rid, body, known=False))
            if _conflict_table(exc) == "votes":
                raise ApiError(409, "This pair already has your vote; each pair is counted once.") from None
            raise ApiError(409, _FETCHING) from None
        self._remember(rid, rows, writes, written)
        following = finish(written)
        with state.lock:
            self._tally(state, cid, left_is_a, answers[0], state.coverage)
        return {"ok": True, "next": following}

    @staticmethod
    def _check_vote(state: StudyState, rid: int, body: dict) -> tuple[int, list[str], float | None]:
        """(assignment id, answers, elapsed_ms) of a well-formed vote signed for this rater, else ApiError."""
        aid, token, answers = body.get("assignment"), body.get("token"), body.get("answers")
        elapsed_ms = body.get("elapsed_ms")
        n_q = len(state.config["questions"])
        if not isinstance(aid, int) or isinstance(aid, bool) or not isinstance(token, str):
            raise ApiError(400, "A vote needs an integer 'assignment' and its string 'token'.")
        if (not isinstance(answers, list) or len(answers) != n_q
                or any(not isinstance(x, str) or x not in t.CHOICES for x in answers)):
            raise ApiError(400, f"'answers' must list {n_q} choice(s), each one of {', '.join(t.CHOICES)}.")
        if elapsed_ms is not None and (not isinstance(elapsed_ms, (int, float)) or isinstance(elapsed_ms, bool)
                                       or not 0 <= elapsed_ms < 1e9):
            raise ApiError(400, "'elapsed_ms' must be a non-negative number of milliseconds.")
        if not signed(state.secret, f"a:{aid}:{rid}", token):
            raise ApiError(403, _NOT_SERVED)
        return aid, answers, elapsed_ms

    @staticmethod
    def _watch_refusal(state: StudyState, cid: int, served_at: float, left_is_a: bool, now: float,
                       delivered: list[tuple] | None) -> str | None:
        """None if the vote may count, else why not: not_delivered | too_fast.

        With require_delivery, both videos' bytes (less padding) must have been sent for this
        assignment (`delivered`: its _SEL_DELIVERED rows), and the watch clock starts when the
        later of the two was first served; otherwise it starts when the pair was served.
        """
        media_a, media_b = state.comp_media[cid]
        need = state.config.get("min_watch_fraction", 0.0) * max(state.durations.get(media_a, 0.0),
                                                                 state.durations.get(media_b, 0.0))
        if delivered is None:
            return "too_fast" if now - served_at < need else None
        spans: dict[int, list[tuple[int, int]]] = {0: [], 1: []}
        first: dict[int, float] = {}
        for part, begin, end, at in delivered:
            spans[part].append((begin, end))
            first[part] = min(first.get(part, at), at)
        sides = (media_a, media_b) if left_is_a else (media_b, media_a)
        if any(covered_prefix(spans[part]) < state.payloads[m] for part, m in enumerate(sides)):
            return "not_delivered"
        return "too_fast" if now - max(first.values()) < need else None

    def media(self, token: str) -> tuple[str, str, int, int]:
        """(file path, mime type, assignment id, part) of a per-assignment media URL.

        Anything unknown or unsigned is a 404 (never a hint about which part of it was wrong).
        """
        match = _MEDIA_TOKEN.fullmatch(token)
        if match is None:
            raise ApiError(404, "No such media file.")
        aid, part = int(match[1]), int(match[2])
        with self.engine.connect() as conn:
            row = _SEL_MEDIA_ASSIGNMENT.run(conn, {"aid": aid}).fetchone()
        if row is None:
            raise ApiError(404, "No such media file.")
        study_id, cid, left_is_a = row
        state = self.study_by_id(study_id)
        if not signed(state.secret, f"m:{aid}:{part}", match[3]):
            raise ApiError(404, "No such media file.")
        media_a, media_b = state.comp_media[cid]
        if part == 2:
            media_id = state.items[state.comparisons[cid].item_id]["image"]
            if media_id is None:
                raise ApiError(404, "No such media file.")
        else:
            media_id = (media_a, media_b)[part ^ (not left_is_a)]
        path, mime = state.files[media_id]
        return path, mime, aid, part

    def record_delivery(self, aid: int, part: int, first: int, end: int, at: float) -> None:
        """Note that bytes [first, end) of one part of an assignment were sent (commits before returning)."""
        self._run(self.delivery_steps(aid, part, first, end, at))

    @staticmethod
    def delivery_steps(aid: int, part: int, first: int, end: int, at: float):  # noqa: ANN205 - Read/Write generator
        """record_delivery as a Read/Write generator (one Write; nothing when no byte went out)."""
        if end > first:
            yield Write(((_INS_DELIVERY, {"aid": aid, "part": part, "first": first, "end": end, "at": at}),))


def _conflict_table(exc: Exception) -> str | None:
    """The table whose unique constraint a driver's IntegrityError names (psycopg's diagnostics, SQLite's text)."""
    diag = getattr(exc, "diag", None)
    if diag is not None:
        return diag.table_name
    match = re.search(r"constraint failed: (\w+)\.", str(exc))
    return match[1] if match else None


def _file_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def refusal_summary(engine: Engine, study_id: int) -> dict[str, dict]:
    """Raters whose votes the watch gate refused: external id -> {refused, not_delivered, too_fast}.

    For the admin status and export (survey.reports): a rater who keeps voting before the videos
    arrive or end is likely not watching, whatever the gold pairs say.
    """
    f, r = t.refusals, t.raters
    out: dict[str, dict] = {}
    with engine.connect() as conn:
        rows = conn.execute(select(r.c.external_id, f.c.reason, func.count()).join(r, r.c.id == f.c.rater_id)
                            .where(f.c.study_id == study_id).group_by(r.c.external_id, f.c.reason))
        for rater, reason, n in rows:
            entry = out.setdefault(rater, {"refused": 0, **dict.fromkeys(t.REFUSAL_REASONS, 0)})
            entry["refused"] += n
            entry[reason] = n
    return out


class MediaMismatch(ValueError):
    """A study's media file is missing or differs from what `create` wrote; the message names it."""


def check_media(engine: Engine) -> int:
    """Check every media file of every study against its size and sha256 recorded at create; returns the count.

    Raises MediaMismatch (one sentence naming the file) on the first file that is missing, of
    another size or with another hash. Served as it was, such a file could never count as
    delivered, so every rater given its pair would be refused by the watch gate forever (and
    listed as a likely cheat), and a truncated copy would also differ in size from its pair.
    Files recorded without a size or hash fall back to: present and at least their payload long.
    """
    from survey.media import file_digest

    m, s = t.media, t.studies
    with engine.connect() as conn:
        rows = conn.execute(select(s.c.name, s.c.media_root, m.c.file, m.c.file_bytes, m.c.sha256, m.c.payload_bytes)
                            .join(s, s.c.id == m.c.study_id).order_by(s.c.id, m.c.file)).all()
    for row in rows:
        path = f"{row.media_root}/{row.file}"
        where = f"Study '{row.name}' cannot be served: its media file {path}"
        fix = (f"copy the study's media folder whole to {row.media_root} (the path recorded at create) "
               f"and start again.")
        if not os.path.isfile(path):
            raise MediaMismatch(f"{where} is missing; {fix}")
        if row.sha256 is None:
            if row.payload_bytes is not None and _file_size(path) < row.payload_bytes:
                raise MediaMismatch(f"{where} is shorter than its {row.payload_bytes} bytes of video; {fix}")
            continue
        size, digest = file_digest(path)
        if size != row.file_bytes:
            raise MediaMismatch(f"{where} is {size} bytes, not the {row.file_bytes} written at create (an interrupted "
                                f"copy?); {fix}")
        if digest != row.sha256:
            raise MediaMismatch(f"{where} has changed since create (its sha256 differs); {fix}")
    return len(rows)
