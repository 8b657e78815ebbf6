"""The survey's vote store: SQLAlchemy Core tables and the engine set-up.

SQLite (a file path) is the default; any SQLAlchemy URL (e.g. postgresql+psycopg://...) works for
hosted studies. Uniqueness constraints, not application code, guarantee exactly-once votes and
that a rater never gets the same comparison twice, so concurrent requests cannot break them.
"""

from __future__ import annotations

import re
import secrets
import sqlite3
import threading
from pathlib import Path

from sqlalchemy import (
    Boolean,
    Column,
    Engine,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
)

metadata = MetaData()

studies = Table(
    "studies",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False, unique=True),  # researcher-facing, never shown to raters
    Column("public_id", String(40), nullable=False, unique=True),  # opaque id used in rater URLs
    Column("secret", String(64), nullable=False),  # HMAC key that signs assignments
    Column("config", Text, nullable=False),  # JSON: questions, pairs per rater, gold, URLs
    Column("media_root", Text, nullable=False),  # folder with the study's opaque media files
    Column("created_at", Float, nullable=False),
)

systems = Table(
    "systems",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("study_id", ForeignKey("studies.id"), nullable=False, index=True),
    Column("name", String(400), nullable=False),
    UniqueConstraint("study_id", "name"),
)

media = Table(
    "media",
    metadata,
    Column("id", String(40), primary_key=True),  # random url-safe token; also the file stem
    Column("study_id", ForeignKey("studies.id"), nullable=False, index=True),
    Column("file", String(80), nullable=False),  # file name under media_root
    Column("mime", String(40), nullable=False),
    Column("duration_s", Float, nullable=True),  # None for images
    # bytes before the size-matching padding (survey.media.pad_to): delivery must cover these
    Column("payload_bytes", Integer, nullable=True),
    # the file as written by `create`: `serve` refuses to start when it is missing or differs
    Column("file_bytes", Integer, nullable=True),
    Column("sha256", String(64), nullable=True),
)

items = Table(
    "items",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("study_id", ForeignKey("studies.id"), nullable=False, index=True),
    Column("task", String(8), nullable=False),  # t2v | i2v
    Column("prompt_id", String(200), nullable=False),
    Column("text", Text, nullable=False),
    Column("image_media", ForeignKey("media.id"), nullable=True),  # conditioning frame for i2v
    # training seed block of the models behind this item's videos (sweep studies: every seed is
    # surveyed and pairs compare variants within one block); None for a folder of fixed models
    Column("seed_block", Integer, nullable=True),
    UniqueConstraint("study_id", "task", "prompt_id", "seed_block"),
)

comparisons = Table(
    "comparisons",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("study_id", ForeignKey("studies.id"), nullable=False, index=True),
    Column("item_id", ForeignKey("items.id"), nullable=False),
    Column("system_a", ForeignKey("systems.id"), nullable=False),
    Column("system_b", ForeignKey("systems.id"), nullable=False),  # == system_a for gold pairs
    Column("media_a", ForeignKey("media.id"), nullable=False),
    Column("media_b", ForeignKey("media.id"), nullable=False),
    Column("is_gold", Boolean, nullable=False, default=False),  # media_b is a corrupted media_a
)

raters = Table(
    "raters",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("study_id", ForeignKey("studies.id"), nullable=False, index=True),
    Column("external_id", String(200), nullable=False),  # platform pid or random cookie id
    Column("source", String(8), nullable=False),  # pid | cookie
    Column("completion_code", String(40), nullable=False),
    Column("gold_slots", Text, nullable=False),  # JSON list of positions that serve gold pairs
    Column("n_pairs", Integer, nullable=False),  # pairs this rater will see, gold included
    Column("created_at", Float, nullable=False),
    Column("completed_at", Float, nullable=True),
    Column("client_addr", String(40), nullable=True),  # keyed hash of the client address (never the address)
    Column("client_cookie", String(40), nullable=True),  # browser cookie that started this rater
    UniqueConstraint("study_id", "external_id"),
)

assignments = Table(
    "assignments",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("study_id", ForeignKey("studies.id"), nullable=False, index=True),
    Column("rater_id", ForeignKey("raters.id"), nullable=False, index=True),
    Column("comparison_id", ForeignKey("comparisons.id"), nullable=False),
    Column("position", Integer, nullable=False),
    Column("left_is_a", Boolean, nullable=False),
    Column("served_at", Float, nullable=False),
    UniqueConstraint("rater_id", "comparison_id"),  # never the same pair twice
    UniqueConstraint("rater_id", "position"),  # two racing /next calls cannot both add a pair
)

