"""CLIP text-video similarity and frame-to-first-frame consistency, from local model folders.

- `clip_similarity`: mean over frames of cos(CLIP image embedding of the frame, CLIP text
  embedding of the caption), the "CLIPSIM" of text-to-video papers (e.g. Make-A-Video,
  VideoPoet), in [-1, 1] (not multiplied by 100).
- `frame_consistency`: mean over frames t >= 1 of cos(embedding of frame t, embedding of
  frame 0), VBench's subject-consistency idea (Huang et al. 2024, which averages the
  first-frame and previous-frame cosines of DINO features; we keep the first-frame term,
  the one that catches identity drift). Features come from a DINO/ViT folder
  (`eval.weights.dino`) when given, else from the CLIP image tower; the result says which.

Models are Hugging Face folders written by `save_pretrained` (CLIPModel + tokenizer + image
processor; a ViT/DINO model + image processor), read with `local_files_only=True` and
HF_HUB_OFFLINE set: nothing is downloaded. Frames go through the folder's own image processor
(resize, centre crop, normalise), so a real CLIP folder is used exactly as its authors preprocess.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from evaluation.metrics import ieee_fp32
from evaluation.weights import Weights, WeightsInvalid, WeightsMissing
from models.aesthetic import hf_offline

FRAME_BATCH = 32  # frames per image-tower forward


@dataclass(frozen=True)
class EmbeddingModel:
    """A loaded local model that embeds frames (and, for CLIP, captions)."""

    model: Any  # transformers CLIPModel or a vision model (ViT / DINO)
    image_processor: Any  # the folder's image processor
    tokenizer: Any | None  # CLIP's tokenizer; None for a vision-only model
    path: str  # the folder
    sha256: str  # over its weight files
    device: torch.device

    @property
    def name(self) -> str:
        return f"{type(self.model).__name__} ({Path(self.path).name}, sha256 {self.sha256[:12]})"


@lru_cache(maxsize=4)
def _load(path: str, sha256: str, device: str, text: bool) -> EmbeddingModel:
    hf_offline()
    from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

    try:
        model = AutoModel.from_pretrained(path, local_files_only=True).eval().to(device)
        if text and not hasattr(model, "get_text_features"):
            raise WeightsInvalid(f"{path} holds a {type(model).__name__}, not a CLIP model with a text tower; "
                                 "eval.weights.clip needs a CLIPModel folder.")
        processor = AutoImageProcessor.from_pretrained(path, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True) if text else None
    except (OSError, ValueError) as exc:
        if isinstance(exc, WeightsInvalid):
            raise
        raise WeightsInvalid(f"{path} could not be loaded as a local Hugging Face model "
                             f"({str(exc).splitlines()[0]}); save it with save_pretrained, tokenizer and image "
                             "processor included.") from None
    return EmbeddingModel(model, processor, tokenizer, path, sha256, torch.device(device))


def check_folder(path: str, text: bool) -> None:
    """WeightsInvalid unless `path` is a local Hugging Face model folder whose config loads (a CLIP model with
    a text tower when `text`): the pre-launch check, without loading the weights."""
    hf_offline()
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise WeightsInvalid(f"{path} could not be read as a local Hugging Face model folder "
                             f"({str(exc).splitlines()[0]}); save it with save_pretrained.") from None
    if text and not hasattr(config, "text_config"):
        raise WeightsInvalid(f"{path} holds a {config.model_type} model, not CLIP with a text tower; eval.weights.clip "
                             "needs a CLIPModel folder.")


def load_clip(weights: Weights, device: str | torch.device = "cpu", metric: str = "clip_similarity") -> EmbeddingModel:
    """The CLIP folder of `eval.weights.clip`; WeightsMissing / WeightsInvalid with one sentence."""
    path = weights.path("clip", metric)
    return _load(str(path), weights.sha256("clip", metric), str(torch.device(device)), True)


def load_consistency_model(weights: Weights, device: str | torch.device = "cpu") -> EmbeddingModel:
    """DINO/ViT of `eval.weights.dino` when set, else the CLIP folder's image tower: the choice
    `weights.metric_weights` makes (and records beside the values) from the metric's `needs` order."""
    from evaluation.weights import metric_weights

    chosen = metric_weights("frame_consistency", weights)
    if chosen == ("dino",):
        path = weights.path("dino", "frame_consistency")
        return _load(str(path), weights.sha256("dino", "frame_consistency"), str(torch.device(device)), False)
    if not chosen:
        raise WeightsMissing("frame_consistency needs a DINO/ViT folder (eval.weights.dino) or a CLIP folder "
                             "(eval.weights.clip); set one to a local save_pretrained folder or put 'dino' or "
                             "'clip' in $LTXLAB_WEIGHTS")
    return load_clip(weights, device, "frame_consistency")


def _features(output: Any) -> Tensor:
    # transformers 4 returns the projected tensor; 5 returns an output whose pooler_output is the projection
    return output if isinstance(output, Tensor) else output.pooler_output


