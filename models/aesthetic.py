"""The Siamese aesthetic scorer of LTX-Video's curation (paper §4): backbone -> MLP head -> one score.

LTX-Video scores every training clip with "an aesthetic model, a Siamese network trained on pairs
of images tagged by people". Here one `AestheticScorer` scores both sides of a pair with the same
weights (that is the Siamese part), and `pairwise_loss` is the Bradley-Terry / logistic ranking
loss on score(a) - score(b): P(a preferred over b) = sigmoid(score(a) - score(b)), a tie counts as
half a win (target 0.5). A clip's score is the mean of its frames' scores over a few evenly
sampled frames (`sample_indices`).

Backbones (`AestheticConfig.kind`, registry `AESTHETIC_BACKBONES`):
- `cnn` (the offline default): a small CNN trained from scratch with the head. It has no
  per-sample normalisation, so global contrast and high-frequency energy (sharpness, noise)
  stay visible to the head.
- `hf:<local path>`: any Hugging Face vision model saved with `save_pretrained` (CLIPVisionModel,
  a full CLIPModel / SigLIP / BLIP (their vision tower is used), ViTModel, DINOv2, ConvNeXt, ...),
  loaded with `local_files_only=True` and frozen by default. Its pooled output (projected into
  the joint image-text space when the model has a `visual_projection`, as LAION's CLIP aesthetic
  predictor uses) feeds the head through a LayerNorm. Frames are centre-cropped, resized to the
  model's `image_size` and normalised with the folder's image-processor mean/std (0.5 when the
  folder has none). A relative path is also looked up under `$LTXLAB_WEIGHTS`.

Frames enter as uint8 `(..., 3, H, W)` or float in [-1, 1] (the house convention); `prepare`
turns decoded uint8 `(T, H, W, 3)` frames into the scorer's square input. `fit_pairs` trains on
tensors (cached features when the backbone is frozen); `save_scorer` / `load_scorer` write and
read a scorer folder (`scorer.safetensors`, `config.json` with that file's sha256, optional
`report.json`), keeping the backbone's path and weights hash for provenance; a torn or swapped
weights file, or a backbone whose weights changed, is refused in one sentence
(`read_scorer_meta` does the cheap part of that check without building the model). Nothing here
touches the network; `models/tiny_hf.py` writes tiny random HF folders for tests.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.config import ConfigError, from_dict, to_dict
from models.registry import Registry
from models.weights import file_sha256

SCORER_FORMAT = "ltxlab-aesthetic-scorer/1"
WEIGHTS_FILE = "scorer.safetensors"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".msgpack", ".h5")  # files hashed for provenance


@dataclasses.dataclass(kw_only=True, frozen=True)
class AestheticConfig:
    kind: str = "cnn"  # backbone: 'cnn' (small CNN from scratch) or 'hf:<local path>' (frozen HF vision model)
    image_size: int = 64  # cnn: square side frames are centre-cropped and resized to; hf uses the model's own
    frames: int = 4  # frames sampled evenly per clip; a clip's score is the mean of their scores (images: 1)
    channels: tuple[int, ...] = (32, 64, 96, 128)  # cnn: widths of the stride-2 stages after a full-resolution stem
    hidden: int = 128  # width of the MLP head's hidden layer
    dropout: float = 0.1  # dropout in the head, training only
    freeze_backbone: bool = True  # hf: keep the pretrained backbone frozen (False fine-tunes it; cnn always trains)

    @property
    def family(self) -> str:
        return self.kind.split(":", 1)[0]

    @property
    def min_image_size(self) -> int:
        """The smallest cnn input whose last stride-2 stage keeps 2x2 pixels: its pooled log spread
        (`_pool`'s variance) is NaN over a single pixel."""
        return 2 ** (len(self.channels) + 1)

    def build(self) -> "AestheticScorer":
        if self.image_size < 8 or self.frames < 1 or not self.channels or self.hidden < 1:
            raise ConfigError("An aesthetic scorer needs image_size >= 8, frames >= 1, some CNN channels and hidden >= 1.")
        if self.family == "cnn" and self.image_size < self.min_image_size:
            raise ConfigError(f"The cnn aesthetic scorer needs image_size >= {self.min_image_size} (its "
                              f"{len(self.channels)} stride-2 stages must leave 2x2 pixels), not {self.image_size}.")
        backbone = AESTHETIC_BACKBONES.get(self.family)(self)
        return AestheticScorer(self, backbone)


class Backbone(nn.Module):
    """Frames (N, 3, S, S) float in [-1, 1] -> features (N, width). `image_size` is S."""

    width: int
    image_size: int
    trainable: bool
    provenance: dict[str, Any]


AESTHETIC_BACKBONES: Registry[Callable[[AestheticConfig], Backbone]] = Registry("aesthetic backbone")


class CNNBackbone(Backbone):
    """A full-resolution 3x3 stem, then stride-2 stages of two 3x3 convs (SiLU).

    Features: every stage's spatial mean and log standard deviation per channel. Pooling every
    stage (not only the last) hands the head pixel-scale statistics (sharpness, noise, contrast:
    the spread of a filter's response is its band's energy) next to the coarse ones (composition,
    colour layout). The log makes a ratio of band energies, which is what sharpness is once
    contrast is factored out, a difference the head can form linearly.
    """

    def __init__(self, cfg: AestheticConfig) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, cfg.channels[0], 3, padding=1), nn.SiLU())
        stages, c_in = [], cfg.channels[0]
        for c in cfg.channels:
            stages.append(nn.Sequential(nn.Conv2d(c_in, c, 3, stride=2, padding=1), nn.SiLU(),
                                        nn.Conv2d(c, c, 3, padding=1), nn.SiLU()))
            c_in = c
        self.stages = nn.ModuleList(stages)
        self.width = 2 * (cfg.channels[0] + sum(cfg.channels))
        self.image_size = cfg.image_size
        self.trainable = True
        self.provenance = {"backbone": "cnn"}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        pooled = [h.mean(dim=(2, 3)), logstd(h)]
        for stage in self.stages:
            h = stage(h)
            pooled += [h.mean(dim=(2, 3)), logstd(h)]
        return torch.cat(pooled, dim=1)  # (N, 2 * (channels[0] + sum(channels))): means, then log stds, per stage


