"""What the training and sampling commands share: `--threads`, `--config`, flag range checks
and progress lines for logs.

Not a subcommand (`cli.COMMAND_MODULES` does not list it); imports stay light, so
`ltxlab --help` stays fast.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Callable, TextIO

PROGRESS_EVERY_S = 10.0  # seconds between progress lines in a log: often enough to see it move, rarely enough to read
MAX_THREADS = 1024


def add_threads_arg(p: argparse.ArgumentParser) -> None:
    from ablations.threads import default_threads

    p.add_argument("--threads", type=int, default=default_threads(), metavar="N",
                   help="torch CPU threads; more than the idle cores slows training down many times over (default: "
                        "the available cores minus the load average, 1 to 8; here and now %(default)s)")


def add_config_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, default=None, metavar="FILE",
                   help="TOML or YAML file of config fields (nested tables = dotted keys, as --set takes; "
                        "`ltxlab config show RECIPE --format toml` writes one); the file wins over the other "
                        "flags, --set wins over the file")


def check_flag(flag: str, value: Any, valid: Any) -> None:
    """Refuse a flag's value outside `valid` (a `models.config.FieldRange`) in one sentence."""
    from ablations.cli import UserError
    from models.config import out_of_range

    if not valid.accepts(value):
        raise UserError(out_of_range(flag, valid, value))


def apply_threads(args: argparse.Namespace) -> None:
    """Check `--threads` and set torch's thread pools to it."""
    from ablations.threads import use_threads
    from models.config import Int

    check_flag("--threads", args.threads, Int(1, MAX_THREADS))
    use_threads(args.threads)


def apply_command_overrides(cfg: Any, args: argparse.Namespace) -> Any:
    """`cfg` with `--config` then `--set` applied; a bad field in the file is named with its file and line."""
    from ablations.config_file import apply_file_overrides

    return apply_file_overrides(cfg, args.config, args.overrides)


def check_resumable(out: Path, config: Any, steps: int) -> None:
    """Refuse, in one sentence, an --out whose checkpoints were trained with another config (or record
    none), before any data is read: resuming them would write one run's weights under another's header.

    Unlike a sweep's stage folder, which is keyed by its config, --out can be any folder.
    """
    from ablations.cli import UserError
    from ablations.training.checkpoint import ConfigMismatchError, check_config

    try:
        check_config(out, config, steps, unrecorded_ok=False)
    except ConfigMismatchError as exc:
        raise UserError(str(exc)) from None


def write_run_config(out: Path, cfg: Any) -> None:
    """`out/run_config.json` (`eval-recon` reads the clip shape from it), atomically, once the checks passed."""
    from ablations.store import atomic_write_bytes

    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "run_config.json", cfg.to_json().encode())


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class ProgressLines:
    """`on_step(step, total, losses)` for the training stages: one line every `every` seconds
    (and at the first and last step) with step, losses, it/s and ETA.

    For logs and pipes, where the stage's tqdm bar is off (it needs a terminal on stderr).
    The rate counts only the steps this process ran, so a resumed run's ETA is honest.
    """

    def __init__(self, label: str, every: float = PROGRESS_EVERY_S, stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.label, self.every, self.stream, self.clock = label, every, stream, clock
        self.first_step: int | None = None
        self.started = self.last = 0.0

    def __call__(self, step: int, total: int, losses: dict[str, float]) -> None:
        now = self.clock()
        if self.first_step is None:  # the clock starts after the first step: start-up is not a step
            self.first_step, self.started = step, now
        elif now - self.last < self.every and step < total:
            return
        self.last = now
        rate = (step - self.first_step) / (now - self.started) if now > self.started else 0.0
        parts = [f"{self.label}: step {step}/{total} ({100 * step / max(total, 1):.0f}%)"]
        parts += [f"{k} {v:.4g}" for k, v in list(losses.items())[:3]]
        parts += [f"{rate:.3g} it/s"] if rate > 0 else []
        parts += ["done"] if step >= total else [f"ETA {_duration((total - step) / rate)}"] if rate > 0 else []
        print("  ".join(parts), file=self.stream or sys.stderr, flush=True)


def progress_lines(label: str) -> ProgressLines | None:
    """Progress lines when stderr is not a terminal (a log, a pipe, nohup); None on a terminal, where
    the stages draw their tqdm bar instead, so exactly one of the two shows."""
    return None if sys.stderr.isatty() else ProgressLines(label)
