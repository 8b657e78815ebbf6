"""The `eval_gen` stage: score a `sample` stage's folder with the generation metrics.

Reads `samples/index.jsonl` (docs/results-store.md), decodes each mp4, and scores it with
`evaluation.generation` against its prompt, its conditioning PNG (i2v) and, when the
prompt came from a held-out synthetic scene, that scene (regenerated from its clip id,
or taken from `references`). Scoring draws nothing at random, so the stage can split the
index's samples across workers (`eval_gen_part` per rank, then `merge_gen_parts`;
`ablations/stages/sharded.py`).

With `eval.weights` configured it also scores CLIP text-video similarity and frame
consistency, and embeds each generated video and its held-out scene with I3D; the merge
computes FVD per task (`t2v.fvd`, `i2v.fvd`: generated videos vs the held-out scenes their
prompts came from; StyleGAN-V's protocol, `evaluation/fvd.py`). A metric that could not be
computed keeps the sentence saying which file it needs (`not_applicable`).
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
    weights: Any = None,
    fvd_frames: int = 16,
    extras: dict[str, Any] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Score every sample listed in `samples_dir/index.jsonl`.

    Returns long rows {clip_id, source_id, prompt_id, task, metric ("<task>.<name>"),
    base_metric, value, metric_version} (clip_id and source_id fall back to the prompt id
    when a prompt has no clip)
    and `evaluation.generation.summarize`'s flat summary (means, n, Wilson CIs, chance).
    `references` maps clip ids to uint8 (T, H, W, 3) scenes; synthetic ids not in it
    are regenerated. `shard=(rank, world)` scores only that slice of the scored samples
    (`scored_entries`, `shards.shard_slice`). `weights` (evaluation.weights.Weights) serves the
    network metrics; `extras`, when given, is filled with {"not_applicable": {"<task>.<metric>": why}}
    and, with the I3D detector, "i3d": {task: {"generated": (N, 400), "reference": (M, 400)}, "detector_sha256"}.
    """
    from ablations.stages.shards import shard_slice
    from clips.io import read_video
    from evaluation.generation import (GENERATION_METRICS, GenerationSample, as_unit_float, missing_weights,
                                       score_sample, summarize)
    from evaluation.weights import weights_record

    samples_dir = Path(samples_dir)
    names = metric_names or GENERATION_METRICS.names()
    for name in names:
        GENERATION_METRICS.get(name)  # unknown names fail before any decoding
    rows: list[dict[str, Any]] = []
    ref_cache: dict[str, np.ndarray | None] = dict(references or {})
    entries = scored_entries(samples_dir)
    i3d = _I3DSets(weights, fvd_frames)
    missing = missing_weights(names, weights) if weights is not None else {}
    reasons: dict[str, str] = {}
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
        sample = GenerationSample(video=video, task=entry["task"], text=entry["text"], image=image, weights=weights,
                                  reference=None if reference is None else as_unit_float(reference))
        i3d.add(entry["task"], frames, clip_id, reference)
        source_id = sample_source_id(entry)
        scored = score_sample(sample, names)
        for name in names:
            if name not in scored and name in missing and entry["task"] in GENERATION_METRICS.get(name).tasks:
                reasons.setdefault(f"{entry['task']}.{name}", missing[name])
        for name, value in scored.items():
            rows.append({"clip_id": clip_id or entry["prompt_id"], "source_id": source_id, "prompt_id": entry["prompt_id"],
                         "task": entry["task"], "metric": f"{entry['task']}.{name}", "base_metric": name,
                         "value": value, "metric_version": GENERATION_METRICS.get(name).version})
    if extras is not None:
        extras["not_applicable"] = reasons
        extras["weights"] = weights_record(weights, {row["metric"] for row in rows}) if weights is not None else {}
        if i3d.detector is not None:
            extras["i3d"] = i3d.arrays()
    return rows, summarize(rows)


