"""DiT presets: which VAE it pairs with (latent channels, compression, patch) x size."""

from __future__ import annotations

from typing import Any

from models.config import ConfigError, replace_path
from models.dit.config import DiTConfig

# Both pairings give 8192 pixels per token: 8*32*32*1 = 4*8*8*(2*4*4). docs/design.md, "Configs and registries".
VAE_PAIRINGS: dict[str, dict[str, Any]] = {
    "ltx": dict(in_channels=128, vae_temporal_compression=8, vae_spatial_compression=32, patch="1x1x1"),
    "conventional": dict(in_channels=16, vae_temporal_compression=4, vae_spatial_compression=8, patch="4x4x2"),
}

SIZES: dict[str, dict[str, Any]] = {
    # trains on a 2-core CPU; captions from MiniLM (384-d, padded to 16 tokens)
    "tiny": dict(num_layers=2, num_heads=4, head_dim=16, caption_channels=384, max_text_tokens=16),
    # a single-GPU study size (36.2M parameters with the ltx pairing)
    "small": dict(num_layers=8, num_heads=8, head_dim=64, caption_channels=384, max_text_tokens=32),
    # LTX-Video 2B = diffusers' LTXVideoTransformer3DModel() defaults, T5-XXL captions
    "full": dict(num_layers=28, num_heads=32, head_dim=64, caption_channels=4096, max_text_tokens=128),
}


def vae_pairing(vae_cfg: Any) -> dict[str, int]:
    """The DiT fields that follow a VAE config's own values: latent channels in, and the
    compression factors RoPE turns latent indices into pixel coordinates with."""
    return {"in_channels": vae_cfg.latent_channels, "vae_spatial_compression": vae_cfg.spatial_compression,
            "vae_temporal_compression": vae_cfg.temporal_compression}


def dit_config(vae_kind: str, size: str, **overrides: Any) -> DiTConfig:
    """Preset DiT config for a VAE kind ('ltx' | 'conventional') and size ('tiny' | 'small' | 'full')."""
    if vae_kind not in VAE_PAIRINGS:
        raise ConfigError(f"Unknown VAE kind '{vae_kind}' for the DiT; use one of: {', '.join(VAE_PAIRINGS)}.")
    if size not in SIZES:
        raise ConfigError(f"Unknown DiT size '{size}'; use one of: {', '.join(SIZES)}.")
    cfg = DiTConfig(**VAE_PAIRINGS[vae_kind], **SIZES[size])
    for name, value in overrides.items():
        cfg = replace_path(cfg, name, value)  # validates names and Literal choices
    return cfg