def logstd(h: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, C) log of the spatial standard deviation; the floor keeps a flat map's gradient finite."""
    return 0.5 * torch.log(h.var(dim=(2, 3)) + 1e-6)


class HFBackbone(Backbone):
    """A Hugging Face vision model's pooled image embedding (frozen unless freeze_backbone=False)."""

    def __init__(self, cfg: AestheticConfig, encoder: nn.Module, projection: nn.Module | None, image_size: int,
                 mean: Sequence[float], std: Sequence[float], provenance: dict[str, Any]) -> None:
        super().__init__()
        self.encoder = encoder
        self.projection = projection
        self.image_size = image_size
        self.trainable = not cfg.freeze_backbone
        self.provenance = provenance
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        if not self.trainable:
            self.requires_grad_(False)
        with torch.no_grad():
            self.width = int(self.forward(torch.zeros(1, 3, image_size, image_size)).shape[-1])

    def train(self, mode: bool = True) -> "HFBackbone":
        super().train(mode and self.trainable)  # a frozen backbone stays in eval mode (no dropout)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pixels = ((x + 1.0) / 2.0 - self.mean) / self.std  # [-1, 1] -> the processor's normalisation
        param = next(self.encoder.parameters())
        out = self.encoder(pixel_values=pixels.to(param.dtype))
        pooled = getattr(out, "pooler_output", None)
        if pooled is None:
            pooled = getattr(out, "image_embeds", None)
        if pooled is None:
            hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
            pooled = hidden.mean(dim=(2, 3)) if hidden.ndim == 4 else hidden.mean(dim=1)  # conv maps / tokens
        if pooled.ndim == 4:  # ResNet-style pooler (N, C, 1, 1)
            pooled = pooled.flatten(1)
        if self.projection is not None:
            pooled = self.projection(pooled)
        return pooled.float()