class _I3DSets:
    """Per task: I3D features of the generated videos and of the distinct held-out scenes they were prompted from."""

    def __init__(self, weights: Any, clip_frames: int):
        from ablations.stages.common import pick_device
        from evaluation.fvd import load_detector

        self.clip_frames, self.device = clip_frames, pick_device()
        self.detector, self.sha = None, None
        if weights is not None and weights.find("i3d") is not None:
            self.detector, self.sha = load_detector(weights, self.device, "fvd")
        self.sets: dict[str, dict[str, dict[str, np.ndarray]]] = {}  # task -> role -> key -> (400,)
        self.discarded: dict[str, int] = {}  # task -> videos shorter than clip_frames (left out, as StyleGAN-V does)

    def add(self, task: str, generated: np.ndarray, clip_id: str | None, reference: np.ndarray | None) -> None:
        """uint8 (T, H, W, 3) generated frames and, once per clip id, the scene it was prompted from."""
        from evaluation.fvd import i3d_features

        if self.detector is None:
            return
        sets = self.sets.setdefault(task, {"generated": {}, "reference": {}})
        videos = {"generated": (f"{len(sets['generated'])}", generated)}
        if reference is not None and clip_id not in sets["reference"]:
            videos["reference"] = (clip_id, reference)
        for role, (key, video) in videos.items():
            if len(video) >= self.clip_frames:
                sets[role][key] = i3d_features([video], self.detector, self.clip_frames, device=self.device)[0]
            else:
                self.discarded[task] = self.discarded.get(task, 0) + 1

    def arrays(self) -> dict[str, Any]:
        stack = lambda d: np.stack(list(d.values())) if d else np.zeros((0, 400))  # noqa: E731
        sets = {task: {role: stack(by_key) for role, by_key in roles.items()} for task, roles in self.sets.items()}
        return {"detector_sha256": self.sha, "discarded": dict(self.discarded), "sets": sets}


ROWS = "rows.json"
EXTRAS = "extras.json"  # a part's not_applicable reasons and the I3D detector's hash
FEATURES = "i3d.npz"  # a part's I3D features: "<task>.generated" / "<task>.reference" (N, 400)


def eval_gen_part(samples_dir: Path, folder: Path, *, metric_names: list[str] | None = None,
                  shard: tuple[int, int] = (0, 1), weights_config: Any = None, fvd_frames: int = 16) -> dict[str, Any]:
    """`eval_gen` of rank's slice into `folder/parts/rank-K-of-N/` (rows.json, extras.json, i3d.npz with the
    detector), then DONE; its DONE record. A complete part is reused.
    """
    import json

    from ablations.stages.shards import build_part
    from evaluation.weights import resolve_weights

    rank, world = shard
    weights = resolve_weights(weights_config)

    def work(tmp: Path, items: slice) -> dict[str, Any]:
        extras: dict[str, Any] = {}
        rows, _ = eval_gen(samples_dir, metric_names=metric_names, shard=shard, weights=weights,
                           fvd_frames=fvd_frames, extras=extras)
        (tmp / ROWS).write_text(json.dumps(rows))
        i3d = extras.pop("i3d", None)
        if i3d is not None:
            np.savez(tmp / FEATURES, **{f"{task}.{role}": array for task, sets in i3d["sets"].items()
                                        for role, array in sets.items()})
            extras["i3d"] = {"detector_sha256": i3d["detector_sha256"], "discarded": i3d["discarded"],
                             "tasks": sorted(i3d["sets"])}
        (tmp / EXTRAS).write_text(json.dumps(extras))
        return {"rows": len(rows)}

    return build_part(folder, rank, world, len(scored_entries(samples_dir)), work)


