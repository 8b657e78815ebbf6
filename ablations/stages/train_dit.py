"""The `train_dit` stage: rectified-flow training of the denoising transformer on encoded latents.

Text-to-video and image-to-video are trained jointly, as LTX-Video does (arXiv 2501.00103
§3.3): `models.flow.flow_matching_loss` keeps the first latent frame clean with
probability `flow.i2v_probability` and replaces captions by the null caption with
probability `flow.caption_dropout` (for classifier-free guidance). Weights are averaged
with an EMA whose decay warms up as (1 + step) / (10 + step) (the usual DiT/diffusers
practice, so a short run's EMA is not dominated by the initialisation); `dit.safetensors`
holds the EMA weights (`ablations.artifacts`).

Same structure as `train_vae`: a distributed checkpoint every N steps under `checkpoints/`
(model, EMA, optimizer, RNG states, curve) and resume from it; `stop_after` interrupts like a crash.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ablations import artifacts
from ablations.stages.common import Progress, atomic_write_json, pick_device, seed_everything, warmup_lr
from ablations.stages.encode_latents import load_latents
from models.config import ADAM_BETAS, LEARNING_RATE, SEED, STEPS, Int, Real, declare_ranges, to_dict

CHECKPOINTS = "checkpoints"  # DCP checkpoints (ablations.training.checkpoint); the newest complete one resumes
FINAL = "dit.safetensors"  # EMA weights, configs + provenance (VAE dir, latent shape) in the header, once done


@dataclass(frozen=True, kw_only=True)
class DiTTrainConfig:
    steps: int = 2000  # optimizer steps
    batch_size: int = 32  # latent clips per step
    lr: float = 1e-3  # AdamW peak learning rate (after a linear warm-up)
    warmup_steps: int = 50  # linear warm-up length
    weight_decay: float = 0.0  # AdamW decoupled weight decay
    betas: tuple[float, float] = (0.9, 0.99)  # AdamW betas
    grad_clip: float = 1.0  # max global grad norm
    ema_decay: float = 0.999  # EMA decay of the weights saved in dit.safetensors (warmed up, see module docstring)
    checkpoint_every: int = 200  # steps between checkpoints (resume point)
    seed: int = 0  # seeds init, data order, timesteps, noise, i2v and caption dropout draws


declare_ranges(DiTTrainConfig, {
    "steps": STEPS, "batch_size": Int(1, 65_536), "lr": LEARNING_RATE, "warmup_steps": Int(0, 10_000_000),
    "weight_decay": Real(0.0, 1.0), "betas": ADAM_BETAS, "grad_clip": Real(0.0, 1e6, open_lo=True),
    "ema_decay": Real(0.0, 1.0, open_hi=True), "checkpoint_every": STEPS, "seed": SEED,
})


@dataclass
class DiTState:
    """Everything a training step needs; the stage builds it once, tests may build it directly."""

    model: nn.Module
    ema: nn.Module
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    step: int = 0
    curve: list[dict[str, Any]] = field(default_factory=list)


def build_state(dit_cfg: Any, train: DiTTrainConfig, device: torch.device, layout: Any = None, world: Any = None) -> DiTState:
    """Model, EMA copy and optimizer on `device`; with a `layout` both are parallelised the
    same way (the EMA's FSDP2 shards line up with the model's) before the optimizer is built."""
    generator = seed_everything(train.seed)
    if getattr(dit_cfg, "init", None):  # fine-tune an LTX-Video transformer (models.weights, fp32)
        from models.weights import load_dit as load_checkpoint

        model, _ = load_checkpoint(dit_cfg, device=device)
    else:
        model = dit_cfg.build().to(device)
    ema = copy.deepcopy(model).requires_grad_(False).eval()
    if layout is not None:
        from ablations.training import parallelize

        parallelize.apply(model, "dit", layout, world)
        parallelize.apply(ema, "dit", layout, world, trainable=False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=train.lr, betas=train.betas, weight_decay=train.weight_decay)
    return DiTState(model, ema, optimizer, generator)


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float, step: int) -> None:
    """ema <- d ema + (1 - d) model with d = min(decay, (1 + step) / (10 + step)) (shard by shard under FSDP2)."""
    d = min(decay, (1 + step) / (10 + step))
    for e, p in zip(ema.parameters(), model.parameters()):
        e.lerp_(p.detach(), 1.0 - d)
    for e, b in zip(ema.buffers(), model.buffers()):
        e.copy_(b)


def dit_training_step(
    state: DiTState,
    latents: torch.Tensor | list,
    text: torch.Tensor | None,
    mask: torch.Tensor | None,
    null_text: tuple[torch.Tensor, torch.Tensor],
    fps: float,
    flow_cfg: Any,
    train: DiTTrainConfig,
    trainer: Any = None,
) -> dict[str, float]:
    """One optimizer + EMA step; returns this rank's means.

    Either latents (B, Cz, t, h, w), text (B, L, D), mask (B, L) drawing from
    `state.generator`, or (from the training core) a list of micro-batches
    [(latents, text, mask, BatchRNG, scale)] with `text`/`mask` None and the trainer,
    which averages gradients over the workers and clips them by their global norm.
    """
    from ablations.training.world import World, check_finite_everywhere
    from models.flow import flow_matching_loss

    micro = [(latents, text, mask, state.generator, 1.0)] if isinstance(latents, torch.Tensor) else latents
    world = trainer.world if trainer is not None else World(device=micro[0][0].device)
    state.model.train()
    state.optimizer.zero_grad(set_to_none=True)
    sums = {"loss": 0.0, "i2v_fraction": 0.0, "mean_t": 0.0}
    for x0, txt, msk, rng, scale in micro:
        loss, info = flow_matching_loss(state.model, x0, txt, msk, fps, flow_cfg, rng, null_text=null_text)
        check_finite_everywhere({"loss": float(loss.detach())}, state.step, world)  # before the update
        (loss * scale).backward()
        sums["loss"] += float(loss.detach()) * scale
        sums["i2v_fraction"] += float(info["i2v"].float().mean()) * scale
        sums["mean_t"] += float(info["t"].float().mean()) * scale
    if trainer is not None:
        grad_norm = trainer.optimizer_step(state.optimizer, [state.model], train.grad_clip)
    else:
        grad_norm = float(torch.nn.utils.clip_grad_norm_(state.model.parameters(), train.grad_clip))
        state.optimizer.step()
    update_ema(state.ema, state.model, train.ema_decay, state.step)
    state.step += 1
    return {"loss": sums["loss"], "grad_norm": float(grad_norm), "i2v_fraction": sums["i2v_fraction"], "mean_t": sums["mean_t"]}


def _text_for(data: dict[str, Any], text_cfg: Any) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """Caption embeddings (N, L, D), masks (N, L) and the null caption: cached when the
    latents were encoded with `text_cfg`, else encoded now (in-memory cached)."""
    if data["text"]["config"] == to_dict(text_cfg):
        null = data["null_text"]
        return data["text"]["embeddings"], data["text"]["mask"], (null["embeddings"], null["mask"])
    encoder = text_cfg.build()
    emb, mask = encoder.encode(data["captions"])
    return emb.cpu(), mask.cpu(), tuple(t.cpu() for t in encoder.null())


def checkpoint_config(dit_cfg: Any, flow_cfg: Any, text_cfg: Any, train: DiTTrainConfig, latents_dir: Path) -> dict[str, Any]:
    """What decides a `train_dit` checkpoint's weights: recorded in each checkpoint and matched on resume
    (`training.checkpoint.check_config`). The latents folder's name is keyed by what was encoded (the
    sweep's stage key; `ltxlab train-dit`'s latents-<hash>), so it stands for the data."""
    return {"dit": dit_cfg, "flow": flow_cfg, "text": text_cfg, "train": train, "latents": Path(latents_dir).name}


def train_dit(
    dit_cfg: Any,
    flow_cfg: Any,
    text_cfg: Any,
    train: DiTTrainConfig,
    latents_dir: Path,
    out_dir: Path,
    *,
    layout: Any = None,
    progress: bool = True,
    on_step: Callable[[int, int, dict[str, float]], None] | None = None,
    stop_after: int | None = None,
) -> dict[str, Any]:
    """Train `dit_cfg` on `encode_latents`' output in `latents_dir`; resume from `out_dir/checkpoints/`.

    Runs on the current process group (`ablations.training`; each Ray Train worker calls
    this with the same arguments). Rank 0 writes `out_dir/dit.safetensors` (the EMA weights; in
    its header kind, config, flow, text, train, vae_dir, latents_dir, latent_shape, video_shape, fps)
    and `out_dir/curve.json`; returns a summary. `stop_after` ends the run after that many
    steps, as an interruption would.
    """
    from ablations.training.checkpoint import full_state_dict
    from ablations.training.config import ParallelConfig, check_batch_split
    from ablations.training.loop import Schedule, Trainer
    from ablations.training.parallelize import autocast_for
    from ablations.training.world import current_world

    out_dir = Path(out_dir)
    layout = layout or ParallelConfig()
    world = current_world()
    device = world.device
    data = load_latents(latents_dir)
    latents = data["latents"]  # LatentShards: item i is (Cz, t, h, w), read from its memory-mapped shard
    if data["latent_shape"][0] != dit_cfg.in_channels:
        raise ValueError(f"latents have {data['latent_shape'][0]} channels but the DiT expects {dit_cfg.in_channels}; "
                         "pair the DiT preset with the VAE kind that encoded them.")
    check_batch_split(min(train.batch_size, len(latents)), layout, "dit_train")
    text, mask, null_text = _text_for(data, text_cfg)
    null_text = (null_text[0].to(device), null_text[1].to(device))
    fps = data["fps"]
    state = build_state(dit_cfg, train, device, layout, world)
    schedule = Schedule(train.steps, train.batch_size, train.seed, train.checkpoint_every, len(latents),
                        buckets=latents.buckets)
    trainer = Trainer("train_dit", schedule, layout, world, out_dir, {"model": state.model, "ema": state.ema},
                      {"model": (state.model, state.optimizer)},
                      config=checkpoint_config(dit_cfg, flow_cfg, text_cfg, train, latents_dir))
    trainer.resume()
    state.step = trainer.step
    autocast = autocast_for(layout, world)
    bar = Progress(train.steps, f"train_dit {dit_cfg.text_conditioning}", start=trainer.step,
                   enabled=progress and world.is_main, callback=on_step)

    def set_lr(step: int) -> None:
        for group in state.optimizer.param_groups:
            group["lr"] = warmup_lr(step, train.lr, train.warmup_steps)

    def step_fn(step: int, micro: list) -> dict[str, float]:
        batches = [(m.data.to(device), text[m.indices].to(device), mask[m.indices].to(device), m.rng, m.scale)
                   for m in micro]
        # RoPE takes one fps per forward; a step uses its global batch's first clip's (synthetic scenes share one)
        first = int(schedule.global_batch(step)[0])
        with autocast():
            return dit_training_step(state, batches, None, None, null_text, float(fps[first]), flow_cfg, train, trainer)

    try:
        # latents stream from their memory-mapped shards in this process: reading rows is cheap
        summary = trainer.run(step_fn, on_step=lambda step, total, losses: bar.update(step, losses),
                              stop_after=stop_after, set_lr=set_lr, dataset=latents, data_workers=0)
    finally:
        bar.close()
    if not summary["finished"]:
        return summary
    weights = full_state_dict(state.ema)  # every rank takes part (FSDP2 gathers); rank 0 writes
    if world.is_main:
        artifacts.save(out_dir / FINAL, "dit", weights, {
            "kind": dit_cfg.kind, "config": to_dict(dit_cfg), "flow": to_dict(flow_cfg), "text": to_dict(text_cfg),
            "train": to_dict(train), "vae_dir": data["vae_dir"], "latents_dir": str(Path(latents_dir).resolve()),
            "latent_shape": list(data["latent_shape"]), "video_shape": list(data["video_shape"]),
            "fps": float(fps[0]), "steps": trainer.step})
        atomic_write_json(out_dir / "curve.json", trainer.curve)
    world.barrier()
    tail = [row["loss"] for row in trainer.curve[-50:]]
    summary["final_loss"] = sum(tail) / len(tail) if tail else None  # mean of the last 50 (the loss is noisy in t)
    return summary


@dataclass
class TrainedDiT:
    """A trained DiT (EMA weights) with the configs and provenance `dit.safetensors` recorded."""

    model: nn.Module
    flow: Any  # models.flow.FlowConfig
    text: Any  # models.text.TextEncoderConfig
    vae_dir: Path
    latent_shape: tuple[int, int, int, int]  # (Cz, t, h, w) it was trained on
    video_shape: tuple[int, int, int]  # (T, H, W) pixels
    fps: float


def load_dit(path: Path, device: torch.device | None = None) -> TrainedDiT:
    """Rebuild a trained DiT from `dit.safetensors` or its folder."""
    from models.config import from_dict
    from models.dit import DITS
    from models.flow import FlowConfig
    from models.text import TextEncoderConfig

    weights, meta = artifacts.load(path, "dit")
    model = from_dict(DITS.get(meta["kind"]), meta["config"]).build()
    model.load_state_dict(weights)
    model = model.to(device or pick_device()).eval()
    return TrainedDiT(model=model, flow=from_dict(FlowConfig, meta["flow"]), text=from_dict(TextEncoderConfig, meta["text"]),
                      vae_dir=Path(meta["vae_dir"]), latent_shape=tuple(meta["latent_shape"]),
                      video_shape=tuple(meta["video_shape"]), fps=float(meta["fps"]))
