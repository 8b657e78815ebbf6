"""`ltxlab aesthetic train|score`: the Siamese aesthetic scorer (paper §4) from preference pairs, and its scores.

`train --pairs PAIRS --out DIR` reads either

- a survey export (`ltxlab survey export NAME --db DB`, csv or parquet): one row per vote with
  `media_a`, `media_b` (the study's blinded media ids) and `outcome` (a, b, tie, both_bad, from
  side a's point of view). Votes of flagged raters (`rater_flagged`, failed gold pairs) are dropped,
  gold pairs are dropped unless `--keep-gold`, only question `--question` (default 0) counts, and a
  tie or "both bad" is half a win. A media id resolves to `<id>.<ext>` in the study's media folder
  (`survey create` writes `MEDIA_DIR/<public id>/<id>.mp4`); `--media-root` is that folder or MEDIA_DIR,
  and by default it is `<db stem>-media` beside `--db`, as `survey create` lays it out; or
- a pairs file of your own (csv, jsonl or parquet) with columns `a`, `b` (image or video paths,
  relative to the file's folder or `--media-root`) and either `winner` (a, b or tie) or `target`
  (P(a preferred) in [0, 1]), and optionally `group` (the prompt or scene both sides render).

The whole file is checked first (columns, values, media files); the first bad row is named in one
sentence before anything is decoded. Items are images (one frame) or videos (`--frames` frames
spread evenly, the frames the curation pipeline scores). A fraction `--holdout` of the pairs is held
out by item: whole items are set aside until the pairs that touch them reach that fraction, so no
held-out item is seen in training (a held-out pair may still set a held-out item against a training
item, of a prompt training also saw: `report.json["split"]` counts both, so the accuracy is what it is,
ranking new renderings, not generalising to new content). The scorer folder (`save_scorer`) gets
`report.json`: held-out pairwise accuracy with a 95% Wilson interval on the effective sample size of
votes clustered by comparison and, where known (a survey's prompt id, a pairs file's `group`
column), by prompt (`INTERVAL`), the train and held-out loss per epoch, the split, and provenance (pairs file sha256, backbone weights hash, config, seed, commit, versions).

`score --scorer DIR FILE...` prints each file's score (higher is better).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from ablations.cli import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".mkv", ".avi", ".m4v")
WINNER_TARGET = {"a": 1.0, "b": 0.0, "tie": 0.5}  # a pairs file's `winner` -> P(a preferred)
OUTCOME_TARGET = {"a": 1.0, "b": 0.0, "tie": 0.5, "both_bad": 0.5}  # a survey vote's `outcome` (side a's view)
SURVEY_COLUMNS = ("media_a", "media_b", "outcome")
REPORT_FORMAT = "ltxlab-aesthetic-report/1"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "aesthetic", help="train the Siamese aesthetic scorer on preference pairs; score files",
        description="Train the Siamese aesthetic scorer (LTX-Video §4) on pairs, or score files.")
    sub = parser.add_subparsers(dest="aesthetic_command", metavar="ACTION", required=True)

    train = sub.add_parser("train", help="train a scorer on a survey export or a pairs file")
    train.add_argument("--pairs", required=True, type=Path,
                       help="survey export (csv/parquet) or pairs file (csv/jsonl/parquet: a, b, winner|target)")
    train.add_argument("--out", required=True, type=Path, help="scorer folder to write (replaced if it holds a scorer)")
    train.add_argument("--backbone", default="cnn", help="'cnn' (trained from scratch) or 'hf:<local model folder>'")
    train.add_argument("--epochs", type=int, default=20, help="passes over the training pairs")
    train.add_argument("--media-root", type=Path, help="folder the media paths or survey media ids resolve against")
    train.add_argument("--db", help="survey database of the export (its media folder is <db stem>-media)")
    train.add_argument("--holdout", type=float, default=0.2, help="fraction of pairs held out, split by item")
    train.add_argument("--seed", type=int, default=0, help="split, initialisation and batch order")
    train.add_argument("--frames", type=int, default=4, help="frames sampled evenly per video")
    train.add_argument("--image-size", type=int, default=64, help="cnn input side in pixels (hf uses its model's)")
    train.add_argument("--lr", type=float, default=3e-3, help="AdamW learning rate (cosine decay to 5%%)")
    train.add_argument("--batch-size", type=int, default=32, help="pairs per step")
    train.add_argument("--question", type=int, default=0, help="survey question index that counts")
    train.add_argument("--keep-gold", action="store_true", help="also train on the survey's gold (corrupted) pairs")
    train.set_defaults(func=run_train)

    score = sub.add_parser("score", help="print the scores of image or video files")
    score.add_argument("--scorer", required=True, type=Path, help="scorer folder written by `aesthetic train`")
    score.add_argument("files", nargs="+", type=Path, help="images (png/jpg) or videos (mp4, ...)")
    score.add_argument("--json", action="store_true", help="print a JSON list of {path, score}")
    score.set_defaults(func=run_score)
    parser.set_defaults(func=lambda args: parser.print_help() or 0)


# ---- reading pairs ----------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, kw_only=True)
class Pairs:
    """Preference pairs over media files, checked: every path exists and every target is in [0, 1]."""

    a: list[Path]  # side a's file per pair
    b: list[Path]  # side b's file per pair
    target: list[float]  # P(a preferred): 1, 0 or 0.5 for a tie (or any value in [0, 1] from a pairs file)
    source: str  # 'survey' or 'pairs'
    counts: dict[str, int]  # rows read and dropped (flagged raters, gold pairs, other questions)
    group: list[str] | None = None  # the prompt (scene) each pair renders: survey task/prompt_id, a pairs file's `group`


def read_table(path: Path) -> Any:
    """A csv, jsonl/json or parquet file as a DataFrame; one UserError sentence when it cannot be read."""
    import pandas as pd

    if not path.is_file():
        raise UserError(f"No pairs file at {path}; pass a survey export or a csv/jsonl file of pairs.")
    suffix = path.suffix.lower()
    readers = {".csv": pd.read_csv, ".parquet": pd.read_parquet, ".jsonl": lambda p: pd.read_json(p, lines=True),
               ".json": lambda p: pd.read_json(p, lines=True)}
    if suffix not in readers:
        raise UserError(f"{path} is not csv, jsonl or parquet; export the pairs in one of those formats.")
    try:
        return readers[suffix](path)
    except Exception as exc:  # noqa: BLE001 - pandas and pyarrow raise many types for a bad file
        raise UserError(f"{path} could not be read as {suffix[1:]} ({type(exc).__name__}); check the file.") from None


def media_index(roots: list[Path]) -> dict[str, Path]:
    """file stem -> path for every media file in each root and one folder below (a study's media layout)."""
    index: dict[str, Path] = {}
    for root in roots:
        for path in sorted(root.glob("*")) + sorted(root.glob("*/*")):
            if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES:
                index.setdefault(path.stem, path)
    return index


def survey_roots(args: argparse.Namespace) -> list[Path]:
    """Where a survey export's media ids are looked up: --media-root, else `<db stem>-media` beside --db."""
    if args.media_root is not None:
        roots = [args.media_root.expanduser()]
    elif args.db:
        if "://" in args.db:
            raise UserError("With a database URL, pass --media-root (the study's media folder).")
        db = Path(args.db).expanduser().resolve()
        roots = [db.with_name(db.stem + "-media")]
    else:
        raise UserError(f"{args.pairs} is a survey export; pass --media-root (the study's media folder, which "
                        "`survey create --media-dir` wrote) or --db (the survey database beside that folder).")
    missing = [r for r in roots if not r.is_dir()]
    if missing:
        raise UserError(f"The media folder {missing[0]} does not exist; "
                        "pass --media-root with the study's media folder.")
    return roots


def _survey_pairs(frame: Any, args: argparse.Namespace) -> Pairs:
    import pandas as pd

    counts = {"rows": len(frame)}
    keep = pd.Series(True, index=frame.index)
    if "question" in frame.columns:
        keep &= frame["question"] == args.question
        counts["other_questions"] = int((frame["question"] != args.question).sum())
    if "rater_flagged" in frame.columns:
        flagged = frame["rater_flagged"].astype(str).str.lower().isin(["true", "1"])
        counts["flagged_rater_votes"] = int((flagged & keep).sum())
        keep &= ~flagged
    if "is_gold" in frame.columns and not args.keep_gold:
        gold = frame["is_gold"].astype(str).str.lower().isin(["true", "1"])
        counts["gold_votes"] = int((gold & keep).sum())
        keep &= ~gold
    roots = survey_roots(args)
    index = media_index(roots)
    a, b, target = [], [], []
    for row_no, row in zip(frame.index[keep], frame[keep].itertuples(index=False)):
        outcome = str(row.outcome)
        if outcome not in OUTCOME_TARGET:
            raise UserError(f"Row {row_no + 1} of {args.pairs} has outcome {outcome!r}, not one of "
                            f"{', '.join(OUTCOME_TARGET)}; re-export it with `ltxlab survey export`.")
        for media in (row.media_a, row.media_b):
            if str(media) not in index:
                raise UserError(f"Row {row_no + 1} of {args.pairs} names media {media}, which is not in "
                                f"{' or '.join(str(r) for r in roots)}; pass the study's media folder "
                                "as --media-root.")
        a.append(index[str(row.media_a)])
        b.append(index[str(row.media_b)])
        target.append(OUTCOME_TARGET[outcome])
    group = None
    if "prompt_id" in frame.columns:
        task = frame["task"].astype(str) if "task" in frame.columns else ""
        group = (task + "/" + frame["prompt_id"].astype(str))[keep].tolist()
    return Pairs(a=a, b=b, target=target, source="survey", counts=counts, group=group)


def _target(row: Any, row_no: int, path: Path) -> float:
    winner = getattr(row, "winner", None)
    if winner is not None and not (isinstance(winner, float) and math.isnan(winner)):
        key = str(winner).strip().lower()
        if key not in WINNER_TARGET:
            raise UserError(f"Row {row_no} of {path} has winner {winner!r}; use a, b or tie.")
        return WINNER_TARGET[key]
    try:
        value = float(getattr(row, "target", math.nan))
    except (TypeError, ValueError):
        value = math.nan
    if not 0.0 <= value <= 1.0:
        raise UserError(f"Row {row_no} of {path} has no winner (a, b or tie) and no target in [0, 1]; fill one in.")
    return value


def _user_pairs(frame: Any, args: argparse.Namespace) -> Pairs:
    path = args.pairs
    missing = [c for c in ("a", "b") if c not in frame.columns]
    if missing or not ({"winner", "target"} & set(frame.columns)):
        raise UserError(f"{path} needs the columns a, b and winner (a, b or tie) or target (P(a preferred)); "
                        f"it has {', '.join(map(str, frame.columns)) or 'none'}.")
    root = (args.media_root or path.parent).expanduser()
    a, b, target = [], [], []
    for i, row in enumerate(frame.itertuples(index=False), start=1):
        target.append(_target(row, i, path))
        for side in ("a", "b"):
            value = getattr(row, side)
            if not isinstance(value, str) or not value.strip():
                raise UserError(f"Row {i} of {path} has no file in column {side}; every pair needs two files.")
            file = (root / value.strip()).expanduser()
            if file.suffix.lower() not in IMAGE_SUFFIXES + VIDEO_SUFFIXES:
                raise UserError(f"Row {i} of {path}: {value} is neither an image ({', '.join(IMAGE_SUFFIXES)}) nor a "
                                f"video ({', '.join(VIDEO_SUFFIXES)}).")
            if not file.is_file():
                raise UserError(f"Row {i} of {path}: {file} does not exist; paths are relative to {root}.")
            (a if side == "a" else b).append(file.resolve())
    group = frame["group"].astype(str).tolist() if "group" in frame.columns else None
    return Pairs(a=a, b=b, target=target, source="pairs", counts={"rows": len(frame)}, group=group)


def read_pairs(args: argparse.Namespace) -> Pairs:
    """The pairs of `--pairs`, every row and media file checked; one UserError naming the first bad row."""
    frame = read_table(args.pairs.expanduser())
    is_survey = all(c in frame.columns for c in SURVEY_COLUMNS)
    pairs = _survey_pairs(frame, args) if is_survey else _user_pairs(frame, args)
    same = next((i for i, (x, y) in enumerate(zip(pairs.a, pairs.b)) if x == y), None)
    if same is not None:
        raise UserError(f"Pair {same + 1} of {args.pairs} compares {pairs.a[same]} with itself; remove it.")
    if len(pairs.a) < 2:
        raise UserError(f"{args.pairs} has {len(pairs.a)} usable pair(s) after dropping flagged raters and gold pairs; "
                        "a scorer needs more.")
    return pairs


# ---- split, media, evaluation -----------------------------------------------------------------------

def _at(values: list[Any] | None, indices: list[int]) -> list[Any] | None:
    return None if values is None else [values[i] for i in indices]


def split_by_item(a: list[int], b: list[int], holdout: float, seed: int) -> tuple[list[int], list[int], set[int]]:
    """(train pair indices, held-out pair indices, held-out items).

    Items are set aside in a seeded random order until the pairs touching them reach `holdout` of
    all pairs; held-out pairs are those, and no pair with a held-out item is trained on.
    """
    import numpy as np

    if holdout <= 0:
        return list(range(len(a))), [], set()
    rng = np.random.default_rng(seed)
    items = sorted(set(a) | set(b))
    held: set[int] = set()
    touched = np.zeros(len(a), dtype=bool)
    a_arr, b_arr = np.asarray(a), np.asarray(b)
    for item in rng.permutation(items):
        if touched.mean() >= holdout:
            break
        held.add(int(item))
        touched |= (a_arr == item) | (b_arr == item)
    test = np.flatnonzero(touched).tolist()
    train = np.flatnonzero(~touched).tolist()
    return train, test, held


def load_item(path: Path, frames: int, size: int) -> Any:
    """An image (one frame) or `frames` evenly spread video frames -> uint8 (k, 3, size, size), as `prepare` gives."""
    import numpy as np

    from clips.errors import ClipError
    from models.aesthetic import prepare, sample_indices

    if path.suffix.lower() in IMAGE_SUFFIXES:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as image:
                pixels = np.asarray(image.convert("RGB"))
        except (OSError, UnidentifiedImageError) as exc:
            raise UserError(f"Image {path} could not be read ({type(exc).__name__}); replace or remove it.") from None
        return prepare(pixels, size, 1)
    from clips.curate.probe import ProbeError, probe, read_frames

    try:
        info = probe(path)
        decoded = read_frames(path, indices=sample_indices(info.frames, frames))
    except (ProbeError, ClipError) as exc:
        raise UserError(f"Video {path} could not be used ({exc}); replace or remove it.") from None
    return prepare(decoded, size, frames)


def load_items(paths: list[Path], frames: int, size: int) -> tuple[Any, Any]:
    """Files -> uint8 frames (N, F, 3, S, S) and bool mask (N, F) of real frames (images fill one slot)."""
    import torch

    out = torch.zeros(len(paths), frames, 3, size, size, dtype=torch.uint8)  # (N, F, 3, S, S)
    mask = torch.zeros(len(paths), frames, dtype=torch.bool)  # (N, F)
    for n, path in enumerate(paths):
        item = load_item(path, frames, size)
        out[n, : len(item)], mask[n, : len(item)] = item, True
    return out, mask


INTERVAL = ("95% Wilson interval on the Kish effective sample size, votes clustered by comparison (the unordered "
            "item pair: raters' votes on one comparison share one prediction) and, with prompts, by prompt "
            "(evaluation.bradley_terry.win_rate_test); it covers the sampling of comparisons and prompts, not "
            "training-seed variation (one trained scorer)")


def accuracy_interval(agree: Any, comparisons: Any, groups: Any = None) -> Any:
    """`win_rate_test` of per-vote agreement (1, 0, or 0.5 for a score tie), clustered by comparison and group."""
    from evaluation.bradley_terry import win_rate_test

    return win_rate_test(agree, clusters=comparisons, prompt_clusters=groups)


def pair_metrics(scores: Any, a: Any, b: Any, target: Any, groups: list[str] | None = None) -> dict[str, Any]:
    """Pairwise accuracy over decided votes (an exact score tie counts half) with its clustered 95% interval
    (`INTERVAL`), and the loss."""
    import numpy as np
    import torch

    from models.aesthetic import pairwise_loss

    if len(a) == 0:
        return {"pairs": 0, "decided": 0, "comparisons": 0, "groups": None, "accuracy": None, "ci95": None,
                "n_eff": None, "interval": INTERVAL, "loss": None}
    diff = scores[a] - scores[b]
    decided = (target != 0.5).numpy()
    agree = torch.where(diff == 0, 0.5, ((diff > 0) == (target > 0.5)).float()).numpy()[decided]
    pair = np.array([f"{min(x, y)}-{max(x, y)}" for x, y in zip(a.tolist(), b.tolist())], dtype=object)[decided]
    group = None if groups is None else np.asarray(groups, dtype=object)[decided]
    n = int(decided.sum())
    found = accuracy_interval(agree, pair, group) if n else None
    loss = float(pairwise_loss(scores[a], scores[b], target))
    return {"pairs": int(len(a)), "decided": n, "comparisons": int(len(set(pair))),
            "groups": None if group is None else int(len(set(group))),
            "accuracy": None if found is None else found.rate,
            "ci95": [None, None] if found is None else [found.ci_low, found.ci_high],
            "n_eff": None if found is None else found.n_eff, "interval": INTERVAL, "loss": loss}


def split_facts(a: list[int], b: list[int], train: list[int], test: list[int], held: set[int],
                groups: list[str] | None) -> dict[str, Any]:
    """What the held-out pairs measure: how many set a new item against a trained one, and prompts shared."""
    facts: dict[str, Any] = {
        "unit": "item",
        "meaning": "no held-out item is trained on; a held-out pair may set a held-out item against a training item "
                   "and may render a prompt that training pairs also render, so the accuracy is ranking new "
                   "renderings, mostly of seen prompts, not generalisation to new content",
        "heldout_pairs_vs_a_training_item": sum(1 for i in test if (a[i] in held) != (b[i] in held)),
    }
    if groups is not None:
        trained = {groups[i] for i in train}
        facts["heldout_pairs_of_prompts_also_trained_on"] = sum(1 for i in test if groups[i] in trained)
    return facts


# ---- train ------------------------------------------------------------------------------------------

def check_out(out: Path) -> None:
    """--out may be new, empty, or an earlier scorer folder (replaced at the end); nothing else is overwritten."""
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "config.json").is_file())):
        raise UserError(f"--out {out} exists and is not a scorer folder; pick a new folder so nothing is overwritten.")


