"""diffusers `LTXVideoTransformer3DModel` state dict -> `LTXDiT` state dict (pure key mapping).

Only the cross-attention, QK-norm configuration exists in diffusers, so this is the one
that converts. Self-attention q, k, v (and cross-attention k, v) are concatenated into
our fused projections along the output dim, in q, k, v order (see models/dit/blocks.py).

The original single-file checkpoint (`ltx-video-2b-v0.9.1.safetensors`) holds the same
tensors under `model.diffusion_model.` with four names of its own, which
`original_to_diffusers_state_dict` renames as diffusers' `scripts/convert_ltx_to_diffusers.py`
does (`TRANSFORMER_KEYS_RENAME_DICT`).
"""

from __future__ import annotations

import re

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from models.dit.config import DiTConfig

_RENAMES = {
    "proj_in.": "patch_embed.",
    "time_embed.emb.timestep_embedder.": "time_mlp.",
    "time_embed.linear.": "time_modulation.",
    "caption_projection.": "caption_projection.",
    "proj_out.": "proj_out.",
}
_BLOCK_RENAMES = {
    "scale_shift_table": "scale_shift_table",
    "attn1.norm_q.weight": "self_attn.norm_q.weight",
    "attn1.norm_k.weight": "self_attn.norm_k.weight",
    "attn1.to_out.0.": "self_attn.to_out.",
    "attn2.norm_q.weight": "cross_attn.norm_q.weight",
    "attn2.norm_k.weight": "cross_attn.norm_k.weight",
    "attn2.to_q.": "cross_attn.to_q.",
    "attn2.to_out.0.": "cross_attn.to_out.",
    "ff.net.0.proj.": "ff.fc_in.",
    "ff.net.2.": "ff.fc_out.",
}
# the original checkpoint's names -> diffusers', applied in this order to every key
ORIGINAL_RENAMES = (("patchify_proj", "proj_in"), ("adaln_single", "time_embed"), ("q_norm", "norm_q"),
                    ("k_norm", "norm_k"))
_FUSED = {  # our fused name -> diffusers' parts, concatenated along dim 0
    "self_attn.to_qkv": ("attn1.to_q", "attn1.to_k", "attn1.to_v"),
    "cross_attn.to_kv": ("attn2.to_k", "attn2.to_v"),
}


class FusedShapeError(ValueError):
    """The q, k, v (or cross-attention k, v) of one attention differ in shape, so they cannot be fused."""

    def __init__(self, fused: str, parts: dict[str, tuple[int, ...]]) -> None:
        self.fused = fused  # our fused key, e.g. blocks.0.self_attn.to_qkv.weight
        self.parts = parts  # {diffusers key: shape}, in fusion order
        shown = ", ".join(f"{k} {list(v)}" for k, v in parts.items())
        super().__init__(f"{fused} fuses tensors of one shape, but the checkpoint has {shown}.")


def original_to_diffusers_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Original LTX-Video transformer keys (without `model.diffusion_model.`) -> diffusers' keys (tensors shared)."""
    out = {}
    for key, value in state.items():
        for old, new in ORIGINAL_RENAMES:
            key = key.replace(old, new)
        out[key] = value
    return out


def is_original_dit_layout(keys) -> bool:  # type: ignore[no-untyped-def]
    """True for the original checkpoint's names (`patchify_proj`, `adaln_single`), False for diffusers'."""
    return any(k.startswith(("patchify_proj.", "adaln_single.")) for k in keys)


def convert_diffusers_ltx(state: dict[str, torch.Tensor], *, consume: bool = False) -> dict[str, torch.Tensor]:
    """Map a diffusers LTX-Video transformer state dict onto `LTXDiT` (cross-attention) keys.

    Raises ValueError naming any diffusers key that has no destination, and `FusedShapeError`
    (a ValueError) naming the parts when q, k, v of one attention differ in shape. A block whose q, k
    or v is absent gets no fused tensor (the model's load then names it as missing).
    `consume=True` deletes each q, k, v from `state` once fused, so converting a full-size
    checkpoint holds one extra block's projections at a time, not a second copy of all.
    """
    out, unused = split_diffusers_ltx(state, consume=consume)
    if unused:
        raise ValueError(f"diffusers keys with no LTXDiT destination: {unused[:5]} ({len(unused)} in all).")
    return out


