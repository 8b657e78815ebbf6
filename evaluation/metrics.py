"""The reconstruction metrics registry: each metric carries its spec and a version.

Follows lm-evaluation-harness' `api/metrics.py` + `api/registry.py`: a metric is
registered once with `higher_is_better`, its aggregation and a version string that is
bumped whenever its numbers would change, and every stored value carries that version
(the results store's `metrics.parquet` is long format: run_id, split, clip_id, metric,
value, metric_version). An unknown name fails with "did you mean"; there is no fallback.

Videos are `(T, H, W, 3)` RGB in [0, 1] (numpy or torch; uint8 is divided by 255),
reference and test of equal shape. The pure measures live in `evaluation/frame_metrics.py`;
a `VideoPair` caches what several metrics share (frame MSE, DWT band MSE).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable, Iterable, Iterator, Mapping

import numpy as np
import torch
from torch import Tensor

from evaluation import frame_metrics as fm
from models.losses.dwt import BAND_NAMES
from models.registry import Registry


@dataclass(frozen=True)
class MetricResult:
    """One metric on one (reference, test) pair; `value` is None exactly when not applicable."""

    metric: str  # registry name
    version: str  # the spec's version when the value was computed
    value: float | None  # the aggregated number
    per_frame: list[float] | None = None  # per-frame values (flicker: per transition t -> t+1); None if pooled only
    not_applicable: str | None = None  # why the metric could not be computed on this pair

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "version": self.version,
            "value": self.value,
            "per_frame": self.per_frame,
            "not_applicable": self.not_applicable,
        }


class VideoPair:
    """A (reference, test) pair as (T, H, W, 3) float32 tensors, with shared intermediates cached."""

    def __init__(self, ref: Any, test: Any, device: str | torch.device | None = None, weights: Any = None) -> None:
        self.ref = to_frames(ref, "reference", device)  # (T, H, W, 3)
        self.test = to_frames(test, "test", device)  # (T, H, W, 3)
        self.weights = weights  # evaluation.weights.Weights for the network metrics (None: $LTXLAB_WEIGHTS only)
        if self.ref.shape != self.test.shape:
            raise ValueError(
                f"Reference and test videos differ in shape: {_thwc(self.ref)} vs {_thwc(self.test)} (T, H, W, 3); "
                "compare videos of equal size and frame count."
            )

    @property
    def frames(self) -> int:
        return self.ref.shape[0]

    @property
    def height_width(self) -> tuple[int, int]:
        return self.ref.shape[1], self.ref.shape[2]

    @cached_property
    def frame_mse(self) -> Tensor:
        return fm.frame_mse(self.ref, self.test)  # (T,)

    @cached_property
    def dwt_band_mse(self) -> Tensor:
        return fm.dwt_band_mse(self.ref, self.test)  # (8,)


def _thwc(frames: Tensor) -> str:
    return "x".join(str(n) for n in frames.shape)


def to_frames(video: Any, what: str = "input", device: str | torch.device | None = None) -> Tensor:
    """(T, H, W, 3) numpy/torch video in [0, 1] (or uint8 / 255) -> (T, H, W, 3) float32 tensor (no copy if already one)."""
    x = torch.as_tensor(np.asarray(video) if not isinstance(video, Tensor) else video)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"The {what} video must be (T, H, W, 3) RGB, got shape {tuple(x.shape)}.")
    if x.dtype == torch.uint8:
        x = x.float() / 255.0
    elif not x.is_floating_point():
        raise ValueError(f"The {what} video must be float in [0, 1] or uint8, got {x.dtype}.")
    x = x.to(device=device, dtype=torch.float32)
    low, high = (v.item() for v in torch.aminmax(x))
    check_unit_range(low, high, bool(torch.isfinite(x).all()), what)
    return x


@contextmanager
def ieee_fp32() -> Iterator[None]:
    """Full fp32 for a metric's network (I3D, LPIPS, CLIP), as StyleGAN-V's metric scripts set it: on
    CUDA, torch runs fp32 convolutions in TF32 by default, which moves FVD and LPIPS by about 1e-3
    (relative) against the same weights on a CPU. Usable as a decorator."""
    conv, matmul = torch.backends.cudnn.conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision
    torch.backends.cudnn.conv.fp32_precision = torch.backends.cuda.matmul.fp32_precision = "ieee"
    try:
        yield
    finally:
        torch.backends.cudnn.conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision = conv, matmul


def check_unit_range(low: float, high: float, finite: bool, what: str = "input") -> None:
    """ValueError unless the frames are finite and within [0, 1] (1e-4 of rounding allowed)."""
    if not finite:  # NaN compares false with every bound below
        raise ValueError(f"The {what} video has NaN or infinite values; metrics take finite frames in [0, 1].")
    if low < -1e-4 or high > 1 + 1e-4:
        raise ValueError(f"The {what} video has values in [{low:.3g}, {high:.3g}]; metrics take [0, 1] (map [-1, 1] with (x + 1) / 2).")


@dataclass(frozen=True, kw_only=True)
class MetricSpec:
    """What a metric measures and how, stored next to every value it produces."""

    name: str  # registry name, also the `metric` column of metrics.parquet
    version: str  # bumped whenever the numbers would change; stored as metric_version
    higher_is_better: bool  # direction for tables, bests and effect signs
    value_range: tuple[float, float]  # possible values (PSNR: capped at 100 dB for identical frames)
    color_space: str  # what the pixels are: "RGB", "Y (BT.601)", ...
    aggregation: str  # how per-frame values become one number
    frames: str = "all"  # which frames are scored
    resolution: str = "native"  # the resolution scored (no resizing)
    unit: str = ""  # "dB" or empty
    description: str  # one sentence for tables and the dashboard
    fn: Callable[[VideoPair], MetricResult] = field(repr=False)  # computes the result on a pair


METRICS: Registry[MetricSpec] = Registry("metric")
DEFAULT_ORDER: list[str] = []  # registration order: pixel PSNRs, SSIMs, DWT bands low to high, temporal


def register(spec: MetricSpec) -> MetricSpec:
    METRICS.register(spec.name, spec)
    DEFAULT_ORDER.append(spec.name)
    return spec


def _result(name: str, value: float | None, per_frame: Tensor | None = None, reason: str | None = None) -> MetricResult:
    return MetricResult(
        metric=name,
        version=METRICS.get(name).version,
        value=None if value is None else float(value),
        per_frame=None if per_frame is None else [float(v) for v in per_frame.tolist()],
        not_applicable=reason,
    )


# ------------------------------------------------------------------ PSNR


def _psnr(pair: VideoPair) -> MetricResult:
    per_frame = fm.mse_to_psnr(pair.frame_mse)
    return _result("psnr", per_frame.mean().item(), per_frame)


def _psnr_pooled(pair: VideoPair) -> MetricResult:
    # equal-size frames: the video's MSE is the mean of the frames' MSEs
    return _result("psnr_pooled", fm.mse_to_psnr(pair.frame_mse.mean()).item())


def _psnr_y(pair: VideoPair) -> MetricResult:
    per_frame = fm.mse_to_psnr(fm.luma_frame_mse(pair.ref, pair.test))
    return _result("psnr_y", per_frame.mean().item(), per_frame)


_PSNR_COMMON = dict(higher_is_better=True, value_range=(0.0, fm.MAX_PSNR_DB), unit="dB")
register(MetricSpec(
    name="psnr", version="1", color_space="RGB", fn=_psnr, **_PSNR_COMMON,
    aggregation="mean over frames of per-frame PSNR (peak 1.0, MSE over H, W and the 3 channels)",
    description="Peak signal-to-noise ratio per frame, averaged; identical frames count as 100 dB.",
))  # fmt: skip
register(MetricSpec(
    name="psnr_pooled", version="1", color_space="RGB", fn=_psnr_pooled, **_PSNR_COMMON,
    aggregation="PSNR of the MSE pooled over the whole video (all frames, pixels, channels)",
    description="PSNR of the whole video at once: bad frames weigh by their error, not their dB.",
))  # fmt: skip
register(MetricSpec(
    name="psnr_y", version="1", color_space="Y (BT.601 full range: 0.299 R + 0.587 G + 0.114 B)",
    fn=_psnr_y, **_PSNR_COMMON,
    aggregation="mean over frames of per-frame luma PSNR (peak 1.0)",
    description="PSNR of full-range BT.601 luma (peak 1); studio-range tools (ffmpeg, BasicSR) report 1.32 dB more.",
))  # fmt: skip

# ------------------------------------------------------------------ SSIM family


def _ssim(pair: VideoPair) -> MetricResult:
    h, w = pair.height_width
    if min(h, w) < fm.SSIM_WINDOW:
        return _result("ssim", None, reason=f"SSIM needs frames of at least {fm.SSIM_WINDOW}x{fm.SSIM_WINDOW} pixels; these are {w}x{h} (W x H).")
    per_frame = fm.ssim_per_frame(pair.ref, pair.test)
    return _result("ssim", per_frame.mean().item(), per_frame)


def _ms_ssim(pair: VideoPair) -> MetricResult:
    h, w = pair.height_width
    side = fm.ms_ssim_min_side()
    if min(h, w) < side:
        return _result("ms_ssim", None, reason=(
            f"MS-SSIM needs frames of at least {side} px on each side (5 scales with an {fm.MS_SSIM_KERNEL}-px window: "
            f"the 1/16-scale image must exceed the window); these are {w}x{h} (W x H)."
        ))  # fmt: skip
    per_frame = fm.ms_ssim_per_frame(pair.ref, pair.test)
    return _result("ms_ssim", per_frame.mean().item(), per_frame)


register(MetricSpec(
    name="ssim", version="1", higher_is_better=True, value_range=(-1.0, 1.0), color_space="RGB", fn=_ssim,
    aggregation="mean over frames of per-frame SSIM (each the mean over channels and valid 7x7 windows)",
    description="Structural similarity as skimage computes it: 7x7 uniform window, K1=0.01, K2=0.03, sample covariance.",
))  # fmt: skip
register(MetricSpec(
    name="ms_ssim", version="1", higher_is_better=True, value_range=(0.0, 1.0), color_space="RGB", fn=_ms_ssim,
    aggregation="mean over frames of per-frame MS-SSIM",
    description="Multi-scale SSIM (torchmetrics: 5 scales, 11-px Gaussian sigma 1.5, relu-normalised); frames >= 176 px.",
))  # fmt: skip

# ------------------------------------------------------------------ DWT bands


def _dwt_psnr(band_index: int) -> Callable[[VideoPair], MetricResult]:
    name = f"dwt_psnr_{BAND_NAMES[band_index].lower()}"

    def compute(pair: VideoPair) -> MetricResult:
        mse = pair.dwt_band_mse[band_index]
        return _result(name, fm.mse_to_psnr(mse, peak=fm.DWT_PEAK).item())

    return compute


for _i, _band in enumerate(BAND_NAMES):
    register(MetricSpec(
        name=f"dwt_psnr_{_band.lower()}", version="1", higher_is_better=True, value_range=(0.0, fm.MAX_PSNR_DB),
        unit="dB", color_space="RGB", fn=_dwt_psnr(_i),
        aggregation=(
            "PSNR of the error in one-level 3D Haar band over the whole video (peak 2*sqrt(2), the width of every "
            "band's range for [0, 1] input; odd T repeats the first frame)"
        ),
        description=(
            f"PSNR of the {_band} sub-band (time, height, width; L = low, H = high): "
            "how much detail of that frequency survives."
        ),
    ))  # fmt: skip

# ------------------------------------------------------------------ temporal


def _flicker(pair: VideoPair) -> MetricResult:
    if pair.frames < 2:
        return _result("flicker", None, reason="Flicker compares frame-to-frame changes and needs at least 2 frames.")
    per_transition = fm.flicker_per_transition(pair.ref, pair.test)
    return _result("flicker", per_transition.mean().item(), per_transition)


register(MetricSpec(
    name="flicker", version="1", higher_is_better=False, value_range=(0.0, 2.0), color_space="RGB", fn=_flicker,
    aggregation="mean over the T-1 transitions of mean |(test[t+1]-test[t]) - (ref[t+1]-ref[t])|",
    description="Temporal flicker: how much the reconstruction's frame-to-frame change departs from the reference's.",
))  # fmt: skip


# ------------------------------------------------------------------ perceptual (network) metrics


def _lpips(net: str) -> Callable[[VideoPair], MetricResult]:
    name = f"lpips_{net}"

    def compute(pair: VideoPair) -> MetricResult:
        from evaluation import lpips
        from evaluation.weights import WeightsMissing, resolve_weights

        reason = lpips.too_small_reason(net, *pair.height_width)
        if reason is not None:
            return _result(name, None, reason=reason)
        try:
            model, _ = lpips.load_lpips(net, pair.weights or resolve_weights(), pair.ref.device)
        except WeightsMissing as exc:
            return _result(name, None, reason=str(exc))
        per_frame = lpips.lpips_per_frame(model, pair.ref, pair.test)
        return _result(name, per_frame.mean().item(), per_frame)

    return compute


for _net, _label in (("alex", "AlexNet"), ("vgg", "VGG-16")):
    register(MetricSpec(
        name=f"lpips_{_net}", version="1", higher_is_better=False, value_range=(0.0, float("inf")),
        color_space="RGB", fn=_lpips(_net),
        aggregation="mean over frames of per-frame LPIPS (v0.1: unit-normalised features, linear heads, spatial mean)",
        description=f"Learned perceptual distance (LPIPS v0.1, {_label} backbone, the lpips package's linear heads) "
                    "from local weight files; lower is closer.",
    ))  # fmt: skip


# ------------------------------------------------------------------ evaluation


def resolve_names(names: Iterable[str] | None) -> list[str]:
    """Validated metric names (all when None); an unknown name raises with "did you mean"."""
    if names is None:
        return list(DEFAULT_ORDER)
    resolved = [name.strip() for name in names if name.strip()]
    for name in resolved:
        METRICS.get(name)
    return list(dict.fromkeys(resolved))


def evaluate_pair(
    ref: Any, test: Any, names: list[str] | None = None, *, device: str | torch.device | None = None,
    weights: Any = None,
) -> dict[str, MetricResult]:
    """Score a test video against its reference.

    Args:
        ref, test: (T, H, W, 3) RGB in [0, 1] (numpy or torch; uint8 is divided by 255), equal shapes.
        names: metrics to compute (default: every registered metric).
        device: where to compute (default: the inputs' device; CPU for numpy).
        weights: `evaluation.weights.Weights` for the metrics that need a network (LPIPS);
            None resolves $LTXLAB_WEIGHTS only. A metric whose weights are absent is not applicable.

    Returns:
        {metric name: MetricResult}, in the order of `names`.
    """
    selected = resolve_names(names)
    pair = VideoPair(ref, test, device, weights)
    with torch.no_grad():
        return {name: METRICS.get(name).fn(pair) for name in selected}


def metric_rows(results: Mapping[str, MetricResult], **keys: Any) -> list[dict[str, Any]]:
    """Long-format rows for metrics.parquet: {**keys, metric, value, metric_version}.

    `keys` are the identifying columns (run_id=..., split=..., clip_id=...). A metric that
    was not applicable gets no row: its absence, not a NaN, says it was not measured.
    """
    return [
        {**keys, "metric": r.metric, "value": r.value, "metric_version": r.version}
        for r in results.values()
        if r.value is not None
    ]


def specs_table() -> list[dict[str, Any]]:
    """Every registered metric's spec as plain dicts, in `DEFAULT_ORDER` (for docs, `--json` and the dashboard)."""
    return [{k: v for k, v in METRICS.get(name).__dict__.items() if k != "fn"} for name in DEFAULT_ORDER]
