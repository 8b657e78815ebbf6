"""VAE training losses: pure tensor functions plus registered `LossTerm` wrappers.

Importing this package registers every term in `LOSSES`: l1, mse, kl, dwt, gan, rgan,
diffusion. See `models/losses/base.py` for the contract with the training step.
"""

from models.losses.base import (
    LOSSES,
    LossInputs,
    LossTerm,
    VAELossConfig,
    build_loss_terms,
    sample_decoder_noise,
    weight_fields,
)
from models.losses.diffusion import DiffusionLoss, diffusion_loss
from models.losses.dwt import (
    BAND_NAMES,
    DWT_BAND_PRESETS,
    DWTLoss,
    band_l1,
    dwt_band_shares,
    dwt_loss,
    haar_dwt3d,
    resolve_band_weights,
)
from models.losses.gan import GANLoss, hinge_discriminator_loss, hinge_generator_loss
from models.losses.kl import KLLoss, kl_loss
from models.losses.recon import L1Loss, MSELoss, l1_loss, mse_loss
from models.losses.rgan import ReconstructionGANLoss, rgan_discriminator_loss, rgan_generator_loss, rgan_pairs

__all__ = [
    "BAND_NAMES",
    "DWT_BAND_PRESETS",
    "LOSSES",
    "DWTLoss",
    "DiffusionLoss",
    "GANLoss",
    "KLLoss",
    "L1Loss",
    "LossInputs",
    "LossTerm",
    "MSELoss",
    "ReconstructionGANLoss",
    "VAELossConfig",
    "band_l1",
    "build_loss_terms",
    "diffusion_loss",
    "dwt_band_shares",
    "dwt_loss",
    "haar_dwt3d",
    "hinge_discriminator_loss",
    "hinge_generator_loss",
    "kl_loss",
    "l1_loss",
    "mse_loss",
    "resolve_band_weights",
    "rgan_discriminator_loss",
    "rgan_generator_loss",
    "rgan_pairs",
    "sample_decoder_noise",
    "weight_fields",
]
