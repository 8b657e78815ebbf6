"""encode_latents -> train_dit -> sample -> eval_gen, and the train-dit / sample commands, on tiny settings.

They check behaviour (caching, exact resume, EMA, file contracts, i2v holding), not quality.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from ablations import artifacts
from ablations.training import checkpoint

from ablations.stages.common import NonFiniteLossError
from ablations.stages.encode_latents import DONE, INDEX, SHARDS, encode_latents, load_latents
from ablations.stages.eval_gen import eval_gen, synthetic_reference
from ablations.stages.sample import Prompt, SampleConfig, heldout_prompts, read_index, read_png, sample_videos
from ablations.stages.train_dit import DiTTrainConfig, load_dit, train_dit
from ablations.stages.train_vae import VAETrainConfig, train_vae
from clips.dataset import DataSpec, load_clips
from clips.io import read_video, to_model
from models.dit import dit_config
from models import tensor_file
from models.flow import flow_config
from models.losses.base import VAELossConfig
from models.text import TextEncoderConfig
from models.vae import vae_config

SPEC = DataSpec(source="synthetic", frames=9, height=32, width=32, num_scenes=6, num_heldout_scenes=2, seed=3)
TEXT = TextEncoderConfig(max_length=16)
FLOW = flow_config("tiny")


def _dit(**overrides):
    return dit_config("ltx", "tiny", **overrides)


@pytest.fixture(scope="module")
def vae_dir(tmp_path_factory) -> Path:
    """A tiny ltx VAE overfitted a little on two scenes (enough to tell a held first frame from noise)."""
    out = tmp_path_factory.mktemp("vae")
    clips = load_clips(SPEC, "train")[:2]
    videos = torch.stack([to_model(c.frames) for c in clips])  # (2, 3, 9, 32, 32)
    train_vae(vae_config("ltx", "tiny"), VAELossConfig(), VAETrainConfig(steps=30, batch_size=2, lr=3e-3, warmup_steps=1),
              videos, out, progress=False)
    return out


@pytest.fixture(scope="module")
def latents_dir(vae_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("latents")
    encode_latents(vae_dir, SPEC, out, text_cfg=TEXT)
    return out


@pytest.fixture(scope="module")
def dit_dir(latents_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dit")
    train_dit(_dit(), FLOW, TEXT, DiTTrainConfig(steps=4, batch_size=3, checkpoint_every=2), latents_dir, out, progress=False)
    return out


def test_encode_latents_writes_normalised_latents_and_text_and_is_cached(vae_dir, latents_dir):
    data = load_latents(latents_dir)
    clips = load_clips(SPEC, "train")
    latents = data["latents"].stack()
    assert latents.shape == (6, 128, 2, 1, 1)  # 9x32x32 -> (1 + 1) x 1 x 1 with 128 channels
    assert data["captions"] == [c.caption for c in clips]
    assert data["clip_ids"] == [c.clip_id for c in clips]
    first = torch.stack([data["latents"].first_frame(i) for i in range(6)])
    assert torch.equal(first, torch.from_numpy(np.stack([c.frames[0] for c in clips])))
    assert data["fps"].tolist() == [24.0] * 6
    assert data["text"]["embeddings"].shape == (6, 16, 384) and data["text"]["captions"] == data["captions"]
    assert data["null_text"]["captions"] == [""]
    assert Path(data["vae_dir"]) == vae_dir.resolve()
    # latents are standardised with the VAE's statistics, computed on the two VAE training clips
    from ablations.stages.train_vae import load_vae

    vae = load_vae(vae_dir, torch.device("cpu"))
    with torch.no_grad():  # as the stage encodes: the inference convs (packed oneDNN taps) round differently from
        # autograd's by ~1e-6 of the raw latents, which the per-channel standardisation magnifies past 1e-5
        raw, _ = vae.encode(torch.stack([to_model(c.frames) for c in clips]))
    assert torch.allclose(latents, vae.normalize_latents(raw), atol=1e-5)
    # a DONE folder is reused, not rewritten
    stamp = (latents_dir / SHARDS / INDEX).stat().st_mtime_ns
    again = encode_latents(vae_dir, SPEC, latents_dir, text_cfg=TEXT)
    assert again["cached"] is True and (latents_dir / SHARDS / INDEX).stat().st_mtime_ns == stamp


def test_load_latents_without_done_marker_fails(tmp_path):
    with pytest.raises(FileNotFoundError, match="DONE"):
        load_latents(tmp_path)


def _final_state(out: Path) -> dict[str, torch.Tensor]:
    return artifacts.load(out, "dit")[0]


@pytest.mark.parametrize("conditioning", ["cross_attention", "mmdit"])
def test_resume_after_interruption_matches_uninterrupted_run(latents_dir, tmp_path, conditioning):
    train = DiTTrainConfig(steps=5, batch_size=3, checkpoint_every=2, seed=1)
    flow = flow_config("tiny", i2v_probability=0.5, caption_dropout=0.3)  # exercise both random branches
    whole = train_dit(_dit(text_conditioning=conditioning), flow, TEXT, train, latents_dir, tmp_path / "a", progress=False)
    part = train_dit(_dit(text_conditioning=conditioning), flow, TEXT, train, latents_dir, tmp_path / "b", progress=False,
                     stop_after=3)
    assert part == {**part, "steps": 3, "finished": False} and not (tmp_path / "b" / "dit.safetensors").exists()
    rest = train_dit(_dit(text_conditioning=conditioning), flow, TEXT, train, latents_dir, tmp_path / "b", progress=False)
    assert whole["finished"] and rest["finished"] and rest["resumed_from"] == 3
    a, b = _final_state(tmp_path / "a"), _final_state(tmp_path / "b")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    curve_a = json.loads((tmp_path / "a" / "curve.json").read_text())
    curve_b = json.loads((tmp_path / "b" / "curve.json").read_text())
    assert [r["step"] for r in curve_a] == [1, 2, 3, 4, 5]
    assert curve_a == curve_b


def test_dit_checkpoint_records_configs_vae_and_ema_weights(dit_dir, vae_dir, latents_dir):
    weights, blob = artifacts.load(dit_dir, "dit")
    assert Path(blob["vae_dir"]) == vae_dir.resolve() and Path(blob["latents_dir"]) == latents_dir.resolve()
    assert blob["latent_shape"] == [128, 2, 1, 1] and blob["video_shape"] == [9, 32, 32] and blob["fps"] == 24.0
    ckpt = checkpoint.read(checkpoint.latest(dit_dir))
    # dit.safetensors holds the EMA, which lags the raw weights
    assert ckpt["meta"]["step"] == blob["steps"] and ckpt["meta"]["world_size"] == 1
    assert weights.keys() == ckpt["model.ema"].keys() and all(torch.equal(weights[k], ckpt["model.ema"][k]) for k in weights)
    assert any(not torch.equal(ckpt["model.ema"][k], ckpt["model.model"][k]) for k in ckpt["model.model"])
    curve = json.loads((dit_dir / "curve.json").read_text())
    assert {"stage", "step", "loss", "grad_norm"} <= curve[0].keys() and curve[0]["stage"] == "train_dit"
    dit = load_dit(dit_dir, torch.device("cpu"))
    assert dit.vae_dir == vae_dir.resolve() and dit.flow == FLOW and dit.text == TEXT


def test_nonfinite_latents_raise_nonfinite_loss(latents_dir, tmp_path):
    from ablations.stages.encode_latents import file_sha256

    broken = tmp_path / "latents"
    shutil.copytree(latents_dir, broken)
    shard, record = broken / SHARDS / "shard-00000.safetensors", broken / SHARDS / "shard-00000.json"
    tensors, meta = tensor_file.load(shard)
    tensor_file.save(shard, {**tensors, "latents": torch.full_like(tensors["latents"], float("nan"))}, meta)
    # an encode that really produced NaN: its records agree with the file
    meta = {**json.loads(record.read_text()), "bytes": shard.stat().st_size, "sha256": file_sha256(shard)}
    record.write_text(json.dumps(meta))
    index = json.loads((broken / SHARDS / INDEX).read_text())
    index["shards"][0] = meta
    (broken / SHARDS / INDEX).write_text(json.dumps(index))
    with pytest.raises(NonFiniteLossError, match="step 0"):
        train_dit(_dit(), FLOW, TEXT, DiTTrainConfig(steps=2, batch_size=3), broken, tmp_path / "out", progress=False)


def test_mismatched_latent_channels_fail_with_a_sentence(latents_dir, tmp_path):
    with pytest.raises(ValueError, match="channels"):
        train_dit(dit_config("conventional", "tiny"), FLOW, TEXT, DiTTrainConfig(steps=1), latents_dir, tmp_path, progress=False)


def test_sample_writes_playable_mp4s_pngs_and_index(vae_dir, dit_dir, tmp_path):
    prompts, images = heldout_prompts(SPEC)
    assert len(prompts) == 2 and prompts[0].clip_id.startswith("synthetic:heldout:")
    rows = sample_videos(None, dit_dir, prompts, tmp_path, images=images, cfg=SampleConfig(steps=2), progress=False)
    assert read_index(tmp_path) == rows
    assert [(r["task"], r["prompt_id"]) for r in rows] == [("t2v", "p000"), ("t2v", "p001"), ("i2v", "p000"), ("i2v", "p001")]
    for row in rows:
        assert set(row) == {"file", "task", "prompt_id", "text", "image", "clip_id", "source_id", "fps"}
        frames, fps = read_video(tmp_path / row["file"])
        assert frames.shape == (9, 32, 32, 3) and fps == pytest.approx(24.0)
        prompt = prompts[int(row["prompt_id"][1:])]
        assert row["text"] == prompt.text and row["clip_id"] == prompt.clip_id
        assert row["source_id"] == prompt.source_id == prompt.clip_id  # a synthetic scene is its own source
        if row["task"] == "i2v":
            assert row["image"] == f"i2v-{row['prompt_id']}.png"
            assert np.array_equal(read_png(tmp_path / row["image"]), images[int(row["prompt_id"][1:])])
        else:
            assert row["image"] is None
    # same seed and batching -> same samples
    again = sample_videos(None, dit_dir, prompts, tmp_path / "again", cfg=SampleConfig(steps=2, tasks=("t2v",)),
                          progress=False)
    # compare the exact frames (.npy): x264's multi-threaded output is not bit-stable between calls
    first = np.load(tmp_path / rows[0]["file"].replace(".mp4", ".npy"))
    second = np.load(tmp_path / "again" / again[0]["file"].replace(".mp4", ".npy"))
    assert np.array_equal(first, second)


def test_i2v_holds_the_conditioning_latents_and_t2v_does_not(vae_dir, dit_dir, tmp_path, monkeypatch):
    """The latents handed to the decoder start with the image's latents exactly (i2v), never for t2v.

    Pixel-level first-frame fidelity needs a VAE good enough to reconstruct (the 30-step
    test VAE is not; benchmarks/t2v_alignment.py measures first_frame_psnr held vs not).
    """
    import ablations.stages.sample as sample_module
    from ablations.stages.train_vae import load_vae

    decoded: list[torch.Tensor] = []
    real_decode = sample_module.decode_latents
    monkeypatch.setattr(sample_module, "decode_latents", lambda vae, z, *a: decoded.append(z.clone()) or real_decode(vae, z, *a))
    clips = load_clips(SPEC, "train")[:2]
    prompts = [Prompt(prompt_id=f"q{i}", text=c.caption) for i, c in enumerate(clips)]
    images = [c.frames[0] for c in clips]
    rows = sample_videos(None, dit_dir, prompts, tmp_path, images=images, cfg=SampleConfig(steps=3), progress=False)
    assert [r["task"] for r in rows] == ["t2v", "t2v", "i2v", "i2v"] and len(decoded) == 2
    vae = load_vae(vae_dir, torch.device("cpu"))
    with torch.no_grad():
        mean, _ = vae.encode(torch.stack([to_model(image[None]) for image in images]))  # (2, 128, 1, 1, 1)
    cond = vae.normalize_latents(mean)
    t2v, i2v = decoded
    assert torch.allclose(i2v[:, :, :1], cond, atol=1e-5)
    assert not torch.allclose(t2v[:, :, :1], cond, atol=1e-2)
    # and the rest of the i2v video is generated, not copied
    assert not torch.allclose(i2v[:, :, 1:], cond.expand_as(i2v[:, :, 1:]), atol=1e-2)


def test_eval_gen_scores_every_sample_with_versions(vae_dir, dit_dir, tmp_path):
    prompts, images = heldout_prompts(SPEC)
    sample_videos(None, dit_dir, prompts, tmp_path, images=images, cfg=SampleConfig(steps=2), progress=False)
    rows, summary = eval_gen(tmp_path)
    metrics = {r["metric"] for r in rows}
    assert {"t2v.oracle_color", "t2v.temporal_flicker", "t2v.flicker_excess", "i2v.first_frame_psnr"} <= metrics
    assert "t2v.first_frame_psnr" not in metrics
    assert all(r["metric_version"] == "1" and r["clip_id"].startswith("synthetic:heldout:") for r in rows)
    assert summary["t2v.oracle_color.n"] == 2 and summary["t2v.oracle_color.chance"] == pytest.approx(1 / 6)
    assert summary["t2v.oracle_color.ci_low"] <= summary["t2v.oracle_color"] <= summary["t2v.oracle_color.ci_high"]
    # the reference of a held-out prompt is regenerated from its clip id
    assert np.array_equal(synthetic_reference(prompts[0].clip_id), load_clips(SPEC, "heldout")[0].frames)
    assert synthetic_reference("bikes:heldout:t1") is None


def test_cli_train_dit_then_sample_t2v_and_i2v(vae_dir, tmp_path, capsys):
    from ablations.cli import main

    out = tmp_path / "run"
    code = main(["train-dit", "--vae", str(vae_dir), "--out", str(out), "--steps", "3", "--batch-size", "2",
                 "--frames", "9", "--resolution", "32x32", "--num-scenes", "3", "--set", "dit.text_conditioning=mmdit",
                 "--set", "train.checkpoint_every=1"])
    assert code == 0
    run_cfg = json.loads((out / "run_config.json").read_text())
    assert run_cfg["dit"]["text_conditioning"] == "mmdit" and run_cfg["data"]["num_scenes"] == 3
    assert (out / "dit.safetensors").exists() and len(list(out.glob(f"latents-*/{DONE}"))) == 1
    video = tmp_path / "t2v.mp4"
    assert main(["sample", "--checkpoint", str(out), "--prompt", "a red circle moves left over a photo of grass",
                 "--out", str(video), "--steps", "2", "--guidance", "2.0"]) == 0
    assert read_video(video)[0].shape == (9, 32, 32, 3)
    from ablations.stages.sample import write_png

    image = write_png(tmp_path / "first.png", np.full((64, 48, 3), 200, np.uint8))  # resized to 32x32
    assert main(["sample", "--checkpoint", str(out), "--prompt", "a blue square moves up over a photo of coins",
                 "--image", str(image), "--out", str(tmp_path / "i2v.mp4"), "--steps", "2"]) == 0
    assert read_video(tmp_path / "i2v.mp4")[0].shape == (9, 32, 32, 3)
    assert "image-to-video" in capsys.readouterr().out


def test_cli_user_errors_exit_2(tmp_path, capsys):
    from ablations.cli import main

    assert main(["sample", "--checkpoint", str(tmp_path), "--prompt", "x", "--out", str(tmp_path / "x.mp4")]) == 2
    assert "No trained DiT" in capsys.readouterr().err
    assert main(["train-dit", "--vae", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "No trained VAE" in capsys.readouterr().err
