"""A small 3D-conv PatchGAN discriminator shared by the `gan` and `rgan` loss terms.

Adapts the N-layer PatchGAN of pix2pix / taming-transformers
(`taming/modules/discriminator/model.py`, `NLayerDiscriminator`) to video: Conv3d
instead of Conv2d, GroupNorm instead of BatchNorm (batches of one or two videos make
batch statistics useless), and a space-only first stride so short clips keep their
temporal resolution a little longer. The output is a map of patch logits, one per
receptive field, not a single number per video.
"""

from __future__ import annotations

from torch import Tensor, nn


def _groups(channels: int) -> int:
    # the largest group count <= 8 that divides `channels`, so any width works
    return next(g for g in (8, 4, 2, 1) if channels % g == 0)


class PatchDiscriminator3d(nn.Module):
    """(B, in_channels, T, H, W) -> (B, 1, T', H', W') patch logits."""

    def __init__(self, in_channels: int = 3, channels: int = 16, layers: int = 3) -> None:
        super().__init__()
        if layers < 1 or channels < 1:
            raise ValueError(f"PatchDiscriminator3d needs layers >= 1 and channels >= 1, got {layers}, {channels}.")
        blocks: list[nn.Module] = [
            nn.Conv3d(in_channels, channels, kernel_size=3, stride=(1, 2, 2), padding=1),
            nn.LeakyReLU(0.2),
        ]
        width = channels
        for _ in range(layers - 1):
            blocks += [
                nn.Conv3d(width, width * 2, kernel_size=3, stride=2, padding=1, bias=False),
                nn.GroupNorm(_groups(width * 2), width * 2),
                nn.LeakyReLU(0.2),
            ]
            width *= 2
        blocks.append(nn.Conv3d(width, 1, kernel_size=3, stride=1, padding=1))
        self.net = nn.Sequential(*blocks)

    def forward(self, x: Tensor) -> Tensor:
        """(B, in_channels, T, H, W) -> (B, 1, T', H', W') logits."""
        return self.net(x)


class AdversarialTerm:
    """What the GAN and rGAN loss terms share: a PatchGAN built from the loss config and a
    start step before which the term is off. Mixed into a `LossTerm` subclass that sets
    `disc_in_channels` (3 for single videos, 6 for (original, reconstruction) pairs)."""

    adversarial = True
    disc_in_channels: int = 3

    def __init__(self, channels: int = 16, layers: int = 3, start_step: int = 0) -> None:
        super().__init__()
        self.discriminator = PatchDiscriminator3d(in_channels=self.disc_in_channels, channels=channels, layers=layers)
        self.start_step = start_step  # optimizer step at which the term switches on

    @classmethod
    def from_config(cls, cfg):  # cfg: models.losses.base.VAELossConfig
        return cls(channels=cfg.disc_channels, layers=cfg.disc_layers, start_step=cfg.gan_start_step)

    def is_active(self, step: int) -> bool:
        return step >= self.start_step
