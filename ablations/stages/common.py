"""What every training stage shares: device and precision, seeding, atomic checkpoints,
progress reporting and loss curves."""

from __future__ import annotations

import contextlib
import math
import os
import random
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clips.io import make_readable

from ablations.store import atomic_write_bytes, atomic_write_json  # noqa: F401  (one atomic writer for the house)


class NonFiniteLossError(RuntimeError):
    """A training loss became NaN or infinite; the stage fails with this as its reason."""


def pick_device() -> torch.device:
    """CUDA when present (one GPU per Ray task), else CPU."""
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA; full fp32 on CPU (CPU bf16 is slow and changes numerics)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a CPU generator for data order and noise."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def atomic_torch_save(obj: Any, path: Path) -> None:
    """torch.save to a temporary name, then rename: a crash never leaves half a checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.tmp-")
    os.close(fd)
    make_readable(tmp)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def rng_state(generator: torch.Generator) -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "generator": generator.get_state(),
             "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any], generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    generator.set_state(state["generator"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


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


def warmup_lr(step: int, lr: float, warmup_steps: int) -> float:
    """Linear warm-up to `lr` over `warmup_steps`, then constant."""
    return lr * min(1.0, (step + 1) / max(1, warmup_steps))


def save_training_state(path: Path, step: int, parts: dict[str, Any], generator: torch.Generator,
                        curve: list[dict[str, Any]]) -> None:
    """Checkpoint every stateful part (models, optimizers; None skipped), RNGs and the curve."""
    state = {name: part.state_dict() for name, part in parts.items() if part is not None}
    atomic_torch_save({"step": step, "parts": state, "rng": rng_state(generator), "curve": curve}, path)


def load_training_state(path: Path, parts: dict[str, Any], generator: torch.Generator) -> tuple[int, list[dict[str, Any]]]:
    """Restore what `save_training_state` wrote into `parts`; returns (step, curve)."""
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    for name, part in parts.items():
        if part is not None and name in ckpt["parts"]:
            part.load_state_dict(ckpt["parts"][name])
    set_rng_state(ckpt["rng"], generator)
    return ckpt["step"], ckpt["curve"]
