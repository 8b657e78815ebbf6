"""Load LTX-Video VAE weights and configs into our `ltx` VAE: diffusers' and the original layout.

Pure key/shape mappings over state dicts (diffusers is never imported here):
- diffusers' `AutoencoderKLLTXVideo` (`vae/` of a diffusers folder): the module layout in
  `models/vae/autoencoder.py` mirrors diffusers' `autoencoder_kl_ltx.py` block for block,
  so each tensor has exactly one counterpart (`from_diffusers_state_dict`).
- the original single-file checkpoint (`ltx-video-2b-v0.9.1.safetensors`, keys under
  `vae.`): its encoder and decoder are flat block lists (`down_blocks.0..9`,
  `up_blocks.0..8`), renamed to diffusers' names as diffusers'
  `scripts/convert_ltx_to_diffusers.py` does (`VAE_KEYS_RENAME_DICT`,
  `VAE_091_RENAME_DICT`, `VAE_095_RENAME_DICT`). Which flat index is which block depends on
  the config, so `original_block_prefixes(cfg)` derives the table from it instead of
  hard-coding one per release (`original_to_diffusers_state_dict`).
`models/weights.py` reads the files and builds the model; `config_from_diffusers` maps a
diffusers `config.json` onto `LTXVAEConfig`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import torch

from models.config import ConfigError
from models.vae.autoencoder import NOISE_LAYOUTS, CausalVAEConfig, encoder_stage_widths
from models.vae.ltx import LTXVAEConfig

# (pattern, replacement) applied in order to every diffusers key
_KEY_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(p), r)
    for p, r in [
        (r"^encoder\.down_blocks\.(\d+)\.downsamplers\.0\.", r"encoder.stages.\1.downsample."),
        (r"^decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.conv\.", r"decoder.stages.\1.upsample.conv."),
        (r"\.time_embedder\.timestep_embedder\.", r".time_embed."),
        (r"\.(down|up)_blocks\.", r".stages."),
        (r"\.mid_block\.", r".mid."),
        (r"^encoder\.stages\.(\d+)\.conv_out\.", r"encoder.stages.\1.widen."),
        (r"^decoder\.stages\.(\d+)\.conv_in\.", r"decoder.stages.\1.widen."),
        (r"\.conv_shortcut\.conv\.", r".shortcut."),
        (r"\.norm3\.", r".shortcut_norm."),
        (r"\.(conv1|conv2|conv_in|conv_out)\.conv\.", r".\1."),
        (r"^(encoder\.stages\.\d+\.downsample\.)conv\.(weight|bias)$", r"\1\2"),  # 0.9.0/0.9.1 strided conv
        (r"^(encoder\.stages\.\d+\.downsample\.conv\.)conv\.", r"\1"),  # 0.9.5 space-to-depth conv
        (r"\.per_channel_scale(\d)$", r".noise_scale\1"),
        (r"^decoder\.timestep_scale_multiplier$", r"decoder.timestep_scale"),
    ]
]

# the original checkpoint's names inside a block -> diffusers' (convert_ltx_to_diffusers.py's
# "common" entries of VAE_KEYS_RENAME_DICT and VAE_091_RENAME_DICT)
_ORIGINAL_RENAMES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(p), r)
    for p, r in [
        (r"\.res_blocks\.", ".resnets."),
        (r"\.conv_shortcut\.(weight|bias)$", r".conv_shortcut.conv.\1"),
        (r"\.norm3\.norm\.", ".norm3."),
        (r"^decoder\.last_time_embedder\.", "decoder.time_embedder."),
        (r"^decoder\.last_scale_shift_table$", "decoder.scale_shift_table"),
        (r"^per_channel_statistics\.mean-of-means$", "latents_mean"),
        (r"^per_channel_statistics\.std-of-means$", "latents_std"),
    ]
]
# statistics the original file carries that neither diffusers nor we keep
ORIGINAL_DROPPED = re.compile(r"^per_channel_statistics\.(channel|mean-of-stds.*)$")


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


def original_block_prefixes(cfg: CausalVAEConfig) -> dict[str, str]:
    """{original block prefix: diffusers block prefix} for a VAE of `cfg`'s layout.

    The original encoder lists, per stage, its resnets (`res_x`), its downsampler and (conv
    downsampling) its widening resnet (`res_x_y`), then the mid-block; the decoder lists the
    mid-block, then per stage (from the latent side) its widening resnet, its upsampler and
    its resnets. Each present block takes the next index. For 0.9.1 this reproduces
    convert_ltx_to_diffusers.py's table (`down_blocks.2` -> `down_blocks.0.conv_out`,
    `up_blocks.1` -> `up_blocks.0.upsamplers.0`, ...). Stages with 0 resnets are assumed to
    have no `res_x` entry.
    """
    out: dict[str, str] = {}
    j = 0
    outs = encoder_stage_widths(cfg)
    for i, (width, layers, stride) in enumerate(zip(cfg.encoder_channels, cfg.encoder_layers, cfg.encoder_strides)):
        parts = [f"down_blocks.{i}"] if layers else []
        if math.prod(stride) > 1:
            parts.append(f"down_blocks.{i}.downsamplers.0")
        if cfg.encoder_downsample == "conv" and outs[i] != width:
            parts.append(f"down_blocks.{i}.conv_out")
        for part in parts:
            out[f"encoder.down_blocks.{j}."] = f"encoder.{part}."
            j += 1
    out[f"encoder.down_blocks.{j}."] = "encoder.mid_block."
    out["decoder.up_blocks.0."] = "decoder.mid_block."
    j = 1
    widths = cfg.decoder_channels[::-1]
    layers_ = cfg.decoder_layers[::-1][1:]
    strides = cfg.decoder_strides[::-1]
    channels = widths[0]
    for i, (width, layers, stride) in enumerate(zip(widths, layers_, strides)):
        upsamples = math.prod(stride) > 1
        parts = [f"up_blocks.{i}.conv_in"] if channels != width else []
        if upsamples:
            parts.append(f"up_blocks.{i}.upsamplers.0")
        if layers:
            parts.append(f"up_blocks.{i}")
        for part in parts:
            out[f"decoder.up_blocks.{j}."] = f"decoder.{part}."
            j += 1
        channels = width // cfg.decoder_upsample_factor if upsamples else width
    return out


def original_to_diffusers_state_dict(
    state_dict: Mapping[str, torch.Tensor], cfg: CausalVAEConfig
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Original LTX-Video VAE keys (without the `vae.` prefix) -> diffusers' keys, for `cfg`'s layout.

    Returns (renamed state dict, original keys that have no block in this layout). The
    statistics diffusers drops (`per_channel_statistics.channel`, `mean-of-stds*`) are
    dropped here too. Tensors are shared, not copied.
    """
    prefixes = original_block_prefixes(cfg)
    block = re.compile(r"^(encoder\.down_blocks\.\d+\.|decoder\.up_blocks\.\d+\.)")
    out: dict[str, torch.Tensor] = {}
    unplaced: list[str] = []
    for key, value in state_dict.items():
        if ORIGINAL_DROPPED.match(key):
            continue
        new = key
        match = block.match(key)
        if match:
            if match.group(1) not in prefixes:
                unplaced.append(key)
                continue
            new = prefixes[match.group(1)] + key[match.end():]
        for pattern, replacement in _ORIGINAL_RENAMES:
            new = pattern.sub(replacement, new)
        out[new] = value
    return out, unplaced


