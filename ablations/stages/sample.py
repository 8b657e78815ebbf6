"""The `sample` stage: text-to-video and image-to-video samples from a trained DiT + VAE.

Prompts for scoring come from held-out synthetic scenes (`heldout_prompts`): their
captions are the text, their first frames the image-to-video conditions, and their ids
let `eval_gen` regenerate the ground-truth scene. Sampling is `models.flow.sample`
(Euler, classifier-free guidance against the encoded null caption ""); image-to-video
encodes the conditioning frame alone with the causal VAE (one latent frame) and holds
it. Latents are de-normalised and decoded; a timestep-conditioned VAE decoder decodes
at `flow.decode_timestep` after mixing in `flow.decode_noise_scale` noise (LTX-Video
0.9.1), in the latent space `flow.decode_noise_space` names (raw: diffusers' LTXPipeline;
normalized: LTX-Video's pipeline). A decoder trained without the diffusion objective is
refused noisy decoding (`ablations.configs.check_decoder_consistency`). Output follows
docs/results-store.md "samples/index.jsonl".

Every video has its own generator, seeded from (seed, task, prompt number), and is sampled
and decoded alone, so the stage can split its prompts across workers (`sample_part` per
rank, then `merge_sample_parts`; `ablations/stages/sharded.py`) and write the same files.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from ablations.stages.common import Progress, atomic_write_bytes, pick_device
from models.config import SEED, Choice, Int, Real, Seq, declare_ranges

INDEX = "index.jsonl"


@dataclass(frozen=True, kw_only=True)
class SampleConfig:
    steps: int = 20  # Euler steps of the flow sampler
    guidance_scale: float = 3.0  # classifier-free guidance scale (1 = conditional only)
    seed: int = 0  # seeds the sampling noise; sample i of a run always gets the same noise (its own generator)
    batch_size: int = 16  # prompts per `generate` call; each video is still sampled alone, so results ignore it
    tasks: tuple[str, ...] = ("t2v", "i2v")  # which tasks to sample (i2v only where an image is given)


declare_ranges(SampleConfig, {
    "steps": Int(1, 10_000), "guidance_scale": Real(0.0, 100.0), "seed": SEED, "batch_size": Int(1, 4096),
    "tasks": Seq(Choice(("t2v", "i2v")), 1, 2),
})


@dataclass(frozen=True, kw_only=True)
class Prompt:
    prompt_id: str  # stable id; two runs' samples with the same task and prompt_id are "the same item"
    text: str  # the caption to condition on
    clip_id: str | None = None  # the held-out clip the prompt was taken from, if any
    source_id: str | None = None  # that clip's independent source (clips.Clip.source_id); None: no clip


def heldout_prompts(data_spec: Any, count: int | None = None) -> tuple[list[Prompt], list[np.ndarray]]:
    """Prompts and first frames (uint8 (H, W, 3)) of the spec's held-out synthetic scenes.

    `count` overrides `data_spec.num_heldout_scenes`; seeds are disjoint from training.
    """
    import dataclasses

    from clips.dataset import load_clips

    if data_spec.source != "synthetic":
        raise ValueError("held-out prompts with ground truth need synthetic scenes (data source 'synthetic').")
    if count is not None:
        data_spec = dataclasses.replace(data_spec, num_heldout_scenes=count)
    clips = load_clips(data_spec, "heldout")
    prompts = [Prompt(prompt_id=f"p{i:03d}", text=c.caption or "", clip_id=c.clip_id, source_id=c.source_id)
               for i, c in enumerate(clips)]
    return prompts, [c.frames[0] for c in clips]


def _conditioning_latents(vae: nn.Module, images: Sequence[np.ndarray], video_hw: tuple[int, int]) -> torch.Tensor:
    """uint8 (H, W, 3) frames -> normalised latents of the frame encoded alone (B, Cz, 1, h, w)."""
    from clips.io import to_model

    device = next(vae.parameters()).device
    for image in images:
        if tuple(image.shape[:2]) != video_hw:
            raise ValueError(f"conditioning image is {image.shape[0]}x{image.shape[1]}; the model makes "
                             f"{video_hw[0]}x{video_hw[1]} video (resize it first).")
    frames = torch.stack([to_model(image[None]) for image in images]).to(device)  # (B, 3, 1, H, W)
    with torch.no_grad():
        mean, _ = vae.encode(frames)  # (B, Cz, 1, h, w)
    return vae.normalize_latents(mean.float())


def _warn_if_inconsistent(vae: nn.Module, flow_cfg: Any) -> None:
    """Sweeps refuse a noisy decode of a decoder trained without the diffusion objective before
    launching (`check_buildable`); a direct call with such a pair runs as asked, with a warning."""
    import warnings

    from ablations.configs import check_decoder_consistency
    from models.config import ConfigError

    if getattr(vae, "training_loss", None) is None:  # a VAE saved without its loss config
        return
    try:
        check_decoder_consistency(vae.cfg, vae.training_loss, flow_cfg)
    except ConfigError as exc:
        warnings.warn(str(exc), stacklevel=3)


@torch.no_grad()
def decode_latents(vae: nn.Module, latents: torch.Tensor, flow_cfg: Any,
                   generator: torch.Generator | list[torch.Generator] | tuple[torch.Generator, ...],
                   *, chunk_frames: int = 0, context: int | None = None) -> torch.Tensor:
    """Normalised latents (B, Cz, t, h, w) -> video (B, 3, T, H, W) in [-1, 1].

    `generator` draws the decode noise and the decoder's injected noise (one (H, W) field
    per call, shared by the batch). A sequence of B generators decodes each video alone
    with its own generator, so a video does not depend on what it is batched with.
    `chunk_frames` > 0 decodes that many latent frames at a time with `context` frames of
    overlap (`models.vae.tiling.decode_chunked`; the default context gives the full decode).
    """
    if isinstance(generator, (list, tuple)):
        generators = list(generator)
        if len(generators) != latents.shape[0]:
            raise ValueError(f"{len(generators)} generators for {latents.shape[0]} latents; pass one per video.")
        return torch.cat([_decode(vae, latents[i : i + 1], flow_cfg, g, chunk_frames, context)
                          for i, g in enumerate(generators)])
    return _decode(vae, latents, flow_cfg, generator, chunk_frames, context)


def _decode(vae: nn.Module, latents: torch.Tensor, flow_cfg: Any, generator: Any, chunk_frames: int = 0,
            context: int | None = None) -> torch.Tensor:
    from models.flow import prepare_decode
    from models.vae.tiling import decode_chunked

    def decode(z: torch.Tensor, timestep: torch.Tensor | None) -> torch.Tensor:
        if chunk_frames:
            return decode_chunked(vae, z, timestep, generator, chunk_frames=chunk_frames, context=context)
        return vae.decode(z, timestep=timestep, generator=generator)

    latents = latents.float()
    if not getattr(vae.cfg, "decoder_timestep_conditioning", False):
        return decode(vae.denormalize_latents(latents), None).clamp(-1, 1)
    if flow_cfg.decode_noise_space == "normalized":  # LTX-Video: noise the latents the DiT made, then de-normalise
        noisy, timestep = prepare_decode(latents, flow_cfg, generator)
        z = vae.denormalize_latents(noisy)
    else:  # diffusers: de-normalise, then noise
        z, timestep = prepare_decode(vae.denormalize_latents(latents), flow_cfg, generator)
    return decode(z, timestep).clamp(-1, 1)


@torch.no_grad()
def generate(
    vae: nn.Module,
    dit: Any,
    texts: Sequence[str],
    cfg: SampleConfig,
    *,
    images: Sequence[np.ndarray] | None = None,
    seed_offset: int = 0,
    item_seeds: Sequence[int] | None = None,
    on_step: Callable[[int, int, dict[str, float]], None] | None = None,
) -> np.ndarray:
    """Sample len(texts) videos -> uint8 (B, T, H, W, 3). `dit` is a `train_dit.TrainedDiT`.

    With `images` (uint8 (H, W, 3), one per text) the first latent frame is held at the
    image's latents (image-to-video). With `item_seeds` (one per text) every video is
    sampled and decoded alone from its own generator: a video depends only on its text,
    image and seed, never on the batch or the worker it ran in (what `sample_videos`
    does). Without, noise comes from one generator seeded with cfg.seed + seed_offset for
    the whole batch (the `ltxlab sample` command): the same prompts in the same batches
    give the same videos. `on_step(step, steps, {})` follows that path's Euler steps (the
    training stages' progress signature, so the command's progress lines serve both).
    """
    from clips.io import from_model
    from models.flow import sample

    device = next(dit.model.parameters()).device
    encoder = dit.text.build()
    null = encoder.null()
    null = (null[0].to(device), null[1].to(device))
    cz, t, h, w = dit.latent_shape
    if item_seeds is None:
        text, mask = encoder.encode(list(texts))
        generator = torch.Generator().manual_seed(cfg.seed + seed_offset)
        cond = _conditioning_latents(vae, images, dit.video_shape[1:]) if images is not None else None
        latents = sample(dit.model, (len(texts), cz, t, h, w), text.to(device), mask.to(device), null, dit.fps,
                         cfg.steps, cfg.guidance_scale, cond_latents=cond, generator=generator, cfg=dit.flow,
                         on_step=None if on_step is None else lambda i: on_step(i + 1, cfg.steps, {}))
        video = decode_latents(vae, latents, dit.flow, generator)  # (B, 3, T, H, W)
        return np.stack([from_model(v.cpu()) for v in video])
    if len(item_seeds) != len(texts):
        raise ValueError(f"{len(item_seeds)} seeds for {len(texts)} texts; pass one per text.")
    generators = [torch.Generator().manual_seed(int(s)) for s in item_seeds]
    latents = []
    for i, (caption, generator) in enumerate(zip(texts, generators)):
        text, mask = encoder.encode([caption])  # alone: a batch's padding and kernels never leak in
        cond = _conditioning_latents(vae, [images[i]], dit.video_shape[1:]) if images is not None else None
        latents.append(sample(dit.model, (1, cz, t, h, w), text.to(device), mask.to(device), null, dit.fps,
                              cfg.steps, cfg.guidance_scale, cond_latents=cond, generator=generator, cfg=dit.flow))
    video = decode_latents(vae, torch.cat(latents), dit.flow, generators)  # (B, 3, T, H, W), each alone
    return np.stack([from_model(v.cpu()) for v in video])


def write_png(path: Path, image: np.ndarray) -> Path:
    """uint8 (H, W, 3) -> PNG, atomically."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="PNG")
    atomic_write_bytes(Path(path), buffer.getvalue())
    return Path(path)


