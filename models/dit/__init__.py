"""Denoising transformers: LTX-Video's DiT with cross-attention or MM-DiT text conditioning.

`DITS` maps kind names to config classes; `dit_config(vae_kind, size, **overrides)`
builds a preset; `describe_dit` reports parameters, tokens and FLOPs on the meta device.
"""

from __future__ import annotations

from models.dit.config import DiTConfig
from models.dit.describe import describe_dit
from models.dit.patch import patchify, token_timesteps, unpatchify
from models.dit.presets import dit_config, vae_pairing
from models.registry import Registry

DITS: Registry[type] = Registry("DiT")
DITS.register("ltx_dit", DiTConfig)

__all__ = ["DITS", "DiTConfig", "describe_dit", "dit_config", "patchify", "token_timesteps", "unpatchify", "vae_pairing"]
