"""The `conventional` VAE: 8x8x4 compression to 16 channels (1:48), no patchify at its input.

This is the "patchify at the transformer input" side of the patchifier-placement
ablation (docs/design.md, Presets): paired with a 4x4x2 transformer patch it gives the same 8192
pixels per token as the `ltx` VAE with a 1x1x1 patch. Its compression follows the
common video-VAE recipe (CogVideoX, HunyuanVideo: 8x spatial, 4x temporal, 16
channels) while reusing LTX-Video's building blocks (causal conv3d resnets with pixel
norm, depth-to-space upsampling) and the same switches, so only placement differs.
Spatial downsampling starts at full resolution, temporal downsampling in the later
two stages (as CogVideoX compresses time in its deeper blocks).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from models.vae.autoencoder import CausalVAEConfig
from models.vae.ltx import preset_fields


@dataclass(frozen=True, kw_only=True)
class ConventionalVAEConfig(CausalVAEConfig):
    """8x8x4 causal video VAE with 16 latent channels; defaults are the `full` preset."""

    kind: Literal["conventional"] = "conventional"  # registry name
    latent_channels: int = 16  # Cz: 8*8*4*3 / 16 = 1:48
    patch_size: int = 1  # no pixel patchify: the transformer patchifies (4x4x2) instead
    encoder_strides: tuple[tuple[int, int, int], ...] = ((1, 2, 2), (2, 2, 2), (2, 2, 2), (1, 1, 1))  # (t, h, w)
    decoder_strides: tuple[tuple[int, int, int], ...] = ((1, 2, 2), (2, 2, 2), (2, 2, 2))  # pixel side first

    @classmethod
    def preset(cls, size: str) -> "ConventionalVAEConfig":
        """`tiny` (CPU tests), `small`, `full` (LTX 0.9.1 widths on this layout)."""
        return cls(size=size, **preset_fields(CONVENTIONAL_PRESETS, size))


CONVENTIONAL_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(
        encoder_channels=(8, 16, 32, 32),
        encoder_layers=(1, 1, 1, 1, 1),
        decoder_channels=(16, 32, 64),
        decoder_layers=(1, 1, 1, 1),
    ),
    "small": dict(
        encoder_channels=(64, 128, 256, 256),
        encoder_layers=(2, 2, 2, 2, 2),
        decoder_channels=(128, 256, 512),
        decoder_layers=(2, 3, 3, 4),
    ),
    "full": {},
}
