"""The `eval_gen` stage: score a `sample` stage's folder with the generation metrics.

Reads `samples/index.jsonl` (docs/results-store.md), decodes each mp4, and scores it with
`evaluation.generation` against its prompt, its conditioning PNG (i2v) and, when the
prompt came from a held-out synthetic scene, that scene (regenerated from its clip id,
or taken from `references`). Scoring draws nothing at random, so the stage can split the
index's samples across workers (`eval_gen_part` per rank, then `merge_gen_parts`;
`ablations/stages/sharded.py`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ablations.stages.sample import read_index, read_png

_SYNTHETIC_ID = re.compile(r"^synthetic:(train|heldout):s(\d+):(\d+)x(\d+)x(\d+)$")


def synthetic_reference(clip_id: str | None) -> np.ndarray | None:
    """uint8 (T, H, W, 3) frames of the synthetic scene a clip id names, or None for other ids."""
    from clips.synthetic import make_scene

    match = _SYNTHETIC_ID.match(clip_id or "")
    if match is None:
        return None
    split, seed, frames, height, width = match.groups()
    return make_scene(int(seed), int(frames), int(height), int(width), split=split).frames


def sample_source_id(entry: Mapping[str, Any]) -> str:
    """The independent source of a samples/index.jsonl row: its prompt's clip's source, else the prompt id.

    Index files written before `source_id` existed derive it from the clip id.
    """
    from clips.ids import source_of_clip_id

    if entry.get("source_id"):
        return str(entry["source_id"])
    return source_of_clip_id(entry["clip_id"]) if entry.get("clip_id") else str(entry["prompt_id"])


def scored_entries(samples_dir: Path) -> list[dict[str, Any]]:
    """The index rows `eval_gen` scores (t2v and i2v), in index order: the items a shard slices."""
    return [entry for entry in read_index(samples_dir) if entry["task"] in ("t2v", "i2v")]


def eval_gen(
    samples_dir: Path,
    *,
    metric_names: list[str] | None = None,
    references: Mapping[str, np.ndarray] | None = None,
    shard: tuple[int, int] = (0, 1),
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Score every sample listed in `samples_dir/index.jsonl`.

    Returns long rows {clip_id, source_id, prompt_id, task, metric ("<task>.<name>"),
    base_metric, value, metric_version} (clip_id and source_id fall back to the prompt id
    when a prompt has no clip)
    and `evaluation.generation.summarize`'s flat summary (means, n, Wilson CIs, chance).
    `references` maps clip ids to uint8 (T, H, W, 3) scenes; synthetic ids not in it
    are regenerated. `shard=(rank, world)` scores only that slice of the scored samples
    (`scored_entries`, `shards.shard_slice`).
    """
    from ablations.stages.shards import shard_slice
    from clips.io import read_video
    from evaluation.generation import GENERATION_METRICS, GenerationSample, as_unit_float, score_sample, summarize

    samples_dir = Path(samples_dir)
    names = metric_names or GENERATION_METRICS.names()
    for name in names:
        GENERATION_METRICS.get(name)  # unknown names fail before any decoding
    rows: list[dict[str, Any]] = []
    ref_cache: dict[str, np.ndarray | None] = dict(references or {})
    entries = scored_entries(samples_dir)
    for entry in entries[shard_slice(len(entries), *shard)]:
        exact = (samples_dir / entry["file"]).with_suffix(".npy")  # the model's frames, before H.264
        frames = np.load(exact) if exact.exists() else read_video(samples_dir / entry["file"])[0]
        video = as_unit_float(frames)  # (T, H, W, 3)
        image = as_unit_float(read_png(samples_dir / entry["image"])) if entry.get("image") else None
        clip_id = entry.get("clip_id")
        if clip_id and clip_id not in ref_cache:
            ref_cache[clip_id] = synthetic_reference(clip_id)
        reference = ref_cache.get(clip_id) if clip_id else None
        if reference is not None and reference.shape != video.shape:
            reference = None  # a scene of another size cannot be compared frame for frame
        sample = GenerationSample(video=video, task=entry["task"], text=entry["text"], image=image,
                                  reference=None if reference is None else as_unit_float(reference))
        source_id = sample_source_id(entry)
        for name, value in score_sample(sample, names).items():
            rows.append({"clip_id": clip_id or entry["prompt_id"], "source_id": source_id, "prompt_id": entry["prompt_id"],
                         "task": entry["task"], "metric": f"{entry['task']}.{name}", "base_metric": name,
                         "value": value, "metric_version": GENERATION_METRICS.get(name).version})
    return rows, summarize(rows)


ROWS = "rows.json"


def eval_gen_part(samples_dir: Path, folder: Path, *, metric_names: list[str] | None = None,
                  shard: tuple[int, int] = (0, 1)) -> dict[str, Any]:
    """`eval_gen` of rank's slice into `folder/parts/rank-K-of-N/rows.json`, then DONE; its DONE record.

    A complete part is reused.
    """
    import json

    from ablations.stages.shards import build_part

    rank, world = shard

    def work(tmp: Path, items: slice) -> dict[str, Any]:
        rows, _ = eval_gen(samples_dir, metric_names=metric_names, shard=shard)
        (tmp / ROWS).write_text(json.dumps(rows))
        return {"rows": len(rows)}

    return build_part(folder, rank, world, len(scored_entries(samples_dir)), work)


def merge_gen_parts(folder: Path, world: int) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Join the N complete parts: (rows, summary) exactly as `eval_gen` returns them for every sample."""
    import json

    from ablations.stages.shards import clean_stale, complete_parts
    from evaluation.generation import summarize

    rows = [row for path, _ in complete_parts(folder, world) for row in json.loads((path / ROWS).read_text())]
    clean_stale(folder)
    return rows, summarize(rows)
