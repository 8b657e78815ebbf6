"""Run configs: trees of component configs, serialised to JSON, rebuilt by `kind`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from models.config import to_json


@dataclass(frozen=True, kw_only=True)
class VAERunConfig:
    vae: Any  # a models.vae config (ltx or conventional), chosen by its `kind`
    loss: Any  # models.losses.base.VAELossConfig: weights of every loss term
    train: Any  # ablations.stages.train_vae.VAETrainConfig
    data: Any  # clips.dataset.DataSpec: where the clips come from and their shape

    def to_json(self) -> str:
        return to_json(self)