class AestheticScorer(nn.Module):
    """backbone -> MLP head -> one score per frame; per clip, the mean over its sampled frames."""

    def __init__(self, cfg: AestheticConfig, backbone: Backbone) -> None:
        super().__init__()
        self.config = cfg
        self.backbone = backbone
        # BatchNorm standardises each pooled feature over the batch: the differences that rank images
        # (a little more high-frequency energy) are small next to the features' common offset.
        self.head = nn.Sequential(nn.BatchNorm1d(backbone.width), nn.Linear(backbone.width, cfg.hidden), nn.GELU(), nn.Dropout(cfg.dropout),
                                  nn.Linear(cfg.hidden, 1))

    @property
    def image_size(self) -> int:
        return self.backbone.image_size

    def to_input(self, frames: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) uint8 or float in [-1, 1] -> float (N, 3, S, S) in [-1, 1] on the scorer's device."""
        device = next(self.parameters()).device
        x = frames.to(device)
        x = x.float() / 127.5 - 1.0 if x.dtype == torch.uint8 else x.float()
        if x.shape[-2:] != (self.image_size, self.image_size):
            x = square(x, self.image_size)
        return x

    def features(self, frames: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) frames -> (N, width) backbone features."""
        return self.backbone(self.to_input(frames))

    def head_scores(self, feats: torch.Tensor) -> torch.Tensor:
        return self.head(feats).squeeze(-1)  # (N,)

    def forward(self, frames: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Scores: (B, 3, H, W) images -> (B,); (B, F, 3, H, W) clips (+ bool (B, F) mask of real frames) -> (B,)."""
        if frames.ndim == 4:
            return self.head_scores(self.features(frames))
        b, f = frames.shape[:2]
        mask = torch.ones(b, f, dtype=torch.bool) if mask is None else mask.bool()
        per_frame = self.head_scores(self.features(frames[mask.to(frames.device)]))
        return clip_mean(per_frame, mask.to(per_frame.device))


