"""`ltxlab survey create|serve|report|export`: blinded pairwise human-preference studies.

Heavy imports (PyAV, pandas, starlette, uvicorn) happen inside the command functions so that
`ltxlab --help` stays fast. No torch anywhere in the survey package.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import sys
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("survey", help="blinded pairwise human-preference surveys",
                                   description="Build, serve and analyse blinded pairwise video-preference studies.")
    sub = parser.add_subparsers(dest="survey_command", metavar="ACTION", required=True)

    create = sub.add_parser("create", help="build a study from a sweep's samples or a folder of videos")
    create.add_argument("name", help="study name (researcher-facing; raters never see it)")
    source = create.add_mutually_exclusive_group(required=True)
    source.add_argument("--sweep", help="sweep name in the results store")
    source.add_argument("--from-dir", type=Path, help="folder DIR/<system>/<prompt_id>.mp4 with DIR/prompts.jsonl")
    create.add_argument("--variants", nargs="+", help="only these variants of the sweep (default: all done)")
    create.add_argument("--results", type=Path, default=Path("results"), help="results store (default ./results)")
    create.add_argument("--db", required=True, help="SQLite file path or SQLAlchemy URL")
    create.add_argument("--media-dir", type=Path, help="where blinded media go (default: <db>-media next to the db)")
    create.add_argument("--question", action="append", dest="questions",
                        help="question to ask per pair (repeat for several; default 'Which video is better overall?')")
    create.add_argument("--pairs-per-rater", type=int, default=10)
    create.add_argument("--gold-per-rater", type=int, default=2,
                        help=f"gold pairs mixed in per rater (0: none; at most {GOLD_ITEMS}, the gold items made)")
    create.add_argument("--gold-fail-max", type=float, default=0.25,
                        help="flag raters failing more than this share of their gold pairs (0 to 1)")
    create.add_argument("--adaptive", action="store_true", help="favour system pairs with the most uncertain outcome")
    create.add_argument("--min-watch-fraction", type=float, default=0.9,
                        help="refuse votes faster than this x the longer clip's duration (0 to 1; 0 disables)")
    create.add_argument("--max-raters", type=int, help="admit at most this many raters (those who voted; 1 or more)")
    create.add_argument("--no-require-delivery", dest="require_delivery", action="store_false",
                        help="accept votes without checking that both videos were delivered to the rater")
    create.add_argument("--max-raters-per-client", type=int, default=3,
                        help="raters per client address and per browser cookie (0: no cap; default 3)")
    create.add_argument("--start-burst", type=int, default=10,
                        help="rater starts one address may make at once (0: no limit; default 10)")
    create.add_argument("--start-refill-s", type=float, default=3.0,
                        help="seconds until one more start is allowed per address (default 3)")
    create.add_argument("--completion-url", help="platform completion URL; '{code}' is replaced by the code")
    create.add_argument("--title", default="Video comparison study", help="page title shown to raters")
    create.add_argument("--media-format", choices=["mp4", "webm"], default="mp4",
                        help="mp4 (H.264, default) or webm (VP9) for browsers without H.264")
    create.add_argument("--seed", type=int, default=0)
    create.set_defaults(func=run_create)

    serve = sub.add_parser("serve", help="run the survey web app")
    serve.add_argument("--db", required=True, help="SQLite file path or SQLAlchemy URL")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--admin-token", help="token for /admin (default: a random one, printed)")
    serve.add_argument("--synchronous", choices=["NORMAL", "FULL"], default="NORMAL",
                       help="SQLite fsync policy: NORMAL survives a killed server, FULL also a power cut")
    serve.add_argument("--workers", type=int, default=1,
                       help="server processes (uvicorn workers sharing the port; the database keeps them consistent)")
    serve.add_argument("--forwarded-allow-ips", metavar="IP[,IP...]",
                       help="behind a reverse proxy: trust X-Forwarded-For from these proxy addresses or networks "
                            "only (e.g. 127.0.0.1 for nginx on this machine), so the per-address rater cap and start "
                            "limit count each rater's own address; default: no proxy is trusted")
    serve.add_argument("--log-level", default="warning")
    serve.set_defaults(func=run_serve)

    report = sub.add_parser("report", help="win rates, Bradley-Terry ratings, agreement")
    report.add_argument("name")
    report.add_argument("--db", required=True)
    report.add_argument("--json", action="store_true", help="print JSON instead of tables")
    report.add_argument("--include-flagged", action="store_true", help="keep raters who failed gold pairs")
    report.add_argument("--question", type=int, default=0, help="question index (default 0)")
    report.add_argument("--both-bad", choices=["tie", "drop"], default="tie")
    report.add_argument("--n-boot", type=int, default=1000,
                        help=f"Bradley-Terry pigeonhole bootstrap resamples over raters, prompts and seed blocks "
                             f"(at least {MIN_BOOT}; default 1000)")
    report.add_argument("--correction", choices=["holm", "bh", "none"], default="holm",
                        help="multiple-comparison adjustment over the matrix's pairs: holm (family-wise error, "
                             "default), bh (false-discovery rate) or none")
    report.set_defaults(func=run_report)

    export = sub.add_parser("export", help="every vote as CSV or Parquet")
    export.add_argument("name")
    export.add_argument("--db", required=True)
    export.add_argument("--format", choices=["csv", "parquet"], default="csv")
    export.add_argument("--out", type=Path, help="output file (default: <name>-votes.<format>)")
    export.set_defaults(func=run_export)

    parser.set_defaults(func=lambda args: parser.print_help() or 0)


GOLD_ITEMS = 4  # survey.build.StudyOptions.gold_items (not imported: `ltxlab --help` stays light)
MIN_BOOT = 50  # with fewer, a 95% percentile interval rests on its one or two most extreme resamples


def _user_error(message: str) -> Exception:
    from ablations.cli import UserError

    return UserError(message)


def _default_media_dir(db: str) -> Path:
    if "://" in db:
        raise _user_error("With a database URL, pass --media-dir (a folder the server can read).")
    path = Path(db).expanduser().resolve()
    return path.with_name(path.stem + "-media")


def _check_study_flags(args: argparse.Namespace) -> None:
    """One sentence for a study option that cannot work, before any source is read or encoded."""
    if args.gold_per_rater > GOLD_ITEMS:
        raise _user_error(f"--gold-per-rater must be at most {GOLD_ITEMS} (the gold items a study makes; a rater sees "
                          f"each gold pair once), got {args.gold_per_rater}.")
    if not 0.0 <= args.gold_fail_max <= 1.0:
        raise _user_error(f"--gold-fail-max is a share of gold pairs, between 0 and 1, got {args.gold_fail_max}.")
    if not 0.0 <= args.min_watch_fraction <= 1.0:
        raise _user_error(f"--min-watch-fraction is a fraction of the clip's duration, between 0 and 1, got "
                          f"{args.min_watch_fraction}.")
    if args.max_raters is not None and args.max_raters < 1:
        raise _user_error(f"--max-raters must be 1 or more (leave it out for no cap), got {args.max_raters}.")


def run_create(args: argparse.Namespace) -> int:
    from survey import build
    from survey.db import make_engine

    for flag, value, low in (("--pairs-per-rater", args.pairs_per_rater, 1), ("--gold-per-rater", args.gold_per_rater, 0),
                             ("--max-raters-per-client", args.max_raters_per_client, 0),
                             ("--start-burst", args.start_burst, 0)):
        if value < low:
            raise _user_error(f"{flag} must be {'positive' if low else 'zero or more'}, got {value}.")
    if not args.start_refill_s > 0:
        raise _user_error(f"--start-refill-s must be a positive number of seconds, got {args.start_refill_s}.")
    _check_study_flags(args)
    try:
        if args.sweep:
            sources = build.collect_from_sweep(args.results, args.sweep, args.variants)
        else:
            if not args.from_dir.is_dir():
                raise _user_error(f"{args.from_dir} is not a folder; pass DIR laid out as DIR/<system>/<prompt_id>.mp4.")
            sources = build.collect_from_dir(args.from_dir)
        options = build.StudyOptions(
            questions=tuple(args.questions or [build.DEFAULT_QUESTION]), pairs_per_rater=args.pairs_per_rater,
            gold_per_rater=args.gold_per_rater, gold_fail_max=args.gold_fail_max, adaptive=args.adaptive,
            min_watch_fraction=args.min_watch_fraction, max_raters=args.max_raters,
            require_delivery=args.require_delivery, max_raters_per_client=args.max_raters_per_client or None,
            start_burst=args.start_burst or None, start_refill_s=args.start_refill_s,
            completion_url=args.completion_url, title=args.title, media_format=args.media_format, seed=args.seed)
        summary = build.create_study(_open_database(args.db, "NORMAL"), args.name, sources,
                                     args.media_dir or _default_media_dir(args.db), options)
    except build.StudyError as exc:
        raise _user_error(str(exc)) from None
    print(json.dumps(summary, indent=2))
    if "note" in summary:
        print(f"Note: {summary['note']}")
    print(f"Serve it with: ltxlab survey serve --db {args.db}   then open http://127.0.0.1:8000/s/{summary['public_id']}"
          f"  (crowd platforms: append ?pid=<participant id>)")
    return 0


# `serve --workers N` hands the app to uvicorn's worker processes as an import string, so the
# settings travel in the environment (inherited by the spawned workers, never on a command line).
_ENV_DB, _ENV_TOKEN, _ENV_SYNC, _ENV_PARENT = ("LTXLAB_SURVEY_SERVE_DB", "LTXLAB_SURVEY_SERVE_TOKEN",
                                               "LTXLAB_SURVEY_SERVE_SYNCHRONOUS", "LTXLAB_SURVEY_SERVE_PARENT")
MAX_WORKERS = 64


def _open_database(db: str, synchronous: str):  # noqa: ANN202 - sqlalchemy Engine
    """The engine with its schema, checked writable, or one sentence saying why it cannot be used."""
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError

    from survey.db import DatabaseNotWritable, check_writable, make_engine

    if "://" not in db and not Path(db).expanduser().resolve().parent.is_dir():
        raise _user_error(f"The folder of --db {db} does not exist; create it first or pass a path in an existing "
                          f"folder.")
    try:
        engine = make_engine(db, synchronous=synchronous)
        check_writable(engine)  # a read-only database would otherwise answer every vote 500
        return engine
    except ModuleNotFoundError as exc:
        raise _user_error(f"The database driver {exc.name!r} is not installed; for PostgreSQL run "
                          f"pip install 'psycopg[binary]' and use a postgresql+psycopg:// URL.") from None
    except (ArgumentError, NoSuchModuleError) as exc:
        raise _user_error(f"--db {db!r} is neither a file path nor a valid SQLAlchemy URL ({exc}).") from None
    except DatabaseNotWritable as exc:
        raise _user_error(str(exc)) from None
    except OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0].rstrip(".") if exc.orig else str(exc)
        raise _user_error(f"Cannot open the survey database {db!r} ({reason}); check the path or URL and "
                          f"that it is writable.") from None


def _print_urls(engine, args: argparse.Namespace, token: str) -> None:  # noqa: ANN001 - sqlalchemy Engine
    """The rater link of every study and the admin page, so nobody has to dig them out of the database."""
    from sqlalchemy import select

    from survey import db as t

    with engine.connect() as conn:
        studies = conn.execute(select(t.studies.c.name, t.studies.c.public_id).order_by(t.studies.c.id)).all()
    base = f"http://{args.host}:{args.port}"
    links = ", ".join(f"{base}/s/{s.public_id} ({s.name})" for s in studies)
    print(f"Rater links: {links}" if studies else
          "Rater links: none yet (this database has no study; `ltxlab survey create` adds one).", flush=True)
    shown = "given with --admin-token" if args.admin_token else token
    print(f"Admin page: {base}/admin  (token: {shown}; {args.workers} worker process(es))", flush=True)


def _trusted_proxies(value: str | None) -> list[str] | None:
    """--forwarded-allow-ips as a list of addresses or networks, or one sentence saying which entry is wrong."""
    import ipaddress

    if value is None:
        return None
    entries = [e.strip() for e in value.split(",") if e.strip()]
    for entry in entries:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise _user_error(f"--forwarded-allow-ips takes IP addresses or networks separated by commas (the proxy's "
                              f"address as the server sees it, e.g. 127.0.0.1); {entry!r} is neither.") from None
    if not entries:
        raise _user_error("--forwarded-allow-ips is empty; name the proxy's address, e.g. 127.0.0.1.")
    return entries


def serve_options(args: argparse.Namespace) -> dict:
    """uvicorn's settings for `serve`.

    X-Forwarded-For is honoured only from the proxies named by --forwarded-allow-ips (uvicorn then
    takes the last address in the header that is not a trusted proxy): trusted from anyone, it
    would let a client claim any address and spoof the per-address rater cap and start limit.
    """
    from survey.http import CoalescingHttpToolsProtocol

    proxies = _trusted_proxies(args.forwarded_allow_ips)
    return dict(host=args.host, port=args.port, log_level=args.log_level, access_log=False,
                proxy_headers=proxies is not None, forwarded_allow_ips=proxies, server_header=False,
                date_header=False, http=CoalescingHttpToolsProtocol)


def run_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from survey.app import create_app
    from survey.store import MediaMismatch, check_media

    if not 1 <= args.workers <= MAX_WORKERS:
        raise _user_error(f"--workers must be between 1 and {MAX_WORKERS}, got {args.workers}.")
    options = serve_options(args)
    token = args.admin_token or secrets.token_urlsafe(18)
    engine = _open_database(args.db, args.synchronous)  # also creates the schema once, before any worker
    try:
        n_media = check_media(engine)  # once, here: the workers serve what the parent checked
    except MediaMismatch as exc:
        raise _user_error(str(exc)) from None
    _print_urls(engine, args, token)
    print(f"Media: {n_media} file(s) checked against the sizes and hashes recorded at create.", flush=True)
    if args.workers == 1:
        uvicorn.run(create_app(engine, token), **options)
        return 0
    engine.dispose()  # the workers open their own connections
    os.environ.update({_ENV_DB: args.db, _ENV_TOKEN: token, _ENV_SYNC: args.synchronous,
                       _ENV_PARENT: str(os.getpid())})
    uvicorn.run("survey.cli:app_from_env", factory=True, workers=args.workers, **options)
    return 0


def app_from_env():  # noqa: ANN201 - Starlette app
    """The app of one `serve --workers N` worker process, configured by run_serve's environment."""
    from survey.app import create_app
    from survey.db import make_engine

    _exit_with_parent(int(os.environ[_ENV_PARENT]))
    engine = make_engine(os.environ[_ENV_DB], synchronous=os.environ[_ENV_SYNC], create_schema=False)
    return create_app(engine, os.environ[_ENV_TOKEN])