votes = Table(
    "votes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("assignment_id", ForeignKey("assignments.id"), nullable=False),
    Column("question", Integer, nullable=False),
    Column("choice", String(10), nullable=False),  # left | right | tie | both_bad
    Column("created_at", Float, nullable=False),
    Column("client_elapsed_ms", Float, nullable=True),  # page-measured time on the pair
    Column("server_elapsed_s", Float, nullable=False),  # served_at -> vote, measured here
    UniqueConstraint("assignment_id", "question"),  # exactly once
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("assignment_id", ForeignKey("assignments.id"), nullable=False, index=True),
    Column("part", Integer, nullable=False),  # 0 left video, 1 right video, 2 conditioning image
    Column("first_byte", Integer, nullable=False),  # byte range sent, end exclusive
    Column("end_byte", Integer, nullable=False),
    Column("at", Float, nullable=False),  # when serving started (the watch clock runs from here)
)

refusals = Table(
    "refusals",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("study_id", ForeignKey("studies.id"), nullable=False, index=True),
    Column("rater_id", ForeignKey("raters.id"), nullable=False, index=True),
    Column("assignment_id", Integer, nullable=True),
    Column("reason", String(20), nullable=False),  # not_delivered | too_fast
    Column("at", Float, nullable=False),
)

start_buckets = Table(
    "start_buckets",
    metadata,
    Column("study_id", ForeignKey("studies.id"), primary_key=True),
    Column("client_addr", String(40), primary_key=True),  # keyed hash, as in raters.client_addr
    Column("tokens", Float, nullable=False),  # token bucket for `start`, shared by every server process
    Column("at", Float, nullable=False),  # when `tokens` was last computed
)

CHOICES = ("left", "right", "tie", "both_bad")
REFUSAL_REASONS = ("not_delivered", "too_fast")


def db_url(db: str | Path) -> str:
    """A file path becomes a SQLite URL; anything with '://' is taken as a SQLAlchemy URL."""
    text = str(db)
    if "://" in text:
        return text
    return f"sqlite:///{Path(text).expanduser().resolve()}"


BUSY_TIMEOUT_MS = 30000  # how long a SQLite writer waits for another process's write lock


def make_engine(db: str | Path, synchronous: str = "NORMAL", create_schema: bool = True) -> Engine:
    """Engine with the schema created (unless `create_schema` is False); SQLite runs in WAL mode.

    Durability: with WAL, a commit appends the transaction to the -wal file with write() before
    the server acknowledges the vote, so a killed server process (SIGKILL, OOM) loses nothing that
    was acknowledged: the bytes are in the OS page cache and the next open replays the WAL.
    synchronous=NORMAL skips the fsync per commit; only a power cut or kernel crash can lose the
    last transactions. Pass synchronous="FULL" to fsync every commit (slower) when that matters.
    WAL also lets several server processes share the file: readers never block, writers take
    turns (busy_timeout waits for the lock instead of failing).

    PostgreSQL (postgresql+psycopg://user@host:port/db) keeps its own durability settings
    (synchronous_commit); `synchronous` applies to SQLite only. Several worker processes create
    the schema racily on PostgreSQL, so `ltxlab survey serve` creates it once in the parent and
    the workers pass create_schema=False.
    """
    url = db_url(db)
    if url.startswith("sqlite"):
        if synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"synchronous must be NORMAL or FULL, got {synchronous!r}.")
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record) -> None:  # noqa: ANN001 - DBAPI connection
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA synchronous={synchronous.upper()}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            cur.close()
    else:
        # A fixed pool: overflow connections that open and close under load cost PostgreSQL a backend
        # start each (measured: 3-4 ms of database CPU per vote with 8 + 24 overflow, 1.2 ms fixed).
        # Votes and pairs use the server's AsyncPostgres pool (8); this one serves the rest (start,
        # media, admin): 12 per server process keeps 8 workers under max_connections (100).
        engine = create_engine(url, pool_size=4, max_overflow=0, pool_timeout=30)
        event.listen(engine, "checkout", _drop_if_closed_by_server)
    if create_schema:
        metadata.create_all(engine)
    return engine


