"""`ltxlab results SWEEP`: the run table of a sweep (axes, status, failure reasons, headline metrics, cost)."""

from __future__ import annotations

import argparse
import json
import math

from ablations.cli import UserError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("results", help="print the run table of a sweep from the results store")
    p.add_argument("sweep", nargs="?", help="sweep name (omit to list the sweeps)")
    p.add_argument("--results", default="results", help="results root folder (default ./results)")
    p.add_argument("--json", action="store_true", help="print JSON records instead of a table")
    p.set_defaults(func=run)


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _table(rows: list[dict], columns: list[str]) -> str:
    cells = [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from ablations.report import data_warning_lines
    from ablations.store import StoreError, list_sweeps, load_sweep

    try:
        if not args.sweep:
            table = list_sweeps(args.results)
            if table.empty:
                raise UserError(f"No sweeps under {args.results}; run `ltxlab sweep RECIPE --results {args.results}` first.")
            records = table.to_dict("records")
            print(json.dumps(records, default=str, indent=2) if args.json else _table(records, list(table.columns)))
            return 0
        data = load_sweep(args.results, args.sweep)
    except StoreError as exc:
        raise UserError(str(exc)) from None
    runs = data.runs
    cost = [c for c in runs.columns if c.startswith(("cost.", "speed."))]  # estimate, then measured generation
    headline = [m for m in data.headline_metrics if m in runs.columns]
    columns = ["run_id", *data.axes, "seed", "status", *headline, "wall_time_s", *cost, "failure_reason"]
    columns = [c for c in dict.fromkeys(columns) if c in runs.columns]
    records = runs[columns].astype(object).where(runs[columns].notna(), None).to_dict("records")
    if args.json:
        if "data_warnings" in runs.columns:  # one sentence per line; too wide for the text table, listed below it
            for record, text in zip(records, runs["data_warnings"]):
                record["data_warnings"] = str(text).splitlines() if isinstance(text, str) else []
        print(json.dumps(records, default=str, indent=2))
        return 0
    counts = runs["status"].value_counts().to_dict()
    summary = ", ".join(f"{n} {s}" for s, n in counts.items()) or "no runs yet"
    print(f"sweep {data.name}: {len(runs)} runs ({summary})")
    for note in data.notes:
        print(f"note: {note}")
    if records:
        print(_table(records, columns))
    for line in data_warning_lines(runs):
        print(f"data warning: {line}")
    return 0
