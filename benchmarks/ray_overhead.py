"""Ray overhead of a sweep: summed stage compute time x slots held / (sweep wall time x parallel slots).

1.0 means every slot computed all the time; the gap is Ray start-up, worker start-up and
imports, scheduling latency, result collection, store writes and idle slots the stage
graph could not fill. Runs the sweep from scratch in a temporary results root.

    python benchmarks/ray_overhead.py            # the demo sweep (target >= 0.85)
    python benchmarks/ray_overhead.py --recipe tiny-pair
    python benchmarks/ray_overhead.py --from-results results/demo   # a sweep that already ran (e.g. make demo)
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time

import json
import os
from pathlib import Path

from ablations.recipes import RECIPES
from ablations.recipes.common import smoke
from ablations.runner import run_sweep


def slot_seconds(stage: str, result: dict, slots: int) -> float:
    """A stage's compute time x the slots it held: one, or all `slots` (every CPU of the embedded
    node) for a stage that times itself alone (`StageSpec.alone`)."""
    from ablations.runner import STAGE_SPECS

    return result["compute_s"] * (slots if STAGE_SPECS[stage].alone else 1)


def from_results(sweep_dir: Path) -> None:
    """Efficiency of a finished sweep from its store: stage compute times from the cache,
    wall time from sweep.json; slots = this machine's CPUs (the embedded default)."""
    meta = json.loads((sweep_dir / "sweep.json").read_text())
    keys = set()
    for manifest in sweep_dir.glob("runs/*/manifest.json"):
        for stage, info in json.loads(manifest.read_text())["stages"].items():
            if not info.get("reused"):
                keys.add((stage, info["key"]))
    slots = os.cpu_count() or 1
    compute = sum(slot_seconds(s, json.loads((sweep_dir.parent / "_cache" / s / k / "result.json").read_text()), slots)
                  for s, k in keys)
    print(f"sweep {meta['sweep']}: {len(keys)} stage instances ran, wall {meta['wall_time_s']:.1f} s, "
          f"summed compute x slots held {compute:.1f} s, {slots} slots")
    print(f"efficiency = slot-seconds held / (wall x slots): {compute / (meta['wall_time_s'] * slots):.3f}  (target >= 0.85)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="demo")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--from-results", type=Path, default=None, help="RESULTS/SWEEP of a finished sweep")
    args = parser.parse_args()
    if args.from_results:
        from_results(args.from_results)
        return
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
    held = sum(slot_seconds(st.instance.stage, st.result, outcome.slots) for st in ran)  # slot-seconds the stages held
    print(f"summed stage compute:               {outcome.compute_s:8.1f} s ({held:.1f} slot-seconds held)")
    print(f"sweep wall time (incl. Ray start):  {total:8.1f} s")
    print(f"wall time from first stage start:   {total - (first - started):8.1f} s")
    print(f"efficiency = slot-seconds held / (wall x slots):            {held / (total * outcome.slots):.3f}  (target >= 0.85)")
    print(f"efficiency excluding Ray start-up before stage 1: "
          f"{held / ((total - (first - started)) * outcome.slots):.3f}")


if __name__ == "__main__":
    main()
