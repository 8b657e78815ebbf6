"""Frechet distance against an independent float64 reference; FVD with a TorchScript I3D-shaped detector."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from evaluation.frechet import feature_stats, frechet_distance, frechet_distance_of_features, sample_count_reason
from evaluation.fvd import DISTRIBUTION_METRICS, fvd, fvd_from_features, i3d_features, load_detector, preprocess_clip
from evaluation.weights import WeightsInvalid, resolve_weights
from tests._metric_models import save_i3d


def _reference_frechet(x: np.ndarray, y: np.ndarray) -> float:
    """Independent float64 formula: tr sqrt(S1 S2) = sum sqrt(eig(S1^1/2 S2 S1^1/2)), symmetric eigensolvers only."""
    mu1, mu2 = x.mean(axis=0), y.mean(axis=0)
    s1, s2 = np.cov(x, rowvar=False, bias=True), np.cov(y, rowvar=False, bias=True)
    w, v = np.linalg.eigh(s1)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    inner = np.linalg.eigvalsh(root1 @ s2 @ root1)
    trace_root = np.sqrt(np.clip(inner, 0, None)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * trace_root)


@pytest.fixture(scope="module")
def features() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    mix = rng.normal(size=(24, 24))
    x = rng.normal(size=(300, 24)) @ mix
    y = rng.normal(size=(280, 24)) @ (mix + 0.3 * rng.normal(size=(24, 24))) + 0.5
    return x.astype(np.float32), y.astype(np.float32)


def test_frechet_matches_an_independent_float64_reference(features):
    x, y = features
    ours = frechet_distance_of_features(x, y)
    reference = _reference_frechet(x.astype(np.float64), y.astype(np.float64))
    assert ours == pytest.approx(reference, rel=1e-6)
    assert ours > 1.0


def test_frechet_is_zero_for_identical_sets_and_symmetric(features):
    x, y = features
    mu, sigma = feature_stats(x)
    scale = np.trace(sigma)
    assert abs(frechet_distance(mu, sigma, mu, sigma)) < 1e-9 * scale
    assert frechet_distance_of_features(x, y) == pytest.approx(frechet_distance_of_features(y, x), rel=1e-9)


def test_feature_stats_are_float64_population_statistics(features):
    x, _ = features
    mu, sigma = feature_stats(x)
    assert mu.dtype == sigma.dtype == np.float64
    np.testing.assert_allclose(sigma, np.cov(x.astype(np.float64), rowvar=False, bias=True), rtol=1e-9, atol=1e-9)


def test_small_sample_refusal_says_why():
    reason = sample_count_reason("fvd", (16, 300), min_samples=256)
    assert reason is not None and reason.count(". ") == 0  # one sentence
    assert "at least 256" in reason and "got 16" in reason and "biased upward" in reason and "N=2048" in reason
    assert sample_count_reason("fvd", (256, 300), min_samples=256) is None
    result = fvd_from_features(np.zeros((10, 4)), np.ones((10, 4)), min_samples=11)
    assert result.value is None and "got 10" in result.not_applicable and result.n_reference == 10


# ------------------------------------------------------------------ FVD with a saved TorchScript detector


@pytest.fixture(scope="module")
def i3d_file(tmp_path_factory):
    return save_i3d(tmp_path_factory.mktemp("i3d") / "i3d_torchscript.pt", width_div=16)


def _videos(seed: int, n: int, frames: int = 16, size: tuple[int, int] = (40, 56), drift: float = 0.0):
    rng = np.random.default_rng(seed)
    base = np.linspace(0, 1, size[1], dtype=np.float32)[None, None, :, None]
    out = []
    for _ in range(n):
        v = 0.5 * base + 0.3 * rng.random((frames, *size, 3), dtype=np.float32) + drift
        out.append(np.clip(v, 0, 1))
    return out


def test_detector_loads_from_the_torchscript_file_with_its_sha256(i3d_file):
    weights = resolve_weights({"i3d": str(i3d_file)})
    detector, sha = load_detector(weights)
    assert sha == hashlib.sha256(i3d_file.read_bytes()).hexdigest()
    feats = i3d_features(_videos(1, 3), detector, clip_frames=16, batch_size=2)
    assert feats.shape == (3, 400) and feats.dtype == np.float64 and np.isfinite(feats).all()


def test_fvd_states_its_protocol_and_separates_distributions(i3d_file):
    weights = resolve_weights({"i3d": str(i3d_file)})
    ref, same, shifted = _videos(1, 6), _videos(1, 6), _videos(2, 6, drift=0.3)
    zero = fvd(ref, same, weights, min_samples=4, device="cpu")
    far = fvd(ref, shifted, weights, min_samples=4, device="cpu")
    assert zero.value == pytest.approx(0.0, abs=1e-6 * max(1.0, far.value))
    assert far.value > 0
    proto = far.protocol
    assert proto["clip_frames"] == 16 and proto["n_reference"] == proto["n_test"] == 6
    assert proto["resolution"].startswith("224x224") and proto["detector_kwargs"]["rescale"] is False
    assert proto["detector_sha256"] == hashlib.sha256(i3d_file.read_bytes()).hexdigest()


def test_fvd_refuses_small_n_before_loading_weights_and_reports_missing_weights(tmp_path, i3d_file):
    no_weights = resolve_weights({}, environ={})
    small = fvd(_videos(1, 3), _videos(2, 3), no_weights, min_samples=4)
    assert small.value is None and "biased upward" in small.not_applicable  # N checked first
    missing = fvd(_videos(1, 4), _videos(2, 4), no_weights, min_samples=4)
    assert missing.not_applicable.startswith("fvd needs i3d_torchscript.pt") and "eval.weights.i3d" in missing.not_applicable
    short = fvd(_videos(1, 4), _videos(2, 4), resolve_weights({"i3d": str(i3d_file)}), clip_frames=128, min_samples=4)
    assert short.value is None and "8 videos shorter than the 128-frame clip" in short.not_applicable


def test_a_wrong_detector_file_is_one_clear_error(tmp_path):
    other = torch.jit.script(torch.nn.Linear(3, 3))
    torch.jit.save(other, str(tmp_path / "linear.pt"))
    (tmp_path / "junk.pt").write_bytes(b"not torchscript")
    for name in ("linear.pt", "junk.pt"):
        with pytest.raises(WeightsInvalid, match="i3d_torchscript.pt"):
            load_detector(resolve_weights({"i3d": str(tmp_path / name)}))
    with pytest.raises(WeightsInvalid, match="does not exist"):
        resolve_weights({"i3d": str(tmp_path / "absent.pt")})


def test_preprocess_crops_the_centre_of_a_short_side_resize():
    video = np.zeros((16, 100, 200, 3), dtype=np.float32)
    video[:, :, 40:160] = 1.0  # the centre (and a margin for the bilinear blend) white, the sides black
    clip = preprocess_clip(video)
    assert clip.shape == (3, 16, 224, 224)
    assert torch.allclose(clip, torch.ones_like(clip))  # the black sides were cropped away, [0,1] -> [-1,1]
    assert preprocess_clip(np.zeros((20, 224, 224, 3), np.uint8)).min() == -1.0


def test_registry_has_fvd_and_rfvd():
    for name in ("fvd", "rfvd"):
        spec = DISTRIBUTION_METRICS.get(name)
        assert spec.needs == ("i3d",) and spec.higher_is_better is False and spec.version == "1"


def test_unknown_weight_names_and_wrong_kinds_fail_at_resolution(tmp_path):
    from models.config import ConfigError

    with pytest.raises(ConfigError, match="Unknown eval.weights name.*i3x.*valid names are: i3d"):
        resolve_weights({"i3x": "a.pt"})
    (tmp_path / "clip").mkdir()
    with pytest.raises(WeightsInvalid, match="no config.json"):
        resolve_weights({"clip": str(tmp_path / "clip")})
    with pytest.raises(WeightsInvalid, match="is a folder"):
        resolve_weights({"i3d": str(tmp_path)})
