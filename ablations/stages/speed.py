"""Timed generation: the pipeline `ltxlab generate` runs, and the `speed` stage that measures it.

One generation is text encoding (the run's text encoder, the caption and the null caption
for CFG), the Euler rectified-flow sampler `models.flow.sample` (CFG batched into one
forward of batch 2, `models.flow.guided_velocity`), and the VAE decode of
`ablations.stages.sample.decode_latents` (the denoising decode at `flow.decode_timestep`,
optionally in temporal chunks, `models.vae.tiling`). Nothing here samples or decodes on
its own: it composes those functions and times each phase (each DiT step separately),
with a device synchronisation at every boundary, and reads the peak memory.

On CUDA the DiT and the decoder run in bf16 (the sampler's state stays fp32, as
diffusers' pipeline keeps it), attention picks cuDNN / flash / memory-efficient SDPA in
that order (`torch.nn.attention.sdpa_kernel`), and `compile=True` compiles each DiT block
(regional `torch.compile`, as the training core does).

The `speed` stage times `cost.latency_repeats` generations of one caption at the run's shape with the trained models, and on a GPU node also at `cost.reference_shape`
(121x512x768); each sits beside its FLOPs (`evaluation.cost.generation_flops`), the
achieved TFLOP/s and, on a GPU, the implied MFU against `cost.h100_peak_tflops`.
"""

from __future__ import annotations

import contextlib
import resource
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

REFERENCE_SHAPE = (121, 512, 768)  # LTX-Video's headline shape: frames x height x width
# the caption timed: any caption costs the same (the encoder pads to a fixed length)
SPEED_PROMPT = "a red circle moves left over a photo of grass"


@dataclass(frozen=True, kw_only=True)
class GenerationTiming:
    shape: tuple[int, int, int]  # pixel frames x height x width generated
    steps: int  # Euler steps
    guidance_scale: float  # CFG scale (1 = no unconditional pass)
    text_s: float  # caption + null caption encoding
    step_s: tuple[float, ...]  # each DiT step (one batched CFG forward + the Euler update)
    decode_s: float  # decode noise + VAE decode (+ clamp), to a host copy of the video
    wall_s: float  # the whole generation, text to video
    peak_memory_bytes: int  # CUDA: max allocated during the generation; CPU: the process's peak RSS
    device: str  # where it ran
    dtype: str  # DiT/decoder parameter dtype

    def lines(self) -> list[str]:
        """The breakdown `ltxlab generate` prints."""
        steps = self.step_s
        memory = "peak GPU memory" if self.device.startswith("cuda") else "process peak RSS"
        return [f"text encoding   {self.text_s:8.3f} s",
                *(f"DiT step {i + 1:3d}    {s:8.3f} s" for i, s in enumerate(steps)),
                f"DiT steps total {sum(steps):8.3f} s (median step {statistics.median(steps):.3f} s)",
                f"VAE decode      {self.decode_s:8.3f} s",
                f"wall            {self.wall_s:8.3f} s on {self.device} ({self.dtype})",
                f"{memory} {self.peak_memory_bytes / 2**30:.2f} GiB"]


def check_shape(shape: tuple[int, int, int], vae_cfg: Any) -> tuple[int, int, int]:
    """Pixel (frames, height, width) -> latent (t, h, w), or one sentence saying what fits the VAE."""
    from models.config import ConfigError
    from models.dit.patch import latent_shape_of

    try:
        return latent_shape_of(*shape, temporal_compression=vae_cfg.temporal_compression,
                               spatial_compression=vae_cfg.spatial_compression)
    except ValueError as exc:
        raise ConfigError(f"shape {'x'.join(map(str, shape))} does not fit the VAE: {exc}") from None