def merge_gen_parts(folder: Path, world: int, *, fvd_frames: int = 16, fvd_min_samples: int = 256,
                    tasks: tuple[str, ...] = ("t2v", "i2v")) -> tuple[list[dict[str, Any]], dict[str, float], dict[str, Any]]:
    """Join the N complete parts: (rows, summary) exactly as `eval_gen` returns them for every sample, and the
    set level {"not_applicable": {metric: why}, "set_metrics": {"<task>.fvd": DistributionResult.to_dict()}};
    each FVD with a value also gets a row with clip_id "__set__"."""
    import json

    from ablations.stages.eval_recon import SET_CLIP_ID, merge_weights
    from ablations.stages.shards import clean_stale, complete_parts
    from evaluation.generation import summarize

    rows: list[dict[str, Any]] = []
    reasons: dict[str, str] = {}
    weights: dict[str, dict[str, str]] = {}
    features: list[tuple[dict[str, Any], Any]] = []
    for path, _ in complete_parts(folder, world):
        rows.extend(json.loads((path / ROWS).read_text()))
        extras = json.loads((path / EXTRAS).read_text()) if (path / EXTRAS).exists() else {}
        for name, why in extras.get("not_applicable", {}).items():
            reasons.setdefault(name, why)
        merge_weights(weights, extras.get("weights", {}), "eval_gen")
        if "i3d" in extras:
            features.append((extras["i3d"], np.load(path / FEATURES)))
    clean_stale(folder)
    summary = summarize(rows)
    present = sorted({row["task"] for row in rows}) or list(tasks)
    sets = {}
    for task in present:
        result = _task_fvd(task, features, fvd_frames, fvd_min_samples)
        sets[f"{task}.fvd"] = result
        if result["value"] is None:
            reasons[f"{task}.fvd"] = result["not_applicable"]
        else:
            rows.append({"clip_id": SET_CLIP_ID, "source_id": SET_CLIP_ID, "prompt_id": SET_CLIP_ID, "task": task,
                         "metric": f"{task}.fvd", "base_metric": "fvd", "value": result["value"],
                         "metric_version": result["version"]})
            summary[f"{task}.fvd"] = result["value"]
    return rows, summary, {"not_applicable": reasons, "set_metrics": sets, "weights": weights}


def _task_fvd(task: str, parts: list[tuple[dict[str, Any], Any]], clip_frames: int, min_samples: int) -> dict[str, Any]:
    """FVD of one task's generated videos vs its held-out scenes, from the parts' features."""
    from evaluation.fvd import DISTRIBUTION_METRICS, fvd_from_features, protocol
    from evaluation.weights import missing_reason

    if not parts:
        return {"metric": "fvd", "version": DISTRIBUTION_METRICS.get("fvd").version, "value": None, "n_reference": 0,
                "n_test": 0, "protocol": protocol(clip_frames, None, 0, 0),
                "not_applicable": missing_reason(f"{task}.fvd", "i3d")}
    shas = {info["detector_sha256"] for info, _ in parts}
    if len(shas) > 1:
        raise ValueError(f"eval_gen parts were scored with different I3D detectors ({', '.join(sorted(shas))}); "
                         "delete the stage folder's parts/ and rerun.")
    empty = np.zeros((0, 400))
    generated = np.concatenate([f[f"{task}.generated"] if f"{task}.generated" in f else empty for _, f in parts])
    # a scene can be scored in two parts (a t2v sample in one, another in the next): count each scene once
    reference = np.concatenate([f[f"{task}.reference"] if f"{task}.reference" in f else empty for _, f in parts])
    reference = np.unique(reference, axis=0) if len(reference) else reference
    discarded = sum(info.get("discarded", {}).get(task, 0) for info, _ in parts)
    result = fvd_from_features(reference, generated, metric="fvd", clip_frames=clip_frames,
                               detector_sha256=shas.pop(), min_samples=min_samples, discarded=discarded)
    if result.not_applicable is None:
        return result.to_dict()
    return {**result.to_dict(), "not_applicable": f"{task}.{result.not_applicable}"}
