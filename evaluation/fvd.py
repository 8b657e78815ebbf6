"""Frechet Video Distance (FVD) and reconstruction FVD (rFVD) under StyleGAN-V's I3D protocol.

Follows StyleGAN-V (Skorokhodov et al. 2022; `src/metrics/frechet_video_distance.py` and
`metric_utils.py`), the protocol most video-generation papers now report:
- the detector is their TorchScript port of the tf-hub I3D (Kinetics-400), the file
  `i3d_torchscript.pt`, called as `detector(videos, rescale=False, resize=False,
  return_features=True)` on (B, 3, T, 224, 224) float videos in [-1, 1]; the features are the
  400 pre-softmax logits;
- we resize and rescale before the detector instead of inside it (its `rescale=True,
  resize=True` path does u8 / 127.5 - 1 and a trilinear resize to 224x224): each frame's
  short side is resized to 224 (bilinear, align_corners=False) and the centre 224x224 crop
  kept, so non-square videos are not squashed; for square inputs this equals their resize;
- each video contributes one clip: its first `clip_frames` frames (16, or 128 for the long
  protocol); shorter videos are left out, as their `discard_short_videos=True` does;
- statistics and the distance are float64 (`evaluation/frechet.py`);
- below `min_samples` videos per set the metric refuses with the reason (small-N FVD is biased).

Every result states its protocol: clip length, resolution, the detector's sha256 and N.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from evaluation.frechet import feature_stats, frechet_distance, sample_count_reason
from evaluation.metrics import ieee_fp32, to_frames
from evaluation.weights import Weights, WeightsInvalid, WeightsMissing
from models.registry import Registry

RESOLUTION = 224  # I3D's input side
CLIP_LENGTHS = (16, 128)  # StyleGAN-V's two protocols (FVD_16, FVD_128)
DEFAULT_MIN_SAMPLES = 256  # below this the bias swamps differences between models (see frechet.py)
DETECTOR_KWARGS = {"rescale": False, "resize": False, "return_features": True}


@dataclass(frozen=True, kw_only=True)
class DistributionMetricSpec:
    """A metric of two *sets* of videos (not of one pair); its version is stored with every value."""

    name: str  # registry name, the `metric` column of metrics.parquet
    version: str  # bumped whenever the numbers would change
    higher_is_better: bool  # direction for tables and effect signs
    value_range: tuple[float, float]  # possible values
    compares: str  # which two sets
    needs: tuple[str, ...]  # eval.weights names it reads
    description: str  # one sentence for tables and the dashboard


DISTRIBUTION_METRICS: Registry[DistributionMetricSpec] = Registry("distribution metric")
for _spec in (
    DistributionMetricSpec(
        name="fvd", version="1", higher_is_better=False, value_range=(0.0, float("inf")), needs=("i3d",),
        compares="generated videos vs a reference set of real videos (unpaired)",
        description="Frechet Video Distance of I3D features (StyleGAN-V protocol); lower = closer distributions.",
    ),
    DistributionMetricSpec(
        name="rfvd", version="1", higher_is_better=False, value_range=(0.0, float("inf")), needs=("i3d",),
        compares="reconstructions vs the original clips they reconstruct (paired sets)",
        description="Reconstruction FVD (TokenBench): FVD between a VAE's reconstructions and their originals.",
    ),
):
    DISTRIBUTION_METRICS.register(_spec.name, _spec)


@dataclass(frozen=True)
class DistributionResult:
    """One set-level metric: a value with its protocol, or None with the reason it was not computed."""

    metric: str  # registry name
    version: str  # the spec's version
    value: float | None  # None exactly when not applicable
    n_reference: int  # videos in the reference set that entered (after discarding short ones)
    n_test: int  # videos in the test set that entered
    protocol: dict[str, Any] = field(default_factory=dict)  # clip length, resolution, detector sha256, ...
    not_applicable: str | None = None  # why there is no value

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "version": self.version, "value": self.value, "n_reference": self.n_reference,
                "n_test": self.n_test, "protocol": self.protocol, "not_applicable": self.not_applicable}


# ------------------------------------------------------------------ the detector


@lru_cache(maxsize=4)
def _load_detector(path: str, sha256: str, device: str) -> torch.jit.ScriptModule:
    # sha256 is in the key so a replaced file is loaded again
    try:
        with warnings.catch_warnings():  # torch >= 2.9 deprecates TorchScript; the published file is TorchScript
            warnings.simplefilter("ignore", DeprecationWarning)
            detector = torch.jit.load(path, map_location=device)
    except RuntimeError as exc:
        raise WeightsInvalid(f"{path} is not a TorchScript file ({str(exc).splitlines()[0]}); eval.weights.i3d "
                             "needs StyleGAN-V's i3d_torchscript.pt.") from None
    arguments = [a.name for a in detector.forward.schema.arguments]
    if not set(DETECTOR_KWARGS) <= set(arguments):
        raise WeightsInvalid(f"{path} is TorchScript, but its forward takes {arguments[1:]}, not StyleGAN-V's I3D "
                             "signature (videos, rescale, resize, return_features); eval.weights.i3d needs "
                             "i3d_torchscript.pt.")
    return detector.eval()


def check_detector_file(path: str) -> None:
    """WeightsInvalid unless `path` loads as StyleGAN-V's I3D TorchScript (not kept: a pre-launch check)."""
    _load_detector.__wrapped__(path, "", "cpu")


