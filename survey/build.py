"""Build a study: collect (system, item, video) sources, copy media blinded, enumerate pairs.

Two sources: a sweep in the results store (systems = variants of `done` runs; items =
(task, prompt_id, seed block) shared by at least two variants; see docs/results-store.md), or any
folder laid out as `DIR/<system>/<prompt_id>.mp4` with `DIR/prompts.jsonl` (`id`, `text`, optional
`image`).

A sweep's variants are training configurations and each video comes from one trained model, so
every seed is surveyed: an item is one prompt in one seed block (runs trained from the same nominal
seed), pairs compare variants within a block, and the report clusters its inference on the block
("one seed is never a verdict"; docs/survey.md). A folder's systems are fixed models: no blocks.

Every source file is checked (each video decoded, each image opened, frame rates matched per
item) before anything is written, and a failed `create` removes its media folder.
"""

from __future__ import annotations

import itertools
import json
import random
import shutil
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
from sqlalchemy import Engine, insert, select

from survey import db as tables
from survey.media import (FORMATS, corrupt_frames, encode_matched, file_digest, probe_image, probe_video, read_video,
                          reencode_image)

DEFAULT_QUESTION = "Which video is better overall?"


class StudyError(ValueError):
    """A study cannot be built from what was given; the message says what to fix."""


@dataclass(frozen=True, kw_only=True)
class SourceVideo:
    system: str  # system / variant name (researcher-facing only)
    task: str  # t2v | i2v
    prompt_id: str  # item key shared across systems
    text: str  # the prompt shown to raters
    video: Path  # source video file
    image: Path | None = None  # conditioning frame for i2v
    block: int | None = None  # training seed block of the model that made it (sweeps); None: a fixed model


@dataclass(frozen=True, kw_only=True)
class StudyOptions:
    questions: tuple[str, ...] = (DEFAULT_QUESTION,)  # one row of vote buttons per question
    pairs_per_rater: int = 10  # real pairs per rater (capped at the number of comparisons)
    gold_per_rater: int = 2  # gold pairs mixed in per rater (0 disables quality control)
    gold_items: int = 4  # how many items get a corrupted copy for gold pairs
    gold_fail_max: float = 0.25  # flag a rater whose share of failed gold pairs exceeds this
    adaptive: bool = False  # favour system pairs whose outcome is most uncertain
    min_watch_fraction: float = 0.9  # refuse votes sooner than this x the longer clip's duration
    # accept a vote only when both videos were delivered to that rater (bytes counted per assignment)
    require_delivery: bool = True
    max_raters: int | None = None  # stop admitting raters once this many have voted (None = no cap)
    max_raters_per_client: int | None = 3  # raters per client address and per browser cookie (None = any)
    start_burst: int | None = 10  # token bucket on `start` per client address: burst size (None = no limit)
    start_refill_s: float = 3.0  # ... and seconds per token refilled
    completion_url: str | None = None  # e.g. "https://app.prolific.com/submissions/complete?cc={code}"
    title: str = "Video comparison study"  # page title shown to raters (must not name systems)
    media_format: str = "mp4"  # mp4 (H.264) or webm (VP9)
    seed: int = 0  # pair orientation, gold choice, corruption noise
    extra: dict = field(default_factory=dict)  # free-form notes kept with the study config


