"""`ltxlab plan SWEEP --effect psnr=0.2`: seeds and held-out sources needed to detect an effect.

The variance components (training noise between seeds, effect variation between source
videos, residual clip noise) are measured on an earlier sweep: from its A/A check when it
has one (a variant against an identical copy: the cleanest measurement), else the largest
of each component over its main effects (conservative). The seed variance rests on S - 1
degrees of freedom and often estimates 0 at 3 seeds, which would promise that more sources
alone will do; the plan sizes with its 80% upper confidence limit instead
(the report's `var_seed_upper`, Browne 1995). `evaluation.crossed.plan_sizes`
turns the components into power at other designs with the same estimator the report uses.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("plan", help="seeds and held-out sources needed to detect an effect, from an earlier sweep",
                              description="ltxlab plan SWEEP --effect psnr=0.2[,ssim=0.01]")
    p.add_argument("sweep", help="an earlier sweep whose measured variances size the next one")
    p.add_argument("--effect", required=True, help="comma-separated METRIC=SIZE targets, e.g. psnr=0.2,ssim=0.005")
    p.add_argument("--results", type=Path, default=Path("results"), help="results root (default ./results)")
    p.add_argument("--power", type=float, default=0.8, help="target power (default 0.8)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def parse_effects(text: str) -> dict[str, float]:
    from ablations.cli import UserError

    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        try:
            size = float(value)
        except ValueError:
            size = float("nan")
        if not sep or not name or not math.isfinite(size) or size <= 0:
            raise UserError(f"--effect takes METRIC=SIZE pairs with a positive size, e.g. psnr=0.2; got {part!r}.")
        out[name] = size
    if not out:
        raise UserError("--effect takes METRIC=SIZE pairs, e.g. --effect psnr=0.2.")
    return out


def components(report, metric: str) -> tuple[dict, str] | None:
    """The variance components of `metric` and where they come from, or None when none were estimable."""
    aa = report.replicate[report.replicate["metric"] == metric] if len(report.replicate) else report.replicate
    if len(aa) and aa.iloc[0]["status"] == "estimated":
        row = aa.iloc[0]
        return ({k: float(row[k]) for k in ("var_seed", "var_seed_upper", "var_source", "var_resid")} | {"seeds": int(row["n_seeds"]), "sources": int(row["n_sources"])},
                "the A/A check (baseline vs its replicate)")  # fmt: skip
    rows = report.main[(report.main["metric"] == metric) & (report.main["status"] == "estimated")]
    if not len(rows):
        return None
    comp = {k: float(rows[k].max()) for k in ("var_seed", "var_seed_upper", "var_source", "var_resid")}
    return comp | {"seeds": int(rows["n_seeds"].max()), "sources": int(rows["n_sources"].max())}, \
        f"the largest of each component over {len(rows)} main effects (no A/A check in this sweep)"


def run(args: argparse.Namespace) -> int:
    from ablations.cli import UserError
    from ablations.store import StoreError, load_sweep
    from evaluation.crossed import PLAN_SEED_LEVEL, plan_sizes
    from evaluation.stats import factorial_effects

    targets = parse_effects(args.effect)
    if not 0.5 <= args.power < 1.0:
        raise UserError(f"--power must be in [0.5, 1), got {args.power}.")
    try:
        data = load_sweep(args.results, args.sweep)
    except StoreError as exc:
        raise UserError(str(exc)) from None
    scored = set(data.metrics["metric"].unique()) if len(data.metrics) else set()
    unknown = [m for m in targets if m not in scored]
    if unknown:
        raise UserError(f"Sweep {args.sweep} has no scores for {', '.join(unknown)}; metrics there: {', '.join(sorted(scored)) or 'none yet'}.")
    report = factorial_effects(data.metrics, data.runs, data.axes, axis_levels=data.axis_levels, metric_names=list(targets),
                               higher_is_better={m: data.higher_is_better(m) for m in targets},
                               replicate_baseline=data.sweep.get("replicate"))  # fmt: skip
    plans = []
    for metric, size in targets.items():
        found = components(report, metric)
        if found is None:
            plans.append({"metric": metric, "effect": size, "error": "no estimable variance: the sweep needs 2 or more seeds"})
            continue
        comp, source = found
        plan = plan_sizes(size, comp["var_seed_upper"], comp["var_source"], comp["var_resid"], comp["seeds"], comp["sources"], power=args.power)
        plans.append({"metric": metric, "effect": size, "from": source, **comp, **plan})
    if args.json:
        print(json.dumps({"sweep": args.sweep, "power": args.power, "plans": plans}, indent=2, default=str))
        return 0
    print(f"Planning from sweep {args.sweep} ({data.sweep.get('recipe', '?')}), target power {args.power:.0%}, two-sided 5% test:")
    for p in plans:
        if "error" in p:
            print(f"  {p['metric']} = {p['effect']:g}: {p['error']}.")
            continue
        print(f"\n  {p['metric']}: detect {p['effect']:g}; variances from {p['from']}: seed {p['var_seed']:.3g} "
              f"(planned with {p['var_seed_upper']:.3g}, its {PLAN_SEED_LEVEL:.0%} upper confidence limit from {p['seeds']} "
              f"seeds), source {p['var_source']:.3g}, residual {p['var_resid']:.3g}")
        print(f"    now ({p['seeds']} seeds x {p['sources']} sources): power {p['power_now']:.0%}")
        seeds = f"{p['seeds_needed']} seeds at {p['sources']} sources" if p["seeds_needed"] else f"more than 64 seeds at {p['sources']} sources"
        sources = (f"{p['sources_needed']} sources at {p['seeds']} seeds" if p["sources_needed"]
                   else f"no number of sources at {p['seeds']} seeds (the seed term alone keeps it below target)")  # fmt: skip
        both = (f"{p['both']['seeds']} seeds x {p['both']['sources']} sources" if p["both"]
                else f"no design within 64 seeds x {16 * p['sources']} sources")  # fmt: skip
        print(f"    needs {seeds}, or {sources}; fewest seeds with more sources too: {both}")
        print("    seeds x sources -> power: " + ", ".join(f"{g['seeds']}x{g['sources']} {g['power']:.0%}" for g in p["grid"]))
        if p["seeds_needed"]:
            recipe = data.sweep.get("recipe") or args.sweep
            seeds_arg = ",".join(str(s) for s in range(p["seeds_needed"])) if p["seeds_needed"] <= 8 else f"$(seq -s, 0 {p['seeds_needed'] - 1})"
            print(f"    e.g. ltxlab sweep {recipe} --seeds {seeds_arg}")
    return 0
