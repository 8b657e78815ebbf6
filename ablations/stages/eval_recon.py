"""The `eval_recon` stage: reconstruct held-out clips with a trained VAE and score them.

Every clip is also scored against the per-clip mean-colour baseline (each pixel replaced
by the clip's mean RGB), the floor any VAE must beat for its numbers to mean anything.
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
def reconstruct(vae: nn.Module, video: torch.Tensor, decode_timestep: float = 0.0) -> torch.Tensor:
    """(B, 3, T, H, W) in [-1, 1] -> reconstruction from the posterior mean, same shape."""
    mean, _ = vae.encode(video)
    timestep = None
    if getattr(vae.cfg, "decoder_timestep_conditioning", False):
        timestep = torch.full((video.shape[0],), decode_timestep, device=video.device)
    return vae.decode(mean, timestep=timestep).clamp(-1, 1)


def eval_recon(
    vae: nn.Module,
    clips: Sequence[Any],
    *,
    metric_names: list[str] | None = None,
    samples_dir: Path | None = None,
    max_samples: int = 4,
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Score reconstructions of `clips` (clips.Clip with uint8 frames).

    Returns long-format rows (clip_id, source_id, metric, value, metric_version; the
    baseline under `variant=mean_colour_baseline`) and a summary of means per metric. With `samples_dir`,
    the first `max_samples` reconstructions are written as mp4 at the clip's fps.
    """
    from clips.ids import source_of_clip_id
    from clips.io import from_model, to_model, write_video
    from evaluation.metrics import METRICS, evaluate_pair

    device = next(vae.parameters()).device if any(True for _ in vae.parameters()) else pick_device()
    vae.eval()
    names = metric_names or [n for n in METRICS.names()]
    rows: list[dict[str, Any]] = []
    for index, clip in enumerate(clips):
        video = to_model(clip.frames).unsqueeze(0).to(device)  # (1, 3, T, H, W)
        recon = from_model(reconstruct(vae, video)[0].cpu())  # (T, H, W, 3) uint8
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
            safe = clip.clip_id.replace(":", "_").replace("/", "_")
            write_video(Path(samples_dir) / f"recon-{safe}.mp4", recon, clip.fps)
    summary: dict[str, float] = {}
    for variant in ("model", BASELINE):
        for name in names:
            values = [r["value"] for r in rows if r["variant"] == variant and r["metric"] == name]
            if values:
                key = name if variant == "model" else f"{BASELINE}.{name}"
                summary[key] = float(np.mean(values))
    return rows, summary
