"""The `eval_recon` stage: reconstruct held-out clips with a trained VAE and score them.

Every clip is also scored against the per-clip mean-colour baseline (each pixel replaced
by the clip's mean RGB), the floor any VAE must beat for its numbers to mean anything.

With `eval.weights` configured it also scores LPIPS per clip and collects each clip's I3D
features of the original and the reconstruction, from which the merge computes rFVD, a
set-level metric (TokenBench's rFVD; StyleGAN-V's I3D protocol, `evaluation/fvd.py`). A
metric that could not be computed keeps the sentence saying why (`not_applicable`).

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
    weights: Any = None,
    fvd_frames: int = 16,
    extras: dict[str, Any] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Score reconstructions of `clips` (clips.Clip with uint8 frames).

    Returns long-format rows (clip_id, source_id, metric, value, metric_version; the
    baseline under `variant=mean_colour_baseline`) and a summary of means per metric. With `samples_dir`,
    the first `max_samples` reconstructions are written as mp4 at the clip's fps. Clip
    number i is decoded with its own generator, seeded from (seed, i). `shard=(rank,
    world)` scores only that slice of the clips (`shards.shard_slice`; numbers, sample
    files and rows as the whole run gives for them).

    `weights` (evaluation.weights.Weights) serves the network metrics (LPIPS) and, when it
    finds the I3D detector, each clip's first `fvd_frames` frames are embedded for rFVD.
    `extras`, when given, is filled with {"not_applicable": {metric: why}, "i3d": {"clip_ids",
    "original": (N, 400), "reconstruction": (N, 400), "detector_sha256"}} (i3d only with the detector).
    """
    from ablations.stages.shards import item_generator, shard_slice
    from clips.ids import source_of_clip_id
    from clips.io import from_model, to_model, write_video
    from evaluation.metrics import METRICS, evaluate_pair
    from evaluation.weights import weights_record

    device = next(vae.parameters()).device if any(True for _ in vae.parameters()) else pick_device()
    vae.eval()
    names = metric_names or [n for n in METRICS.names()]
    rows: list[dict[str, Any]] = []
    reasons: dict[str, str] = {}
    i3d = _I3DCollector(weights, fvd_frames, device)
    for index in range(len(clips))[shard_slice(len(clips), *shard)]:
        clip = clips[index]
        video = to_model(clip.frames).unsqueeze(0).to(device)  # (1, 3, T, H, W)
        recon = from_model(reconstruct(vae, video, generator=item_generator(seed, index))[0].cpu())  # (T, H, W, 3) uint8
        ref = clip.frames.astype(np.float32) / 255.0
        test = recon.astype(np.float32) / 255.0
        source_id = getattr(clip, "source_id", None) or source_of_clip_id(clip.clip_id)
        for variant, candidate in (("model", test), (BASELINE, mean_colour_baseline(ref))):
            for name, result in evaluate_pair(ref, candidate, names, device=device, weights=weights).items():
                if result.value is None:
                    reasons.setdefault(name, result.not_applicable or "not applicable")
                    continue
                rows.append({"clip_id": clip.clip_id, "source_id": source_id, "variant": variant, "metric": name,
                             "value": float(result.value), "metric_version": METRICS.get(name).version})
        i3d.add(clip.clip_id, clip.frames, recon)
        if samples_dir is not None and index < max_samples:
            write_video(Path(samples_dir) / f"recon-{safe_name(clip.clip_id)}.mp4", recon, clip.fps)
    if extras is not None:
        extras["not_applicable"] = reasons
        extras["weights"] = weights_record(weights, {row["metric"] for row in rows}) if weights is not None else {}
        if i3d.detector is not None:
            extras["i3d"] = i3d.arrays()
    return rows, recon_summary(rows, names)


