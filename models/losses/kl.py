"""KL divergence of the VAE's diagonal Gaussian posterior to the standard normal prior."""

from __future__ import annotations

import torch
from torch import Tensor

from models.losses.base import LOSSES, LossInputs, LossTerm


def kl_loss(mean: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mean, exp(logvar)) || N(0, I)), averaged over every latent element -> scalar.

    Args:
        mean: (B, Cz, t, h, w) posterior mean.
        logvar: (B, Cz, t, h, w) posterior log-variance (broadcast to mean's shape).

    The mean over elements (not the sum) keeps the weight independent of the latent size,
    so one `kl` weight means the same for the 128-channel and the 16-channel VAE.
    """
    return 0.5 * torch.mean(mean.pow(2) + logvar.exp() - 1.0 - logvar)


@LOSSES.register("kl")
class KLLoss(LossTerm):
    """KL of the posterior (`inp.mean`, `inp.logvar`) to N(0, I)."""

    def forward(self, inp: LossInputs) -> Tensor:
        return kl_loss(inp.mean, inp.logvar.expand_as(inp.mean))
