"""Config files: TOML (or YAML) in, the `--set` overrides they mean out; a config back out as TOML.

A file holds any subset of a run config's fields; nested tables are dotted keys, lists stay
lists:

    seed = 1
    [vae_train]
    steps = 200            # = --set vae_train.steps=200
    [loss]
    dwt_bands = "detail"   # = --set loss.dwt_bands=detail

`overrides_from_file` turns it into exactly the strings `--set` takes (each value JSON-encoded,
which `ablations.overrides.parse_value` decodes back to the same value), so a file and the
command line go through one validator. `apply_file_overrides` applies a file then `--set`
(the command line wins) and names the file, line and key of a bad field in its one sentence.

TOML has no null: `dump_toml` writes an unset (None) field as a comment, so reading the file
leaves that field at the base config's value; to unset a field a recipe sets, use YAML
(`key: null`) or `--set key=null`. YAML is read with PyYAML's safe loader (installed with Ray).
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from pathlib import Path
from typing import Any, Sequence

from models.config import ConfigError, to_dict

TOML_SUFFIXES = (".toml",)
YAML_SUFFIXES = (".yaml", ".yml")
_TOML_HEADER = re.compile(r"^\s*\[\s*([A-Za-z_][\w.\-\" ]*?)\s*\]\s*(#.*)?$")  # [section.sub]; not an array row
_TOML_KEY = re.compile(r"^\s*([A-Za-z_\"][\w.\-\" ]*?)\s*=")  # key = value / a.b = value


def _toml_key_lines(text: str) -> dict[str, int]:
    """Dotted key -> 1-based line of each `key = value` (and section header) in a TOML text."""
    lines: dict[str, int] = {}
    section = ""
    for number, line in enumerate(text.splitlines(), 1):
        header = _TOML_HEADER.match(line)
        if header:
            section = _clean_key(header.group(1))
            lines.setdefault(section, number)
            continue
        key = _TOML_KEY.match(line)
        if key:
            lines.setdefault(f"{section}.{_clean_key(key.group(1))}".lstrip("."), number)
    return lines


def _clean_key(key: str) -> str:
    return ".".join(part.strip().strip("\"'") for part in key.split("."))


def _yaml_key_lines(node: Any, prefix: str = "") -> dict[str, int]:
    """Dotted key -> 1-based line, from PyYAML's composed node tree (marks are exact)."""
    import yaml

    lines: dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = f"{prefix}{key_node.value}"
            lines[key] = key_node.start_mark.line + 1
            lines.update(_yaml_key_lines(value_node, f"{key}."))
    return lines


def _read_toml(path: Path, text: str) -> tuple[dict[str, Any], dict[str, int]]:
    try:
        return tomllib.loads(text), _toml_key_lines(text)
    except tomllib.TOMLDecodeError as exc:  # its message ends "(at line N, column M)"
        raise ConfigError(f"Config file {path} is not valid TOML: {exc}; fix that line.") from None


def _read_yaml(path: Path, text: str) -> tuple[Any, dict[str, int]]:
    try:
        import yaml
    except ImportError:
        raise ConfigError(f"Config file {path} is YAML but PyYAML is not installed; write it as TOML "
                          "(same keys) or `pip install pyyaml`.") from None
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return yaml.load(text, Loader=loader), _yaml_key_lines(yaml.compose(text, Loader=loader))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ConfigError(f"Config file {path} is not valid YAML{where} ({problem}); fix that line.") from None


def read_config_file(path: str | Path) -> tuple[dict[str, Any], dict[str, int]]:
    """(dotted key -> value, dotted key -> line) of a TOML or YAML config file; ConfigError for a bad file."""
    path = Path(path).expanduser()
    suffix = path.suffix.lower()
    if suffix not in TOML_SUFFIXES + YAML_SUFFIXES:
        raise ConfigError(f"Config file {path} must end in .toml, .yaml or .yml (its format); rename it.")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"Config file {path} does not exist; pass an existing .toml or .yaml file.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"Config file {path} cannot be read ({type(exc).__name__}); pass a UTF-8 text file.") from None
    table, lines = _read_toml(path, text) if suffix in TOML_SUFFIXES else _read_yaml(path, text)
    if table is None:  # an empty YAML file
        return {}, {}
    if not isinstance(table, dict):
        raise ConfigError(f"Config file {path} must hold a table of fields (key: value), not a "
                          f"{type(table).__name__}; see `ltxlab config show RECIPE --format toml`.")
    return flatten(table), lines


