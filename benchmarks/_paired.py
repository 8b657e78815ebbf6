"""Shared timing for the ours-vs-diffusers benchmarks (dit_speed, vae_speed, generate_speed).

The machine these run on is shared, so a single timing says little: each repeat runs
both sides back to back, alternating which goes first, and the verdict is the median of
the per-pair ratios with its spread (quartiles, min-max), printed beside the load
average. Each repeat also records the process CPU time: when the machine is
oversubscribed (load above its CPU count) wall time includes waiting for a core, while
CPU time is the work done, so the CPU-time ratio is the steadier of the two there. `op_profile` gives the per-forward time of the top aten ops of each side, the
profile that explains a ratio.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch


@dataclass(frozen=True, kw_only=True)
class Paired:
    ours_s: list[float]  # wall seconds per repeat, ours
    theirs_s: list[float]  # wall seconds per repeat, the reference, same repeat index = back to back
    ours_cpu_s: list[float]  # process CPU seconds per repeat, ours
    theirs_cpu_s: list[float]  # process CPU seconds per repeat, the reference

    @property
    def ratios(self) -> list[float]:
        return [a / b for a, b in zip(self.ours_s, self.theirs_s)]

    @property
    def cpu_ratios(self) -> list[float]:
        return [a / b for a, b in zip(self.ours_cpu_s, self.theirs_cpu_s)]

    def summary(self) -> str:
        """'wall: ours 1.2 ms, diffusers 1.4 ms, median paired ratio 0.850 [q1 .., q3 ..; min .., max ..; n=9];
        CPU time: ... ratio ...'."""
        return (f"wall: ours {statistics.median(self.ours_s) * 1e3:.1f} ms, diffusers "
                f"{statistics.median(self.theirs_s) * 1e3:.1f} ms, median paired ratio ours/diffusers {_spread(self.ratios)}; "
                f"CPU time: ours {statistics.median(self.ours_cpu_s) * 1e3:.1f} ms, diffusers "
                f"{statistics.median(self.theirs_cpu_s) * 1e3:.1f} ms, ratio {_spread(self.cpu_ratios)}")


def _spread(ratios: list[float]) -> str:
    r = sorted(ratios)
    q1, _, q3 = statistics.quantiles(r, n=4) if len(r) > 1 else (r[0], r[0], r[0])
    return f"{statistics.median(r):.3f} [q1 {q1:.3f}, q3 {q3:.3f}; min {r[0]:.3f}, max {r[-1]:.3f}; n={len(r)}]"


def sync(device: str | torch.device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable[[], object], device: str | torch.device = "cpu") -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call."""
    sync(device)
    start, cpu = time.perf_counter(), time.process_time()
    fn()
    sync(device)
    return time.perf_counter() - start, time.process_time() - cpu


def paired(ours: Callable[[], object], theirs: Callable[[], object], repeats: int, *, warmup: int = 1,
           device: str | torch.device = "cpu") -> Paired:
    """Time `repeats` back-to-back pairs after `warmup` untimed ones, alternating who goes first."""
    for _ in range(warmup):
        ours(), theirs()
    mine: list[tuple[float, float]] = []
    ref: list[tuple[float, float]] = []
    for i in range(repeats):
        order = [(ours, mine), (theirs, ref)]
        for fn, sink in order if i % 2 == 0 else order[::-1]:
            sink.append(timed(fn, device))
    return Paired(ours_s=[w for w, _ in mine], theirs_s=[w for w, _ in ref], ours_cpu_s=[c for _, c in mine],
                  theirs_cpu_s=[c for _, c in ref])


def load_average() -> str:
    """'load 1.20 1.05 0.98 on 2 CPUs': how shared the machine was while measuring."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"


def op_profile(fn: Callable[[], object], repeats: int = 3, top: int = 8) -> tuple[float, list[tuple[str, float, int]]]:
    """Total self CPU ms per call of fn, and (aten op, ms per call of fn, op calls per call of fn)
    for the `top` ops by time."""
    from torch.profiler import ProfilerActivity, profile

    fn()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(repeats):
            fn()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) / 1e3 / repeats
    return total, [(e.key, e.self_cpu_time_total / 1e3 / repeats, e.count // repeats) for e in events[:top]]


def print_profiles(ours: Callable[[], object], theirs: Callable[[], object], repeats: int = 3, top: int = 8) -> None:
    """Side-by-side per-call op times of both sides (run sequentially, so only the shares are comparable)."""
    (total_m, mine), (total_r, ref) = op_profile(ours, repeats, top), op_profile(theirs, repeats, top)
    print(f"    profile (self CPU ms per forward; sequential, so compare shares): ours {total_m:.1f}, diffusers {total_r:.1f}")
    print(f"    {'ours: op':<52}{'ms':>8}{'calls':>7}   | {'diffusers: op':<52}{'ms':>8}{'calls':>7}")
    for (a, ams, ac), (b, bms, bc) in zip(mine, ref):
        print(f"    {a[:52]:<52}{ams:8.1f}{ac:7d}   | {b[:52]:<52}{bms:8.1f}{bc:7d}")
