"""Streamed training data: clips decoded (or latents read) per step by DataLoader workers.

The training core draws step s's global batch as clip indices (`Schedule.global_batch`, a
pure function of (seed, s)); with a dataset instead of an in-memory tensor, each rank hands
its own slice of those indices to a `torch.utils.data.DataLoader` (`StepSampler`), whose
worker processes decode them while the model trains on the previous step. Nothing holds
more than the batches in flight: at most `workers x prefetch + 1` per-rank batches are
decoded at once, whatever the dataset's size (tests/test_manifest_data.py counts it).

The in-memory path (`videos[m.indices]` on a stacked tensor) and the streamed one give the
same tensors for the same clips, so the same training run gives the same weights.
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from clips.errors import ClipError

PREFETCH = 2  # batches each DataLoader worker decodes ahead


class ClipVideos(Dataset):
    """A clip sequence (`clips.dataset.open_clips`) as model tensors: item i is (3, T, H, W) in [-1, 1].

    `buckets` groups the indices by shape (one list per shape) when the clips have several
    shapes (`DataSpec.buckets`), else None; the training core then draws one bucket per step.
    """

    def __init__(self, clips: Sequence[Any]):
        self.clips = clips

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> torch.Tensor:
        from clips.io import to_model

        return to_model(self.clips[int(index)].frames)  # (3, T, H, W)

    def shapes(self) -> list[tuple[int, ...]]:
        """(T, H, W) per item, without decoding where the sequence knows them."""
        if hasattr(self.clips, "shapes"):
            return list(self.clips.shapes())
        return [tuple(c.frames.shape[:3]) for c in self.clips]

    @property
    def buckets(self) -> list[Any] | None:
        from clips.manifest_source import bucket_groups

        if hasattr(self.clips, "bucket_indices"):
            groups = self.clips.bucket_indices()  # numpy, without a Python list per clip
        else:
            groups = bucket_groups(self.shapes())
        return groups if len(groups) > 1 else None


def buckets_of(videos: Any) -> list[list[int]] | None:
    """The shape buckets of a training set (None for a tensor: one shape)."""
    return None if isinstance(videos, torch.Tensor) else getattr(videos, "buckets", None)


class StepSampler(Sampler):
    """This rank's indices of every step from `start` to `stop`, its micro-batches concatenated."""

    def __init__(self, trainer: Any, start: int, stop: int):
        self.trainer, self.start, self.stop = trainer, start, stop

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start, self.stop):
            yield [int(i) for m in self.trainer.micro_batches(step) for i in m.indices]

    def __len__(self) -> int:
        return max(0, self.stop - self.start)


def _one_thread(_: int) -> None:
    torch.set_num_threads(1)  # decoding is the worker's job; the trainer owns the cores' BLAS threads


class DecodeFailure:
    """What a loader worker returns instead of raising a ClipError: its one-sentence message.

    A worker's exception reaches the main process re-raised by PyTorch as a new exception
    whose message is "Caught ClipError in DataLoader worker process 1" plus the worker's
    traceback; the user is owed the sentence that names the file instead.
    """

    def __init__(self, message: str):
        self.message = message


class _Guarded(Dataset):
    """`dataset`, its ClipErrors returned as `DecodeFailure`s (picklable: DataLoader workers get a copy)."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Any:
        try:
            return self.dataset[index]
        except ClipError as exc:
            return DecodeFailure(str(exc))


def _collate(items: list[Any]) -> Any:
    """torch.stack of a batch, or its first DecodeFailure."""
    return next((item for item in items if isinstance(item, DecodeFailure)), None) or torch.stack(items)


def _raising(batches: Iterator[Any]) -> Iterator[torch.Tensor]:
    while (batch := next(batches, None)) is not None:
        if isinstance(batch, DecodeFailure):
            del batches  # the last reference: the workers stop now, not when the traceback is collected
            raise ClipError(batch.message)  # the worker's sentence, raised here in the trainer's process
        yield batch


def step_loader(dataset: Dataset, trainer: Any, start: int, stop: int, workers: int) -> Iterator[torch.Tensor]:
    """Stacked (b, ...) batches of this rank for steps start..stop-1, decoded by `workers` processes
    (0: in this process, still one step at a time). A clip that fails to decode raises its own
    one-sentence ClipError here, whichever process decoded it."""
    loader = DataLoader(_Guarded(dataset), batch_sampler=StepSampler(trainer, start, stop), num_workers=workers,
                        collate_fn=_collate, prefetch_factor=PREFETCH if workers else None,
                        worker_init_fn=_one_thread if workers else None)
    return _raising(iter(loader))


def take(videos: Any, indices: Sequence[int]) -> torch.Tensor:
    """Items `indices` of a tensor or dataset, stacked (they must share a shape)."""
    if isinstance(videos, torch.Tensor):
        return videos[torch.as_tensor(list(indices), dtype=torch.long)]
    return torch.stack([videos[int(i)] for i in indices])


def same_shape_runs(videos: Any, count: int, batch_size: int) -> Iterator[torch.Tensor]:
    """The first `count` items in order, as batches of up to `batch_size` consecutive items of one shape."""
    count = min(count, len(videos))
    if isinstance(videos, torch.Tensor):
        for i in range(0, count, batch_size):
            yield videos[i:i + batch_size]
        return
    shapes = videos.shapes() if hasattr(videos, "shapes") else [None] * count
    run: list[int] = []
    for i in range(count):
        if run and (len(run) == batch_size or shapes[i] != shapes[run[0]]):
            yield take(videos, run)
            run = []
        run.append(i)
    if run:
        yield take(videos, run)
