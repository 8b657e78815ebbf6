"""`ltxlab sweep RECIPE` runs an ablation sweep on Ray; `ltxlab sweep submit RECIPE --address
http://HEAD:8265` sends the same command to a cluster as a Ray Job."""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import sys
from pathlib import Path

MAX_RETRIES = 100  # --max-retries: more is a typo's worth of reruns of one failing stage


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from ablations.commands.common import add_config_arg

    p = subparsers.add_parser("sweep", help="run an ablation recipe as Ray tasks (or `sweep submit` to a cluster)",
                              description="ltxlab sweep RECIPE [options]  |  ltxlab sweep submit RECIPE --address URL")
    p.add_argument("recipe", nargs="+", metavar="RECIPE", help="recipe name (vae-core, denoising-decoder, "
                   "text-conditioning, rope, demo, tiny-pair, aa-vae), or `submit RECIPE`")
    p.add_argument("--smoke", action="store_true", help="a few steps per stage: checks the whole sweep in minutes")
    p.add_argument("--results", type=Path, default=Path("results"), help="results root (any shared path on clusters)")
    p.add_argument("--name", default=None, help="sweep folder name (default: the recipe name, plus -smoke)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a base config field for every variant, e.g. --set vae_train.steps=50")
    add_config_arg(p)
    p.add_argument("--seeds", default=None, help="comma-separated seeds (an axis), e.g. 0,1,2")
    p.add_argument("--replicate-baseline", action="store_true",
                   help="also run the baseline variant on seeds shifted by 1000 (A/A): shows the sweep's noise floor")
    p.add_argument("--address", default=None, help="Ray address (default: RAY_ADDRESS, else an embedded Ray); "
                   "for `submit`, the dashboard URL http://HEAD:8265")
    p.add_argument("--max-retries", type=int, default=2, help="retries of a failing stage before it is recorded "
                   f"(0 to {MAX_RETRIES})")
    p.add_argument("--verify", choices=("fast", "full"), default="fast",
                   help="how finished stages are checked before reuse: fast (sizes and mtimes against their DONE "
                   "record; files whose mtime moved are hashed) or full (sha256 of every file)")
    p.add_argument("--force-extend", action="store_true",
                   help="add new seeds or axis levels to a sweep folder whose runs were made with other settings "
                        "(runs that would join a variant it holds under other settings are refused)")
    p.add_argument("--no-report", action="store_true", help="skip the effects table at the end")
    p.add_argument("--quiet", action="store_true", help="no live progress line")
    p.set_defaults(func=run)


def build_sweep(args: argparse.Namespace, recipe: str):
    from ablations.commands.common import check_flag
    from ablations.config_file import apply_file_overrides
    from ablations.recipes import RECIPES
    from ablations.recipes.common import smoke
    from models.config import Int

    # Ray reads -1 as "retry for ever" and refuses other negatives only at the first submit, after the store is written
    check_flag("--max-retries", args.max_retries, Int(0, MAX_RETRIES))
    sweep = RECIPES.get(recipe)()
    base = smoke(sweep.base) if args.smoke else sweep.base
    base = apply_file_overrides(base, args.config, args.overrides)
    name = args.name or (f"{sweep.name}-smoke" if args.smoke else sweep.name)
    seeds = parse_seeds(args.seeds) if args.seeds else sweep.seeds
    replicate = sweep.replicate_baseline or args.replicate_baseline  # a recipe's own A/A stays on
    return dataclasses.replace(sweep, base=base, name=name, seeds=seeds, replicate_baseline=replicate)


def run(args: argparse.Namespace) -> int:
    from ablations.cli import UserError

    if args.recipe[0] == "submit":
        if len(args.recipe) != 2:
            raise UserError("Use `ltxlab sweep submit RECIPE --address http://HEAD:8265`.")
        return submit(args, args.recipe[1])
    if len(args.recipe) != 1:
        raise UserError(f"Give one recipe name, not {' '.join(args.recipe)}.")
    sweep = build_sweep(args, args.recipe[0])
    from ablations.runner import run_sweep

    print(f"ltxlab sweep {sweep.recipe}: results in {args.results.resolve() / sweep.name}", flush=True)
    outcome = run_sweep(sweep, args.results, address=args.address, max_retries=args.max_retries,
                        progress=not args.quiet, verify=args.verify, extend=args.force_extend)
    print(f"\nSweep {sweep.name}: {outcome.runs_done} runs done, {outcome.runs_failed} failed; "
          f"{outcome.executed} stages ran, {outcome.skipped} reused from earlier runs, {outcome.failed} failed; "
          f"wall {outcome.wall_s:.1f} s on {outcome.slots} slots.")
    if not args.no_report:
        from ablations.report import build_report, format_report

        print()
        print(format_report(build_report(args.results, sweep.name)))
    root = args.results
    print(f"\nResults: {(root / sweep.name).resolve()}")
    print(f"  run table:   ltxlab results {sweep.name} --results {root}")
    print(f"  dashboard:   ltxlab dashboard --results {root}")
    print(f"  survey:      ltxlab survey create {sweep.name}-study --sweep {sweep.name} --results {root} "
          f"--db survey.db && ltxlab survey serve --db survey.db")
    return 0 if outcome.runs_failed == 0 else 1


