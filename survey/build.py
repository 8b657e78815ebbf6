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
from pathlib import Path

from sqlalchemy import Engine, insert, select

from survey import db as tables
from survey.media import FORMATS, corrupt_frames, read_video, reencode_image, write_video

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
    max_raters: int | None = None  # stop admitting raters after this many (None = no cap)
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


def _new_media(conn, study_id: int, root: Path, mime: str, ext: str, duration: float | None) -> tuple[str, Path]:
    media_id = tables.random_id()
    conn.execute(insert(tables.media).values(id=media_id, study_id=study_id, file=f"{media_id}.{ext}",
                                             mime=mime, duration_s=duration))
    return media_id, root / f"{media_id}.{ext}"


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
        item_media: dict[tuple[str, str], dict[str, str]] = {}
        item_ids: dict[tuple[str, str], int] = {}
        # Encode in a shuffled order: nothing about a system may be read off write order.
        jobs = [(key, system) for key, per in shared.items() for system in per]
        rng.shuffle(jobs)
        for key, system in jobs:
            src = shared[key][system]
            frames, fps = read_video(src.video)
            media_id, path = _new_media(conn, study_id, root, mime, codec_ext, float(frames.shape[0] / fps))
            write_video(frames, path, fps, codec_ext)
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
        n_gold = 0
        if options.gold_per_rater > 0:
            for key in rng.sample(sorted(shared), min(options.gold_items, len(shared))):
                system = rng.choice(sorted(shared[key]))
                frames, fps = read_video(shared[key][system].video)
                bad_id, path = _new_media(conn, study_id, root, mime, codec_ext, float(frames.shape[0] / fps))
                write_video(corrupt_frames(frames, seed=rng.randrange(2**31)), path, fps, codec_ext)
                conn.execute(insert(tables.comparisons).values(
                    study_id=study_id, item_id=item_ids[key], system_a=system_ids[system],
                    system_b=system_ids[system], media_a=item_media[key][system], media_b=bad_id, is_gold=True))
                n_gold += 1
    return {"study": name, "public_id": public_id, "systems": system_names, "items": len(shared),
            "comparisons": n_comparisons, "gold_pairs": n_gold, "media_dir": str(root),
            "tasks": sorted({k[0] for k in shared})}