def parse_shape(text: str) -> tuple[int, int, int]:
    """'121x512x768' -> (121, 512, 768), or one sentence."""
    from models.config import ConfigError

    parts = text.lower().split("x")
    if len(parts) != 3 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ConfigError(f"shape {text!r} must be FRAMESxHEIGHTxWIDTH with positive integers, e.g. 121x512x768.")
    return tuple(int(p) for p in parts)  # type: ignore[return-value]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def attention_backends(device: torch.device) -> contextlib.AbstractContextManager:
    """On CUDA, SDPA tries cuDNN, flash, then memory-efficient attention before the math kernel."""
    if device.type != "cuda":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    order = [SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]
    return sdpa_kernel(order, set_priority=True)


def prepare(dit: Any, vae: nn.Module, device: torch.device, dtype: torch.dtype, compile_blocks: bool = False) -> None:
    """Move a `TrainedDiT` and its VAE to `device`: the DiT and the decoder in `dtype` (the encoder,
    used only for the i2v frame, and the latent statistics stay fp32), blocks compiled if asked."""
    dit.model.to(device=device, dtype=dtype)
    vae.to(device)
    vae.decoder.to(dtype)
    if compile_blocks:
        for block in dit.model.blocks:
            block.compile()


def _peak_memory(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # Linux reports KiB


@torch.no_grad()
def timed_generate(
    dit: Any,
    vae: nn.Module,
    encoder: Any,
    prompt: str,
    shape: tuple[int, int, int],
    *,
    steps: int,
    guidance_scale: float,
    seed: int = 0,
    image: np.ndarray | None = None,
    decode_chunk: int = 0,
    decode_context: int | None = None,
) -> tuple[np.ndarray, GenerationTiming]:
    """One video of `shape` from `prompt` (and first frame `image`) -> uint8 (T, H, W, 3), its timing.

    `dit` is a `train_dit.TrainedDiT` already `prepare`d; `encoder` its built text encoder.
    Noise comes from one generator seeded with `seed` and also draws the decode noise, as
    `ablations.stages.sample.generate` does, so at the trained shape the video equals
    `generate(vae, dit, [prompt], SampleConfig(steps, guidance_scale, seed))`.
    """
    from ablations.stages.sample import _conditioning_latents, decode_latents
    from clips.io import from_model
    from models.flow import sample

    device = next(dit.model.parameters()).device
    latent = check_shape(shape, vae.cfg)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    sync(device)
    started = time.perf_counter()
    encode = getattr(encoder, "_encode", encoder.encode)  # past models.text's cache: time the real encoding
    text, mask = encode([prompt])
    null = tuple(t.to(device) for t in encode([""]))  # the null caption, as TextEncoder.null encodes it
    text, mask = text.to(device), mask.to(device)
    sync(device)
    text_s = time.perf_counter() - started
    cond = _conditioning_latents(vae, [image], shape[1:]) if image is not None else None
    generator = torch.Generator().manual_seed(seed)
    marks = [time.perf_counter()]

    def tick(_: int) -> None:
        sync(device)
        marks.append(time.perf_counter())

    with attention_backends(device):
        latents = sample(dit.model, (1, dit.model.config.in_channels, *latent), text, mask, null, dit.fps, steps,
                         guidance_scale, cond_latents=cond, generator=generator, cfg=dit.flow, on_step=tick)
    video = decode_latents(vae, latents, dit.flow, generator, chunk_frames=decode_chunk, context=decode_context)
    frames = from_model(video[0])  # (T, H, W, 3) uint8 on the host: the decode is done
    ended = time.perf_counter()
    timing = GenerationTiming(
        shape=tuple(shape), steps=steps, guidance_scale=guidance_scale, text_s=text_s,
        step_s=tuple(b - a for a, b in zip(marks, marks[1:])), decode_s=ended - marks[-1], wall_s=ended - started,
        peak_memory_bytes=_peak_memory(device), device=str(device), dtype=str(next(dit.model.parameters()).dtype))
    return frames, timing


# ---------------------------------------------------------------- the speed stage


def _measure(run: Callable[[], GenerationTiming], repeats: int) -> dict[str, Any]:
    """Median wall and per-phase seconds of `repeats` generations after one warm-up."""
    run()  # warm-up: allocator, oneDNN/cuBLAS kernel choice, compile
    timings = [run() for _ in range(max(1, repeats))]
    walls = [t.wall_s for t in timings]
    return {"wall_s": statistics.median(walls), "wall_s_min": min(walls), "wall_s_max": max(walls),
            "repeats": len(walls), "text_s": statistics.median(t.text_s for t in timings),
            "dit_s": statistics.median(sum(t.step_s) for t in timings),
            "step_s": statistics.median(s for t in timings for s in t.step_s),
            "decode_s": statistics.median(t.decode_s for t in timings),
            "peak_memory_bytes": max(t.peak_memory_bytes for t in timings), "device": timings[0].device,
            "dtype": timings[0].dtype}


def speed_figures(cfg: Any, dit: Any, vae: nn.Module, encoder: Any, prompt: str, shape: tuple[int, int, int]) -> dict[str, Any]:
    """Measured generation at `shape` beside its FLOPs, achieved TFLOP/s and (on a GPU) implied MFU."""
    from evaluation.cost import generation_flops

    steps, scale = cfg.sample.steps, cfg.sample.guidance_scale
    figures = _measure(lambda: timed_generate(dit, vae, encoder, prompt, shape, steps=steps, guidance_scale=scale,
                                              seed=cfg.seed)[1], cfg.cost.latency_repeats)
    flops = generation_flops(cfg.vae, cfg.dit, shape, steps=steps, guidance_scale=scale, fps=dit.fps)
    achieved = flops["total"] / figures["wall_s"]
    figures.update(shape="x".join(map(str, shape)), steps=steps, guidance_scale=scale, flops=flops["total"],
                   flops_dit=flops["dit"], flops_decode=flops["decode"], tflops_achieved=achieved / 1e12,
                   h100_estimate_s=flops["total"] / (cfg.cost.h100_peak_tflops * 1e12 * cfg.cost.h100_utilisation))
    if figures["device"].startswith("cuda"):
        figures["mfu"] = achieved / (cfg.cost.h100_peak_tflops * 1e12)
    return figures


def run_speed(cfg: Any, vae_dir: Path, dit_dir: Path) -> dict[str, Any]:
    """The stage: {"speed": {"run": figures, "reference": figures or None, "reference_note": why not}}."""
    from ablations.stages.common import pick_device
    from ablations.stages.train_dit import load_dit
    from ablations.stages.train_vae import load_vae

    device = pick_device()
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    dit, vae = load_dit(dit_dir, device), load_vae(vae_dir, device)
    prepare(dit, vae, device, dtype)
    encoder = dit.text.build()
    prompt = SPEED_PROMPT
    result: dict[str, Any] = {"run": speed_figures(cfg, dit, vae, encoder, prompt, tuple(dit.video_shape)),
                              "reference": None, "reference_note": "no GPU on this worker: 121x512x768 is timed on CUDA only"}
    if device.type == "cuda":
        reference = tuple(cfg.cost.reference_shape)
        result["reference"] = speed_figures(cfg, dit, vae, encoder, prompt, reference)
        result["reference_note"] = None
    return {"speed": result}


SPEED_COLUMNS = ("wall_s", "text_s", "dit_s", "decode_s", "peak_memory_bytes", "flops", "tflops_achieved", "mfu")


def speed_columns(speed: dict[str, Any]) -> dict[str, Any]:
    """The stage's result -> runs.parquet columns `speed.<figure>` (run shape) and `speed.ref_<figure>`."""
    columns = {f"speed.{k}": speed["run"][k] for k in SPEED_COLUMNS if k in speed["run"]}
    if speed.get("reference"):
        columns.update({f"speed.ref_{k}": speed["reference"][k] for k in SPEED_COLUMNS if k in speed["reference"]})
    return columns
