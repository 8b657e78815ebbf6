"""Hinge GAN loss with a 3D PatchGAN discriminator that judges one video at a time.

The hinge form follows SAGAN / taming-transformers' `hinge_d_loss`: the discriminator
pushes real logits above +1 and fake logits below -1, the generator raises the logits of
its reconstructions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from models.losses.base import LOSSES, LossInputs, LossTerm
from models.losses.discriminator import AdversarialTerm


def hinge_discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Hinge loss of the discriminator: mean(relu(1 - real)) + mean(relu(1 + fake)) -> scalar."""
    return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()


def hinge_generator_loss(fake_logits: Tensor) -> Tensor:
    """Generator side of the hinge GAN: -mean(fake logits) -> scalar."""
    return -fake_logits.mean()


@LOSSES.register("gan")
class GANLoss(AdversarialTerm, LossTerm):
    """Hinge GAN on single videos; the discriminator is this module's only parameter set."""

    disc_in_channels = 3

    def forward(self, inp: LossInputs) -> Tensor:
        return hinge_generator_loss(self.discriminator(inp.recon))

    def discriminator_loss(self, inp: LossInputs) -> Tensor:
        # both videos in one batch: one conv pass, and GroupNorm sees each sample on its own
        # detach again: a caller who forgets must not push the discriminator's gradient into the VAE
        logits = self.discriminator(torch.cat([inp.video, inp.recon.detach()], dim=0))  # (2B, 1, t, h, w)
        real, fake = logits.chunk(2, dim=0)
        return hinge_discriminator_loss(real, fake)
