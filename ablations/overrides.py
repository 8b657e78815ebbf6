"""`--set key=value` overrides on config trees, validated like the recipe."""

from __future__ import annotations

import json
from typing import Any, Sequence, TypeVar

from models.config import ConfigError, replace_path

C = TypeVar("C")


def parse_value(text: str) -> Any:
    """'0.1' -> 0.1, 'true' -> True, '[1,2]' -> [1, 2], anything else stays a string."""
    lowered = text.strip()
    if lowered in ("true", "false", "null"):
        return json.loads(lowered)
    try:
        return json.loads(lowered)
    except json.JSONDecodeError:
        return text


def apply_overrides(cfg: C, assignments: Sequence[str]) -> C:
    """Apply ['loss.dwt=0.1', 'vae.logvar=per_channel'] to `cfg` with `dataclasses.replace`."""
    for assignment in assignments:
        key, sep, value = assignment.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects key=value (e.g. loss.dwt=0.1), not '{assignment}'.")
        cfg = replace_path(cfg, key.strip(), parse_value(value))
    return cfg