def clip_mean(per_frame: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Scores of the True entries of mask (B, F), flattened in order -> (B,) mean per row."""
    owner = torch.arange(mask.shape[0], device=mask.device).repeat_interleave(mask.sum(dim=1))
    total = torch.zeros(mask.shape[0], dtype=per_frame.dtype, device=per_frame.device).index_add(0, owner, per_frame)
    return total / mask.sum(dim=1).clamp_min(1).to(per_frame.dtype)


def pairwise_loss(score_a: torch.Tensor, score_b: torch.Tensor, target: torch.Tensor,
                  weight: torch.Tensor | None = None) -> torch.Tensor:
    """Bradley-Terry ranking loss: BCE of sigmoid(score_a - score_b) against target (1 = a preferred, 0 = b, 0.5 = tie).

    Weighted mean over pairs (`weight` defaults to 1 each). Its minimum for a tie is at equal scores.
    """
    losses = F.binary_cross_entropy_with_logits(score_a - score_b, target.to(score_a.dtype), reduction="none")
    if weight is None:
        return losses.mean()
    weight = weight.to(losses.dtype)
    return (losses * weight).sum() / weight.sum().clamp_min(1e-12)


def square(x: torch.Tensor, size: int) -> torch.Tensor:
    """Float (N, 3, H, W) -> (N, 3, size, size): centre crop to a square, then antialiased bilinear resize."""
    h, w = x.shape[-2:]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    x = x[..., top : top + side, left : left + side]
    if side == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def sample_indices(n_frames: int, k: int) -> list[int]:
    """k frame indices spread evenly over n_frames (all of them when there are fewer); always includes the middle for k=1."""
    if n_frames <= k:
        return list(range(n_frames))
    if k == 1:
        return [n_frames // 2]
    return sorted({round(i * (n_frames - 1) / (k - 1)) for i in range(k)})


def prepare(frames: Any, image_size: int, k: int) -> torch.Tensor:
    """Decoded uint8 (T, H, W, 3) frames (numpy or tensor; an (H, W, 3) image counts as T=1) -> uint8 (k', 3, S, S)."""
    x = torch.as_tensor(np.array(frames, copy=True)) if not isinstance(frames, torch.Tensor) else frames
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected uint8 (T, H, W, 3) frames, got shape {tuple(x.shape)}")
    x = x[sample_indices(x.shape[0], k)].permute(0, 3, 1, 2).float()
    return square(x, image_size).round().clamp(0, 255).to(torch.uint8)


# ---- training ---------------------------------------------------------------------------------------

def fit_pairs(scorer: AestheticScorer, frames: torch.Tensor, mask: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
              target: torch.Tensor, weight: torch.Tensor | None = None, *, epochs: int = 20, batch_size: int = 64,
              lr: float = 1e-3, weight_decay: float = 1e-4, seed: int = 0, flip: bool = True,
              on_epoch: Callable[[int, float], None] | None = None) -> list[float]:
    """Train on pairs of items with the Siamese ranking loss; returns the mean loss of each epoch.

    frames: uint8 (N, F, 3, S, S) items (S = scorer.image_size), mask: bool (N, F) real frames;
    a, b: (P,) item indices, target: (P,) 1 / 0 / 0.5, weight: optional (P,). AdamW with a cosine
    decay to 5% of `lr`; a random horizontal flip per item and step when `flip`. With a frozen
    backbone, every frame's features are computed once and only the head trains. At the end the
    head's BatchNorm statistics are recomputed on the final features (`recalibrate_norm`).
    """
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # dropout draws
    device = next(scorer.parameters()).device
    params = [p for p in scorer.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    steps = epochs * math.ceil(len(a) / batch_size)
    # cosine decay to 5% of lr: the last epochs average out the noise of single noisy pairs
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(i / max(steps, 1), 1.0))))
    weight = torch.ones(len(a)) if weight is None else weight
    cached, index = _cache_features(scorer, frames, mask) if not scorer.backbone.trainable else (None, None)
    curve = []
    for epoch in range(epochs):
        scorer.train()
        order = torch.randperm(len(a), generator=gen)
        total, count = 0.0, 0
        for start in range(0, len(order), batch_size):
            sel = order[start : start + batch_size]
            items, inverse = torch.unique(torch.cat([a[sel], b[sel]]), return_inverse=True)
            m = mask[items]
            if cached is not None:
                per_frame = scorer.head_scores(cached[index[items][m]].to(device))
            else:
                x = frames[items]
                if flip:
                    flipped = torch.rand(len(items), generator=gen) < 0.5
                    x = torch.where(flipped.view(-1, 1, 1, 1, 1), x.flip(-1), x)
                per_frame = scorer.head_scores(scorer.features(x[m]))
            scores = clip_mean(per_frame, m.to(per_frame.device))
            sa, sb = scores[inverse[: len(sel)]], scores[inverse[len(sel) :]]
            loss = pairwise_loss(sa, sb, target[sel].to(device), weight[sel].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(sel)
            count += len(sel)
        curve.append(total / max(count, 1))
        if not math.isfinite(curve[-1]):
            raise FloatingPointError(f"The aesthetic ranking loss became {curve[-1]} at epoch {epoch + 1}; "
                                     "lower the learning rate.")
        if on_epoch is not None:
            on_epoch(epoch + 1, curve[-1])
    used = torch.unique(torch.cat([a, b]))  # only items of training pairs set the statistics
    with torch.no_grad():
        scorer.eval()
        if cached is not None:
            feats = cached[index[used][mask[used]]]
        else:
            feats = torch.cat([scorer.features(chunk) for chunk in frames[used][mask[used]].split(256)])
        recalibrate_norm(scorer, feats)
    return curve


@torch.no_grad()
def _cache_features(scorer: AestheticScorer, frames: torch.Tensor,
                    mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Frozen backbone: features (M, D) of the M real frames, and (N, F) the row of each frame in them (-1 = none)."""
    scorer.eval()
    cached = torch.cat([scorer.features(chunk) for chunk in frames[mask].split(256)])  # (M, D)
    index = torch.full(mask.shape, -1, dtype=torch.long)
    index[mask] = torch.arange(len(cached))
    return cached, index


@torch.no_grad()
def recalibrate_norm(scorer: AestheticScorer, feats: torch.Tensor) -> None:
    """Set the head's BatchNorm statistics to the exact mean and variance of `feats` (M, D): the final features.

    The running averages lag behind features that moved during training (the CNN learns them), and
    a lagging shift shows up as noise in every eval-mode score; one pass at the end removes it
    (the `update_bn` step of SWA, here exact rather than a running average).
    """
    norm = scorer.head[0]
    if len(feats) < 2:
        return
    norm.running_mean.copy_(feats.mean(dim=0))
    norm.running_var.copy_(feats.var(dim=0))  # unbiased, as BatchNorm keeps it
    norm.eval()


@torch.no_grad()
def score_items(scorer: AestheticScorer, frames: torch.Tensor, mask: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """uint8 (N, F, 3, S, S) items + bool (N, F) mask -> (N,) float scores (eval mode, CPU)."""
    scorer.eval()
    out = [scorer(frames[i : i + batch_size], mask[i : i + batch_size]).cpu() for i in range(0, len(frames), batch_size)]
    return torch.cat(out) if out else torch.zeros(0)


# ---- Hugging Face backbones -------------------------------------------------------------------------

def hf_folder(source: str, what: str) -> Path:
    """The local folder of `hf:<path>` (a relative path is also tried under $LTXLAB_WEIGHTS); else one ConfigError sentence.

    The folder must hold `config.json` and a weights file, as `save_pretrained` writes them.
    """
    if not source:
        raise ConfigError(f"The {what} kind 'hf' needs a local model folder, e.g. 'hf:/models/clip-vit-large-patch14'.")
    path = Path(source).expanduser()
    candidates = [path]
    root = os.environ.get("LTXLAB_WEIGHTS")
    if root and not path.is_absolute():
        candidates.append(Path(root).expanduser() / path)
    for folder in candidates:
        if (folder / "config.json").is_file():
            if not any(p.name.endswith(WEIGHT_SUFFIXES) for p in folder.iterdir() if p.is_file()):
                raise ConfigError(f"The {what} folder {folder} has config.json but no weights file (model.safetensors "
                                  "or pytorch_model.bin); copy the model's weights there.")
            return folder.resolve()
    where = " or ".join(str(c) for c in candidates)
    if not root and not path.is_absolute():
        where += " (set LTXLAB_WEIGHTS to look under a weights folder)"
    raise ConfigError(f"The {what} needs config.json and the weights of a Hugging Face model (as `save_pretrained` "
                      f"writes them) in {where}, and there is no config.json there; copy the model there or pass "
                      "another hf:<path>.")


def weights_sha256(folder: str | Path) -> str:
    """sha256 over the weight files of a model folder (names and bytes, sorted by name): the provenance hash."""
    digest = hashlib.sha256()
    files = sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES))
    for path in files:
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                digest.update(chunk)
    return digest.hexdigest()


def hf_offline() -> None:
    """Make Hugging Face libraries refuse the network (belt and braces next to local_files_only)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


CLIP_MEAN, CLIP_STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]


def _processor_stats(folder: Path, model_type: str) -> tuple[list[float], list[float]]:
    """The folder's image-processor mean/std; without one, CLIP's for CLIP models and 0.5 (ViT, SigLIP) otherwise."""
    from transformers import AutoImageProcessor

    try:
        proc = AutoImageProcessor.from_pretrained(str(folder), local_files_only=True)
        return [float(v) for v in proc.image_mean], [float(v) for v in proc.image_std]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return (CLIP_MEAN, CLIP_STD) if model_type.startswith("clip") else ([0.5] * 3, [0.5] * 3)


@AESTHETIC_BACKBONES.register("cnn")
def build_cnn(cfg: AestheticConfig) -> Backbone:
    return CNNBackbone(cfg)


@AESTHETIC_BACKBONES.register("hf")
def build_hf(cfg: AestheticConfig) -> Backbone:
    folder = hf_folder(cfg.kind.split(":", 1)[1] if ":" in cfg.kind else "", "aesthetic backbone")
    hf_offline()
    from transformers import AutoConfig, AutoModel

    try:
        hf_cfg = AutoConfig.from_pretrained(str(folder), local_files_only=True)
        model = AutoModel.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as exc:
        reason = str(exc).splitlines()[0].rstrip(".") if str(exc) else type(exc).__name__
        raise ConfigError(f"Cannot load the aesthetic backbone from {folder} ({reason}); save a vision model there "
                          "with `save_pretrained`.") from None
    encoder = getattr(model, "vision_model", None)
    encoder = model if encoder is None else encoder  # CLIP / SigLIP / BLIP: the vision tower only
    projection = getattr(model, "visual_projection", None)
    vision_cfg = getattr(hf_cfg, "vision_config", None) or hf_cfg
    size = getattr(vision_cfg, "image_size", None) or 224
    size = int(size[0] if isinstance(size, (list, tuple)) else size)
    mean, std = _processor_stats(folder, hf_cfg.model_type)
    provenance = {"backbone": "hf", "path": str(folder), "name": folder.name, "model_type": hf_cfg.model_type,
                  "class": type(model).__name__, "weights_sha256": weights_sha256(folder)}
    return HFBackbone(cfg, encoder.eval(), projection, size, mean, std, provenance)


# ---- scorer folders ---------------------------------------------------------------------------------

def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def save_scorer(scorer: AestheticScorer, folder: str | Path, report: dict | None = None,
                extra: dict | None = None) -> Path:
    """Write `scorer.safetensors` (all weights; only the head's when the backbone is frozen), `report.json`, `config.json`.

    `config.json` is written last and holds the weights file's sha256, so a folder whose weights were
    cut short or replaced is refused by `load_scorer` instead of scoring with the wrong tensors.
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in scorer.state_dict().items()
             if scorer.backbone.trainable or not k.startswith("backbone.")}
    tmp = folder / (WEIGHTS_FILE + ".tmp")
    save_file(state, str(tmp), metadata={"format": SCORER_FORMAT})
    os.replace(tmp, folder / WEIGHTS_FILE)
    meta = {"format": SCORER_FORMAT, "config": to_dict(scorer.config), "backbone": scorer.backbone.provenance,
            "image_size": scorer.image_size, "weights": WEIGHTS_FILE,
            "weights_sha256": file_sha256([str(folder / WEIGHTS_FILE)]),
            "saved": "all" if scorer.backbone.trainable else "head", **(extra or {})}
    if report is not None:
        _write_atomic(folder / "report.json", json.dumps(report, indent=2, default=float))
    _write_atomic(folder / "config.json", json.dumps(meta, indent=2))  # last: its presence marks a complete folder
    return folder


def read_scorer_meta(folder: str | Path) -> dict[str, Any]:
    """`config.json` of a scorer folder, checked: format, config fields, and the weights file's sha256.

    Raises ConfigError (one sentence) for a missing, foreign, torn or mismatched folder. Cheap: no torch
    module is built, so a pipeline can check a scorer before it starts any work.
    """
    folder = Path(folder)
    meta_path, weights = folder / "config.json", folder / WEIGHTS_FILE
    if not meta_path.is_file() or not weights.is_file():
        raise ConfigError(f"{folder} is not an aesthetic scorer folder (it needs config.json and {WEIGHTS_FILE}, "
                          "as `ltxlab aesthetic train --out` writes).")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if not isinstance(meta, dict) or meta.get("format") != SCORER_FORMAT:
            raise ValueError(meta.get("format") if isinstance(meta, dict) else meta)
        meta["config"] = from_dict(AestheticConfig, meta["config"])
    except (ValueError, KeyError, TypeError):
        raise ConfigError(f"{meta_path} is not an aesthetic scorer config ({SCORER_FORMAT}); "
                          "retrain or pick another folder.") from None
    want = meta.get("weights_sha256")
    if want and file_sha256([str(weights)]) != want:
        raise ConfigError(f"{weights} does not match the sha256 recorded in its config.json (the file was cut short or "
                          "replaced); retrain the scorer or restore the folder.")
    return meta


def load_scorer(folder: str | Path, device: str | torch.device = "cpu") -> AestheticScorer:
    """Rebuild a scorer written by `save_scorer`; the hf backbone must be the one it was trained on (same weights hash)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    meta = read_scorer_meta(folder)
    scorer = meta["config"].build()
    want, have = meta.get("backbone", {}).get("weights_sha256"), scorer.backbone.provenance.get("weights_sha256")
    if want and have and want != have:
        raise ConfigError(f"The scorer in {folder} was trained on backbone weights {want[:12]}, but "
                          f"{scorer.backbone.provenance['path']} now holds {have[:12]}; restore that model or retrain.")
    try:
        state = load_file(str(folder / WEIGHTS_FILE))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ConfigError(f"{folder / WEIGHTS_FILE} is not a readable safetensors file ({type(exc).__name__}); "
                          "retrain the scorer.") from None
    try:
        missing, unexpected = scorer.load_state_dict(state, strict=False)
    except RuntimeError:  # a tensor of the wrong shape
        missing, unexpected = ["(shape)"], []
    missing = [k for k in missing if scorer.backbone.trainable or not k.startswith("backbone.")]
    if missing or unexpected:
        raise ConfigError(f"{folder / WEIGHTS_FILE} does not match its config ({len(missing)} missing or misshapen, "
                          f"{len(unexpected)} unexpected tensors); retrain the scorer.")
    return scorer.to(device).eval()