class _I3DCollector:
    """I3D features of originals and reconstructions, one clip at a time (features kept, not videos)."""

    def __init__(self, weights: Any, clip_frames: int, device: Any):
        from evaluation.fvd import load_detector

        self.clip_frames, self.device = clip_frames, device
        self.detector, self.sha = None, None
        if weights is not None and weights.find("i3d") is not None:
            self.detector, self.sha = load_detector(weights, device, "rfvd")
        self.clip_ids: list[str] = []
        self.discarded = 0  # clips shorter than clip_frames (StyleGAN-V leaves them out)
        self.features: dict[str, list[np.ndarray]] = {"original": [], "reconstruction": []}

    def add(self, clip_id: str, original: np.ndarray, reconstruction: np.ndarray) -> None:
        """uint8 (T, H, W, 3) clip and its reconstruction; clips shorter than clip_frames are left out."""
        from evaluation.fvd import i3d_features

        if self.detector is None:
            return
        if len(original) < self.clip_frames:
            self.discarded += 1
            return
        both = i3d_features([original, reconstruction], self.detector, self.clip_frames, device=self.device)  # (2, 400)
        self.clip_ids.append(clip_id)
        self.features["original"].append(both[0])
        self.features["reconstruction"].append(both[1])

    def arrays(self) -> dict[str, Any]:
        stack = lambda rows: np.stack(rows) if rows else np.zeros((0, 400))  # noqa: E731
        return {"clip_ids": list(self.clip_ids), "detector_sha256": self.sha, "discarded": self.discarded,
                "original": stack(self.features["original"]), "reconstruction": stack(self.features["reconstruction"])}


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
EXTRAS = "extras.json"  # a part's not_applicable reasons and I3D clip ids / detector hash
FEATURES = "i3d.npz"  # a part's I3D features: original (N, 400), reconstruction (N, 400)
SET_CLIP_ID = "__set__"  # the clip_id of a set-level metric's row in metrics.parquet (docs/results-store.md)


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
    weights_config: Any = None,
    fvd_frames: int = 16,
) -> dict[str, Any]:
    """`eval_recon` of rank's slice of `data_spec`'s `split` clips into `folder/parts/rank-K-of-N/`.

    The part holds rows.json, extras.json (not_applicable reasons), i3d.npz when the I3D
    detector is configured (`weights_config`, an evaluation.weights.WeightsConfig), samples/recon-<clip>.mp4
    for clips numbered below `max_samples` and, with `references`, their source frames as
    reference/<clip>.mp4; then DONE. Its DONE record's info lists those clips ({clip_id, fps}).
    A complete part is reused.
    """
    import json

    from ablations.stages.shards import build_part
    from ablations.stages.train_vae import load_vae
    from clips.dataset import open_clips
    from clips.io import write_video
    from evaluation.weights import resolve_weights

    rank, world = shard
    clips = open_clips(data_spec, split)  # the manifest source decodes each clip as it is scored
    weights = resolve_weights(weights_config)

    def work(tmp: Path, items: slice) -> dict[str, Any]:
        rows: list[dict[str, Any]] = []
        extras: dict[str, Any] = {}
        if clips[items]:
            vae = load_vae(vae_dir, pick_device())
            rows, _ = eval_recon(vae, clips, metric_names=metric_names, samples_dir=tmp / "samples",
                                 max_samples=max_samples, seed=seed, shard=shard, weights=weights,
                                 fvd_frames=fvd_frames, extras=extras)
        kept = [clips[i] for i in range(len(clips))[items] if i < max_samples]
        if references:
            for clip in kept:
                write_video(tmp / "reference" / f"{safe_name(clip.clip_id)}.mp4", clip.frames, clip.fps)
        (tmp / ROWS).write_text(json.dumps(rows))
        i3d = extras.pop("i3d", None)
        if i3d is not None:
            np.savez(tmp / FEATURES, original=i3d.pop("original"), reconstruction=i3d.pop("reconstruction"))
            extras["i3d"] = i3d
        (tmp / EXTRAS).write_text(json.dumps(extras))
        return {"samples": [{"clip_id": c.clip_id, "fps": c.fps} for c in kept]}

    return build_part(folder, rank, world, len(clips), work)


