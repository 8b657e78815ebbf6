"""The `ltxlab` command.

Each subcommand lives in its own module with `add_parser(subparsers)`; the module only
imports heavy packages (torch, ray) inside the function that runs the command, so
`ltxlab --help` starts fast. User errors (`ConfigError`, `ClipError`, `UserError`) print
one sentence and exit with status 2; anything else is a bug and keeps its traceback.
Every subcommand's `--help` shows its defaults (`DefaultsFormatter`, set on the whole
parser tree here, so no command module has to remember it); `ltxlab --version` prints the
package version and the git commit.
"""

from __future__ import annotations

import argparse
import importlib
import os
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
    "ablations.commands.convert_checkpoint",
    "ablations.commands.sweep",
    "ablations.commands.config",
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
    from models.tensor_file import TensorFileError

    types_: list[type[BaseException]] = [UserError, ConfigError, UnknownNameError, FileNotFoundError, TensorFileError]
    try:
        from clips.errors import ClipError

        types_.append(ClipError)
    except ImportError:
        pass
    return tuple(types_)


class DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: X)" to an option's help, unless the help already states its default
    or there is nothing to state (None, a flag's False, an empty repeatable list)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help_text = action.help or ""
        default = action.default
        if (default is None or default is argparse.SUPPRESS or default is False or default == []
                or "default" in help_text.lower() or isinstance(action, argparse._SubParsersAction)):
            return help_text
        return super()._get_help_string(action)


def _apply_formatter(parser: argparse.ArgumentParser) -> None:
    """Give `parser` and every subparser below it (commands' own sub-actions too) the defaults formatter."""
    parser.formatter_class = DefaultsFormatter
    for action in parser._actions:
        if action.help is None and action.option_strings and action.default not in (None, False, [], argparse.SUPPRESS):
            action.help = "(default: %(default)s)"  # argparse shows nothing at all for an option without help
        if isinstance(action, argparse._SubParsersAction):
            for sub in set(action.choices.values()):
                _apply_formatter(sub)


def version_text() -> str:
    """'ltxlab 0.1.0 (git 3c3e136, modified)': the installed version and, from a checkout, its commit."""
    from ablations.provenance import package_version, source_commit

    commit, dirty = source_commit()
    where = f" (git {commit[:7]}{', modified' if dirty else ''})" if commit else ""
    return f"ltxlab {package_version()}{where}"


class _VersionAction(argparse.Action):
    """`--version`, computed only when asked (it runs git), unlike argparse's eager version string."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kwargs) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print(version_text())
        parser.exit()


class Parser(argparse.ArgumentParser):
    """argparse, with its usage errors as one sentence (no usage dump); subparsers inherit the class."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: {message}; see `{self.prog} --help`.\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="ltxlab",
        description="Ablate LTX-Video's design choices: train, sample, score, survey, browse.",
    )
    parser.add_argument("--version", action=_VersionAction, help="print the version and git commit, then exit")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # a command not built yet
                continue
            raise
        module.add_parser(subparsers)
    _apply_formatter(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        _check_environment()
        result = args.func(args)
        sys.stdout.flush()  # inside the try: a closed pipe shows up here, not in the interpreter's exit flush
    except BrokenPipeError:
        _quiet_stdout()
        return 1
    except _user_error_types() as exc:
        print(f"ltxlab {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ltxlab: interrupted; finished stages are kept and a rerun resumes.", file=sys.stderr)
        return 130
    return int(result or 0)


def _check_environment() -> None:
    """Settings read from the environment, checked before any work (one sentence each when wrong)."""
    if "LTXLAB_CPU_LINEAR" in os.environ:  # (models.layers imports torch: only when the setting is there to check)
        from models.layers import cpu_linear_backend

        cpu_linear_backend()


def _quiet_stdout() -> None:
    """The reader of our stdout went away (`ltxlab metrics --json | head`): send what is left to
    /dev/null, as Python's signal docs recommend, so the exit flush raises no second error."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout replaced by an object without a file descriptor (tests)
        pass


if __name__ == "__main__":
    # run through the imported module, so commands raising `ablations.cli.UserError` are caught
    # here (as __main__ this file's classes are different objects from the module's)
    from ablations import cli

    sys.exit(cli.main())