def flatten(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'vae': {'logvar': 'none'}} -> {'vae.logvar': 'none'}; lists are values, kept whole; an empty
    table sets nothing (a dumped section whose fields are all unset)."""
    out: dict[str, Any] = {}
    for key, value in table.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):  # an empty table (a section of unset fields) sets nothing
            out.update(flatten(value, f"{dotted}."))
        else:
            out[dotted] = value
    return out


def config_changes(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """'path old -> new' for every leaf that differs between two config dicts."""
    out = []
    for name in sorted(set(old) | set(new)):
        a, b = old.get(name), new.get(name)
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_changes(a, b, f"{prefix}{name}.")
        elif a != b:
            out.append(f"{prefix}{name} {a} -> {b}")
    return out


def _encode(path: Path, key: str, value: Any, lines: dict[str, int]) -> str:
    """One `--set` string; JSON keeps every value's type through `parse_value`."""
    try:
        return f"{key}={json.dumps(value, allow_nan=True)}"
    except (TypeError, ValueError):
        raise ConfigError(f"{_place(path, key, lines)}: {key} is a {type(value).__name__} ({value!r}); "
                          "use a number, string, boolean, list or table.") from None


def _place(path: Path, key: str, lines: dict[str, int]) -> str:
    line = lines.get(key)
    return f"{path}, line {line}" if line else str(path)


def overrides_from_file(path: str | Path) -> list[str]:
    """The `--set KEY=VALUE` strings a config file means, in file order."""
    values, lines = read_config_file(path)
    return [_encode(Path(path), key, value, lines) for key, value in values.items()]


def _blamed_key(message: str, keys: Sequence[str]) -> str | None:
    """The file key a ConfigError's sentence is about: named whole, else by a quoted part ('dwtt')."""
    for key in sorted(keys, key=len, reverse=True):
        if re.search(rf"(?<![\w.]){re.escape(key)}(?![\w])", message):
            return key
    for key in keys:
        if any(f"'{part}'" in message for part in key.split(".")):
            return key
    return None


def apply_file_overrides(cfg: Any, path: str | Path | None, overrides: Sequence[str] = ()) -> Any:
    """`cfg` with the file's fields, then `overrides` (`--set`, which win), applied and range-checked
    together; a `--set vae.kind` swaps the VAE after the file's `vae.*` fields (carrying the switches both
    kinds share, as on its own). A ConfigError about one of the file's keys names the file, its line and the key."""
    from ablations.overrides import apply_overrides

    if path is None:
        return apply_overrides(cfg, overrides)
    values, lines = read_config_file(path)
    strings = {key: _encode(Path(path), key, value, lines) for key, value in values.items()}
    try:
        if any(o.partition("=")[0].strip() == "vae.kind" for o in overrides):
            # `--set vae.kind` swaps in that kind's preset; it must land after the file's vae fields, or a file
            # holding them all (a `config show` dump) puts the old kind's geometry under the new class name
            cfg = apply_overrides(cfg, [v for k, v in strings.items() if k.startswith("vae.")])
            strings = {k: v for k, v in strings.items() if not k.startswith("vae.")}
        return apply_overrides(cfg, list(strings.values()) + list(overrides))
    except ConfigError as exc:
        on_command_line = {o.partition("=")[0].strip() for o in overrides}
        key = _blamed_key(str(exc), [k for k in values if k not in on_command_line])
        if key is None:
            raise
        named = "" if key in str(exc) else f" ({key})"
        raise ConfigError(f"{_place(Path(path), key, lines)}{named}: {exc}") from None


# ------------------------------------------------------------------ writing


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)  # shortest text that reads back as the same double
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # JSON's escapes are a subset of TOML's basic strings
    if isinstance(value, (list, tuple)):
        if any(v is None for v in value):
            raise ConfigError(f"TOML cannot hold a list with an unset (null) item: {list(value)!r}.")
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):  # a mapping inside a list: an inline table
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items() if v is not None) + "}"
    raise ConfigError(f"TOML cannot hold a {type(value).__name__} ({value!r}).")


def _toml_table(table: dict[str, Any], name: str, out: list[str]) -> None:
    scalars = {k: v for k, v in table.items() if not isinstance(v, dict)}
    sections = {k: v for k, v in table.items() if isinstance(v, dict)}
    if name and (scalars or not sections):
        out.append(f"\n[{name}]")
    for key, value in scalars.items():
        out.append(f"# {key} is unset (null)" if value is None else f"{key} = {_toml_value(value)}")
    for key, value in sections.items():
        _toml_table(value, f"{name}.{key}" if name else key, out)


def dump_toml(cfg: Any, header: str = "") -> str:
    """A config tree (dataclasses or dicts) as TOML that `overrides_from_file` reads back to the same values."""
    out = [f"# {line}" for line in header.splitlines()]
    _toml_table(to_dict(cfg), "", out)
    return "\n".join(out).lstrip("\n") + "\n"


def write_toml(cfg: Any, path: str | Path, header: str = "") -> Path:
    """`dump_toml` to `path`, atomically (a reader never sees half a file)."""
    from ablations.store import atomic_write_bytes

    atomic_write_bytes(Path(path), dump_toml(cfg, header).encode())
    return Path(path)