def read_png(path: Path) -> np.ndarray:
    """Image file -> uint8 (H, W, 3) RGB."""
    from PIL import Image

    with Image.open(path) as image:
        return np.array(image.convert("RGB"))  # a writable copy (torch.from_numpy warns on read-only arrays)


TASK_KEYS = {"t2v": 0, "i2v": 1}  # the task's key in a video's seed: t2v and i2v noise are independent


def sample_seed(seed: int, task: str, index: int) -> int:
    """The seed of the `task` video of prompt number `index`: a pure function, so it is the
    same whatever batch or worker samples it."""
    from ablations.stages.shards import item_seed

    return item_seed(seed, TASK_KEYS[task], index)


def sample_videos(
    vae_dir: Path | None,
    dit_dir: Path,
    prompts: Sequence[Prompt | str],
    out_dir: Path,
    *,
    images: Sequence[np.ndarray | None] | None = None,
    cfg: SampleConfig = SampleConfig(),
    progress: bool = True,
    shard: tuple[int, int] = (0, 1),
) -> list[dict[str, Any]]:
    """Write t2v samples for every prompt and i2v samples for those with an image; return the index rows.

    vae_dir None = the VAE recorded in `dit.safetensors`. `images` aligns with `prompts` (None
    entries: no i2v for that prompt). Writes `<task>-<prompt_id>.mp4` (H.264 at the
    training fps), `i2v-<prompt_id>.png` and `index.jsonl` (last, atomically: a reader
    never sees an index pointing at missing files). Rows are all t2v rows in prompt
    order, then all i2v rows.

    Each video has its own generator, seeded from (cfg.seed, task, prompt number)
    (`sample_seed`), and is sampled and decoded alone, so it is the same whatever the
    batching (`cfg.batch_size` only groups prompts per `generate` call) and whatever
    `shard=(rank, world)` slice of the prompts (`shards.shard_slice`) this call writes.
    """
    from ablations.stages.shards import shard_slice
    from ablations.stages.train_dit import load_dit
    from ablations.stages.train_vae import load_vae
    from clips.io import write_video

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    prompts = [p if isinstance(p, Prompt) else Prompt(prompt_id=f"p{i:03d}", text=p) for i, p in enumerate(prompts)]
    if images is not None and len(images) != len(prompts):
        raise ValueError(f"{len(images)} images for {len(prompts)} prompts; pass one (or None) per prompt.")
    mine = range(len(prompts))[shard_slice(len(prompts), *shard)]
    jobs: list[tuple[str, list[int]]] = []
    if "t2v" in cfg.tasks:
        jobs.append(("t2v", list(mine)))
    if "i2v" in cfg.tasks and images is not None:
        jobs.append(("i2v", [i for i in mine if images[i] is not None]))
    total = sum(len(idx) for _, idx in jobs)
    rows: list[dict[str, Any]] = []
    started, done = time.perf_counter(), 0
    if total:
        device = pick_device()
        dit = load_dit(dit_dir, device)
        vae = load_vae(vae_dir or dit.vae_dir, device)
        _warn_if_inconsistent(vae, dit.flow)
        bar = Progress(total, "sample", enabled=progress)
        try:
            for task, indices in jobs:
                for start in range(0, len(indices), max(1, cfg.batch_size)):
                    chunk = indices[start : start + max(1, cfg.batch_size)]
                    chunk_images = [images[i] for i in chunk] if task == "i2v" else None
                    videos = generate(vae, dit, [prompts[i].text for i in chunk], cfg, images=chunk_images,
                                      item_seeds=[sample_seed(cfg.seed, task, i) for i in chunk])
                    for j, i in enumerate(chunk):
                        p = prompts[i]
                        name = f"{task}-{p.prompt_id}.mp4"
                        write_video(out_dir / name, videos[j], dit.fps)
                        # the exact frames, for scoring: H.264 adds codec error and its bytes were
                        # seen to differ between runs on identical frames, the .npy never does
                        np.save(out_dir / f"{task}-{p.prompt_id}.npy", videos[j])
                        image_name = None
                        if task == "i2v":
                            image_name = f"i2v-{p.prompt_id}.png"
                            write_png(out_dir / image_name, images[i])
                        rows.append({"file": name, "task": task, "prompt_id": p.prompt_id, "text": p.text,
                                     "image": image_name, "clip_id": p.clip_id, "source_id": p.source_id,
                                     "fps": dit.fps})
                        done += 1
                        bar.update(done, {})
        finally:
            bar.close()
    _write_index(out_dir, rows, cfg, time.perf_counter() - started)
    return rows