class WalCheckpointer:
    """Checkpoints a SQLite database's WAL from a background thread instead of inside commits.

    By default the commit that grows the WAL past 1,000 pages also copies it into the database
    and, with synchronous=NORMAL, fsyncs both files: the server runs SQLite on its event loop, so
    every request of that process waited on those fsyncs (measured in process: vote p99 18 ms,
    worst 233 ms, about every 135 votes). Here commits only append to the WAL (durable against a
    killed process, as before) and a thread runs PASSIVE checkpoints, which never block a reader
    or writer; the sqlite3 module releases the GIL while one runs.
    """

    def __init__(self, engine: Engine, every_s: float = 0.25) -> None:
        self.engine, self.every_s = engine, every_s  # how often the WAL is checkpointed
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        event.listen(self.engine, "connect", _no_autocheckpoint)
        self.engine.dispose()  # connections made before the listener would still checkpoint in commits
        self._thread = threading.Thread(target=self._run, name="wal-checkpointer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        event.remove(self.engine, "connect", _no_autocheckpoint)
        self.engine.dispose()  # pooled connections would otherwise never checkpoint again

    def _run(self) -> None:
        conn = sqlite3.connect(self.engine.url.database, timeout=0, check_same_thread=False)
        try:
            while not self._stop.wait(self.every_s):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.OperationalError:  # another process is checkpointing: it does the work
                    pass
        finally:
            conn.close()


def _no_autocheckpoint(dbapi_conn, _record) -> None:  # noqa: ANN001 - DBAPI connection
    dbapi_conn.execute("PRAGMA wal_autocheckpoint=0")


def _drop_if_closed_by_server(dbapi_conn, _record, _proxy) -> None:  # noqa: ANN001 - DBAPI connection
    """Pool checkout check without a round trip: a restarted server must not turn requests into 500s."""
    from sqlalchemy.exc import DisconnectionError

    if closed_by_server(dbapi_conn):
        raise DisconnectionError("the database server closed this pooled connection")


def closed_by_server(conn) -> bool:  # noqa: ANN001 - psycopg Connection or AsyncConnection
    """Whether an idle connection is closed, or its server went away, found without a round trip.

    An idle connection has nothing to read. When the server goes away (restart, idle timeout,
    pg_terminate_backend) it sends a FATAL message or closes the socket, which makes the socket
    readable; the pool then replaces the connection. This costs a zero-timeout poll, where
    pool_pre_ping's SELECT 1 cost ~1 ms of CPU per request.
    """
    import select

    if conn.closed:
        return True
    poll = select.poll()  # not select.select: file descriptors above 1023 are fine
    poll.register(conn.fileno(), select.POLLIN)
    return bool(poll.poll(0))


_TUPLES_OK = 2  # psycopg.pq.ExecStatus.TUPLES_OK: the statement returned rows


class AsyncPostgres:
    """A small pool of psycopg AsyncConnections (autocommit) that runs store operations on the event loop.

    Through SQLAlchemy on worker threads a vote cost ~5 round trips (BEGIN, the rater's pairs,
    the vote, the next pair, COMMIT), a thread hop and SQLAlchemy's connection and transaction
    objects: server CPU 1.75 ms and PostgreSQL's 0.93 ms per vote, so 2 cores allowed ~700
    votes/s. Here a Read is one statement and a Write is one statement too (several are joined
    into one data-modifying WITH, which PostgreSQL runs atomically, and psycopg prepares after
    a few uses), each committed by autocommit: a vote is 2 round trips, no thread. Durability
    is PostgreSQL's own (synchronous_commit): the Write's commit is flushed before it answers.
    """

    def __init__(self, url: str, size: int = 8) -> None:
        from sqlalchemy.engine import make_url

        self.conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        self.size = size  # connections at most, per server process
        self._idle: list[tuple] = []  # (AsyncConnection, its AsyncCursor)
        self._free = None  # asyncio.Semaphore, made on first use: it belongs to the running loop
        self._joined: dict[tuple, str] = {}  # the Sql objects of a Write -> its one statement

    async def run(self, steps, integrity_errors: tuple):  # noqa: ANN001, ANN201 - Read/Write generator, its value
        """Drive a store operation (see survey.store.Write); its IntegrityErrors are thrown back into it."""
        import asyncio

        from psycopg.pq import TransactionStatus

        from survey.store import Operation

        if self._free is None:
            self._free = asyncio.Semaphore(self.size)
        async with self._free:
            conn, cursor = await self._checkout()
            op = Operation(steps)
            try:
                while (step := op.step()) is not None:
                    try:
                        op.rows = await self._execute(cursor, step)
                    except integrity_errors as exc:
                        op.error = exc
                return op.value
            finally:
                op.close()  # cancelled, or the connection failed: the operation's clean-up runs now
                if conn.closed or conn.broken or conn.info.transaction_status != TransactionStatus.IDLE:
                    await conn.close()
                else:
                    self._idle.append((conn, cursor))

    async def _checkout(self) -> tuple:  # (psycopg AsyncConnection, its AsyncCursor)
        """An idle connection and its cursor, or a new pair.

        One cursor per connection, reused: psycopg keeps each cursor's parameter adapters, which a
        new cursor per statement (`connection.execute`) looked up again every time.
        """
        import psycopg

        while self._idle:
            conn, cursor = self._idle.pop()
            if not closed_by_server(conn):
                return conn, cursor
            await conn.close()
        conn = await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True)
        return conn, conn.cursor()

    async def _execute(self, cursor, step) -> list[tuple]:  # noqa: ANN001 - AsyncCursor, Read or Write
        if hasattr(step, "sql"):  # a Read
            await cursor.execute(step.sql.pyformat, step.params)
        else:
            await cursor.execute(*self._join(step.steps))
        # the result's status, not `description` (which builds a Column object per column on every call)
        return await cursor.fetchall() if cursor.pgresult.status == _TUPLES_OK else []

    def _join(self, steps: tuple) -> tuple[str, dict]:
        """One statement for a Write: WITH w0 AS (first), w1 AS (second) ... last; parameters renamed apart."""
        if len(steps) == 1:
            return steps[0][0].pyformat, steps[0][1]
        key = tuple(sql for sql, _ in steps)
        joined = self._joined.get(key)
        if joined is None:
            parts = [re.sub(r"%\((\w+)\)s", rf"%(\1_{k})s", sql.pyformat) for k, sql in enumerate(key)]
            joined = self._joined[key] = "WITH " + ", ".join(f"w{k} AS ({part})" for k, part in enumerate(parts[:-1])) \
                + " " + parts[-1]
        params = {}
        for k, (_, values) in enumerate(steps):
            suffix = f"_{k}"
            params.update(zip([name + suffix for name in values], values.values()))
        return joined, params


