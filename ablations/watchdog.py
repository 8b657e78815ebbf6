"""Reap an embedded Ray node whose driver died without shutting it down (SIGKILL, OOM killer).

`ray.init()` in a sweep driver starts the node's processes (gcs_server, raylet, monitor,
log monitor, dashboard) as the driver's children. When the driver is SIGKILLed, the
raylet and GCS notice and exit, but Ray 2.60's runtime-env agent and dashboard agent log
"Raylet is dead! Exiting" and then stay up for good (their `sys.exit` runs in an asyncio
task), holding ports and memory, and a worker can outlive them too.
`prctl(PR_SET_PDEATHSIG)` cannot be set on processes Ray spawns, so a separate watchdog
does it: `start(session_dir)` launches `python -m ablations.watchdog DRIVER_PID
SESSION_DIR` with a pipe from the driver on its stdin. The kernel closes the pipe when
the driver exits in any way; the watchdog then ends every process of that Ray node
still running (SIGTERM, then SIGKILL after a grace period) and exits. While the driver
lives, it notes the node's processes once a second: Ray's node processes carry the
session folder on their command line, and everything they start (agents, workers)
descends from them, so nothing else the driver started (a database server in a test
session, say) is ever touched.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from pathlib import Path

POLL_S = 1.0  # how often the node's process tree is noted
GRACE_S = 3.0  # after the driver died: Ray's own processes get this long to go by themselves, then SIGTERM
KILL_AFTER_S = 3.0  # then SIGKILL for what ignored SIGTERM

_running: list[subprocess.Popen] = []  # the driver keeps the pipe's write end open by keeping this object


def start(session_dir: str | os.PathLike) -> subprocess.Popen:
    """Start the watchdog of this process's embedded Ray node (`session_dir` from `ray.init`)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "ablations.watchdog", str(os.getpid()), str(session_dir)],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,  # a Ctrl-C or a SIGKILL to the driver's process group leaves it to do its job
        cwd=str(Path(__file__).resolve().parents[1]),
    )
    _running.append(proc)
    return proc


def node_processes(driver_pid: int, session_dir: str) -> dict[int, float]:
    """{pid: create_time} of the Ray node started by `driver_pid`: its children naming `session_dir`, and their descendants."""
    import psutil

    found: dict[int, float] = {}
    try:
        children = psutil.Process(driver_pid).children()
    except psutil.Error:
        return found
    for child in children:
        try:
            if not any(session_dir in arg for arg in child.cmdline()):
                continue
            found[child.pid] = child.create_time()
            for sub in child.children(recursive=True):
                found[sub.pid] = sub.create_time()
        except psutil.Error:
            continue
    return found


def _alive(noted: dict[int, float]) -> list:
    """The noted processes still running (same pid and start time: a reused pid is not ours), with their descendants."""
    import psutil

    alive = {}
    for pid, created in noted.items():
        try:
            proc = psutil.Process(pid)
            if abs(proc.create_time() - created) < 1e-3 and proc.status() != psutil.STATUS_ZOMBIE:
                alive[pid] = proc
                for sub in proc.children(recursive=True):
                    alive[sub.pid] = sub
        except psutil.Error:
            continue
    return list(alive.values())


def reap(noted: dict[int, float]) -> int:
    """End the noted processes still running: SIGTERM, then SIGKILL. Returns how many had to be ended."""
    import psutil

    deadline = time.monotonic() + GRACE_S
    while time.monotonic() < deadline and _alive(noted):
        time.sleep(0.2)
    left = _alive(noted)
    for proc in left:
        try:
            proc.terminate()
        except psutil.Error:
            pass
    _, stubborn = psutil.wait_procs(left, timeout=KILL_AFTER_S)
    for proc in stubborn:
        try:
            proc.kill()
        except psutil.Error:
            pass
    return len(left)


def watch(driver_pid: int, session_dir: str) -> None:
    """Note the node's processes until the driver's pipe closes, then reap them."""
    noted: dict[int, float] = {}
    while True:
        noted.update(node_processes(driver_pid, session_dir))
        readable, _, _ = select.select([sys.stdin], [], [], POLL_S)
        if readable and not os.read(sys.stdin.fileno(), 4096):
            break  # EOF: the driver is gone
    reap(noted)


if __name__ == "__main__":
    watch(int(sys.argv[1]), sys.argv[2])