def _write_index(out_dir: Path, rows: list[dict[str, Any]], cfg: SampleConfig, wall_time_s: float) -> None:
    lines = "".join(json.dumps(r) + "\n" for r in rows)
    atomic_write_bytes(out_dir / INDEX, lines.encode())
    (out_dir / "sample_summary.json").write_text(json.dumps(
        {"samples": len(rows), "wall_time_s": wall_time_s, "steps": cfg.steps,
         "guidance_scale": cfg.guidance_scale, "seed": cfg.seed}, indent=2))


def sample_part(
    vae_dir: Path | None,
    dit_dir: Path,
    prompts: Sequence[Prompt | str],
    folder: Path,
    *,
    images: Sequence[np.ndarray | None] | None = None,
    cfg: SampleConfig = SampleConfig(),
    shard: tuple[int, int] = (0, 1),
) -> dict[str, Any]:
    """`sample_videos` of rank's slice into `folder/parts/rank-K-of-N/` (a samples folder of
    its own, then DONE); its DONE record. A complete part is reused."""
    from ablations.stages.shards import build_part

    rank, world = shard

    def work(tmp: Path, items: slice) -> dict[str, Any]:
        rows = sample_videos(vae_dir, dit_dir, prompts, tmp, images=images, cfg=cfg, progress=False, shard=shard)
        return {"samples": len(rows)}

    return build_part(folder, rank, world, len(prompts), work)


