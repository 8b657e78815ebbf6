"""The `train_vae` stage: fit one VAE on clips, checkpoint and resume, save the loss curve
and the per-channel latent statistics used to normalise latents downstream.

With `vae.init` set, training starts from that LTX-Video checkpoint (fine-tuning; loaded
by `models.weights`, fp32, straight onto the training device) instead of a random init.
The latent statistics are recomputed from the fine-tuned encoder like any other run's.

The training step is a plain function (`vae_training_step`) so the per-component tests
can run one step for every registered switch and loss.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ablations.stages.common import (
    Progress,
    atomic_torch_save,
    atomic_write_json,
    autocast,
    batch_indices,
    check_finite,
    load_training_state,
    pick_device,
    save_training_state,
    seed_everything,
    warmup_lr,
)
from models.config import to_dict
from models.losses.base import LossInputs, VAELossConfig, build_loss_terms, sample_decoder_noise, weight_fields

CHECKPOINT = "checkpoint.pt"  # the latest checkpoint; replaced atomically every N steps
FINAL = "vae.pt"  # weights + config + latent statistics once training is done


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
    stats_max_clips: int = 64  # clips encoded for the latent mean/std


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


def build_state(vae_cfg: Any, loss_cfg: VAELossConfig, train: VAETrainConfig, device: torch.device) -> VAEState:
    generator = seed_everything(train.seed)
    vae, init = build_vae_model(vae_cfg, device)
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


def vae_training_step(state: VAEState, video: torch.Tensor) -> dict[str, float]:
    """One optimizer step on `video` (B, 3, T, H, W) in [-1, 1]; returns the loss terms.

    Generator side: weighted sum of every active term. The denoising-decoder objective
    decodes `(1 - t) z + t eps` at timestep t (a second decoder pass). Adversarial terms
    then update their discriminators on the detached reconstruction.
    """
    vae, device = state.vae, video.device
    vae.train()
    mean, logvar = vae.encode(video)  # (B, Cz, t, h, w) each
    noise = torch.randn(mean.shape, generator=state.generator).to(device)
    z = mean + torch.exp(0.5 * logvar) * noise
    recon = vae.decode(z, timestep=_decoder_timestep(vae, video.shape[0], device), generator=state.generator)
    denoised = None
    if any(state.terms[name].needs_denoised for name in state.weights):
        noisy, t = sample_decoder_noise(z, state.loss_cfg.diffusion_max_t, generator=state.generator)
        timestep = t if getattr(vae.cfg, "decoder_timestep_conditioning", False) else None
        denoised = vae.decode(noisy, timestep=timestep, generator=state.generator)
    inputs = LossInputs(video=video, recon=recon, mean=mean, logvar=logvar, denoised=denoised)

    active = [n for n in state.weights if state.terms[n].is_active(state.step)]  # GANs wait for gan_start_step
    parts = {name: state.terms[name](inputs) for name in active}
    total = sum(state.weights[name] * value for name, value in parts.items())
    # fail before the optimizer step, so the last checkpoint and the weights stay clean
    check_finite({"total": float(total.detach()), **{k: float(v.detach()) for k, v in parts.items()}}, state.step)
    state.optimizer.zero_grad(set_to_none=True)
    total.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(vae.parameters(), state.grad_clip)
    state.optimizer.step()

    losses = {"total": float(total.detach()), "grad_norm": float(grad_norm)}
    losses.update({name: float(value.detach()) for name, value in parts.items()})
    adversarial = [name for name in active if state.terms[name].adversarial]
    if adversarial and state.disc_optimizer is not None:
        detached = dataclasses.replace(inputs, recon=recon.detach(), denoised=None)
        disc_loss = sum(state.terms[name].discriminator_loss(detached) for name in adversarial)
        state.disc_optimizer.zero_grad(set_to_none=True)
        disc_loss.backward()
        state.disc_optimizer.step()
        losses["discriminator"] = float(disc_loss.detach())
    state.step += 1
    return losses


def _parts(state: VAEState) -> dict[str, Any]:
    return {"vae": state.vae, "terms": state.terms, "optimizer": state.optimizer, "disc_optimizer": state.disc_optimizer}


@torch.no_grad()
def latent_statistics(vae: nn.Module, videos: torch.Tensor, batch_size: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of posterior means over `videos` (N, 3, T, H, W) -> (Cz,), (Cz,)."""
    vae.eval()
    device = next(vae.parameters()).device
    means = [vae.encode(videos[i : i + batch_size].to(device))[0].float().cpu() for i in range(0, len(videos), batch_size)]
    stacked = torch.cat(means).transpose(0, 1).flatten(1)  # (Cz, N*t*h*w)
    return stacked.mean(dim=1), stacked.std(dim=1).clamp_min(1e-6)