def is_original_vae_layout(keys: Any) -> bool:
    """True for the original checkpoint's key names, False for diffusers' (which have `mid_block`)."""
    return not any(k.startswith(("encoder.mid_block.", "decoder.mid_block.")) for k in keys)


# ------------------------------------------------------------------------------------ configs

_DOWNSAMPLE_STRIDES = {"spatial": (1, 2, 2), "temporal": (2, 1, 1), "spatiotemporal": (2, 2, 2)}


def _all_same(values: Any, name: str, where: str = "diffusers config") -> Any:
    values = tuple(values)
    if len(set(values)) != 1:
        raise ConfigError(f"{where} {name}={values} varies per block; our VAE needs one value.")
    return values[0]


def _strides(flags: Any) -> tuple[tuple[int, int, int], ...]:
    return tuple((2, 2, 2) if flag else (1, 1, 1) for flag in flags)


def published_noise_patterns(stages: int) -> dict[str, tuple[bool, ...]]:
    """The decoder noise layouts LTX-Video released, by name, pixel side first, mid-block last:
    "none" (0.9.0, 0.9.5 and later) and "ltx_0.9.1" (every up-stage but not the mid-block)."""
    return {name: layout(stages) for name, layout in NOISE_LAYOUTS.items()}


def _encoder_fields(cfg: dict[str, Any]) -> dict[str, Any]:
    types = tuple(cfg.get("down_block_types", ["LTXVideoDownBlock3D"] * len(cfg["spatio_temporal_scaling"])))
    widths = tuple(cfg["block_out_channels"])
    scaling = tuple(cfg["spatio_temporal_scaling"])
    if all(t == "LTXVideoDownBlock3D" for t in types):
        return dict(encoder_channels=widths, encoder_strides=_strides(scaling), encoder_downsample="conv")
    if all(t == "LTXVideo095DownBlock3D" for t in types):
        kinds = tuple(cfg.get("downsample_type", ("conv",) * len(types)))
        if any(k not in _DOWNSAMPLE_STRIDES for k, on in zip(kinds, scaling) if on):
            raise ConfigError(f"diffusers config downsample_type={kinds}: LTXVideo095DownBlock3D maps onto our VAE "
                              "only with spatial, temporal or spatiotemporal downsampling.")
        strides = tuple(_DOWNSAMPLE_STRIDES[k] if on else (1, 1, 1) for k, on in zip(kinds, scaling))
        # 0.9.5 blocks go from block_out_channels[i] to [i + 1]; the last entry is the mid-block's
        return dict(encoder_channels=widths[:-1], encoder_mid_channels=widths[-1], encoder_strides=strides,
                    encoder_downsample="space_to_depth")
    raise ConfigError(f"diffusers config down_block_types={types}: use all LTXVideoDownBlock3D (0.9.0/0.9.1) "
                      "or all LTXVideo095DownBlock3D (0.9.5 and later).")


