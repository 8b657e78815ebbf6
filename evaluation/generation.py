"""Generation metrics registry: text alignment via the synthetic-scene oracle, image-to-video
first-frame fidelity, and temporal flicker. Each metric carries its spec and a version.

Same contract as `evaluation/metrics.py` (lm-evaluation-harness style: registered once,
`higher_is_better`, a version bumped whenever the numbers would change, stored with
every value), but a generation metric scores one *sample* against its *prompt* (and,
where there is one, the reference scene the prompt came from), not a (reference, test)
pair, so it has its own spec type and registry.

Per-sample values:
- `oracle_color` / `oracle_shape` / `oracle_direction`: 1.0 when `clips.synthetic.oracle`
  reads the caption's attribute from the generated pixels, else 0.0 (an unreadable
  video counts as wrong). Their mean is an accuracy, reported with a 95% Wilson score
  interval and its chance level 1/len(COLORS) = 1/6, 1/len(SHAPES) = 1/3,
  1/len(DIRECTIONS) = 1/4 (a model that ignores the text and makes one colour scores
  about chance on balanced prompts).
- `first_frame_psnr` (i2v only): PSNR (dB, peak 1, capped at 100) of the generated first
  frame against the conditioning image.
- `temporal_flicker`: mean over frames t = 1..T-2 of mean |x[t+1] - 2 x[t] + x[t-1]| with
  x in [0, 1] (the temporal second difference: zero for a still video and for pixels
  changing at constant speed, large for frame-to-frame shimmer).
- `flicker_excess`: temporal_flicker(sample) - temporal_flicker(reference scene), where the
  prompt came from a held-out scene; 0 = as smooth as the real scene, > 0 = more flicker.

Videos are uint8 `(T, H, W, 3)` or float in [0, 1].
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from evaluation.metrics import check_unit_range
from models.registry import Registry

WILSON_Z = 1.959963984540054  # two-sided 95% normal quantile


@dataclass(frozen=True)
class GenerationSample:
    """What a generation metric sees: the generated video and what it was asked for."""

    video: np.ndarray  # float32 (T, H, W, 3) in [0, 1]
    task: str  # "t2v" | "i2v"
    text: str  # the prompt
    image: np.ndarray | None = None  # float32 (H, W, 3) in [0, 1]: the i2v conditioning frame
    reference: np.ndarray | None = None  # float32 (T, H, W, 3) in [0, 1]: the scene the prompt came from
    oracle_reading: dict | None = field(default=None, compare=False)  # cached clips.synthetic.oracle output
    weights: Any = field(default=None, compare=False)  # evaluation.weights.Weights; None = skip the network metrics
    clip_outcomes: dict | None = field(default=None, compare=False)  # cached clip_similarity.score_video output


@dataclass(frozen=True, kw_only=True)
class GenerationMetricSpec:
    """What a generation metric measures; its version is stored with every value."""

    name: str  # registry name (rows store it as "<task>.<name>")
    version: str  # bumped whenever the numbers would change
    higher_is_better: bool  # direction for tables and effect signs
    value_range: tuple[float, float]  # possible per-sample values
    tasks: tuple[str, ...]  # which sample tasks it applies to
    aggregation: str  # how per-sample values become the summary number
    chance: float | None = None  # the value of a text-blind model (accuracies); None otherwise
    unit: str = ""  # "dB" or empty
    needs: tuple[str, ...] = ()  # eval.weights names it reads (any one of them suffices); () = none
    description: str  # one sentence for tables and the dashboard
    fn: Callable[[GenerationSample], float | None] = field(repr=False)  # None = not applicable to this sample


GENERATION_METRICS: Registry[GenerationMetricSpec] = Registry("generation metric")


def register(spec: GenerationMetricSpec) -> GenerationMetricSpec:
    return GENERATION_METRICS.register(spec.name, spec)


# ------------------------------------------------------------------ pure functions


def wilson_interval(successes: int, n: int, z: float = WILSON_Z) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (Wilson 1927); (0, 1) when n = 0."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def temporal_flicker(video: np.ndarray) -> float | None:
    """Mean |x[t+1] - 2 x[t] + x[t-1]| over t = 1..T-2, pixels and channels; None below 3 frames."""
    x = as_unit_float(video)
    if x.shape[0] < 3:
        return None
    second = x[2:] - 2 * x[1:-1] + x[:-2]  # (T-2, H, W, 3)
    return float(np.abs(second, dtype=np.float64).mean())


def psnr(reference: np.ndarray, test: np.ndarray) -> float:
    """PSNR in dB with peak 1 of two equal-shape [0, 1] images; capped at 100 dB like evaluation.metrics."""
    mse = float(np.mean((as_unit_float(reference).astype(np.float64) - as_unit_float(test)) ** 2))
    return float(10 * math.log10(1.0 / max(mse, 1e-10)))


def as_unit_float(video: np.ndarray) -> np.ndarray:
    """uint8 -> float32 / 255; float arrays pass through as float32, checked finite and in [0, 1]."""
    arr = np.asarray(video)
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    out = arr.astype(np.float32)
    if out.size:
        finite = bool(np.isfinite(out).all())
        check_unit_range(float(out.min()) if finite else 0.0, float(out.max()) if finite else 0.0, finite)
    return out


def caption_attributes(text: str) -> dict[str, str] | None:
    """Colour, shape and direction named by a synthetic-scene caption, or None if it is not one."""
    from clips.synthetic import COLORS, DIRECTIONS, SHAPES

    pattern = rf"\ba ({'|'.join(COLORS)}) ({'|'.join(SHAPES)}) moves ({'|'.join(DIRECTIONS)})\b"
    match = re.search(pattern, text)
    if match is None:
        return None
    return {"color": match.group(1), "shape": match.group(2), "direction": match.group(3)}


# ------------------------------------------------------------------ registered metrics


def _reading(sample: GenerationSample) -> dict:
    if sample.oracle_reading is not None:
        return sample.oracle_reading
    from clips.synthetic import oracle

    reading = oracle(sample.video)
    object.__setattr__(sample, "oracle_reading", reading)  # computed once for the three attributes
    return reading


def _oracle_match(attribute: str) -> Callable[[GenerationSample], float | None]:
    def fn(sample: GenerationSample) -> float | None:
        truth = caption_attributes(sample.text)
        if truth is None:
            return None  # not a synthetic-scene caption: nothing to check against
        return float(_reading(sample)[attribute] == truth[attribute])

    return fn


def _first_frame_psnr(sample: GenerationSample) -> float | None:
    if sample.task != "i2v" or sample.image is None:
        return None
    return psnr(sample.image, sample.video[0])


def _flicker(sample: GenerationSample) -> float | None:
    return temporal_flicker(sample.video)


def _flicker_excess(sample: GenerationSample) -> float | None:
    if sample.reference is None:
        return None
    own, ref = temporal_flicker(sample.video), temporal_flicker(sample.reference)
    return None if own is None or ref is None else own - ref


def _chance(names: tuple[str, ...]) -> float:
    return 1.0 / len(names)


def _register_all() -> None:
    from clips.synthetic import COLORS, DIRECTIONS, SHAPES

    for attribute, names in (("color", COLORS), ("shape", SHAPES), ("direction", DIRECTIONS)):
        register(GenerationMetricSpec(
            name=f"oracle_{attribute}", version="1", higher_is_better=True, value_range=(0.0, 1.0),
            tasks=("t2v", "i2v"), chance=_chance(names), fn=_oracle_match(attribute),
            aggregation="accuracy (mean of 0/1 over samples) with a 95% Wilson interval",
            description=f"Oracle reads the caption's {attribute} from the generated pixels "
                        f"(chance 1/{len(names)}); synthetic-scene captions only.",
        ))  # fmt: skip
    register(GenerationMetricSpec(
        name="first_frame_psnr", version="1", higher_is_better=True, value_range=(0.0, 100.0), tasks=("i2v",),
        unit="dB", fn=_first_frame_psnr, aggregation="mean over i2v samples",
        description="PSNR of the generated first frame against the conditioning image (image-to-video fidelity).",
    ))  # fmt: skip
    register(GenerationMetricSpec(
        name="temporal_flicker", version="1", higher_is_better=False, value_range=(0.0, 4.0), tasks=("t2v", "i2v"),
        fn=_flicker, aggregation="mean over samples of mean |x[t+1] - 2x[t] + x[t-1]| (x in [0, 1])",
        description="Temporal second difference: frame-to-frame shimmer; zero for still or constant-speed change.",
    ))  # fmt: skip
    register(GenerationMetricSpec(
        name="flicker_excess", version="1", higher_is_better=False, value_range=(-4.0, 4.0), tasks=("t2v", "i2v"),
        fn=_flicker_excess, aggregation="mean over samples of temporal_flicker(sample) - temporal_flicker(reference)",
        description="Flicker beyond that of the real held-out scene the prompt came from (0 = as smooth).",
    ))  # fmt: skip


def _clip_outcome(metric: str) -> Callable[[GenerationSample], float | None]:
    def fn(sample: GenerationSample) -> float | None:
        if sample.weights is None:
            return None  # network metrics run only when the caller resolved weights
        if sample.clip_outcomes is None:
            from evaluation.clip_similarity import score_video

            object.__setattr__(sample, "clip_outcomes", score_video(sample.video, sample.text, sample.weights))
        return sample.clip_outcomes[metric].value

    return fn


def _register_network_metrics() -> None:
    register(GenerationMetricSpec(
        name="clip_similarity", version="1", higher_is_better=True, value_range=(-1.0, 1.0), tasks=("t2v", "i2v"),
        needs=("clip",), fn=_clip_outcome("clip_similarity"),
        aggregation="mean over samples of the mean over frames of cos(CLIP frame embedding, CLIP caption embedding)",
        description="CLIP text-video alignment (CLIPSIM, not x100) from a local CLIP folder.",
    ))  # fmt: skip
    register(GenerationMetricSpec(
        name="frame_consistency", version="1", higher_is_better=True, value_range=(-1.0, 1.0), tasks=("t2v", "i2v"),
        needs=("dino", "clip"), fn=_clip_outcome("frame_consistency"),
        aggregation="mean over samples of the mean over frames t >= 1 of cos(embedding of frame t, of frame 0)",
        description="Frame-to-first-frame consistency (VBench's subject-consistency idea), DINO or CLIP image features.",
    ))  # fmt: skip


_register_all()
_register_network_metrics()


def missing_weights(names: list[str] | None, weights: Any) -> dict[str, str]:
    """{metric: the sentence saying which weight file it needs} for the metrics `weights` cannot serve."""
    from evaluation.weights import missing_reason

    out = {}
    for name in names or GENERATION_METRICS.names():
        needs = GENERATION_METRICS.get(name).needs
        if needs and (weights is None or all(weights.find(n) is None for n in needs)):
            out[name] = missing_reason(name, needs[-1]) if len(needs) == 1 else (
                f"{name} needs a model folder: eval.weights." + " or eval.weights.".join(needs)
                + f" (or put one of {', '.join(needs)} in $LTXLAB_WEIGHTS)")
    return out


def score_sample(sample: GenerationSample, names: list[str] | None = None) -> dict[str, float]:
    """{metric name: value} for every applicable registered metric (or `names`)."""
    out: dict[str, float] = {}
    for name in names or GENERATION_METRICS.names():
        spec = GENERATION_METRICS.get(name)
        if sample.task not in spec.tasks:
            continue
        value = spec.fn(sample)
        if value is not None:
            out[name] = float(value)
    return out


def summarize(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Long rows {task, base_metric, value} -> flat summary per "<task>.<metric>": mean, n, and
    for accuracies ci_low / ci_high (95% Wilson) and chance."""
    summary: dict[str, float] = {}
    keys = sorted({(r["task"], r["base_metric"]) for r in rows})
    for task, name in keys:
        values = [r["value"] for r in rows if r["task"] == task and r["base_metric"] == name]
        key = f"{task}.{name}"
        summary[key] = float(np.mean(values))
        summary[f"{key}.n"] = float(len(values))
        spec = GENERATION_METRICS.get(name)
        if spec.chance is not None:
            low, high = wilson_interval(int(round(sum(values))), len(values))
            summary[f"{key}.ci_low"], summary[f"{key}.ci_high"] = low, high
            summary[f"{key}.chance"] = spec.chance
    return summary


def specs_table() -> list[dict[str, Any]]:
    """One dict per registered metric (for sweep.json and the dashboard)."""
    return [{"name": s.name, "version": s.version, "higher_is_better": s.higher_is_better,
             "value_range": list(s.value_range), "tasks": list(s.tasks), "chance": s.chance, "unit": s.unit,
             "aggregation": s.aggregation, "description": s.description} for _, s in GENERATION_METRICS.items()]
