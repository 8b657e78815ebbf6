"""`ltxlab metrics --ref DIR --test DIR`: every registered metric between two folders, with weights or the reason."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from ablations.cli import main as ltxlab  # noqa: E402
from clips.io import read_video, write_video  # noqa: E402
from evaluation.fvd import DISTRIBUTION_METRICS  # noqa: E402
from evaluation.generation import GENERATION_METRICS  # noqa: E402
from evaluation.metrics import DEFAULT_ORDER, evaluate_pair  # noqa: E402
from tests._metric_models import save_clip, save_i3d, save_lpips_weights_folder  # noqa: E402

NAMES = ["a", "b", "c", "d"]
EVERY = list(DEFAULT_ORDER) + GENERATION_METRICS.names() + DISTRIBUTION_METRICS.names()


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("metrics_cli")
    ref_dir, test_dir = root / "ref", root / "test"
    rng = np.random.default_rng(0)
    x = np.linspace(0, 1, 64, dtype=np.float32)
    for i, name in enumerate(NAMES):
        t = np.arange(17, dtype=np.float32)[:, None, None, None]
        video = 0.5 + 0.4 * np.sin(6 * x[None, None, :, None] + 0.2 * t + i) * np.ones((17, 48, 64, 3), np.float32)
        video[..., i % 3] *= 0.5
        write_video(ref_dir / f"{name}.mp4", video, 8)
        noisy = np.clip(video + rng.normal(0, 0.05 * (i + 1), video.shape), 0, 1)
        write_video(test_dir / f"{name}.mp4", noisy, 8)
    write_video(test_dir / "extra.mp4", rng.random((17, 48, 64, 3)), 8)  # test only: counts for FVD alone
    lines = [json.dumps({"file": f"{n}.mp4", "caption": f"a clip called {n}"}) for n in NAMES[:3]]
    (test_dir / "captions.jsonl").write_text("\n".join(lines) + "\n")
    weights = save_lpips_weights_folder(root / "weights")
    save_i3d(weights / "i3d_torchscript.pt", width_div=16)
    save_clip(weights / "clip")
    return ref_dir, test_dir, weights


def _json(capsys, argv: list[str]) -> dict:
    assert ltxlab(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_folders_with_weights_report_every_metric(folders, capsys, monkeypatch):
    ref_dir, test_dir, weights = folders
    monkeypatch.setenv("LTXLAB_WEIGHTS", str(weights))
    report = _json(capsys, ["metrics", "--ref", str(ref_dir), "--test", str(test_dir), "--json",
                            "--fvd-min-samples", "4"])
    metrics = report["metrics"]
    assert list(metrics) == EVERY
    assert report["pairs"] == [f"{n}.mp4" for n in NAMES] and report["unpaired"]["test_only"] == ["extra.mp4"]
    # pair metrics: the mean over pairs of what the two-file path computes
    pairs = [(read_video(ref_dir / f"{n}.mp4")[0], read_video(test_dir / f"{n}.mp4")[0]) for n in NAMES]
    expected = [evaluate_pair(r, t, ["psnr", "lpips_alex"]) for r, t in pairs]
    for name in ("psnr", "lpips_alex"):
        assert metrics[name]["n"] == 4
        assert metrics[name]["value"] == pytest.approx(np.mean([e[name].value for e in expected]), rel=1e-6)
    assert metrics["psnr"]["per_video"]["a.mp4"] > metrics["psnr"]["per_video"]["d.mp4"]  # more noise, lower PSNR
    assert metrics["lpips_vgg"]["value"] > 0
    # video metrics: CLIP similarity for the 3 captioned videos, consistency for all 5 test videos
    assert metrics["clip_similarity"]["n"] == 3 and "needs a caption" in metrics["clip_similarity"]["skipped"]["d.mp4"]
    assert metrics["frame_consistency"]["n"] == 5
    assert metrics["oracle_color"]["value"] is None and "synthetic-scene captions" in metrics["oracle_color"]["not_applicable"]
    # set metrics: FVD over 4 vs 5 videos, rFVD over the 4 pairs, with their protocol
    assert metrics["fvd"]["value"] > 0 and metrics["fvd"]["protocol"]["n_test"] == 5
    assert metrics["rfvd"]["protocol"]["n_test"] == metrics["rfvd"]["protocol"]["n_reference"] == 4
    assert len(metrics["fvd"]["protocol"]["detector_sha256"]) == 64
    assert set(report["weights"]["lpips_vgg"]) == {"lpips_vgg", "lpips_vgg_head"}  # the files behind each value
    assert report["weights"]["frame_consistency"].keys() == {"clip"} and "psnr" not in report["weights"]


def test_folders_without_weights_say_which_file_is_missing(folders, capsys, monkeypatch):
    ref_dir, test_dir, _ = folders
    monkeypatch.delenv("LTXLAB_WEIGHTS", raising=False)
    assert ltxlab(["metrics", "--ref", str(ref_dir), "--test", str(test_dir), "--fvd-min-samples", "4"]) == 0
    out = capsys.readouterr().out
    for name, file in (("lpips_alex", "alexnet-owt-7be5be79.pth"), ("lpips_vgg", "vgg16-397923af.pth"),
                       ("fvd", "i3d_torchscript.pt"), ("rfvd", "i3d_torchscript.pt"), ("clip_similarity", "clip")):
        line = next(line for line in out.splitlines() if line.startswith(name + " "))
        assert f"n/a: {name} needs {file}" in line and f"set eval.weights." in line, line
    for name in EVERY:  # every registered metric is listed, with a value or a reason
        assert any(line.startswith(name + " ") for line in out.splitlines()), name


def test_small_sets_refuse_fvd_with_the_reason(folders, capsys, monkeypatch):
    ref_dir, test_dir, weights = folders
    monkeypatch.setenv("LTXLAB_WEIGHTS", str(weights))
    report = _json(capsys, ["metrics", "--ref", str(ref_dir), "--test", str(test_dir), "--json",
                            "--metrics", "psnr,fvd,rfvd"])
    assert list(report["metrics"]) == ["psnr", "fvd", "rfvd"]
    assert "biased upward" in report["metrics"]["fvd"]["not_applicable"]
    assert "at least 256" in report["metrics"]["rfvd"]["not_applicable"]


def test_explicit_weights_flag_and_user_errors(folders, capsys, monkeypatch, tmp_path):
    ref_dir, test_dir, weights = folders
    monkeypatch.delenv("LTXLAB_WEIGHTS", raising=False)
    report = _json(capsys, ["metrics", "--ref", str(ref_dir), "--test", str(test_dir), "--json", "--metrics",
                            "clip_similarity", "--set", f"eval.weights.clip={weights / 'clip'}"])
    assert report["metrics"]["clip_similarity"]["n"] == 3
    assert ltxlab(["metrics", "--ref", str(ref_dir), "--test", str(test_dir), "--set", "eval.weights.i3x=a"]) == 2
    assert "eval.weights.NAME=PATH" in capsys.readouterr().err
    assert ltxlab(["metrics", "--ref", str(ref_dir), "--test", str(test_dir / "a.mp4")]) == 2
    assert "both be files or both be folders" in capsys.readouterr().err
    assert ltxlab(["metrics", "--ref", str(ref_dir), "--test", str(test_dir), "--metrics", "fvdd"]) == 2
    assert "Did you mean 'fvd'" in capsys.readouterr().err
    assert ltxlab(["metrics", "--ref", str(ref_dir), "--test", str(test_dir), "--set",
                   f"eval.weights.i3d={tmp_path / 'absent.pt'}", "--metrics", "fvd"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert ltxlab(["metrics", "--ref", str(ref_dir), "--test", str(test_dir), "--max-frames", "8"]) == 2
    assert "--max-frames 8 is below --fvd-frames 16, so FVD would see no video" in capsys.readouterr().err


def test_short_videos_are_counted_and_trimmed_pairs_noted(folders, capsys, monkeypatch, tmp_path):
    """A test video shorter than the FVD clip is left out of FVD and counted in its protocol; its pair
    is scored over the common frames, and the report says so."""
    ref_dir, test_dir, weights = folders
    monkeypatch.setenv("LTXLAB_WEIGHTS", str(weights))
    short = tmp_path / "test"
    short.mkdir()
    for name in NAMES:
        frames = read_video(test_dir / f"{name}.mp4")[0]
        write_video(short / f"{name}.mp4", frames[:9] if name == "a" else frames, 8)
    report = _json(capsys, ["metrics", "--ref", str(ref_dir), "--test", str(short), "--json",
                            "--metrics", "psnr,fvd", "--fvd-min-samples", "2"])
    fvd = report["metrics"]["fvd"]
    assert fvd["n"] == 3 and "shorter videos left out: 1" in fvd["protocol"]["clip"]
    assert "a.mp4: reference 17 and test 9 frames; the pair metrics score the first 9." in report["notes"]
    assert report["metrics"]["psnr"]["n"] == 4


def test_json_piped_into_head_does_not_raise(tmp_path):
    # more JSON than a pipe buffers (64 KiB), so the reader's early exit reaches the writer
    video = np.random.default_rng(1).random((1200, 8, 8, 3))
    long_ref, long_test = write_video(tmp_path / "r.mp4", video, 25), write_video(tmp_path / "t.mp4", video[::-1], 25)
    command = (f"{sys.executable} -m ablations.cli metrics --ref {long_ref} --test {long_test} "
               f"--json --metrics psnr,psnr_y,ssim,flicker | head -c 1")
    env = {k: v for k, v in os.environ.items() if k != "LTXLAB_WEIGHTS"}
    done = subprocess.run(["bash", "-c", f"set -o pipefail; {command}"], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.stdout == "{"
    assert "BrokenPipeError" not in done.stderr and "Traceback" not in done.stderr, done.stderr
