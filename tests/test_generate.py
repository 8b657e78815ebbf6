"""`ltxlab generate` and the pipeline under it (issue 16), on tiny trained models on CPU.

Behaviour only: the CLI writes the video it says at any shape with a timing breakdown; the
pipeline is the `sample` stage's (same video from the same seed); chunked decoding equals
the full decode; CFG as one batch-2 forward equals two separate forwards; bad inputs are one
sentence each before anything loads. Speed targets live in benchmarks/generate_speed.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ablations import cli
from ablations.stages.sample import SampleConfig, generate, write_png
from ablations.stages.speed import prepare, timed_generate
from ablations.stages.train_dit import load_dit
from ablations.stages.train_vae import load_vae
from clips.io import read_video
from models.dit import dit_config
from models.flow import guided_velocity
from models.vae import vae_config
from models.vae.tiling import decode_chunked, temporal_receptive_radius
from tests._generate_util import tiny_pair


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """(vae folder, dit folder): a tiny ltx VAE and DiT trained for two steps each, through the real stages."""
    return tiny_pair(tmp_path_factory)


def test_cli_generates_any_shape_and_prints_the_breakdown(trained, tmp_path, capsys):
    vae_dir, dit_dir = trained
    out = tmp_path / "t2v.mp4"
    code = cli.main(["generate", "--dit", str(dit_dir), "--vae", str(vae_dir), "--prompt", "a red circle moves left",
                     "--shape", "17x64x96", "--steps", "3", "--cfg", "3", "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    video, _ = read_video(out)
    assert video.shape[:3] == (17, 64, 96)  # not the 9x32x32 it was trained on
    for line in ("text encoding", "DiT step   1", "DiT step   3", "VAE decode", "wall", "process peak RSS",
                 "measured on"):
        assert line in printed, (line, printed)
    assert "DiT step   4" not in printed


def test_cli_image_to_video_with_a_chunked_decode(trained, tmp_path, capsys):
    vae_dir, dit_dir = trained
    image = (np.random.default_rng(0).random((40, 40, 3)) * 255).astype(np.uint8)  # resized to the shape
    write_png(tmp_path / "first.png", image)
    out = tmp_path / "i2v.mp4"
    code = cli.main(["generate", "--dit", str(dit_dir), "--prompt", "a blue square", "--shape", "25x32x32",
                     "--steps", "2", "--image", str(tmp_path / "first.png"), "--decode-chunk", "1", "--out", str(out)])
    assert code == 0 and read_video(out)[0].shape[:3] == (25, 32, 32)
    assert "image-to-video" in capsys.readouterr().out


def test_pipeline_is_the_sample_stage_s(trained):
    """At the trained shape, timed_generate gives exactly the video `sample`'s generate gives for the same seed."""
    vae_dir, dit_dir = trained
    dit, vae = load_dit(dit_dir, torch.device("cpu")), load_vae(vae_dir, torch.device("cpu"))
    prepare(dit, vae, torch.device("cpu"), torch.float32)
    ours, timing = timed_generate(dit, vae, dit.text.build(), "a green triangle", tuple(dit.video_shape), steps=3,
                                  guidance_scale=2.5, seed=7)
    stage = generate(vae, dit, ["a green triangle"], SampleConfig(steps=3, guidance_scale=2.5, seed=7))[0]
    np.testing.assert_array_equal(ours, stage)
    assert len(timing.step_s) == 3 and timing.wall_s >= timing.text_s + sum(timing.step_s) + timing.decode_s - 1e-6


def test_chunked_decode_equals_the_full_decode():
    torch.manual_seed(0)
    vae = vae_config("ltx", "tiny").build().eval()
    with torch.no_grad():
        for name, p in vae.named_parameters():
            if "noise_scale" in name:  # zero-initialised: make the injected noise matter
                p.normal_()
        z = torch.randn(1, vae.latent_channels, 6, 2, 2)
        timestep = torch.tensor([0.05])
        full = vae.decode(z, timestep, torch.Generator().manual_seed(3))
        for chunk in (1, 2, 4):
            chunked = decode_chunked(vae, z, timestep, torch.Generator().manual_seed(3), chunk_frames=chunk)
            torch.testing.assert_close(chunked, full, rtol=0, atol=1e-5)
        # the overlap is what makes it exact: one frame of context is not enough for this decoder
        assert temporal_receptive_radius(vae.decoder) > 1
        short = decode_chunked(vae, z, timestep, torch.Generator().manual_seed(3), chunk_frames=2, context=1)
        assert (short - full).abs().max() > 1e-3


