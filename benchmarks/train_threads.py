"""`ltxlab train-vae --threads N`: training wall time per thread count, on this machine as it is loaded.

    python benchmarks/train_threads.py --threads 1 2 --steps 30 --repeats 3

Measured on the 2-core test machine at load average 11.6 -> 15.1 (5 other sessions' tests):
    --threads 1: median 14.47 s for 30 steps (min 8.69, max 16.58, 3 runs)
    --threads 2: median 179.85 s for 30 steps (min 165.49, max 200.97, 3 runs)
(2 was torch's default and the first `--threads` default there; the default now subtracts the load.)
--threads 0 runs the command without the flag (its default).

Each run is a fresh `ltxlab train-vae` process (the tiny ltx VAE on synthetic 9x32x32 clips) and
the figure is the training loop's own `wall_time_s` (imports and data excluded). Thread counts
are interleaved per repeat, so a change in the machine's load hits every count alike. Prints
the median and the min-max spread per count, and the load average before and after: issue 17
measured 218 s with torch's default threads against 8 s with one thread on a loaded machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def one_run(threads: int, steps: int, out: Path) -> float:
    command = [sys.executable, "-m", "ablations.cli", "train-vae", "--data", "synthetic", "--frames", "9",
               "--resolution", "32x32", "--steps", str(steps), "--batch-size", "2",
               "--set", "vae_data.num_scenes=4", "--out", str(out)] + (["--threads", str(threads)] if threads else [])
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    done = subprocess.run(command, capture_output=True, text=True, check=True, env=env,
                          cwd=Path(__file__).resolve().parent.parent)
    summary = json.loads(done.stdout[done.stdout.index("{"):])
    return float(summary["wall_time_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts to compare (0: the command's default)")
    parser.add_argument("--steps", type=int, default=30, help="optimizer steps per run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per thread count, interleaved")
    args = parser.parse_args()
    print(f"cores available: {len(os.sched_getaffinity(0))}, load average before: {os.getloadavg()[0]:.1f}")
    times: dict[int, list[float]] = {n: [] for n in args.threads}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for n in args.threads:
                times[n].append(one_run(n, args.steps, Path(tmp) / f"r{r}-t{n}"))
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    for n, values in times.items():
        print(f"--threads {n}: median {statistics.median(values):.2f} s for {args.steps} steps "
              f"(min {min(values):.2f}, max {max(values):.2f}, {len(values)} runs)")


if __name__ == "__main__":
    main()
