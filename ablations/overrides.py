"""`--set key=value` overrides on config trees, validated like the recipe."""

from __future__ import annotations

import json
from typing import Any, Sequence, TypeVar

from models.config import ConfigError, check_ranges, replace_path

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


def set_fields(cfg: C, updates: dict[str, Any], where: str = "") -> C:
    """Set several dotted paths at once: the fields of one config are replaced together.

    A config that checks its fields as a whole (`DataSpec(source="folder")` needs `folder`)
    would refuse the first of two related assignments made one at a time; here they meet
    in one `dataclasses.replace`, so their order does not matter. Names and `Literal`
    choices are checked as `replace_path` checks them; a path through a single value
    (`vae_train.steps.x`) or a section set to a single value (`vae=3`) is one sentence.
    """
    import dataclasses

    from models.config import from_dict

    names = {f.name for f in dataclasses.fields(cfg)}
    leaves: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for path, value in updates.items():
        head, _, rest = path.partition(".")
        if head not in names:
            replace_path(cfg, path, value)  # raises its "has no field ... Did you mean" sentence
        if rest:
            nested.setdefault(head, {})[rest] = value
        else:
            leaves[head] = value
    for head, inner in nested.items():
        full = f"{where}{head}"
        if head in leaves:
            raise ConfigError(f"--set gives {full} and {full}.{next(iter(inner))} together; set one of them.")
        section = getattr(cfg, head)
        if not dataclasses.is_dataclass(section):
            raise ConfigError(f"--set {full}.{next(iter(inner))}: {full} is a single value, not a section with "
                              f"fields; set {full}=VALUE instead.")
        leaves[head] = set_fields(section, inner, f"{full}.")
    for head, value in leaves.items():
        current = getattr(cfg, head)
        if dataclasses.is_dataclass(current) and not isinstance(value, type(current)):
            raise ConfigError(f"--set {where}{head} names a section, not a single value; set its fields "
                              f"({where}{head}.FIELD=VALUE).")
    if not leaves:
        return cfg
    current = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.init}
    section = where.rstrip(".")
    try:
        return from_dict(type(cfg), {**current, **leaves}, section or type(cfg).__name__)
    except ConfigError:
        raise
    except ValueError as exc:  # a config's own check (DataSpec's ClipError) names the field, not its section
        raise ConfigError(f"{section}.{exc}" if section and str(exc).split(" ")[0] in names else
                          f"{section or type(cfg).__name__}: {exc}") from None


def apply_overrides(cfg: C, assignments: Sequence[str]) -> C:
    """Apply ['loss.dwt=0.1', 'vae.logvar=per_channel'] to `cfg` with `dataclasses.replace`.

    `vae.kind` goes first (it swaps in that kind's preset, carrying the shared switches);
    the rest are set together (`set_fields`), so `vae_data.source=folder` and
    `vae_data.folder=DIR` work in either order. A key given twice keeps its last value.
    Then every field of the result is checked against its declared range (`check_ranges`).
    """
    updates: dict[str, Any] = {}
    for assignment in assignments:
        key, sep, value = assignment.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects key=value (e.g. loss.dwt=0.1), not '{assignment}'.")
        updates.pop(key.strip(), None)  # the last assignment of a key wins, in its own position
        updates[key.strip()] = parse_value(value)
    if "vae.kind" in updates:
        cfg = set_field(cfg, "vae.kind", updates.pop("vae.kind"))
    cfg = set_fields(cfg, updates) if updates else cfg
    check_ranges(cfg)  # every field in its declared range, before anything expensive starts
    return cfg