def _exit_with_parent(parent: int) -> None:
    """Have the kernel stop this worker when the serve process dies (even by SIGKILL).

    uvicorn's workers do not watch their supervisor: without this, a killed `serve` leaves
    orphans that keep answering on the port.
    """
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the supervisor died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _report_or_error(args: argparse.Namespace) -> dict:
    from sqlalchemy.exc import OperationalError

    from survey import reports

    if args.n_boot < MIN_BOOT:
        raise _user_error(f"--n-boot must be at least {MIN_BOOT} (fewer leave a 95% percentile interval resting on "
                          f"one or two extreme resamples), got {args.n_boot}.")
    if "://" not in args.db and not Path(args.db).exists():
        raise _user_error(f"No survey database at {args.db}; create a study first with `ltxlab survey create`.")
    try:
        return reports.study_report(args.db, args.name, include_flagged=args.include_flagged,
                                    question=args.question, both_bad=args.both_bad, n_boot=args.n_boot,
                                    correction=args.correction)
    except (reports.UnknownStudyError, reports.ReportOptionError) as exc:
        raise _user_error(str(exc)) from None
    except OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0].rstrip(".") if exc.orig else str(exc)
        raise _user_error(f"Cannot read the survey database {args.db} ({reason}); a database made by an older "
                          f"ltxlab needs its study rebuilt with `ltxlab survey create`.") from None


