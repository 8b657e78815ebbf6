"""Primitives shared by the VAE and the DiT families (one definition each)."""

from __future__ import annotations

import functools
import math
import os
import weakref
from collections import OrderedDict
from typing import Callable

import torch
from torch import nn

from models.config import ConfigError


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


# linear -> {(weight storage, weight version, key, threads): its weight packed for MKL's sgemm (key: library and
# row count) or oneDNN's linear (key: library)}. Kept outside
# the modules, as the VAE's packed convs are: an opaque MKL buffer cannot be deep-copied or pickled with them.
_PACKED_LINEAR: "weakref.WeakKeyDictionary[nn.Linear, dict[tuple, torch.Tensor]]" = weakref.WeakKeyDictionary()
PACKED_PER_LINEAR = 4  # row counts kept per projection (a sampler uses two or three: CFG batch, half batch, text)
# products with more rows use addmm: at 640 rows (benchmarks/dit_speed.py's `small`) the packed sgemm
# measured between 1% faster and 17% slower than addmm; at 96 rows (the `small` generate shape) the
# whole forward was 3% faster (paired CPU time 0.966 [q1 0.947, q3 1.000])
PACKED_MAX_ROWS = 256


def packed_weight(
    registry: "weakref.WeakKeyDictionary[nn.Module, dict[tuple, torch.Tensor]]", module: nn.Module,
    weight: torch.Tensor, key: object, limit: int, make: Callable[[], torch.Tensor],
) -> torch.Tensor:
    """`make()`, a weight re-laid out for a library kernel (oneDNN, MKL), kept in `registry[module]` under
    `key` (what the layout depends on: a tap, an input shape, a row count): made once, again when `weight`
    changes (load_state_dict and optimizer steps bump its version), and per thread count (the libraries
    lay weights out for the threads they will run on: a conv weight packed at 2 threads made the `small`
    decode at 1 thread 12-19% slower). At most `limit` are kept per module."""
    full = (weight.data_ptr(), weight._version, key, torch.get_num_threads())
    cache = registry.setdefault(module, {})
    packed = cache.get(full)
    if packed is None:
        if len(cache) >= limit or any(k[:2] != full[:2] for k in cache):
            cache.clear()  # the weight changed, or many shapes came by: start over
        packed = cache[full] = make()
    return packed


def mkl_packed_linear_available() -> bool:
    """Whether this torch build has MKL's packed sgemm (`mkl::_mkl_linear`)."""
    return torch.backends.mkl.is_available() and hasattr(torch.ops.mkl, "_mkl_linear")


def onednn_linear_available() -> bool:
    """Whether this torch build has oneDNN's linear with a reordered weight (`mkldnn::_linear_pointwise`)."""
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise") \
        and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")


CPU_LINEAR_ENV = "LTXLAB_CPU_LINEAR"  # auto | onednn | mkl: which library multiplies the DiT's inference projections


@functools.cache
def cpu_linear_backend() -> str:
    """`onednn` or `mkl`: the library for `WorkspaceLinear`'s no-grad fp32 CPU products.

    `auto` (the default) is oneDNN where torch runs AVX-512 kernels and oneDNN's packed linear exists,
    else MKL. On an AMD Zen 4 (AVX-512) MKL's sgemm runs at 93-101 GFLOP/s a core at the DiT's shapes
    and oneDNN's packed linear at 111-113 (225 against 144-202 on two cores); on the AVX2 machines
    of earlier stops oneDNN was the slower one (58-67 against 67-76). `LTXLAB_CPU_LINEAR=mkl|onednn`
    overrides the choice. The two round differently (about 1e-6 relative on a product): a
    seeded sample is bit-reproducible on one machine kind, not across kinds, as with MKL alone."""
    choice = os.environ.get(CPU_LINEAR_ENV, "auto").strip().lower()
    if choice not in ("auto", "onednn", "mkl"):
        raise ConfigError(f"{CPU_LINEAR_ENV}={choice!r}: set it to auto, onednn or mkl (or unset it).")
    onednn = onednn_linear_available()
    if choice == "onednn" or (choice == "auto" and torch.backends.cpu.get_cpu_capability().startswith("AVX512")):
        if onednn:
            return "onednn"
        if choice == "onednn":
            raise ConfigError(f"{CPU_LINEAR_ENV}=onednn: this torch build has no oneDNN packed linear; unset it or set mkl.")
    return "mkl"


class WorkspaceLinear(nn.Linear):
    """nn.Linear that, on CPU without autograd, multiplies by a weight packed once for a library kernel.

    Same parameters and state-dict keys as nn.Linear; with autograd, on other devices and under
    torch.compile it is nn.Linear. Which kernel is `cpu_linear_backend()`'s choice:
    - `onednn` (AVX-512 CPUs): oneDNN's linear with the weight reordered once per row count
      (`torch.ops.mkldnn._reorder_linear_weight`, what inductor's CPU freezing uses), 12-50% faster
      than MKL's sgemm at the DiT's shapes on a Zen 4; not bit-identical to addmm (about 1e-6 relative).
    - `mkl`: `addmm` (nn.Linear's CPU path) repacks the weight on every call; with few rows (the
      `small` generate shape has 96) that repacking is a few percent of each projection's time, and
      the packed product is the same sgemm, equal to addmm's bit for bit. With more rows (or without
      MKL) it is addmm into the shared `workspace(role)` buffer, so only for projections whose
      result is consumed before the same role runs again (inside one transformer block: q/k/v,
      attention out, FFN in/out).
    """

    def __init__(self, in_features: int, out_features: int, role: str) -> None:
        super().__init__(in_features, out_features)
        self.role = role

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() or x.device.type != "cpu" or torch.compiler.is_compiling() or self.bias is None \
                or x.dtype != torch.float32:
            return super().forward(x)
        rows = x.numel() // self.in_features
        flat = x.reshape(rows, self.in_features)
        if cpu_linear_backend() == "onednn":
            out = torch.ops.mkldnn._linear_pointwise(flat, self._packed(rows, "onednn"), self.bias, "none", [], "")
            return out.view(*x.shape[:-1], self.out_features)
        if rows <= PACKED_MAX_ROWS and mkl_packed_linear_available():
            out = torch.ops.mkl._mkl_linear(flat, self._packed(rows, "mkl"), self.weight, self.bias, rows)
            return out.view(*x.shape[:-1], self.out_features)
        out = workspace(self.role, (*x.shape[:-1], self.out_features), x)
        torch.addmm(self.bias, flat, self.weight.t(), out=out.view(-1, self.out_features))
        return out

    def _packed(self, rows: int, library: str) -> torch.Tensor:
        """The weight packed for `library`'s kernel (for MKL per row count; see `packed_weight`)."""
        if library == "onednn":  # one layout for every row count: the batch-size hint changed neither speed nor
            # result at 32-640 rows (a Zen 4, 1 and 2 threads), so one copy serves the CFG batch, half batch and text
            return packed_weight(_PACKED_LINEAR, self, self.weight, library, PACKED_PER_LINEAR,
                                 lambda: torch.ops.mkldnn._reorder_linear_weight(self.weight.detach(), None))
        return packed_weight(_PACKED_LINEAR, self, self.weight, (library, rows), PACKED_PER_LINEAR,
                             lambda: torch.ops.mkl._mkl_reorder_linear_weight(self.weight.detach(), rows))
