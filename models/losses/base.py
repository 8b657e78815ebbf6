"""The contract between the VAE training step and its loss terms.

Composer-style: every term is a pure function of tensors (in its own file) plus a thin
registered `LossTerm` wrapper. The training step builds the active terms from a
`VAELossConfig` with `build_loss_terms`, calls each term on one `LossInputs`, and weights
the unweighted scalars with `weight_fields(cfg)`. A term's weight field in the config has
the same name as its registry entry, and a test checks that the two sets are equal, so a
new loss cannot be added without a config weight (and vice versa).

Adversarial terms own a discriminator and need their own optimizer over
`term.parameters()`. The generator-side `forward` back-propagates into the discriminator's
parameters too, so the caller zeroes the discriminator's gradients before its step
(`disc_opt.zero_grad()` then `term.discriminator_loss(inp_with_detached_recon).backward()`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from models.config import ADAM_BETAS, LEARNING_RATE, STEPS, Int, Real, Seq, declare_ranges
from models.registry import Registry
from models import rng


@dataclass
class LossInputs:
    """Everything a loss term may look at for one training batch."""

    video: Tensor  # (B, 3, T, H, W) target in [-1, 1]
    recon: Tensor  # (B, 3, T, H, W) decoder output from the posterior sample
    mean: Tensor  # (B, Cz, t, h, w) posterior mean
    logvar: Tensor  # (B, Cz, t, h, w) posterior log-variance (already broadcast)
    denoised: Tensor | None = None  # (B, 3, T, H, W) decoder output from (1-t) z + t eps; diffusion term only
    rng: Any = None  # models.rng draw source for terms that draw (rgan's pair order); None: the global RNG


class LossTerm(nn.Module):
    """One registered loss term; `forward` returns an UNWEIGHTED scalar for the generator (VAE) side."""

    adversarial: ClassVar[bool] = False  # owns a discriminator trained by its own optimizer
    needs_denoised: ClassVar[bool] = False  # reads `LossInputs.denoised`

    @classmethod
    def from_config(cls, cfg: "VAELossConfig") -> "LossTerm":
        """Build the term from the loss config (terms without settings ignore it)."""
        return cls()

    def forward(self, inp: LossInputs) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def discriminator_loss(self, inp: LossInputs) -> Tensor:
        """Discriminator-side loss (adversarial terms only); the caller passes a detached `recon`."""
        raise TypeError(f"{type(self).__name__} is not adversarial and has no discriminator loss.")

    def is_active(self, step: int) -> bool:
        """Whether the term contributes at optimizer step `step` (GANs start late)."""
        return True


LOSSES: Registry[type[LossTerm]] = Registry("loss")


def _weight(default: float, comment: str) -> float:
    # metadata marks the field as a loss weight; `weight_fields` and the registry test read it
    return field(default=default, metadata={"loss_weight": True, "doc": comment})


@dataclass(frozen=True, kw_only=True)
class VAELossConfig:
    """Weights and settings of the VAE training losses. Every weight field is named as its LOSSES entry."""

    # --- weights (0 turns a term off; each name is a LOSSES registry name) ---
    l1: float = _weight(1.0, "pixel L1 between video and recon")
    mse: float = _weight(0.0, "pixel MSE between video and recon")
    kl: float = _weight(1e-6, "KL of the diagonal Gaussian posterior to N(0, I); tiny, as in LTX-Video")
    dwt: float = _weight(0.0, "L1 between 3D Haar sub-bands (LTX-Video §2.1 video-DWT loss)")
    gan: float = _weight(0.0, "hinge GAN: the discriminator judges one video at a time")
    rgan: float = _weight(0.0, "reconstruction GAN (LTX-Video §2.1): judges (original, recon) pairs")
    diffusion: float = _weight(0.0, "denoising-decoder objective on decode((1-t) z + t eps)")
    # --- denoising decoder ---
    diffusion_max_t: float = 0.2  # t ~ U[0, diffusion_max_t] for the denoising-decoder objective (LTX-Video §2.2)
    diffusion_distance: Literal["l1", "mse"] = "l1"  # distance between the denoised decode and the video
    # --- discriminators (gan and rgan) ---
    disc_channels: int = 16  # discriminator width (channels of its first conv; doubles per layer)
    disc_layers: int = 3  # strided conv layers of the PatchGAN discriminator (receptive field grows with it)
    disc_lr: float = 1e-4  # learning rate of the discriminator's own Adam optimizer
    disc_betas: tuple[float, float] = (0.5, 0.9)  # Adam betas for the discriminator (GAN-usual low beta1)
    gan_start_step: int = 0  # optimizer step at which adversarial terms switch on (let recon settle first)
    # --- video-DWT loss ---
    # per-band multipliers of the DWT loss, LLL ... HHH (first letter = time; models/losses/dwt.py);
    # 1.0 keeps a band's part of the equal-weight loss. A preset name is accepted and stored as
    # its weights: "equal" (the default, the loss as published) or "detail" (LLL off)
    dwt_bands: tuple[float, ...] = (1.0,) * 8

    def __post_init__(self) -> None:
        from models.config import ConfigError
        from models.losses.dwt import resolve_band_weights  # function-local: dwt.py imports this module

        try:
            object.__setattr__(self, "dwt_bands", resolve_band_weights(self.dwt_bands))
        except ValueError as exc:
            raise ConfigError(f"loss.dwt_bands: {exc}") from None


_WEIGHT = Real(0.0, 1e6)  # 0 turns a term off; negative weights would reward the error
declare_ranges(VAELossConfig, {
    **{f.name: _WEIGHT for f in dataclasses.fields(VAELossConfig) if f.metadata.get("loss_weight")},
    "diffusion_max_t": Real(0.0, 1.0, open_lo=True), "disc_channels": Int(1, 4096), "disc_layers": Int(1, 12),
    "disc_lr": LEARNING_RATE, "disc_betas": ADAM_BETAS, "gan_start_step": Int(0, STEPS.hi),
    "dwt_bands": Seq(Real(0.0, 1e6), 8, 8),
})


def weight_fields(cfg: VAELossConfig) -> dict[str, float]:
    """The registry-named weight fields of `cfg`: {loss name: weight}."""
    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.metadata.get("loss_weight")}


def build_loss_terms(cfg: VAELossConfig) -> nn.ModuleDict:
    """The terms with weight > 0, built from `cfg` and keyed by registry name."""
    import models.losses  # noqa: F401  - registers every term

    terms = nn.ModuleDict()
    for name, weight in weight_fields(cfg).items():
        if weight < 0:
            raise ValueError(f"Loss weight '{name}' is {weight}; weights must be >= 0 (0 turns the term off).")
        if weight > 0:
            terms[name] = LOSSES.get(name).from_config(cfg)
    return terms


def sample_decoder_noise(
    z: Tensor, max_t: float, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Noise a latent for the denoising decoder: ((1 - t) z + t eps, t).

    Args:
        z: (B, Cz, t, h, w) latent (posterior sample).
        max_t: t is drawn per sample from U[0, max_t] (LTX-Video trains the decoder at t <= 0.2).
        generator: optional torch.Generator for reproducible draws (on z's device).

    Returns:
        noisy (B, Cz, t, h, w) and t (B,), both in z's dtype.
    """
    if not 0.0 <= max_t <= 1.0:
        raise ValueError(f"max_t must lie in [0, 1], got {max_t}.")
    batch = z.shape[0]
    t = rng.rand(batch, generator, z.device).to(z.dtype) * max_t  # (B,)
    eps = rng.randn(z.shape, generator, z)
    t_b = t.view(batch, *([1] * (z.ndim - 1)))  # (B, 1, 1, 1, 1) to broadcast over the latent
    return (1.0 - t_b) * z + t_b * eps, t
