"""encode_latents, sample, eval_recon and eval_gen split across workers (ablations/stages/sharded.py).

Two shards must write what one does: the same files, rows and numbers (fp32 CPU, within
1e-6; in practice bit for bit), in process and as Ray tasks fanned out from inside the
stage's own Ray task. Parts without DONE are redone, complete ones reused, and the merge
refuses to join an incomplete set. The models are the smoke run's (a few steps each), with
the VAE decoder's injected noise turned up so that per-item seeding is really exercised.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from ablations.stages import sharded
from ablations.stages.shards import (IncompletePartsError, complete_parts, item_seed, map_shards, part_dir,
                                     shard_slice)

TOL = 1e-6


def _cfg():
    from ablations.configs import default_run_config
    from ablations.recipes.common import smoke

    cfg = smoke(default_run_config("ltx", "tiny"))
    r = dataclasses.replace
    # odd item counts, so two shards get unequal slices: 5 scenes to encode, 3 prompts, 3 held-out clips
    return r(cfg, dit_data=r(cfg.dit_data, num_scenes=5), eval=r(cfg.eval, heldout_prompts=3, recon_samples=2))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(cfg, upstream folders) of a smoke run: VAE (noise scales set to 0.3), latents, DiT."""
    from ablations.stages.encode_latents import encode_latents
    from ablations.stages.train_dit import train_dit
    from ablations.stages.train_vae import train_vae
    from clips.dataset import load_clips
    from clips.io import to_model

    torch.set_num_threads(1)  # as each shard's Ray task runs: outputs are compared to the last bit
    cfg = _cfg()
    root = tmp_path_factory.mktemp("trained")
    videos = torch.stack([to_model(c.frames) for c in load_clips(cfg.vae_data, "train")])
    train_vae(cfg.vae, cfg.loss, cfg.vae_train, videos, root / "vae", progress=False)
    from ablations import artifacts

    weights, meta = artifacts.load(root / "vae", "vae")
    noise = [k for k in weights if "noise_scale" in k]
    assert noise, "the tiny ltx decoder injects noise (ltx_0.9.1 layout)"
    for key in noise:  # 3 training steps leave them near their zero init: make the noise matter
        weights[key] = torch.full_like(weights[key], 0.3)
    artifacts.save(root / "vae" / "vae.safetensors", "vae", weights, meta)
    encode_latents(root / "vae", cfg.dit_data, root / "latents", text_cfg=cfg.text)
    train_dit(cfg.dit, cfg.flow, cfg.text, cfg.dit_train, root / "latents", root / "dit", progress=False)
    return cfg, {"train_vae": root / "vae", "train_dit": root / "dit"}


STAGES = ("encode_latents", "sample", "eval_recon", "eval_gen")


def _run_all(cfg, upstream, root: Path, world: int, ray=None) -> dict[str, tuple[Path, dict]]:
    """Every stage's sharded entry point, here or (ray) each inside a 0-CPU Ray task that fans its
    shards out (the first three at once; eval_gen reads sample's folder)."""
    folders = {stage: root / stage for stage in STAGES}
    for folder in folders.values():
        folder.mkdir(parents=True)
    ups = {stage: {**upstream, "sample": folders["sample"]} if stage == "eval_gen" else upstream for stage in STAGES}
    if ray is None:
        return {s: (folders[s], sharded.STAGES_RUN[s](cfg, folders[s], ups[s], None, world)) for s in STAGES}

    def submit(stage):
        return ray.remote(sharded.STAGES_RUN[stage]).options(num_cpus=0).remote(cfg, folders[stage], ups[stage], None, world)

    first = STAGES[:3]
    out = dict(zip(first, ray.get([submit(s) for s in first])))
    out["eval_gen"] = ray.get(submit("eval_gen"))
    return {s: (folders[s], out[s]) for s in STAGES}


@pytest.fixture(scope="module")
def one(trained, tmp_path_factory):
    cfg, upstream = trained
    return _run_all(cfg, upstream, tmp_path_factory.mktemp("world1"), 1)


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and "parts" not in p.parts)


def _close_rows(a: list[dict], b: list[dict]) -> float:
    """Rows equal field for field (values within TOL); returns the largest value difference."""
    assert len(a) == len(b)
    worst = 0.0
    for x, y in zip(a, b):
        assert {k: v for k, v in x.items() if k != "value"} == {k: v for k, v in y.items() if k != "value"}
        worst = max(worst, abs(x["value"] - y["value"]))
    assert worst <= TOL
    return worst


