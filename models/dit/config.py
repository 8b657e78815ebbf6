"""The DiT config: LTX-Video's transformer widths plus the design switches under ablation.

Field names and defaults mirror diffusers' `LTXVideoTransformer3DModel()` default config
(28 layers, 32 heads x 64, caption channels 4096, GELU-tanh FFN 4x, RMSNorm eps 1e-6),
which is the published LTX-Video 2B transformer.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Literal

from models.config import LOCAL_PATH, Choice, Int, Real, Seq, declare_ranges
from models.dit.patch import patch_sizes

if TYPE_CHECKING:
    from torch import nn


@dataclasses.dataclass(kw_only=True, frozen=True)
class DiTConfig:
    kind: str = "ltx_dit"  # registry name in models.dit.DITS
    # -- the VAE this transformer pairs with
    in_channels: int = 128  # latent channels of the VAE
    vae_temporal_compression: int = 8  # pixel frames per latent frame (RoPE time = index x this / fps)
    vae_spatial_compression: int = 32  # pixels per latent pixel (RoPE space = index x this)
    # -- design switches (models.config.switch_values enumerates these)
    patch: Literal["1x1x1", "2x2x1", "4x4x2"] = "1x1x1"  # transformer-input patch, h x w x t
    text_conditioning: Literal["cross_attention", "mmdit"] = "cross_attention"  # LTX cross-attn or SD3 joint attn
    qk_norm: Literal["none", "rms_across_heads"] = "rms_across_heads"  # RMSNorm over the full inner dim of q, k
    rope: Literal["on", "off"] = "on"  # 3D RoPE on self-attention q, k (off: no position signal at all)
    rope_spacing: Literal["exp", "exp_2", "linear", "sqrt"] = "exp"  # LTX's frequency spacings, see models/dit/rope.py
    rope_scaling: Literal["none", "reference_extent"] = "none"  # stretch positions so a clip turns as rope_reference_shape does (rope.py)
    match_params: bool = False  # mmdit only: narrow its FFNs to within 2% of the cross-attention model's parameters
    # -- widths
    num_layers: int = 28  # transformer blocks
    num_heads: int = 32  # attention heads
    head_dim: int = 64  # channels per head; hidden size = num_heads * head_dim
    ffn_mult: int = 4  # feed-forward hidden = ffn_mult * hidden (GELU-tanh)
    caption_channels: int = 4096  # text encoder width (T5-XXL 4096; MiniLM 384)
    max_text_tokens: int = 128  # caption length the encoder pads to (LTX pads T5 to 128); used by describe
    # -- numerics
    norm_eps: float = 1e-6  # RMSNorm eps of the blocks (the q/k norms use 1e-5 as diffusers)
    timestep_scale: float = 1000.0  # flow time t in [0, 1] is multiplied by this before the sinusoid (diffusers)
    rope_theta: float = 10000.0  # RoPE base
    rope_max_positions: tuple[float, float, float] = (20.0, 2048.0, 2048.0)  # seconds-ish, px, px normalisers
    rope_reference_shape: tuple[int, int, int] = (121, 512, 768)  # pixel frames x height x width rope_scaling maps onto
    # -- weights
    # an LTX-Video checkpoint to start from (fine-tuning): the original single .safetensors file
    # (`model.diffusion_model.` keys) or diffusers' folder (`transformer/` or the folder itself)
    init: str | None = None

    def __post_init__(self) -> None:
        patch_sizes(self.patch)  # validates the string form

    @property
    def hidden(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def patch_channels(self) -> int:
        """Features per token entering the patch embedding: in_channels x pt x ph x pw."""
        pt, ph, pw = patch_sizes(self.patch)
        return self.in_channels * pt * ph * pw

    def build(self) -> "nn.Module":
        from models.dit.transformer import LTXDiT

        return LTXDiT(self)


def _dit_kinds() -> list[str]:
    from models.dit import DITS

    return DITS.names()


declare_ranges(DiTConfig, {
    "kind": Choice(names=_dit_kinds), "in_channels": Int(1, 4096), "vae_temporal_compression": Int(1, 64),
    "vae_spatial_compression": Int(1, 512), "num_layers": Int(1, 256), "num_heads": Int(1, 256),
    "head_dim": Int(2, 1024, step=2), "ffn_mult": Int(1, 64), "caption_channels": Int(1, 16_384),
    "max_text_tokens": Int(1, 4096), "norm_eps": Real(0.0, 1.0, open_lo=True),
    "timestep_scale": Real(0.0, 1e6, open_lo=True), "rope_theta": Real(1.0, 1e9, open_lo=True),
    "rope_max_positions": Seq(Real(0.0, 1e9, open_lo=True), 3, 3), "rope_reference_shape": Seq(Int(1, 100_000), 3, 3),
    "init": LOCAL_PATH,
})
