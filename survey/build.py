"""Build a study: collect (system, item, video) sources, copy media blinded, enumerate pairs.

Two sources: a sweep in the results store (systems = variants of `done` runs; items =
(task, prompt_id) shared by at least two variants; see docs/results-store.md), or any folder laid
out as `DIR/<system>/<prompt_id>.mp4` with `DIR/prompts.jsonl` (`id`, `text`, optional `image`).
"""

from __future__ import annotations

import itertools
import json
import random
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
from sqlalchemy import Engine, insert, select

from survey import db as tables
from survey.media import FORMATS, corrupt_frames, encode_matched, read_video, reencode_image

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
    """Samples of the `done` runs of a sweep (t2v and i2v only; recon samples are not surveyed)."""
    import pandas as pd

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
    sources: list[SourceVideo] = []
    seen: set[tuple[str, str, str]] = set()
    for run in runs.sort_values("run_id").itertuples(index=False):
        samples = root / "runs" / run.run_id / "samples"
        index = samples / "index.jsonl"
        if not index.exists():
            continue  # a run marked done before its samples were written cannot be surveyed
        for line in index.read_text().splitlines():
            if not line.strip():
                continue
            row = json.loads(line)
            key = (run.variant, row["task"], row["prompt_id"])
            if row["task"] not in ("t2v", "i2v") or key in seen:
                continue  # first seed of a variant stands for it on that item
            seen.add(key)
            image = samples / row["image"] if row.get("image") else None
            sources.append(SourceVideo(system=str(run.variant), task=row["task"], prompt_id=str(row["prompt_id"]),
                                       text=row.get("text") or "", video=samples / row["file"], image=image))
    return sources


def collect_from_dir(folder: str | Path) -> list[SourceVideo]:
    """`DIR/<system>/<prompt_id>.mp4` + `DIR/prompts.jsonl`; i2v when a prompt has an `image`."""
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
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise StudyError(f"{prompts_path} line {n} is not a JSON object with an 'id' ({exc}).") from None
    sources = []
    for system_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for video in sorted(system_dir.glob("*.mp4")):
            row = prompts.get(video.stem)
            if row is None:
                continue
            image = (root / row["image"]) if row.get("image") else None
            sources.append(SourceVideo(system=system_dir.name, task="i2v" if image else "t2v", prompt_id=video.stem,
                                       text=str(row.get("text", "")), video=video, image=image))
    return sources


def _new_media(conn, study_id: int, root: Path, mime: str, ext: str, duration: float | None,  # noqa: ANN001
               payload: int | None = None, media_id: str | None = None) -> tuple[str, Path]:
    media_id = media_id or tables.random_id()
    conn.execute(insert(tables.media).values(id=media_id, study_id=study_id, file=f"{media_id}.{ext}",
                                             mime=mime, duration_s=duration, payload_bytes=payload))
    return media_id, root / f"{media_id}.{ext}"


def _item_clips(per: dict[str, SourceVideo], key: tuple[str, str]) -> tuple[dict[str, np.ndarray], Fraction]:
    """Every system's frames for one item, cut to the shortest clip so that durations match."""
    clips, rates = {}, {}
    for system, src in per.items():
        clips[system], rates[system] = read_video(src.video)
    if len(set(rates.values())) > 1:
        raise StudyError(f"Prompt {key[1]} ({key[0]}) has videos at different frame rates {sorted(set(map(str, rates.values())))}; "
                         "re-export them at one rate (a pair must not differ in duration or frame rate).")
    n = min(c.shape[0] for c in clips.values())
    return {s: c[:n] for s, c in clips.items()}, next(iter(rates.values()))


def create_study(engine: Engine, name: str, sources: list[SourceVideo], media_dir: str | Path,
                 options: StudyOptions = StudyOptions()) -> dict:
    """Write a study (systems, items, blinded media, comparisons, gold pairs); returns a summary."""
    if options.media_format not in FORMATS:
        raise StudyError(f"Unknown media format '{options.media_format}'; use one of {sorted(FORMATS)}.")
    if not options.questions or any(not q.strip() for q in options.questions):
        raise StudyError("Every question must be a non-empty sentence.")
    by_item: dict[tuple[str, str], dict[str, SourceVideo]] = {}
    for src in sources:
        by_item.setdefault((src.task, src.prompt_id), {})[src.system] = src
    shared = {k: v for k, v in sorted(by_item.items()) if len(v) >= 2}
    if not shared:
        raise StudyError("No prompt has videos from two or more systems, so there is nothing to compare.")
    with engine.connect() as conn:
        if conn.execute(select(tables.studies.c.id).where(tables.studies.c.name == name)).first():
            raise StudyError(f"A study named '{name}' already exists in this database; pick another name.")
    rng = random.Random(options.seed)
    public_id = tables.random_id(12)
    root = Path(media_dir).expanduser().resolve() / public_id
    root.mkdir(parents=True, exist_ok=True)
    codec_ext = options.media_format
    mime = FORMATS[codec_ext][1]
    system_names = sorted({s for v in shared.values() for s in v})
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
        item_media: dict[tuple[str, str], dict[str, str]] = {}
        gold_media: dict[tuple[str, str], tuple[str, str]] = {}  # item -> (system, corrupted media id)
        item_ids: dict[tuple[str, str], int] = {}
        # Items in a shuffled order, systems shuffled within: nothing about a system may be read off
        # write order. Every video of an item (gold copy included) ends up the same size (encode_matched).
        for key in rng.sample(sorted(shared), len(shared)):
            clips, fps = _item_clips(shared[key], key)
            names: list[str | None] = rng.sample(sorted(clips), len(clips))
            frames = [clips[system] for system in names]
            if key in gold_keys:
                gold_system = rng.choice(sorted(clips))
                names.append(None)
                frames.append(corrupt_frames(clips[gold_system], seed=rng.randrange(2**31)))
            ids = [tables.random_id() for _ in names]
            payloads = encode_matched(frames, [root / f"{m}.{codec_ext}" for m in ids], fps, codec_ext, rng)
            duration = float(frames[0].shape[0] / fps)
            for system, media_id, payload in zip(names, ids, payloads):
                _new_media(conn, study_id, root, mime, codec_ext, duration, payload, media_id)
                if system is None:
                    gold_media[key] = (gold_system, media_id)
                else:
                    item_media.setdefault(key, {})[system] = media_id
        for key, per in shared.items():
            image_media = None
            first = per[sorted(per)[0]]
            if key[0] == "i2v" and first.image is not None:
                image_media, path = _new_media(conn, study_id, root, "image/png", "png", None)
                reencode_image(first.image, path)
            item_ids[key] = conn.execute(insert(tables.items).values(
                study_id=study_id, task=key[0], prompt_id=key[1], text=first.text,
                image_media=image_media)).inserted_primary_key[0]
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
    return {"study": name, "public_id": public_id, "systems": system_names, "items": len(shared),
            "comparisons": n_comparisons, "gold_pairs": n_gold, "media_dir": str(root),
            "tasks": sorted({k[0] for k in shared})}