def assert_same_outputs(one: dict, two: dict) -> None:
    # encode_latents: the same files, latents within TOL, everything else equal
    (fa, ra), (fb, rb) = one["encode_latents"], two["encode_latents"]
    assert _files(fa) == _files(fb) == ["DONE", "null_text.safetensors", "shards/index.json",
                                        "shards/shard-00000.json", "shards/shard-00000.safetensors", "summary.json",
                                        "text.safetensors"]
    from ablations.stages.encode_latents import load_latents

    la, lb = load_latents(fa), load_latents(fb)
    assert la.keys() == lb.keys() and la["latents"].stack().shape == lb["latents"].stack().shape == (5, 128, 2, 1, 1)
    assert (la["latents"].stack() - lb["latents"].stack()).abs().max().item() <= TOL
    for key in la:
        if key not in ("latents", "text", "null_text", "vae_dir"):
            same = torch.equal(la[key], lb[key]) if torch.is_tensor(la[key]) else la[key] == lb[key]
            assert same, key
    from models import tensor_file
    from models.text import load_encoded

    (sa, ma), (sb, mb) = (tensor_file.load(f / "shards" / "shard-00000.safetensors") for f in (fa, fb))
    assert ma["clip_ids"] == mb["clip_ids"] and torch.equal(sa["first_frames"], sb["first_frames"])
    for name in ("text.safetensors", "null_text.safetensors"):
        ta, tb = load_encoded(fa / name), load_encoded(fb / name)
        assert ta["captions"] == tb["captions"] and torch.equal(ta["embeddings"], tb["embeddings"])
    strip = lambda s: {k: v for k, v in s.items() if k != "wall_time_s"}  # noqa: E731
    assert strip(ra["summary"]) == strip(rb["summary"])
    # sample: the same index (order included), files and exact frames
    (fa, ra), (fb, rb) = one["sample"], two["sample"]
    assert ra["index"] == rb["index"] and len(ra["index"]) == 6  # 3 prompts x (t2v, i2v)
    assert [(r["task"], r["prompt_id"]) for r in ra["index"]] == [(t, f"p{i:03d}") for t in ("t2v", "i2v") for i in range(3)]
    assert _files(fa) == _files(fb)
    for row in ra["index"]:
        npy = row["file"].replace(".mp4", ".npy")
        assert np.array_equal(np.load(fa / "samples" / npy), np.load(fb / "samples" / npy))
    assert [json.loads(line) for line in (fa / "samples" / "index.jsonl").read_text().splitlines()] == ra["index"]
    # eval_recon: rows, summary, references and files
    (fa, ra), (fb, rb) = one["eval_recon"], two["eval_recon"]
    _close_rows(ra["rows"], rb["rows"])
    assert ra["summary"].keys() == rb["summary"].keys()
    assert all(abs(ra["summary"][k] - rb["summary"][k]) <= TOL for k in ra["summary"])
    assert ra["references"] == rb["references"] and len(ra["references"]) == 2
    assert _files(fa) == _files(fb) and len(_files(fa)) == 4  # 2 recon samples + 2 references
    # eval_gen: rows and summary
    (_, ra), (_, rb) = one["eval_gen"], two["eval_gen"]
    _close_rows(ra["rows"], rb["rows"])
    assert ra["summary"] == rb["summary"]


def test_shard_slice_covers_every_item_once():
    for n in range(0, 13):
        for world in range(1, 6):
            slices = [shard_slice(n, rank, world) for rank in range(world)]
            assert [i for s in slices for i in range(n)[s]] == list(range(n))
            sizes = [s.stop - s.start for s in slices]
            assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)
    assert shard_slice(7, 2, 3) == slice(5, 7) and shard_slice(7, 2, 3) == shard_slice(7, 2, 3)
    for bad in ((5, 3, 3), (5, -1, 2), (5, 0, 0), (-1, 0, 1)):
        with pytest.raises(ValueError):
            shard_slice(*bad)
    assert item_seed(0, 1, 2) == item_seed(0, 1, 2) and len({item_seed(s, 0, i) for s in range(3) for i in range(3)}) == 9


def _part_pids(folder: Path, world: int) -> set[int]:
    return {record["pid"] for _, record in complete_parts(folder, world)}


def _in_process(monkeypatch) -> None:
    """Shards run here even when Ray is up (the test process keeps one between modules): shards in
    Ray workers run at 1 thread, `one` ran here at 2, and frames are compared to the last bit."""
    try:
        import ray

        monkeypatch.setattr(ray, "is_initialized", lambda: False)
    except ImportError:
        pass