def collect_from_sweep(results: str | Path, sweep: str, variants: list[str] | None = None) -> list[SourceVideo]:
    """Samples of every `done` run of a sweep, each tagged with its seed block (t2v and i2v only).

    A run's block is its `block` column (the nominal seed; `seed` in stores written before that
    column existed). Should one variant have two runs in a block, the lower seed is used.
    """
    import pandas as pd

    from evaluation.stats import run_blocks

    root = Path(results) / sweep
    runs_path = root / "runs.parquet"
    if not runs_path.exists():
        raise StudyError(f"No sweep '{sweep}' in {results} (missing {runs_path}); check --results and the name.")
    runs = pd.read_parquet(runs_path)
    runs = runs[runs["status"] == "done"]
    if variants:
        unknown = sorted(set(variants) - set(runs["variant"]))
        if unknown:
            raise StudyError(f"Variants {unknown} have no finished run in sweep '{sweep}'; "
                             f"finished: {sorted(set(runs['variant']))}.")
        runs = runs[runs["variant"].isin(variants)]
    runs = runs.assign(block=run_blocks(runs))
    sources: list[SourceVideo] = []
    seen: set[tuple] = set()
    for run in runs.sort_values(["block", "variant", "seed"]).itertuples(index=False):
        samples = root / "runs" / run.run_id / "samples"
        index = samples / "index.jsonl"
        if not index.exists():
            continue  # a run marked done before its samples were written cannot be surveyed
        for n, line in enumerate(index.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                task, prompt_id, file = row["task"], str(row["prompt_id"]), row["file"]
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise StudyError(f"{index} line {n} is not a sample record with 'task', 'prompt_id' and 'file' "
                                 f"({type(exc).__name__}: {exc}); the run's samples are damaged.") from None
            key = (run.variant, int(run.block), task, prompt_id)
            if task not in ("t2v", "i2v") or key in seen:
                continue  # recon samples are not surveyed; a second run of the block: the lower seed stands
            seen.add(key)
            image = samples / str(row["image"]) if row.get("image") else None
            sources.append(SourceVideo(system=str(run.variant), task=task, prompt_id=prompt_id,
                                       text=str(row.get("text") or ""), video=samples / str(file), image=image,
                                       block=int(run.block)))
    return sources


def collect_from_dir(folder: str | Path) -> list[SourceVideo]:
    """`DIR/<system>/<prompt_id>.mp4` + `DIR/prompts.jsonl`; i2v when a prompt has an `image`.

    Refuses (StudyError) a system folder holding a file that matches no prompt id (other names,
    other extensions, wrong case) instead of leaving it out: a dropped system or prompt would
    silently change the study. Hidden files, subfolders of a system folder and the folders that
    hold the prompts' images are not looked at.
    """
    root = Path(folder)
    prompts_path = root / "prompts.jsonl"
    if not prompts_path.exists():
        raise StudyError(f"{prompts_path} is missing; write one line per prompt: "
                         '{"id": ..., "text": ..., "image": optional path}.')
    prompts = {}
    for n, line in enumerate(prompts_path.read_text().splitlines(), 1):
        if line.strip():
            try:
                row = json.loads(line)
                prompts[str(row["id"])] = row
                if row.get("image") is not None and not isinstance(row["image"], str):
                    raise TypeError(f"'image' must be a path string, got {row['image']!r}")
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise StudyError(f"{prompts_path} line {n} is not a JSON object with an 'id' and an optional "
                                 f"'image' path ({exc}).") from None
    image_dirs = {(root / row["image"]).parent.resolve() for row in prompts.values() if row.get("image")}
    sources, unmatched = [], []
    for system_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if system_dir.resolve() in image_dirs:
            continue
        for path in sorted(p for p in system_dir.iterdir() if p.is_file() and not p.name.startswith(".")):
            row = prompts.get(path.stem) if path.suffix == ".mp4" else None
            if row is None:
                unmatched.append(path.relative_to(root).as_posix())
                continue
            image = (root / row["image"]) if row.get("image") else None
            sources.append(SourceVideo(system=system_dir.name, task="i2v" if image else "t2v", prompt_id=path.stem,
                                       text=str(row.get("text", "")), video=path, image=image))
    if unmatched:
        shown = ", ".join(unmatched[:5]) + (f" and {len(unmatched) - 5} more" if len(unmatched) > 5 else "")
        raise StudyError(f"{len(unmatched)} file(s) in {root} match no prompt id of prompts.jsonl ({shown}); name "
                         "each video <prompt_id>.mp4 exactly as its prompt's id, or move the file out.")
    return sources


ItemKey = tuple[str, str, "int | None"]  # (task, prompt_id, seed block)


def _add_media(conn, study_id: int, path: Path, mime: str, duration: float | None,  # noqa: ANN001
               payload: int | None = None) -> str:
    """Record a media file already written at `path` (its stem is the media id), with its size and hash."""
    size, sha256 = file_digest(path)
    conn.execute(insert(tables.media).values(id=path.stem, study_id=study_id, file=path.name, mime=mime,
                                             duration_s=duration, payload_bytes=payload, file_bytes=size,
                                             sha256=sha256))
    return path.stem


def _item_name(key: ItemKey) -> str:
    return f"prompt {key[1]} ({key[0]}{'' if key[2] is None else f', seed block {key[2]}'})"


def _check_sources(shared: dict[ItemKey, dict[str, SourceVideo]]) -> None:
    """Decode every source video and open every conditioning image before anything is written.

    A file that cannot be read, or an item whose videos differ in frame rate, is a StudyError naming
    it: found here it costs seconds, found while encoding it cost every encode before it.
    """
    probed: dict[Path, Fraction] = {}
    for key, per in shared.items():
        for src in per.values():
            if src.video not in probed:
                try:
                    probed[src.video] = probe_video(src.video)[1]
                except ValueError as exc:
                    raise StudyError(f"{str(exc).rstrip('.')}; re-export it or remove it from the study's "
                                     "sources.") from None
        rates = {probed[src.video] for src in per.values()}
        if len(rates) > 1:
            raise StudyError(f"{_item_name(key)} has videos at different frame rates {sorted(map(str, rates))}; "
                             "re-export them at one rate (a pair must not differ in duration or frame rate).")
        image = per[sorted(per)[0]].image
        if key[0] == "i2v" and image is not None:
            try:
                probe_image(image)
            except ValueError as exc:
                raise StudyError(f"The conditioning image of {_item_name(key)}: {exc}") from None


def _item_clips(per: dict[str, SourceVideo]) -> tuple[dict[str, np.ndarray], Fraction]:
    """Every system's frames for one item, cut to the shortest clip so that durations match."""
    clips, rates = {}, {}
    for system, src in per.items():
        clips[system], rates[system] = read_video(src.video)
    n = min(c.shape[0] for c in clips.values())
    return {s: c[:n] for s, c in clips.items()}, next(iter(rates.values()))


def create_study(engine: Engine, name: str, sources: list[SourceVideo], media_dir: str | Path,
                 options: StudyOptions = StudyOptions()) -> dict:
    """Write a study (systems, items, blinded media, comparisons, gold pairs); returns a summary.

    Items are (task, prompt_id, seed block); pairs compare the systems of one item, so with seed
    blocks every comparison is between models trained from the same seed. Nothing is written
    until every source has been checked; on failure the database rolls back and the media folder
    is removed.
    """
    if options.media_format not in FORMATS:
        raise StudyError(f"Unknown media format '{options.media_format}'; use one of {sorted(FORMATS)}.")
    if not options.questions or any(not q.strip() for q in options.questions):
        raise StudyError("Every question must be a non-empty sentence.")
    by_item: dict[ItemKey, dict[str, SourceVideo]] = {}
    for src in sources:
        by_item.setdefault((src.task, src.prompt_id, src.block), {})[src.system] = src
    shared = {k: v for k, v in sorted(by_item.items()) if len(v) >= 2}
    if not shared:
        raise StudyError("No prompt has videos from two or more systems, so there is nothing to compare.")
    with engine.connect() as conn:
        if conn.execute(select(tables.studies.c.id).where(tables.studies.c.name == name)).first():
            raise StudyError(f"A study named '{name}' already exists in this database; pick another name.")
    _check_sources(shared)
    public_id = tables.random_id(12)
    root = Path(media_dir).expanduser().resolve() / public_id
    root.mkdir(parents=True, exist_ok=True)
    try:
        return _write_study(engine, name, shared, root, public_id, options)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)  # the transaction rolled back: leave no orphaned media
        raise