def random_id(nbytes: int = 16) -> str:
    """Opaque url-safe id (no system name can be derived from it)."""
    return secrets.token_urlsafe(nbytes)


class DatabaseNotWritable(ValueError):
    """The survey database cannot take votes (read-only file, folder or server, or an older schema)."""


def check_writable(engine: Engine) -> None:
    """Raise DatabaseNotWritable (one sentence) unless the schema is current and a write goes through.

    A server on a read-only database starts fine and then answers every vote 500; this check runs
    at start-up instead. The probe is a DELETE that matches no row, inside a transaction that is
    rolled back: SQLite and PostgreSQL both open a write transaction for it, so a read-only file
    (or `mode=ro`), an unwritable folder (no -wal file can be made), a read-only PostgreSQL
    transaction or a missing privilege all fail here, and nothing is changed.
    """
    from sqlalchemy import delete, inspect
    from sqlalchemy.exc import SQLAlchemyError

    where = engine.url.render_as_string(hide_password=True)
    try:
        found = inspect(engine)
        missing = [f"{table.name}.{col.name}" for table in metadata.sorted_tables
                   for have in [{c["name"] for c in found.get_columns(table.name)}
                                if found.has_table(table.name) else set()]
                   for col in table.columns if col.name not in have]
        if missing:
            raise DatabaseNotWritable(f"The survey database {where} lacks {', '.join(missing[:3])} (made by an older "
                                      "ltxlab): rebuild the study in a new database with `ltxlab survey create`.")
        with engine.connect() as conn, conn.begin() as trans:
            conn.execute(delete(start_buckets).where(start_buckets.c.at < 0))
            trans.rollback()
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0].rstrip(".")
        raise DatabaseNotWritable(f"The survey database {where} cannot be written ({reason}): make the file and its "
                                  "folder writable, or pass a --db the server can write to.") from None
