"""`ltxlab dashboard` stops with its signal: no Streamlit server is left holding the port (issue 15, item 10).

The command used to run Streamlit as a child and not pass signals on, so a SIGTERM (a service
manager, a test harness) ended `ltxlab` and left the server running. Here the real command
runs in a subprocess on a free port; once it serves, it gets SIGTERM, SIGINT or SIGHUP, and
within a few seconds the port must be free and no Streamlit process for it may remain.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests._ports import free_port

LTXLAB = Path(sys.executable).with_name("ltxlab")


def _serving(port: int) -> bool:
    """Streamlit answers its health check: started, with its own signal handlers in place (a
    bound port alone comes earlier, and a SIGINT then can land before Streamlit handles it)."""
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as reply:
            return reply.status == 200
    except OSError:
        return False


def _port_is_free(port: int) -> bool:
    """No socket listens on the port. SO_REUSEADDR, as a restarted server sets it: connections of
    the health check left in TIME_WAIT do not count, a listening socket still does (Linux)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _streamlit_pids(port: int) -> list[int]:
    """Processes whose command line runs streamlit on `port` (read from /proc)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:  # ended while listing
            continue
        if b"streamlit" in argv and str(port).encode() in argv:
            pids.append(int(entry.name))
    return pids


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=lambda s: s.name)
def test_a_signal_to_ltxlab_dashboard_stops_the_server(tmp_path, signum):
    port = free_port()
    proc = subprocess.Popen([str(LTXLAB), "dashboard", "--results", str(tmp_path), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not _serving(port):
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the dashboard did not start serving within 60 s"
            time.sleep(0.2)
        proc.send_signal(signum)
        proc.wait(timeout=30)  # a graceful stop; 10 s was too short beside a parallel test worker
        deadline = time.monotonic() + 5
        while (_streamlit_pids(port) or not _port_is_free(port)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _streamlit_pids(port) == [], "a Streamlit server outlived `ltxlab dashboard`"
        assert _port_is_free(port), f"port {port} is still held after {signum.name}"
    finally:
        for pid in _streamlit_pids(port):  # leave nothing behind when the assertion failed
            os.kill(pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
