"""The training core shared by `train_vae` and `train_dit`.

A stage supplies what is particular to it (its models and optimizers, and a `step_fn`
that runs one optimizer step on its micro-batches); the core owns everything else, the
same for both stages and for any worker count:

- the global batch of step s is `batch_indices(s, N, B, seed)` (a pure function of step and
  seed; `bucket_batch_indices` when the clips come in shape buckets, so a batch has one
  shape); rank r of W takes the contiguous positions `World.rows(B)` and splits them into
  `grad_accum` micro-batches;
- the data is a tensor held in memory, or a dataset streamed by DataLoader workers
  (`data.py`): each rank decodes only its own slice of each step's batch, a step ahead;
- every random draw of a sample comes from `models.rng.BatchRNG(seed, s, positions)`, so it
  does not depend on W or on the micro-batching;
- losses are means over each micro-batch's samples, scaled by 1/grad_accum before
  backward; gradients are averaged over the ranks (FSDP2 reduce-scatters its shards, the
  core all-reduces the rest) and clipped by their global norm; the loss curve is the
  mean over ranks, i.e. over the whole batch;
- checkpoints (`checkpoint.py`, DCP) every `checkpoint_every` steps and at the end;
  resume from the newest complete one, on any worker count; each start of the worker
  group is appended to `attempts.json` (restarts = attempts - 1);
- each checkpoint records the stage's `config` (what decides its weights); resume refuses
  checkpoints of another config in one sentence, before loading them.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ablations.store import atomic_write_json
from ablations.training import checkpoint as ckpt
from ablations.training.config import ParallelConfig
from ablations.training.parallelize import clip_grad_norm, replicated_params
from ablations.training.world import World, average_gradients
from models.rng import BatchRNG

ATTEMPTS = "attempts.json"


@dataclass
class MicroBatch:
    indices: torch.Tensor  # dataset indices of this micro-batch's samples
    rng: BatchRNG  # their random draws
    scale: float  # 1 / grad_accum: the loss weight of this micro-batch
    data: torch.Tensor | None = None  # the samples, when the trainer streams a dataset (else the stage indexes its tensor)


@dataclass
class Schedule:
    """What the core needs to know about a stage's optimisation."""

    steps: int
    batch_size: int
    seed: int
    checkpoint_every: int
    num_items: int
    buckets: list[Any] | None = None  # item indices per shape bucket (lists or arrays) (None: one shape, any batch)

    def global_batch(self, step: int) -> torch.Tensor:
        """The dataset indices of step `step`'s global batch (a pure function of step and seed)."""
        from ablations.stages.common import batch_indices, bucket_batch_indices

        if self.buckets:
            return bucket_batch_indices(step, self.buckets, self.batch_size, self.seed)
        return batch_indices(step, self.num_items, self.batch_size, self.seed)


