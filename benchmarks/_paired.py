"""Shared timing for the ours-vs-diffusers benchmarks (dit_speed, vae_speed, generate_speed).

The machine these run on is shared, so a single timing says little: each repeat runs
both sides back to back, alternating which goes first, and the verdict comes from the
median of the per-pair ratios and its distribution-free 95% interval (binomial order
statistics, `median_interval`), printed with the spread (quartiles, min-max) and the load
average: a median under the target whose interval is not is UNCLEAR, not a pass. Each repeat also records the process CPU time: when the machine is
oversubscribed (load above its CPU count) wall time includes waiting for a core, while
CPU time is the work done, so the CPU-time ratio is the steadier of the two there. `op_profile` gives the per-forward time of the top aten ops of each side, the
profile that explains a ratio.
"""

from __future__ import annotations

import math
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


    def verdict(self, what: str, target: float) -> str:
        """'PASS|UNCLEAR|MISS <what>: ...' against `target` for the ratio ours/theirs, from both the wall and the
        CPU-time ratios (the worse of the two counts). PASS: the 95% interval of the median ratio lies at or
        below the target; UNCLEAR: the median does, its interval does not (more pairs, or a quieter machine,
        would decide), or there are too few pairs (<= 5) for a 95% interval; MISS: the median is above it
        ('clearly' when the whole interval is)."""
        wall, cpu = statistics.median(self.ratios), statistics.median(self.cpu_ratios)
        (wl, wh, level), (cl, ch, _) = median_interval(self.ratios), median_interval(self.cpu_ratios)
        low, high, median = max(wl, cl), max(wh, ch), max(wall, cpu)
        stats = (f"median ratio wall {wall:.3f} [{wl:.3f}, {wh:.3f}], CPU {cpu:.3f} [{cl:.3f}, {ch:.3f}] "
                 f"({level:.0%} intervals of the median; n={len(self.ratios)})")
        if level < 0.95:  # too few pairs for a 95% interval (n <= 5): the median alone decides nothing
            return (f"UNCLEAR {what}: {stats}: {len(self.ratios)} pairs give no 95% interval of the median "
                    f"(the median is {'<=' if median <= target else '>'} {target})")
        if high <= target:
            return f"PASS {what}: {stats} <= {target}"
        if median <= target:
            return f"UNCLEAR {what}: {stats}: the median is <= {target}, its interval reaches {high:.3f}"
        clearly = "clearly, " if low > target else ""
        return f"MISS {what}: {stats}: {clearly}over {target} by {median - target:.3f}"


def median_interval(values: list[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """Distribution-free interval for the median of independent values (binomial order statistics):
    (low, high, achieved coverage), the k-th smallest and k-th largest with k the largest index whose
    coverage is still >= `confidence`; with too few values for that, (min, max, their coverage)."""
    v, n = sorted(values), len(values)
    tail = 0.0  # P(Binomial(n, 1/2) < k)
    k = 0
    while k < n // 2 and 1 - 2 * (tail + math.comb(n, k) / 2**n) >= confidence:
        tail += math.comb(n, k) / 2**n
        k += 1
    k = max(k, 1)
    coverage = 1 - 2 * sum(math.comb(n, i) for i in range(k)) / 2**n
    return v[k - 1], v[n - k], coverage


def _quartiles(ratios: list[float]) -> tuple[float, float, float]:
    r = sorted(ratios)
    return tuple(statistics.quantiles(r, n=4)) if len(r) > 1 else (r[0], r[0], r[0])  # type: ignore[return-value]


def _spread(ratios: list[float]) -> str:
    r = sorted(ratios)
    q1, _, q3 = _quartiles(r)
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
           device: str | torch.device = "cpu", max_repeats: int | None = None, tight: float = 0.05) -> Paired:
    """Time `repeats` back-to-back pairs after `warmup` untimed ones, alternating who goes first.

    With `max_repeats`, keep adding pairs (two at a time, so both orders stay balanced) until the
    interquartile range of the wall and CPU-time ratios is at most `tight` or `max_repeats` is
    reached: on a busy machine (2 threads on 2 shared cores) a fixed count leaves verdicts open."""
    for _ in range(warmup):
        ours(), theirs()
    mine: list[tuple[float, float]] = []
    ref: list[tuple[float, float]] = []

    def result() -> Paired:
        return Paired(ours_s=[w for w, _ in mine], theirs_s=[w for w, _ in ref], ours_cpu_s=[c for _, c in mine],
                      theirs_cpu_s=[c for _, c in ref])

    i = 0
    while i < repeats or (max_repeats and i < max_repeats and _wide(result(), tight)):
        order = [(ours, mine), (theirs, ref)]
        for fn, sink in order if i % 2 == 0 else order[::-1]:
            sink.append(timed(fn, device))
        i += 1
    return result()


def _wide(result: Paired, tight: float) -> bool:
    """Whether the quartile interval of the wall or CPU-time ratios is wider than `tight` (or the
    count is odd: pairs are added two at a time, one in each order)."""
    widths = [q3 - q1 for q1, _, q3 in (_quartiles(result.ratios), _quartiles(result.cpu_ratios))]
    return len(result.ratios) % 2 == 1 or max(widths) > tight


def add_repeat_options(parser, default: int) -> None:  # type: ignore[no-untyped-def]
    """--repeats, --max-repeats and --tight, the stopping rule of `paired`, for every benchmark."""
    parser.add_argument("--repeats", type=int, default=default, help="timed pairs at least")
    parser.add_argument("--max-repeats", type=int, default=None,
                        help="add pairs until the ratios' quartile interval is --tight wide, up to this many")
    parser.add_argument("--tight", type=float, default=0.05, help="quartile interval width that ends the repeats")


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
