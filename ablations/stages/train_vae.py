"""The `train_vae` stage: fit one VAE on clips, checkpoint and resume, save the loss curve
and the per-channel latent statistics used to normalise latents downstream.

With `vae.init` set, training starts from that LTX-Video checkpoint (fine-tuning; loaded
by `models.weights`, fp32, straight onto the training device) instead of a random init.
Its per-channel latent statistics are kept by default (`vae_train.latent_stats`): an official
DiT (`dit.init`) was trained on latents normalised by them. Without `vae.init`, or with
`latent_stats=recompute`, they are measured on this run's clips after training.

The training step is a plain function (`vae_training_step`) so the per-component tests
can run one step for every registered switch and loss.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import torch
from torch import nn

from ablations import artifacts
from ablations.stages.common import Progress, atomic_write_json, pick_device, seed_everything, warmup_lr
from models.config import ADAM_BETAS, LEARNING_RATE, SEED, STEPS, Int, Real, declare_ranges, to_dict
from models.losses.base import LossInputs, VAELossConfig, build_loss_terms, sample_decoder_noise, weight_fields
from models.rng import randn

MicroBatchData = tuple  # (video (b, 3, T, H, W), models.rng.BatchRNG, loss scale)

CHECKPOINTS = "checkpoints"  # DCP checkpoints (ablations.training.checkpoint); the newest complete one resumes
FINAL = "vae.safetensors"  # weights + latent statistics, configs in the header, once done (ablations.artifacts)


@dataclass(frozen=True, kw_only=True)
class VAETrainConfig:
    steps: int = 400  # optimizer steps
    batch_size: int = 4  # clips per step
    lr: float = 3e-4  # AdamW peak learning rate (after a linear warm-up); 2e-3 stalls the tiny VAE at the mean colour
    warmup_steps: int = 20  # linear warm-up length
    weight_decay: float = 1e-4  # AdamW decoupled weight decay
    betas: tuple[float, float] = (0.9, 0.99)  # AdamW betas
    grad_clip: float = 1.0  # max global grad norm
    checkpoint_every: int = 100  # steps between checkpoints (resume point)
    seed: int = 0  # seeds init, data order and posterior noise
    stats_max_clips: int = 64  # clips encoded for the latent mean/std (when they are recomputed)
    # the per-channel latent mean/std saved with the VAE, which encode_latents and sample normalise by:
    # "checkpoint" keeps those vae.init loaded (an official DiT was trained on latents normalised by them),
    # "recompute" measures them on stats_max_clips of this run's clips, "auto" is "checkpoint" with a
    # vae.init and "recompute" without; the header's latent_stats records which one was done
    latent_stats: Literal["auto", "checkpoint", "recompute"] = "auto"


declare_ranges(VAETrainConfig, {
    "steps": STEPS, "batch_size": Int(1, 65_536), "lr": LEARNING_RATE, "warmup_steps": Int(0, 10_000_000),
    "weight_decay": Real(0.0, 1.0), "betas": ADAM_BETAS, "grad_clip": Real(0.0, 1e6, open_lo=True),
    "checkpoint_every": STEPS, "seed": SEED, "stats_max_clips": Int(1, 1_000_000),
})


@dataclass
class VAEState:
    """Everything the step needs; the stage builds it once, the tests build it directly."""

    vae: nn.Module
    terms: nn.ModuleDict
    weights: dict[str, float]
    optimizer: torch.optim.Optimizer
    disc_optimizer: torch.optim.Optimizer | None
    loss_cfg: VAELossConfig
    generator: torch.Generator
    grad_clip: float = 1.0
    step: int = 0
    curve: list[dict[str, Any]] = field(default_factory=list)
    init: dict[str, Any] | None = None  # models.weights.LoadReport of `vae.init`, when training started from it


def build_vae_model(vae_cfg: Any, device: torch.device) -> tuple[nn.Module, dict[str, Any] | None]:
    """A fresh VAE, or the `vae.init` checkpoint loaded onto `device` (with what was loaded)."""
    if getattr(vae_cfg, "init", None):
        from models.weights import load_vae as load_checkpoint

        vae, report = load_checkpoint(vae_cfg, device=device)
        return vae, report.as_dict()
    return vae_cfg.build().to(device), None


def build_state(vae_cfg: Any, loss_cfg: VAELossConfig, train: VAETrainConfig, device: torch.device,
                layout: Any = None, world: Any = None) -> VAEState:
    """Models, loss terms and optimizers on `device`; with a `layout` the VAE is parallelised
    (activation checkpointing, compile, FSDP2) before its optimizer is built."""
    generator = seed_everything(train.seed)
    vae, init = build_vae_model(vae_cfg, device)
    if layout is not None:
        from ablations.training import parallelize

        parallelize.apply(vae, "vae", layout, world)
    terms = build_loss_terms(loss_cfg).to(device)
    weights = {k: w for k, w in weight_fields(loss_cfg).items() if w > 0}
    optimizer = torch.optim.AdamW(vae.parameters(), lr=train.lr, betas=train.betas, weight_decay=train.weight_decay)
    disc_params = [p for name, t in terms.items() if t.adversarial for p in t.parameters()]
    disc_optimizer = (
        torch.optim.AdamW(disc_params, lr=loss_cfg.disc_lr, betas=loss_cfg.disc_betas, weight_decay=0.0)
        if disc_params
        else None
    )
    return VAEState(vae, terms, weights, optimizer, disc_optimizer, loss_cfg, generator, train.grad_clip, init=init)


def _decoder_timestep(vae: nn.Module, batch: int, device: torch.device) -> torch.Tensor | None:
    """Clean latents are decoded at t = 0 when the decoder is timestep-conditioned."""
    if getattr(vae.cfg, "decoder_timestep_conditioning", False):
        return torch.zeros(batch, device=device)
    return None


def _micro_forward(state: VAEState, video: torch.Tensor, rng: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor], LossInputs]:
    """Generator-side losses of one micro-batch: (weighted total, unweighted terms, the inputs)."""
    vae, device = state.vae, video.device
    mean, logvar = vae.encode(video)  # (B, Cz, t, h, w) each
    z = mean + torch.exp(0.5 * logvar) * randn(mean.shape, rng, mean)
    recon = vae.decode(z, timestep=_decoder_timestep(vae, video.shape[0], device), generator=rng)
    denoised = None
    if any(state.terms[name].needs_denoised for name in state.weights):
        noisy, t = sample_decoder_noise(z, state.loss_cfg.diffusion_max_t, generator=rng)
        timestep = t if getattr(vae.cfg, "decoder_timestep_conditioning", False) else None
        denoised = vae.decode(noisy, timestep=timestep, generator=rng)
    inputs = LossInputs(video=video, recon=recon, mean=mean, logvar=logvar, denoised=denoised, rng=rng)
    active = [n for n in state.weights if state.terms[n].is_active(state.step)]  # GANs wait for gan_start_step
    parts = {name: state.terms[name](inputs) for name in active}
    total = sum(state.weights[name] * value for name, value in parts.items())
    return total, parts, inputs


def vae_training_step(state: VAEState, video: torch.Tensor | list[MicroBatchData], trainer: Any = None) -> dict[str, float]:
    """One optimizer step; returns the loss terms (this rank's means).

    `video` (B, 3, T, H, W) in [-1, 1] draws from `state.generator` (the per-component tests);
    the training core passes its micro-batches [(video, BatchRNG, scale)] and itself, which
    averages the gradients over the workers and clips them by their global norm.

    Generator side: weighted sum of every active term. The denoising-decoder objective
    decodes `(1 - t) z + t eps` at timestep t (a second decoder pass). Adversarial terms
    then update their discriminators on the detached reconstruction.
    """
    from ablations.training.world import World, check_finite_everywhere

    micro = [(video, state.generator, 1.0)] if isinstance(video, torch.Tensor) else video
    world = trainer.world if trainer is not None else World(device=micro[0][0].device)
    state.vae.train()
    state.optimizer.zero_grad(set_to_none=True)
    sums: dict[str, float] = {}
    kept: list[LossInputs] = []
    adversarial: list[str] = []
    for clip, rng, scale in micro:
        total, parts, inputs = _micro_forward(state, clip, rng)
        values = {"total": float(total.detach()), **{k: float(v.detach()) for k, v in parts.items()}}
        # fail before the optimizer step, so the last checkpoint and the weights stay clean
        check_finite_everywhere(values, state.step, world)
        (total * scale).backward()
        for k, v in values.items():
            sums[k] = sums.get(k, 0.0) + v * scale
        adversarial = [name for name in parts if state.terms[name].adversarial]
        if adversarial:
            kept.append(dataclasses.replace(inputs, recon=inputs.recon.detach(), denoised=None, mean=inputs.mean.detach(),
                                            logvar=inputs.logvar.detach()))
    if trainer is not None:
        grad_norm = trainer.optimizer_step(state.optimizer, [state.vae], state.grad_clip)
    else:
        grad_norm = float(torch.nn.utils.clip_grad_norm_(state.vae.parameters(), state.grad_clip))
        state.optimizer.step()
    losses = {"total": sums.pop("total"), "grad_norm": float(grad_norm), **sums}
    if adversarial and state.disc_optimizer is not None:
        state.disc_optimizer.zero_grad(set_to_none=True)
        disc_total = 0.0
        for (_, _, scale), detached in zip(micro, kept):
            disc_loss = sum(state.terms[name].discriminator_loss(detached) for name in adversarial)
            (disc_loss * scale).backward()
            disc_total += float(disc_loss.detach()) * scale
        if trainer is not None:
            trainer.optimizer_step(state.disc_optimizer, [state.terms], None)
        else:
            state.disc_optimizer.step()
        losses["discriminator"] = disc_total
    state.step += 1
    return losses


def latent_stats_source(vae_cfg: Any, train: VAETrainConfig) -> str:
    """"checkpoint" or "recompute": where the saved latent statistics come from (see `latent_stats`).

    Raises ConfigError for "checkpoint" without a `vae.init` to take them from.
    """
    from models.config import ConfigError

    init = getattr(vae_cfg, "init", None)
    if train.latent_stats == "checkpoint" and not init:
        raise ConfigError("vae_train.latent_stats=checkpoint keeps the statistics of vae.init, which is not set; "
                          "set vae.init or use vae_train.latent_stats=recompute (or auto).")
    if train.latent_stats == "auto":
        return "checkpoint" if init else "recompute"
    return train.latent_stats


@torch.no_grad()
def latent_statistics(vae: nn.Module, videos: Any, batch_size: int = 4,
                      max_clips: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of posterior means over the first `max_clips` of `videos` -> (Cz,), (Cz,).

    `videos`: a tensor (N, 3, T, H, W) or a dataset of (3, T, H, W) items (shapes may differ
    between buckets; batches are consecutive items of one shape).
    """
    from ablations.training.data import same_shape_runs

    vae.eval()
    device = next(vae.parameters()).device
    count = len(videos) if max_clips is None else max_clips
    means = [vae.encode(batch.to(device))[0].float().cpu() for batch in same_shape_runs(videos, count, batch_size)]
    flat = torch.cat([m.transpose(0, 1).flatten(1) for m in means], dim=1)  # (Cz, sum of N*t*h*w)
    return flat.mean(dim=1), flat.std(dim=1).clamp_min(1e-6)


def checkpoint_config(vae_cfg: Any, loss_cfg: VAELossConfig, train: VAETrainConfig, data: Any = None) -> dict[str, Any]:
    """What decides a `train_vae` checkpoint's weights: recorded in each checkpoint and matched on resume
    (`training.checkpoint.check_config`); sections named as in the run config, as `--set` names them."""
    return {"vae": vae_cfg, "loss": loss_cfg, "vae_train": train, "vae_data": data}


def train_vae(
    vae_cfg: Any,
    loss_cfg: VAELossConfig,
    train: VAETrainConfig,
    videos: Any,
    out_dir: Path,
    *,
    layout: Any = None,
    progress: bool = True,
    on_step: Callable[[int, int, dict[str, float]], None] | None = None,
    stop_after: int | None = None,
    data: Any = None,
) -> dict[str, Any]:
    """Train on `videos` in [-1, 1]; resume from `out_dir/checkpoints/` (only checkpoints of this
    `checkpoint_config`; `data` is the DataSpec `videos` came from, when the folder's name does not
    already stand for it).

    `videos` is a tensor (N, 3, T, H, W) held in memory, or a dataset of (3, T, H, W) items
    (`ablations.training.data.ClipVideos` over a manifest) that the training core streams:
    each rank decodes only its slice of each step's batch, in `layout.data_workers`
    DataLoader processes. Items of several shapes (buckets) give batches of one shape each.

    Runs on the current process group (`ablations.training`: one worker, or each Ray Train
    worker calls this with the same arguments). Writes `out_dir/vae.safetensors` (weights
    with latent statistics; configs in its header, `ablations.artifacts`) and
    `out_dir/curve.json` from rank 0; returns a summary.
    `stop_after` ends the run early after that many steps (as an interruption would) and
    is how the resume test interrupts a stage.
    """
    from ablations.training.checkpoint import full_state_dict
    from ablations.training.config import ParallelConfig, check_batch_split
    from ablations.training.loop import Schedule, Trainer
    from ablations.training.parallelize import autocast_for
    from ablations.training.world import current_world

    out_dir = Path(out_dir)
    stats_source = latent_stats_source(vae_cfg, train)  # a bad choice fails before any work
    layout = layout or ParallelConfig()
    world = current_world()
    check_batch_split(min(train.batch_size, len(videos)), layout, "vae_train")
    state = build_state(vae_cfg, loss_cfg, train, world.device, layout, world)
    models = {"vae": state.vae, "terms": state.terms}
    optimizers = {"vae": (state.vae, state.optimizer)}
    if state.disc_optimizer is not None:
        optimizers["disc"] = (state.terms, state.disc_optimizer)
    from ablations.training.data import buckets_of

    streamed = not isinstance(videos, torch.Tensor)
    schedule = Schedule(train.steps, train.batch_size, train.seed, train.checkpoint_every, len(videos),
                        buckets=buckets_of(videos))
    trainer = Trainer("train_vae", schedule, layout, world, out_dir, models, optimizers,
                      config=checkpoint_config(vae_cfg, loss_cfg, train, data))
    trainer.resume()
    state.step = trainer.step
    autocast = autocast_for(layout, world)
    bar = Progress(train.steps, f"train_vae {vae_cfg.kind}", start=trainer.step, enabled=progress and world.is_main,
                   callback=on_step)

    def set_lr(step: int) -> None:
        for group in state.optimizer.param_groups:
            group["lr"] = warmup_lr(step, train.lr, train.warmup_steps)

    def step_fn(step: int, micro: list) -> dict[str, float]:
        batches = [(m.data if streamed else videos[m.indices]).to(world.device) for m in micro]
        with autocast():
            return vae_training_step(state, [(b, m.rng, m.scale) for b, m in zip(batches, micro)], trainer)

    try:
        summary = trainer.run(step_fn, on_step=lambda step, total, losses: bar.update(step, losses),
                              stop_after=stop_after, set_lr=set_lr, dataset=videos if streamed else None,
                              data_workers=layout.data_workers)
    finally:
        bar.close()
    summary["init"] = state.init
    if not summary["finished"]:
        return summary
    if stats_source == "recompute":  # else the buffers still hold vae.init's: no optimizer step changes a buffer
        mean, std = latent_statistics(state.vae, videos, max_clips=train.stats_max_clips)
        state.vae.latents_mean.copy_(mean.to(state.vae.latents_mean.device))
        state.vae.latents_std.copy_(std.to(state.vae.latents_std.device))
    weights = full_state_dict(state.vae)  # every rank takes part (FSDP2 gathers); rank 0 writes
    if world.is_main:
        artifacts.save(out_dir / FINAL, "vae", weights,
                       {"kind": vae_cfg.kind, "config": to_dict(vae_cfg), "loss": to_dict(loss_cfg), "train": to_dict(train),
                        "init": state.init, "steps": trainer.step, "latent_stats": stats_source,
                        **({"data": to_dict(data)} if data is not None else {})})  # eval-recon scores at its clip shape
        atomic_write_json(out_dir / "curve.json", trainer.curve)
    world.barrier()
    summary["final_loss"] = trainer.curve[-1]["total"] if trainer.curve else None
    return summary


def load_vae(path: Path, device: torch.device | None = None) -> nn.Module:
    """Rebuild a trained VAE (with its latent statistics) from `vae.safetensors` or its folder."""
    from models.config import from_dict
    from models.vae import VAES

    weights, meta = artifacts.load(path, "vae")
    vae = from_dict(VAES.get(meta["kind"]), meta["config"]).build()
    vae.load_state_dict(weights)
    vae.training_loss = meta.get("loss")  # the loss config it trained with (sample checks the decode against it)
    return vae.to(device or pick_device()).eval()