def config_from_diffusers(
    config: Mapping[str, Any], size: str = "converted", *, any_noise_pattern: bool = False
) -> LTXVAEConfig:
    """diffusers' `AutoencoderKLLTXVideo` config dict (its `config.json`) -> `LTXVAEConfig`.

    Supports the 0.9.0, 0.9.1 and 0.9.5 (and 0.9.7) layouts. `decoder_inject_noise` must be
    a layout LTX-Video released (`published_noise_patterns`) unless `any_noise_pattern`:
    a checkpoint with any other pattern is most likely one written with ltxlab's old,
    mirrored layout (noise on the mid-block, none on the pixel-side stage). Anything our
    module cannot express raises `ConfigError` naming the field.
    """
    cfg = dict(config)
    if cfg.get("patch_size_t", 1) != 1 or not cfg.get("encoder_causal", True):
        raise ConfigError("only patch_size_t=1 with a causal encoder maps onto our VAE.")
    if cfg.get("in_channels", 3) != cfg.get("out_channels", 3):
        raise ConfigError("in_channels and out_channels must match.")
    for name, expected in (("resnet_norm_eps", 1e-6), ("scaling_factor", 1.0)):
        if cfg.get(name, expected) != expected:
            raise ConfigError(f"diffusers config {name}={cfg[name]}: our VAE has {name}={expected} only.")
    decoder_channels = tuple(cfg["decoder_block_out_channels"])
    n = len(decoder_channels)
    inject = tuple(bool(f) for f in cfg.get("decoder_inject_noise", (False,) * (n + 1)))
    if len(inject) != n + 1:
        raise ConfigError(f"diffusers config decoder_inject_noise={inject} needs {n + 1} entries "
                          f"({n} decoder stages, pixel side first, then the mid-block).")
    named = {layout: name for name, layout in published_noise_patterns(n).items()}
    if not any_noise_pattern and inject not in named:
        raise ConfigError(
            f"diffusers config decoder_inject_noise={inject} is not a released LTX-Video layout: 0.9.1 is "
            f"{published_noise_patterns(n)['ltx_0.9.1']} (every up-stage, pixel side first, and not the mid-block, "
            "last); a mirrored tuple comes from ltxlab's old converter (pass any_noise_pattern=True to load it as it is).")
    factors = cfg.get("upsample_factor", (1,) * n)[:n]
    residuals = cfg.get("upsample_residual", (False,) * n)[:n]
    out = LTXVAEConfig(
        size=size,
        in_channels=cfg.get("in_channels", 3),
        latent_channels=cfg["latent_channels"],
        patch_size=cfg["patch_size"],
        encoder_layers=tuple(cfg["layers_per_block"]),
        decoder_channels=decoder_channels,
        decoder_layers=tuple(cfg["decoder_layers_per_block"]),
        decoder_strides=_strides(cfg["decoder_spatio_temporal_scaling"]),
        decoder_upsample_factor=_all_same(factors, "upsample_factor"),
        decoder_upsample_residual=bool(_all_same(residuals, "upsample_residual")),
        decoder_causal=cfg.get("decoder_causal", False),
        logvar="uniform",
        decoder_timestep_conditioning=cfg.get("timestep_conditioning", False),
        decoder_inject_noise=named.get(inject, inject),
        **_encoder_fields(cfg),
    )
    _check_diffusers_can_run(out)
    for name, ours in (("spatial_compression_ratio", out.spatial_compression),
                       ("temporal_compression_ratio", out.temporal_compression)):
        if cfg.get(name) not in (None, ours):
            raise ConfigError(f"diffusers config {name}={cfg[name]} but its blocks compress by {ours}.")
    return out