def _write_study(engine: Engine, name: str, shared: dict[ItemKey, dict[str, SourceVideo]], root: Path,
                 public_id: str, options: StudyOptions) -> dict:
    """The writing half of `create_study`, in one transaction."""
    rng = random.Random(options.seed)
    codec_ext = options.media_format
    mime = FORMATS[codec_ext][1]
    system_names = sorted({s for v in shared.values() for s in v})
    blocks = sorted({k[2] for k in shared if k[2] is not None})
    config = {k: getattr(options, k) for k in StudyOptions.__dataclass_fields__}
    config["questions"] = list(options.questions)
    n_comparisons = 0
    with engine.begin() as conn:
        study_id = conn.execute(insert(tables.studies).values(
            name=name, public_id=public_id, secret=tables.random_id(32), config=json.dumps(config),
            media_root=str(root), created_at=time.time())).inserted_primary_key[0]
        system_ids = {s: conn.execute(insert(tables.systems).values(study_id=study_id, name=s)).inserted_primary_key[0]
                      for s in system_names}
        gold_keys = (set(rng.sample(sorted(shared), min(options.gold_items, len(shared))))
                     if options.gold_per_rater > 0 else set())
        item_media: dict[ItemKey, dict[str, str]] = {}
        gold_media: dict[ItemKey, tuple[str, str]] = {}  # item -> (system, corrupted media id)
        item_ids: dict[ItemKey, int] = {}
        # Items in a shuffled order, systems shuffled within: nothing about a system may be read off
        # write order. Every video of an item (gold copy included) ends up the same size (encode_matched).
        for key in rng.sample(sorted(shared), len(shared)):
            clips, fps = _item_clips(shared[key])
            names: list[str | None] = rng.sample(sorted(clips), len(clips))
            frames = [clips[system] for system in names]
            if key in gold_keys:
                gold_system = rng.choice(sorted(clips))
                names.append(None)
                frames.append(corrupt_frames(clips[gold_system], seed=rng.randrange(2**31)))
            paths = [root / f"{tables.random_id()}.{codec_ext}" for _ in names]
            payloads = encode_matched(frames, paths, fps, codec_ext, rng)
            duration = float(frames[0].shape[0] / fps)
            for system, path, payload in zip(names, paths, payloads):
                media_id = _add_media(conn, study_id, path, mime, duration, payload)
                if system is None:
                    gold_media[key] = (gold_system, media_id)
                else:
                    item_media.setdefault(key, {})[system] = media_id
        for key, per in shared.items():
            image_media = None
            first = per[sorted(per)[0]]
            if key[0] == "i2v" and first.image is not None:
                path = root / f"{tables.random_id()}.png"
                reencode_image(first.image, path)
                image_media = _add_media(conn, study_id, path, "image/png", None)
            item_ids[key] = conn.execute(insert(tables.items).values(
                study_id=study_id, task=key[0], prompt_id=key[1], text=first.text, image_media=image_media,
                seed_block=key[2])).inserted_primary_key[0]
            for sa, sb in itertools.combinations(sorted(per), 2):
                if rng.random() < 0.5:
                    sa, sb = sb, sa
                conn.execute(insert(tables.comparisons).values(
                    study_id=study_id, item_id=item_ids[key], system_a=system_ids[sa], system_b=system_ids[sb],
                    media_a=item_media[key][sa], media_b=item_media[key][sb], is_gold=False))
                n_comparisons += 1
        for key in sorted(gold_media):
            system, bad_id = gold_media[key]
            conn.execute(insert(tables.comparisons).values(
                study_id=study_id, item_id=item_ids[key], system_a=system_ids[system],
                system_b=system_ids[system], media_a=item_media[key][system], media_b=bad_id, is_gold=True))
        n_gold = len(gold_media)
    summary = {"study": name, "public_id": public_id, "systems": system_names, "items": len(shared),
               "prompts": len({k[:2] for k in shared}), "seed_blocks": blocks, "comparisons": n_comparisons,
               "gold_pairs": n_gold, "media_dir": str(root), "tasks": sorted({k[0] for k in shared})}
    if len(blocks) == 1:
        summary["note"] = (f"Only seed block {blocks[0]} has videos: the report will show win rates between the "
                           f"seed-{blocks[0]} models but no verdict on the variants (one seed is never a verdict); "
                           "train a second seed and survey both.")
    return summary
