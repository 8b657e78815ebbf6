"""How many torch threads a process may use, and setting them.

torch starts one intra-op thread per core it can see. On a shared machine, or beside other
Ray tasks, that oversubscribes the cores: OpenMP threads spin waiting for each other and a
tiny training run took 218 s instead of 8 s with one thread (issue 17). So every entry point
sets its thread count explicitly: the `ltxlab` training and sampling commands from
`--threads` (default `default_threads()`: the idle cores, at most 8), the sweep runner per
task (`threads_per_task`).
"""

from __future__ import annotations

import os

MAX_DEFAULT_THREADS = 8  # past ~8 threads the tiny and small presets gain nothing on CPU and only contend


def available_cpus() -> int:
    """Cores this process may run on: its affinity mask (taskset, cgroup cpusets), not the machine's count."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # macOS has no sched_getaffinity
        return max(1, os.cpu_count() or 1)


def idle_cpus() -> int:
    """Available cores not already busy: the cores minus the 1-minute load average (at least 1).

    Measured on the 2-core test machine at load ~12 (benchmarks/train_threads.py): 30 tiny VAE
    steps took 180 s with 2 threads and 14 s with 1, because OpenMP threads spin-wait for
    siblings the kernel has descheduled; so a loaded machine gets one thread."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        load = 0.0
    return max(1, available_cpus() - int(round(load)))


def default_threads() -> int:
    """A single command's default: the idle available cores, at most `MAX_DEFAULT_THREADS`."""
    return min(idle_cpus(), MAX_DEFAULT_THREADS)


def threads_per_task(slots: int) -> int:
    """Threads for each of `slots` concurrent tasks sharing this machine's available cores (at least 1)."""
    return max(1, available_cpus() // max(1, slots))


def use_threads(threads: int) -> None:
    """Set torch's intra-op threads to `threads` and, if still possible, its inter-op pool too.

    The inter-op pool can only be sized before its first use; a second command in the same
    process (tests) keeps the first size, which is harmless: eager training barely uses it.
    """
    import torch

    torch.set_num_threads(max(1, threads))
    try:
        torch.set_num_interop_threads(max(1, threads))
    except RuntimeError:  # "cannot set number of interop threads after parallel work has started"
        pass
