"""`ltxlab curate SRC --out DATASET [--config curate.toml] [--set a.b=value]`: the curation pipeline.

Runs `clips.curate.pipeline.curate` (LTX-Video §4 on Ray Data; embedded Ray unless
RAY_ADDRESS is set) and prints how many clips each filter dropped and where the files went.
The config (TOML, then `--set` overrides, then range checks) and SRC/OUT are checked before
Ray starts; an input with no usable video fails in one sentence.
"""

from __future__ import annotations

import argparse
from typing import Any

from ablations.cli import UserError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("curate", help="curate a video folder or manifest into a dataset (probe, shots, bars, "
                                             "motion, aesthetic, captions) on Ray Data")
    p.add_argument("src", metavar="SRC", help="folder of videos (recursive; optional captions.jsonl) or a "
                                              ".parquet/.jsonl manifest with a path column")
    p.add_argument("--out", required=True, metavar="DATASET", help="dataset folder to write (new, empty, or a "
                                                                   "curated dataset to replace)")
    p.add_argument("--config", default=None, metavar="TOML", help="curate config file (sections probe, shots, bars, "
                                                                  "motion, aesthetic, captions, output)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set motion.static_flow=0.5 (repeatable)")
    p.add_argument("--local", action="store_true", help="run the same stages in this process, without Ray")
    p.set_defaults(func=run)


def load(args: argparse.Namespace) -> Any:
    """The CurateConfig of --config and --set, validated (one sentence per problem)."""
    from ablations.overrides import apply_overrides
    from clips.curate.config import check_config, load_config
    from clips.errors import ClipError

    try:
        return check_config(apply_overrides(load_config(args.config), args.set))
    except ClipError as exc:  # a detector config's own range check, reached through --set
        raise UserError(f"--set: {exc}") from None


def run(args: argparse.Namespace) -> int:
    from ablations.provenance import provenance
    from clips.curate.pipeline import curate

    cfg = load(args)
    house = provenance()
    result = curate(args.src, args.out, cfg, engine="local" if args.local else "ray",
                    provenance={"commit": house["git_commit"], "dirty": house["dirty"], "versions": house["versions"]})
    print(summary(result.report, str(result.out)))
    return 0


def summary(report: dict[str, Any], out: str) -> str:
    """Per-filter table (clips in, dropped, left) and the files written."""
    from clips.curate.manifest import CLIPS_DIR, FILTERS, FINETUNE, MANIFEST, REPORT

    counts = report["counts"]
    lines = [f"{counts['files']} files ({counts['probe_failed']} unusable), {counts['clips']} candidate clips, "
             f"{report['timing']['wall_s']:.1f} s on {report['timing']['workers']} workers "
             f"({report['timing']['engine']})", "", f"{'filter':<10} {'dropped':>8} {'left':>8}"]
    left = counts["files"]
    for name in FILTERS:
        dropped = counts["dropped_by"][name]
        if name == "probe":  # before the probe: files; after it: clips (less the clips that failed to decode)
            left = counts["clips"] - (dropped - counts["probe_failed"])
            lines.append(f"{name:<10} {dropped:>8} {left:>8}  (files; clips left)")
            continue
        left -= dropped
        note = "  (off: no scorer)" if name == "aesthetic" and not report["config"]["aesthetic"]["scorer"] else ""
        lines.append(f"{name:<10} {dropped:>8} {left:>8}{note}")
    lines += [f"{'kept':<10} {'':>8} {counts['kept']:>8}  (finetune: {counts['finetune']})", ""]
    if counts["probe_reasons"]:
        lines.append("unusable: " + ", ".join(f"{n} {r}" for r, n in sorted(counts["probe_reasons"].items())))
    lines += [f"wrote {out}/{MANIFEST}, {FINETUNE}, {REPORT}"
              + (f" and {counts['kept']} clips in {CLIPS_DIR}/" if report["config"]["output"]["reencode"] else "")]
    lines += [f"note: {n}" for n in report.get("notes", [])]
    return "\n".join(lines)
