"""A folder of the user's mp4 files as a sweep's data (issue 15, item 9).

- `--set vae_data.source=folder` and `--set vae_data.folder=DIR` work in either order.
- A folder that is missing, or none of whose files is a usable video, is refused in one
  sentence on the driver, before Ray starts (the curation pipeline's no-decode pre-check,
  then its probe), by `ltxlab sweep` and `ltxlab train-vae`.
- Broken files in a usable folder are listed without decoding any video, and a real sweep
  on embedded Ray shows them in the run table (`data_warnings`), `ltxlab results`,
  `ltxlab report` and the dashboard's Runs page, while the runs train on the good files.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ablations.cli import main
from ablations.configs import default_run_config
from ablations.overrides import apply_overrides
from clips.dataset import DataSpec, data_warnings
from clips.io import write_video
from tests._cli import RayReached, one_sentence, stop_before_ray

BROKEN = ("cut.mp4", "empty.mp4", "garbage.mp4")


def _video(seed: int, frames: int = 48) -> np.ndarray:
    """A textured frame sliding sideways: (frames, 48, 64, 3) uint8."""
    base = np.random.default_rng(seed).integers(0, 256, (1, 48, 64, 3)).astype(np.float32)
    return np.concatenate([np.roll(base, t, axis=2) for t in range(frames)]).astype(np.uint8)


def _write_broken(folder: Path, good: Path) -> None:
    data = good.read_bytes()
    (folder / "cut.mp4").write_bytes(data[: len(data) // 2])  # an mp4 cut mid-download
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "garbage.mp4").write_bytes(np.random.default_rng(7).bytes(4000))


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """Two good videos and three broken files."""
    root = tmp_path_factory.mktemp("videos")
    write_video(root / "a.mp4", _video(0), 24)
    write_video(root / "b.mp4", _video(1), 24)
    _write_broken(root, root / "a.mp4")
    return root


@pytest.fixture()
def all_broken(tmp_path, folder) -> Path:
    root = tmp_path / "broken"
    root.mkdir()
    _write_broken(root, folder / "a.mp4")
    return root


@pytest.fixture()
def no_ray(monkeypatch):
    stop_before_ray(monkeypatch)


def test_source_and_folder_can_be_set_in_either_order(folder, no_ray, tmp_path):
    base = default_run_config()
    first = apply_overrides(base, ["vae_data.source=folder", f"vae_data.folder={folder}"])
    second = apply_overrides(base, [f"vae_data.folder={folder}", "vae_data.source=folder"])
    assert first == second and (first.vae_data.source, first.vae_data.folder) == ("folder", str(folder))
    for order in (["vae_data.source=folder", f"vae_data.folder={folder}"],
                  [f"vae_data.folder={folder}", "vae_data.source=folder"]):
        sets = [arg for item in order for arg in ("--set", item)]
        with pytest.raises(RayReached):  # every check passed; the next step would start Ray
            main(["sweep", "tiny-pair", "--results", str(tmp_path), *sets])


def test_missing_folder_is_one_sentence_naming_it(no_ray, tmp_path, capsys):
    missing = tmp_path / "missing"
    code = main(["sweep", "tiny-pair", "--results", str(tmp_path), "--set", "vae_data.source=folder",
                 "--set", f"vae_data.folder={missing}"])
    err = one_sentence(capsys, code)
    assert f"Video folder {missing} does not exist; pass an existing folder of mp4 files." in err


def test_all_broken_folder_fails_before_ray(all_broken, no_ray, tmp_path, capsys):
    results = tmp_path / "results"
    code = main(["sweep", "tiny-pair", "--results", str(results), "--set", "vae_data.source=folder",
                 "--set", f"vae_data.folder={all_broken}"])
    err = one_sentence(capsys, code)
    assert f"None of the 3 files in {all_broken} is a usable video" in err
    assert "1 truncated" in err and "1 empty" in err and "set the folder field to another folder" in err
    assert not results.exists()
    out = tmp_path / "vae"
    code = main(["train-vae", "--data", str(all_broken), "--out", str(out), "--frames", "9", "--resolution", "32x32"])
    assert f"None of the 3 files in {all_broken} is a usable video" in one_sentence(capsys, code)
    assert not out.exists()


def test_clips_longer_than_every_video_are_refused_before_ray(folder, no_ray, tmp_path, capsys):
    """The videos have 48 frames, so 12 held-out ones: 17-frame clips fit none (found from metadata, not decoding)."""
    code = main(["sweep", "tiny-pair", "--results", str(tmp_path), "--set", "vae_data.source=folder",
                 "--set", f"vae_data.folder={folder}", "--set", "vae_data.frames=17"])
    err = one_sentence(capsys, code)
    assert f"No video in folder {folder} is long and large enough for 17x32x32 clips in both splits (skipped a, b)" in err


def test_broken_files_are_found_without_decoding(folder, monkeypatch):
    import clips.folder

    def no_decode(*args, **kwargs):
        raise AssertionError("a video was decoded to list the broken files")

    monkeypatch.setattr(clips.folder, "read_video", no_decode)
    clips.folder._check_listing.cache_clear()
    warnings = data_warnings(DataSpec(source="folder", folder=str(folder), frames=9, height=32, width=32))
    assert [w.split(":")[0] for w in warnings] == [f"Skipped {name}" for name in BROKEN]
    assert "truncated" in warnings[0] and "empty" in warnings[1]
    assert data_warnings(DataSpec(source="bundled")) == []


# ---------------------------------------------------------------- one real sweep on embedded Ray


@pytest.fixture(scope="module")
def swept(folder, ray_local, tmp_path_factory):
    from ablations.recipes import Sweep
    from ablations.recipes.common import smoke
    from ablations.runner import run_sweep

    base = smoke(default_run_config("ltx", "tiny"))
    base = dataclasses.replace(base, vae_data=dataclasses.replace(base.vae_data, source="folder", folder=str(folder)),
                               eval=dataclasses.replace(base.eval, recon_metrics=("psnr",), dwt_bands=False))
    sweep = Sweep(name="folder-data", recipe="tiny-pair", description="a VAE on a user folder with broken files",
                  base=base, stages=("eval_recon",), headline_metrics=("psnr",))
    root = tmp_path_factory.mktemp("results")
    return root, run_sweep(sweep, root, progress=False)


def test_run_table_lists_the_broken_files(swept):
    root, outcome = swept
    assert outcome.runs_done == 1
    runs = pd.read_parquet(root / "folder-data" / "runs.parquet")
    (text,) = runs["data_warnings"]
    lines = text.splitlines()
    assert [line.split(":")[0] for line in lines] == [f"Skipped {name}" for name in BROKEN]
    assert "a.mp4" not in text and "b.mp4" not in text
    assert runs["status"].tolist() == ["done"] and runs["psnr"].notna().all()


def test_results_and_report_print_the_broken_files(swept, capsys):
    root, _ = swept
    assert main(["results", "folder-data", "--results", str(root)]) == 0
    out = capsys.readouterr().out
    for name in BROKEN:
        assert f"data warning: Skipped {name}: Video file " in out and "(1 of 1 runs)" in out
    assert main(["report", "folder-data", "--results", str(root)]) == 0
    out = capsys.readouterr().out
    assert "Data warnings (input files the runs skipped; fix or remove them):" in out
    for name in BROKEN:
        assert f"  Skipped {name}: Video file " in out


def test_dashboard_runs_page_shows_the_broken_files(swept, monkeypatch):
    from streamlit.testing.v1 import AppTest

    root, _ = swept
    monkeypatch.setenv("LTXLAB_RESULTS", str(root))
    monkeypatch.delenv("LTXLAB_SURVEY_DB", raising=False)
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py"), default_timeout=90)
    at.run()
    at.switch_page("views/runs.py")
    at.run()
    assert not at.exception
    warning = next(str(w.value) for w in at.warning if "Data warnings" in str(w.value))
    for name in BROKEN:
        assert f"Skipped {name}" in warning
    assert "data_warnings" in at.dataframe[0].value.columns
