"""Fixtures shared by several test files (keep small; helpers live in tests/_*.py)."""

from __future__ import annotations

import itertools
import shutil

import pytest

_db_names = itertools.count()


@pytest.fixture(scope="session")
def postgres_server():
    """One real PostgreSQL server for the whole session (tests/_postgres.py); fails if not installed."""
    from _postgres import MISSING, find_bindir, start_in_tempdir

    if find_bindir() is None:
        pytest.fail(MISSING, pytrace=False)
    server = start_in_tempdir()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.folder, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server) -> str:
    """A fresh, empty database on the session's PostgreSQL server (postgresql+psycopg:// URL)."""
    return postgres_server.create_database(f"test_{next(_db_names)}")
