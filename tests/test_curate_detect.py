"""clips.curate detectors on generated videos with a known answer (clips.curate.synthetic).

Probe: every broken kind gets its own reason; real bundled videos probe OK. Shots: hard cuts
within 1 frame; clip splitting exactly. Bars: crop box within 2 px for letterbox, pillarbox
and both, no crop for full-frame and dark scenes. Motion: static and moving clips separated
with a margin.
"""

from __future__ import annotations

import ast
import inspect
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from clips.curate import bars, motion, probe, shots, synthetic
from clips.curate.bars import BarsConfig, detect_bars, detect_bars_file
from clips.curate.motion import MotionConfig, is_static, motion_scores, motion_scores_file
from clips.curate.probe import REASONS, ProbeConfig, ProbeError, probe_many, read_frames
from clips.curate.shots import (ShotConfig, find_cuts, find_cuts_file, shot_clips_file,
                                shots_from_cuts, split_shots)
from clips.errors import ClipError
from clips.io import read_video, write_video

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def bar_videos(tmp_path_factory):
    return {v.kind: v for v in synthetic.bars_set(tmp_path_factory.mktemp("bars"), seed=3)}


@pytest.fixture(scope="module")
def motion_videos(tmp_path_factory):
    return synthetic.motion_set(tmp_path_factory.mktemp("motion"), count=10, seed=5)


@pytest.fixture(scope="module")
def cut_videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cuts")
    rng = np.random.default_rng(11)
    videos = []
    for i in range(5):
        lengths = tuple(int(n) for n in rng.integers(16, 30, size=3))
        videos.append(synthetic.write_cut_video(folder / f"cuts_{i}.mp4", shot_lengths=lengths,
                                                seed=100 + i))
    return videos


@pytest.fixture(scope="module")
def broken_files(tmp_path_factory):
    return synthetic.broken_set(tmp_path_factory.mktemp("broken"), seed=2)


def _corpus_paths():
    from clips.corpus import CORPUS_NAMES, DISTORTED_NAME, video_path

    try:
        return {name: video_path(name) for name in (*CORPUS_NAMES, DISTORTED_NAME)}
    except ClipError as exc:
        pytest.skip(f"bundled corpus unavailable: {exc}")


# ----------------------------------------------------------------------------- probe


EXPECTED_REASON = {"empty": "empty", "truncated": "truncated", "not_video": "not_video",
                   "image": "image", "no_video_stream": "no_video_stream"}


def test_broken_kinds_each_get_their_own_reason(broken_files):
    assert {b.kind for b in broken_files} == set(synthetic.BROKEN_KINDS)
    ok, failed = probe_many([b.path for b in broken_files])
    assert ok == []
    assert [f.path for f in failed] == [b.path for b in broken_files]  # input order kept
    for b, f in zip(broken_files, failed):
        assert f.reason == EXPECTED_REASON[b.kind], (b.kind, f.message)
        assert f.reason in REASONS
        assert str(b.path) in f.message and f.message.endswith(".")
    assert len({f.message.replace(str(f.path), "") for f in failed}) == len(failed)


def test_probe_raises_probe_error_which_is_a_clip_error(broken_files):
    import pickle

    for b in broken_files:
        with pytest.raises(ProbeError) as info:
            probe.probe(b.path)
        assert isinstance(info.value, ClipError) and info.value.reason == EXPECTED_REASON[b.kind]
        back = pickle.loads(pickle.dumps(info.value))  # as Ray would ship it
        assert (back.path, back.reason, str(back)) == (b.path, info.value.reason, str(info.value))


