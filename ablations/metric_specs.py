"""Specs of every metric a sweep can report, for sweep.json (direction and version)."""

from __future__ import annotations

from typing import Any


def metric_specs() -> dict[str, dict[str, Any]]:
    from evaluation.fvd import DISTRIBUTION_METRICS
    from evaluation.generation import GENERATION_METRICS
    from evaluation.metrics import METRICS

    specs: dict[str, dict[str, Any]] = {}
    for name, spec in METRICS.items():
        specs[name] = {"higher_is_better": bool(spec.higher_is_better), "version": str(spec.version),
                       "description": getattr(spec, "description", "")}
    for name, spec in GENERATION_METRICS.items():
        entry = {"higher_is_better": bool(spec.higher_is_better), "version": str(spec.version),
                 "description": getattr(spec, "description", "")}
        for task in getattr(spec, "tasks", ("t2v", "i2v")):
            specs[f"{task}.{name}"] = entry
    for name, spec in DISTRIBUTION_METRICS.items():  # set-level: one value per run (clip_id "__set__")
        entry = {"higher_is_better": bool(spec.higher_is_better), "version": str(spec.version),
                 "description": spec.description, "set_level": True}
        for key in ([f"{task}.{name}" for task in ("t2v", "i2v")] if name == "fvd" else [name]):
            specs[key] = entry
    return specs
