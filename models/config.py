"""Config conventions shared by every component.

Each component has a frozen, keyword-only dataclass config with a `kind` name and a
`build()`; a run config is a tree of them. This module turns such trees into JSON-ready
dicts and back, validating field names and choice fields with one clear sentence.
Variants are derived with `dataclasses.replace`, never by mutation.

Every field also has a declared range (`declare_ranges`, a table right after each
dataclass; `Literal` and `bool` fields by their type): `from_dict`, `--set` and
`ablations.configs.check_buildable` refuse a value outside it in one sentence naming the
field and its range, and `field_ranges` lists them (field, range) for `ltxlab config show`.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import re
import types
import typing
from dataclasses import dataclass
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
    if dataclasses.is_dataclass(hint) and not isinstance(value, hint):
        raise ConfigError(f"{where} is a section, not a single value; set its fields ({where}.FIELD=VALUE).")
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
    ranges = field_ranges(cls)
    for name, value in kwargs.items():  # before the class's own cross-field checks, which assume sane values
        if name in ranges and not dataclasses.is_dataclass(value) and not ranges[name].accepts(value):
            raise ConfigError(out_of_range(f"{where}.{name}", ranges[name], value))
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
        inner = getattr(cfg, head)
        if not dataclasses.is_dataclass(inner):
            raise ConfigError(f"{type(cfg).__name__}.{head} is a single value, not a section with fields, so "
                              f"'{head}.{rest}' names nothing; set {head} itself.")
        return dataclasses.replace(cfg, **{head: replace_path(inner, rest, value)})
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


# ---------------------------------------------------------------- field ranges
#
# Every field a user can set (`--set`, a recipe, a config.json) has a declared set of valid
# values, in a small table right after its dataclass (`declare_ranges`). `Literal` and `bool`
# fields declare theirs by their type. `check_ranges` walks a config tree and refuses the
# first value outside its range in one sentence, before anything expensive starts;
# `field_ranges` gives (field -> range) for listing a config with its defaults and ranges.


class FieldRange:
    """The valid values of one config field; `text` completes "FIELD must be ..."."""

    def accepts(self, value: Any) -> bool:
        raise NotImplementedError

    @property
    def text(self) -> str:
        raise NotImplementedError


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _num(value: float) -> str:
    whole = _is_int(value) or (isinstance(value, float) and value.is_integer() and abs(value) < 1e15)
    return f"{int(value):,}" if whole else f"{value:g}"


@dataclass(frozen=True)
class Int(FieldRange):
    """Integers lo..hi (inclusive); with `step`, only offset + k * step (frames = 1 + 8k)."""

    lo: int
    hi: int
    step: int = 1
    offset: int = 0

    def accepts(self, value: Any) -> bool:
        return _is_int(value) and self.lo <= value <= self.hi and (value - self.offset) % self.step == 0

    def nearest(self, value: Any) -> int:
        """The accepted value nearest a number (for "try N" hints); `lo` for anything else."""
        if not _is_real(value):
            return self.lo
        k = round((value - self.offset) / self.step)
        return min(max(self.offset + k * self.step, self.lo), self.hi - (self.hi - self.offset) % self.step)

    @property
    def text(self) -> str:
        if self.step == 1:
            return f"an integer from {_num(self.lo)} to {_num(self.hi)}"
        form = f"{self.offset} + {self.step}k" if self.offset else f"a multiple of {self.step}"
        return f"{form} from {_num(self.lo)} to {_num(self.hi)}"


@dataclass(frozen=True)
class Real(FieldRange):
    """Finite numbers in [lo, hi]; `open_lo` / `open_hi` exclude an end (NaN and inf never pass)."""

    lo: float
    hi: float
    open_lo: bool = False
    open_hi: bool = False

    def accepts(self, value: Any) -> bool:
        if not _is_real(value):
            return False
        above = value > self.lo if self.open_lo else value >= self.lo
        below = value < self.hi if self.open_hi else value <= self.hi
        return above and below

    @property
    def text(self) -> str:
        left, right = "(" if self.open_lo else "[", ")" if self.open_hi else "]"
        return f"a finite number in {left}{_num(self.lo)}, {_num(self.hi)}{right}"


@dataclass(frozen=True)
class Choice(FieldRange):
    """One of fixed values, or of the names a callable lists (a registry's, read when checked)."""

    values: tuple[Any, ...] = ()
    names: Any = None  # () -> iterable of names; for choices that live in a registry

    def options(self) -> tuple[Any, ...]:
        return self.values + (tuple(self.names()) if self.names else ())

    def accepts(self, value: Any) -> bool:
        return any(value == v and type(value) is type(v) for v in self.options())

    @property
    def text(self) -> str:
        return f"one of {', '.join(map(repr, self.options()))}"


@dataclass(frozen=True)
class Text(FieldRange):
    """A non-blank string (a path, a model name) matching `pattern`, if given (full match)."""

    pattern: str | None = None
    meaning: str = "a non-empty string"  # what the pattern means, for the message
    max_len: int = 4096

    def accepts(self, value: Any) -> bool:
        if not isinstance(value, str) or not value.strip() or len(value) > self.max_len or "\x00" in value:
            return False
        return self.pattern is None or re.fullmatch(self.pattern, value) is not None

    @property
    def text(self) -> str:
        return self.meaning


@dataclass(frozen=True)
class Seq(FieldRange):
    """A tuple of `min_len`..`max_len` items, each in `item`."""

    item: FieldRange
    min_len: int = 1
    max_len: int = 64

    def accepts(self, value: Any) -> bool:
        return (isinstance(value, (tuple, list)) and self.min_len <= len(value) <= self.max_len
                and all(self.item.accepts(v) for v in value))

    @property
    def text(self) -> str:
        count = str(self.min_len) if self.min_len == self.max_len else f"{self.min_len} to {self.max_len}"
        return f"a list of {count} items, each {self.item.text}"


@dataclass(frozen=True)
class Either(FieldRange):
    """Any of several ranges; `Either(None, Text())` = unset or a non-empty string."""

    options: tuple[Any, ...]

    def accepts(self, value: Any) -> bool:
        return any(value is None if o is None else o.accepts(value) for o in self.options)

    @property
    def text(self) -> str:
        return " or ".join("unset (null)" if o is None else o.text for o in self.options)


def optional(inner: FieldRange) -> Either:
    """Unset (None) or a value in `inner`."""
    return Either((None, inner))


BOOL = Choice((False, True))
_DECLARED: dict[type, dict[str, FieldRange]] = {}


def declare_ranges(cls: type, table: dict[str, FieldRange]) -> None:
    """Declare the valid values of `cls`'s fields (called right after the dataclass)."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(table) - names
    if unknown:  # a typo here would silently leave a field unchecked
        raise TypeError(f"declare_ranges({cls.__name__}): no field(s) {sorted(unknown)}.")
    _DECLARED[cls] = dict(table)


def field_ranges(cls: type) -> dict[str, FieldRange]:
    """field -> its range: the declared ones (a subclass inherits its base's), `Literal` and
    `bool` fields from their type. Nested config sections and undeclared fields are absent."""
    out: dict[str, FieldRange] = {}
    for name, hint in get_type_hints(cls).items():
        if get_origin(hint) is Literal:
            out[name] = Choice(get_args(hint))
        elif hint is bool:
            out[name] = BOOL
    for base in reversed(cls.__mro__):
        out.update(_DECLARED.get(base, {}))
    return {f.name: out[f.name] for f in dataclasses.fields(cls) if f.name in out}


def out_of_range(path: str, valid: FieldRange, value: Any) -> str:
    """The one sentence for a value outside its range, with the nearest valid one for stepped integers."""
    near = f"; try {valid.nearest(value)}" if isinstance(valid, Int) and valid.step > 1 else ""
    return f"{path} must be {valid.text}, not {value!r}{near}."


def check_ranges(cfg: Any, where: str = "") -> None:
    """Raise ConfigError for the first field of the tree `cfg` outside its declared range."""
    ranges = field_ranges(type(cfg))
    for f in dataclasses.fields(cfg):
        value, path = getattr(cfg, f.name), f"{where}.{f.name}" if where else f.name
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            check_ranges(value, path)
        elif f.name in ranges and not ranges[f.name].accepts(value):
            raise ConfigError(out_of_range(path, ranges[f.name], value))


# ranges many sections share
SEED = Int(0, 2**31 - 1)  # torch, numpy and Python generators all take these
STEPS = Int(1, 10_000_000)  # optimizer or sampler steps: at least one, and not a typo's worth of days
LEARNING_RATE = Real(0.0, 1.0, open_lo=True)
PROBABILITY = Real(0.0, 1.0)
ADAM_BETAS = Seq(Real(0.0, 1.0, open_hi=True), 2, 2)
LOCAL_PATH = optional(Text(meaning="a path to a local file or folder"))
