"""The causal video VAE shared by the `ltx` and `conventional` kinds: config, encoder, decoder.

Mirrors the block sequence of LTX-Video 0.9.1 (arXiv 2501.00103, section 2.1) as
implemented by diffusers' `models/autoencoders/autoencoder_kl_ltx.py`
(`LTXVideoEncoder3d`, `LTXVideoDecoder3d`, `AutoencoderKLLTXVideo`):

  encoder: patchify -> conv_in -> stages [resnets -> strided causal conv -> widening resnet]
           -> mid resnets -> pixel norm -> SiLU -> conv_out (Cz + 1 channels: uniform log-variance)
           (0.9.5: stages [resnets -> space-to-depth downsample that also widens])
  decoder: conv_in -> mid resnets -> stages [widening resnet -> depth-to-space upsample -> resnets]
           -> pixel norm -> AdaLN(timestep) -> SiLU -> conv_out -> unpatchify

The two kinds differ only in their config values (patch size, strides, widths, latent
channels); `models/vae/convert.py` maps diffusers' and the original LTX-Video
checkpoints' weights onto this module.

Per-stage decoder tuples are written pixel side first, as diffusers' config is; the
decoder runs them from the latent side. `decoder_inject_noise` has one more entry than
there are stages, the mid-block's, last (diffusers' `decoder_inject_noise`; its decoder
reverses the tuple and gives the mid-block what is then entry 0). LTX-Video 0.9.1 is
(True, True, True, False), the layout named "ltx_0.9.1": noise in every up-stage, none in
the mid-block.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from models.config import BOOL, LOCAL_PATH, Choice, ConfigError, Either, Int, Seq, Text, declare_ranges
from models.layers import TimestepMLP, timestep_embedding
from models import rng
from models.rng import Generator
from models.vae.blocks import (
    CausalConv3d,
    DepthToSpaceUpsample,
    ResnetBlock3d,
    SpaceToDepthDownsample,
    Triple,
    norm_silu,
    patchify,
    unpatchify,
)

TIMESTEP_SINUSOID_DIM = 256  # LTX's PixArt-style timestep embedder projects a 256-d sinusoid
LOGVAR_RANGE = (-30.0, 20.0)  # clamp of diffusers' DiagonalGaussianDistribution


# decoder noise layouts by name: stage count -> one flag per stage (pixel side first), then the mid-block
NOISE_LAYOUTS = {
    "ltx_0.9.1": lambda stages: (True,) * stages + (False,),  # every up-stage, not the mid-block
    "none": lambda stages: (False,) * (stages + 1),  # 0.9.0; 0.9.5 and later
}


@dataclass(frozen=True, kw_only=True)
class CausalVAEConfig:
    """Fields shared by every causal video VAE kind; subclasses set `kind` and presets."""

    kind: str  # registry name of the VAE family ("ltx", "conventional")
    size: str = "custom"  # preset this config came from (a label; the widths below are what counts)
    in_channels: int = 3  # pixel channels (RGB)
    latent_channels: int = 128  # Cz, channels of the posterior mean
    patch_size: int = 4  # spatial patchify at the VAE input (LTX: 4x4 -> 48 channels)
    encoder_channels: tuple[int, ...] = (128, 256, 512, 512)  # width of each encoder stage's resnets
    encoder_mid_channels: int = 0  # width of the encoder's mid-block; 0 = the last stage's width (0.9.5: 2048)
    encoder_layers: tuple[int, ...] = (4, 3, 3, 3, 4)  # resnets per encoder stage, then the mid-block
    # (t, h, w) stride of each encoder stage's downsampling; (1, 1, 1) = none
    encoder_strides: tuple[tuple[int, int, int], ...] = ((2, 2, 2), (2, 2, 2), (2, 2, 2), (1, 1, 1))
    # "conv": strided causal conv, then a widening resnet (0.9.0/0.9.1); "space_to_depth": a conv
    # rearranged space-to-depth plus an averaged skip, which also widens (0.9.5 and later)
    encoder_downsample: Literal["conv", "space_to_depth"] = "conv"
    decoder_channels: tuple[int, ...] = (256, 512, 1024)  # decoder stage widths before upsampling, pixel side first
    decoder_layers: tuple[int, ...] = (5, 6, 7, 8)  # resnets per decoder stage (pixel side first), then the mid-block
    decoder_strides: tuple[tuple[int, int, int], ...] = ((2, 2, 2), (2, 2, 2), (2, 2, 2))  # (t, h, w), pixel side first
    decoder_upsample_factor: int = 2  # channel divisor of each depth-to-space upsample (0.9.1: 2, 0.9.0: 1)
    decoder_upsample_residual: bool = True  # skip path around each upsample (0.9.1: on)
    decoder_causal: bool = False  # decoder pads time from the past only (LTX: off; the encoder is always causal)
    # "uniform": one predicted log-variance broadcast to all channels (LTX); "per_channel": one each
    logvar: Literal["uniform", "per_channel"] = "uniform"
    decoder_timestep_conditioning: bool = True  # denoising decoder: AdaLN scale/shift from a timestep embedding
    # learned per-channel spatial noise per decoder stage: a layout name from NOISE_LAYOUTS
    # ("ltx_0.9.1": every up-stage, not the mid-block; "none": 0.9.0, 0.9.5 and later), or one
    # flag per stage, pixel side first, then the mid-block (diffusers' `decoder_inject_noise`)
    decoder_inject_noise: str | tuple[bool, ...] = "ltx_0.9.1"
    # an LTX-Video checkpoint to start from (fine-tuning): the original single .safetensors file
    # (`vae.` keys) or diffusers' folder (`vae/` or the folder itself); models/weights.py loads it
    init: str | None = None

    def __post_init__(self) -> None:
        name = type(self).__name__
        if len(self.encoder_layers) != len(self.encoder_channels) + 1:
            raise ConfigError(f"{name}.encoder_layers needs one entry per encoder stage plus one for the mid-block.")
        if len(self.encoder_strides) != len(self.encoder_channels):
            raise ConfigError(f"{name}.encoder_strides needs one (t, h, w) stride per encoder stage.")
        if len(self.decoder_layers) != len(self.decoder_channels) + 1:
            raise ConfigError(f"{name}.decoder_layers needs one entry per decoder stage plus one for the mid-block.")
        if len(self.decoder_strides) != len(self.decoder_channels):
            raise ConfigError(f"{name}.decoder_strides needs one (t, h, w) stride per decoder stage.")
        noise = self.decoder_inject_noise
        if isinstance(noise, str):
            if noise not in NOISE_LAYOUTS:
                raise ConfigError(f"{name}.decoder_inject_noise must be one of {', '.join(map(repr, NOISE_LAYOUTS))} "
                                  f"or one flag per decoder stage plus the mid-block, not {noise!r}.")
        else:
            if any(not isinstance(flag, bool) for flag in noise):
                raise ConfigError(f"{name}.decoder_inject_noise flags must be true or false, not {list(noise)}.")
            if len(noise) != len(self.decoder_channels) + 1:
                raise ConfigError(f"{name}.decoder_inject_noise needs one flag per decoder stage (pixel side first) "
                                  "plus one for the mid-block, last.")
            object.__setattr__(self, "decoder_inject_noise", tuple(noise))  # JSON lists compare equal to tuples
        if self.encoder_downsample == "space_to_depth":
            outs = encoder_stage_widths(self)
            for i, (c, out, s) in enumerate(zip(self.encoder_channels, outs, self.encoder_strides)):
                volume = math.prod(s)
                if volume == 1 and c != out:
                    raise ConfigError(f"{name}: encoder stage {i} widens from {c} to {out} channels without a stride; "
                                      "space-to-depth downsampling widens only where it downsamples.")
                if volume > 1 and (out % volume or (c * volume) % out):
                    raise ConfigError(f"{name}: encoder stage {i} cannot go from {c} to {out} channels by "
                                      f"space-to-depth over {s}; {out} must divide {c * volume} and be a multiple of {volume}.")
        if _total_stride(self.encoder_strides) != _total_stride(self.decoder_strides):
            raise ConfigError(f"{name}: the decoder strides must undo the encoder strides (same product per axis).")
        factor = self.decoder_upsample_factor
        if factor > 1 and any(math.prod(s) == 1 for s in self.decoder_strides):
            raise ConfigError(f"{name}.decoder_upsample_factor > 1 needs every decoder stage to upsample.")
        if any(c % factor or (c * math.prod(s)) % factor for c, s in zip(self.decoder_channels, self.decoder_strides)):
            raise ConfigError(f"{name}.decoder_channels must be divisible by decoder_upsample_factor.")

    @property
    def noise_pattern(self) -> tuple[bool, ...]:
        """`decoder_inject_noise` as one flag per decoder stage, pixel side first, then the mid-block."""
        noise = self.decoder_inject_noise
        return NOISE_LAYOUTS[noise](len(self.decoder_channels)) if isinstance(noise, str) else noise

    @property
    def temporal_compression(self) -> int:
        return _total_stride(self.encoder_strides)[0]

    @property
    def spatial_compression(self) -> int:
        return self.patch_size * _total_stride(self.encoder_strides)[1]

    def build(self) -> "CausalVideoVAE":
        return CausalVideoVAE(self)


_STRIDES = Seq(Seq(Int(1, 8), 3, 3), 1, 8)  # (t, h, w) per stage
declare_ranges(CausalVAEConfig, {
    "size": Text(pattern=r"[\w.\-]+", meaning="a preset label such as tiny, small, full or 0.9.1"),
    "in_channels": Int(1, 16), "latent_channels": Int(1, 4096), "patch_size": Int(1, 16),
    "encoder_channels": Seq(Int(1, 8192), 1, 8), "encoder_mid_channels": Int(0, 8192),
    "encoder_layers": Seq(Int(0, 64), 2, 9), "encoder_strides": _STRIDES,
    "decoder_channels": Seq(Int(1, 8192), 1, 8), "decoder_layers": Seq(Int(0, 64), 2, 9),
    "decoder_strides": _STRIDES, "decoder_upsample_factor": Int(1, 8),
    "decoder_inject_noise": Either((Choice(tuple(NOISE_LAYOUTS)), Seq(BOOL, 2, 9))), "init": LOCAL_PATH,
})  # `kind` is each subclass's Literal, which declares itself


def encoder_stage_widths(cfg: CausalVAEConfig) -> tuple[int, ...]:
    """Output width of each encoder stage: the next stage's width, the mid-block's after the last."""
    widths = cfg.encoder_channels
    mid = cfg.encoder_mid_channels or widths[-1]
    return tuple(widths[i + 1] if i + 1 < len(widths) else mid for i in range(len(widths)))


def _total_stride(strides: tuple[Triple, ...]) -> Triple:
    return tuple(math.prod(s[i] for s in strides) for i in range(3))  # type: ignore[return-value]


class EncoderStage(nn.Module):
    """Resnets at `channels`, then an optional downsample, then (conv downsampling) a widening resnet.

    `downsample="conv"` is a strided causal conv; `"space_to_depth"` is LTX-Video 0.9.5's
    `SpaceToDepthDownsample`, which widens to `out_channels` itself.
    """

    def __init__(self, channels: int, out_channels: int, layers: int, stride: Triple, downsample: str = "conv") -> None:
        super().__init__()
        self.resnets = nn.ModuleList(ResnetBlock3d(channels, channels) for _ in range(layers))
        self.downsample: nn.Module | None = None
        self.widen = None
        if downsample == "space_to_depth":
            if math.prod(stride) > 1:
                self.downsample = SpaceToDepthDownsample(channels, out_channels, stride)
            return
        if math.prod(stride) > 1:
            self.downsample = CausalConv3d(channels, channels, 3, stride=stride)
        self.widen = ResnetBlock3d(channels, out_channels) if out_channels != channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) -> (B, Cout, T', H', W')."""
        for resnet in self.resnets:
            x = resnet(x)
        if self.downsample is not None:
            x = self.downsample(x)
        if self.widen is not None:
            x = self.widen(x)
        return x


