"""Temporal chunking of the causal VAE decode, so a full-size video decodes in bounded memory.

A decode of latent frames [a, b) alone differs from the full decode only near its ends,
where the convolutions see padding instead of neighbours. Each chunk is therefore decoded
with `context` extra latent frames on both sides (at least the decoder's temporal
receptive radius, `temporal_receptive_radius`), and only its own frames are kept, so the
chunks tile the full decode exactly (up to float summation order). The video's own ends
keep their replicate padding, as in the full decode.

Frame bookkeeping (1 + k latent frames -> 1 + tc*k pixel frames): decoding a chunk whose
first latent frame is s gives pixel frames starting at global frame tc*s (its first latent
frame yields one pixel frame, as frame 0 does in the full decode). Latent frames [a, b)
own pixel frames [tc*(a-1) + 1, tc*(b-1)] (frame 0 owns pixel 0 alone).

Injected decoder noise is one (H, W) field per resnet call, independent of the frame
count, so every chunk restarts the generator from the same state and draws the fields
the full decode draws.
"""

from __future__ import annotations

import math
from typing import Iterator

import torch
from torch import nn

from models.rng import Generator


def _conv_radius(conv: nn.Module) -> int:
    return (conv.kernel_size[0] - 1) // 2 if not getattr(conv, "causal", False) else conv.kernel_size[0] - 1


def temporal_receptive_radius(decoder: nn.Module) -> int:
    """Latent frames on each side that can influence an output frame of `decoder` (rounded up, +1 for
    the frame each upsample drops); convs at a rate r pixel frames per latent frame count 1/r."""
    from models.vae.blocks import CausalConv3d, DepthToSpaceUpsample

    radius, rate = 0.0, 1
    modules = [decoder.conv_in, decoder.mid, *decoder.stages, decoder.conv_out]
    for top in modules:
        for module in top.modules():
            if isinstance(module, DepthToSpaceUpsample):
                radius += _conv_radius(module.conv) / rate
                rate *= module.stride[0]
            elif isinstance(module, CausalConv3d) and not _inside_upsample(top, module):
                radius += _conv_radius(module) / rate
    return math.ceil(radius) + 1


def _inside_upsample(top: nn.Module, conv: nn.Module) -> bool:
    from models.vae.blocks import DepthToSpaceUpsample

    return any(isinstance(m, DepthToSpaceUpsample) and m.conv is conv for m in top.modules())


def chunk_ranges(frames: int, chunk: int) -> Iterator[tuple[int, int]]:
    """[a, b) latent frame ranges of at most `chunk` frames covering 0 .. frames."""
    for start in range(0, frames, chunk):
        yield start, min(start + chunk, frames)


def _pixel_range(a: int, b: int, tc: int) -> tuple[int, int]:
    """Global pixel frames [start, stop) owned by latent frames [a, b)."""
    return (0 if a == 0 else tc * (a - 1) + 1), tc * (b - 1) + 1


def decode_chunked(
    vae: nn.Module,
    z: torch.Tensor,
    timestep: torch.Tensor | None = None,
    generator: Generator = None,
    *,
    chunk_frames: int,
    context: int | None = None,
) -> torch.Tensor:
    """`vae.decode(z, timestep, generator)` computed `chunk_frames` latent frames at a time.

    z (B, Cz, t, h, w) -> (B, 3, 1 + tc*(t-1), H, W). `context` defaults to the decoder's
    temporal receptive radius, which makes the result equal to the full decode. The
    generator must be a torch.Generator (or None for the global RNG): its state is replayed
    for every chunk.
    """
    frames = z.shape[2]
    if chunk_frames < 1:
        raise ValueError(f"chunk_frames must be at least 1, not {chunk_frames}.")
    if chunk_frames >= frames:
        return vae.decode(z, timestep, generator)
    tc = vae.temporal_compression
    context = temporal_receptive_radius(vae.decoder) if context is None else context
    state = generator.get_state() if generator is not None else torch.random.get_rng_state()
    pieces = []
    for a, b in chunk_ranges(frames, chunk_frames):
        lo, hi = max(0, a - context), min(frames, b + context)
        if generator is not None:
            generator.set_state(state)
        else:
            torch.random.set_rng_state(state)
        video = vae.decode(z[:, :, lo:hi], timestep, generator)  # (B, 3, 1 + tc*(hi-lo-1), H, W)
        start, stop = _pixel_range(a, b, tc)
        pieces.append(video[:, :, start - tc * lo : stop - tc * lo])
    return torch.cat(pieces, dim=2)
