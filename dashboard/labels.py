"""Short labels for runs and variants: only the axis values that differ between the ones on screen.

A variant string ("vae.kind=ltx,loss.dwt=0.1,dit.attention=cross") is cut by a chart's label
limit exactly where variants differ; `differing_labels` keeps the axes that tell them apart
("dwt=0.1 · attention=cross"), names an axis by its last dotted part unless two shown axes share
it, and falls back to the seed ("seed 1") and then the run id's suffix for runs whose axes are
all equal (replicates). Pure functions (no Streamlit), so tests and every page share them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Hashable

import pandas as pd

SEPARATOR = " · "
SUFFIX = 6  # characters of a run id kept when nothing else tells two runs apart
_SEQUENCE_TEXT = re.compile(r"^[(\[]\s*(-?\d+(?:\.\d+)?(?:\s*,\s*-?\d+(?:\.\d+)?)*)\s*,?\s*[)\]]$")
_NUMBER = re.compile(r"^-?\d+\.\d*$")
_NEXT_AXIS = re.compile(r",(?=[A-Za-z_][\w.]*=)")  # a comma that starts the next `axis=` of a variant name


def level_text(value: Any) -> str:
    """An axis level as short text: 0.0 -> "0", (4, 4, 2) or "(4, 4, 2)" -> "4x4x2", None -> "-"."""
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, (int, float)) for v in value):
        return "x".join(level_text(v) for v in value)
    text = str(value)
    if isinstance(value, str) and _NUMBER.match(text):  # levels parsed back from a variant name are text: "0.0" reads as 0.0 does
        return level_text(float(text))
    match = _SEQUENCE_TEXT.match(text)
    if match:
        return "x".join(part.strip() for part in match.group(1).split(","))
    return text


def parse_variant(name: str) -> dict[str, str]:
    """`axis=value,axis=value` (ablations.graph's variant names) -> {axis: value}; {} for any other name."""
    parts = _NEXT_AXIS.split(str(name))
    if not all("=" in part for part in parts):
        return {}
    return dict(part.split("=", 1) for part in parts)


def short_axis_names(axes: Sequence[str]) -> dict[str, str]:
    """Each axis by its last dotted part ("loss.dwt" -> "dwt") unless another of `axes` ends the same."""
    tails = [a.rsplit(".", 1)[-1] for a in axes]
    return {a: (t if tails.count(t) == 1 else a) for a, t in zip(axes, tails)}


def differing_labels(levels: Mapping[Hashable, Mapping[str, Any]], seeds: Mapping[Hashable, Any] | None = None) -> dict[Hashable, str]:
    """One unique short label per key: the axes whose levels differ between the keys (all of them for a
    single key), then the seed, then the key's suffix, each added only where the previous parts leave
    two keys alike."""
    keys = list(levels)
    axes = list(dict.fromkeys(a for k in keys for a in levels[k]))
    text = {k: {a: level_text(levels[k].get(a)) for a in axes} for k in keys}
    # one key alone has nothing to differ from: it is named by all its axes
    differing = [a for a in axes if len({text[k][a] for k in keys}) > 1 or len(keys) == 1]
    names = short_axis_names(differing)
    labels = {k: SEPARATOR.join(f"{names[a]}={text[k][a]}" for a in differing) for k in keys}
    if seeds is not None:
        _extend_duplicates(labels, {k: f"seed {level_text(seeds.get(k))}" for k in keys})
    _extend_duplicates(labels, {k: f"…{str(k)[-SUFFIX:]}" for k in keys})
    return labels


def _extend_duplicates(labels: dict[Hashable, str], extra: Mapping[Hashable, str]) -> None:
    """Append `extra[k]` to every label shared by two or more keys (or empty), where it tells them apart."""
    groups: dict[str, list[Hashable]] = {}
    for k, label in labels.items():
        groups.setdefault(label, []).append(k)
    for label, group in groups.items():
        if (len(group) > 1 or not label) and (len({extra[k] for k in group}) == len(group)):
            for k in group:
                labels[k] = SEPARATOR.join(p for p in (label, extra[k]) if p)


def run_labels(runs: pd.DataFrame, axes: Sequence[str]) -> dict[str, str]:
    """Short label per run_id of `runs` (the runs on screen): differing axes (and replicate copy), then seed."""
    cols = [a for a in [*axes, "replicate"] if a in runs.columns]
    levels = {r: {a: row[a] for a in cols} for r, row in zip(runs["run_id"], runs[cols].to_dict("records"))}
    seeds = dict(zip(runs["run_id"], runs["seed"])) if "seed" in runs.columns else None
    return differing_labels(levels, seeds)


def variant_labels(names: Iterable[str]) -> dict[str, str]:
    """Short label per variant name (or survey system name): the differing `axis=value` parts.

    Names that are not variant strings keep their own text."""
    names = list(dict.fromkeys(str(n) for n in names))
    parsed = {n: parse_variant(n) for n in names}
    if len(names) < 2 or not all(parsed.values()):
        return {n: n for n in names}
    if any("replicate" in p for p in parsed.values()):  # the A/A copy is named `...,replicate=b`; its twin has none
        parsed = {n: {**p, "replicate": p.get("replicate", "a")} for n, p in parsed.items()}
    return differing_labels(parsed)