def _correction_line(rep: dict) -> str:
    c, counts = rep["correction"], rep["counts"]
    confidence = f"{1 - c['alpha']:.0%}"
    how = ("no multiple-comparison correction" if c["method"] == "none"
           else f"{c['name']} correction over {c['pairs']} pair(s) of the matrix (and separately over the "
                f"{c['systems']} systems' overall rates, and within each task for the by-task rates)")
    blocks = counts["seed_blocks_used"]
    if blocks is None:
        seeds = ("Systems are the given videos' models (a folder study): the claims are about these models, "
                 "not about how they were trained.")
    elif len(blocks) < 2:
        seeds = (f"Every vote compares seed-{blocks[0] if blocks else '?'} models only: training noise is not "
                 f"included, so no pair or system gets a verdict (one seed is never a verdict; survey a second seed).")
    else:
        seeds = (f"Pairs compare variants trained from the same seed, over {len(blocks)} seed blocks {blocks}: "
                 f"training noise is included.")
    seeded = blocks is not None and len(blocks) >= 2  # one block is no clustering dimension (and no verdict)
    clusters = "rater, prompt and seed block" if seeded else "rater and by prompt"
    dims = "raters, prompts, seed blocks" if seeded else "raters, prompts"
    sizes = f"{counts['raters_used']} raters, {counts['prompts_used']} prompts" + (
        f", {len(blocks)} seed blocks" if seeded else "")
    return (f"Win rates: ties as half; {confidence} CIs and tests against 50% clustered by {clusters} "
            f"({sizes}; t with min({dims}) - 1 df); {how}; significant = adjusted p < {c['alpha']:g}. {seeds}")


