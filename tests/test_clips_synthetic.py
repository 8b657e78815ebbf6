"""clips.synthetic: deterministic captioned scenes, bundled photos only, and the pixel oracle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from clips.errors import ClipError
from clips.io import read_video, write_video
from clips.synthetic import (
    COLORS,
    DIRECTIONS,
    PALETTE,
    PHOTOS,
    SHAPES,
    available_photos,
    caption_for,
    load_photo,
    make_scene,
    oracle,
)

ATTRIBUTES = ("color", "shape", "direction")


def accuracy(seeds, degrade=None, **size) -> dict[str, float]:
    hits = dict.fromkeys(ATTRIBUTES, 0)
    for seed in seeds:
        clip = make_scene(seed, **size)
        frames = clip.frames if degrade is None else degrade(clip.frames, seed)
        reading = oracle(frames)
        for name in ATTRIBUTES:
            hits[name] += reading[name] == clip.meta[name]
    return {name: count / len(seeds) for name, count in hits.items()}


def test_same_seed_same_scene_and_different_seeds_differ():
    a, b = make_scene(7), make_scene(7)
    assert a.clip_id == b.clip_id and a.caption == b.caption and a.meta == b.meta
    np.testing.assert_array_equal(a.frames, b.frames)
    assert not np.array_equal(a.frames, make_scene(8).frames)


def test_scene_format():
    clip = make_scene(3, frames=9, height=32, width=64, fps=12.5, split="heldout")
    assert clip.frames.shape == (9, 32, 64, 3) and clip.frames.dtype == np.uint8
    assert clip.fps == 12.5 and clip.split == "heldout" and clip.source == "synthetic"
    assert clip.clip_id == "synthetic:heldout:s3:9x32x64"


def test_caption_grammar_matches_meta_and_vocabulary_is_covered():
    seen = {name: set() for name in (*ATTRIBUTES, "photo")}
    for seed in range(300):
        clip = make_scene(seed, frames=1, height=32, width=32)
        meta, clip_caption = clip.meta, clip.caption
        assert clip_caption == caption_for(meta["color"], meta["shape"], meta["direction"], meta["photo"])
        assert clip_caption.startswith(f"a {meta['color']} {meta['shape']} moves {meta['direction']} over a photo of ")
        for name in seen:
            seen[name].add(meta[name])
    assert seen["color"] == set(COLORS) and seen["shape"] == set(SHAPES)
    assert seen["direction"] == set(DIRECTIONS) and seen["photo"] == set(available_photos())


def test_photos_are_bundled_files_not_downloads():
    import skimage

    folder = Path(skimage.__file__).parent / "data"
    assert len(available_photos()) >= 8
    for name in available_photos():
        assert name in PHOTOS and (folder / name).is_file()
        image = load_photo(name)
        assert image.ndim == 3 and image.shape[2] == 3 and image.max() > 50


def test_motion_follows_direction():
    for seed in range(40):
        clip = make_scene(seed)
        (top0, left0), (top1, left1) = clip.meta["path"][0], clip.meta["path"][-1]
        expected = {"left": left1 < left0, "right": left1 > left0, "up": top1 < top0, "down": top1 > top0}
        assert expected[clip.meta["direction"]], clip.meta
        # the shape's colour is really drawn: the palette colour appears in the first frame
        rgb = np.asarray(PALETTE[clip.meta["color"]])
        assert (np.abs(clip.frames[0].astype(int) - rgb).max(axis=-1) <= 2).sum() > 20


def test_bad_scene_arguments():
    with pytest.raises(ClipError):
        make_scene(-1)
    with pytest.raises(ClipError):
        make_scene(0, frames=0)


def test_oracle_clean_scenes_near_perfect():
    acc = accuracy(range(60))
    assert acc == {"color": 1.0, "shape": pytest.approx(1.0, abs=0.02), "direction": 1.0}, acc


def test_oracle_clean_non_square_frames():
    acc = accuracy(range(100, 130), frames=9, height=64, width=96)
    assert min(acc.values()) >= 0.96, acc


def _blur_noise(frames: np.ndarray, seed: int) -> np.ndarray:
    noisy = ndimage.gaussian_filter(frames.astype(np.float32), sigma=(0, 1.0, 1.0, 0))
    noisy += np.random.default_rng(seed).normal(0.0, 10.0, frames.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def test_oracle_mildly_blurred_noisy_scenes():
    acc = accuracy(range(200, 260), degrade=_blur_noise)
    assert acc["color"] >= 0.97 and acc["direction"] >= 0.97 and acc["shape"] >= 0.9, acc


def test_oracle_after_h264_round_trip(tmp_path):
    """Samples can reach the oracle through mp4 files (yuv420p halves chroma).

    x264's output for identical frames was seen to vary between processes (a few code
    values), which once flipped one shape reading in this set; colour and direction must
    survive every time, shape nine times in ten.
    """
    shapes_right = 0
    for seed in range(300, 310):
        clip = make_scene(seed)
        frames, _ = read_video(write_video(tmp_path / "s.mp4", clip.frames, clip.fps))
        reading = oracle(frames)
        assert (reading["color"], reading["direction"]) == (clip.meta["color"], clip.meta["direction"])
        shapes_right += reading["shape"] == clip.meta["shape"]
    assert shapes_right >= 9


def test_oracle_float_input_and_confidences():
    clip = make_scene(11)
    reading = oracle(clip.frames.astype(np.float32) / 255.0)
    assert [reading[a] for a in ATTRIBUTES] == [clip.meta[a] for a in ATTRIBUTES]
    for key in ("color_confidence", "shape_confidence", "direction_confidence", "confidence"):
        assert 0.0 <= reading[key] <= 1.0
    assert reading["confidence"] > 0.3 and reading["frames_used"] == 17


@pytest.mark.parametrize(
    "frames",
    [
        np.zeros((9, 32, 32, 3), np.uint8),  # nothing moves: empty mask
        np.zeros((1, 32, 32, 3), np.uint8),  # one frame
        np.zeros((0, 32, 32, 3), np.uint8),  # no frames
        np.zeros((9, 32, 32), np.uint8),  # wrong layout
        np.full((9, 32, 32, 3), 0.5, np.float32),
    ],
)
def test_oracle_unreadable_returns_none_fields(frames):
    reading = oracle(frames)
    assert reading["color"] is None and reading["shape"] is None and reading["direction"] is None
    assert reading["confidence"] == 0.0 and reading["reason"]


def test_oracle_on_pure_noise_does_not_crash():
    noise = np.random.default_rng(0).integers(0, 256, (9, 32, 32, 3), dtype=np.uint8)
    reading = oracle(noise)
    assert set(ATTRIBUTES) <= set(reading)
    assert reading["color"] in (*COLORS, None) and reading["shape"] in (*SHAPES, None)
    assert reading["direction"] in (*DIRECTIONS, None)


def test_static_shape_has_no_confident_direction():
    clip = make_scene(5)
    still = np.repeat(clip.frames[:1], 9, axis=0)
    reading = oracle(still)  # no motion at all: the shape is the background
    assert reading["direction"] is None or reading["direction_confidence"] < 0.3
