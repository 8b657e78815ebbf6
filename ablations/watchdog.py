"""Reap an embedded Ray node whose driver died without shutting it down (SIGKILL, OOM killer).

`ray.init()` in a sweep driver starts the node's processes (gcs_server, raylet, monitor,
log monitor, dashboard) as the driver's children. When the driver is SIGKILLed, the
raylet and GCS notice and exit, but Ray 2.60's runtime-env agent and dashboard agent log
"Raylet is dead! Exiting" and then stay up for good (their `sys.exit` runs in an asyncio
task), holding ports and memory, and a worker can outlive them too.
`prctl(PR_SET_PDEATHSIG)` cannot be set on processes Ray spawns, so a separate watchdog
does it: `start(ray_dir)`, called just before `ray.init`, launches `python -m
ablations.watchdog DRIVER_PID RAY_DIR` with a pipe from the driver on its stdin. The
kernel closes the pipe when the driver exits in any way; the watchdog then ends every
process of that Ray node still running (SIGTERM, then SIGKILL after a grace period) and
exits. While the driver lives, it notes the node's processes twice a second: the node's
own processes are the driver's children run from Ray's package folder (gcs_server,
raylet, monitors), and everything they start (agents, workers) descends from them, so
nothing else the driver started (a database server in a test session, say) is touched.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

POLL_S = 0.5  # how often the node's process tree is noted: a process started and orphaned in between is missed
GRACE_S = 3.0  # after the driver died: Ray's own processes get this long to go by themselves, then SIGTERM
KILL_AFTER_S = 3.0  # then SIGKILL for what ignored SIGTERM

_running: list[subprocess.Popen] = []  # the driver keeps the pipe's write end open by keeping this object


def start(ray_dir: str | os.PathLike) -> subprocess.Popen:
    """Start the watchdog of the Ray node this process is about to start (`ray_dir`: Ray's package folder)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "ablations.watchdog", str(os.getpid()), str(ray_dir)],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,  # a Ctrl-C or a SIGKILL to the driver's process group leaves it to do its job
        cwd=str(Path(__file__).resolve().parents[1]),
    )
    _running.append(proc)
    return proc


def _table() -> dict[int, tuple[int, int, str]]:
    """{pid: (parent pid, start time in clock ticks, state)} of every process, from /proc (Linux)."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue  # gone meanwhile
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) ": state, ppid, ... starttime is field 22
        table[int(entry)] = (int(fields[1]), int(fields[19]), fields[0])
    return table


def _descendants(roots: list[int], table: dict[int, tuple[int, int, str]]) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, stack = [], list(roots)
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack.extend(children.get(pid, []))
    return found


def _runs_from(pid: int, folder: str) -> bool:
    """Whether the process's program or script is a file under `folder` (gcs_server, raylet, Ray's Python monitors)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            args = fh.read().decode(errors="replace").split("\0")
    except OSError:
        return False
    return any(arg.startswith(folder.rstrip("/") + "/") for arg in args[:3])


def node_processes(driver_pid: int, ray_dir: str) -> dict[int, int]:
    """{pid: start time} of the Ray node started by `driver_pid`: its children run from `ray_dir`, and their descendants."""
    table = _table()
    roots = [pid for pid, (ppid, _, _) in table.items()
             if ppid == driver_pid and pid != os.getpid() and _runs_from(pid, ray_dir)]
    return {pid: table[pid][1] for pid in _descendants(roots, table) if pid in table}


def _alive(noted: dict[int, int]) -> list[int]:
    """The noted processes still running (same pid and start time: a reused pid is not ours), with their descendants."""
    table = _table()
    ours = [pid for pid, started in noted.items() if pid in table and table[pid][1] == started]
    return [pid for pid in _descendants(ours, table) if pid in table and table[pid][2] != "Z"]


def _signal(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except OSError:
            pass  # gone meanwhile


def _wait_gone(noted: dict[int, int], seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while (left := _alive(noted)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def reap(noted: dict[int, int]) -> int:
    """End the noted processes still running: SIGTERM, then SIGKILL. Returns how many had to be ended."""
    left = _wait_gone(noted, GRACE_S)
    _signal(left, signal.SIGTERM)
    _signal(_wait_gone(noted, KILL_AFTER_S), signal.SIGKILL)
    return len(left)


def watch(driver_pid: int, ray_dir: str) -> None:
    """Note the node's processes until the driver's pipe closes, then reap them."""
    noted: dict[int, int] = {}
    while True:
        noted.update(node_processes(driver_pid, ray_dir))
        readable, _, _ = select.select([sys.stdin], [], [], POLL_S)
        if readable and not os.read(sys.stdin.fileno(), 4096):
            break  # EOF: the driver is gone
    table = _table()  # at once, before the raylet exits and its children are orphaned out of reach
    ours = [pid for pid, started in noted.items() if pid in table and table[pid][1] == started]
    noted.update({pid: table[pid][1] for pid in _descendants(ours, table) if pid in table})
    reap(noted)


if __name__ == "__main__":
    watch(int(sys.argv[1]), sys.argv[2])
