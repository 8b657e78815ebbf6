"""`ltxlab report SWEEP [--json]`: effects with CIs, best variant per metric, cost table."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("report", help="effects table, best variant per metric, cost table of a sweep")
    p.add_argument("sweep", help="sweep name (folder under the results root)")
    p.add_argument("--results", type=Path, default=Path("results"), help="results root (default ./results)")
    p.add_argument("--metrics", default=None, help="comma-separated metrics to show (default: all)")
    p.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ablations.cli import UserError
    from ablations.report import build_report, format_report, report_json
    from ablations.store import StoreError

    if not (args.results / args.sweep / "sweep.json").exists():
        raise UserError(f"No sweep '{args.sweep}' under {args.results}; run `ltxlab results --results {args.results}` "
                        "to list the sweeps there.")
    try:
        report = build_report(args.results, args.sweep, n_boot=args.n_boot)
    except StoreError as exc:
        raise UserError(str(exc)) from None
    if args.json:
        print(json.dumps(report_json(report), indent=2, default=str))
    else:
        print(format_report(report, args.metrics.split(",") if args.metrics else None))
    return 0