def check_args(args: argparse.Namespace) -> None:
    """Every numeric flag in its range, in one sentence, before any file is decoded."""
    from ablations.commands.common import check_flag
    from models.aesthetic import AestheticConfig
    from models.config import LEARNING_RATE, SEED, Int, Real

    smallest = AestheticConfig().min_image_size if args.backbone == "cnn" else 8
    for flag, value, valid in (("--epochs", args.epochs, Int(1, 100_000)), ("--frames", args.frames, Int(1, 256)),
                               ("--batch-size", args.batch_size, Int(1, 65_536)),
                               ("--image-size", args.image_size, Int(smallest, 1024)),
                               ("--holdout", args.holdout, Real(0.0, 1.0, open_hi=True)),
                               ("--lr", args.lr, LEARNING_RATE), ("--seed", args.seed, SEED),
                               ("--question", args.question, Int(0, 1000))):
        check_flag(flag, value, valid)


def write_scorer(scorer: Any, out: Path, report: dict[str, Any]) -> None:
    """save_scorer into a sibling temporary folder, then swap it in: an earlier scorer at --out survives a crash."""
    from models.aesthetic import save_scorer

    out = out.expanduser().resolve()
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    save_scorer(scorer, tmp, report=report)
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


def run_train(args: argparse.Namespace) -> int:
    check_args(args)
    check_out(args.out.expanduser())
    pairs = read_pairs(args)  # every row and file checked before anything is decoded
    import torch

    from ablations.provenance import provenance
    from models.aesthetic import AestheticConfig, fit_pairs, score_items
    from models.config import to_dict
    from models.weights import file_sha256

    torch.manual_seed(args.seed)
    cfg = AestheticConfig(kind=args.backbone, frames=args.frames, image_size=args.image_size)
    scorer = cfg.build()
    files = sorted(set(pairs.a) | set(pairs.b))
    index = {path: i for i, path in enumerate(files)}
    a = torch.tensor([index[p] for p in pairs.a])
    b = torch.tensor([index[p] for p in pairs.b])
    target = torch.tensor(pairs.target, dtype=torch.float32)
    train, test, held = split_by_item(a.tolist(), b.tolist(), args.holdout, args.seed)
    if not train:
        raise UserError(f"Holding out {args.holdout} of the pairs by item leaves none to train on; lower --holdout.")
    started = time.time()
    print(f"Decoding {len(files)} items ({len(pairs.a)} pairs: {len(train)} train, {len(test)} held out)...",
          file=sys.stderr)
    frames, mask = load_items(files, args.frames, scorer.image_size)
    curve: dict[str, list[float]] = {"train_loss": [], "heldout_loss": []}

    def on_epoch(epoch: int, loss: float) -> None:
        curve["train_loss"].append(loss)
        held_out = pair_metrics(score_items(scorer, frames, mask), a[test], b[test], target[test], _at(pairs.group, test)) \
            if test else {}
        curve["heldout_loss"].append(held_out.get("loss"))
        acc = held_out.get("accuracy")
        print(f"epoch {epoch}/{args.epochs}  train loss {loss:.4f}"
              + (f"  held-out loss {held_out['loss']:.4f}  accuracy {acc:.3f}" if acc is not None else ""),
              file=sys.stderr)

    fit_pairs(scorer, frames, mask, a[train], b[train], target[train], epochs=args.epochs, batch_size=args.batch_size,
              lr=args.lr, seed=args.seed, on_epoch=on_epoch)
    scores = score_items(scorer, frames, mask)
    report = {
        "format": REPORT_FORMAT, "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "pairs": {"path": str(args.pairs.expanduser().resolve()),
                  "sha256": file_sha256([str(args.pairs.expanduser())]),
                  "source": pairs.source, "used": len(pairs.a), "items": len(files), **pairs.counts},
        "split": {"holdout": args.holdout, "seed": args.seed, "train_pairs": len(train), "heldout_pairs": len(test),
                  "heldout_items": len(held), "train_items": len(files) - len(held),
                  **split_facts(a.tolist(), b.tolist(), train, test, held, pairs.group)},
        "heldout": pair_metrics(scores, a[test], b[test], target[test], _at(pairs.group, test)),
        "train": pair_metrics(scores, a[train], b[train], target[train], _at(pairs.group, train)),
        "curve": curve,
        "config": to_dict(cfg),
        "training": {"epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size, "seed": args.seed,
                     "wall_s": round(time.time() - started, 2)},
        "provenance": {**provenance(), "backbone": scorer.backbone.provenance},
    }
    write_scorer(scorer, args.out, report)
    print(summary(report, args.out))
    return 0


