"""What every stage shares: device, seeding, atomic saves, progress reporting, the batch order
and the learning-rate warm-up. The training loop itself is `ablations.training`."""

from __future__ import annotations

import math
import random
import sys
from typing import Any, Sequence

import numpy as np
import torch

from ablations.store import atomic_write_bytes, atomic_write_json  # noqa: F401  (one atomic writer for the house)


class NonFiniteLossError(RuntimeError):
    """A training loss became NaN or infinite; the stage fails with this as its reason."""


def pick_device() -> torch.device:
    """CUDA when present (one GPU per Ray task), else CPU."""
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a CPU generator for data order and noise."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def check_finite(losses: dict[str, float], step: int) -> None:
    bad = {k: v for k, v in losses.items() if not math.isfinite(v)}
    if bad:
        names = ", ".join(f"{k}={v}" for k, v in bad.items())
        raise NonFiniteLossError(f"non-finite loss at step {step} ({names}); lower the learning rate or the loss weights.")


class Progress:
    """A tqdm bar on a terminal; periodic one-line reports otherwise (logs, Ray workers).

    `callback(step, total, losses)` lets the Ray runner forward progress to its live view.
    """

    def __init__(self, total: int, desc: str, start: int = 0, enabled: bool = True, callback=None) -> None:
        self.total, self.desc, self.callback = total, desc, callback
        self.bar = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=start, desc=desc, dynamic_ncols=True, leave=False)

    def update(self, step: int, losses: dict[str, float]) -> None:
        if self.bar is not None:
            self.bar.update(1)
            if step % 10 == 0:
                self.bar.set_postfix({k: f"{v:.4g}" for k, v in list(losses.items())[:3]})
        if self.callback is not None:
            self.callback(step, self.total, losses)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def batch_indices(step: int, num_items: int, batch_size: int, seed: int) -> torch.Tensor:
    """The clip indices of optimizer step `step`: epoch-wise shuffles, each from its own seed.

    A pure function of (step, seed), so a resumed run draws exactly the batches the
    uninterrupted run would have, without replaying any generator.
    """
    batch_size = min(batch_size, num_items)
    per_epoch = num_items // batch_size
    epoch, slot = divmod(step, per_epoch)
    order = torch.randperm(num_items, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
    return order[slot * batch_size : (slot + 1) * batch_size]


def bucket_batch_indices(step: int, buckets: Sequence[Any], batch_size: int, seed: int) -> torch.Tensor:
    """Step `step`'s clip indices when clips come in shape buckets: every batch from one bucket.

    Per epoch (seeded by (seed, epoch) like `batch_indices`): each bucket is shuffled and cut
    into batches of `batch_size`, its last partial batch filled from the start of the same
    shuffled order (so every clip is used every epoch and every batch is full; a bucket
    smaller than a batch repeats clips), then all buckets' batches are shuffled together.
    A pure function of (step, seed).
    """
    batch_size = min(batch_size, sum(len(b) for b in buckets))
    counts = [-(-len(b) // batch_size) for b in buckets]  # batches per bucket per epoch
    epoch, slot = divmod(step, sum(counts))
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    batches = []
    for members, count in zip(buckets, counts):
        members = torch.as_tensor(np.asarray(members), dtype=torch.long)
        order = members[torch.randperm(len(members), generator=generator)]
        filled = order.repeat(-(-count * batch_size // len(order)))[: count * batch_size]
        batches += list(filled.view(count, batch_size))
    return batches[int(torch.randperm(len(batches), generator=generator)[slot])]


def warmup_lr(step: int, lr: float, warmup_steps: int) -> float:
    """Linear warm-up to `lr` over `warmup_steps`, then constant."""
    return lr * min(1.0, (step + 1) / max(1, warmup_steps))
