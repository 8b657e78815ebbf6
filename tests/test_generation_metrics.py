"""Generation metrics against hand-computed values and the synthetic-scene ground truth."""

from __future__ import annotations

import math

import numpy as np
import pytest

from clips.synthetic import COLORS, DIRECTIONS, SHAPES, make_scene
from evaluation.generation import (
    GENERATION_METRICS,
    GenerationMetricSpec,
    GenerationSample,
    caption_attributes,
    psnr,
    score_sample,
    summarize,
    temporal_flicker,
    wilson_interval,
)
from models.registry import UnknownNameError


def test_wilson_interval_matches_hand_computed_values():
    # 8 of 10: p = 0.8, z = 1.96 -> centre (0.8 + 0.19208) / 1.38416, half 1.96 sqrt(0.016 + 0.009604) / 1.38416
    z = 1.959963984540054
    denom = 1 + z * z / 10
    centre = (0.8 + z * z / 20) / denom
    half = z * math.sqrt(0.8 * 0.2 / 10 + z * z / 400) / denom
    low, high = wilson_interval(8, 10)
    assert (low, high) == pytest.approx((centre - half, centre + half))
    assert (low, high) == pytest.approx((0.4902, 0.9433), abs=1e-4)  # the textbook figures
    assert wilson_interval(0, 20)[0] == 0.0 and wilson_interval(20, 20)[1] == pytest.approx(1.0)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    # the interval narrows as n grows at fixed p
    assert np.diff(wilson_interval(50, 100)) < np.diff(wilson_interval(5, 10))


def test_temporal_flicker_is_the_mean_absolute_second_difference():
    still = np.full((5, 4, 4, 3), 0.3, np.float32)
    ramp = np.stack([np.full((4, 4, 3), 0.1 * t, np.float32) for t in range(5)])  # constant speed
    blink = np.stack([np.full((4, 4, 3), float(t % 2), np.float32) for t in range(5)])  # 0 1 0 1 0
    assert temporal_flicker(still) == 0.0
    assert temporal_flicker(ramp) == pytest.approx(0.0, abs=1e-6)
    assert temporal_flicker(blink) == pytest.approx(2.0)  # |1 - 0 + 1| ... = 2 at every t
    half = blink.copy()
    half[:, :2] = 0.0  # only half the pixels blink
    assert temporal_flicker(half) == pytest.approx(1.0)
    assert temporal_flicker((blink * 255).astype(np.uint8)) == pytest.approx(2.0)  # uint8 is /255
    assert temporal_flicker(still[:2]) is None


def test_psnr_hand_computed():
    a = np.zeros((4, 4, 3), np.float32)
    assert psnr(a, a + 0.1) == pytest.approx(20.0, abs=1e-4)  # mse 0.01
    assert psnr(a, a) == pytest.approx(100.0)  # capped


def test_caption_attributes_parse_the_scene_grammar():
    assert caption_attributes("a red square moves left over a photo of coffee") == {
        "color": "red", "shape": "square", "direction": "left"}
    assert caption_attributes("a rabbit in a field") is None


def _scene_sample(seed: int, text: str | None = None, task: str = "t2v", **kw) -> GenerationSample:
    scene = make_scene(seed, 9, 64, 64, split="heldout")
    return GenerationSample(video=scene.frames.astype(np.float32) / 255, task=task, text=text or scene.caption, **kw)


def test_oracle_metrics_score_a_real_scene_against_its_caption_and_a_wrong_one():
    scene = make_scene(7, 9, 64, 64)
    values = score_sample(_scene_sample(7))
    assert values["oracle_color"] == values["oracle_shape"] == values["oracle_direction"] == 1.0
    other_color = next(c for c in COLORS if c != scene.meta["color"])
    other_dir = next(d for d in DIRECTIONS if d != scene.meta["direction"])
    wrong = f"a {other_color} {scene.meta['shape']} moves {other_dir} over a photo of grass"
    values = score_sample(_scene_sample(7, wrong))
    assert values["oracle_color"] == 0.0 and values["oracle_direction"] == 0.0 and values["oracle_shape"] == 1.0
    # a still grey video has no readable shape: wrong on every attribute, not skipped
    grey = GenerationSample(video=np.full((9, 64, 64, 3), 0.5, np.float32), task="t2v", text=scene.caption)
    values = score_sample(grey)
    assert values["oracle_color"] == values["oracle_shape"] == values["oracle_direction"] == 0.0
    # not a scene caption: the oracle metrics do not apply
    assert "oracle_color" not in score_sample(_scene_sample(7, "a rabbit"))


def test_first_frame_psnr_only_for_i2v_and_flicker_excess_against_the_reference():
    sample = _scene_sample(3)
    image = np.clip(sample.video[0] + 0.05, 0, 1)
    i2v = GenerationSample(video=sample.video, task="i2v", text=sample.text, image=image, reference=sample.video)
    values = score_sample(i2v)
    mse = float(np.mean((image.astype(np.float64) - sample.video[0]) ** 2))
    assert values["first_frame_psnr"] == pytest.approx(10 * math.log10(1 / mse), abs=1e-4)
    assert values["flicker_excess"] == pytest.approx(0.0)  # the scene against itself
    assert "first_frame_psnr" not in score_sample(sample) and "flicker_excess" not in score_sample(sample)
    noisy = np.clip(sample.video + np.random.default_rng(0).normal(0, 0.05, sample.video.shape), 0, 1).astype(np.float32)
    shimmer = score_sample(GenerationSample(video=noisy, task="t2v", text=sample.text, reference=sample.video))
    assert shimmer["flicker_excess"] == pytest.approx(temporal_flicker(noisy) - temporal_flicker(sample.video))
    assert shimmer["flicker_excess"] > 0.02


def test_summarize_gives_accuracy_wilson_interval_and_chance():
    rows = [{"task": "t2v", "base_metric": "oracle_color", "value": v} for v in [1, 1, 0, 1, 0, 0, 1, 1, 1, 1]]
    rows += [{"task": "i2v", "base_metric": "first_frame_psnr", "value": v} for v in [20.0, 30.0]]
    summary = summarize(rows)
    assert summary["t2v.oracle_color"] == pytest.approx(0.7) and summary["t2v.oracle_color.n"] == 10
    assert (summary["t2v.oracle_color.ci_low"], summary["t2v.oracle_color.ci_high"]) == pytest.approx(wilson_interval(7, 10))
    assert summary["t2v.oracle_color.chance"] == pytest.approx(1 / len(COLORS))
    assert summary["i2v.first_frame_psnr"] == pytest.approx(25.0) and "i2v.first_frame_psnr.ci_low" not in summary


def test_registry_specs_versions_chance_levels_and_errors():
    assert GENERATION_METRICS.get("oracle_shape").chance == pytest.approx(1 / len(SHAPES))
    assert GENERATION_METRICS.get("oracle_direction").chance == pytest.approx(1 / len(DIRECTIONS))
    for name, spec in GENERATION_METRICS.items():
        assert spec.name == name and spec.version and spec.description and spec.tasks
    with pytest.raises(UnknownNameError, match="oracle_color"):
        GENERATION_METRICS.get("oracle_colour")
    spec = GENERATION_METRICS.get("temporal_flicker")
    with pytest.raises(Exception, match="temporal_flicker"):
        GENERATION_METRICS.register("temporal_flicker", spec)
    assert isinstance(spec, GenerationMetricSpec) and spec.higher_is_better is False