def load_detector(weights: Weights, device: str | torch.device = "cpu", metric: str = "fvd") -> tuple[Any, str]:
    """(TorchScript I3D detector on `device`, its sha256); WeightsMissing / WeightsInvalid with one sentence."""
    path = weights.path("i3d", metric)
    sha = weights.sha256("i3d", metric)
    return _load_detector(str(path), sha, str(torch.device(device))), sha


# ------------------------------------------------------------------ preprocessing and features


def preprocess_clip(video: Any, clip_frames: int = 16, device: str | torch.device | None = None) -> Tensor:
    """(T, H, W, 3) video in [0, 1] (or uint8) -> (3, clip_frames, 224, 224) float32 in [-1, 1].

    The first `clip_frames` frames; short side resized to 224 (bilinear, align_corners=False),
    centre crop 224x224; then x * 2 - 1 (= u8 / 127.5 - 1, the detector's own rescale).
    """
    frames = to_frames(video, "FVD", device)[:clip_frames]  # (t, H, W, 3)
    if frames.shape[0] < clip_frames:
        raise ValueError(f"An FVD clip needs {clip_frames} frames; this video has {frames.shape[0]}.")
    x = frames.permute(0, 3, 1, 2)  # (t, 3, H, W)
    h, w = x.shape[-2:]
    scale = RESOLUTION / min(h, w)
    size = (max(RESOLUTION, round(h * scale)), max(RESOLUTION, round(w * scale)))
    if size != (h, w):
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    top, left = (size[0] - RESOLUTION) // 2, (size[1] - RESOLUTION) // 2
    x = x[:, :, top:top + RESOLUTION, left:left + RESOLUTION]  # (t, 3, 224, 224)
    return (x * 2.0 - 1.0).permute(1, 0, 2, 3).contiguous()  # (3, t, 224, 224)


@torch.no_grad()
@ieee_fp32()
def i3d_features(videos: Iterable[Any], detector: Callable[..., Tensor], clip_frames: int = 16,
                 batch_size: int = 8, device: str | torch.device = "cpu") -> np.ndarray:
    """I3D features of each video's first clip: iterable of (T, H, W, 3) -> (N, 400) float64 (batched)."""
    out: list[np.ndarray] = []
    batch: list[Tensor] = []

    def flush() -> None:
        features = detector(torch.stack(batch), **DETECTOR_KWARGS)  # (B, 400)
        out.append(features.double().cpu().numpy())
        batch.clear()

    for video in videos:
        batch.append(preprocess_clip(video, clip_frames, device))
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    return np.concatenate(out) if out else np.zeros((0, 0))


def long_enough(videos: Sequence[Any], clip_frames: int) -> list[Any]:
    """The videos with at least `clip_frames` frames (StyleGAN-V discards the shorter ones)."""
    return [v for v in videos if len(v) >= clip_frames]


def short_reason(reason: str | None, discarded: int, clip_frames: int) -> str | None:
    """A sample-count refusal, saying how many videos were too short to count."""
    if reason is None or not discarded:
        return reason
    return f"{reason} ({discarded} videos shorter than the {clip_frames}-frame clip (eval.fvd_frames) were left out)"


