"""Run a training stage on its workers: in-process for one, a Ray Train job for several.

`run(entry, kwargs, layout, out_dir)` calls `entry(**kwargs, layout=layout)` on every
worker. With `train.workers=1` that is the stage's own Ray task (no process group, no
start-up cost: the laptop default). With N > 1 it is a Ray Train `TorchTrainer` with N
workers (`ScalingConfig`: GPUs or CPUs per worker, the placement strategy), the nccl
backend on GPUs and gloo on CPUs, and `FailureConfig(max_failures)`: when a worker or its
node dies, Ray Train restarts the whole group, and every worker resumes from the newest
complete DCP checkpoint in `out_dir`. The stage's summary is written by rank 0 to
`out_dir/train_summary.json` and read back here; restarts are counted from
`attempts.json` (`loop.restarts`).

`entry` is named as "module:function" so it can be imported on any node.
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path
from typing import Any

from ablations.store import atomic_write_json
from ablations.training.config import ParallelConfig
from ablations.training.loop import restarts

SUMMARY = "train_summary.json"


class ClusterTooSmallError(RuntimeError):
    """A run asks for more workers than the cluster can ever hold."""


def _resolve(entry: str):
    module, name = entry.split(":")
    return getattr(importlib.import_module(module), name)


def placement(layout: ParallelConfig, node_capacity: list[dict[str, float]], use_gpu: bool) -> str:
    """Ray's placement strategy for one run: STRICT_PACK when a single node holds all its
    workers, else PACK (spread over as few nodes as possible); `train.placement` overrides."""
    if layout.placement == "spread":
        return "SPREAD"
    if layout.placement == "pack":
        return "PACK"
    need = _worker_resources(layout, use_gpu)
    fits = any(all(node.get(k, 0.0) >= v * layout.workers for k, v in need.items()) for node in node_capacity)
    return "STRICT_PACK" if fits else "PACK"


def _worker_resources(layout: ParallelConfig, use_gpu: bool) -> dict[str, float]:
    need = {"CPU": layout.cpus_per_worker}
    if use_gpu:
        need["GPU"] = layout.gpus_per_worker
    return need


def check_fits(layout: ParallelConfig, node_capacity: list[dict[str, float]], use_gpu: bool, what: str) -> None:
    """One sentence, before launch, when the cluster can never hold the run's workers."""
    need = _worker_resources(layout, use_gpu)
    # each worker is one bundle: count how many bundles every node can hold
    slots = 0
    for node in node_capacity:
        per_node = min(int(node.get(k, 0.0) // v) if v > 0 else 10**9 for k, v in need.items())
        slots += per_node
    if slots < layout.workers:
        unit = " + ".join(f"{v:g} {k}" for k, v in need.items())
        raise ClusterTooSmallError(
            f"{what} asks for train.workers={layout.workers} workers of {unit} each, but this cluster can hold only {slots}; "
            f"lower train.workers (or train.cpus_per_worker / train.gpus_per_worker) or add nodes.")


def node_capacity() -> list[dict[str, float]]:
    """Total resources of each alive node of the connected Ray cluster."""
    import ray

    return [dict(n["Resources"]) for n in ray.nodes() if n.get("Alive")]


def check_device(expect_cuda: bool, what: str) -> None:
    """The device this process trains on must be the one Ray gave it, which is what the stage's key records
    (`ablations.graph.training_numerics`: CUDA and bf16 when the cluster has GPUs, else CPU and fp32). A GPU
    task whose torch sees no GPU (a CPU-only torch build on a GPU node, a broken driver) would otherwise
    train in fp32 on the CPU under a CUDA key, and a CPU task that sees one would train on it."""
    import torch

    have = torch.cuda.is_available()
    if expect_cuda and not have:
        build = f"built for CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        raise RuntimeError(f"{what}: Ray gave this worker a GPU, but torch {torch.__version__} ({build}) sees no CUDA "
                           "device; install a CUDA build of torch on the GPU nodes (and check nvidia-smi there), or "
                           "run the sweep on nodes without GPUs.")
    if have and not expect_cuda:
        raise RuntimeError(f"{what}: Ray gave this worker no GPU, but torch sees {torch.cuda.device_count()} "
                           f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r}); unset "
                           "RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES so Ray hides the GPUs it did not assign.")


