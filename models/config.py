"""Config conventions shared by every component.

Each component has a frozen, keyword-only dataclass config with a `kind` name and a
`build()`; a run config is a tree of them. This module turns such trees into JSON-ready
dicts and back, validating field names and choice fields with one clear sentence.
Variants are derived with `dataclasses.replace`, never by mutation.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import types
import typing
from typing import Any, Literal, TypeVar, get_args, get_origin, get_type_hints

C = TypeVar("C")


class ConfigError(ValueError):
    """A config value a user wrote is wrong; the message says what to change."""


def to_dict(cfg: Any) -> Any:
    """Dataclass tree -> plain JSON-serialisable dict (tuples become lists)."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return {f.name: to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, (list, tuple)):
        return [to_dict(v) for v in cfg]
    if isinstance(cfg, dict):
        return {k: to_dict(v) for k, v in cfg.items()}
    return cfg


def to_json(cfg: Any) -> str:
    return json.dumps(to_dict(cfg), sort_keys=True, indent=2)


def content_hash(obj: Any, length: int = 12) -> str:
    """Stable short hash of a config tree (or any JSON-able value)."""
    blob = json.dumps(to_dict(obj), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin = get_origin(hint)
    if origin is Literal:
        choices = get_args(hint)
        if value not in choices:
            close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
            hint_txt = f" Did you mean '{close[0]}'?" if close else ""
            raise ConfigError(
                f"{where} must be one of {', '.join(map(repr, choices))}, not {value!r}.{hint_txt}"
            )
        return value
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(hint) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, args[0], where) if len(args) == 1 else value
    if origin in (tuple, list) and isinstance(value, (list, tuple)):
        args = get_args(hint)
        if origin is tuple and args and args[-1] is not Ellipsis and len(args) == len(value):
            return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        inner = args[0] if args else Any
        seq = [_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(seq) if origin is tuple else seq
    if dataclasses.is_dataclass(hint) and isinstance(value, dict):
        return from_dict(hint, value, where)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool) and not isinstance(value, hint):
        raise ConfigError(f"{where} must be a {hint.__name__}, not {value!r}.")
    return value


def from_dict(cls: type[C], data: dict[str, Any], where: str | None = None) -> C:
    """Dict -> dataclass `cls`, checking names and Literal choices with clear messages."""
    where = where or cls.__name__
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in data if k not in fields]
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(fields), n=1)
        hint_txt = f" Did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"{where} has no field '{unknown[0]}'.{hint_txt}")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}.") from None


def validate(cfg: Any, where: str | None = None) -> None:
    """Re-check every Literal field of an already built dataclass tree."""
    from_dict(type(cfg), {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}, where)


def replace_path(cfg: C, dotted: str, value: Any) -> C:
    """`dataclasses.replace` along a dotted path ("vae.latent_channels"), with validation."""
    head, _, rest = dotted.partition(".")
    names = [f.name for f in dataclasses.fields(cfg)]
    if head not in names:
        close = difflib.get_close_matches(head, names, n=1)
        hint_txt = f" Did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"{type(cfg).__name__} has no field '{head}'.{hint_txt}")
    if rest:
        return dataclasses.replace(cfg, **{head: replace_path(getattr(cfg, head), rest, value)})
    hint = get_type_hints(type(cfg))[head]
    return dataclasses.replace(cfg, **{head: _coerce(value, hint, f"{type(cfg).__name__}.{head}")})


def switch_values(cls: type) -> dict[str, list[Any]]:
    """The design switches of a config class: every `Literal` or `bool` field and its values.

    Tests generated from the registries iterate over these, so a new switch is covered
    without editing any test.
    """
    out: dict[str, list[Any]] = {}
    for name, hint in get_type_hints(cls).items():
        if name == "kind":
            continue
        if get_origin(hint) is Literal:
            out[name] = list(get_args(hint))
        elif hint is bool:
            out[name] = [False, True]
    return out