def run_report(args: argparse.Namespace) -> int:
    import pandas as pd

    rep = _report_or_error(args)
    if args.json:
        split = {"win_matrix", "win_matrix_ci"}
        out = {k: (json.loads(v.to_json(orient="split" if k in split else "records", date_format="iso"))
                   if isinstance(v, pd.DataFrame) else v) for k, v in rep.items()}
        print(json.dumps(out, indent=2, default=float))
        return 0
    c = rep["counts"]
    print(f"Study {c['study']!r}, question: {c['question']}")
    print(f"votes: {c['votes_total']} total, {c['votes_gold']} gold, {c['votes_used']} used "
          f"({c['votes_excluded_flagged']} from flagged raters excluded); raters: {c['raters_total']} total, "
          f"{c['raters_flagged']} flagged, {c['raters_used']} used")
    print(_correction_line(rep))
    table = ["system", "win_rate", "ci_low", "ci_high", "votes", "p_value", "p_adjusted", "significant"]
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.precision", 3):
        print("\nOverall win rate against all others:\n" + rep["overall"][table].to_string(index=False))
        for verdict in rep["overall"].loc[rep["overall"]["votes"] > 0, "verdict"]:
            print(f"  - {verdict}")
        if len(rep["overall_by_task"]):
            print("\nBy task:\n" + rep["overall_by_task"][["task", *table]].to_string(index=False))
        marker = "" if rep["correction"]["method"] == "none" else f" after {rep['correction']['name'].split(' (')[0]}"
        print(f"\nWin-rate matrix (row beats column, {1 - rep['correction']['alpha']:.0%} CI; "
              f"* = significant{marker}):\n" + rep["win_matrix_ci"].to_string())
        print("\nVerdicts, one per pair:")
        for verdict in rep["pair_verdicts"]["verdict"]:
            print(f"  - {verdict}")
        if not len(rep["pair_verdicts"]):
            print("  - no pair has votes yet.")
        blocks = rep["counts"]["seed_blocks_used"]
        over = "raters, prompts and seed blocks" if blocks and len(blocks) > 1 else "raters and prompts"
        print(f"\nBradley-Terry (pigeonhole bootstrap over {over}, {1 - rep['correction']['alpha']:.0%} CI, rank "
              f"bounds; descriptive, the verdicts above make the claims):\n"
              + rep["bradley_terry"].to_string(index=False))
    a = rep["agreement"]
    print(f"\nAgreement on {a['items']} pairs with 2+ raters ({a['ratings']} ratings): "
          f"Fleiss' kappa {a['fleiss_kappa']:.3f}, Krippendorff's alpha {a['krippendorff_alpha']:.3f}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from survey import reports

    if "://" not in args.db and not Path(args.db).exists():
        raise _user_error(f"No survey database at {args.db}; create a study first with `ltxlab survey create`.")
    try:
        frame = reports.export_votes(args.db, args.name)
    except reports.UnknownStudyError as exc:
        raise _user_error(str(exc)) from None
    out = args.out or Path(f"{args.name}-votes.{args.format}")
    if args.format == "csv":
        frame.to_csv(out, index=False)
    else:
        frame.to_parquet(out, index=False)
    print(f"Wrote {len(frame)} votes to {out}", file=sys.stderr)
    return 0