@pytest.mark.parametrize("check_boxes", [True, False], ids=["box-walk", "ffmpeg-only"])
def test_truncation_anywhere_is_truncated(tmp_path, check_boxes):
    """Both lines of defence: the mp4 box walk, and (without it) FFmpeg's tail packets."""
    cfg = ProbeConfig(check_boxes=check_boxes)
    good = synthetic.write_motion_video(tmp_path / "good.mp4", speed=2.0, frames=36, seed=1)
    data = good.path.read_bytes()
    import av

    with av.open(str(good.path)) as container:
        packets = [(p.pos, p.size) for p in container.demux(container.streams.video[0]) if p.size]
    cuts = {"header": 300, "10%": len(data) // 10, "half": len(data) // 2,
            "90%": len(data) * 9 // 10, "last byte": len(data) - 1,
            "last packet exactly": packets[-1][0]}
    for name, size in cuts.items():
        cut = tmp_path / f"cut_{name.replace(' ', '_').replace('%', '')}.mp4"
        cut.write_bytes(data[:size])
        with pytest.raises(ProbeError) as info:
            probe.probe(cut, cfg)
        assert info.value.reason == "truncated", (name, str(info.value))
    assert probe.probe(good.path, cfg).frames == 36


def test_moov_at_end_mp4_truncated_is_truncated_not_not_video(tmp_path):
    import av

    frames = synthetic.moving_frames(np.random.default_rng(0), 12, 64, 96, speed=1.0)
    path = tmp_path / "late_moov.mp4"
    with av.open(str(path), mode="w", format="mp4") as container:  # no faststart
        stream = container.add_stream("libx264", rate=24)
        stream.height, stream.width, stream.pix_fmt = 64, 96, "yuv420p"
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    data = path.read_bytes()
    assert data.find(b"moov") > data.find(b"mdat")
    assert probe.probe(path).frames == 12
    path.write_bytes(data[: len(data) * 3 // 4])
    with pytest.raises(ProbeError) as info:
        probe.probe(path)
    assert info.value.reason == "truncated"


def test_probe_missing_folder_fifo_and_garbage_never_raise_anything_else(tmp_path):
    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)  # opening a FIFO for reading would block: must be refused before FFmpeg
    rng = np.random.default_rng(0)
    garbage = tmp_path / "random.mp4"
    garbage.write_bytes(rng.integers(0, 256, 5000, dtype=np.uint8).tobytes())
    fake_ftyp = tmp_path / "fake_ftyp.mp4"
    fake_ftyp.write_bytes(b"\x00\x00\x00\x18ftypisom" + rng.integers(0, 256, 3000, dtype=np.uint8).tobytes())
    cases = {tmp_path / "nope.mp4": "missing", tmp_path: "not_a_file", fifo: "not_a_file",
             fake_ftyp: "truncated"}
    for path, reason in cases.items():
        with pytest.raises(ProbeError) as info:
            probe.probe(path)
        assert info.value.reason == reason, (path, str(info.value))
    with pytest.raises(ProbeError) as info:  # random bytes: whatever FFmpeg makes of them
        probe.probe(garbage)
    assert info.value.reason in REASONS


def test_probe_fields_of_a_generated_video(tmp_path):
    v = synthetic.write_motion_video(tmp_path / "m.mp4", speed=1.0, frames=30, fps=30000 / 1001)
    p = probe.probe(v.path)
    assert (p.width, p.height, p.frames, p.codec) == (160, 96, 30, "h264")
    assert p.fps == pytest.approx(30000 / 1001, abs=1e-9)
    assert p.duration_s == pytest.approx(30 / (30000 / 1001), abs=1e-3)
    assert p.size_bytes == v.path.stat().st_size


def test_bundled_videos_probe_ok():
    paths = _corpus_paths()
    ok, failed = probe_many(paths.values())
    assert failed == []
    by_name = {p.path.stem: p for p in ok}
    assert (by_name["bigbuckbunny"].width, by_name["bigbuckbunny"].height) == (1280, 720)
    assert (by_name["bikes"].width, by_name["bikes"].height) == (640, 272)
    assert by_name["carphone_pristine"].fps == pytest.approx(30000 / 1001)
    frames, _ = read_video(paths["carphone_pristine"], short_side=16)  # decoded count agrees
    assert by_name["carphone_pristine"].frames == len(frames)


def test_read_frames_ranges_and_indices_match_a_full_decode(tmp_path):
    v = synthetic.write_motion_video(tmp_path / "m.mp4", speed=2.0, frames=40, seed=4)
    full, _ = read_video(v.path)
    np.testing.assert_array_equal(read_frames(v.path), full)
    np.testing.assert_array_equal(read_frames(v.path, start=7, end=19), full[7:19])
    np.testing.assert_array_equal(read_frames(v.path, start=33), full[33:])
    np.testing.assert_array_equal(read_frames(v.path, indices=[31, 2, 17, 2]), full[[2, 17, 31]])
    assert read_frames(v.path, width=80).shape == (40, 48, 80, 3)
    with pytest.raises(ClipError):
        read_frames(v.path, start=50)


def _stamped_video(path: Path, times_ms: list[int], *, fmt: str = "mp4", gop: int = 12, cut: int | None = None,
                   size: tuple[int, int] = (32, 32)) -> Path:
    """A tiny H.264 file whose frame i (shown at times_ms[i]) has grey level 4*i on its top half
    (its number, readable from pixels) and, from frame `cut` on, a white bottom half (a hard cut)."""
    import av
    from fractions import Fraction

    h, w = size
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        stream.options = {"g": str(gop), "crf": "1"}
        for i, t in enumerate(times_ms):
            img = np.zeros((h, w, 3), np.uint8)
            img[: h // 2] = 4 * i
            if cut is not None and i >= cut:
                img[h // 2:] = 255
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = t, Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def _numbers(frames: np.ndarray) -> list[int]:
    return [int(round(float(f[2:6, 2:6].mean()) / 4)) for f in frames]


def test_variable_frame_rate_is_numbered_alike_by_probe_shots_and_every_read(tmp_path):
    # 10 fps for 20 frames, then 50 fps: the cut (frame 30) is at 2.2 s of 2.62 s
    times = [100 * i for i in range(20)] + [2000 + 20 * i for i in range(30)]
    path = _stamped_video(tmp_path / "vfr.mp4", times, cut=30)
    full = read_frames(path)
    info = probe.probe(path)
    cuts, decoded = find_cuts_file(path, ShotConfig(min_scene_len=3))
    assert info.frames == decoded == len(full)  # one numbering: probe, the shot scan, a full read
    first_cut_frame = next(i for i, f in enumerate(full) if f[-4, 4, 0] > 128)
    assert cuts == [first_cut_frame]  # the cut's number is the frame read_frames gives under it
    # the grid is the average rate: frame n is the latest source frame starting by (n + 1/2) / fps
    shown = [max(i for i, t in enumerate(times) if t <= 1000 * (n + 0.5) / info.fps) for n in range(len(full))]
    assert _numbers(full) == shown
    for start in range(1, len(full) - 4, 3):  # a seek lands where reading from frame 0 does
        np.testing.assert_array_equal(read_frames(path, start=start, end=start + 4), full[start:start + 4])
    np.testing.assert_array_equal(read_frames(path, indices=[33, 5]), full[[5, 33]])


def test_mpeg_ts_seeks_that_land_late_are_redone(tmp_path):
    path = _stamped_video(tmp_path / "cam.ts", [40 * i for i in range(60)], fmt="mpegts", gop=10, size=(64, 64))
    full = read_frames(path)
    assert _numbers(full) == list(range(60))
    for start in range(1, 56, 3):  # MPEG-TS seeks by byte estimate and overshoots some of these
        assert _numbers(read_frames(path, start=start, end=start + 4)) == list(range(start, start + 4))


def test_rotation_metadata_is_honoured(tmp_path):
    import struct

    frames = np.zeros((6, 32, 64, 3), np.uint8)
    frames[:, :, :32] = (255, 0, 0)  # the stored (landscape) frame's left half is red
    path = tmp_path / "phone.mp4"
    write_video(path, frames, 24.0)
    data = bytearray(path.read_bytes())
    tkhd = data.find(b"tkhd")  # version 0: 4 flags, 5 x 4 times/ids, 8 reserved, 4 x 2 layer..volume
    offset = tkhd + 4 + 4 + 20 + 8 + 8
    data[offset:offset + 36] = struct.pack(">9i", 0, 65536, 0, -65536, 0, 0, 32 << 16, 0, 1 << 30)  # 90 deg, as phones write
    path.write_bytes(bytes(data))
    info = probe.probe(path)
    assert (info.width, info.height, info.rotation) == (32, 64, 3)  # portrait, as players show it
    video, _ = read_video(path)
    assert video.shape == (6, 64, 32, 3)
    assert video[0, 8, 16, 0] > 200 and video[0, 56, 16, 0] < 50  # turned clockwise: the red half is on top
    np.testing.assert_array_equal(read_frames(path, start=2, end=4), video[2:4])
    assert read_frames(path, start=1, end=2, width=16).shape == (1, 32, 16, 3)
    assert read_video(path, short_side=16)[0].shape == (6, 32, 16, 3)


# ----------------------------------------------------------------------------- shots


def test_hard_cuts_found_within_one_frame(cut_videos):
    worst = 0
    for v in cut_videos:
        cuts, decoded = find_cuts_file(v.path)
        assert decoded == v.frames
        assert len(cuts) == len(v.cuts), (v.path.name, cuts, v.cuts)
        worst = max(worst, *(abs(a - b) for a, b in zip(cuts, v.cuts)))
    assert worst <= 1


def test_frame_array_variant_agrees_with_the_file_variant(cut_videos):
    for v in cut_videos[:2]:
        frames, fps = read_video(v.path)
        assert find_cuts(frames, fps) == find_cuts_file(v.path)[0]


def test_one_shot_has_no_cut_and_threshold_is_a_real_knob(tmp_path, cut_videos):
    still_shot = synthetic.write_motion_video(tmp_path / "one.mp4", speed=1.0, frames=48, seed=9)
    assert find_cuts_file(still_shot.path)[0] == []
    # an impossible threshold (scores are at most 255) finds nothing on the cut video
    assert find_cuts_file(cut_videos[0].path, ShotConfig(threshold=300.0))[0] == []


def test_cuts_on_pristine_frames_are_exact():
    rng = np.random.default_rng(1)
    frames, truth = synthetic.cut_frames(rng, (20, 17, 25, 18), 96, 160)
    assert find_cuts(frames, 24.0) == list(truth)


def test_split_shots_chops_long_and_drops_short():
    cfg = ShotConfig(min_duration_s=2.0, max_duration_s=10.0)
    shots_ = shots_from_cuts([100, 130, 145], 415)
    assert shots_ == [(0, 100), (100, 130), (130, 145), (145, 415)]
    # at 10 fps: 100 frames = exactly 10 s; 30 = 3 s kept; 15 = 1.5 s dropped;
    # 270 = two 10 s pieces + a 7 s remainder
    assert split_shots(shots_, 10.0, cfg) == [(0, 100), (100, 130), (145, 245), (245, 345), (345, 415)]
    trimmed = split_shots([(0, 50)], 10.0, ShotConfig(min_duration_s=2.0, max_duration_s=10.0,
                                                      trim_frames=2))
    assert trimmed == [(2, 48)]
    assert split_shots([(0, 19)], 10.0, cfg) == []  # 1.9 s < 2 s
    with pytest.raises(ClipError):
        ShotConfig(min_duration_s=5.0, max_duration_s=2.0)


def test_shot_clips_file_end_to_end(cut_videos):
    v = cut_videos[0]
    cfg = ShotConfig(min_duration_s=0.75, max_duration_s=1.0)  # 18 .. 24 frames at 24 fps
    clips_ = shot_clips_file(v.path, cfg)
    expected = split_shots(shots_from_cuts(list(v.cuts), v.frames), v.fps, cfg)
    assert clips_ == expected and clips_
    assert all(18 <= b - a <= 24 for a, b in clips_)


# ----------------------------------------------------------------------------- bars


BAR_CASES = ("letterbox", "letterbox_odd", "pillarbox", "pillarbox_odd", "both", "both_still",
             "letterbox_stripe", "dark_letterbox")
NO_BAR_CASES = ("full", "dark", "dark_still")


@pytest.mark.parametrize("kind", BAR_CASES)
def test_crop_box_within_2px(bar_videos, kind):
    v = bar_videos[kind]
    box = detect_bars_file(v.path, frames=v.frames)
    error = max(abs(a - b) for a, b in zip(box.box, v.crop))
    assert box.cropped and not box.all_black
    assert error <= 2, (kind, box.box, v.crop)
    # rounding inward keeps the box inside the picture: no black line survives the crop
    assert box.x0 >= v.crop[0] and box.y0 >= v.crop[1]
    assert box.x1 <= v.crop[2] and box.y1 <= v.crop[3]
    assert box.width % 2 == 0 and box.height % 2 == 0


@pytest.mark.parametrize("kind", NO_BAR_CASES)
def test_no_crop_for_full_frame_and_dark_scenes(bar_videos, kind):
    v = bar_videos[kind]
    box = detect_bars_file(v.path)
    assert box.box == (0, 0, v.width, v.height) and not box.cropped and not box.all_black


def test_exact_box_on_pristine_frames_and_bars_property():
    rng = np.random.default_rng(0)
    content = synthetic.moving_frames(rng, 8, 61, 117, speed=1.0)
    frames = synthetic.add_bars(content, 13, 22, 19, 24)  # (8, 96, 160, 3)
    box = detect_bars(frames, BarsConfig(round_to=1))
    assert box.box == (19, 13, 160 - 24, 96 - 22)
    assert box.bars == (13, 22, 19, 24)


def test_subtitles_and_logos_in_a_bar_keep_it_and_a_dark_sky_is_not_a_bar():
    rng = np.random.default_rng(0)
    letterbox = rng.integers(60, 200, (16, 96, 128, 3), dtype=np.uint8)
    letterbox[:, :16] = letterbox[:, -16:] = 0
    subtitles = letterbox.copy()
    subtitles[::4, -12:-4, 30:98] = 235  # burned into the bottom bar in 4 of 16 frames
    logo = letterbox.copy()
    logo[:, 2:12, 110:124] = 200  # a channel logo in the top bar, every frame
    for frames in (letterbox, subtitles, logo):
        assert detect_bars(frames).bars == (16, 16, 0, 0)
    night = rng.integers(0, 60, (16, 96, 128, 3), dtype=np.uint8)
    night[:, :34] = rng.integers(0, 6, (16, 34, 128, 3))  # a black sky over the top third, no bars
    assert not detect_bars(night).cropped
    assert detect_bars(night, BarsConfig(max_asymmetry=1.0)).bars[0] >= 32  # the symmetry rule is what keeps it


def test_all_black_and_the_min_content_guard():
    black = np.zeros((4, 96, 160, 3), np.uint8)
    box = detect_bars(black)
    assert box.all_black and not box.cropped
    rng = np.random.default_rng(0)
    sliver = synthetic.add_bars(synthetic.moving_frames(rng, 4, 12, 160, speed=1.0), 42, 42, 0, 0)
    assert not detect_bars(sliver).cropped  # 12 of 96 rows (< 25%) left: not cropped
    assert detect_bars(sliver, BarsConfig(min_content_fraction=0.1)).box == (0, 42, 160, 54)


def test_bundled_videos_have_no_bars():
    for name, path in _corpus_paths().items():
        if name != "bigbuckbunny":  # 1280x720: decoding 16 full frames is the slow part
            assert not detect_bars_file(path, BarsConfig(samples=8)).cropped, name


# ----------------------------------------------------------------------------- motion


def test_static_and_moving_separated_with_a_margin(motion_videos):
    cfg = MotionConfig()
    scores = [(v, motion_scores_file(v.path, cfg)) for v in motion_videos]
    static = [s.flow for v, s in scores if not v.moving]
    moving = [s.flow for v, s in scores if v.moving]
    assert len(static) == len(moving) == 10
    for v, s in scores:
        assert is_static(s, cfg) == (not v.moving), (v.path.name, v.speed, s)
    assert max(static) < cfg.static_flow < min(moving)
    assert min(moving) / max(static) > 3.0  # a real margin, not a lucky threshold
    # flow is calibrated: px/s at cfg.width, i.e. speed (px/frame) * fps * width / 160, within -50% / +20%
    for v, s in scores:
        if v.moving:
            expected = v.speed * v.fps * cfg.width / v.width
            assert 0.5 * expected <= s.flow <= 1.2 * expected, (v.path.name, s.flow, expected)


def test_motion_file_variant_matches_array_variant_and_clip_ranges(motion_videos):
    v = next(v for v in motion_videos if v.moving and v.speed > 2)
    frames, fps = read_video(v.path)
    whole = motion_scores_file(v.path)
    assert whole.flow == pytest.approx(motion_scores(frames, fps).flow, rel=0.05)
    part = motion_scores_file(v.path, start=5, end=17)
    assert part.pairs == 10  # starts 0..9 with stride 2 (1/12 s at 24 fps) inside a 12-frame clip
    assert part.flow == pytest.approx(motion_scores(frames[5:17], fps).flow, rel=0.05)
    with pytest.raises(ClipError):
        motion_scores(frames[:2], fps)  # stride 2 needs at least 3 frames


def test_the_same_motion_scores_the_same_at_any_frame_rate():
    rng = np.random.default_rng(3)
    scene = synthetic.texture(rng, 96, 600)  # a camera pan at 20 source px/s over a textured scene
    def pan(fps):
        shifts = [int(round(20 * i / fps)) for i in range(int(2 * fps))]
        return np.stack([scene[:, x:x + 160] for x in shifts]).astype(np.uint8)
    cfg = MotionConfig()
    at24, at60 = motion_scores(pan(24.0), 24.0, cfg), motion_scores(pan(60.0), 60.0, cfg)
    assert at24.flow == pytest.approx(at60.flow, rel=0.25)  # px/frame differ 2.5x; px/s agree
    assert is_static(at24, cfg) == is_static(at60, cfg) is False


def test_frozen_frames_are_static_by_difference():
    rng = np.random.default_rng(0)
    frame = synthetic.moving_frames(rng, 1, 96, 160, speed=0.0)
    scores = motion_scores(np.repeat(frame, 10, axis=0), 24.0)
    assert scores.diff == 0.0 and scores.flow < 0.012 and is_static(scores)  # 0.001 px/frame at 24 fps


# ----------------------------------------------------------------------------- generators and configs


def test_generators_are_deterministic_from_the_seed():
    a = synthetic.cut_frames(np.random.default_rng(3), (5, 6), 32, 48)
    b = synthetic.cut_frames(np.random.default_rng(3), (5, 6), 32, 48)
    c = synthetic.cut_frames(np.random.default_rng(4), (5, 6), 32, 48)
    np.testing.assert_array_equal(a[0], b[0])
    assert a[1] == b[1] == (5,)
    assert not np.array_equal(a[0], c[0])


@pytest.mark.parametrize("module, name", [(probe, "ProbeConfig"), (shots, "ShotConfig"),
                                          (bars, "BarsConfig"), (motion, "MotionConfig")])
def test_configs_are_frozen_and_every_field_has_a_comment(module, name):
    import dataclasses

    cls = getattr(module, name)
    assert cls.__dataclass_params__.frozen
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(cls(), dataclasses.fields(cls)[0].name, None)
    source = inspect.getsource(module).splitlines()
    node = next(n for n in ast.walk(ast.parse("\n".join(source)))
                if isinstance(n, ast.ClassDef) and n.name == name)
    for statement in node.body:
        if isinstance(statement, ast.AnnAssign):
            line = source[statement.lineno - 1]
            above = source[statement.lineno - 2].strip()
            assert "#" in line or above.startswith("#"), f"{name}.{statement.target.id} has no comment"


def test_curate_imports_nothing_of_the_house_but_clips():
    code = ("import sys, clips.curate.probe, clips.curate.shots, clips.curate.bars, "
            "clips.curate.motion, clips.curate.synthetic\n"
            "bad = [m for m in sys.modules if m.split('.')[0] in "
            "('models', 'ablations', 'evaluation', 'survey', 'dashboard', 'torch', 'ray')]\n"
            "print(bad)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


def test_writers_refuse_impossible_bars(tmp_path):
    with pytest.raises(ValueError):
        synthetic.write_bars_video(tmp_path / "x.mp4", bars=(50, 50, 0, 0))
    with pytest.raises(ValueError):
        synthetic.write_broken(tmp_path / "y.mp4", "nonsense")  # type: ignore[arg-type]