def train_vae(
    vae_cfg: Any,
    loss_cfg: VAELossConfig,
    train: VAETrainConfig,
    videos: torch.Tensor,
    out_dir: Path,
    *,
    progress: bool = True,
    on_step: Callable[[int, int, dict[str, float]], None] | None = None,
    stop_after: int | None = None,
) -> dict[str, Any]:
    """Train on `videos` (N, 3, T, H, W) in [-1, 1]; resume from `out_dir/checkpoint.pt`.

    Writes `out_dir/vae.pt` (config, weights with latent statistics) and
    `out_dir/curve.json`; returns a summary. `stop_after` ends the run early after that
    many steps (as an interruption would) and is how the resume test interrupts a stage.
    """
    out_dir = Path(out_dir)
    device = pick_device()
    state = build_state(vae_cfg, loss_cfg, train, device)
    ckpt_path = out_dir / CHECKPOINT
    if ckpt_path.exists():
        state.step, state.curve = load_training_state(ckpt_path, _parts(state), state.generator)
    resumed_from = state.step
    bar = Progress(train.steps, f"train_vae {vae_cfg.kind}", start=state.step, enabled=progress, callback=on_step)
    started = time.perf_counter()
    try:
        while state.step < train.steps:
            if stop_after is not None and state.step >= stop_after:
                break
            for group in state.optimizer.param_groups:
                group["lr"] = warmup_lr(state.step, train.lr, train.warmup_steps)
            video = videos[batch_indices(state.step, len(videos), train.batch_size, train.seed)].to(device)
            with autocast(device):
                losses = vae_training_step(state, video)
            state.curve.append({"stage": "train_vae", "step": state.step, **losses})
            bar.update(state.step, losses)
            if state.step % train.checkpoint_every == 0 or state.step == train.steps:
                save_training_state(ckpt_path, state.step, _parts(state), state.generator, state.curve)
    finally:
        bar.close()
    wall = time.perf_counter() - started
    summary = {"steps": state.step, "resumed_from": resumed_from, "wall_time_s": wall, "finished": state.step >= train.steps,
               "init": state.init}
    if not summary["finished"]:
        save_training_state(ckpt_path, state.step, _parts(state), state.generator, state.curve)
        return summary
    stats_videos = videos[: train.stats_max_clips]
    mean, std = latent_statistics(state.vae, stats_videos)
    state.vae.latents_mean.copy_(mean.to(state.vae.latents_mean.device))
    state.vae.latents_std.copy_(std.to(state.vae.latents_std.device))
    atomic_torch_save(
        {"kind": vae_cfg.kind, "config": to_dict(vae_cfg), "loss": to_dict(loss_cfg), "train": to_dict(train),
         "init": state.init, "state_dict": {k: v.cpu() for k, v in state.vae.state_dict().items()}},
        out_dir / FINAL,
    )
    atomic_write_json(out_dir / "curve.json", state.curve)
    summary["final_loss"] = state.curve[-1]["total"] if state.curve else None
    return summary


def load_vae(path: Path, device: torch.device | None = None) -> nn.Module:
    """Rebuild a trained VAE (with its latent statistics) from `vae.pt` or its folder."""
    from models.config import from_dict
    from models.vae import VAES

    given = Path(path)
    path = given / FINAL if given.suffix != ".pt" else given
    if not path.exists():
        folder = given if given.suffix != ".pt" else given.parent
        raise FileNotFoundError(f"No trained VAE at {path}; run `ltxlab train-vae --out {folder}` first.")
    blob = torch.load(path, map_location="cpu", weights_only=False)
    cfg = from_dict(VAES.get(blob["kind"]), blob["config"])
    vae = cfg.build()
    vae.load_state_dict(blob["state_dict"])
    vae.training_loss = blob.get("loss")  # the loss config it trained with (sample checks the decode against it)
    return vae.to(device or pick_device()).eval()
