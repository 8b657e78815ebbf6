"""`ltxlab config show RECIPE`: every field `--set` can reach, with its value, default, type and valid range.

The value is the recipe's base config after `--smoke`, `--config FILE` and `--set` (what
`ltxlab sweep` would start from, before its axes vary it); the default is the recipe's own
base; the range is the field's declared one (`models.config.field_ranges`). `--format toml`
prints the resolved config as a file `--config` reads back unchanged.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing
from typing import Any, Iterator, Literal, get_args, get_origin, get_type_hints

from ablations.commands.common import add_config_arg

FORMATS = ("table", "toml", "json")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("config", help="show a recipe's config fields: value, default, type and valid range")
    sub = p.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    show = sub.add_parser("show", help="every field --set can reach, with its value, default, type and range",
                          description="ltxlab config show RECIPE [--set KEY=VALUE] [--config FILE] [--format toml]")
    show.add_argument("recipe", help="a recipe name (`ltxlab sweep --help` lists them)")
    show.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                      help="override a field, as `ltxlab sweep --set` does; changed fields are marked *")
    add_config_arg(show)
    show.add_argument("--smoke", action="store_true", help="start from the recipe's --smoke base (a few steps per stage)")
    show.add_argument("--format", choices=FORMATS, default="table",
                      help="table; toml (a file --config reads back); json (one record per field)")
    show.set_defaults(func=run_show)
    p.set_defaults(func=lambda args: p.print_help() or 0)


def type_name(hint: Any) -> str:
    """A field's type in a few characters: int, float | null, choice, list[int], ..."""
    origin = get_origin(hint)
    if origin is Literal:
        return "choice"
    if origin in (typing.Union, types.UnionType):
        inner = [type_name(a) for a in get_args(hint) if a is not type(None)]
        return " | ".join(inner) + (" | null" if type(None) in get_args(hint) else "")
    if origin in (tuple, list):
        args = [a for a in get_args(hint) if a is not Ellipsis]
        return f"list[{type_name(args[0])}]" if args else "list"
    return getattr(hint, "__name__", str(hint).replace("typing.", ""))


def config_fields(cfg: Any, prefix: str = "") -> Iterator[tuple[str, Any, Any, Any]]:
    """(dotted path, type hint, value, declared range or None) of every leaf field of a config tree."""
    from models.config import field_ranges

    hints, ranges = get_type_hints(type(cfg)), field_ranges(type(cfg))
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            yield from config_fields(value, f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", hints[f.name], value, ranges.get(f.name)


def _lookup(cfg: Any, path: str) -> Any:
    for name in path.split("."):
        if not hasattr(cfg, name):
            return dataclasses.MISSING  # `--set vae.kind=...` swapped in a class without this field
        cfg = getattr(cfg, name)
    return cfg


def field_rows(cfg: Any, base: Any) -> list[dict[str, Any]]:
    """One record per field: field, type, value, default (the base's), range, changed."""
    from models.config import to_dict

    from models.vae import VAES

    rows = []
    for path, hint, value, valid in config_fields(cfg):
        default = _lookup(base, path)
        text = valid.text if valid is not None else None
        if path == "vae.kind":  # `--set vae.kind=K` swaps in kind K's preset (ablations.overrides.set_field)
            text = f"one of {', '.join(map(repr, VAES.names()))}"
        rows.append({"field": path, "type": type_name(hint), "value": to_dict(value),
                     "default": None if default is dataclasses.MISSING else to_dict(default),
                     "range": text, "changed": default != value})
    return rows


def _cell(value: Any) -> str:
    return "null" if value is None else json.dumps(value) if isinstance(value, (list, str, bool)) else str(value)


def _table(rows: list[dict[str, Any]]) -> str:
    cells = [(("* " if r["changed"] else "  ") + r["field"], r["type"], _cell(r["value"]), _cell(r["default"]),
              r["range"] or "-") for r in rows]
    head = ("  field", "type", "value", "default", "valid values")
    widths = [min(cap, max(len(c[i]) for c in cells + [head])) for i, cap in enumerate((44, 18, 24, 24))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths)) + "  " + head[4]]
    lines += ["  ".join(c.ljust(w) for c, w in zip(cell, widths)) + "  " + cell[4] for cell in cells]
    return "\n".join(lines)


def recipe_base(name: str, smoke: bool) -> Any:
    """The base RunConfig of recipe `name` (unknown names are one sentence listing the recipes)."""
    from ablations.recipes import RECIPES
    from ablations.recipes.common import smoke as smoke_config

    base = RECIPES.get(name)().base
    return smoke_config(base) if smoke else base


def run_show(args: argparse.Namespace) -> int:
    from ablations.config_file import apply_file_overrides, dump_toml

    base = recipe_base(args.recipe, args.smoke)
    cfg = apply_file_overrides(base, args.config, args.overrides)
    if args.format == "toml":
        print(dump_toml(cfg, header=f"ltxlab config show {args.recipe}{' --smoke' if args.smoke else ''}: the "
                                    "recipe's base config; pass it to --config, edit any field"), end="")
        return 0
    rows = field_rows(cfg, base)
    if args.format == "json":
        print(json.dumps(rows, indent=2))
        return 0
    changed = sum(r["changed"] for r in rows)
    print(f"recipe {args.recipe}: {len(rows)} fields ({changed} changed by --config/--set, marked *); "
          "set any with --set FIELD=VALUE or a --config file")
    print(_table(rows))
    return 0
