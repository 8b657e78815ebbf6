"""`ltxlab dashboard`: start the Streamlit dashboard on the results store (and a survey database, curated datasets)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from ablations.cli import UserError

APP = Path(__file__).resolve().parents[2] / "dashboard" / "app.py"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("dashboard", help="browse sweeps, effects, samples, cost, survey results and curated datasets in Streamlit")
    p.add_argument("--results", default="results", help="results root folder (default ./results)")
    p.add_argument("--survey-db", default=None, help="survey database (SQLite path or SQLAlchemy URL) for the Survey page")
    p.add_argument("--data", nargs="+", default=[], metavar="DIR",
                   help="curated datasets for the Data page: folders written by `ltxlab curate --out`, or folders holding them")
    p.add_argument("--port", type=int, default=8501, help="port to listen on (default 8501)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; 0.0.0.0 exposes it to the network)")
    p.set_defaults(func=run)


def streamlit_command(app: Path, host: str, port: int) -> list[str]:
    """The `streamlit run` command line: headless, no usage stats, no file watcher (results change, code does not)."""
    return [
        sys.executable, "-m", "streamlit", "run", str(app),
        "--server.headless", "true", "--server.address", host, "--server.port", str(port),
        "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
    ]  # fmt: skip


def dashboard_env(results: str, survey_db: str | None, data: Sequence[str] = ()) -> dict[str, str]:
    """Environment for the app: the paths travel as LTXLAB_RESULTS / LTXLAB_SURVEY_DB / LTXLAB_DATA (os.pathsep-joined)."""
    env = dict(os.environ)
    env["LTXLAB_RESULTS"] = str(Path(results).expanduser().resolve())
    if survey_db:
        env["LTXLAB_SURVEY_DB"] = survey_db if "://" in survey_db else str(Path(survey_db).expanduser().resolve())
    if data:
        env["LTXLAB_DATA"] = os.pathsep.join(str(Path(d).expanduser().resolve()) for d in data)
    return env


def run(args: argparse.Namespace) -> int:
    if not 0 < args.port < 65536:
        raise UserError(f"--port {args.port} is not a TCP port; use a number between 1 and 65535.")
    if args.survey_db and "://" not in args.survey_db and not Path(args.survey_db).exists():
        raise UserError(f"--survey-db {args.survey_db} does not exist; create a study with `ltxlab survey create` or fix the path.")
    missing = [d for d in args.data if not Path(d).expanduser().is_dir()]
    if missing:
        raise UserError(f"--data {missing[0]} is not a folder; pass the folder `ltxlab curate --out` wrote, or one holding several.")
    if not Path(args.results).is_dir():
        print(f"note: {args.results} does not exist yet; the dashboard will show sweeps once `ltxlab sweep` writes them.", file=sys.stderr)
    print(f"ltxlab dashboard: http://{args.host}:{args.port}  (results {args.results}; Ctrl-C stops it)", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    # exec, not a child: this process becomes the Streamlit server, so SIGTERM, SIGINT, SIGHUP (and even
    # SIGKILL) reach the server itself; a child left behind by a killed parent kept serving and held the port
    os.execve(sys.executable, streamlit_command(APP, args.host, args.port),
              dashboard_env(args.results, args.survey_db, args.data))
