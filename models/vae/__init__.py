"""Video VAEs: the `VAES` registry, presets, builders and a weight-free description.

`ltx` patchifies at the VAE input (32x32x8 pixels -> 128 channels, LTX-Video 0.9.1);
`conventional` compresses 8x8x4 -> 16 channels and leaves patchifying to the DiT.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from models.config import from_dict, to_dict
from models.registry import Registry
from models.vae.autoencoder import CausalVAEConfig, CausalVideoVAE
from models.vae.conventional import ConventionalVAEConfig
from models.vae.ltx import SIZES, LTXVAEConfig

VAES: Registry[type[CausalVAEConfig]] = Registry("VAE")
VAES.register("ltx", LTXVAEConfig)
VAES.register("conventional", ConventionalVAEConfig)

__all__ = [
    "VAES",
    "SIZES",
    "CausalVAEConfig",
    "CausalVideoVAE",
    "ConventionalVAEConfig",
    "LTXVAEConfig",
    "build_vae",
    "describe_vae",
    "vae_config",
]


def vae_config(kind: str, size: str = "tiny", **overrides: Any) -> CausalVAEConfig:
    """The `size` preset of VAE `kind`, with field overrides validated like a JSON config."""
    cls = VAES.get(kind)
    base = cls.preset(size)  # type: ignore[attr-defined]
    return from_dict(cls, {**to_dict(base), **overrides})


def build_vae(cfg: CausalVAEConfig) -> nn.Module:
    return cfg.build()


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def describe_vae(cfg: CausalVAEConfig, frames: int, height: int, width: int) -> dict[str, Any]:
    """Latent shape, compression and parameter counts for a (3, frames, height, width) video.

    Built and run on the meta device: nothing is allocated, and the latent and
    reconstruction shapes come from an actual (shape-only) encode and decode.
    `compression_ratio` is the design ratio (pixels*3 per latent value for 1 + 8k frames
    as k grows, 192 for ltx); `shape_compression_ratio` is the exact one at this shape,
    lower because the first frame is encoded alone. `pixels_per_token` counts pixels per
    latent position, i.e. per token of a 1x1x1 transformer patch (8192 for ltx; the
    conventional VAE's 256 reaches 8192 with its 4x4x2 DiT patch).
    """
    with torch.device("meta"):
        vae = cfg.build()
        video = torch.empty(1, cfg.in_channels, frames, height, width)
        vae.check_video_shape(video)
        with torch.no_grad():
            mean, _ = vae.encode(video)
            recon_shape = list(vae.decode(mean).shape[1:])
    latent_shape = list(mean.shape[1:])  # [Cz, t, h, w]
    tc, sc = vae.temporal_compression, vae.spatial_compression
    encoder_params, decoder_params = _count(vae.encoder), _count(vae.decoder)
    return {
        "kind": cfg.kind,
        "size": cfg.size,
        "video_shape": [cfg.in_channels, frames, height, width],
        "latent_shape": latent_shape,
        "reconstruction_shape": recon_shape,
        "temporal_compression": tc,
        "spatial_compression": sc,
        "compression_ratio": tc * sc * sc * cfg.in_channels // cfg.latent_channels,
        "shape_compression_ratio": round(cfg.in_channels * frames * height * width / math.prod(latent_shape), 2),
        "pixels_per_token": tc * sc * sc,
        "latent_channels": cfg.latent_channels,
        "encoder_params": encoder_params,
        "decoder_params": decoder_params,
        "total_params": encoder_params + decoder_params,
    }