def protocol(clip_frames: int, detector_sha256: str | None, n_reference: int, n_test: int,
             discarded: int = 0) -> dict[str, Any]:
    """The protocol every FVD value is stated with."""
    return {
        "detector": "StyleGAN-V I3D TorchScript (i3d_torchscript.pt), Kinetics-400, 400 pre-softmax features",
        "detector_sha256": detector_sha256,
        "detector_kwargs": dict(DETECTOR_KWARGS),
        "clip_frames": clip_frames,
        "clip": f"first {clip_frames} frames of each video (shorter videos left out: {discarded})",
        "resolution": f"{RESOLUTION}x{RESOLUTION}: short side resized bilinear (align_corners=False), centre crop",
        "pixel_range": "[-1, 1]",
        "precision": "detector in IEEE fp32 (TF32 off on CUDA, as StyleGAN-V's scripts)",
        "statistics": "float64 mean and population covariance; distance with scipy.linalg.sqrtm, real part",
        "n_reference": n_reference,
        "n_test": n_test,
    }


# ------------------------------------------------------------------ the metric


def fvd_from_features(reference: np.ndarray, test: np.ndarray, *, metric: str = "fvd", clip_frames: int = 16,
                      detector_sha256: str | None = None, min_samples: int = DEFAULT_MIN_SAMPLES,
                      discarded: int = 0) -> DistributionResult:
    """FVD of two (N_i, 400) I3D feature sets (e.g. merged from shards), refusing small N."""
    spec = DISTRIBUTION_METRICS.get(metric)
    counts = (len(reference), len(test))
    proto = protocol(clip_frames, detector_sha256, *counts, discarded=discarded)
    reason = short_reason(sample_count_reason(metric, counts, min_samples), discarded, clip_frames)
    if reason is not None:
        return DistributionResult(metric, spec.version, None, *counts, proto, reason)
    value = frechet_distance(*feature_stats(reference), *feature_stats(test))
    return DistributionResult(metric, spec.version, value, *counts, proto)


def fvd(reference_videos: Sequence[Any], test_videos: Sequence[Any], weights: Weights, *, metric: str = "fvd",
        clip_frames: int = 16, min_samples: int = DEFAULT_MIN_SAMPLES, batch_size: int = 8,
        device: str | torch.device | None = None) -> DistributionResult:
    """FVD (or rFVD) between two sets of (T, H, W, 3) videos in [0, 1] (or uint8).

    Checks the sample counts and the weights before any feature is computed; a refusal or a
    missing detector file is a result with `not_applicable` set, never an exception.
    WeightsInvalid (a configured file that is not the detector) does raise: that is a user error.
    """
    spec = DISTRIBUTION_METRICS.get(metric)
    if clip_frames < 1:
        raise ValueError(f"FVD clip length must be at least 1 frame, got {clip_frames}.")
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    reference, test = long_enough(reference_videos, clip_frames), long_enough(test_videos, clip_frames)
    discarded = len(reference_videos) + len(test_videos) - len(reference) - len(test)
    counts = (len(reference), len(test))
    reason = short_reason(sample_count_reason(metric, counts, min_samples), discarded, clip_frames)
    if reason is None:
        try:
            detector, sha = load_detector(weights, device, metric)
        except WeightsMissing as exc:
            reason, sha = str(exc), None
    if reason is not None:
        return DistributionResult(metric, spec.version, None, *counts,
                                  protocol(clip_frames, None, *counts, discarded), reason)
    ref_features = i3d_features(reference, detector, clip_frames, batch_size, device)
    test_features = i3d_features(test, detector, clip_frames, batch_size, device)
    return fvd_from_features(ref_features, test_features, metric=metric, clip_frames=clip_frames,
                             detector_sha256=sha, min_samples=min_samples, discarded=discarded)


def specs_table() -> list[dict[str, Any]]:
    """One dict per distribution metric (for sweep.json, `ltxlab metrics --json` and the dashboard)."""
    return [{k: (list(v) if isinstance(v, tuple) else v) for k, v in spec.__dict__.items()}
            for _, spec in DISTRIBUTION_METRICS.items()]
