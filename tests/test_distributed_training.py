"""The training core across workers (ablations.training): results do not depend on the worker
count, the parallelism or the micro-batching; checkpoints reshard; a killed worker restarts
the group from its last checkpoint (Ray Train); a run's workers span nodes.

Worker-count invariance is checked twice: on plain gloo process groups (torch.multiprocessing,
seconds), for every (stage, parallel) pair, and through Ray Train for the failure and
placement paths. fp32 on CPU throughout.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from ablations.configs import default_run_config
from ablations.recipes.common import smoke
from ablations.training import checkpoint
from ablations.training.config import ParallelConfig
from models.config import ConfigError, to_dict
from tests._ports import free_port

TOL = 1e-5  # fp32: the bound on weights and loss curves, worker counts apart


def _cfg(steps: int = 4, checkpoint_every: int = 2, lr_vae: float = 1e-4, lr_dit: float = 1e-4):
    """The smoke-sized tiny run, with 4-sample global batches so 2 workers x 2 micro-batches split it.

    The learning rates are lowered from the presets' (3e-4, 1e-3): Adam divides each update by
    the root of the squared gradient, so a weight whose gradient is ~0 moves by up to lr on
    float noise alone (summation order differs between one batch of 4 and two of 2). At the
    VAE preset's 3e-4 the 1-vs-2-worker gap after 4 steps measured 1.7e-5; at 1e-4, 4.9e-6.
    """
    cfg = smoke(default_run_config("ltx", "tiny"))
    cfg = dataclasses.replace(
        cfg,
        vae_data=dataclasses.replace(cfg.vae_data, clips_per_video=2),
        vae_train=dataclasses.replace(cfg.vae_train, steps=steps, batch_size=4, checkpoint_every=checkpoint_every,
                                      lr=lr_vae, warmup_steps=1),
        dit_train=dataclasses.replace(cfg.dit_train, steps=steps, batch_size=4, checkpoint_every=checkpoint_every,
                                      lr=lr_dit, warmup_steps=1),
    )
    return cfg


@pytest.fixture(scope="module")
def latents_dir(tmp_path_factory) -> Path:
    """A VAE trained 2 steps and the synthetic scenes encoded with it (for train_dit)."""
    from ablations.executor import run_encode_latents, train_vae_entry

    cfg = _cfg(steps=2)
    root = tmp_path_factory.mktemp("latents")
    train_vae_entry(to_dict(cfg), str(root / "vae"), layout=ParallelConfig())
    run_encode_latents(cfg, root / "latents", {"train_vae": root / "vae"}, None)
    return root / "latents"


def _worker(rank: int, world: int, port: int, stage: str, config: dict, folder: str, layout: dict, extra: dict) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        from ablations import executor

        entry = getattr(executor, f"{stage}_entry")
        entry(config, folder, **extra, layout=ParallelConfig(**layout))
    finally:
        dist.destroy_process_group()


def _train(stage: str, cfg, folder: Path, layout: ParallelConfig, latents: Path | None = None) -> None:
    """Run the stage entry on `layout.workers` gloo processes (1: in this process, no group)."""
    from ablations import executor

    extra = {"latents_dir": str(latents)} if stage == "train_dit" else {}
    if layout.workers == 1:
        getattr(executor, f"{stage}_entry")(to_dict(cfg), str(folder), **extra, layout=layout)
        return
    mp.start_processes(_worker, args=(layout.workers, free_port(), stage, to_dict(cfg), str(folder),
                                      dataclasses.asdict(layout), extra),
                       nprocs=layout.workers, start_method="spawn")


def _final(stage: str, folder: Path) -> dict[str, torch.Tensor]:
    from ablations import artifacts

    return artifacts.load(folder, "vae" if stage == "train_vae" else "dit")[0]


def _curve(folder: Path, key: str) -> list[float]:
    return [row[key] for row in json.loads((folder / "curve.json").read_text())]


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


@pytest.fixture(scope="module")
def one_worker(latents_dir, tmp_path_factory) -> dict[str, Path]:
    """Each stage trained on one worker (no process group): the reference."""
    root = tmp_path_factory.mktemp("one")
    for stage in ("train_vae", "train_dit"):
        _train(stage, _cfg(), root / stage, ParallelConfig(), latents_dir)
    return {stage: root / stage for stage in ("train_vae", "train_dit")}


@pytest.mark.parametrize("stage", ["train_vae", "train_dit"])
@pytest.mark.parametrize("parallel,accum", [("ddp", 1), ("fsdp", 2)])
def test_two_workers_match_one_at_the_same_global_batch(stage, parallel, accum, latents_dir, one_worker, tmp_path):
    one, two = one_worker[stage], tmp_path / "two"
    _train(stage, _cfg(), two, ParallelConfig(workers=2, parallel=parallel, grad_accum=accum), latents_dir)
    key = "total" if stage == "train_vae" else "loss"
    curve_one, curve_two = _curve(one, key), _curve(two, key)
    assert len(curve_one) == len(curve_two) == 4
    assert max(abs(x - y) for x, y in zip(curve_one, curve_two)) < TOL
    a, b = _final(stage, one), _final(stage, two)
    stats = [k for k in a if k.startswith("latents_")]  # the VAE's latent statistics: a forward pass, not weights
    diff = _max_diff({k: v for k, v in a.items() if k not in stats}, {k: v for k, v in b.items() if k not in stats})
    print(f"{stage} {parallel} accum={accum}: max weight diff {diff:.3g}")
    assert diff < TOL
    if stats:  # computed by encoding clips with those weights: the weights' gap, amplified through the encoder
        assert _max_diff({k: a[k] for k in stats}, {k: b[k] for k in stats}) < 10 * TOL
    meta = checkpoint.read(checkpoint.latest(two))["meta"]
    assert meta["world_size"] == 2 and meta["step"] == 4


def test_the_weights_do_depend_on_the_batches(latents_dir, one_worker, tmp_path):
    """The invariance above is not vacuous: another seed (other batches and draws) moves the weights."""
    _train("train_dit", dataclasses.replace(_cfg(), seed=1), tmp_path / "b", ParallelConfig(), latents_dir)
    assert _max_diff(_final("train_dit", one_worker["train_dit"]), _final("train_dit", tmp_path / "b")) > 100 * TOL


def test_an_fsdp_checkpoint_written_by_two_workers_resumes_on_one(latents_dir, one_worker, tmp_path):
    cfg = _cfg(steps=4, checkpoint_every=2)
    split = tmp_path / "split"
    _train("train_dit", dataclasses.replace(cfg, dit_train=dataclasses.replace(cfg.dit_train, steps=2)), split,
           ParallelConfig(workers=2, parallel="fsdp"), latents_dir)
    written = checkpoint.read(checkpoint.latest(split))["meta"]
    assert written["world_size"] == 2 and written["step"] == 2
    (split / "dit.safetensors").unlink()  # the 2-step run finished; resume it to 4 steps on one worker
    _train("train_dit", cfg, split, ParallelConfig(), latents_dir)
    attempts = json.loads((split / "attempts.json").read_text())
    assert [a["world_size"] for a in attempts] == [2, 1] and attempts[1]["resume_step"] == 2
    whole = one_worker["train_dit"]
    assert _max_diff(_final("train_dit", whole), _final("train_dit", split)) < TOL
    assert max(abs(x - y) for x, y in zip(_curve(whole, "loss"), _curve(split, "loss"))) < TOL


def test_activation_checkpointing_replays_the_decoder_noise(tmp_path):
    """Recomputing a noise-injecting decoder stage in backward must redraw the same noise:
    the gradients equal those without checkpointing."""
    from ablations.stages.train_vae import build_state, vae_training_step
    from ablations.training.world import World
    from models.rng import BatchRNG

    cfg = _cfg()
    assert any(cfg.vae.decoder_inject_noise if isinstance(cfg.vae.decoder_inject_noise, tuple) else [True])
    video = torch.rand(2, 3, 9, 32, 32) * 2 - 1
    grads = []
    for ac in (False, True):
        state = build_state(cfg.vae, cfg.loss, cfg.vae_train, torch.device("cpu"),
                            ParallelConfig(activation_checkpointing=ac), World())
        # noise scales start at 0; make them matter so a redraw would change the gradients
        with torch.no_grad():
            for name, p in state.vae.named_parameters():
                if "noise_scale" in name:
                    p.fill_(0.5)
        state.optimizer.step = lambda: None  # keep the weights: compare gradients
        vae_training_step(state, [(video, BatchRNG(0, 0, [0, 1]), 1.0)])
        grads.append({n.replace("unit.", ""): p.grad.clone() for n, p in state.vae.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    assert _max_diff(grads[0], grads[1]) < 1e-6


def test_a_batch_that_does_not_split_is_refused_before_launch():
    from ablations.configs import check_buildable

    cfg = dataclasses.replace(_cfg(), train=ParallelConfig(workers=3))
    with pytest.raises(ConfigError, match="vae_train.batch_size=4 does not split into train.workers=3"):
        check_buildable(cfg, {"train_vae"})
    with pytest.raises(ConfigError, match="train.workers must be an integer from 1 to 4,096, not 0"):
        ParallelConfig(workers=0)


def test_compiled_and_checkpointed_blocks_train_as_eager_ones():
    """`train.compile` (regional, per block) and `train.activation_checkpointing` change how,
    not what: three DiT steps give the eager losses and gradient norms."""
    from ablations.stages.train_dit import build_state, dit_training_step
    from ablations.training.world import World
    from models.rng import BatchRNG

    cfg = _cfg()
    x = torch.randn(2, cfg.dit.in_channels, 2, 1, 1)
    text, mask = torch.randn(2, 8, cfg.dit.caption_channels), torch.ones(2, 8, dtype=torch.bool)
    null = (torch.zeros(1, 8, cfg.dit.caption_channels), torch.ones(1, 8, dtype=torch.bool))
    runs = []
    for layout in (ParallelConfig(), ParallelConfig(compile=True, activation_checkpointing=True)):
        state = build_state(cfg.dit, cfg.dit_train, torch.device("cpu"), layout, World())
        runs.append([dit_training_step(state, [(x, text, mask, BatchRNG(0, i, [0, 1]), 1.0)], None, None, null, 24.0,
                                       cfg.flow, cfg.dit_train) for i in range(3)])
    for eager, compiled in zip(*runs):
        assert abs(eager["loss"] - compiled["loss"]) < 1e-5 and abs(eager["grad_norm"] - compiled["grad_norm"]) < 1e-4