class Encoder(nn.Module):
    """Video (B, 3, T, H, W) -> posterior parameters (B, Cz + 1 or 2 Cz, t, h, w)."""

    def __init__(self, cfg: CausalVAEConfig) -> None:
        super().__init__()
        self.patch_size = cfg.patch_size
        widths, outs = cfg.encoder_channels, encoder_stage_widths(cfg)
        self.conv_in = CausalConv3d(cfg.in_channels * cfg.patch_size**2, widths[0], 3)
        self.stages = nn.ModuleList(
            EncoderStage(widths[i], outs[i], cfg.encoder_layers[i], cfg.encoder_strides[i], cfg.encoder_downsample)
            for i in range(len(widths))
        )
        self.mid = EncoderStage(outs[-1], outs[-1], cfg.encoder_layers[-1], (1, 1, 1))
        out = cfg.latent_channels + 1 if cfg.logvar == "uniform" else 2 * cfg.latent_channels
        self.conv_out = CausalConv3d(outs[-1], out, 3)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) -> (B, Cout, t, h, w)."""
        x = self.conv_in(patchify(video, self.patch_size))
        for stage in self.stages:
            x = stage(x)
        x = self.mid(x)
        return self.conv_out(norm_silu(x))


class DecoderStage(nn.Module):
    """Optional widening resnet, optional depth-to-space upsample, then resnets.

    With `factor` > 1 the upsample also divides the width, so the resnets (and the
    stage's timestep embedder) run at `channels // factor`.
    """

    def __init__(
        self, in_channels: int, channels: int, layers: int, stride: Triple, cfg: CausalVAEConfig, noise: bool
    ) -> None:
        super().__init__()
        causal = cfg.decoder_causal
        upsamples = math.prod(stride) > 1
        width = channels // cfg.decoder_upsample_factor if upsamples else channels
        # diffusers' LTX decoder feeds the widening resnet the raw timestep, so it is never conditioned
        self.widen = ResnetBlock3d(in_channels, channels, causal=causal) if in_channels != channels else None
        self.upsample = None
        if upsamples:
            residual, factor = cfg.decoder_upsample_residual, cfg.decoder_upsample_factor
            self.upsample = DepthToSpaceUpsample(channels, stride, residual=residual, factor=factor, causal=causal)
        conditioned = cfg.decoder_timestep_conditioning
        self.time_embed = TimestepMLP(TIMESTEP_SINUSOID_DIM, 4 * width) if conditioned else None
        self.resnets = nn.ModuleList(
            ResnetBlock3d(width, width, causal=causal, timestep_conditioning=conditioned, noise_injection=noise)
            for _ in range(layers)
        )
        self.out_channels = width

    def forward(
        self, x: torch.Tensor, sinusoid: torch.Tensor | None, generator: Generator
    ) -> torch.Tensor:
        """x (B, Cin, t, h, w), sinusoid (B, 256) when conditioned -> (B, C', t', h', w')."""
        if self.widen is not None:
            x = self.widen(x)
        if self.upsample is not None:
            x = self.upsample(x)
        emb = self.time_embed(sinusoid) if self.time_embed is not None else None  # (B, 4C)
        for resnet in self.resnets:
            x = resnet(x, emb, generator)
        return x


class Decoder(nn.Module):
    """Latents (B, Cz, t, h, w) -> video (B, 3, T, H, W)."""

    def __init__(self, cfg: CausalVAEConfig) -> None:
        super().__init__()
        self.patch_size = cfg.patch_size
        n = len(cfg.decoder_channels)
        # execution order runs from the latent side: reverse the pixel-side-first config tuples
        widths = cfg.decoder_channels[::-1]
        layers = cfg.decoder_layers[::-1]  # mid-block first
        strides = cfg.decoder_strides[::-1]
        noisy = cfg.noise_pattern[::-1]  # mid-block first, then the stages from the latent side
        self.conv_in = CausalConv3d(cfg.latent_channels, widths[0], 3, causal=cfg.decoder_causal)
        self.mid = DecoderStage(widths[0], widths[0], layers[0], (1, 1, 1), cfg, noisy[0])
        stages, channels = [], widths[0]
        for i in range(n):
            stages.append(DecoderStage(channels, widths[i], layers[i + 1], strides[i], cfg, noisy[i + 1]))
            channels = stages[-1].out_channels
        self.stages = nn.ModuleList(stages)
        self.conv_out = CausalConv3d(channels, cfg.in_channels * cfg.patch_size**2, 3, causal=cfg.decoder_causal)
        self.timestep_scale: nn.Parameter | None = None
        self.time_embed: TimestepMLP | None = None
        self.scale_shift_table: nn.Parameter | None = None
        if cfg.decoder_timestep_conditioning:
            # a learned multiplier (LTX inits it at 1000) maps t in [0, 1] to the sinusoid's range
            self.timestep_scale = nn.Parameter(torch.tensor(1000.0))
            self.time_embed = TimestepMLP(TIMESTEP_SINUSOID_DIM, 2 * channels)
            self.scale_shift_table = nn.Parameter(torch.randn(2, channels) / channels**0.5)

    def forward(
        self, z: torch.Tensor, timestep: torch.Tensor | None = None, generator: Generator = None
    ) -> torch.Tensor:
        """z (B, Cz, t, h, w), timestep (B,) -> (B, 3, T, H, W), in the decoder's dtype."""
        x = self.conv_in(z.to(self.conv_in.weight.dtype))  # fp32 latents into a bf16 decoder
        sinusoid = None
        if self.timestep_scale is not None:
            if timestep is None:
                timestep = torch.zeros(z.shape[0], device=z.device)  # clean latents
            timestep = torch.as_tensor(timestep, device=z.device).float().reshape(-1).expand(z.shape[0])  # (B,)
            scaled = timestep * self.timestep_scale  # (B,)
            sinusoid = timestep_embedding(scaled, TIMESTEP_SINUSOID_DIM).to(x.dtype)  # (B, 256)
        x = self.mid(x, sinusoid, generator)
        for stage in self.stages:
            x = stage(x, sinusoid, generator)
        shift = scale = None
        if self.time_embed is not None:
            table = self.time_embed(sinusoid).unflatten(1, (2, -1)) + self.scale_shift_table[None]  # (B, 2, C)
            shift, scale = table[..., None, None, None].unbind(1)  # (B, C, 1, 1, 1) each
        x = self.conv_out(norm_silu(x, shift, scale))
        return unpatchify(x, self.patch_size)


class CausalVideoVAE(nn.Module):
    """KL video autoencoder with a causal encoder; see the module docstring for the layout.

    Video is (B, 3, T, H, W) in [-1, 1] with T = 1 + k * temporal_compression and H, W
    multiples of `spatial_compression`; latents are (B, Cz, 1 + k, H / s, W / s).
    """

    def __init__(self, cfg: CausalVAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.temporal_compression = cfg.temporal_compression
        self.spatial_compression = cfg.spatial_compression
        self.latent_channels = cfg.latent_channels
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        # per-channel latent statistics for the diffusion model, filled in after training
        self.register_buffer("latents_mean", torch.zeros(cfg.latent_channels))
        self.register_buffer("latents_std", torch.ones(cfg.latent_channels))

    def check_video_shape(self, video: torch.Tensor) -> None:
        _, _, t, h, w = video.shape
        tc, sc = self.temporal_compression, self.spatial_compression
        if (t - 1) % tc or h % sc or w % sc:
            raise ValueError(
                f"video of {t}x{h}x{w} (frames x height x width) does not fit this VAE; "
                f"use 1 + {tc}k frames and height/width multiples of {sc}."
            )

    def encode(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, T, H, W) -> mean, logvar, each (B, Cz, t, h, w); logvar clamped to [-30, 20]."""
        self.check_video_shape(video)
        params = self.encoder(video)
        cz = self.latent_channels
        mean = params[:, :cz]
        if self.cfg.logvar == "uniform":
            logvar = params[:, cz:].expand_as(mean)  # one predicted channel broadcast to all Cz (LTX)
        else:
            logvar = params[:, cz:]
        return mean, logvar.clamp(*LOGVAR_RANGE)

    def decode(
        self, z: torch.Tensor, timestep: torch.Tensor | None = None, generator: Generator = None
    ) -> torch.Tensor:
        """(B, Cz, t, h, w) -> (B, 3, T, H, W); `timestep` (B,) only matters when conditioned.

        A conditioned decoder given no timestep decodes at t = 0. Injected noise is drawn
        from `generator` (or the global RNG).
        """
        return self.decoder(z, timestep, generator)

    def forward(
        self,
        video: torch.Tensor,
        sample_posterior: bool = True,
        generator: Generator = None,
        timestep: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, 3, T, H, W) -> reconstruction (B, 3, T, H, W), mean, logvar (B, Cz, t, h, w)."""
        mean, logvar = self.encode(video)
        z = mean
        if sample_posterior:
            eps = rng.randn(mean.shape, generator, mean)
            z = mean + torch.exp(0.5 * logvar) * eps
        return self.decode(z, timestep, generator), mean, logvar

    def normalize_latents(self, z: torch.Tensor) -> torch.Tensor:
        """(B, Cz, t, h, w) -> per-channel standardised latents for the diffusion model."""
        return (z - self.latents_mean[:, None, None, None]) / self.latents_std[:, None, None, None]

    def denormalize_latents(self, z: torch.Tensor) -> torch.Tensor:
        """Inverse of `normalize_latents`."""
        return z * self.latents_std[:, None, None, None] + self.latents_mean[:, None, None, None]
