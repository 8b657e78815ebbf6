"""The `ltxlab` command.

Each subcommand lives in its own module with `add_parser(subparsers)`; the module only
imports heavy packages (torch, ray) inside the function that runs the command, so
`ltxlab --help` starts fast. User errors (`ConfigError`, `ClipError`, `UserError`) print
one sentence and exit with status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand modules, in the order `ltxlab --help` lists them
COMMAND_MODULES = [
    "ablations.commands.inspect",
    "ablations.commands.train_vae",
    "ablations.commands.eval_recon",
    "ablations.commands.metrics",
    "ablations.commands.train_dit",
    "ablations.commands.sample",
    "ablations.commands.generate",
    "ablations.commands.sweep",
    "ablations.commands.results",
    "ablations.commands.report",
    "ablations.commands.export",
    "ablations.commands.plan",
    "ablations.commands.curate",
    "ablations.commands.aesthetic",
    "survey.cli",
    "ablations.commands.dashboard",
]


class UserError(Exception):
    """Bad input from the user; the message is one sentence that says what to fix."""


def _user_error_types() -> tuple[type[BaseException], ...]:
    from models.config import ConfigError
    from models.registry import UnknownNameError

    types_: list[type[BaseException]] = [UserError, ConfigError, UnknownNameError, FileNotFoundError]
    try:
        from clips.errors import ClipError

        types_.append(ClipError)
    except ImportError:
        pass
    return tuple(types_)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ltxlab",
        description="Ablate LTX-Video's design choices: train, sample, score, survey, browse.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # a command not built yet
                continue
            raise
        module.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        result = args.func(args)
    except _user_error_types() as exc:
        print(f"ltxlab {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ltxlab: interrupted; finished stages are kept and a rerun resumes.", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    # run through the imported module, so commands raising `ablations.cli.UserError` are caught
    # here (as __main__ this file's classes are different objects from the module's)
    from ablations import cli

    sys.exit(cli.main())