def merge_recon_parts(
    folder: Path,
    world: int,
    out_dir: Path,
    *,
    metric_names: list[str] | None = None,
    fvd_frames: int = 16,
    fvd_min_samples: int = 256,
) -> tuple[list[dict[str, Any]], dict[str, float], list[dict[str, Any]], dict[str, Any]]:
    """Join the N complete parts: (rows, summary) exactly as `eval_recon` returns them for all
    clips, the parts' samples/ and reference/ files hard-linked into `out_dir`, the kept
    clips ({clip_id, fps}) in order, and the set level: {"not_applicable": {metric: why},
    "set_metrics": {"rfvd": DistributionResult.to_dict()}}. rFVD is computed here from the
    parts' concatenated I3D features (its row, when it has a value, has clip_id "__set__")."""
    import json

    from ablations.stages.shards import clean_stale, complete_parts, link_or_copy
    from evaluation.metrics import METRICS

    names = metric_names or [n for n in METRICS.names()]
    rows: list[dict[str, Any]] = []
    kept: list[dict[str, Any]] = []
    reasons: dict[str, str] = {}
    weights: dict[str, dict[str, str]] = {}
    parts: list[tuple[dict[str, Any], Any]] = []
    for path, record in complete_parts(folder, world):
        rows.extend(json.loads((path / ROWS).read_text()))
        kept.extend(record["info"]["samples"])
        extras = json.loads((path / EXTRAS).read_text()) if (path / EXTRAS).exists() else {}
        for name, why in extras.get("not_applicable", {}).items():
            reasons.setdefault(name, why)
        merge_weights(weights, extras.get("weights", {}), "eval_recon")
        if "i3d" in extras:
            parts.append((extras["i3d"], np.load(path / FEATURES)))
        for sub in ("samples", "reference"):
            for file in sorted((path / sub).glob("*.mp4")):  # glob of a missing folder is empty
                link_or_copy(file, Path(out_dir) / sub / file.name)
    clean_stale(folder)
    summary = recon_summary(rows, names)
    rfvd = _rfvd(parts, fvd_frames, fvd_min_samples)
    if rfvd["value"] is None:
        reasons["rfvd"] = rfvd["not_applicable"]
    else:
        rows.append({"clip_id": SET_CLIP_ID, "source_id": SET_CLIP_ID, "variant": "model", "metric": "rfvd",
                     "value": rfvd["value"], "metric_version": rfvd["version"]})
        summary["rfvd"] = rfvd["value"]
    return rows, summary, kept, {"not_applicable": reasons, "set_metrics": {"rfvd": rfvd}, "weights": weights}


def merge_weights(into: dict[str, dict[str, str]], part: dict[str, dict[str, str]], stage: str) -> None:
    """Add a part's {metric: {weights name: sha256}} record; parts scored with other files must not be mixed."""
    for metric, files in part.items():
        if into.setdefault(metric, files) != files:
            raise ValueError(f"{stage} parts scored {metric} with different weight files ({into[metric]} and {files}); "
                             "delete the stage folder's parts/ and rerun.")


def _rfvd(parts: list[tuple[dict[str, Any], Any]], clip_frames: int, min_samples: int) -> dict[str, Any]:
    """rFVD of the parts' features in part order (= clip order); the reason when the detector was not configured."""
    from evaluation.fvd import DISTRIBUTION_METRICS, fvd_from_features, protocol
    from evaluation.weights import missing_reason

    if not parts:
        return {"metric": "rfvd", "version": DISTRIBUTION_METRICS.get("rfvd").version, "value": None,
                "n_reference": 0, "n_test": 0, "protocol": protocol(clip_frames, None, 0, 0),
                "not_applicable": missing_reason("rfvd", "i3d")}
    shas = {info["detector_sha256"] for info, _ in parts}
    if len(shas) > 1:  # parts reused from a run with another detector file must not be mixed
        raise ValueError(f"eval_recon parts were scored with different I3D detectors ({', '.join(sorted(shas))}); "
                         "delete the stage folder's parts/ and rerun.")
    original = np.concatenate([features["original"] for _, features in parts])
    reconstruction = np.concatenate([features["reconstruction"] for _, features in parts])
    discarded = sum(info.get("discarded", 0) for info, _ in parts)
    return fvd_from_features(original, reconstruction, metric="rfvd", clip_frames=clip_frames,
                             detector_sha256=shas.pop(), min_samples=min_samples, discarded=discarded).to_dict()
