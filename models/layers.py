"""Primitives shared by the VAE and the DiT families (one definition each)."""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn


def timestep_embedding(
    timesteps: torch.Tensor,
    dim: int,
    *,
    flip_sin_to_cos: bool = True,
    downscale_freq_shift: float = 0.0,
    scale: float = 1.0,
    max_period: float = 10000.0,
) -> torch.Tensor:
    """Sinusoidal embedding of (N,) timesteps -> (N, dim), as diffusers' `get_timestep_embedding`.

    The defaults are the ones LTX-Video's transformer and VAE decoder use
    (`flip_sin_to_cos=True, downscale_freq_shift=0`).
    """
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device)
    freqs = torch.exp(exponent / (half - downscale_freq_shift))  # (half,)
    args = scale * timesteps[:, None].float() * freqs[None, :]  # (N, half)
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=-1)  # (N, 2*half)
    if flip_sin_to_cos:
        emb = torch.cat([emb[:, half:], emb[:, :half]], dim=-1)
    if dim % 2 == 1:
        emb = nn.functional.pad(emb, (0, 1))
    return emb


class TimestepMLP(nn.Module):
    """Linear -> SiLU -> Linear on a sinusoidal embedding (diffusers' `TimestepEmbedding`)."""

    def __init__(self, in_channels: int, time_embed_dim: int) -> None:
        super().__init__()
        self.linear_1 = nn.Linear(in_channels, time_embed_dim)
        self.act = nn.SiLU()
        self.linear_2 = nn.Linear(time_embed_dim, time_embed_dim)

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        """(N, in_channels) -> (N, time_embed_dim)."""
        return self.linear_2(self.act(self.linear_1(emb)))


_WORKSPACE: "OrderedDict[tuple, torch.Tensor]" = OrderedDict()
WORKSPACE_ENTRIES = 32  # (role, shape, dtype) buffers kept; a sampler uses a handful (batch 1 and 2)
WORKSPACE_MAX_BYTES = 256 * 2**20  # larger buffers are allocated fresh, not kept


def workspace(
    role: str, shape: tuple[int, ...], like: torch.Tensor, memory_format: torch.memory_format = torch.contiguous_format
) -> torch.Tensor:
    """A reusable uninitialised CPU buffer for `role` (one per role, shape, dtype and memory format,
    shared by every module with that role). Reuse avoids what the DiT profile showed as the largest
    non-matmul cost on CPU: page faults on every fresh multi-megabyte buffer (glibc returns freed
    ones to the OS)."""
    key = (role, tuple(shape), like.dtype, memory_format)
    if math.prod(shape) * like.element_size() > WORKSPACE_MAX_BYTES:
        return torch.empty(shape, dtype=like.dtype, memory_format=memory_format)  # too big to keep (full-size decodes)
    buffer = _WORKSPACE.get(key)
    if buffer is None:
        buffer = _WORKSPACE[key] = torch.empty(shape, dtype=like.dtype, memory_format=memory_format)
        if len(_WORKSPACE) > WORKSPACE_ENTRIES:
            _WORKSPACE.popitem(last=False)
    _WORKSPACE.move_to_end(key)
    return buffer


class WorkspaceLinear(nn.Linear):
    """nn.Linear whose output, on CPU without autograd, lands in the shared `workspace(role)` buffer.

    Only for projections whose result is consumed before the same role runs again (inside one
    transformer block: q/k/v, attention out, FFN in/out); the next call overwrites it. Same
    parameters and state-dict keys as nn.Linear; with autograd, on other devices and under
    torch.compile it is nn.Linear.
    """

    def __init__(self, in_features: int, out_features: int, role: str) -> None:
        super().__init__(in_features, out_features)
        self.role = role

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() or x.device.type != "cpu" or torch.compiler.is_compiling() or self.bias is None:
            return super().forward(x)
        out = workspace(self.role, (*x.shape[:-1], self.out_features), x)
        torch.addmm(self.bias, x.reshape(-1, self.in_features), self.weight.t(), out=out.view(-1, self.out_features))
        return out