def submit(args: argparse.Namespace, recipe: str) -> int:
    """Submit `ltxlab sweep RECIPE ...` as a Ray Job; the cluster's driver runs the same code."""
    from ablations.cli import UserError

    build_sweep(args, recipe)  # validate the recipe and overrides here, before anything is sent
    address = args.address or os.environ.get("RAY_ADDRESS")
    if not address:
        raise UserError("`sweep submit` needs the cluster's dashboard address: --address http://HEAD:8265.")
    from ray.job_submission import JobSubmissionClient

    entrypoint = job_entrypoint(args, recipe)
    try:
        client = JobSubmissionClient(address)
    except (ConnectionError, OSError, ValueError, RuntimeError) as exc:  # unreachable, refused, not a dashboard
        raise UserError(f"No Ray dashboard answers at {address} ({_first_line(exc)}); pass the head's dashboard "
                        f"URL, e.g. --address http://HEAD:8265, and check that the head is up.") from None
    job_id = _submit_when_an_agent_is_up(client, address, entrypoint, job_runtime_env())
    print(f"Submitted {job_id} to {address}: {entrypoint}")
    print(f"  follow it:  ray job logs --address {address} --follow {job_id}")
    return 0


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def _submit_when_an_agent_is_up(client, address: str, entrypoint: str, runtime_env: dict,  # noqa: ANN001
                                wait_s: float = 60.0) -> str:
    """Submit the job; a head that has just started answers "No available agent" until its job agent
    registers, so that answer is retried for up to `wait_s` seconds. Anything else is one sentence."""
    import time

    from ablations.cli import UserError

    deadline = time.monotonic() + wait_s
    while True:
        try:
            return client.submit_job(entrypoint=entrypoint, runtime_env=runtime_env)
        except (ConnectionError, OSError, RuntimeError) as exc:
            if "No available agent" in str(exc) and time.monotonic() < deadline:
                time.sleep(2.0)
                continue
            raise UserError(f"The Ray head at {address} refused the job ({_first_line(exc)}); check "
                            f"`ray status` on the head and retry.") from None


def parse_seeds(text: str) -> tuple[int, ...]:
    """`--seeds 0,1,2` as a tuple of distinct non-negative ints; anything else is one sentence."""
    from ablations.cli import UserError

    parts = [part.strip() for part in text.split(",")]
    if not all(part.isdigit() for part in parts):
        raise UserError(f"--seeds takes comma-separated non-negative integers such as 0,1,2, not {text!r}.")
    seeds = tuple(int(part) for part in parts)
    if len(set(seeds)) != len(seeds):
        raise UserError(f"--seeds lists a seed twice ({text!r}); each seed is one replicate, give each once.")
    return seeds


def job_entrypoint(args: argparse.Namespace, recipe: str) -> str:
    from ablations.config_file import overrides_from_file

    parts = ["python", "-m", "ablations.cli", "sweep", recipe, "--results", str(args.results), "--quiet"]
    if args.smoke:
        parts.append("--smoke")
    if args.name:
        parts += ["--name", args.name]
    if args.seeds:
        parts += ["--seeds", args.seeds]
    if args.replicate_baseline:
        parts.append("--replicate-baseline")
    # the file's fields travel as --set strings (the cluster has the code, not the user's file)
    for override in (overrides_from_file(args.config) if args.config else []) + args.overrides:
        parts += ["--set", override]
    parts += ["--max-retries", str(args.max_retries)]
    if args.verify != "fast":
        parts += ["--verify", args.verify]
    if args.force_extend:
        parts.append("--force-extend")
    return " ".join(shlex.quote(p) for p in parts)


def job_runtime_env() -> dict:
    """Ship this checkout (code only: no venv, results or caches) to the cluster."""
    repo = Path(__file__).resolve().parents[2]
    return {
        "working_dir": str(repo),
        "excludes": [".venv", "results", ".git", "**/__pycache__", "*.mp4", ".pytest_cache"],
        "env_vars": {"PYTHONPATH": "."},
    }


if __name__ == "__main__":
    sys.exit(0)