# what LTX-Video's CausalVideoAutoencoder.from_config reads that our VAE has one value of: (ours, its default)
_ORIGINAL_FIXED = {"dims": (3, 3), "norm_layer": ("pixel_norm", "group_norm"), "use_quant_conv": (False, True),
                   "normalize_latent_channels": (False, False), "spatial_padding_mode": ("zeros", "zeros"),
                   "scaling_factor": (1.0, 1.0)}


def fields_from_original(config: Mapping[str, Any]) -> dict[str, Any]:
    """The original single file's header `config["vae"]` -> {our field: value} for the fields it states.

    Reads what LTX-Video's `CausalVideoAutoencoder.from_config` reads, with its defaults. The
    block lists' widths and depths are left to the tensor shapes, which check them; what changes
    no shape is mapped: `causal_decoder`, `timestep_conditioning`, and the decoder upsamplers'
    `residual` and `multiplier` (a `compress_all` block's parameters; other upsamplers have
    neither). Raises ConfigError naming a value our VAE cannot express.
    """
    c = dict(config)
    if c.get("_class_name", "CausalVideoAutoencoder") != "CausalVideoAutoencoder":
        raise ConfigError(f"header config _class_name={c['_class_name']!r} is not LTX-Video's CausalVideoAutoencoder.")
    for name, (ours, default) in _ORIGINAL_FIXED.items():
        value = c.get(name, default)
        if value != ours:
            raise ConfigError(f"header config {name}={value!r}: our VAE has {name}={ours!r} only.")
    logvar = c.get("latent_log_var", "per_channel" if c.get("double_z", True) else "none")
    if logvar not in ("uniform", "per_channel"):
        raise ConfigError(f"header config latent_log_var={logvar!r}: our VAE has uniform or per_channel only.")
    upsamplers = [params if isinstance(params, dict) and name == "compress_all" else {}
                  for name, params in c.get("decoder_blocks", c.get("blocks", ())) if name.startswith("compress")]
    out = dict(in_channels=c.get("in_channels", 3), latent_channels=c["latent_channels"], patch_size=c.get("patch_size", 1),
               logvar=logvar, decoder_causal=bool(c.get("causal_decoder", False)),
               decoder_timestep_conditioning=bool(c.get("timestep_conditioning", False)))
    if upsamplers:
        out["decoder_upsample_residual"] = bool(_all_same((p.get("residual", False) for p in upsamplers),
                                                          "decoder_blocks residual", "header config"))
        out["decoder_upsample_factor"] = _all_same((p.get("multiplier", 1) for p in upsamplers),
                                                   "decoder_blocks multiplier", "header config")
    return out


