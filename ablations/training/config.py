"""`train`: how a training stage is laid out over workers (the RunConfig section `train`).

The layout is an execution detail, like the Ray address: results must not depend on it
(the global batch, its order and every random draw are fixed by the stage's own config and
seed), so the stage cache keys leave workers, accumulation, parallelism and placement out and
a run can resume on another worker count. The fields that do change the numbers (bf16 mixed
precision on CUDA, GPU or CPU, `compile`) are in the training stages' keys
(`ablations.graph.training_numerics`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from models.config import ConfigError, Int, Real, check_ranges, declare_ranges


@dataclass(frozen=True, kw_only=True)
class ParallelConfig:
    workers: int = 1  # Ray Train workers per training run (one process each; 1 = in the stage's own task)
    gpus_per_worker: float = 1.0  # GPUs per worker when the cluster has GPUs (ignored on CPU clusters)
    cpus_per_worker: float = 1.0  # CPUs per worker (data loading and, on CPU, the compute)
    parallel: Literal["ddp", "fsdp"] = "ddp"  # replicate and average gradients, or FSDP2 fully_shard per block/stage
    grad_accum: int = 1  # micro-batches per worker per optimizer step (global batch fixed)
    activation_checkpointing: bool = False  # recompute each block's (DiT) / stage's (VAE) activations in backward
    compile: bool = False  # torch.compile each block / stage (regional, as torchtitan)
    mixed_precision: Literal["bf16", "fp32"] = "bf16"  # CUDA compute dtype (fp32 params, fp32 reductions); CPU is fp32
    max_failures: int = 2  # Ray Train FailureConfig: worker-group restarts from the last checkpoint
    placement: Literal["auto", "pack", "spread"] = "auto"  # auto: STRICT_PACK on one node when it fits, else PACK
    data_workers: int = 2  # DataLoader processes per worker decoding streamed data (manifest clips); 0 = in-process

    def __post_init__(self) -> None:
        check_ranges(self, "train")  # the declared ranges below, for configs built in Python too


declare_ranges(ParallelConfig, {
    "workers": Int(1, 4096), "gpus_per_worker": Real(0.0, 64.0), "cpus_per_worker": Real(0.0, 1024.0, open_lo=True),
    "grad_accum": Int(1, 4096), "max_failures": Int(0, 1000), "data_workers": Int(0, 256),
})


def check_batch_split(batch_size: int, layout: ParallelConfig, section: str) -> None:
    """The global batch must split evenly into workers x micro-batches (one sentence if not)."""
    parts = layout.workers * layout.grad_accum
    if batch_size % parts:
        raise ConfigError(f"{section}.batch_size={batch_size} does not split into train.workers={layout.workers} x "
                          f"train.grad_accum={layout.grad_accum} equal micro-batches; make it a multiple of {parts}.")
