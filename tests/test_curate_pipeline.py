"""`ltxlab curate` (clips/curate/pipeline.py) on generated videos with a known truth, and the bundled corpus.

Most checks run the single-process engine (the same stage functions as Ray Data, no Ray
start-up). One module-scoped embedded Ray (2 CPUs) serves the end-to-end CLI run, which is
checked against the single-process rows. The all-broken input runs in a subprocess, to
prove that Ray is never imported when the pre-check refuses the input.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ablations.cli import main
from clips.curate import synthetic
from clips.curate.config import config_from_dict
from clips.curate.manifest import FILTERS, read_manifest, read_report
from clips.curate.pipeline import curate
from clips.errors import ClipError

ROOT = Path(__file__).resolve().parents[1]
BARS = ("letterbox", "letterbox_odd", "pillarbox", "pillarbox_odd", "both", "both_still", "full")
CUT_SHOTS = ((20, 40, 30), (34, 26, 30))  # the 20-frame shot is under min_duration_s = 1 s at 24 fps
BASE = {"shots": {"min_duration_s": 1.0}, "workers": 2}


def _write_folder(root: Path) -> dict:
    """Generated videos of every kind under `root`, and the truth about them."""
    bars = {v.kind: v for v in synthetic.bars_set(root / "bars", seed=3) if v.kind in BARS}
    for path in (root / "bars").iterdir():  # the dark cases are test_curate_detect's business
        if path.stem not in BARS:
            path.unlink()
    motion = synthetic.motion_set(root / "motion", count=3, seed=5, frames=36)
    cuts = [synthetic.write_cut_video(root / "cuts" / f"cuts_{i}.mp4", shot_lengths=s, seed=40 + i)
            for i, s in enumerate(CUT_SHOTS)]
    broken = synthetic.broken_set(root / "broken", seed=2)
    captions = [{"file": "cuts_0.mp4", "caption": "three textured shots"}]
    (root / "captions.jsonl").write_text("".join(json.dumps(c) + "\n" for c in captions), encoding="utf-8")
    return {"bars": bars, "motion": motion, "cuts": cuts, "broken": broken}


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("src")
    return root, _write_folder(root)


@pytest.fixture(scope="module")
def scorer(tmp_path_factory):
    import torch

    from models.aesthetic import AestheticConfig, save_scorer

    torch.manual_seed(0)
    model = AestheticConfig(kind="cnn", image_size=32, channels=(8, 16), hidden=16).build().eval()
    return save_scorer(model, tmp_path_factory.mktemp("scorer"))


@pytest.fixture(scope="module")
def local(videos, scorer, tmp_path_factory):
    """The single-process engine over the whole folder, with the scorer and no threshold."""
    root, _ = videos
    cfg = config_from_dict({**BASE, "aesthetic": {"scorer": str(scorer), "top_k": 4}})
    return curate(root, tmp_path_factory.mktemp("out") / "local", cfg, engine="local")


def _by_stem(frame):
    return {Path(src).stem: group for src, group in frame.groupby("source")}


# ----------------------------------------------------------------------------- refusals before work


def test_all_broken_or_empty_input_fails_in_one_sentence_before_ray(videos, tmp_path):
    root, _ = videos
    (tmp_path / "empty").mkdir()
    script = ("import json, sys\nfrom ablations.cli import main\n"
              "codes = [main(['curate', src, '--out', sys.argv[3]]) for src in sys.argv[1:3]]\n"
              "print(json.dumps({'codes': codes, 'ray': 'ray' in sys.modules}))\n")
    out = tmp_path / "never"
    proc = subprocess.run([sys.executable, "-c", script, str(root / "broken"), str(tmp_path / "empty"), str(out)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"codes": [2, 2], "ray": False}, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("ltxlab curate:")]
    assert len(errors) == 2 and len(proc.stderr.strip().splitlines()) == 2, proc.stderr
    assert "None of the 5 files" in errors[0] and "empty" in errors[0] and "truncated" in errors[0]
    assert "holds no video files" in errors[1]
    assert not out.exists()


def test_captions_match_by_path_relative_to_src_and_ambiguous_bare_names_are_refused(tmp_path, caplog):
    from clips.curate.inputs import list_inputs

    for sub in ("beach", "city"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "clip1.mp4").write_bytes(b"x")
    (tmp_path / "city" / "solo.mp4").write_bytes(b"x")

    def write(*entries):
        (tmp_path / "captions.jsonl").write_text("".join(json.dumps({"file": f, "caption": c}) + "\n" for f, c in entries))

    write(("beach/clip1.mp4", "waves"), ("./city/clip1.mp4", "cars at night"), ("solo.mp4", "a lone car"),
          ("gone/clip9.mp4", "nobody"))
    got = {Path(f.path).relative_to(tmp_path).as_posix(): f.caption for f in list_inputs(tmp_path)}
    assert got == {"beach/clip1.mp4": "waves", "city/clip1.mp4": "cars at night", "city/solo.mp4": "a lone car"}
    assert "1 entries name no video" in caplog.text and "gone/clip9.mp4" in caplog.text
    write(("clip1.mp4", "which one?"))
    with pytest.raises(ClipError, match="names clip1.mp4 without a folder, and 2 files have that name "
                                        "\\(beach/clip1.mp4, city/clip1.mp4\\)"):
        list_inputs(tmp_path)
    write(("beach/clip1.mp4", "waves"), ("beach/clip1.mp4", "surf"))
    with pytest.raises(ClipError, match="names beach/clip1.mp4 on lines 1 and 2"):
        list_inputs(tmp_path)


@pytest.mark.parametrize("toml, expected", [
    ("[motion]\nstatic_flw = 0.5\n", "Did you mean 'static_flow'"),
    ("[bars]\nsamples = 'many'\n", "bars.samples must be a int"),
    ("[bars]\nmin_area_fraction = 1.5\n", "bars.min_area_fraction must be in [0, 1]"),
    ("[shots]\nmin_duration_s = 20.0\n", "min_duration_s <= max_duration_s"),
    ("[aesthetic]\nthreshold = 0.5\n", "aesthetic.threshold is set but aesthetic.scorer is not"),
    ("[captions]\nmode = 'captoner'\n", "Did you mean 'captioner'"),
    ("workers = [\n", "not valid TOML"),
])
def test_bad_config_is_one_sentence(videos, tmp_path, capsys, toml, expected):
    root, _ = videos
    (tmp_path / "c.toml").write_text(toml, encoding="utf-8")
    assert main(["curate", str(root), "--out", str(tmp_path / "o"), "--config", str(tmp_path / "c.toml")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err, err
    assert not (tmp_path / "o").exists()


def test_bad_set_and_bad_out_are_one_sentence(videos, tmp_path, capsys):
    root, _ = videos
    assert main(["curate", str(root), "--out", str(tmp_path / "o"), "--set", "motion.static_flow=-1"]) == 2
    assert "motion.static_flow must be >= 0" in capsys.readouterr().err
    assert main(["curate", str(root), "--out", str(tmp_path / "o"), "--set", f"aesthetic.scorer={tmp_path}"]) == 2
    assert "is not a scorer folder" in capsys.readouterr().err
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine", encoding="utf-8")
    assert main(["curate", str(root), "--out", str(busy)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not a curated dataset" in err
    assert (busy / "notes.txt").read_text(encoding="utf-8") == "mine"


# ----------------------------------------------------------------------------- known truth (single process)


def test_black_bar_crops_within_2px(local, videos):
    _, truth = videos
    rows = _by_stem(local.manifest)
    for kind, video in truth["bars"].items():
        row = rows[kind].iloc[0]
        box = (row.crop_x0, row.crop_y0, row.crop_x1, row.crop_y1)
        assert np.abs(np.subtract(box, video.crop)).max() <= 2, (kind, box, video.crop)
    # bars come before motion: the still clip keeps its crop box although motion drops it
    assert rows["both_still"].iloc[0].dropped_by == "motion"


def test_hard_cuts_within_one_frame_and_short_shots_dropped(local, videos):
    _, truth = videos
    rows = _by_stem(local.manifest)
    for video in truth["cuts"]:
        clips = rows[video.path.stem].sort_values("start_frame")
        starts = [s for s in clips.start_frame if s > 0]
        assert len(starts) == len(video.cuts)
        assert all(abs(a - b) <= 1 for a, b in zip(starts, video.cuts)), (starts, video.cuts)
        assert list(clips.end_frame)[-1] == video.frames and list(clips.start_frame)[0] == 0
        short = clips[clips.end_frame - clips.start_frame < 24]  # 1 s at 24 fps
        assert set(short.dropped_by) <= {"duration"} and (clips.dropped_by == "duration").sum() == len(short)
    assert _by_stem(local.manifest)["cuts_0"].dropped_by.iloc[0] == "duration"  # the 20-frame first shot


def test_static_and_moving_separated(local, videos):
    _, truth = videos
    rows = _by_stem(local.manifest)
    for video in truth["motion"]:
        row = rows[video.path.stem].iloc[0]
        assert math.isfinite(row.motion_flow) and math.isfinite(row.motion_diff)
        if video.moving:
            assert row.keep, (video.path.name, row.drop_reason)
        else:
            assert row.dropped_by == "motion", (video.path.name, row.motion_flow)
            assert math.isnan(row.aesthetic)  # later filters are skipped


def test_broken_files_are_rows_with_their_reasons(local, videos):
    _, truth = videos
    report = read_report(local.out)
    by_name = {Path(f["path"]).name: f["reason"] for f in report["failures"]}
    assert by_name == {f"{b.kind}.mp4": b.kind for b in truth["broken"]}
    assert report["counts"]["probe_reasons"] == {b.kind: 1 for b in truth["broken"]}
    assert report["counts"]["probe_failed"] == len(truth["broken"])
    rows = _by_stem(local.manifest)
    for broken in truth["broken"]:
        row = rows[broken.path.stem].iloc[0]
        assert row.dropped_by == "probe" and row.drop_reason.startswith(f"{broken.kind}: ") and row.start_frame == -1


def test_manifest_report_and_finetune_follow_the_contract(local):
    frame = read_manifest(local.out)
    report = read_report(local.out)
    assert "NaN" not in (local.out / "report.json").read_text(encoding="utf-8")
    counts = report["counts"]
    assert counts["kept"] == int(frame.keep.sum()) and sum(counts["dropped_by"].values()) == int((~frame.keep).sum())
    assert set(counts["dropped_by"]) == set(FILTERS)
    kept = frame[frame.keep]
    assert kept.aesthetic.notna().all()  # the scorer filled every kept clip
    finetune = read_manifest(local.out, which="finetune.parquet")
    assert len(finetune) == 4 == counts["finetune"]
    assert finetune.aesthetic.min() >= kept.aesthetic.nlargest(4).min()
    assert report["provenance"]["aesthetic"]["weights_sha256"]
    assert {r.caption for r in frame.itertuples() if Path(r.source).name == "cuts_0.mp4"} == {"three textured shots"}


def test_toml_threshold_changes_the_outcome_and_rerun_replaces(videos, tmp_path):
    root, _ = videos
    out = tmp_path / "ds"
    default = curate(root / "motion", out, config_from_dict(BASE), engine="local")
    assert default.report["counts"]["dropped_by"]["motion"] == 3
    (tmp_path / "c.toml").write_text("workers = 2\n[shots]\nmin_duration_s = 1.0\n[motion]\nstatic_flow = 0.0\n"
                                     "static_diff = 0.0\n[captions]\nmode = 'require'\n", encoding="utf-8")
    assert main(["curate", str(root / "motion"), "--out", str(out), "--config", str(tmp_path / "c.toml"),
                 "--local"]) == 0
    report = read_report(out)  # the rerun replaced the dataset
    assert report["counts"]["dropped_by"]["motion"] == 0
    assert report["counts"]["dropped_by"]["caption"] == 6  # no captions under motion/, and they are required
    assert report["config"]["motion"]["static_flow"] == 0.0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left


def test_captioner_mode_captions_the_kept_clips_middle_frame(videos, tmp_path):
    from clips.curate.crop import box_of_row, read_cropped
    from clips.curate.stages import CAPTION_WIDTH
    from models.aesthetic import weights_sha256
    from models.captioner import CaptionerConfig

    _, truth = videos
    from models.tiny_hf import write_captioner

    folder = write_captioner(tmp_path / "captioner")
    first, second = (v.path for v in truth["cuts"])
    (tmp_path / "src.jsonl").write_text(json.dumps({"path": str(first), "caption": "given"}) + "\n"
                                        + json.dumps({"path": str(second)}) + "\n", encoding="utf-8")
    cfg = config_from_dict({**BASE, "captions": {"mode": "captioner", "path": str(folder), "prefer_source": True,
                                                 "max_new_tokens": 6}})
    result = curate(tmp_path / "src.jsonl", tmp_path / "out", cfg, engine="local")
    rows = _by_stem(result.manifest)
    given, captioned = rows[first.stem], rows[second.stem]
    assert set(given[given.keep].caption) == {"given"} and set(given[given.keep].caption_source) == {"source"}
    assert (given[~given.keep].dropped_by == "duration").all()
    kept = captioned[captioned.keep]
    assert len(kept) and set(kept.caption_source) == {f"captioner:{folder.name}"}
    captioner = CaptionerConfig(kind=f"hf:{folder}", max_new_tokens=6).build()
    row = kept.iloc[0].to_dict()
    middle = (row["start_frame"] + row["end_frame"]) // 2
    frame = read_cropped(row["source"], box_of_row(row), indices=[middle], width=CAPTION_WIDTH)
    assert row["caption"] == captioner.caption_clip([frame])[0].strip()
    empty = captioned[captioned.dropped_by == "caption"]
    assert empty.caption.isna().all()  # an empty caption is the caption filter's drop
    assert result.report["provenance"]["captioner"]["weights_sha256"] == weights_sha256(folder)


# ----------------------------------------------------------------------------- Ray Data, end to end


@pytest.mark.slow  # ~45 s here: Ray start-up, then a 720p corpus video among ~25 files
def test_cli_on_ray_with_corpus_matches_single_process(ray_local, videos, scorer, local, tmp_path, capsys):
    from clips.corpus import CORPUS_NAMES, video_path
    from clips.errors import ClipError

    root, truth = videos
    try:
        corpus = [video_path(name) for name in CORPUS_NAMES]
    except ClipError as exc:
        pytest.skip(f"bundled corpus unavailable: {exc}")
    files = [*corpus, *(v.path for v in truth["bars"].values()), *(v.path for v in truth["motion"]),
             *(v.path for v in truth["cuts"]), *(b.path for b in truth["broken"])]
    (tmp_path / "src.jsonl").write_text("".join(json.dumps({"path": str(p), "caption": f"clip {i}"}) + "\n"
                                                for i, p in enumerate(files)), encoding="utf-8")
    kept = local.manifest[local.manifest.keep]
    threshold = float(np.median(kept.aesthetic))
    (tmp_path / "c.toml").write_text(
        f"workers = 2\n[shots]\nmin_duration_s = 1.0\n[aesthetic]\nscorer = '{scorer}'\nthreshold = {threshold}\n"
        "top_k = 3\nbatch_size = 4\n[output]\nreencode = true\nshort_side = 32\n", encoding="utf-8")
    out = tmp_path / "dataset"
    assert main(["curate", str(tmp_path / "src.jsonl"), "--out", str(out), "--config", str(tmp_path / "c.toml")]) == 0
    printed = capsys.readouterr().out
    assert "motion" in printed and str(out) in printed and "(ray)" in printed
    frame, report = read_manifest(out), read_report(out)
    assert report["timing"]["engine"] == "ray" and report["counts"]["files"] == len(files)
    # the corpus was curated too, and the generated files give the same rows as the single-process run
    assert {Path(p).stem for p in frame.source} >= set(CORPUS_NAMES)
    ours = frame[frame.source.isin(local.manifest.source)].set_index("clip_id").sort_index()
    ref = local.manifest.set_index("clip_id").sort_index()
    assert list(ours.index) == list(ref.index)
    for column in ("start_frame", "end_frame", "crop_x0", "crop_y0", "crop_x1", "crop_y1"):
        assert (ours[column] == ref[column]).all(), column
    for column in ("motion_flow", "motion_diff", "aesthetic"):
        np.testing.assert_allclose(ours[column], ref[column], rtol=1e-6, equal_nan=True, err_msg=column)
    # the threshold and the top-k
    scored = frame[frame.aesthetic.notna()]
    assert (scored[scored.aesthetic < threshold].dropped_by == "aesthetic").all()
    assert (frame[frame.keep].aesthetic >= threshold).all() and report["counts"]["dropped_by"]["aesthetic"] > 0
    assert frame.finetune.sum() == 3 == len(read_manifest(out, which="finetune.parquet"))
    # re-encoded kept clips: cropped, shorter side 32 px
    from clips.io import read_video

    letterbox = frame[frame.source.str.endswith("/letterbox.mp4")].iloc[0]
    if letterbox.keep:
        clip, _ = read_video(out / letterbox.clip_path)
        height, width = clip.shape[1:3]
        assert height == 32 and abs(width / height - 160 / 72) < 0.1  # the 160x72 crop, shorter side 32
    assert all((out / p).is_file() for p in frame[frame.keep].clip_path)
    assert frame[~frame.keep].clip_path.isna().all()
