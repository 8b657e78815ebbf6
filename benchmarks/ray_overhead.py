"""Ray overhead of a sweep: summed stage compute time / (sweep wall time x parallel slots).

1.0 means every slot computed all the time; the gap is Ray start-up, worker start-up and
imports, scheduling latency, result collection, store writes and idle slots the stage
graph could not fill. Runs the sweep from scratch in a temporary results root.

    python benchmarks/ray_overhead.py            # the demo sweep (target >= 0.85)
    python benchmarks/ray_overhead.py --recipe tiny-pair
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time

from ablations.recipes import RECIPES
from ablations.recipes.common import smoke
from ablations.runner import run_sweep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="demo")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    sweep = RECIPES.get(args.recipe)()
    if args.smoke:
        sweep = dataclasses.replace(sweep, base=smoke(sweep.base))
    with tempfile.TemporaryDirectory() as root:
        started = time.time()
        outcome = run_sweep(sweep, root, progress=False)
        total = time.time() - started
    ran = [st for st in outcome.states.values() if st.status == "done" and not st.skipped]
    first = min(st.result["started_at"] for st in ran)
    stages = {}
    for st in ran:
        stages.setdefault(st.instance.stage, []).append(st.result["compute_s"])
    print(f"sweep {sweep.name}: {len(ran)} stage instances on {outcome.slots} slots, {outcome.runs_done} runs done")
    for stage, times in stages.items():
        print(f"  {stage:<15} n={len(times):<2} compute {sum(times):7.1f} s (mean {sum(times) / len(times):.1f} s)")
    print(f"summed stage compute:               {outcome.compute_s:8.1f} s")
    print(f"sweep wall time (incl. Ray start):  {total:8.1f} s")
    print(f"wall time from first stage start:   {total - (first - started):8.1f} s")
    print(f"efficiency = compute / (wall x slots):            {outcome.compute_s / (total * outcome.slots):.3f}  (target >= 0.85)")
    print(f"efficiency excluding Ray start-up before stage 1: "
          f"{outcome.compute_s / ((total - (first - started)) * outcome.slots):.3f}")


if __name__ == "__main__":
    main()
