"""The `encode_latents` stage: encode a DataSpec's training clips once per VAE.

The DiT never sees pixels during training: each clip's posterior mean is encoded once,
standardised with the VAE's per-channel latent statistics (`normalize_latents`, as
LTX-Video's trainer does with `latents_mean` / `latents_std`), and saved with everything
the DiT stage needs (captions, clip ids, fps, the first frames for image-to-video) and
the captions' text embeddings. A folder with a `DONE` marker is reused as is.

Files written to `out_dir`:
- `latents.pt`: {latents (N, Cz, t, h, w) float32 normalised, captions, clip_ids, fps (N,),
  first_frames (N, H, W, 3) uint8, video_shape (T, H, W), vae_dir, vae_kind}
- `text.pt`: `models.text.encode_to_file` of the captions; `null_text.pt` of "" (the CFG
  null caption, as diffusers' LTX pipeline encodes its default negative prompt)
- `summary.json`, then `DONE`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ablations.stages.common import atomic_torch_save, atomic_write_json, pick_device

LATENTS = "latents.pt"
TEXT = "text.pt"
NULL_TEXT = "null_text.pt"
DONE = "DONE"


@torch.no_grad()
def encode_videos(vae: torch.nn.Module, videos: torch.Tensor, batch_size: int = 8) -> torch.Tensor:
    """(N, 3, T, H, W) in [-1, 1] -> normalised posterior means (N, Cz, t, h, w), float32 on CPU."""
    device = next(vae.parameters()).device
    out = []
    for i in range(0, len(videos), batch_size):
        mean, _ = vae.encode(videos[i : i + batch_size].to(device))  # (b, Cz, t, h, w)
        out.append(vae.normalize_latents(mean.float()).cpu())
    return torch.cat(out)


def _encode_clips(vae: torch.nn.Module, clips: list[Any], batch_size: int) -> dict[str, Any]:
    """The per-clip fields of `latents.pt` for `clips`, in order (nothing random: posterior means)."""
    from clips.io import to_model

    videos = torch.stack([to_model(c.frames) for c in clips])  # (N, 3, T, H, W)
    return {
        "latents": encode_videos(vae, videos, batch_size),
        "captions": [c.caption or "" for c in clips],
        "clip_ids": [c.clip_id for c in clips],
        "fps": torch.tensor([c.fps for c in clips], dtype=torch.float64),
        "first_frames": torch.from_numpy(np.stack([c.frames[0] for c in clips])),  # (N, H, W, 3)
        "video_shape": tuple(videos.shape[2:]),
    }


def _write_encoded(out_dir: Path, blob: dict[str, Any], vae_dir: Path, vae_kind: str, data_spec: Any,
                   text_cfg: Any, started: float) -> dict[str, Any]:
    """Write latents.pt, text.pt, null_text.pt, summary.json and DONE (last) from the per-clip fields."""
    from models.config import to_dict
    from models.text import encode_to_file

    latents, captions = blob["latents"], blob["captions"]
    atomic_torch_save(
        {
            "latents": latents,
            "captions": captions,
            "clip_ids": blob["clip_ids"],
            "fps": blob["fps"],
            "first_frames": blob["first_frames"],
            "video_shape": tuple(blob["video_shape"]),
            "vae_dir": str(Path(vae_dir).resolve()),
            "vae_kind": vae_kind,
            "data_spec": to_dict(data_spec),
        },
        out_dir / LATENTS,
    )
    encoder = text_cfg.build()
    encode_to_file(encoder, captions, out_dir / TEXT)
    encode_to_file(encoder, [""], out_dir / NULL_TEXT)
    summary = {
        "clips": len(captions),
        "latent_shape": list(latents.shape[1:]),
        "video_shape": list(blob["video_shape"]),
        "latent_std": float(latents.std()),
        "text_encoder": to_dict(text_cfg),
        "vae_dir": str(Path(vae_dir).resolve()),
        "wall_time_s": time.perf_counter() - started,
    }
    atomic_write_json(out_dir / "summary.json", summary)
    (out_dir / DONE).write_text("ok\n")
    return summary


def cached_summary(out_dir: Path) -> dict[str, Any] | None:
    """The summary of a complete (DONE) latents folder, marked cached; None if it is not complete."""
    import json

    out_dir = Path(out_dir)
    if not (out_dir / DONE).exists():
        return None
    return {**json.loads((out_dir / "summary.json").read_text()), "cached": True}


def encode_latents(
    vae_dir: Path,
    data_spec: Any,
    out_dir: Path,
    *,
    text_cfg: Any | None = None,
    split: str = "train",
    batch_size: int = 8,
) -> dict[str, Any]:
    """Encode `data_spec`'s `split` clips with the VAE in `vae_dir`; cached by a DONE marker.

    `text_cfg` (models.text.TextEncoderConfig, default minilm) encodes the captions; a
    clip without a caption gets "" (the null caption). Returns the summary also written
    to `summary.json`. The sharded stage writes the same files from `encode_latents_part`
    + `merge_latent_parts`.
    """
    from ablations.stages.train_vae import load_vae
    from clips.dataset import load_clips
    from models.text import TextEncoderConfig

    out_dir = Path(out_dir)
    cached = cached_summary(out_dir)
    if cached is not None:
        return cached
    started = time.perf_counter()
    text_cfg = text_cfg or TextEncoderConfig()
    vae = load_vae(vae_dir, pick_device())
    blob = _encode_clips(vae, load_clips(data_spec, split), batch_size)
    summary = _write_encoded(out_dir, blob, vae_dir, vae.cfg.kind, data_spec, text_cfg, started)
    return {**summary, "cached": False}


PART = "part.pt"


def encode_latents_part(
    vae_dir: Path,
    data_spec: Any,
    folder: Path,
    *,
    split: str = "train",
    batch_size: int = 8,
    shard: tuple[int, int] = (0, 1),
) -> dict[str, Any]:
    """Encode rank's slice of the clips into `folder/parts/rank-K-of-N/part.pt`; its DONE record.

    A complete part is reused. Each clip is encoded from its posterior mean (no noise), so
    the merged latents do not depend on the split.
    """
    from ablations.stages.shards import build_part
    from ablations.stages.train_vae import load_vae
    from clips.dataset import load_clips

    rank, world = shard
    clips = load_clips(data_spec, split)

    def work(tmp: Path, items: slice) -> dict[str, Any]:
        chosen = clips[items]
        if not chosen:
            torch.save({"empty": True}, tmp / PART)
            return {"clips": 0}
        vae = load_vae(vae_dir, pick_device())
        torch.save({**_encode_clips(vae, chosen, batch_size), "vae_kind": vae.cfg.kind}, tmp / PART)
        return {"clips": len(chosen)}

    return build_part(folder, rank, world, len(clips), work)


def merge_latent_parts(
    vae_dir: Path,
    data_spec: Any,
    folder: Path,
    world: int,
    *,
    text_cfg: Any | None = None,
    started: float | None = None,
) -> dict[str, Any]:
    """Join the N complete parts into exactly the files `encode_latents` writes; its summary.

    The captions are encoded here, all at once, as the unsharded stage does.
    """
    from ablations.stages.shards import clean_stale, complete_parts
    from models.text import TextEncoderConfig

    started = time.perf_counter() if started is None else started
    blobs = [torch.load(path / PART, map_location="cpu", weights_only=False) for path, _ in complete_parts(folder, world)]
    blobs = [b for b in blobs if not b.get("empty")]
    if not blobs:
        raise ValueError(f"No clips to encode in {folder}: the data spec's split is empty.")
    merged = {
        "latents": torch.cat([b["latents"] for b in blobs]),
        "captions": [c for b in blobs for c in b["captions"]],
        "clip_ids": [c for b in blobs for c in b["clip_ids"]],
        "fps": torch.cat([b["fps"] for b in blobs]),
        "first_frames": torch.cat([b["first_frames"] for b in blobs]),
        "video_shape": blobs[0]["video_shape"],
    }
    summary = _write_encoded(Path(folder), merged, vae_dir, blobs[0]["vae_kind"], data_spec,
                             text_cfg or TextEncoderConfig(), started)
    clean_stale(folder)
    return {**summary, "cached": False}


def load_latents(latents_dir: Path) -> dict[str, Any]:
    """What `encode_latents` wrote: `latents.pt` plus `text` / `null_text` (models.text.load_encoded dicts)."""
    from models.text import load_encoded

    latents_dir = Path(latents_dir)
    if not (latents_dir / DONE).exists():
        raise FileNotFoundError(f"No encoded latents in {latents_dir} (no DONE marker); run encode_latents first.")
    blob = torch.load(latents_dir / LATENTS, map_location="cpu", weights_only=False)
    blob["text"] = load_encoded(latents_dir / TEXT)
    blob["null_text"] = load_encoded(latents_dir / NULL_TEXT)
    return blob
