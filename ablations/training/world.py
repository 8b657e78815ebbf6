"""The process group a training stage runs in: rank, size, device, and the few collectives
the training core needs. One worker (the laptop default) has no process group at all."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def rows(self, batch: int) -> range:
        """This rank's contiguous slice of a global batch of `batch` positions (equal sizes)."""
        per = batch // self.size
        return range(self.rank * per, (self.rank + 1) * per)

    def all_mean(self, values: dict[str, float]) -> dict[str, float]:
        """Mean of each scalar over the ranks (the whole-batch value when every rank holds an equal slice)."""
        if not self.distributed or not values:
            return dict(values)
        keys = sorted(values)
        t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=self._comm_device())
        dist.all_reduce(t)
        return {k: float(v) / self.size for k, v in zip(keys, t.tolist())}

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def broadcast_object(self, obj):
        if not self.distributed:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather_object(self, obj) -> list:
        """`obj` of every rank, in rank order (on every rank)."""
        if not self.distributed:
            return [obj]
        out = [None] * self.size
        dist.all_gather_object(out, obj)
        return out

    def _comm_device(self) -> torch.device:
        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")


def current_world() -> World:
    """The initialised process group (Ray Train sets it up), else a single CPU/GPU worker."""
    cuda = torch.cuda.is_available()
    if not (dist.is_available() and dist.is_initialized()):
        return World(device=torch.device("cuda") if cuda else torch.device("cpu"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cpu")
    if cuda:
        # Ray Train sets CUDA_VISIBLE_DEVICES per worker group; pick this worker's device
        device = torch.device("cuda", local % max(1, torch.cuda.device_count()))
        torch.cuda.set_device(device)
    return World(rank=dist.get_rank(), size=dist.get_world_size(), local_rank=local, device=device)


def average_gradients(params: list[torch.nn.Parameter], world: World, bucket_bytes: int = 25 * 2**20) -> None:
    """DDP's reduction: every gradient becomes its mean over the ranks, in flat buckets.

    Used for `parallel=ddp` instead of wrapping the module, because a VAE step calls
    encode, decode twice and the discriminators (no single `forward` for DDP to hook).
    """
    if not world.distributed:
        return
    grads = [p.grad for p in params if p.grad is not None]
    bucket: list[torch.Tensor] = []
    size = 0
    for g in grads + [None]:
        if g is not None:
            bucket.append(g)
            size += g.numel() * g.element_size()
        if bucket and (g is None or size >= bucket_bytes):
            flat = torch.cat([b.reshape(-1) for b in bucket])
            dist.all_reduce(flat)
            flat /= world.size
            offset = 0
            for b in bucket:
                b.copy_(flat[offset: offset + b.numel()].view_as(b))
                offset += b.numel()
            bucket, size = [], 0


def check_finite_everywhere(values: dict[str, float], step: int, world: World) -> None:
    """Raise NonFiniteLossError on every rank when any rank saw a non-finite loss (before the update).

    A rank that raised alone would leave the others waiting in the next collective.
    """
    import math

    from ablations.stages.common import NonFiniteLossError, check_finite

    bad = sum(not math.isfinite(v) for v in values.values())
    if world.distributed:
        t = torch.tensor([float(bad)], device=world._comm_device())
        dist.all_reduce(t)
        if bad == 0 and float(t) > 0:
            raise NonFiniteLossError(f"non-finite loss at step {step} on another worker; lower the learning rate or the loss weights.")
    check_finite(values, step)
