"""`ltxlab report SWEEP [--json]`: effects with intervals and corrected verdicts, the A/A check, best variant, cost."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("report", help="effects table, best variant per metric, cost table of a sweep")
    p.add_argument("sweep", help="sweep name (folder under the results root)")
    p.add_argument("--results", type=Path, default=Path("results"), help="results root (default ./results)")
    p.add_argument("--metrics", default=None, help="comma-separated metrics to analyse (default: the headline metrics); "
                   "they are the family the correction adjusts over")
    p.add_argument("--correction", choices=("holm", "bh", "none"), default="holm",
                   help="multiple-comparison correction over the report's tests: Holm (family-wise error, default), "
                   "Benjamini-Hochberg (false-discovery rate) or none")
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
        chosen = [m for m in args.metrics.split(",") if m] if args.metrics else None
        report = build_report(args.results, args.sweep, metrics=chosen, correction=args.correction)
        if chosen:
            unknown = [m for m in chosen if m not in report["metrics"]]
            if unknown:
                raise UserError(f"Sweep {args.sweep} has no scores for {', '.join(unknown)}; metrics there: "
                                f"{', '.join(report['available_metrics'])}.")
    except StoreError as exc:
        raise UserError(str(exc)) from None
    if args.json:
        print(json.dumps(report_json(report), indent=2, default=str))
    else:
        print(format_report(report))
    return 0
