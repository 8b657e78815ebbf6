"""Parallelism, activation checkpointing and compile, applied from outside the model files.

As torchtitan's `parallelize_*` functions: the model files define plain modules; this file
decides, per model family, which submodules are the units (a DiT's transformer blocks; a
VAE's encoder and decoder stages and mid-blocks) and applies, in this order,
activation checkpointing, regional `torch.compile`, and FSDP2 `fully_shard` per unit
(then per root). `parallel=ddp` leaves the parameters whole on every rank; the training
core averages their gradients (`world.average_gradients`). On CUDA, FSDP2 runs with
`MixedPrecisionPolicy(param_dtype=bf16, reduce_dtype=fp32)`: fp32 master weights, bf16
compute, fp32 gradient reduction.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ablations.training.config import ParallelConfig
from ablations.training.world import World


def dit_units(model: nn.Module) -> tuple[list[tuple[nn.Module, str, int]], list[nn.Module]]:
    """(parent, attribute, index) of every transformer block, and the FSDP roots."""
    return [(model.blocks, "", i) for i in range(len(model.blocks))], [model]


def vae_units(model: nn.Module) -> tuple[list[tuple[nn.Module, str, int]], list[nn.Module]]:
    """Encoder stages + mid, decoder mid + stages; the encoder and decoder are the FSDP roots
    (a VAE step calls `encode` and `decode`, never the VAE's own forward)."""
    units: list[tuple[nn.Module, str, int]] = []
    for part in (model.encoder, model.decoder):
        units.append((part, "mid", -1))
        units += [(part.stages, "", i) for i in range(len(part.stages))]
    return units, [model.encoder, model.decoder]


def _get(parent: nn.Module, attr: str, index: int) -> nn.Module:
    return parent[index] if not attr else getattr(parent, attr)


def _set(parent: nn.Module, attr: str, index: int, module: nn.Module) -> None:
    if not attr:
        parent[index] = module
    else:
        setattr(parent, attr, module)


class Checkpointed(nn.Module):
    """Activation checkpointing of one unit (non-reentrant), replaying its random draws.

    `torch.utils.checkpoint` restores only the global RNG. A unit that draws from an
    explicit generator (the decoder's noise injection) would draw new numbers when
    recomputed in backward, so the generator's state is saved before the forward and set
    back for the recompute; afterwards it is returned to where the forward left it.
    """

    def __init__(self, unit: nn.Module) -> None:
        super().__init__()
        self.unit = unit

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if not torch.is_grad_enabled():
            return self.unit(*args, **kwargs)
        generator = next((a for a in list(args) + list(kwargs.values()) if hasattr(a, "get_state")), None)
        before = generator.get_state() if generator is not None else None
        calls = [0]
        after: list[Any] = []

        def run(*a: Any, **k: Any) -> Any:
            calls[0] += 1
            if calls[0] > 1 and generator is not None:  # the recompute in backward
                after.append(generator.get_state())
                generator.set_state(before)
            out = self.unit(*a, **k)
            if calls[0] > 1 and generator is not None:
                generator.set_state(after.pop())
            return out

        return checkpoint(run, *args, use_reentrant=False, **kwargs)


def apply(model: nn.Module, family: str, layout: ParallelConfig, world: World, *, trainable: bool = True) -> nn.Module:
    """Apply the layout to `model` in place (on `world.device` already); returns it.

    `trainable=False` (the DiT's EMA copy) shards the same way but skips checkpointing
    and compile, so the EMA's shards line up with the model's.
    """
    units, roots = {"dit": dit_units, "vae": vae_units}[family](model)
    if trainable and layout.activation_checkpointing:
        for parent, attr, index in units:
            _set(parent, attr, index, Checkpointed(_get(parent, attr, index)))
    if trainable and layout.compile:
        for parent, attr, index in units:
            _get(parent, attr, index).compile()
    if world.distributed and layout.parallel == "fsdp":
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        policy = MixedPrecisionPolicy()
        if world.device.type == "cuda" and layout.mixed_precision == "bf16":
            policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
        for parent, attr, index in units:
            fully_shard(_get(parent, attr, index), mp_policy=policy)
        for root in roots:
            # FSDP2 cannot shard 0-d parameters (the decoder's timestep_scale): they stay whole
            # on every rank and the core averages their gradients like DDP's
            scalars = {p for p in root.parameters() if p.dim() == 0}
            fully_shard(root, mp_policy=policy, ignored_params=scalars or None)
    return model


def is_sharded(param: torch.Tensor) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(param, DTensor)


def replicated_params(modules: list[nn.Module]) -> list[nn.Parameter]:
    """Parameters FSDP does not own (DDP: all of them): the core averages their gradients."""
    seen: set[int] = set()
    out = []
    for m in modules:
        for p in m.parameters():
            if p.requires_grad and not is_sharded(p) and id(p) not in seen:
                seen.add(id(p))
                out.append(p)
    return out


def clip_grad_norm(params: list[nn.Parameter], max_norm: float) -> float:
    """Global grad-norm clipping over sharded and whole parameters alike; returns the norm."""
    sharded = [p for p in params if p.grad is not None and is_sharded(p)]
    whole = [p for p in params if p.grad is not None and not is_sharded(p)]
    total_sq = torch.zeros((), dtype=torch.float64)
    if sharded:
        norm = torch.nn.utils.get_total_norm([p.grad for p in sharded])
        total_sq = total_sq + float(norm.full_tensor() if is_sharded(norm) else norm) ** 2
    if whole:
        total_sq = total_sq + float(torch.nn.utils.get_total_norm([p.grad for p in whole])) ** 2
    total = float(total_sq.sqrt())
    coef = min(1.0, max_norm / (total + 1e-6))
    if coef < 1.0:
        for p in sharded + whole:
            p.grad.mul_(coef)
    return total


def autocast_for(layout: ParallelConfig, world: World) -> Callable[[], Any]:
    """bf16 autocast on CUDA for ddp (FSDP2 casts through its policy); fp32 on CPU."""
    import contextlib

    if world.device.type == "cuda" and layout.mixed_precision == "bf16" and not (world.distributed and layout.parallel == "fsdp"):
        return lambda: torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext
