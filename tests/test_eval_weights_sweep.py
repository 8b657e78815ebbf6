"""A sweep scores LPIPS, CLIP similarity, frame consistency, rFVD and FVD from local weights
(random networks saved in the real file formats, `tests/_metric_models.py`), configured with
`--set eval.weights.*`; without them every report and dashboard page names the missing file.

Two `tiny-pair` sweeps share one results root (so the VAE and DiT train once): one with the
weights, one without. The tiny scenes have 9 frames and 2 held-out clips, so the FVD
protocol is lowered here to 8-frame clips and N >= 2 (`eval.fvd_frames`,
`eval.fvd_min_samples`); a real sweep keeps 16 frames and N >= 256.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import _metric_models as models  # noqa: E402

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow  # two sweeps and seven dashboard renders: 36-60 s on two shared cores

WITH, PLAIN = "tiny-pair-weights", "tiny-pair-plain"
SET_METRICS = ("rfvd", "t2v.fvd", "i2v.fvd")


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict[str, Path]:
    from evaluation.weights import WEIGHT_FILES

    folder = models.save_lpips_weights_folder(tmp_path_factory.mktemp("weights"))
    models.save_i3d(folder / WEIGHT_FILES["i3d"].file)
    models.save_clip(folder / "clip")
    names = ("i3d", "lpips_alex", "lpips_vgg", "lpips_alex_head", "lpips_vgg_head")
    return {**{n: folder / WEIGHT_FILES[n].file for n in names}, "clip": folder / "clip"}


@pytest.fixture(scope="module")
def results(weights, ray_local, tmp_path_factory) -> Path:
    """Both sweeps in one root; $LTXLAB_WEIGHTS is cleared so the plain sweep really has no weights."""
    from ablations.cli import main

    saved = {k: os.environ.pop(k, None) for k in ("LTXLAB_WEIGHTS",)}
    os.environ["HF_HUB_OFFLINE"] = "1"
    root = tmp_path_factory.mktemp("results")
    try:
        sets = [f"eval.weights.{name}={path}" for name, path in weights.items()]
        sets += ["eval.fvd_frames=8", "eval.fvd_min_samples=2"]
        base = ["sweep", "tiny-pair", "--results", str(root), "--quiet", "--no-report"]
        assert main([*base, "--name", WITH, *[a for s in sets for a in ("--set", s)]]) == 0
        assert main([*base, "--name", PLAIN]) == 0
        yield root
    finally:
        for key, value in saved.items():
            if value is not None:
                os.environ[key] = value


def _manifests(root: Path, sweep: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((root / sweep / "runs").glob("*/manifest.json"))]


def test_weights_sweep_stores_lpips_clip_and_set_metrics_with_protocol(results, weights):
    from models.weights import file_sha256

    metrics = pd.read_parquet(results / WITH / "metrics.parquet")
    runs = pd.read_parquet(results / WITH / "runs.parquet")
    clips = metrics.loc[metrics["metric"] == "psnr", "clip_id"].nunique()
    for name in ("lpips_alex", "lpips_vgg"):  # per clip, like every other reconstruction metric
        rows = metrics[metrics["metric"] == name]
        assert len(rows) == clips * len(runs) and rows["value"].between(0, 10).all() and rows["value"].gt(0).all()
    for task in ("t2v", "i2v"):
        for name in ("clip_similarity", "frame_consistency"):
            rows = metrics[metrics["metric"] == f"{task}.{name}"]
            assert len(rows) == 2 * len(runs) and rows["value"].between(-1, 1).all()  # heldout_prompts=2 per run
    sets = metrics[metrics["clip_id"] == "__set__"]
    assert sorted(sets["metric"]) == sorted(SET_METRICS * len(runs)) and (sets["source_id"] == "__set__").all()
    assert np.isfinite(sets["value"]).all() and sets["value"].ge(0).all()
    sha = file_sha256([str(weights["i3d"])])
    for manifest in _manifests(results, WITH):
        evaluation = manifest["evaluation"]
        assert not {"lpips_alex", "lpips_vgg", "t2v.clip_similarity", *SET_METRICS} & set(evaluation["not_applicable"])
        rfvd = evaluation["set_metrics"]["rfvd"]
        assert rfvd["n_reference"] == rfvd["n_test"] == clips and rfvd["protocol"]["clip_frames"] == 8
        assert rfvd["protocol"]["detector_sha256"] == sha and rfvd["protocol"]["resolution"].startswith("224x224")
        assert evaluation["set_metrics"]["t2v.fvd"]["n_test"] == 2
        stored = sets[(sets["run_id"] == manifest["run_id"]) & (sets["metric"] == "rfvd")]["value"].item()
        assert stored == rfvd["value"]
        used = evaluation["weights"]  # which files made each network metric's values
        assert used["lpips_alex"] == {n: file_sha256([str(weights[n])]) for n in ("lpips_alex", "lpips_alex_head")}
        assert set(used["t2v.frame_consistency"]) == {"clip"} and len(used["t2v.clip_similarity"]["clip"]) == 64
    specs = json.loads((results / WITH / "sweep.json").read_text())["metrics"]
    assert all(specs[m]["set_level"] and not specs[m]["higher_is_better"] for m in SET_METRICS)


def test_rfvd_is_the_frechet_distance_of_the_stage_features_whatever_the_shard_count(results, weights, tmp_path):
    """The merge concatenates the parts' I3D features: 1 or 2 shards give the same rFVD, equal to a direct
    float64 computation from the features."""
    from ablations.recipes import RECIPES
    from ablations.stages.eval_recon import eval_recon_part, merge_recon_parts
    from evaluation.frechet import frechet_distance_of_features
    from evaluation.weights import WeightsConfig

    vae_dir = next((results / "_cache" / "train_vae").iterdir())
    spec = RECIPES.get("tiny-pair")().base.vae_data
    config = WeightsConfig(i3d=str(weights["i3d"]))
    values = []
    for world in (1, 2):
        folder = tmp_path / f"w{world}"
        for rank in range(world):
            eval_recon_part(vae_dir, spec, folder, metric_names=["psnr"], max_samples=0, shard=(rank, world),
                            weights_config=config, fvd_frames=8)
        rows, summary, _, sets = merge_recon_parts(folder, world, folder, metric_names=["psnr"], fvd_frames=8,
                                                   fvd_min_samples=2)
        values.append(sets["set_metrics"]["rfvd"]["value"])
        assert summary["rfvd"] == values[-1] and rows[-1]["clip_id"] == "__set__"
    parts = [np.load(p) for p in sorted((tmp_path / "w1" / "parts").glob("*/i3d.npz"))]
    direct = frechet_distance_of_features(parts[0]["original"], parts[0]["reconstruction"])
    assert values[0] == pytest.approx(values[1], rel=1e-6, abs=1e-12) and values[0] == pytest.approx(direct, rel=1e-6)
    # too few clips for the protocol: the reason, not a number
    _, _, _, sets = merge_recon_parts(tmp_path / "w1", 1, tmp_path / "w1", metric_names=["psnr"], fvd_frames=8,
                                      fvd_min_samples=256)
    assert sets["set_metrics"]["rfvd"]["value"] is None
    assert sets["not_applicable"]["rfvd"].startswith("rfvd needs at least 256 videos in each set")


def test_report_shows_set_metrics_with_protocol_and_seed_level_effects(results):
    from ablations.report import build_report, format_report, report_json

    text = format_report(build_report(results, WITH))
    assert "Set-level metrics" in text and "n=1 per run" in text
    for metric in SET_METRICS:
        assert any(line.split()[2:3] == [metric] for line in text.splitlines() if "dit.text_conditioning=" in line)
    assert "lpips_alex: n/a" not in text and "rfvd: n/a" not in text
    report = build_report(results, WITH, metrics=["rfvd", "t2v.fvd", "lpips_vgg"])
    effects = report["effects"].set_index("metric")
    assert effects.loc["rfvd", "n_sources"] == effects.loc["t2v.fvd", "n_sources"] == 1  # no per-clip replicate invented
    assert effects.loc["lpips_vgg", "n_sources"] >= 2
    # one seed: the seed replicates that carry a set-level interval are absent, so no verdict
    assert effects.loc["t2v.fvd", "status"] == "one_seed"
    assert effects.loc["rfvd", "status"] == "not_applicable"  # both DiT variants share the VAE: identical rFVD
    data = report_json(report)
    assert {r["metric"] for r in data["set_metrics"]} == set(SET_METRICS)


def test_without_weights_the_report_names_each_missing_file(results):
    from ablations.report import build_report, format_report

    metrics = pd.read_parquet(results / PLAIN / "metrics.parquet")
    assert not {"lpips_alex", "lpips_vgg", "rfvd", "t2v.fvd", "t2v.clip_similarity"} & set(metrics["metric"])
    assert "psnr" in set(metrics["metric"])
    text = format_report(build_report(results, PLAIN))
    lines = [line.strip() for line in text.splitlines()]
    expected = {
        "lpips_alex": ("alexnet-owt-7be5be79.pth", "set eval.weights.lpips_alex=PATH"),
        "lpips_vgg": ("vgg16-397923af.pth", "set eval.weights.lpips_vgg=PATH"),
        "rfvd": ("i3d_torchscript.pt", "set eval.weights.i3d=PATH"),
        "t2v.fvd": ("i3d_torchscript.pt", "set eval.weights.i3d=PATH"),
        "t2v.clip_similarity": ("CLIP folder", "set eval.weights.clip=PATH"),
        "i2v.frame_consistency": ("eval.weights.dino or eval.weights.clip",),
    }
    for metric, needles in expected.items():
        line = next(line for line in lines if line.startswith(f"{metric}: n/a: "))
        assert all(n in line for n in needles) and line.endswith("(2 of 2 runs)"), line
    assert "Set-level metrics" not in text


def _app(monkeypatch, root: Path, sweep: str):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("LTXLAB_RESULTS", str(root))
    monkeypatch.delenv("LTXLAB_SURVEY_DB", raising=False)
    at = AppTest.from_file(str(Path(__file__).parents[1] / "dashboard" / "app.py"), default_timeout=90)
    at.session_state["_sweep_pick"] = sweep
    return at.run()


def test_dashboard_pages_say_which_file_is_missing(results, monkeypatch):
    at = _app(monkeypatch, results, PLAIN)
    for page in ("runs", "effects", "compare"):
        at.switch_page(f"views/{page}.py")
        at.session_state["_sweep_pick"] = PLAIN
        at.run()
        assert not at.exception, page
        warnings = "\n".join(str(w.value) for w in at.warning)
        for needle in ("lpips_alex: n/a: lpips_alex needs alexnet-owt-7be5be79.pth", "set eval.weights.lpips_vgg=PATH",
                       "rfvd: n/a: rfvd needs i3d_torchscript.pt", "t2v.clip_similarity: n/a"):
            assert needle in warnings, (page, needle)


def test_dashboard_runs_page_shows_set_level_metrics(results, monkeypatch):
    at = _app(monkeypatch, results, WITH)
    at.switch_page("views/runs.py")
    at.session_state["_sweep_pick"] = WITH
    at.run()
    assert not at.exception
    assert "Set-level metrics" in [str(h.value) for h in at.subheader]
    tables = [t.value for t in at.dataframe]
    sets = next(t for t in tables if "detector_sha256" in t.columns)
    assert sorted(set(sets["metric"])) == sorted(SET_METRICS) and sets["value"].notna().all()
    assert not any("lpips_alex: n/a" in str(w.value) for w in at.warning)


def test_a_configured_weights_path_that_does_not_exist_fails_before_launch(monkeypatch, tmp_path, capsys):
    import ablations.runner as runner
    from ablations.cli import main

    def no_ray(*args, **kwargs):
        raise AssertionError("Ray was started for an invalid weights path")

    monkeypatch.setattr(runner, "_init_ray", no_ray)
    code = main(["sweep", "tiny-pair", "--results", str(tmp_path), "--set", f"eval.weights.i3d={tmp_path / 'no.pt'}"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "eval.weights.i3d" in err and "does not exist" in err and "Traceback" not in err
    assert not (tmp_path / "_cache").exists()
    # a file that exists but is not in its metric's format is found now too, not after training
    (tmp_path / "empty.pth").write_bytes(b"")
    for name, expected in (("lpips_alex", "is not a readable torch state dict"), ("i3d", "is not a TorchScript file")):
        code = main(["sweep", "tiny-pair", "--results", str(tmp_path), "--set",
                     f"eval.weights.{name}={tmp_path / 'empty.pth'}"])
        err = capsys.readouterr().err
        assert code == 2 and len(err.strip().splitlines()) == 1 and expected in err, err
    assert not (tmp_path / "_cache").exists()
