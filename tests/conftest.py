"""Fixtures shared by several test files (keep small; helpers live in tests/_*.py)."""

from __future__ import annotations

import itertools
import os
import shutil

import pytest

# `make test` runs two test processes on the machine's cores. torch's default of one thread per
# core then puts 2 x cores OpenMP threads on them, which spin-wait for descheduled siblings:
# tests/test_vae_training.py took 57 s that way and 26 s at one thread, on the 2-core machine with
# other work running. So one thread per test process (and the subprocesses it starts), unless
# OMP_NUM_THREADS says otherwise; a test that needs another count sets it itself.
if not os.environ.get("OMP_NUM_THREADS"):
    os.environ["OMP_NUM_THREADS"] = "1"
try:
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
except ImportError:
    pass

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


@pytest.fixture(scope="module")
def ray_local():
    """An embedded 2-CPU Ray for the module. It is started once per test process and left up for
    the next module (a start is ~10 s, and its worker processes import torch again): a fixture that
    needs a cluster of its own (test_sweep_cluster's module-scoped `two_nodes`) shuts it down, and the next module
    that asks starts it again. Ray's exit hook stops it with the process."""
    ray = pytest.importorskip("ray")
    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    return ray


# The files that take longest (`pytest --durations`, summed per file, slowest first). `make test`
# runs `--dist loadfile --no-loadscope-reorder`, so xdist hands files to its workers in collection
# order: these start first and the short files fill in around them, instead of a long Ray file
# starting last while the other worker idles. A file missing here only runs later.
HEAVY_FIRST = (
    "test_ray_train.py", "test_sweep.py", "test_sweep_cluster.py", "test_dashboard_browser.py", "test_sharded_stages.py",
    "test_distributed_training.py", "test_stats.py", "test_sweep_submit.py", "test_aesthetic.py",
    "test_manifest_data.py", "test_dashboard_data.py", "test_curate_pipeline.py",
    "test_sweep_hardening.py", "test_dashboard.py", "test_survey_server.py", "test_survey_hardening.py",
    "test_dashboard_real_sweep.py", "test_cli_errors.py", "test_survey_multiproc.py", "test_lpips.py",
)


def pytest_collection_modifyitems(items: list) -> None:
    rank = {name: i for i, name in enumerate(HEAVY_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(HEAVY_FIRST)))  # stable: the rest keep their order
