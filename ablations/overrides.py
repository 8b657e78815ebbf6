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


def switch_vae_kind(vae: Any, kind: str) -> Any:
    """The `kind` preset of the same size as `vae`, with its design switches carried over."""
    import dataclasses

    from models.config import switch_values
    from models.vae import VAES, vae_config

    cls = VAES.get(kind)  # unknown kinds fail here, listing the valid ones
    if type(vae) is cls:
        return vae
    fresh = vae_config(kind, vae.size if vae.size in ("tiny", "small", "full") else "tiny")
    carried = {f: getattr(vae, f) for f in switch_values(type(vae)) if f in switch_values(cls)}
    return dataclasses.replace(fresh, **carried)


def set_field(cfg: C, path: str, value: Any) -> C:
    """`replace_path`, except that `vae.kind` swaps the whole VAE config to that kind's preset."""
    import dataclasses

    if path == "vae.kind" and hasattr(cfg, "vae"):
        return dataclasses.replace(cfg, vae=switch_vae_kind(cfg.vae, value))
    return replace_path(cfg, path, value)


def apply_overrides(cfg: C, assignments: Sequence[str]) -> C:
    """Apply ['loss.dwt=0.1', 'vae.logvar=per_channel'] to `cfg` with `dataclasses.replace`."""
    for assignment in assignments:
        key, sep, value = assignment.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects key=value (e.g. loss.dwt=0.1), not '{assignment}'.")
        cfg = set_field(cfg, key.strip(), parse_value(value))
    return cfg
