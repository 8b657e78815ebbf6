"""Training from a curated manifest: `DataSpec(source="manifest")`, streaming, buckets, latent shards.

The datasets are written here (tests/_manifest_util.py): real H.264 videos with black bars
from clips/curate/synthetic.py and a manifest by the contract of clips/curate/manifest.py,
so nothing depends on the curation pipeline. Checks:
- the plan: kept rows only, 75/25 time split inside each clip, captions and source ids from
  the manifest, crops inside the black-bar box, pixels equal to an independent decode;
- one-sentence errors before launch (missing or unreadable manifest, clips too short,
  missing sources, buckets on another source);
- streaming: the decoded clips in flight stay within DataLoader workers x prefetch batches,
  never the dataset, and training gives the same weights as the in-memory tensor;
- buckets: known aspect ratios go to the expected shapes, every batch has one shape, every
  clip is used each epoch, and train_vae trains on them;
- latent shards: 1 worker == 2 workers, a killed encode keeps its finished shards and a
  rerun encodes only the rest, a corrupt shard is redone (and the log says so), train_dit
  reads the shards;
- `--set` order does not matter; `ltxlab sweep tiny-pair --smoke` trains from a manifest.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _manifest_util import VIDEOS, row, standard_dataset, write_dataset, write_videos  # noqa: E402

from clips.dataset import DataSpec, load_clips, open_clips  # noqa: E402
from clips.errors import ClipError  # noqa: E402
from clips.curate.synthetic import write_bars_video  # noqa: E402
from clips.manifest_source import assign_shape, decode_item, plan  # noqa: E402


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    return standard_dataset(tmp_path_factory.mktemp("curated"))


def _spec(dataset: Path, **changes) -> DataSpec:
    return DataSpec(**{"source": "manifest", "path": str(dataset), "frames": 9, "height": 32, "width": 32,
                       "clips_per_video": 2, **changes})


# ------------------------------------------------------------------------------ the plan


def test_plan_uses_kept_rows_splits_each_clip_in_time_and_carries_captions(dataset):
    spec = _spec(dataset)
    spec.validate()
    found = plan(spec)
    # 8 rows: 6 usable, 1 dropped by a filter, 1 kept but with a 4-frame held-out part
    assert (found.kept_rows, found.used_rows) == (7, 6)
    train, heldout = load_clips(spec, "train"), load_clips(spec, "heldout")
    assert len(train) == len(heldout) == 12
    assert {c.meta["video"].split("-")[0] for c in train} == {"wide", "square", "tall"}
    assert not any(":f2-44" in c.clip_id or ":f30-46" in c.clip_id for c in train + heldout)
    for clip in train + heldout:
        assert clip.frames.shape == (9, 32, 32, 3) and clip.frames.dtype == np.uint8
        assert clip.source == "manifest" and clip.source_id == clip.meta["video"].split("-")[0]
        assert clip.caption == f"a {clip.source_id} moving texture" and clip.fps == 24.0
    # train windows come from the first 75% of each clip's frames, held-out from the rest
    for manifest_id in {c.meta["video"] for c in train}:
        last_train = max(c.meta["first_frame"] + 8 for c in train if c.meta["video"] == manifest_id)
        first_held = min(c.meta["first_frame"] for c in heldout if c.meta["video"] == manifest_id)
        assert last_train < first_held
    # lazy and decoded sequences agree; ids are stable
    lazy = open_clips(spec, "train")
    assert [c.clip_id for c in train] == lazy.clip_ids()
    assert np.array_equal(lazy[5].frames, train[5].frames)
    assert [c.clip_id for c in load_clips(spec, "train")] == [c.clip_id for c in train]


def test_pixels_are_the_source_frames_cropped_to_the_bar_box_and_resized(dataset):
    import cv2

    from clips.io import read_video

    clip = next(c for c in load_clips(_spec(dataset), "heldout") if c.source_id == "wide")
    native, _ = read_video(clip.meta["path"])  # (48, 96, 192, 3): an independent full decode
    x0, y0, x1, y1 = clip.meta["crop_box_source"]
    assert (x0, y0, x1, y1) == (0, 16, 192, 80)  # the letterbox bars are cut off
    first = clip.meta["first_frame"]
    h, w = clip.meta["resized_hw"]
    assert (h, w) == (32, 96)  # shorter side 32, aspect 3 kept
    y, x, ch, cw = clip.meta["crop_box"]
    expected = np.stack([cv2.resize(f[y0:y1, x0:x1], (w, h), interpolation=cv2.INTER_AREA)
                         for f in native[first:first + 9]])[:, y:y + ch, x:x + cw]
    diff = np.abs(expected.astype(int) - clip.frames.astype(int))
    assert diff.mean() < 2.0 and np.percentile(diff, 99) <= 8  # swscale vs OpenCV area resampling
    assert clip.frames.reshape(-1, 3).mean(axis=1).min() > 20  # no black bar row survives


def test_finetune_subset_reads_finetune_parquet(dataset):
    clips = load_clips(_spec(dataset, subset="finetune"), "train")
    assert {c.source_id for c in clips} == {"wide", "square"}  # the tall clip is not in the top-k


@pytest.mark.parametrize("case", ["no_path", "missing", "torn", "too_short", "no_kept", "source_gone", "source_changed",
                                  "no_sources", "buckets_elsewhere"])
def test_bad_manifest_specs_fail_in_one_sentence_before_launch(dataset, tmp_path, case):
    from ablations.configs import check_buildable, default_run_config

    if case == "no_path":
        with pytest.raises(ClipError, match="needs path="):
            DataSpec(source="manifest")
        return
    if case == "buckets_elsewhere":
        with pytest.raises(ClipError, match="buckets apply to source='manifest' only"):
            DataSpec(source="bundled", buckets=("9x32x64",))
        return
    path, match = str(dataset), None
    if case == "missing":
        path, match = str(tmp_path / "nowhere"), "No curated manifest"
    elif case == "torn":
        (tmp_path / "manifest.parquet").write_bytes(b"PAR1 not really")
        path, match = str(tmp_path), "not a readable parquet"
    elif case == "no_kept":
        videos = write_videos(tmp_path / "v", VIDEOS[:1])
        p, v = videos["wide"]
        path, match = str(write_dataset(tmp_path / "d", [row(p, v, 0, 40, keep=False)])), "has no kept clips"
    elif case == "source_gone":
        videos = write_videos(tmp_path / "v", VIDEOS[:1])
        p, v = videos["wide"]
        path = str(write_dataset(tmp_path / "d", [row(p, v, 0, 40)]))
        p.unlink()
        match = "source video\\(s\\) .* are missing"
    elif case in ("source_changed", "no_sources"):
        videos = write_videos(tmp_path / "v", VIDEOS[:1])
        p, v = videos["wide"]
        path = str(write_dataset(tmp_path / "d", [row(p, v, 0, 40)]))
        if case == "no_sources":
            (tmp_path / "d" / "sources.parquet").unlink()
            match = "has no sources.parquet .* re-run `ltxlab curate`"
        else:  # other footage under the same name: the cached stages and the manifest's crops describe the old
            write_bars_video(p, bars=(0, 0, 0, 0), height=96, width=192, frames=20, seed=9)
            match = "1 source video\\(s\\) .* changed since it was curated \\(first: .*wide.mp4 is now"
    spec = _spec(Path(path), frames=33) if case == "too_short" else _spec(Path(path))
    match = match or "None of the 7 kept clips .* long and large enough for 33x32x32"
    cfg = default_run_config("ltx", "tiny", vae_data=spec)
    with pytest.raises(ClipError, match=match) as info:
        check_buildable(cfg, {"train_vae", "eval_recon"})
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------------------ buckets

BUCKETS = ("9x32x64", "9x32x32", "9x64x32", "17x32x32")


def test_bucket_assignment_follows_aspect_ratio_and_frame_count():
    from clips.manifest_source import parse_shape

    shapes = [parse_shape(b) for b in BUCKETS]
    assert assign_shape(40, (64, 192), shapes, 1.0) == (9, 32, 64)  # 3:1 -> the 2:1 bucket
    assert assign_shape(40, (96, 96), shapes, 1.0) == (9, 32, 32)  # square; 17 frames do not fit 10 held-out
    assert assign_shape(80, (96, 96), shapes, 1.0) == (17, 32, 32)  # 20 held-out frames: the longer bucket wins
    assert assign_shape(40, (160, 96), shapes, 1.0) == (9, 64, 32)  # 0.6 -> the 1:2 bucket
    assert assign_shape(20, (96, 96), shapes, 1.0) is None  # 5 held-out frames: nothing fits
    assert assign_shape(40, (16, 16), shapes, None) is None  # native pixels smaller than any crop
    with pytest.raises(ClipError, match="1 \\+ 8k"):
        parse_shape("10x32x32")


def test_bucketed_batches_have_one_shape_and_use_every_clip(dataset):
    from ablations.stages.common import bucket_batch_indices
    from ablations.training.data import ClipVideos

    videos = ClipVideos(open_clips(_spec(dataset, buckets=BUCKETS, clips_per_video=3), "train"))
    shapes = videos.shapes()
    assert sorted({s for s in shapes}) == [(9, 32, 32), (9, 32, 64), (9, 64, 32)]
    buckets = videos.buckets
    counts = [-(-len(b) // 4) for b in buckets]  # batches of 4 per bucket and epoch
    epoch = [bucket_batch_indices(step, buckets, 4, seed=3) for step in range(sum(counts))]
    assert all(len({shapes[i] for i in batch.tolist()}) == 1 for batch in epoch)
    assert {i for batch in epoch for i in batch.tolist()} == set(range(len(videos)))
    again = [bucket_batch_indices(step, buckets, 4, seed=3) for step in range(sum(counts))]
    assert all(torch.equal(a, b) for a, b in zip(epoch, again))
    other = [bucket_batch_indices(step, buckets, 4, seed=4) for step in range(sum(counts))]
    assert any(not torch.equal(a, b) for a, b in zip(epoch, other))


# ------------------------------------------------------------------------------ streaming


class DecodeCounter:
    """Counts decodes in every process (a fork-shared integer)."""

    def __init__(self):
        self.value = multiprocessing.get_context("fork").Value("i", 0)

    def __call__(self, item) -> None:
        with self.value.get_lock():
            self.value.value += 1


def _smoke_vae():
    from ablations.configs import default_run_config
    from ablations.recipes.common import smoke

    cfg = smoke(default_run_config("ltx", "tiny"))
    return cfg.vae, cfg.loss, cfg.vae_train


def test_streaming_holds_batches_not_the_dataset_and_trains_as_the_in_memory_tensor(dataset, tmp_path):
    from ablations.stages.train_vae import train_vae
    from ablations.training.config import ParallelConfig
    from ablations.training.data import PREFETCH, ClipVideos
    from clips.io import to_model

    vae, loss, train = _smoke_vae()
    train = dataclasses.replace(train, steps=6, batch_size=2, stats_max_clips=4)
    spec = _spec(dataset, clips_per_video=8)  # 48 training windows
    workers = 1
    clips, counter = open_clips(spec, "train"), DecodeCounter()
    clips.on_decode = counter
    seen: list[int] = []
    train_vae(vae, loss, train, ClipVideos(clips), tmp_path / "streamed", progress=False,
              layout=ParallelConfig(data_workers=workers), on_step=lambda s, n, l: seen.append(counter.value.value))
    ahead = [decoded - step * train.batch_size for step, decoded in enumerate(seen, start=1)]
    bound = workers * PREFETCH * train.batch_size
    print(f"\nstreaming: {len(clips)} clips, decoded after each step {seen}, most ahead {max(ahead)} clips "
          f"(bound {bound} = workers {workers} x prefetch {PREFETCH} x batch {train.batch_size}; "
          f"{max(ahead) * 9 * 32 * 32 * 3} bytes of frames)")
    assert max(ahead) <= bound < len(clips)
    # the loader decodes exactly the clips of the steps trained, then latent_statistics its 4
    assert seen[-1] == train.steps * train.batch_size and counter.value.value == seen[-1] + 4
    memory = torch.stack([to_model(c.frames) for c in load_clips(spec, "train")])  # (48, 3, 9, 32, 32)
    train_vae(vae, loss, train, memory, tmp_path / "memory", progress=False)
    from ablations import artifacts

    a, b = ({"state_dict": artifacts.load(tmp_path / d, "vae")[0]} for d in ("streamed", "memory"))
    worst = max((a["state_dict"][k].float() - b["state_dict"][k].float()).abs().max().item() for k in a["state_dict"])
    print(f"streamed vs in-memory weights: max |diff| {worst}")
    assert worst == 0.0
    curves = [json.loads((tmp_path / d / "curve.json").read_text()) for d in ("streamed", "memory")]
    assert curves[0] == curves[1]


def test_a_source_changed_after_validate_stops_streaming_with_one_sentence_naming_it(tmp_path):
    import os

    from ablations.training.config import ParallelConfig
    from ablations.training.data import ClipVideos, step_loader
    from ablations.training.loop import Schedule, Trainer
    from ablations.training.world import World

    from _manifest_util import Video

    path, video = write_videos(tmp_path / "v", [Video("small", (0, 0, 0, 0), 32, 32, 40, 4)])["small"]
    clips = open_clips(_spec(write_dataset(tmp_path / "d", [row(path, video, 0, 40)])), "train")  # validate() passes
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # rewritten in place, same size
    trainer = Trainer("t", Schedule(1, 2, 7, 10, len(clips)), ParallelConfig(workers=1), World(rank=0, size=1),
                      tmp_path, {}, {})
    with pytest.raises(ClipError) as info:  # decoded in a DataLoader worker process
        next(step_loader(ClipVideos(clips), trainer, 0, 1, workers=1))
    assert str(info.value) == (f"Video file {path} was modified after curation read it (same size, new mtime); "
                               "re-run `ltxlab curate` on the changed files.")


def test_each_rank_decodes_only_its_slice_of_each_global_batch(dataset, tmp_path):
    from ablations.training.config import ParallelConfig
    from ablations.training.data import ClipVideos, step_loader
    from ablations.training.loop import Schedule, Trainer
    from ablations.training.world import World

    schedule = Schedule(3, 4, 7, 10, 24)
    decoded: dict[int, list[str]] = {}
    for rank in range(2):
        clips = open_clips(_spec(dataset, clips_per_video=4), "train")  # 24 windows
        clips.on_decode = lambda item, rank=rank: decoded.setdefault(rank, []).append(item.clip_id)
        trainer = Trainer("t", schedule, ParallelConfig(workers=2), World(rank=rank, size=2), tmp_path, {}, {})
        batches = list(step_loader(ClipVideos(clips), trainer, 0, 3, workers=0))
        assert [tuple(b.shape) for b in batches] == [(2, 3, 9, 32, 32)] * 3
    ids = open_clips(_spec(dataset, clips_per_video=4), "train").clip_ids()
    for rank in range(2):
        expected = [ids[i] for step in range(3) for i in schedule.global_batch(step)[2 * rank:2 * rank + 2].tolist()]
        assert decoded[rank] == expected


@pytest.mark.slow
def test_two_gloo_workers_streaming_a_manifest_match_one(dataset, tmp_path):
    from test_distributed_training import TOL, _cfg, _curve, _final, _max_diff, _train

    from ablations.training.config import ParallelConfig

    # What must match is the data: each rank streams its slice of the same global batches, so the
    # per-step losses of 1 and 2 workers agree to float noise (a wrong slice moves them by ~1e-2).
    # The final weights agree only to Adam's amplification of that noise: a weight whose gradient
    # is ~0 moves by up to lr per step on summation-order noise alone (see _cfg), which measured
    # 1.7e-6 to 1.9e-5 at lr 3e-5 over 4 steps, so they are held to the lr * steps bound.
    lr, steps = 3e-5, 4
    cfg = _cfg(steps=steps, lr_vae=lr)
    cfg = dataclasses.replace(cfg, vae_data=_spec(dataset))
    _train("train_vae", cfg, tmp_path / "one", ParallelConfig(data_workers=1))
    _train("train_vae", cfg, tmp_path / "two", ParallelConfig(workers=2, data_workers=1))
    curve_one, curve_two = _curve(tmp_path / "one", "total"), _curve(tmp_path / "two", "total")
    assert len(curve_one) == len(curve_two) == steps
    assert max(abs(x - y) for x, y in zip(curve_one, curve_two)) < TOL
    a, b = _final("train_vae", tmp_path / "one"), _final("train_vae", tmp_path / "two")
    weights = [k for k in a if not k.startswith("latents_")]
    diff = _max_diff({k: a[k] for k in weights}, {k: b[k] for k in weights})
    print(f"manifest streaming, 2 gloo workers vs 1: max weight diff {diff:.3g} (bound {lr * steps:.2g})")
    assert diff < lr * steps


def test_train_vae_trains_on_bucketed_streamed_clips(dataset, tmp_path):
    from ablations.executor import training_videos
    from ablations.stages.train_vae import train_vae
    from ablations.training.config import ParallelConfig
    from ablations.training.loop import Schedule

    vae, loss, train = _smoke_vae()
    videos = training_videos(_spec(dataset, buckets=BUCKETS), "train")
    summary = train_vae(vae, loss, dataclasses.replace(train, steps=4), videos, tmp_path, progress=False,
                        layout=ParallelConfig(data_workers=0))
    assert summary["finished"] and (tmp_path / "vae.safetensors").exists()
    schedule = Schedule(4, train.batch_size, train.seed, 2, len(videos), buckets=videos.buckets)
    shapes = videos.shapes()
    assert all(len({shapes[i] for i in schedule.global_batch(s).tolist()}) == 1 for s in range(12))


# ------------------------------------------------------------------------------ latent shards


@pytest.fixture(scope="module")
def vae_dir(dataset, tmp_path_factory) -> Path:
    from ablations.stages.train_vae import train_vae
    from clips.io import to_model

    vae, loss, train = _smoke_vae()
    out = tmp_path_factory.mktemp("vae")
    videos = torch.stack([to_model(c.frames) for c in load_clips(_spec(dataset), "train")[:2]])
    train_vae(vae, loss, dataclasses.replace(train, steps=1, batch_size=2), videos, out, progress=False)
    return out


def _counting(monkeypatch, fail_after: int | None = None) -> list[int]:
    """Count (and optionally break after N) window decodes of the manifest source."""
    import clips.manifest_source as source

    calls = [0]

    def decode(item):
        if fail_after is not None and calls[0] >= fail_after:
            raise RuntimeError("killed mid-encode")
        calls[0] += 1
        return decode_item(item)  # the real one, imported before any patch

    monkeypatch.setattr(source, "decode_item", decode)
    return calls


def _shard_latents(folder: Path) -> torch.Tensor:
    from ablations.stages.encode_latents import load_latents

    return load_latents(folder)["latents"].stack()


def test_latent_shards_are_verified_resumable_and_worker_count_free(dataset, vae_dir, tmp_path, monkeypatch, capsys):
    from ablations.stages.encode_latents import (DONE, INDEX, SHARDS, encode_latents, encode_latents_part,
                                                 merge_latent_parts)
    from models.text import TextEncoderConfig

    spec, text = _spec(dataset), TextEncoderConfig(max_length=8)  # 12 windows -> shards [0,5) [5,10) [10,12)
    whole = encode_latents(vae_dir, spec, tmp_path / "one", text_cfg=text, shard_size=5)
    assert whole["shards"] == 3 and whole["clips"] == 12 and whole["shards_reused"] == 0
    index = json.loads((tmp_path / "one" / SHARDS / INDEX).read_text())
    assert [(r["start"], r["stop"]) for r in index["shards"]] == [(0, 5), (5, 10), (10, 12)]
    reference = _shard_latents(tmp_path / "one")
    # two workers write the same shards
    for rank in range(2):
        encode_latents_part(vae_dir, spec, tmp_path / "two", shard=(rank, 2), shard_size=5)
    merge_latent_parts(vae_dir, spec, tmp_path / "two", 2, text_cfg=text, shard_size=5)
    assert torch.equal(_shard_latents(tmp_path / "two"), reference)
    # killed after 7 decodes: shard 0 (5 clips) is finished and kept; the rerun decodes only the other 7
    calls = _counting(monkeypatch, fail_after=7)
    with pytest.raises(RuntimeError, match="killed"):
        encode_latents(vae_dir, spec, tmp_path / "killed", text_cfg=text, shard_size=5)
    assert (tmp_path / "killed" / SHARDS / "shard-00000.json").exists() and not (tmp_path / "killed" / DONE).exists()
    calls = _counting(monkeypatch)
    resumed = encode_latents(vae_dir, spec, tmp_path / "killed", text_cfg=text, shard_size=5)
    assert calls[0] == 7 and resumed["shards_reused"] == 1 and resumed["shards_redone"] == 0
    assert torch.equal(_shard_latents(tmp_path / "killed"), reference)
    # a corrupt shard under a finished stage: load_latents refuses it in one sentence ...
    bad = tmp_path / "one" / SHARDS / "shard-00001.safetensors"
    data = bytearray(bad.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="shard-00001 .* is corrupt \\(the sha256"):
        _shard_latents(tmp_path / "one")
    # ... and a rerun (DONE removed, as the message says) redoes that shard only, saying so
    (tmp_path / "one" / DONE).unlink()
    capsys.readouterr()
    calls = _counting(monkeypatch)
    redone = encode_latents(vae_dir, spec, tmp_path / "one", text_cfg=text, shard_size=5)
    assert calls[0] == 5 and redone["shards_redone"] == 1 and redone["shards_reused"] == 2
    assert "shard-00001" in capsys.readouterr().out
    assert torch.equal(_shard_latents(tmp_path / "one"), reference)


def test_bucketed_latents_shard_by_shape_and_train_dit_streams_them(dataset, vae_dir, tmp_path):
    from ablations.stages.encode_latents import INDEX, SHARDS, encode_latents, load_latents
    from ablations.stages.train_dit import DiTTrainConfig, train_dit
    from models.dit import dit_config
    from models.flow import flow_config
    from models.text import TextEncoderConfig

    text, spec = TextEncoderConfig(max_length=8), _spec(dataset, buckets=BUCKETS[:3])
    encode_latents(vae_dir, spec, tmp_path / "latents", text_cfg=text, shard_size=3)
    index = json.loads((tmp_path / "latents" / SHARDS / INDEX).read_text())
    # 12 windows: 4 per shape, cut at the shape change and every 3 clips
    assert [(r["clips"], tuple(r["latent_shape"][1:])) for r in index["shards"]] == [
        (3, (2, 1, 2)), (1, (2, 1, 2)), (3, (2, 1, 1)), (1, (2, 1, 1)), (3, (2, 2, 1)), (1, (2, 2, 1))]
    assert load_latents(tmp_path / "latents")["latents"].buckets == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    summary = train_dit(dit_config("ltx", "tiny"), flow_config("tiny"), text,
                        DiTTrainConfig(steps=3, batch_size=2, checkpoint_every=2), tmp_path / "latents",
                        tmp_path / "dit", progress=False)
    assert summary["finished"] and (tmp_path / "dit" / "dit.safetensors").exists()


# ------------------------------------------------------------------------------ overrides and the sweep


@pytest.mark.parametrize("source,field", [("folder", "folder"), ("manifest", "path")])
def test_set_order_does_not_matter(dataset, source, field):
    from ablations.overrides import apply_overrides
    from ablations.configs import default_run_config

    base = default_run_config("ltx", "tiny")
    first = apply_overrides(base, [f"vae_data.source={source}", f"vae_data.{field}={dataset}"])
    second = apply_overrides(base, [f"vae_data.{field}={dataset}", f"vae_data.source={source}"])
    assert first == second and first.vae_data.source == source and getattr(first.vae_data, field) == str(dataset)


def test_train_and_eval_commands_on_a_dataset_written_by_ltxlab_curate(dataset, tmp_path, capsys):
    """The real contract end to end: `ltxlab curate --local` writes the dataset, train-vae and
    eval-recon read it (`--data DATASET`), a static clip dropped by the motion filter never appears."""
    import shutil

    from ablations.cli import main
    from clips.curate.synthetic import write_motion_video

    src = tmp_path / "src"
    shutil.copytree(Path(dataset).parent / "src", src)
    write_motion_video(src / "still.mp4", speed=0, frames=48, seed=5)
    assert main(["curate", str(src), "--out", str(tmp_path / "ds"), "--local"]) == 0
    common = ["--data", str(tmp_path / "ds"), "--frames", "9", "--resolution", "32x32", "--clips-per-video", "1"]
    assert main(["train-vae", "--steps", "2", "--batch-size", "2", "--out", str(tmp_path / "vae"), *common]) == 0
    assert json.loads((tmp_path / "vae" / "run_config.json").read_text())["vae_data"]["source"] == "manifest"
    capsys.readouterr()
    assert main(["eval-recon", "--checkpoint", str(tmp_path / "vae"), "--metrics", "psnr", "--json", *common]) == 0
    report = json.loads(capsys.readouterr().out)
    sources = {row["source_id"].split("-")[0] for row in report["rows"]}
    assert report["clips"] == 3 and sources == {"wide", "square", "tall"}


@pytest.mark.slow
def test_sweep_trains_and_evaluates_from_a_manifest(dataset, tmp_path):
    import pandas as pd

    from ablations.cli import main

    code = main(["sweep", "tiny-pair", "--smoke", "--results", str(tmp_path), "--quiet", "--no-report",
                 "--set", f"vae_data.path={dataset}", "--set", "vae_data.source=manifest"])
    assert code == 0
    runs = pd.read_parquet(tmp_path / "tiny-pair-smoke" / "runs.parquet")
    assert (runs["status"] == "done").all()
    metrics = pd.read_parquet(tmp_path / "tiny-pair-smoke" / "metrics.parquet")
    recon = metrics[metrics["metric"] == "psnr"]
    assert set(recon["source_id"]) == {"wide", "square", "tall"}
    assert recon["clip_id"].str.contains(":heldout:").all()
