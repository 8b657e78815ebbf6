"""`ltxlab export SWEEP --to tensorboard|mlflow|wandb`: a sweep's runs as offline tracker runs (ablations/export.py)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export", help="export a sweep's runs (config, curves, metrics, samples) to TensorBoard, MLflow or W&B, offline",
        description="Write every run of a sweep as one tracker run: config (dotted keys), provenance tags, training "
        "curves, final metrics (mean, std, n per split and metric) and sample videos. Offline only: TensorBoard event "
        "files, an MLflow file store, W&B offline run folders. Needs the export extra: pip install 'ltxlab[export]'.")
    p.add_argument("sweep", help="sweep name (folder under the results root)")
    p.add_argument("--to", required=True, choices=("tensorboard", "mlflow", "wandb"), dest="tracker",
                   help="tracker format to write")
    p.add_argument("--results", type=Path, default=Path("results"), help="results root (default ./results)")
    p.add_argument("--out", type=Path, default=Path("exports"),
                   help="export folder (default ./exports): tensorboard/<sweep>/, mlruns/ or wandb/ go inside; "
                   "exporting again replaces the same runs there")
    p.add_argument("--runs", nargs="+", metavar="RUN_ID", default=None, help="export only these runs (default: all)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ablations.cli import UserError
    from ablations.export import ExportError, export_sweep
    from ablations.store import StoreError

    try:
        result = export_sweep(args.results, args.sweep, args.tracker, args.out, args.runs)
    except (ExportError, StoreError) as exc:
        raise UserError(str(exc)) from None
    for note in result.notes:
        print(f"note: {note}")
    print(f"exported {len(result.runs)} runs of sweep {args.sweep} to {result.tracker}: {result.path}")
    print(f"open with: {result.view}")
    return 0