def test_two_shards_in_process_write_what_one_does(trained, one, tmp_path, monkeypatch):
    import os

    _in_process(monkeypatch)
    cfg, upstream = trained
    two = _run_all(cfg, upstream, tmp_path, 2)
    assert_same_outputs(one, two)
    assert all(_part_pids(folder, 2) == {os.getpid()} for folder, _ in two.values())
    assert sorted(p.name for p in (tmp_path / "sample" / "parts").iterdir()) == ["rank-0-of-2", "rank-1-of-2"]
    # the sharded stages write what the unsharded stage functions write
    from ablations.stages.eval_gen import eval_gen
    from ablations.stages.eval_recon import eval_recon
    from ablations.stages.sample import heldout_prompts, sample_videos
    from ablations.stages.train_vae import load_vae
    from clips.dataset import load_clips

    prompts, images = heldout_prompts(cfg.dit_data, cfg.eval.heldout_prompts)
    rows = sample_videos(upstream["train_vae"], upstream["train_dit"], prompts, tmp_path / "plain", images=images,
                         cfg=dataclasses.replace(cfg.sample, seed=cfg.seed, batch_size=1), progress=False)  # batching is moot
    assert rows == one["sample"][1]["index"]
    for row in rows:
        npy = row["file"].replace(".mp4", ".npy")
        assert np.array_equal(np.load(tmp_path / "plain" / npy), np.load(one["sample"][0] / "samples" / npy))
    assert eval_gen(tmp_path / "plain") == (one["eval_gen"][1]["rows"], one["eval_gen"][1]["summary"])
    many = sharded.run_eval_gen(cfg, tmp_path / "gen8", {"sample": one["sample"][0]}, None, 8)  # 6 samples, 2 idle ranks
    assert many == one["eval_gen"][1]
    clips = load_clips(cfg.vae_data, "heldout")
    vae = load_vae(upstream["train_vae"], torch.device("cpu"))
    names = sharded._recon_metric_names(cfg)
    assert eval_recon(vae, clips, metric_names=names, seed=cfg.seed) == (one["eval_recon"][1]["rows"],
                                                                        one["eval_recon"][1]["summary"])
    # and the decoder noise is really in play: another clip seed reconstructs differently
    from ablations.stages.eval_recon import reconstruct
    from ablations.stages.shards import item_generator
    from clips.io import to_model

    video = to_model(clips[0].frames)[None]
    assert not torch.equal(reconstruct(vae, video, generator=item_generator(cfg.seed, 0)),
                           reconstruct(vae, video, generator=item_generator(cfg.seed, 1)))


def test_two_shards_as_nested_ray_tasks_write_what_one_does(trained, one, ray_local, tmp_path):
    cfg, upstream = trained
    two = _run_all(cfg, upstream, tmp_path, 2, ray=ray_local)
    assert_same_outputs(one, two)
    import os

    for folder, _ in two.values():  # each shard ran in a Ray worker, not here
        assert os.getpid() not in _part_pids(folder, 2)


def test_incomplete_part_is_redone_and_complete_ones_reused(trained, one, tmp_path, monkeypatch):
    from ablations.stages.sample import merge_sample_parts

    _in_process(monkeypatch)

    cfg, upstream = trained
    folder = tmp_path / "sample"
    sharded.run_sample(cfg, folder, upstream, None, 2)
    first, second = part_dir(folder, 0, 2), part_dir(folder, 1, 2)
    stamp = (first / "DONE").stat().st_mtime_ns
    # a shard killed half-way: its part has no DONE and a truncated file; a stale temp folder lies beside it
    (second / "DONE").unlink()
    victim = next(second.glob("*.npy"))
    victim.write_bytes(victim.read_bytes()[:50])
    (folder / "parts" / ".rank-1-of-2.tmp-dead").mkdir()
    with pytest.raises(IncompletePartsError, match="part\\(s\\) 1 of 2"):
        complete_parts(folder, 2)
    with pytest.raises(IncompletePartsError):
        merge_sample_parts(folder, 2, folder / "samples")
    shutil.rmtree(folder / "samples")
    again = sharded.run_sample(cfg, folder, upstream, None, 2)
    assert (first / "DONE").stat().st_mtime_ns == stamp, "a complete part is reused"
    assert (second / "DONE").exists() and not (folder / "parts" / ".rank-1-of-2.tmp-dead").exists()
    assert again["index"] == one["sample"][1]["index"]
    for row in again["index"]:
        npy = row["file"].replace(".mp4", ".npy")
        assert np.array_equal(np.load(folder / "samples" / npy), np.load(one["sample"][0] / "samples" / npy))


def _check_failures() -> None:
    # math.log(rank, world): rank 0 is a math domain error, the others are fine
    done = []
    with pytest.raises(ValueError, match="log shard 0 of 3 failed: math domain error"):
        map_shards(math.log, 3, on_done=lambda rank, finished: done.append(rank))
    assert sorted(done) == [0, 1, 2], "the other ranks still run to the end"
    assert map_shards(pow, 3) == [0, 1, 8]  # pow(rank, world), in rank order


def test_a_failed_shard_raises_with_its_rank_and_type():
    _check_failures()  # in process (or through Ray, if another module left it running)


def test_a_failed_ray_shard_raises_with_its_rank_and_type(ray_local):
    _check_failures()