def _as_uint8(frames: Any) -> np.ndarray:
    x = np.asarray(frames.cpu() if isinstance(frames, Tensor) else frames)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"Frames must be (T, H, W, 3) RGB, got shape {x.shape}.")
    return x if x.dtype == np.uint8 else np.clip(np.rint(x.astype(np.float32) * 255.0), 0, 255).astype(np.uint8)


@torch.no_grad()
@ieee_fp32()
def image_embeddings(embedder: EmbeddingModel, frames: Any) -> Tensor:
    """(T, H, W, 3) uint8 or [0, 1] frames -> (T, D) unit-norm float32 embeddings (CPU).

    CLIP: the projected image embedding. A vision-only model (ViT, DINO): the [CLS] token of
    the last hidden state, as VBench takes DINO's features.
    """
    video = _as_uint8(frames)
    out = []
    for start in range(0, len(video), FRAME_BATCH):
        images = list(video[start:start + FRAME_BATCH])
        pixels = embedder.image_processor(images=images, return_tensors="pt")["pixel_values"].to(embedder.device)
        if embedder.tokenizer is not None:
            feats = _features(embedder.model.get_image_features(pixel_values=pixels))  # (t, D)
        else:
            feats = embedder.model(pixel_values=pixels).last_hidden_state[:, 0]  # (t, D): [CLS]
        out.append(torch.nn.functional.normalize(feats.float(), dim=-1).cpu())
    return torch.cat(out)


@torch.no_grad()
@ieee_fp32()
def text_embeddings(embedder: EmbeddingModel, texts: list[str]) -> Tensor:
    """Captions -> (N, D) unit-norm CLIP text embeddings (truncated to the model's context)."""
    if embedder.tokenizer is None:
        raise ValueError(f"{embedder.path} has no text tower; text embeddings need a CLIP folder.")
    context = embedder.model.config.text_config.max_position_embeddings
    tokens = embedder.tokenizer(texts, padding=True, truncation=True, max_length=context, return_tensors="pt")
    tokens = {k: v.to(embedder.device) for k, v in tokens.items() if k in ("input_ids", "attention_mask")}
    feats = _features(embedder.model.get_text_features(**tokens))  # (N, D)
    return torch.nn.functional.normalize(feats.float(), dim=-1).cpu()


def text_alignment(frame_embeddings: Tensor, text_embedding: Tensor) -> Tensor:
    """(T, D) unit frame embeddings x (D,) unit caption embedding -> (T,) cosines."""
    return frame_embeddings @ text_embedding


def first_frame_consistency(frame_embeddings: Tensor) -> Tensor:
    """(T, D) unit frame embeddings -> (T-1,) cos(frame t, frame 0) for t >= 1."""
    return frame_embeddings[1:] @ frame_embeddings[0]


@dataclass(frozen=True)
class ClipOutcome:
    """One of the two scores for one video: a value with per-frame values, or the reason there is none."""

    metric: str  # clip_similarity | frame_consistency
    value: float | None
    per_frame: list[float] | None = None
    model: str | None = None  # which model produced it (name, folder, hash)
    not_applicable: str | None = None


def score_video(frames: Any, caption: str | None, weights: Weights,
                device: str | torch.device | None = None) -> dict[str, ClipOutcome]:
    """Both scores for one (T, H, W, 3) video; a missing caption or weight gives a reason, not an error."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    out: dict[str, ClipOutcome] = {}
    clip_frames: Tensor | None = None
    if not caption:
        out["clip_similarity"] = ClipOutcome("clip_similarity", None,
                                             not_applicable="clip_similarity needs a caption for this video "
                                                            "(captions.jsonl or the prompt)")
    else:
        try:
            clip = load_clip(weights, device)
            clip_frames = image_embeddings(clip, frames)
            cosines = text_alignment(clip_frames, text_embeddings(clip, [caption])[0])
            out["clip_similarity"] = ClipOutcome("clip_similarity", float(cosines.double().mean()),
                                                 cosines.tolist(), clip.name)
        except WeightsMissing as exc:
            out["clip_similarity"] = ClipOutcome("clip_similarity", None, not_applicable=str(exc))
    out["frame_consistency"] = _consistency(frames, weights, device, clip_frames)
    return out


def _consistency(frames: Any, weights: Weights, device: torch.device, clip_frames: Tensor | None) -> ClipOutcome:
    if len(frames) < 2:
        return ClipOutcome("frame_consistency", None, not_applicable="frame_consistency needs at least 2 frames")
    try:
        embedder = load_consistency_model(weights, device)
    except WeightsMissing as exc:
        return ClipOutcome("frame_consistency", None, not_applicable=str(exc))
    reuse = clip_frames is not None and embedder.tokenizer is not None  # CLIP's frame embeddings already computed
    cosines = first_frame_consistency(clip_frames if reuse else image_embeddings(embedder, frames))
    return ClipOutcome("frame_consistency", float(cosines.double().mean()), cosines.tolist(), embedder.name)
