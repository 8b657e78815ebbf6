"""Ablation recipes: plain functions that return a `Sweep`.

A recipe names a base run config, the axes to vary (dotted config paths -> levels; full
factorial by default, or an explicit list of variants), the seeds, and the stages to
run. `RECIPES` maps names to recipe functions; `smoke=True` asks a recipe for its
fastest meaningful version (tests, `ltxlab sweep --smoke`).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from models.registry import Registry


@dataclass(frozen=True, kw_only=True)
class Sweep:
    name: str  # the sweep's folder name under the results root
    recipe: str  # the recipe that made it
    description: str  # one line for people: what question the sweep answers
    base: Any  # ablations.configs.RunConfig every variant starts from
    axes: Mapping[str, Sequence[Any]] = field(default_factory=dict)  # dotted path -> levels (full factorial)
    variants: Sequence[Mapping[str, Any]] | None = None  # explicit variant list instead of the factorial
    seeds: Sequence[int] = (0,)  # seeds are an axis: every variant runs once per seed
    stages: Sequence[str] = ("eval_recon", "cost")  # wanted stages; their upstream stages run too
    headline_metrics: Sequence[str] = ("psnr", "ssim")  # shown as columns of runs.parquet
    # A/A calibration: also run the baseline variant (every axis at its first level, or the
    # first explicit variant) on seeds shifted by a block of 1000, as replicate "b"; its
    # "effect" against the baseline is the sweep's noise floor (`ltxlab sweep --replicate-baseline`)
    replicate_baseline: bool = False


RECIPES: Registry[Callable[..., Sweep]] = Registry("recipe")

# recipe modules register themselves on import
for _module in ("vae_core", "denoising_decoder", "text_conditioning", "rope", "demo", "testing", "replicate", "patchifier"):
    importlib.import_module(f"ablations.recipes.{_module}")
