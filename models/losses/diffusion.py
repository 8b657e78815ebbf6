"""The denoising decoder's diffusion objective (LTX-Video §2.2, "shared diffusion objective").

LTX-Video's decoder performs the last denoising step: during VAE training the latent is
noised as `(1 - t) z + t eps` with t ~ U[0, 0.2] (`sample_decoder_noise`), the decoder
is conditioned on t, and its output is pulled towards the clean video. The training step
decodes the noised latent and passes the result as `LossInputs.denoised`.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from models.losses.base import LOSSES, LossInputs, LossTerm, VAELossConfig


def diffusion_loss(denoised: Tensor, video: Tensor, distance: str = "l1") -> Tensor:
    """Distance between the decode of a noised latent and the clean video, both (B, 3, T, H, W) -> scalar."""
    if distance == "l1":
        return F.l1_loss(denoised, video)
    if distance == "mse":
        return F.mse_loss(denoised, video)
    raise ValueError(f"diffusion distance must be 'l1' or 'mse', not {distance!r}.")


@LOSSES.register("diffusion")
class DiffusionLoss(LossTerm):
    """Denoising-decoder objective on `inp.denoised` (decoded from (1-t) z + t eps, t <= diffusion_max_t)."""

    needs_denoised = True

    def __init__(self, distance: str = "l1") -> None:
        super().__init__()
        self.distance = distance  # "l1" or "mse"

    @classmethod
    def from_config(cls, cfg: VAELossConfig) -> "DiffusionLoss":
        return cls(distance=cfg.diffusion_distance)

    def forward(self, inp: LossInputs) -> Tensor:
        if inp.denoised is None:
            raise ValueError(
                "The diffusion loss needs LossInputs.denoised: decode sample_decoder_noise(z, cfg.diffusion_max_t) "
                "conditioned on t and pass it, or set the diffusion weight to 0."
            )
        return diffusion_loss(inp.denoised, inp.video, self.distance)
