"""The `eval_recon` stage: reconstruct held-out clips with a trained VAE and score them.

Every clip is also scored against the per-clip mean-colour baseline (each pixel replaced
by the clip's mean RGB), the floor any VAE must beat for its numbers to mean anything.

The decoder's injected noise comes from a generator seeded per clip, from (seed, clip
number), so the scores do not depend on the order or the worker a clip is scored in: the
stage can split its clips across workers (`eval_recon_part` per rank, then
`merge_recon_parts`; `ablations/stages/sharded.py`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ablations.stages.common import pick_device

BASELINE = "mean_colour_baseline"


def mean_colour_baseline(frames: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) float in [0, 1] -> the same shape filled with the clip's mean colour."""
    return np.broadcast_to(frames.mean(axis=(0, 1, 2), keepdims=True), frames.shape).copy()


@torch.no_grad()
def reconstruct(vae: nn.Module, video: torch.Tensor, decode_timestep: float = 0.0,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, 3, T, H, W) in [-1, 1] -> reconstruction from the posterior mean, same shape.

    `generator` draws the decoder's injected noise (None: the global RNG).
    """
    mean, _ = vae.encode(video)
    timestep = None
    if getattr(vae.cfg, "decoder_timestep_conditioning", False):
        timestep = torch.full((video.shape[0],), decode_timestep, device=video.device)
    return vae.decode(mean, timestep=timestep, generator=generator).clamp(-1, 1)


def safe_name(clip_id: str) -> str:
    """A clip id as a file name stem (the recon-<stem>.mp4 / reference/<stem>.mp4 names)."""
    return clip_id.replace(":", "_").replace("/", "_")


def eval_recon(
    vae: nn.Module,
    clips: Sequence[Any],
    *,
    metric_names: list[str] | None = None,
    samples_dir: Path | None = None,
    max_samples: int = 4,
    seed: int = 0,
    shard: tuple[int, int] = (0, 1),
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Score reconstructions of `clips` (clips.Clip with uint8 frames).

    Returns long-format rows (clip_id, source_id, metric, value, metric_version; the
    baseline under `variant=mean_colour_baseline`) and a summary of means per metric. With `samples_dir`,
    the first `max_samples` reconstructions are written as mp4 at the clip's fps. Clip
    number i is decoded with its own generator, seeded from (seed, i). `shard=(rank,
    world)` scores only that slice of the clips (`shards.shard_slice`; numbers, sample
    files and rows as the whole run gives for them).
    """
    from ablations.stages.shards import item_generator, shard_slice
    from clips.ids import source_of_clip_id
    from clips.io import from_model, to_model, write_video
    from evaluation.metrics import METRICS, evaluate_pair

    device = next(vae.parameters()).device if any(True for _ in vae.parameters()) else pick_device()
    vae.eval()
    names = metric_names or [n for n in METRICS.names()]
    rows: list[dict[str, Any]] = []
    for index in range(len(clips))[shard_slice(len(clips), *shard)]:
        clip = clips[index]
        video = to_model(clip.frames).unsqueeze(0).to(device)  # (1, 3, T, H, W)
        recon = from_model(reconstruct(vae, video, generator=item_generator(seed, index))[0].cpu())  # (T, H, W, 3) uint8
        ref = clip.frames.astype(np.float32) / 255.0
        test = recon.astype(np.float32) / 255.0
        source_id = getattr(clip, "source_id", None) or source_of_clip_id(clip.clip_id)
        for variant, candidate in (("model", test), (BASELINE, mean_colour_baseline(ref))):
            for name, result in evaluate_pair(ref, candidate, names).items():
                if result.value is None:
                    continue
                rows.append({"clip_id": clip.clip_id, "source_id": source_id, "variant": variant, "metric": name,
                             "value": float(result.value), "metric_version": METRICS.get(name).version})
        if samples_dir is not None and index < max_samples:
            write_video(Path(samples_dir) / f"recon-{safe_name(clip.clip_id)}.mp4", recon, clip.fps)
    return rows, recon_summary(rows, names)


def recon_summary(rows: Sequence[dict[str, Any]], names: Sequence[str]) -> dict[str, float]:
    """Means per metric of `eval_recon` rows: `<metric>` for the model, `mean_colour_baseline.<metric>`."""
    summary: dict[str, float] = {}
    for variant in ("model", BASELINE):
        for name in names:
            values = [r["value"] for r in rows if r["variant"] == variant and r["metric"] == name]
            if values:
                key = name if variant == "model" else f"{BASELINE}.{name}"
                summary[key] = float(np.mean(values))
    return summary


ROWS = "rows.json"


def eval_recon_part(
    vae_dir: Path,
    data_spec: Any,
    folder: Path,
    *,
    split: str = "heldout",
    metric_names: list[str] | None = None,
    max_samples: int = 4,
    seed: int = 0,
    references: bool = False,
    shard: tuple[int, int] = (0, 1),
) -> dict[str, Any]:
    """`eval_recon` of rank's slice of `data_spec`'s `split` clips into `folder/parts/rank-K-of-N/`.

    The part holds rows.json, samples/recon-<clip>.mp4 for clips numbered below
    `max_samples` and, with `references`, their source frames as reference/<clip>.mp4;
    then DONE. Its DONE record's info lists those clips ({clip_id, fps}). A complete part is reused.
    """
    import json

    from ablations.stages.shards import build_part
    from ablations.stages.train_vae import load_vae
    from clips.dataset import open_clips
    from clips.io import write_video

    rank, world = shard
    clips = open_clips(data_spec, split)  # the manifest source decodes each clip as it is scored

    def work(tmp: Path, items: slice) -> dict[str, Any]:
        rows: list[dict[str, Any]] = []
        if clips[items]:
            vae = load_vae(vae_dir, pick_device())
            rows, _ = eval_recon(vae, clips, metric_names=metric_names, samples_dir=tmp / "samples",
                                 max_samples=max_samples, seed=seed, shard=shard)
        kept = [clips[i] for i in range(len(clips))[items] if i < max_samples]
        if references:
            for clip in kept:
                write_video(tmp / "reference" / f"{safe_name(clip.clip_id)}.mp4", clip.frames, clip.fps)
        (tmp / ROWS).write_text(json.dumps(rows))
        return {"samples": [{"clip_id": c.clip_id, "fps": c.fps} for c in kept]}

    return build_part(folder, rank, world, len(clips), work)


def merge_recon_parts(
    folder: Path,
    world: int,
    out_dir: Path,
    *,
    metric_names: list[str] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, float], list[dict[str, Any]]]:
    """Join the N complete parts: (rows, summary) exactly as `eval_recon` returns them for all
    clips, the parts' samples/ and reference/ files hard-linked into `out_dir`, and the kept
    clips ({clip_id, fps}) in order."""
    import json

    from ablations.stages.shards import clean_stale, complete_parts, link_or_copy
    from evaluation.metrics import METRICS

    names = metric_names or [n for n in METRICS.names()]
    rows: list[dict[str, Any]] = []
    kept: list[dict[str, Any]] = []
    for path, record in complete_parts(folder, world):
        rows.extend(json.loads((path / ROWS).read_text()))
        kept.extend(record["info"]["samples"])
        for sub in ("samples", "reference"):
            for file in sorted((path / sub).glob("*.mp4")):  # glob of a missing folder is empty
                link_or_copy(file, Path(out_dir) / sub / file.name)
    clean_stale(folder)
    return rows, recon_summary(rows, names), kept
