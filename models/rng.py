"""Random draws that do not depend on how a batch is split across workers.

A training step of a global batch of B samples may run on one worker or be split into
contiguous slices over N workers (and into micro-batches on each). For the weights to
come out the same either way, every random number a sample sees must be a function of
(seed, step, the sample's position in the global batch) only, never of which worker drew
it or how many samples that worker drew before. `BatchRNG` gives each sample its own
CPU generator seeded from that triple, and one `shared` generator, seeded from (seed,
step), for draws the whole batch shares (LTX-Video's decoder noise maps are one (H, W)
map per call, broadcast over the batch). Draws are made on the CPU and moved, so a CUDA
run draws the same numbers as a CPU run.

The draw functions (`randn`, `rand`, `shared_randn`) accept a `BatchRNG`, a plain
`torch.Generator` (sampling and tests: one stream advanced call by call, as before) or
None (the global RNG).
"""

from __future__ import annotations

import hashlib
from typing import Sequence, Union

import torch


def mix_seed(*parts: int) -> int:
    """A 63-bit seed from integers (blake2b): distinct tuples give unrelated streams."""
    data = b"".join(int(p).to_bytes(8, "little", signed=True) for p in parts)
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little") >> 1


class BatchRNG:
    """Per-sample generators for rows `positions` of one step's global batch.

    `positions` are the samples' indices in the global batch (rank r of N holds a
    contiguous slice of them). Row i of every per-sample draw comes from the generator of
    `positions[i]`, so a sample draws the same numbers whichever worker holds it.
    """

    SHARED = -1  # the position key of the batch-shared stream

    def __init__(self, seed: int, step: int, positions: Sequence[int], salt: int = 0) -> None:
        self.seed, self.step, self.salt = int(seed), int(step), int(salt)
        self.positions = [int(p) for p in positions]
        self.rows = [torch.Generator().manual_seed(mix_seed(self.salt, self.seed, self.step, p)) for p in self.positions]
        self.shared = torch.Generator().manual_seed(mix_seed(self.salt, self.seed, self.step, self.SHARED))

    def __len__(self) -> int:
        return len(self.rows)

    def subset(self, start: int, stop: int) -> "BatchRNG":
        """Rows [start, stop) (a micro-batch): their per-sample streams, and a batch-shared stream
        that starts afresh, as it does on every worker, so each micro-batch sees the maps the
        whole batch would."""
        sub = BatchRNG.__new__(BatchRNG)
        sub.seed, sub.step, sub.salt = self.seed, self.step, self.salt
        sub.positions, sub.rows = self.positions[start:stop], self.rows[start:stop]
        sub.shared = torch.Generator().manual_seed(mix_seed(self.salt, self.seed, self.step, self.SHARED))
        return sub

    def get_state(self) -> list[torch.Tensor]:
        return [g.get_state() for g in self.rows] + [self.shared.get_state()]

    def set_state(self, state: list[torch.Tensor]) -> None:
        for g, s in zip(self.rows + [self.shared], state):
            g.set_state(s)

    def randn(self, shape: Sequence[int]) -> torch.Tensor:
        shape = tuple(shape)
        self._check_rows(shape)
        return torch.stack([torch.randn(shape[1:], generator=g) for g in self.rows])

    def rand(self, shape: Sequence[int]) -> torch.Tensor:
        shape = tuple(shape)
        self._check_rows(shape)
        return torch.stack([torch.rand(shape[1:], generator=g) for g in self.rows])

    def _check_rows(self, shape: tuple[int, ...]) -> None:
        if not shape or shape[0] != len(self.rows):
            raise ValueError(f"a per-sample draw needs a leading batch dimension of {len(self.rows)}, got shape {shape}")


Generator = Union[BatchRNG, torch.Generator, None]


def randn(shape: Sequence[int], generator: Generator, like: torch.Tensor) -> torch.Tensor:
    """Normal noise of `shape` (batch first for a BatchRNG) in `like`'s device and dtype.

    A torch.Generator draws on its own device (reproducible across devices); None uses the
    global RNG on `like`'s device.
    """
    shape = tuple(shape)
    if isinstance(generator, BatchRNG):
        return generator.randn(shape).to(like.device, like.dtype)
    device = generator.device if generator is not None else like.device
    return torch.randn(shape, generator=generator, device=device).to(like.device, like.dtype)


def rand(n: int, generator: Generator, device: torch.device | str) -> torch.Tensor:
    """(n,) uniforms in [0, 1), one per sample for a BatchRNG, on `device` (float32)."""
    if isinstance(generator, BatchRNG):
        return generator.rand((n,)).to(device)
    gen_device = generator.device if generator is not None else torch.device(device)
    return torch.rand(n, generator=generator, device=gen_device).to(device)


def shared_randn(shape: Sequence[int], generator: Generator, like: torch.Tensor) -> torch.Tensor:
    """Noise every sample of the batch shares (no batch dimension), from the shared stream."""
    if isinstance(generator, BatchRNG):
        return torch.randn(tuple(shape), generator=generator.shared).to(like.device, like.dtype)
    return randn(shape, generator, like)
