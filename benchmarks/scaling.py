"""Training-core scaling: step time per worker count, and on GPUs tokens/s, MFU and peak memory.

    python benchmarks/scaling.py                 # CPU: tiny DiT and VAE, 1 and 2 gloo workers, 1 thread each
    python benchmarks/scaling.py --gpu           # every visible GPU: small and full DiT at 121x512x768,
                                                 # bf16 + FSDP2 + activation checkpointing, vs `inspect`'s estimate

Workers are plain `torch.multiprocessing` processes on one process group (what a Ray Train
worker group is once started), so the figures are the training core's, without Ray's
start-up. Each worker runs the real `dit_training_step` / `vae_training_step` through
`ablations.training` (global batch fixed, sliced per rank). The CPU figure is weak
scaling's opposite: the global batch is fixed, so 2 workers each do half the work;
efficiency = t1 / (2 * t2). Step times are medians after warm-up steps.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _dit_case(size: str, shape: tuple[int, int, int], batch: int):
    from models.dit import dit_config
    from models.dit.describe import latent_shape_for

    cfg = dit_config("ltx", size)
    cz, t, h, w = (cfg.in_channels, *latent_shape_for(cfg, *shape))
    return cfg, (cz, t, h, w)


def _worker(rank: int, world: int, port: int, job: dict, out: str) -> None:
    import torch.distributed as dist

    from ablations.stages.train_dit import DiTTrainConfig, build_state, dit_training_step
    from ablations.training.config import ParallelConfig
    from ablations.training.loop import Schedule, Trainer
    from ablations.training.parallelize import autocast_for
    from ablations.training.world import current_world
    from models.flow import flow_config

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), LOCAL_RANK=str(rank))
    torch.set_num_threads(job["threads"])
    if world > 1 or job["gpu"]:
        dist.init_process_group("nccl" if job["gpu"] else "gloo", rank=rank, world_size=world)
    w = current_world()
    layout = ParallelConfig(workers=world, parallel=job["parallel"], activation_checkpointing=job["ac"])
    if job["stage"] == "dit":
        cfg, latent = _dit_case(job["size"], tuple(job["shape"]), job["batch"])
        train = DiTTrainConfig(steps=job["steps"], batch_size=job["batch"], lr=1e-4)
        state = build_state(cfg, train, w.device, layout, w)
        n = job["batch"]
        latents = torch.randn(n, *latent)
        text = torch.randn(n, job["text_len"], cfg.caption_channels)
        mask = torch.ones(n, job["text_len"], dtype=torch.bool)
        null = (torch.zeros(1, job["text_len"], cfg.caption_channels, device=w.device),
                torch.ones(1, job["text_len"], dtype=torch.bool, device=w.device))
        flow = flow_config(job["size"] if job["size"] in ("tiny", "small", "full") else "tiny")
        models, opts = {"model": state.model}, {"model": (state.model, state.optimizer)}
    else:
        from ablations.stages.train_vae import VAETrainConfig, build_state as build_vae, vae_training_step
        from models.losses.base import VAELossConfig
        from models.vae import vae_config

        vcfg = vae_config("ltx", job["size"])
        loss = VAELossConfig(mse=1.0, diffusion=1.0)
        train = VAETrainConfig(steps=job["steps"], batch_size=job["batch"])
        state = build_vae(vcfg, loss, train, w.device, layout, w)
        n = job["batch"]
        latents = torch.rand(n, 3, *job["shape"]) * 2 - 1
        models, opts = {"vae": state.vae}, {"vae": (state.vae, state.optimizer)}
    trainer = Trainer(job["stage"], Schedule(job["steps"], job["batch"], 0, 10**9, n), layout, w,
                      Path(tempfile.mkdtemp()), models, opts)
    autocast = autocast_for(layout, w)
    times = []
    if job["gpu"]:
        torch.cuda.reset_peak_memory_stats()
    for step in range(job["steps"]):
        micro = trainer.micro_batches(step)
        if w.device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with autocast():
            if job["stage"] == "dit":
                batches = [(latents[m.indices].to(w.device), text[m.indices].to(w.device), mask[m.indices].to(w.device),
                            m.rng, m.scale) for m in micro]
                dit_training_step(state, batches, None, None, null, 24.0, flow, train, trainer)
            else:
                vae_training_step(state, [(latents[m.indices].to(w.device), m.rng, m.scale) for m in micro], trainer)
        if w.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    result = {"step_s": statistics.median(times[job["warmup"]:]), "rank": w.rank}
    if job["gpu"]:
        result["peak_bytes"] = torch.cuda.max_memory_allocated()
    if w.rank == 0:
        Path(out).write_text(json.dumps(result))
    if dist.is_initialized():
        dist.destroy_process_group()


def run(job: dict, world: int) -> dict:
    out = tempfile.mktemp(suffix=".json")
    if world == 1 and not job["gpu"]:
        _worker(0, 1, 0, job, out)
    else:
        mp.start_processes(_worker, args=(world, _port(), job, out), nprocs=world, start_method="spawn")
    return json.loads(Path(out).read_text())


def cpu(args) -> list[dict]:
    rows = []
    for stage, size, shape, batch in ((("dit", "tiny", (17, 64, 64), 8), ("dit", "small", (17, 128, 128), 8),
                                       ("vae", "tiny", (9, 32, 32), 4))):
        times = {}
        for world in (1, 2):
            job = dict(stage=stage, size=size, shape=shape, batch=batch, steps=args.steps, warmup=3, threads=1,
                       parallel="ddp", ac=False, gpu=False, text_len=16)
            times[world] = run(job, world)["step_s"]
        rows.append({"stage": stage, "size": size, "shape": "x".join(map(str, shape)), "global_batch": batch,
                     "step_s_1": times[1], "step_s_2": times[2], "speedup": times[1] / times[2],
                     "efficiency": times[1] / (2 * times[2])})
    return rows


def gpu(args) -> list[dict]:
    from evaluation.memory import TrainingLayout, training_estimate

    if args.dry_run:  # the same jobs at tiny size on one CPU process: checks a device script before device time
        world, cases = 1, (("tiny", (9, 64, 64)),)
    else:
        world, cases = torch.cuda.device_count(), (("small", (121, 512, 768)), ("full", (121, 512, 768)))
    rows = []
    for size, shape in cases:
        job = dict(stage="dit", size=size, shape=shape, batch=world, steps=args.steps, warmup=3, threads=4,
                   parallel="fsdp", ac=True, gpu=not args.dry_run, text_len=128)
        result = run(job, world)
        if args.dry_run:
            rows.append({"size": size, "dry_run": True, "step_s": result["step_s"]})
            continue
        cfg, _ = _dit_case(size, shape, world)
        est = training_estimate(cfg, "dit", *shape, TrainingLayout(workers=world, parallel="fsdp", batch=world,
                                                                    activation_checkpointing=True))
        gpu_name = torch.cuda.get_device_properties(0).name
        peak = 989e12  # H100/H200 SXM dense bf16 (evaluation.memory.GPU_PEAK_BF16)
        row = {"size": size, "gpus": world, "device": gpu_name, "step_s": result["step_s"],
               "tokens_per_s": est["tokens_per_sample"] * world / result["step_s"],
               "mfu": est["flops_per_step_per_gpu"] / (result["step_s"] * peak),
               "peak_gib": result["peak_bytes"] / 2**30, "estimate_gib": est["memory_bytes"]["total"] / 2**30}
        row["memory_error"] = row["peak_gib"] / row["estimate_gib"] - 1  # target: within +-15%
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", action="store_true", help="GPU figures on every visible GPU (needs CUDA)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per case (the first 3 are warm-up)")
    parser.add_argument("--dry-run", action="store_true", help="--gpu: the same jobs at tiny size on the CPU")
    args = parser.parse_args()
    if args.gpu and not args.dry_run and not torch.cuda.is_available():
        raise SystemExit("--gpu needs CUDA; this machine has none (run without --gpu for the CPU figures, "
                         "or --gpu --dry-run to check the GPU path on the CPU).")
    rows = gpu(args) if args.gpu else cpu(args)
    for row in rows:
        print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}))


if __name__ == "__main__":
    main()
