"""Load diffusers' `AutoencoderKLLTXVideo` weights and config into our `ltx` VAE.

A pure key/shape mapping over state dicts (diffusers is never imported here): the
module layout in `models/vae/autoencoder.py` mirrors diffusers'
`models/autoencoders/autoencoder_kl_ltx.py` block for block, so each diffusers tensor
has exactly one counterpart. Official LTX-Video checkpoints in diffusers' format
(e.g. `Lightricks/LTX-Video-0.9.1`, subfolder `vae`) load with
`model.load_state_dict(from_diffusers_state_dict(sd))` after
`config_from_diffusers(config_json)`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

from models.config import ConfigError
from models.vae.ltx import LTXVAEConfig

# (pattern, replacement) applied in order to every diffusers key
_KEY_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(p), r)
    for p, r in [
        (r"^encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.", r"encoder.stages.\1.downsample."),
        (r"^decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.conv\.", r"decoder.stages.\1.upsample.conv."),
        (r"\.time_embedder\.timestep_embedder\.", r".time_embed."),
        (r"\.(down|up)_blocks\.", r".stages."),
        (r"\.mid_block\.", r".mid."),
        (r"^encoder\.stages\.(\d+)\.conv_out\.", r"encoder.stages.\1.widen."),
        (r"^decoder\.stages\.(\d+)\.conv_in\.", r"decoder.stages.\1.widen."),
        (r"\.conv_shortcut\.conv\.", r".shortcut."),
        (r"\.norm3\.", r".shortcut_norm."),
        (r"\.(conv1|conv2|conv_in|conv_out)\.conv\.", r".\1."),
        (r"\.per_channel_scale(\d)$", r".noise_scale\1"),
        (r"^decoder\.timestep_scale_multiplier$", r"decoder.timestep_scale"),
    ]
]


def convert_key(key: str) -> str:
    """One diffusers state-dict key -> ours (e.g. `decoder.up_blocks.0.upsamplers.0.conv.conv.weight`
    -> `decoder.stages.0.upsample.conv.weight`)."""
    for pattern, replacement in _KEY_RULES:
        key = pattern.sub(replacement, key)
    return key


def from_diffusers_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """diffusers `AutoencoderKLLTXVideo.state_dict()` -> our `CausalVideoVAE` state dict.

    Only the per-channel noise scales change shape: (C, 1, 1) -> (C,). Tensors are
    shared, not copied.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        new = convert_key(key)
        if new.endswith((".noise_scale1", ".noise_scale2")):
            value = value.reshape(-1)  # (C, 1, 1) -> (C,)
        if new in out:
            raise ValueError(f"two diffusers keys map to '{new}'; the converter rules are ambiguous.")
        out[new] = value
    return out


def _all_same(values: Any, name: str) -> Any:
    values = tuple(values)
    if len(set(values)) != 1:
        raise ConfigError(f"diffusers config {name}={values} varies per block; our VAE needs one value.")
    return values[0]


def _strides(flags: Any) -> tuple[tuple[int, int, int], ...]:
    return tuple((2, 2, 2) if flag else (1, 1, 1) for flag in flags)


def config_from_diffusers(config: Mapping[str, Any], size: str = "converted") -> LTXVAEConfig:
    """diffusers' `AutoencoderKLLTXVideo` config dict (its `config.json`) -> `LTXVAEConfig`.

    Supports the 0.9.0 and 0.9.1 layouts (strided-conv downsampling, equal upsample
    factors, LTX's noise-injection pattern); anything else raises `ConfigError`.
    """
    cfg = dict(config)
    if cfg.get("patch_size_t", 1) != 1 or not cfg.get("encoder_causal", True):
        raise ConfigError("only patch_size_t=1 with a causal encoder maps onto our VAE.")
    if any(t != "LTXVideoDownBlock3D" for t in cfg.get("down_block_types", ["LTXVideoDownBlock3D"])):
        raise ConfigError("only LTXVideoDownBlock3D (0.9.0/0.9.1) encoders map onto our VAE.")
    if cfg.get("in_channels", 3) != cfg.get("out_channels", 3):
        raise ConfigError("in_channels and out_channels must match.")
    decoder_channels = tuple(cfg["decoder_block_out_channels"])
    n = len(decoder_channels)
    inject = tuple(cfg.get("decoder_inject_noise", (False,) * (n + 1)))
    noise = any(inject)
    if noise and inject != (False,) + (True,) * n:
        raise ConfigError(f"decoder_inject_noise={inject} is not LTX's pattern (all but the pixel-side stage).")
    factors = cfg.get("upsample_factor", (1,) * n)[:n]
    residuals = cfg.get("upsample_residual", (False,) * n)[:n]
    return LTXVAEConfig(
        size=size,
        in_channels=cfg.get("in_channels", 3),
        latent_channels=cfg["latent_channels"],
        patch_size=cfg["patch_size"],
        encoder_channels=tuple(cfg["block_out_channels"]),
        encoder_layers=tuple(cfg["layers_per_block"]),
        encoder_strides=_strides(cfg["spatio_temporal_scaling"]),
        decoder_channels=decoder_channels,
        decoder_layers=tuple(cfg["decoder_layers_per_block"]),
        decoder_strides=_strides(cfg["decoder_spatio_temporal_scaling"]),
        decoder_upsample_factor=_all_same(factors, "upsample_factor"),
        decoder_upsample_residual=bool(_all_same(residuals, "upsample_residual")),
        decoder_causal=cfg.get("decoder_causal", False),
        logvar="uniform",
        decoder_timestep_conditioning=cfg.get("timestep_conditioning", False),
        decoder_noise_injection=noise,
    )


def to_diffusers_config(cfg: LTXVAEConfig) -> dict[str, Any]:
    """Our `LTXVAEConfig` -> the `AutoencoderKLLTXVideo(**config)` arguments of the same model.

    The inverse of `config_from_diffusers` (benchmarks and parity checks build diffusers'
    model from it); raises `ConfigError` for configs diffusers cannot express.
    """
    if cfg.logvar != "uniform":
        raise ConfigError("diffusers' LTX VAE only has a uniform log-variance.")
    for strides in (cfg.encoder_strides, cfg.decoder_strides):
        if any(s not in ((1, 1, 1), (2, 2, 2)) for s in strides):
            raise ConfigError("diffusers' LTX VAE (0.9.0/0.9.1) only has (1,1,1) or (2,2,2) stages.")
    n = len(cfg.decoder_channels)
    return dict(
        in_channels=cfg.in_channels,
        out_channels=cfg.in_channels,
        latent_channels=cfg.latent_channels,
        block_out_channels=tuple(cfg.encoder_channels),
        decoder_block_out_channels=tuple(cfg.decoder_channels),
        layers_per_block=tuple(cfg.encoder_layers),
        decoder_layers_per_block=tuple(cfg.decoder_layers),
        spatio_temporal_scaling=tuple(s == (2, 2, 2) for s in cfg.encoder_strides),
        decoder_spatio_temporal_scaling=tuple(s == (2, 2, 2) for s in cfg.decoder_strides),
        decoder_inject_noise=(False,) + (cfg.decoder_noise_injection,) * n,
        upsample_residual=(cfg.decoder_upsample_residual,) * n,
        upsample_factor=(cfg.decoder_upsample_factor,) * n,
        timestep_conditioning=cfg.decoder_timestep_conditioning,
        patch_size=cfg.patch_size,
        patch_size_t=1,
        encoder_causal=True,
        decoder_causal=cfg.decoder_causal,
    )