def summary(report: dict[str, Any], out: Path) -> str:
    held = report["heldout"]
    lines = [f"Wrote the scorer to {out} ({report['split']['train_pairs']} training pairs, "
             f"{report['pairs']['items']} items, {len(report['curve']['train_loss'])} epochs)."]
    if held["accuracy"] is None:
        lines.append("No held-out pairs (--holdout 0 or no decided votes among them): no accuracy to report.")
    else:
        lo, hi = held["ci95"]
        by = "comparison and prompt" if held.get("groups") else "comparison"
        lines.append(f"Held-out pairwise accuracy {held['accuracy']:.3f} (95% CI {lo:.3f}-{hi:.3f}, votes clustered "
                     f"by {by}: {held['decided']} decided votes on {held['comparisons']} comparisons, effective n "
                     f"{held['n_eff']:.0f}; one trained scorer, so training-seed variation is not in it); held-out "
                     f"loss {held['loss']:.4f}. Held-out pairs hold out items, not prompts: "
                     f"{report['split']['heldout_pairs_vs_a_training_item']} of {held['pairs']} set a new item "
                     "against a trained one.")
    return "\n".join(lines)


# ---- score ------------------------------------------------------------------------------------------

def run_score(args: argparse.Namespace) -> int:
    for path in args.files:
        if not path.is_file():
            raise UserError(f"No file at {path}; pass images or videos to score.")
        if path.suffix.lower() not in IMAGE_SUFFIXES + VIDEO_SUFFIXES:
            raise UserError(f"{path} is neither an image ({', '.join(IMAGE_SUFFIXES)}) nor a video "
                            f"({', '.join(VIDEO_SUFFIXES)}).")
    from models.aesthetic import load_scorer, score_items

    scorer = load_scorer(args.scorer.expanduser())
    frames, mask = load_items(list(args.files), scorer.config.frames, scorer.image_size)
    scores = score_items(scorer, frames, mask).tolist()
    if args.json:
        print(json.dumps([{"path": str(p), "score": s} for p, s in zip(args.files, scores)], indent=2))
    else:
        for path, value in zip(args.files, scores):
            print(f"{value:+.4f}  {path}")
    return 0