@dataclass
class Trainer:
    """The loop around a stage's `step_fn(step, micro_batches) -> losses` (floats, this rank)."""

    name: str
    schedule: Schedule
    layout: ParallelConfig
    world: World
    out_dir: Path
    models: dict[str, nn.Module]  # checkpointed modules
    optimizers: dict[str, tuple[nn.Module, torch.optim.Optimizer]]  # checkpointed (module, optimizer) pairs
    config: Any = None  # what decides the weights (configs, data), recorded in and matched against every checkpoint
    step: int = 0
    curve: list[dict[str, Any]] = field(default_factory=list)
    resumed_from: int = 0

    # ------------------------------------------------------------------ batches
    def micro_batches(self, step: int) -> list[MicroBatch]:
        s = self.schedule
        idx = s.global_batch(step)
        rows = list(self.world.rows(len(idx)))
        rng = BatchRNG(s.seed, step, rows)
        per = len(rows) // self.layout.grad_accum
        return [MicroBatch(idx[rows[0] + i * per: rows[0] + (i + 1) * per], rng.subset(i * per, (i + 1) * per),
                           1.0 / self.layout.grad_accum) for i in range(self.layout.grad_accum)]

    # ------------------------------------------------------------------ updates
    def optimizer_step(self, optimizer: torch.optim.Optimizer, modules: list[nn.Module], grad_clip: float | None) -> float:
        """Average the gradients FSDP does not own, clip by the global norm, step; returns the norm."""
        params = [p for m in modules for p in m.parameters() if p.requires_grad]
        average_gradients(replicated_params(modules), self.world)
        norm = clip_grad_norm(params, grad_clip) if grad_clip else float("nan")
        optimizer.step()
        return norm

    # ------------------------------------------------------------------ state
    def resume(self) -> None:
        """Load the newest complete checkpoint, if any, after checking it was trained with `config`."""
        if self.config is not None:  # before loading: another config's tensors need not even fit these models
            ckpt.check_config(self.out_dir, self.config, self.schedule.steps)
        found = ckpt.latest(self.out_dir)
        if found is not None:
            meta = ckpt.load(found, self.models, self.optimizers, self.world)
            self.step, self.curve = int(meta["step"]), list(meta["curve"])
        self.resumed_from = self.step
        if self.world.is_main:
            path = self.out_dir / ATTEMPTS
            attempts = json.loads(path.read_text()) if path.exists() else []
            attempts.append({"started_at": time.time(), "world_size": self.world.size, "resume_step": self.step,
                             "parallel": self.layout.parallel})
            atomic_write_json(path, attempts)

    def save(self) -> None:
        ckpt.save(self.out_dir, self.step, self.models, self.optimizers,
                  {"stage": self.name, "curve": self.curve,
                   **(ckpt.config_meta(self.config) if self.config is not None else {})}, self.world)

    # ------------------------------------------------------------------ loop
    def run(self, step_fn: Callable[[int, list[MicroBatch]], dict[str, float]], *,
            on_step: Callable[[int, int, dict[str, float]], None] | None = None,
            stop_after: int | None = None, set_lr: Callable[[int], None] | None = None,
            dataset: Any = None, data_workers: int = 0) -> dict[str, Any]:
        """Train to `schedule.steps` (or `stop_after`); returns a summary (every rank).

        With a `dataset`, this rank's samples of each step are loaded by `data_workers`
        DataLoader processes (`data.step_loader`) and arrive in `MicroBatch.data`.
        """
        s = self.schedule
        started = time.perf_counter()
        stop = s.steps if stop_after is None else max(self.step, min(s.steps, stop_after))
        batches = None
        if dataset is not None:
            from ablations.training.data import step_loader

            batches = step_loader(dataset, self, self.step, stop, data_workers)
        while self.step < stop:
            if set_lr is not None:
                set_lr(self.step)
            micro = self.micro_batches(self.step)
            if batches is not None:
                loaded = next(batches)  # (b, ...) this rank's samples, micro-batches in order
                for i, m in enumerate(micro):
                    m.data = loaded[i * len(m.indices):(i + 1) * len(m.indices)]
            losses = self.world.all_mean(step_fn(self.step, micro))
            self.step += 1
            self.curve.append({"stage": self.name, "step": self.step, **losses})
            if on_step is not None:
                on_step(self.step, s.steps, losses)
            if self.step % s.checkpoint_every == 0 or self.step == s.steps:
                self.save()
        wall = time.perf_counter() - started
        finished = self.step >= s.steps
        if not finished:
            self.save()
        return {"steps": self.step, "resumed_from": self.resumed_from, "wall_time_s": wall, "finished": finished,
                "workers": self.world.size, "parallel": self.layout.parallel, "grad_accum": self.layout.grad_accum,
                "nodes": self.world.gather_object(_node_id())}


def restarts(out_dir: Path) -> int:
    """How many times the stage's worker group started again after its first start."""
    path = Path(out_dir) / ATTEMPTS
    if not path.exists():
        return 0
    return max(0, len(json.loads(path.read_text())) - 1)



def _node_id() -> str | None:
    """The Ray node this worker runs on (None outside Ray)."""
    try:
        import ray

        return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    except Exception:  # noqa: BLE001 - provenance only
        return None
