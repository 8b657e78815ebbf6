"""Reconstruction GAN (LTX-Video, arXiv 2501.00103, §2.1 "Reconstruction GAN").

The discriminator sees the original and its reconstruction TOGETHER, concatenated along
channels in a random order per sample, and must say which half is the original. The
judgement is relative (which of the two is real), which LTX-Video found to train more
stably at high compression than a discriminator that judges each video alone.

Loss (hinge on the ordering): with y = +1 when the original comes first and -1 when it
comes second, the discriminator minimises mean(relu(1 - y * D(pair))); the generator
minimises mean(y * D(pair)), i.e. it lowers the discriminator's margin for the true order.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from models import rng
from models.losses.base import LOSSES, LossInputs, LossTerm
from models.losses.discriminator import AdversarialTerm


def rgan_pairs(video: Tensor, recon: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Stack (original, reconstruction) along channels in a random order per sample.

    Args:
        video, recon: (B, C, T, H, W) each.
        generator: optional torch.Generator for the order draw (on video's device).

    Returns:
        pairs (B, 2C, T, H, W) and labels (B,) in video's dtype: +1 where the original is
        the first C channels, -1 where the reconstruction is.
    """
    batch = video.shape[0]
    original_first = rng.rand(batch, generator, video.device) < 0.5  # (B,)
    mask = original_first.view(batch, 1, 1, 1, 1)  # (B, 1, 1, 1, 1) broadcasts over C, T, H, W
    first = torch.where(mask, video, recon)
    second = torch.where(mask, recon, video)
    labels = original_first.to(video.dtype) * 2.0 - 1.0  # (B,) in {-1, +1}
    return torch.cat([first, second], dim=1), labels


def rgan_discriminator_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Hinge loss on the ordering: logits (B, 1, t, h, w), labels (B,) in {-1, +1} -> scalar."""
    signed = logits * labels.view(-1, *([1] * (logits.ndim - 1)))  # (B, 1, t, h, w) margin for the true order
    return F.relu(1.0 - signed).mean()


def rgan_generator_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Generator side: mean(label * logit), the discriminator's margin for the true order -> scalar."""
    return (logits * labels.view(-1, *([1] * (logits.ndim - 1)))).mean()


@LOSSES.register("rgan")
class ReconstructionGANLoss(AdversarialTerm, LossTerm):
    """Reconstruction GAN: a PatchGAN on (original, reconstruction) pairs in random order."""

    disc_in_channels = 6

    def forward(self, inp: LossInputs) -> Tensor:
        pairs, labels = rgan_pairs(inp.video, inp.recon, inp.rng)
        return rgan_generator_loss(self.discriminator(pairs), labels)

    def discriminator_loss(self, inp: LossInputs) -> Tensor:
        # detach again: a caller who forgets must not push the discriminator's gradient into the VAE
        pairs, labels = rgan_pairs(inp.video, inp.recon.detach(), inp.rng)
        return rgan_discriminator_loss(self.discriminator(pairs), labels)