def merge_sample_parts(folder: Path, world: int, out_dir: Path, *, cfg: SampleConfig = SampleConfig(),
                       started: float | None = None) -> list[dict[str, Any]]:
    """Join the N complete parts into `out_dir` exactly as `sample_videos` writes it; the index rows.

    Files are hard-linked (copied across file systems); rows are ordered as the unsharded
    stage orders them (every t2v row, then every i2v row, prompts in order); index.jsonl is last.
    """
    from ablations.stages.shards import clean_stale, complete_parts, link_or_copy

    started = time.perf_counter() if started is None else started
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    parts = [(path, read_index(path)) for path, _ in complete_parts(folder, world)]
    rows: list[dict[str, Any]] = []
    for task in ("t2v", "i2v"):  # the order sample_videos runs its jobs in
        for path, part_rows in parts:
            for row in part_rows:
                if row["task"] != task:
                    continue
                for name in (row["file"], str(Path(row["file"]).with_suffix(".npy")), row.get("image")):
                    if name and (path / name).exists():
                        link_or_copy(path / name, out_dir / name)
                rows.append(row)
    _write_index(out_dir, rows, cfg, time.perf_counter() - started)
    clean_stale(folder)
    return rows


def read_index(samples_dir: Path) -> list[dict[str, Any]]:
    """The rows of `samples_dir/index.jsonl`."""
    path = Path(samples_dir) / INDEX
    if not path.exists():
        raise FileNotFoundError(f"No {INDEX} in {samples_dir}; run the sample stage first.")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
