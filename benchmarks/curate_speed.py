"""Curation throughput on Ray Data versus the single-process loop, and peak memory as the input grows.

Speed: clips/s of `clips.curate.pipeline` with `engine="ray"` (embedded Ray, `--workers`
CPUs, started once and not timed) against `engine="local"` (the same stage functions in one
process, one file after another) over the same files, run interleaved (local, pool, ray,
local, ...) so machine load hits all alike. `pool` runs the loop's code in a plain
multiprocessing pool of `--workers` processes: the parallel ceiling of this machine at that
moment, so a shared, loaded machine shows as such. Reports the median of the repeats, their
range, the median of the per-repeat ratios (target ray/local >= 1.6x on 2 workers) and the
CPU-seconds per clip of each engine (this process plus all its descendants).

Memory: for each input size (100 ... 1000 files), a fresh process starts Ray and runs the
whole `curate()` (rows streamed to the driver, dataset written); it reports the driver's
peak RSS (`ru_maxrss`) and every Ray worker's peak RSS (`VmHWM` in /proc). Flat means the
pipeline streams: rows carry no frames, each stage decodes the frames it needs.

Inputs are generated once under `--work`: a few hundred distinct small videos (moving,
static, letterboxed, with cuts), hard-linked up to the largest size.

    python benchmarks/curate_speed.py                       # speed (200 files x 3 repeats) + memory
    python benchmarks/curate_speed.py --files 300 --repeats 5 --sizes 100,1000
    python benchmarks/curate_speed.py --skip-memory --scorer   # with a random-init cnn aesthetic scorer
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def make_inputs(work: Path, distinct: int, total: int, seed: int = 0) -> list[Path]:
    """`distinct` generated videos (reused when present), hard-linked to `total` paths."""
    from clips.curate import synthetic

    src = work / "distinct"
    marker = src / f".done-{distinct}-{seed}"
    if not marker.exists():
        src.mkdir(parents=True, exist_ok=True)
        for i in range(distinct):
            path, kind = src / f"v{i:04d}.mp4", i % 4
            if kind == 0:
                synthetic.write_motion_video(path, speed=1.0 + (i % 7) * 0.4, frames=48, seed=seed + i)
            elif kind == 1:
                synthetic.write_motion_video(path, speed=0.0, noise=3.0, frames=48, seed=seed + i)
            elif kind == 2:
                synthetic.write_bars_video(path, bars=(12, 12, 0, 0), frames=48, seed=seed + i)
            else:
                synthetic.write_cut_video(path, shot_lengths=(24, 30), seed=seed + i)
        marker.touch()
    linked = work / "linked"
    linked.mkdir(exist_ok=True)
    files = []
    for j in range(total):
        path = linked / f"f{j:05d}.mp4"
        if not path.exists():
            os.link(src / f"v{j % distinct:04d}.mp4", path)
        files.append(path)
    return files


def config(workers: int, scorer: str | None):
    from clips.curate.config import config_from_dict

    data = {"workers": workers, "shots": {"min_duration_s": 0.5}}
    if scorer:
        data["aesthetic"] = {"scorer": scorer, "top_k": 100}
    return config_from_dict(data)


def random_scorer(work: Path) -> str:
    import torch

    from models.aesthetic import AestheticConfig, save_scorer

    torch.manual_seed(0)
    return str(save_scorer(AestheticConfig(kind="cnn", image_size=32, channels=(8, 16), hidden=16).build().eval(),
                           work / "scorer"))


def _file_rows(item, cfg) -> list[dict]:
    """The loop's rows of one file (what a pool worker runs)."""
    from clips.curate.pipeline import curate_rows

    return curate_rows([item], cfg, tempfile.gettempdir(), "local")


def _run(engine: str, items: list, cfg, pool) -> list[dict]:
    from clips.curate.pipeline import curate_rows

    if engine == "pool":
        return [row for rows in pool.imap_unordered(partial(_file_rows, cfg=cfg), items, chunksize=4) for row in rows]
    return curate_rows(items, cfg, tempfile.gettempdir(), engine)


