"""`encode_latents`, `sample`, `eval_recon` and `eval_gen` split across a run's workers.

Each entry point has the signature and return value of the executor's function of the
same name (`ablations/executor.py`), plus `workers` (how many shards) and `num_gpus` (per
shard: 1 when the cluster has GPUs, else 0). It runs one shard per rank with
`shards.map_shards` (Ray tasks when Ray is initialised and workers > 1, else one after
the other in this process); each shard writes its slice of the clips or prompts to
`<folder>/parts/rank-K-of-N/` (DONE last), and one merge here writes exactly the files
the unsharded stage writes, in the same order. `encode_latents` is the exception in
where the data goes: its ranks write latent shards straight into `<folder>/shards/`
(each verified by sha256, so a killed encode keeps them) and their parts only list them. Per-item randomness is seeded per item, so
the results do not depend on `workers`. A rerun reuses complete parts and redoes the
others; the merge refuses to run unless all N parts are complete.

The stage's own task should hold no CPU or GPU the shards need while it waits on them
(Ray lends a blocked task's CPUs back, but never its GPUs).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from ablations.stages.shards import map_shards


def _world(workers: int | None) -> int:
    return max(1, int(workers or 1))


def _progress(on_step: Callable[[int, int, dict[str, float]], None] | None, world: int):
    """Shard completions reported as steps of the stage (the live view's progress.json)."""
    if on_step is None:
        return None
    return lambda rank, finished: on_step(finished, world, {})


def _seeded(section: Any, seed: int) -> Any:
    """The run's seed overrides a section's own seed field (as the executor does)."""
    import dataclasses

    return dataclasses.replace(section, seed=seed) if hasattr(section, "seed") else section


# --------------------------------------------------------------------------- encode_latents


def _encode_shard(rank: int, world: int, vae_dir: str, data_spec: Any, folder: str) -> dict[str, Any]:
    from ablations.stages.encode_latents import encode_latents_part

    return encode_latents_part(Path(vae_dir), data_spec, Path(folder), shard=(rank, world))


def run_encode_latents(cfg, folder: Path, upstream: dict[str, Path], on_step, workers: int = 1, *,
                       num_gpus: float = 0, num_cpus: float = 1) -> dict[str, Any]:
    from ablations.stages.encode_latents import cached_summary, merge_latent_parts

    folder, world = Path(folder), _world(workers)
    cached = cached_summary(folder)  # as encode_latents: a DONE folder is reused as is
    if cached is not None:
        return {"summary": cached}
    started = time.perf_counter()
    map_shards(_encode_shard, world, num_cpus=num_cpus, num_gpus=num_gpus,
               args=(str(upstream["train_vae"]), cfg.dit_data, str(folder)), on_done=_progress(on_step, world))
    summary = merge_latent_parts(upstream["train_vae"], cfg.dit_data, folder, world, text_cfg=cfg.text, started=started)
    return {"summary": summary}


# --------------------------------------------------------------------------- sample


def _sample_shard(rank: int, world: int, vae_dir: str, dit_dir: str, dit_data: Any, count: int | None,
                  sample_cfg: Any, folder: str) -> dict[str, Any]:
    from ablations.stages.sample import heldout_prompts, sample_part

    prompts, images = heldout_prompts(dit_data, count)
    return sample_part(Path(vae_dir), Path(dit_dir), prompts, Path(folder), images=images, cfg=sample_cfg,
                       shard=(rank, world))


def run_sample(cfg, folder: Path, upstream: dict[str, Path], on_step, workers: int = 1, *,
               num_gpus: float = 0, num_cpus: float = 1) -> dict[str, Any]:
    from ablations.stages.sample import merge_sample_parts

    folder, world = Path(folder), _world(workers)
    sample_cfg = _seeded(cfg.sample, cfg.seed)
    started = time.perf_counter()
    map_shards(_sample_shard, world, num_cpus=num_cpus, num_gpus=num_gpus,
               args=(str(upstream["train_vae"]), str(upstream["train_dit"]), cfg.dit_data, cfg.eval.heldout_prompts,
                     sample_cfg, str(folder)), on_done=_progress(on_step, world))
    index = merge_sample_parts(folder, world, folder / "samples", cfg=sample_cfg, started=started)
    return {"index": index}


# --------------------------------------------------------------------------- eval_recon


def _recon_metric_names(cfg) -> list[str]:
    from models.losses.dwt import BAND_NAMES

    return list(cfg.eval.recon_metrics) + ([f"dwt_psnr_{b.lower()}" for b in BAND_NAMES] if cfg.eval.dwt_bands else [])


def recon_metric_versions(cfg) -> dict[str, str]:
    """{metric: version} of what `eval_recon` computes for `cfg` (its per-clip metrics and rFVD): in its key."""
    from evaluation.fvd import DISTRIBUTION_METRICS
    from evaluation.metrics import METRICS

    versions = {name: str(METRICS.get(name).version) for name in _recon_metric_names(cfg)}
    return {**versions, "rfvd": str(DISTRIBUTION_METRICS.get("rfvd").version)}


def gen_metric_versions(cfg) -> dict[str, str]:
    """{metric: version} of what `eval_gen` computes (every generation metric and FVD): in its key."""
    from evaluation.fvd import DISTRIBUTION_METRICS
    from evaluation.generation import GENERATION_METRICS

    versions = {name: str(spec.version) for name, spec in GENERATION_METRICS.items()}
    return {**versions, "fvd": str(DISTRIBUTION_METRICS.get("fvd").version)}


def _recon_shard(rank: int, world: int, vae_dir: str, data_spec: Any, names: list[str], max_samples: int,
                 seed: int, folder: str, eval_cfg: Any) -> dict[str, Any]:
    from ablations.stages.eval_recon import eval_recon_part

    return eval_recon_part(Path(vae_dir), data_spec, Path(folder), split="heldout", metric_names=names,
                           max_samples=max_samples, seed=seed, references=True, shard=(rank, world),
                           weights_config=eval_cfg.weights, fvd_frames=eval_cfg.fvd_frames)


def run_eval_recon(cfg, folder: Path, upstream: dict[str, Path], on_step, workers: int = 1, *,
                   num_gpus: float = 0, num_cpus: float = 1) -> dict[str, Any]:
    from ablations.stages.eval_recon import merge_recon_parts, safe_name

    folder, world = Path(folder), _world(workers)
    names = _recon_metric_names(cfg)
    map_shards(_recon_shard, world, num_cpus=num_cpus, num_gpus=num_gpus,
               args=(str(upstream["train_vae"]), cfg.vae_data, names, cfg.eval.recon_samples, cfg.seed, str(folder),
                     cfg.eval), on_done=_progress(on_step, world))
    rows, summary, kept, sets = merge_recon_parts(folder, world, folder, metric_names=names,
                                                  fvd_frames=cfg.eval.fvd_frames,
                                                  fvd_min_samples=cfg.eval.fvd_min_samples)
    references = [{"clip_id": c["clip_id"], "file": f"reference/{safe_name(c['clip_id'])}.mp4", "fps": c["fps"],
                   "sample": f"samples/recon-{safe_name(c['clip_id'])}.mp4"} for c in kept]
    return {"rows": rows, "summary": summary, "references": references, **sets}


# --------------------------------------------------------------------------- eval_gen


def _gen_shard(rank: int, world: int, samples_dir: str, folder: str, eval_cfg: Any) -> dict[str, Any]:
    from ablations.stages.eval_gen import eval_gen_part

    return eval_gen_part(Path(samples_dir), Path(folder), shard=(rank, world), weights_config=eval_cfg.weights,
                         fvd_frames=eval_cfg.fvd_frames)


def run_eval_gen(cfg, folder: Path, upstream: dict[str, Path], on_step, workers: int = 1, *,
                 num_gpus: float = 0, num_cpus: float = 1) -> dict[str, Any]:
    from ablations.stages.eval_gen import merge_gen_parts

    folder, world = Path(folder), _world(workers)
    map_shards(_gen_shard, world, num_cpus=num_cpus, num_gpus=num_gpus,
               args=(str(Path(upstream["sample"]) / "samples"), str(folder), cfg.eval), on_done=_progress(on_step, world))
    rows, summary, sets = merge_gen_parts(folder, world, fvd_frames=cfg.eval.fvd_frames,
                                          fvd_min_samples=cfg.eval.fvd_min_samples)
    return {"rows": rows, "summary": summary, **sets}


STAGES_RUN: dict[str, Callable[..., dict[str, Any]]] = {
    "encode_latents": run_encode_latents,
    "sample": run_sample,
    "eval_recon": run_eval_recon,
    "eval_gen": run_eval_gen,
}