def split_diffusers_ltx(
    state: dict[str, torch.Tensor], *, consume: bool = False
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """`convert_diffusers_ltx` that returns (converted, sorted diffusers keys with no destination)."""
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    if "scale_shift_table" in state:
        out["final_scale_shift"] = state["scale_shift_table"]
        used.add("scale_shift_table")
    for key, value in state.items():
        for src, dst in _RENAMES.items():
            if key.startswith(src):
                out[dst + key[len(src) :]] = value
                used.add(key)
    blocks = sorted({int(m.group(1)) for k in state if (m := re.match(r"transformer_blocks\.(\d+)\.", k))})
    for i in blocks:
        prefix = f"transformer_blocks.{i}."
        for key, value in state.items():
            if not key.startswith(prefix):
                continue
            rest = key[len(prefix) :]
            for src, dst in _BLOCK_RENAMES.items():
                if rest.startswith(src):
                    out[f"blocks.{i}.{dst}{rest[len(src):]}"] = value
                    used.add(key)
        for fused, parts in _FUSED.items():
            for suffix in ("weight", "bias"):
                names = [f"{prefix}{p}.{suffix}" for p in parts]
                present = [n for n in names if n in state]
                used.update(present)
                if len(present) == len(names):
                    shapes = {n: tuple(state[n].shape) for n in names}
                    if len(set(shapes.values())) > 1:  # LTX's q, k, v are alike; torch.cat would name no key
                        raise FusedShapeError(f"blocks.{i}.{fused}.{suffix}", shapes)
                    out[f"blocks.{i}.{fused}.{suffix}"] = torch.cat([state[n] for n in names], dim=0)
                    if consume:
                        for n in names:
                            del state[n]
    return out, sorted(set(state) - used)


_QK_NORMS = {"rms_norm": "rms_across_heads", None: "none"}  # LTX-Video's qk_norm -> ours


def fields_from_original(config: dict) -> dict:
    """The original single file's header `config["transformer"]` (LTX-Video's `Transformer3DModel`
    arguments, with its defaults) -> {our DiTConfig field: value} for the fields it states.

    Raises ConfigError naming a setting our DiT cannot express: a position scheme other than
    RoPE, or `causal_temporal_positioning` (LTX-Video 0.9.5 and later: its pipeline shifts every
    latent frame's time coordinate but the first back by vae_temporal_compression - 1 frames,
    `prepare_conditioning(causal_fix=...)`; our RoPE places latent frame i at i x that factor).
    """
    from models.config import ConfigError

    c = dict(config)
    if c.get("positional_embedding_type", "rope") != "rope":
        raise ConfigError(f"header config positional_embedding_type={c['positional_embedding_type']!r}: our DiT "
                          "has RoPE only.")
    if c.get("causal_temporal_positioning", False):
        raise ConfigError("header config causal_temporal_positioning=true (LTX-Video 0.9.5 and later) shifts the "
                          "frames' RoPE times in a way our DiT cannot express.")
    if c.get("qk_norm") not in _QK_NORMS:
        raise ConfigError(f"header config qk_norm={c['qk_norm']!r}: our DiT has rms_norm or none only.")
    if c.get("adaptive_norm", "single_scale_shift") != "single_scale_shift":
        raise ConfigError(f"header config adaptive_norm={c['adaptive_norm']!r}: our DiT has single_scale_shift only.")
    return dict(
        in_channels=c["in_channels"], num_layers=c.get("num_layers", 1), num_heads=c.get("num_attention_heads", 16),
        head_dim=c.get("attention_head_dim", 88), caption_channels=c["caption_channels"], norm_eps=c.get("norm_eps", 1e-5),
        qk_norm=_QK_NORMS[c.get("qk_norm")],
        timestep_scale=float(c.get("timestep_scale_multiplier") or 1.0),  # None: LTX feeds t unscaled
        rope_theta=float(c["positional_embedding_theta"]),
        rope_max_positions=tuple(float(x) for x in c["positional_embedding_max_pos"]),
    )


def config_from_diffusers(
    diffusers_config: dict, *, vae_temporal_compression: int = 8, vae_spatial_compression: int = 32
) -> "DiTConfig":
    """A diffusers `LTXVideoTransformer3DModel.config` -> the equivalent `DiTConfig`.

    The VAE factors are not part of diffusers' transformer config (its pipeline passes
    them as `rope_interpolation_scale`), so they are arguments here.
    """
    from models.dit.config import DiTConfig

    c = dict(diffusers_config)
    if c.get("patch_size", 1) != 1 or c.get("patch_size_t", 1) != 1:
        raise ValueError("only diffusers checkpoints with patch_size = patch_size_t = 1 convert.")
    hidden = c["num_attention_heads"] * c["attention_head_dim"]
    if c.get("cross_attention_dim", hidden) != hidden:
        raise ValueError("diffusers' LTX cross-attention reads projected captions, so cross_attention_dim must equal the hidden size.")
    return DiTConfig(
        in_channels=c["in_channels"],
        vae_temporal_compression=vae_temporal_compression,
        vae_spatial_compression=vae_spatial_compression,
        num_layers=c["num_layers"],
        num_heads=c["num_attention_heads"],
        head_dim=c["attention_head_dim"],
        caption_channels=c["caption_channels"],
        norm_eps=c.get("norm_eps", 1e-6),
    )
