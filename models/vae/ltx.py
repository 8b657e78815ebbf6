"""The `ltx` VAE: LTX-Video 0.9.1's causal video autoencoder and its presets.

LTX-Video (arXiv 2501.00103, section 2.1) moves patchifying from the transformer input
to the VAE input: a 4x4 pixel patchify, three stride-2 space-time stages and 128
latent channels give 32x32x8 pixels per latent (1:192), so the DiT can use a 1x1x1
patch. The `full` preset is the 0.9.1 VAE as configured in diffusers'
`scripts/convert_ltx_to_diffusers.py` (`get_vae_config("0.9.1")`); the `0.9.0`, `0.9.1`
and `0.9.5` presets are that function's configs of those releases (0.9.7's VAE config is
0.9.5's). Their weights load through `models/vae/convert.py` and `models/weights.py`
(`vae.init`). The module itself lives in `models/vae/autoencoder.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from models.config import ConfigError
from models.vae.autoencoder import CausalVAEConfig

SIZES = ("tiny", "small", "full")  # the sizes every VAE kind has; ltx also has its release presets
RELEASES = ("0.9.0", "0.9.1", "0.9.5")  # LTX-Video VAE releases with a preset of their own


@dataclass(frozen=True, kw_only=True)
class LTXVAEConfig(CausalVAEConfig):
    """LTX-Video's VAE; every default is the published 0.9.1 `full` model."""

    kind: Literal["ltx"] = "ltx"  # registry name

    @classmethod
    def preset(cls, size: str) -> "LTXVAEConfig":
        """`tiny` (CPU tests, minutes to train), `small`, `full` (0.9.1), or a release: `0.9.0`, `0.9.1`, `0.9.5`."""
        return cls(size=size, **preset_fields(LTX_PRESETS, size))


def preset_fields(presets: dict[str, dict[str, Any]], size: str) -> dict[str, Any]:
    if size not in presets:
        raise ConfigError(f"Unknown VAE size '{size}'; use one of {', '.join(presets)}.")
    return presets[size]


LTX_PRESETS: dict[str, dict[str, Any]] = {
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
    "full": {},  # the dataclass defaults are LTX-Video 0.9.1
    # diffusers' scripts/convert_ltx_to_diffusers.py, get_vae_config(version)
    "0.9.0": dict(
        decoder_channels=(128, 256, 512, 512),
        decoder_layers=(4, 3, 3, 3, 4),
        decoder_strides=((2, 2, 2), (2, 2, 2), (2, 2, 2), (1, 1, 1)),
        decoder_upsample_factor=1,
        decoder_upsample_residual=False,
        decoder_timestep_conditioning=False,
        decoder_inject_noise="none",
    ),
    "0.9.1": {},
    "0.9.5": dict(  # space-to-depth encoder to 2048 channels, no decoder noise
        encoder_channels=(128, 256, 512, 1024),
        encoder_mid_channels=2048,
        encoder_layers=(4, 6, 6, 2, 2),
        encoder_strides=((1, 2, 2), (2, 1, 1), (2, 2, 2), (2, 2, 2)),
        encoder_downsample="space_to_depth",
        decoder_layers=(5, 5, 5, 5),
        decoder_inject_noise="none",
    ),
}
