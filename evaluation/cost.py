"""Cost per variant: parameters, tokens, FLOPs (torch's FlopCounterMode) at the run shape and
at 121x512x768, latency measured on the run's hardware, and an H100 *estimate*.

The estimate is FLOPs / (peak x utilisation) with both numbers stated in the config and in
sweep.json; it is labelled as an estimate everywhere it appears. The paper's claim (121
frames at 768x512 in about 2 s on one H100) is the comparison it is for: generation cost
= `steps` DiT forwards, twice that with classifier-free guidance (the conditional and the
null caption run as one batch of 2), + one VAE decode (`generation_flops`; the `speed`
stage puts its measured wall time beside it).

The generation figures also carry what makes two DiT arms comparable: the DiT's own
parameters and FFN width (`dit.match_params` narrows an MM-DiT's), and per axis (t, h, w)
the most and least any RoPE channel turns across one clip at the run shape, plus the most
at the reference shape (with `dit.rope_scaling` the two maxima agree).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode


def _vae_flops(vae_cfg: Any, frames: int, height: int, width: int) -> tuple[int, int, list[int]]:
    """(encode FLOPs, decode FLOPs, latent shape) of one clip, counted on the meta device."""
    with torch.device("meta"):
        vae = vae_cfg.build()
        video = torch.empty(1, 3, frames, height, width)
        with torch.no_grad():
            counter = FlopCounterMode(display=False)
            with counter:
                mean, _ = vae.encode(video)
            encode = counter.get_total_flops()
            timestep = torch.zeros(1) if getattr(vae_cfg, "decoder_timestep_conditioning", False) else None
            counter = FlopCounterMode(display=False)
            with counter:
                vae.decode(mean, timestep=timestep)
            decode = counter.get_total_flops()
    return int(encode), int(decode), list(mean.shape[1:])


def dit_forwards(steps: int, guidance_scale: float) -> int:
    """Batch-1 DiT forwards of one generation: CFG doubles each step's batch (models.flow.guided_velocity)."""
    return steps * (1 if guidance_scale == 1.0 else 2)


def generation_flops(vae_cfg: Any, dit_cfg: Any, shape: tuple[int, int, int], *, steps: int, guidance_scale: float,
                     fps: float) -> dict[str, int]:
    """FLOPs of generating one video of `shape` (frames, height, width): the DiT forwards and the decode."""
    from models.dit import describe_dit

    forward = int(describe_dit(dit_cfg, *shape, fps=fps)["flops_per_forward"])
    _, decode, _ = _vae_flops(vae_cfg, *shape)
    dit_total = dit_forwards(steps, guidance_scale) * forward
    return {"dit_forward": forward, "dit": dit_total, "decode": int(decode), "total": dit_total + int(decode)}


def _median_latency(fn, repeats: int) -> float:
    fn()  # warm-up (allocations, oneDNN kernel selection)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return float(statistics.median(times))


@torch.no_grad()
def _measured(cfg: Any, frames: int, height: int, width: int) -> tuple[float, float]:
    """(VAE encode+decode seconds, DiT forward + VAE decode seconds) at the run shape, random weights."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    vae = cfg.vae.build().to(device).eval()
    dit = cfg.dit.build().to(device).eval()
    video = torch.rand(1, 3, frames, height, width, device=device) * 2 - 1
    latents = vae.encode(video)[0]
    timestep = torch.zeros(1, device=device) if getattr(cfg.vae, "decoder_timestep_conditioning", False) else None
    text = torch.randn(1, cfg.dit.max_text_tokens, cfg.dit.caption_channels, device=device)
    mask = torch.ones(1, cfg.dit.max_text_tokens, dtype=torch.bool, device=device)
    t = torch.full((1,), 0.5, device=device)
    vae_s = _median_latency(lambda: vae.decode(vae.encode(video)[0], timestep=timestep), cfg.cost.latency_repeats)
    gen_s = _median_latency(lambda: (dit(latents, t, text, mask, cfg.dit_data.fps),
                                     vae.decode(latents, timestep=timestep)), cfg.cost.latency_repeats)
    return vae_s, gen_s


def variant_cost(cfg: Any) -> dict[str, dict[str, Any]]:
    """Cost figures of a RunConfig: {"vae": {...}, "generation": {...}} with the same keys each."""
    from models.dit import describe_dit

    run_shape = (cfg.vae_data.frames, cfg.vae_data.height, cfg.vae_data.width)
    gen_shape = (cfg.dit_data.frames, cfg.dit_data.height, cfg.dit_data.width)
    ref = tuple(cfg.cost.reference_shape)
    peak = cfg.cost.h100_peak_tflops * 1e12 * cfg.cost.h100_utilisation
    enc_run, dec_run, lat_run = _vae_flops(cfg.vae, *run_shape)
    enc_ref, dec_ref, lat_ref = _vae_flops(cfg.vae, *ref)
    _, dec_gen, _ = _vae_flops(cfg.vae, *gen_shape)
    vae_params = sum(p.numel() for p in _meta(cfg.vae).parameters())
    dit_run = describe_dit(cfg.dit, *gen_shape, fps=cfg.dit_data.fps)
    dit_ref = describe_dit(cfg.dit, *ref, fps=cfg.dit_data.fps)
    vae_s, gen_s = _measured(cfg, *gen_shape) if run_shape == gen_shape else (
        _measured_vae_only(cfg, *run_shape), _measured(cfg, *gen_shape)[1])
    steps = cfg.sample.steps
    return {
        "vae": {
            "params": int(vae_params), "tokens": int(lat_run[1] * lat_run[2] * lat_run[3]),
            "flops_run": enc_run + dec_run, "flops_ref": enc_ref + dec_ref, "latency_s": vae_s,
            "h100_estimate_s": (enc_ref + dec_ref) / peak,
        },
        "generation": {
            "params": int(vae_params + dit_run["params"]), "tokens": int(dit_run["tokens"]),
            "flops_run": int(dit_run["flops_per_forward"]) + dec_gen,
            "flops_ref": int(dit_ref["flops_per_forward"]) + dec_ref, "latency_s": gen_s,
            "h100_estimate_s": (dit_forwards(steps, cfg.sample.guidance_scale) * dit_ref["flops_per_forward"] + dec_ref) / peak,
            "sampling_steps": steps, "tokens_ref": int(dit_ref["tokens"]),
            "dit_params": int(dit_run["params"]), "ffn_hidden": int(dit_run["ffn_hidden"]),
            **_per_axis("rope_max_rad", dit_run["rope_max_rad"]), **_per_axis("rope_min_rad", dit_run["rope_min_rad"]),
            **_per_axis("rope_max_rad_ref", dit_ref["rope_max_rad"]),
        },
    }


def _per_axis(name: str, values: list[float]) -> dict[str, float]:
    """[t, h, w] -> {name_t, name_h, name_w}: one runs.parquet column per axis."""
    return {f"{name}_{axis}": float(v) for axis, v in zip("thw", values)}


def _meta(vae_cfg: Any) -> torch.nn.Module:
    with torch.device("meta"):
        return vae_cfg.build()


@torch.no_grad()
def _measured_vae_only(cfg: Any, frames: int, height: int, width: int) -> float:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    vae = cfg.vae.build().to(device).eval()
    video = torch.rand(1, 3, frames, height, width, device=device) * 2 - 1
    timestep = torch.zeros(1, device=device) if getattr(cfg.vae, "decoder_timestep_conditioning", False) else None
    return _median_latency(lambda: vae.decode(vae.encode(video)[0], timestep=timestep), cfg.cost.latency_repeats)