def _ray_task_gpus() -> list | None:
    """The GPU ids Ray assigned to this process when it is a Ray task or actor; None in a driver or without Ray."""
    try:
        import ray
    except ImportError:
        return None
    try:  # (the worker mode is not public API: a Ray without it skips the check rather than failing the stage)
        if not ray.is_initialized() or ray.get_runtime_context().worker.mode != ray._private.worker.WORKER_MODE:
            return None
    except AttributeError:
        return None
    return list(ray.get_gpu_ids())


def _worker_loop(config: dict[str, Any]) -> None:
    """What each Ray Train worker runs: the stage entry on this worker's process group."""
    import torch

    torch.set_num_threads(max(1, int(config.get("threads", 1))))
    import ray.train

    from ablations.executor import _progress_writer

    layout = ParallelConfig(**config["layout"])
    out_dir = Path(config["out_dir"])
    rank = ray.train.get_context().get_world_rank()
    check_device(bool(config["use_gpu"]), f"{config['name']} (rank {rank})")
    fault = config.get("fault")
    hook = _rank_fault(fault, out_dir, rank) if fault is not None else None
    # rank 0 reports progress (progress.json, which the sweep's live view reads)
    on_step = _progress_writer(out_dir, config["name"], hook) if rank == 0 else hook
    summary = _resolve(config["entry"])(**config["kwargs"], layout=layout, on_step=on_step)
    if rank == 0:
        atomic_write_json(out_dir / SUMMARY, summary)


def _rank_fault(fault: dict[str, Any], out_dir: Path, rank: int):
    """Tests only: SIGKILL the worker of rank `fault['rank']` once, at step `at_step`."""
    import signal

    marker = out_dir / ".fault-kill_worker"

    def hook(step: int, total: int, losses: dict[str, float]) -> None:
        if rank == int(fault.get("rank", 1)) and step >= int(fault.get("at_step", 1)) and not marker.exists():
            marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)

    return hook


def run(entry: str, kwargs: dict[str, Any], layout: ParallelConfig, out_dir: Path, *, name: str = "train",
        threads: int = 1, on_step: Any = None, fault: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run `entry(**kwargs, layout=layout, on_step=...)` on `layout.workers` workers; returns
    rank 0's summary with `restarts` added. `on_step` is used in-process only (one worker);
    a Ray Train job's rank 0 writes progress.json itself. `fault` (tests only) kills a rank."""
    out_dir = Path(out_dir)
    if layout.workers == 1:
        gpus = _ray_task_gpus()
        if gpus is not None:  # a sweep's stage task: the device it was given is the one its key records
            check_device(bool(gpus), name)
        summary = _resolve(entry)(**kwargs, layout=layout, on_step=on_step)
        return {**summary, "restarts": restarts(out_dir)}

    import ray
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    use_gpu = ray.cluster_resources().get("GPU", 0) > 0 and layout.gpus_per_worker > 0
    import torch

    if use_gpu and not torch.version.cuda:  # before launch: NCCL would fail in every worker with less to say
        raise RuntimeError(f"{name}: the cluster has GPUs for these {layout.workers} workers, but torch "
                           f"{torch.__version__} here is a CPU-only build; install a CUDA build of torch on the nodes, "
                           "or set train.gpus_per_worker=0 to train on CPUs.")
    capacity = node_capacity()
    check_fits(layout, capacity, use_gpu, name)
    strategy = placement(layout, capacity, use_gpu)
    resources = {"CPU": layout.cpus_per_worker, **({"GPU": layout.gpus_per_worker} if use_gpu else {})}
    (out_dir / SUMMARY).unlink(missing_ok=True)
    from dataclasses import asdict

    trainer = TorchTrainer(
        _worker_loop,
        train_loop_config={"entry": entry, "kwargs": kwargs, "layout": asdict(layout), "out_dir": str(out_dir),
                           "threads": threads, "fault": fault, "name": name, "use_gpu": use_gpu},
        scaling_config=ScalingConfig(num_workers=layout.workers, use_gpu=use_gpu, resources_per_worker=resources,
                                     placement_strategy=strategy),
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        run_config=RunConfig(name=f"{name}-{out_dir.name}", storage_path=str(out_dir / "ray_train"),
                             failure_config=FailureConfig(max_failures=layout.max_failures)),
    )
    trainer.fit()
    summary = json.loads((out_dir / SUMMARY).read_text())
    return {**summary, "restarts": restarts(out_dir), "placement": strategy}