def _check_diffusers_can_run(cfg: CausalVAEConfig) -> None:
    """diffusers gives a widening up-block resnet noise scales and a timestep table sized for
    its input, which its forward cannot use; our widening resnet has neither, so refuse."""
    widths = cfg.decoder_channels[::-1]
    noisy = cfg.noise_pattern[::-1][1:]
    channels = widths[0]
    for width, stride, noise in zip(widths, cfg.decoder_strides[::-1], noisy):
        if channels != width and (noise or cfg.decoder_timestep_conditioning):
            raise ConfigError("a decoder stage that widens cannot inject noise or be timestep-conditioned in "
                              "diffusers' LTX VAE; change decoder_channels, decoder_inject_noise or "
                              "decoder_timestep_conditioning.")
        channels = width // cfg.decoder_upsample_factor if math.prod(stride) > 1 else width


def to_diffusers_config(cfg: CausalVAEConfig) -> dict[str, Any]:
    """Our VAE config -> the `AutoencoderKLLTXVideo(**config)` arguments of the same model.

    The inverse of `config_from_diffusers` (benchmarks, parity tests and the weight tests
    build diffusers' model from it); raises `ConfigError` for configs diffusers cannot express.
    """
    if cfg.logvar != "uniform":
        raise ConfigError("diffusers' LTX VAE only has a uniform log-variance.")
    if any(s not in ((1, 1, 1), (2, 2, 2)) for s in cfg.decoder_strides):
        raise ConfigError("diffusers' LTX VAE decoder only has (1,1,1) or (2,2,2) stages.")
    _check_diffusers_can_run(cfg)
    n = len(cfg.decoder_channels)
    if cfg.encoder_downsample == "conv":
        if any(s not in ((1, 1, 1), (2, 2, 2)) for s in cfg.encoder_strides):
            raise ConfigError("diffusers' 0.9.0/0.9.1 LTX encoder only has (1,1,1) or (2,2,2) stages.")
        if cfg.encoder_mid_channels not in (0, cfg.encoder_channels[-1]):
            raise ConfigError("diffusers' 0.9.0/0.9.1 LTX encoder keeps the last stage's width in its mid-block.")
        encoder = dict(
            block_out_channels=tuple(cfg.encoder_channels),
            down_block_types=("LTXVideoDownBlock3D",) * len(cfg.encoder_channels),
            spatio_temporal_scaling=tuple(s == (2, 2, 2) for s in cfg.encoder_strides),
            downsample_type=("conv",) * len(cfg.encoder_channels),
        )
    else:
        names = {v: k for k, v in _DOWNSAMPLE_STRIDES.items()}
        if any(s not in names and s != (1, 1, 1) for s in cfg.encoder_strides):
            raise ConfigError("diffusers' 0.9.5 LTX encoder only has (1,2,2), (2,1,1) or (2,2,2) stages.")
        encoder = dict(
            block_out_channels=tuple(cfg.encoder_channels) + (encoder_stage_widths(cfg)[-1],),
            down_block_types=("LTXVideo095DownBlock3D",) * len(cfg.encoder_channels),
            spatio_temporal_scaling=tuple(s != (1, 1, 1) for s in cfg.encoder_strides),
            downsample_type=tuple(names.get(s, "conv") for s in cfg.encoder_strides),
        )
    return dict(
        in_channels=cfg.in_channels,
        out_channels=cfg.in_channels,
        latent_channels=cfg.latent_channels,
        decoder_block_out_channels=tuple(cfg.decoder_channels),
        layers_per_block=tuple(cfg.encoder_layers),
        decoder_layers_per_block=tuple(cfg.decoder_layers),
        decoder_spatio_temporal_scaling=tuple(s == (2, 2, 2) for s in cfg.decoder_strides),
        decoder_inject_noise=cfg.noise_pattern,
        upsample_residual=(cfg.decoder_upsample_residual,) * n,
        upsample_factor=(cfg.decoder_upsample_factor,) * n,
        timestep_conditioning=cfg.decoder_timestep_conditioning,
        patch_size=cfg.patch_size,
        patch_size_t=1,
        encoder_causal=True,
        decoder_causal=cfg.decoder_causal,
        **encoder,
    )
