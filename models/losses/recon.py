"""Pixel reconstruction losses: L1 and MSE between the target video and the reconstruction."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from models.losses.base import LOSSES, LossInputs, LossTerm


def l1_loss(recon: Tensor, video: Tensor) -> Tensor:
    """Mean absolute error over all elements of two equal-shape tensors -> scalar."""
    return F.l1_loss(recon, video)


def mse_loss(recon: Tensor, video: Tensor) -> Tensor:
    """Mean squared error over all elements of two equal-shape tensors -> scalar."""
    return F.mse_loss(recon, video)


@LOSSES.register("l1")
class L1Loss(LossTerm):
    """Pixel L1 between `inp.recon` and `inp.video`."""

    def forward(self, inp: LossInputs) -> Tensor:
        return l1_loss(inp.recon, inp.video)


@LOSSES.register("mse")
class MSELoss(LossTerm):
    """Pixel MSE between `inp.recon` and `inp.video`."""

    def forward(self, inp: LossInputs) -> Tensor:
        return mse_loss(inp.recon, inp.video)