def test_cfg_as_one_batch_equals_two_forwards():
    torch.manual_seed(0)
    model = dit_config("ltx", "tiny").build().eval()
    x = torch.randn(1, 128, 2, 2, 2)
    t = torch.tensor([0.6])
    text, null = torch.randn(1, 16, 384), torch.randn(1, 16, 384)
    mask = torch.ones(1, 16, dtype=torch.bool)
    mask[:, 9:] = False
    null_mask = torch.zeros(1, 16, dtype=torch.bool)
    null_mask[:, 0] = True
    with torch.no_grad():
        calls = []
        hook = model.register_forward_hook(lambda m, args, out: calls.append(args[0].shape[0]))
        batched = guided_velocity(model, x, t, text, mask, null, null_mask, 24.0, 3.0)
        hook.remove()
        v_text, v_null = model(x, t, text, mask, 24.0), model(x, t, null, null_mask, 24.0)
    assert calls == [2]  # one forward of batch 2
    torch.testing.assert_close(batched, v_null + 3.0 * (v_text - v_null), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("args, sentence", [
    (["--dit", "{tmp}/nowhere"], "no checkpoint file {tmp}/nowhere/dit.safetensors"),
    (["--vae", "{tmp}/novae"], "no checkpoint file {tmp}/novae/vae.safetensors"),
    (["--shape", "16x64x64"], "16 frames do not fit a 8x causal VAE; use 1 + k*8"),
    (["--shape", "17x60x64"], "60x64 is not a multiple of the VAE's 32x spatial compression"),
    (["--shape", "17by64"], "must be FRAMESxHEIGHTxWIDTH"),
    (["--image", "{tmp}/missing.png"], "--image {tmp}/missing.png does not exist"),
    (["--steps", "0"], "--steps must be at least 1"),
])
def test_bad_inputs_are_one_sentence_before_loading(trained, tmp_path, capsys, monkeypatch, args, sentence):
    vae_dir, dit_dir = trained
    import ablations.stages.train_dit as train_dit_module

    monkeypatch.setattr(train_dit_module, "load_dit", lambda *a, **k: pytest.fail("loaded weights before checking"))
    base = {"--dit": str(dit_dir), "--prompt": "x", "--out": str(tmp_path / "o.mp4")}
    given = dict(zip(args[::2], (a.format(tmp=tmp_path) for a in args[1::2])))
    argv = ["generate"] + [item for pair in {**base, **given}.items() for item in pair]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert sentence.format(tmp=tmp_path) in err and err.count("\n") == 0, err
    assert not (tmp_path / "o.mp4").exists()


def test_inference_buffers_never_leak_between_forwards():
    """Without autograd the DiT reuses workspace buffers and updates its own temporaries in place;
    a forward's output must survive the next forward and equal the autograd path's."""
    torch.manual_seed(0)
    model = dit_config("ltx", "tiny").build().eval()
    inputs = [(torch.randn(2, 128, 2, 2, 2), torch.tensor([0.3, 0.9])) for _ in range(2)]
    text, mask = torch.randn(2, 16, 384), torch.ones(2, 16, dtype=torch.bool)
    with torch.no_grad():
        first = model(inputs[0][0], inputs[0][1], text, mask, 24.0)
        kept = first.clone()
        model(inputs[1][0], inputs[1][1], text, mask, 24.0)
    torch.testing.assert_close(first, kept, rtol=0, atol=0)
    with torch.enable_grad():
        reference = model(inputs[0][0], inputs[0][1], text, mask, 24.0)
    torch.testing.assert_close(first, reference.detach(), rtol=1e-5, atol=1e-6)
    assert not inputs[0][0].isnan().any()
