"""clips.io: decode/encode round trip, exact frame rates, faststart, atomic writes, bad files."""

from __future__ import annotations

import os
from fractions import Fraction

import av
import numpy as np
import pytest
import torch

from clips.errors import ClipError
from clips.io import exact_rate, from_model, read_video, resized_hw, to_model, write_video


def smooth_video(t: int = 9, h: int = 64, w: int = 96) -> np.ndarray:
    """uint8 (T, H, W, 3) with slowly varying sinusoids: what a codec should keep well."""
    tt = np.arange(t)[:, None, None]
    yy = np.arange(h)[None, :, None]
    xx = np.arange(w)[None, None, :]
    r = 128 + 60 * np.sin((xx + 2 * tt) / 10.0) + 0 * yy
    g = 128 + 60 * np.cos((yy + tt) / 12.0) + 0 * xx
    b = 100 + 50 * np.sin((xx + yy + 3 * tt) / 15.0)
    return np.stack([r, g, b], axis=-1).astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse))


@pytest.mark.parametrize("fps", [25.0, 29.97, 30000 / 1001, Fraction(24000, 1001)])
def test_round_trip_shape_fps_psnr(tmp_path, fps):
    frames = smooth_video()
    path = write_video(tmp_path / "sub" / "clip.mp4", frames, fps)
    back, back_fps = read_video(path)
    assert back.shape == frames.shape and back.dtype == np.uint8
    assert back_fps == pytest.approx(float(exact_rate(fps)), abs=1e-9)
    assert psnr(back, frames) > 35.0


def test_ntsc_rate_is_exact_fraction_in_container(tmp_path):
    path = write_video(tmp_path / "ntsc.mp4", smooth_video(t=3), 29.97)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.average_rate == Fraction(30000, 1001)
        assert stream.codec_context.pix_fmt == "yuv420p"
        assert stream.codec_context.name == "h264"


def test_faststart_moov_before_mdat(tmp_path):
    data = (write_video(tmp_path / "fs.mp4", smooth_video(t=5), 25)).read_bytes()
    assert 0 <= data.find(b"moov") < data.find(b"mdat")


def test_float_input_and_odd_sizes(tmp_path):
    frames = smooth_video(t=3, h=33, w=47).astype(np.float32) / 255.0
    back, _ = read_video(write_video(tmp_path / "odd.mp4", frames, 25))
    assert back.shape == (3, 34, 48, 3)  # padded to even by one replicated row/column
    assert psnr(back[:, :33, :47], (frames * 255).round().astype(np.uint8)) > 35.0


def test_atomic_write_leaves_no_temp_and_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "keep.mp4"
    write_video(target, smooth_video(t=3), 25)
    before = target.read_bytes()
    with pytest.raises(ValueError):
        write_video(target, np.zeros((3, 8, 8), np.uint8), 25)  # bad shape
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.mp4"]


def test_max_frames_and_resize_on_decode(tmp_path):
    path = write_video(tmp_path / "m.mp4", smooth_video(t=9), 25)
    frames, _ = read_video(path, max_frames=4)
    assert frames.shape == (4, 64, 96, 3)
    small, _ = read_video(path, short_side=32)
    assert small.shape == (9, 32, 48, 3)  # aspect kept: 64x96 -> 32x48
    assert psnr(small, smooth_video()[:, ::2, ::2]) > 25.0  # still the same picture


def test_missing_file(tmp_path):
    with pytest.raises(ClipError, match="does not exist") as info:
        read_video(tmp_path / "nope.mp4")
    assert "nope.mp4" in str(info.value)


def test_empty_file(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(ClipError, match="empty"):
        read_video(tmp_path / "empty.mp4")


def test_garbage_bytes(tmp_path):
    bad = tmp_path / "garbage.mp4"
    bad.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ClipError, match="garbage.mp4.*could not be decoded"):
        read_video(bad)


def test_truncated_file(tmp_path):
    data = write_video(tmp_path / "full.mp4", smooth_video(), 25).read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 3])
    with pytest.raises(ClipError, match="cut.mp4"):
        read_video(cut)


def test_to_model_from_model_round_trip():
    frames = np.random.default_rng(1).integers(0, 256, (5, 4, 6, 3), dtype=np.uint8)
    x = to_model(frames)
    assert x.shape == (3, 5, 4, 6) and x.dtype == torch.float32
    assert x.min() >= -1.0 and x.max() <= 1.0
    assert float(x[0, 0, 0, 0]) == pytest.approx(frames[0, 0, 0, 0] / 127.5 - 1.0)
    np.testing.assert_array_equal(from_model(x), frames)


def test_from_model_clamps_and_rounds():
    x = torch.tensor([-3.0, 3.0, 0.0, 0.999]).view(1, 4, 1, 1).expand(3, 4, 1, 1)
    out = from_model(x)
    assert out.shape == (4, 1, 1, 3)
    assert out[:, 0, 0, 0].tolist() == [0, 255, 128, 255]


def test_resized_hw():
    assert resized_hw(720, 1280, 64) == (64, 114)
    assert resized_hw(272, 640, 64) == (64, 151)
    assert resized_hw(100, 100, 64) == (64, 64)


def test_io_import_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, clips.io; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_exact_rate():
    assert exact_rate(29.97) == Fraction(30000, 1001)
    assert exact_rate(23.976) == Fraction(24000, 1001)
    assert exact_rate(25.0) == 25
    assert exact_rate(12.5) == Fraction(25, 2)
    with pytest.raises(ClipError):
        exact_rate(0.0)


def test_written_video_has_the_umask_mode_not_mkstemp_0600(tmp_path):
    import os
    import stat

    import numpy as np

    from clips.io import write_video

    umask = os.umask(0o022)
    try:
        path = write_video(tmp_path / "m.mp4", np.zeros((3, 32, 32, 3), np.uint8), 24.0)
    finally:
        os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