def speed(files: list[Path], repeats: int, workers: int, scorer: str | None) -> None:
    """Interleaved repeats of the loop, a plain process pool (the hardware's ceiling) and Ray Data."""
    import multiprocessing

    from clips.curate.inputs import SourceFile
    from clips.curate.pipeline import start_ray

    cfg = config(workers, scorer)
    items = [SourceFile(path=str(p), caption=None) for p in files]
    t = time.perf_counter()
    start_ray(workers)
    print(f"ray start: {time.perf_counter() - t:.1f} s (not timed below)")
    engines = ("local", "pool", "ray")
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        for engine in engines[1:]:
            _run(engine, items[: 2 * workers], cfg, pool)  # warm the workers' imports
        rates: dict[str, list[float]] = {e: [] for e in engines}
        cpu: dict[str, list[float]] = {e: [] for e in engines}  # CPU-s per clip of this process and its descendants
        clips = 0
        for r in range(repeats):
            for engine in engines:
                before, t = _tree_cpu_s(), time.perf_counter()
                rows = _run(engine, items, cfg, pool)
                wall, used = time.perf_counter() - t, _tree_cpu_s() - before
                clips = sum(row["start_frame"] >= 0 for row in rows)
                rates[engine].append(clips / wall)
                cpu[engine].append(used / clips)
                print(f"  repeat {r + 1} {engine:<5} {wall:6.1f} s  {clips / wall:6.2f} clips/s  "
                      f"{used:6.1f} CPU-s", flush=True)
    print(f"\n{len(files)} files, {clips} clips, {repeats} interleaved repeats, {workers} workers "
          "(pool: multiprocessing with the loop's code, the ceiling on this machine now)")
    for engine in engines:
        v, c = rates[engine], cpu[engine]
        print(f"{engine:<6} median {statistics.median(v):6.2f} clips/s  (range {min(v):.2f} - {max(v):.2f}); "
              f"{statistics.median(c) * 1000:.0f} CPU-ms per clip (range {min(c) * 1000:.0f} - {max(c) * 1000:.0f})")
    for a, b in (("ray", "local"), ("pool", "local"), ("ray", "pool")):
        ratios = [x / y for x, y in zip(rates[a], rates[b])]
        target = "; target >= 1.6x" if (a, b) == ("ray", "local") else ""
        print(f"speed-up {a}/{b}: median of per-repeat ratios {statistics.median(ratios):.2f}x "
              f"(range {min(ratios):.2f} - {max(ratios):.2f}){target}")


def _proc_tree() -> dict[int, list[int]]:
    """ppid -> child pids of every process, from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "(comm)": state, ppid, ...
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    return children


def _descendants() -> list[int]:
    children, found, todo = _proc_tree(), [], [os.getpid()]
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def _tree_cpu_s() -> float:
    """User + system CPU seconds of this process and every live descendant (Ray's raylet, GCS, workers)."""
    tick, total = os.sysconf("SC_CLK_TCK"), 0.0
    for pid in [os.getpid(), *_descendants()]:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


def _peak_kib(pid: int) -> int:
    """VmHWM (peak resident set) of a process in KiB, 0 if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _ray_workers() -> list[int]:
    """Pids of this process's descendants whose title is `ray::...` (Ray workers; not raylet or GCS)."""
    found = []
    for pid in _descendants():
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::"):
                found.append(pid)
        except OSError:
            pass
    return found


def memory_run(files: list[Path], workers: int, scorer: str | None) -> dict:
    """One curate() of `files` on a fresh Ray in this process: peak RSS of the driver and of each worker."""
    import ray

    from clips.curate.pipeline import curate, start_ray

    src = Path(tempfile.mkdtemp()) / "src.jsonl"
    src.write_text("".join(json.dumps({"path": str(p)}) + "\n" for p in files), encoding="utf-8")
    start_ray(workers)
    t = time.perf_counter()
    result = curate(src, src.parent / "out", config(workers, scorer))
    wall = time.perf_counter() - t
    workers_kib = [_peak_kib(pid) for pid in _ray_workers()]
    ray.shutdown()
    return {"files": len(files), "clips": result.report["counts"]["clips"], "wall_s": wall,
            "driver_peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "worker_peak_mib": max(workers_kib, default=0) / 1024, "workers_seen": len(workers_kib),
            "workers_sum_peak_mib": sum(workers_kib) / 1024}


def memory(work: Path, distinct: int, sizes: list[int], workers: int, scorer: str | None) -> None:
    print(f"\npeak memory, fresh process + embedded Ray per size ({workers} workers)")
    print(f"{'files':>6} {'clips':>6} {'wall s':>7} {'driver MiB':>11} {'max worker MiB':>15} {'sum workers MiB':>16}")
    for size in sizes:
        cmd = [sys.executable, __file__, "--memory-run", str(size), "--work", str(work), "--workers", str(workers),
               "--distinct", str(distinct)]
        cmd += ["--scorer-path", scorer] if scorer else []
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=True).stdout
        m = json.loads(out.strip().splitlines()[-1])
        print(f"{m['files']:>6} {m['clips']:>6} {m['wall_s']:>7.1f} {m['driver_peak_mib']:>11.0f} "
              f"{m['worker_peak_mib']:>15.0f} {m['workers_sum_peak_mib']:>16.0f}", flush=True)


def _load() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "ltxlab-curate-bench")
    parser.add_argument("--distinct", type=int, default=300, help="distinct generated videos")
    parser.add_argument("--files", type=int, default=200, help="files per speed run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sizes", default="100,300,1000", help="input sizes of the memory runs")
    parser.add_argument("--scorer", action="store_true", help="add a random-init cnn aesthetic scorer stage")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--memory-run", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--scorer-path", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.memory_run is not None:
        files = make_inputs(args.work, args.distinct, args.memory_run)
        print(json.dumps(memory_run(files, args.workers, args.scorer_path)))
        return
    print(f"load before: {_load()}")
    files = make_inputs(args.work, args.distinct, max([args.files, *sizes]))
    scorer = random_scorer(args.work) if args.scorer else None
    if not args.skip_speed:
        speed(files[: args.files], args.repeats, args.workers, scorer)
    if not args.skip_memory:
        import ray

        ray.shutdown()
        memory(args.work, args.distinct, sizes, args.workers, scorer)
    print(f"load after: {_load()}")


if __name__ == "__main__":
    main()
