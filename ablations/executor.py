"""Run one stage instance inside a worker: the glue between the runner and the stages.

`execute` is what a Ray task calls. It reads the instance's config, runs the stage into
`_cache/<stage>/<key>/` with the upstream folders it needs, writes `result.json` and then
the `DONE` marker (last, atomically: a folder with DONE is complete), and returns the
result. DONE records the size, mtime and sha256 of every file the stage made
(`write_done`); a folder whose DONE checks out (`verify_done`) is not run again, one that
does not is cleared and run again, and the reason is said in one line. Faults can be
injected for the fault tests (`faults`), never in normal use.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
import shutil
import signal
import socket
import time
from pathlib import Path
from typing import Any, Callable

from ablations.provenance import code_provenance, cpu_hardware
from ablations.store import atomic_write_json, check_file_record, file_record

DONE = "DONE"
RESULT = "result.json"
PROGRESS = "progress.json"
LIVE_CURVE = "curve.live.jsonl"  # one JSON line per training step ({stage, step, <loss>: value}); the dashboard's live curve
LOG = "stage.log"
DONE_FORMAT = 1  # DONE is JSON {"format", "files": file_record}; an empty DONE comes from ltxlab before records
# kept when a stage whose DONE failed verification is run again: its history (log) and the resume state
# (training checkpoints verify themselves, ablations.training.checkpoint); Ray Train's own storage is not a product
INSTANCE_LOCK = ".lock"
# the upstream results an attempt started from ({stage: {key, result_sha256}}): partial work resumes only from the same
LINEAGE = "lineage.json"
KEPT_ON_RERUN = (LOG, "checkpoints", INSTANCE_LOCK, LINEAGE)
NOT_RECORDED = (DONE, LOG, PROGRESS, LIVE_CURVE, "checkpoints", "ray_train", LINEAGE)


class StageInterrupted(RuntimeError):
    """Raised by the injected `stop` fault: the stage stopped early, as a killed sweep would."""


def stage_dir(cache_root: Path, stage: str, key: str) -> Path:
    return Path(cache_root) / stage / key


def is_done(folder: Path) -> bool:
    """DONE and result.json are there (not yet verified: see `verify_done`)."""
    return (folder / DONE).exists() and (folder / RESULT).exists()


def read_result(folder: Path) -> dict[str, Any]:
    return json.loads((folder / RESULT).read_text())


def _recorded(rel: str) -> bool:
    """Whether DONE records this file: the stage's products, not its log, progress, checkpoints or temporaries."""
    parts = rel.split("/")
    return parts[0] not in NOT_RECORDED and not any(part.startswith(".") for part in parts)


def write_done(folder: Path) -> dict[str, Any]:
    """Write the DONE marker last: the size, mtime and sha256 of every product file (result.json included)."""
    marker = {"format": DONE_FORMAT, "written_at": time.time(), "files": file_record(folder, _recorded)}
    atomic_write_json(folder / DONE, marker)
    return marker


def verify_done(folder: Path, *, full: bool = False) -> tuple[dict[str, Any] | None, str | None]:
    """(result, note) for a finished stage folder that checks out; (None, why) for one to run again;
    (None, None) for one never finished.

    With a record, every recorded file must have its recorded size and mtime (else its
    sha256; `full` hashes all, see `store.check_file_record`). A DONE without a record
    (written before records existed) is checked as far as it can be, result.json parsing
    and every .safetensors (header, sizes, tensors' sha256) and .json file reading back
    whole; then it is accepted, recorded now, and the note says so: rerunning every old
    sweep's stages would cost hours for nothing, and the files it vouches for have been
    read through. A product in the old pickle format (`.pt`: vae.pt, dit.pt, latent shards)
    is never reused: the stage runs again (training resumes from its final checkpoint).
    """
    folder = Path(folder)
    if not is_done(folder):
        return None, None
    try:
        marker = json.loads((folder / DONE).read_text() or "null")
    except (OSError, ValueError):
        marker = None
    if isinstance(marker, dict) and isinstance(marker.get("files"), dict):
        why = (check_file_record(folder, marker["files"], full=full) or _pickle_product(marker["files"])
               or _header_problem(folder, marker["files"]))
        if why is None and RESULT not in marker["files"]:
            why = f"DONE records no {RESULT}"
        note = None
    else:
        why = _legacy_check(folder)
        note = "DONE has no file record (written by an older ltxlab); its files read back whole, so it is reused and recorded now"
    if why is None:
        try:
            result = read_result(folder)
        except (OSError, ValueError) as exc:
            why = f"{RESULT} does not parse ({type(exc).__name__})"
        else:
            if isinstance(result, dict):
                if note is not None:
                    write_done(folder)
                return result, note
            why = f"{RESULT} is not a JSON object"
    return None, why


def _pickle_product(names: Any) -> str | None:
    """Why a folder whose products include a pickle (`.pt`, what ltxlab wrote before safetensors) must run again."""
    old = sorted(name for name in names if name.endswith(".pt"))
    return f"{old[0]} is in the old pickle format (ltxlab now writes safetensors)" if old else None


def _header_problem(folder: Path, names: Any) -> str | None:
    """Why a recorded .safetensors product does not open: its header must parse and cover the file (header only)."""
    from models import tensor_file

    for rel in sorted(names):
        if rel.endswith(tensor_file.SUFFIX):
            damage = tensor_file.problem(folder / rel, digest=False)
            if damage:
                return f"{rel} {damage}"
    return None


def _legacy_check(folder: Path) -> str | None:
    """What is wrong with an unrecorded finished folder, as far as reading it back can tell (None: nothing)."""
    from models import tensor_file

    products = sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file())
    products = [rel for rel in products if _recorded(rel)]
    why = _pickle_product(products)
    if why is not None:
        return why
    for rel in products:
        path = folder / rel
        try:
            if path.suffix == ".json":
                json.loads(path.read_text())
            elif path.suffix == tensor_file.SUFFIX:  # the header covers the file; the tensors hash as it records
                damage = tensor_file.problem(path)
                if damage:
                    return f"{rel} {damage}"
        except (OSError, ValueError) as exc:
            return f"{rel} does not read back ({type(exc).__name__})"
    return None


def result_sha256(folder: Path) -> str | None:
    """The sha256 of a finished stage's result.json, as its DONE record holds it (None without a record)."""
    try:
        marker = json.loads((Path(folder) / DONE).read_text() or "null")
        return str(marker["files"][RESULT]["sha256"])
    except (OSError, ValueError, TypeError, KeyError):
        return None


def upstream_lineage(upstream: dict[str, str]) -> dict[str, dict[str, Any]]:
    """{stage: {key, result_sha256}} of the upstream results a stage reads: its result.json keeps this,
    so a reuse can tell whether the upstream it was built from is still the one in the cache."""
    return {name: {"key": Path(folder).name, "result_sha256": result_sha256(Path(folder))}
            for name, folder in sorted(upstream.items())}


def lineage_problem(result: dict[str, Any], upstream: dict[str, str]) -> str | None:
    """Why a finished result no longer belongs to the upstream results now in the cache (None: it does).

    `upstream`: {stage: folder} of every instance it reads, as the runner passes them to `execute`."""
    recorded = result.get("upstream")
    if not upstream:
        return None
    if not isinstance(recorded, dict):
        return "its result.json records no upstream results (written by an older ltxlab)"
    for name, folder in sorted(upstream.items()):
        want, have = (recorded.get(name) or {}).get("result_sha256"), result_sha256(Path(folder))
        if want is None or want != have:
            return f"it was computed from another {name} result than the one now in the cache"
    return None


def clear_for_rerun(folder: Path, keep: tuple[str, ...] = KEPT_ON_RERUN) -> None:
    """Empty a stage folder whose DONE failed verification, keeping its log and resume checkpoints.

    Everything else goes: a sharded stage's parts share files (hard links) with its products,
    so a damaged product may be a damaged part, and every stage rebuilds what it needs. A stage
    whose upstream changed keeps no checkpoints (`keep`): resuming would keep the old upstream's work.
    """
    for path in Path(folder).iterdir():
        if path.name in keep:
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def hardware() -> dict[str, Any]:
    info = {"host": socket.gethostname(), "platform": platform.platform(), "cpus": os.cpu_count(), **cpu_hardware()}
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info


def _node_id() -> str | None:
    try:
        import ray

        return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    except Exception:  # noqa: BLE001 - provenance only
        return None


def _fault_hook(stage: str, folder: Path, fault: dict[str, Any] | None) -> Callable[[int, int, dict[str, float]], None] | None:
    """Injected faults for the fault tests: {"mode": "kill_once" | "raise" | "stop" | "nan", "at_step": N}.

    "nan" hands the step's losses with a NaN added to the stages' own `check_finite`, as a loss that
    overflowed would be (the config ranges keep every real setting from overflowing in a few steps)."""
    if fault is None:
        return None
    mode, at_step = fault["mode"], int(fault.get("at_step", 1))
    marker = folder / f".fault-{mode}"

    def hook(step: int, total: int, losses: dict[str, float]) -> None:
        if step < at_step:
            return
        if mode == "kill_once" and not marker.exists():
            marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)  # the worker process dies mid-stage
        if mode == "raise":
            raise RuntimeError(f"injected failure in {stage} at step {step}")
        if mode == "nan":
            from ablations.stages.common import check_finite

            check_finite({**losses, "injected": float("nan")}, step)
        if mode == "stop" and not marker.exists():
            marker.touch()
            raise StageInterrupted(f"{stage} stopped at step {step} (injected interruption)")

    return hook


def _progress_writer(folder: Path, stage: str, chained: Callable | None) -> Callable[[int, int, dict[str, float]], None]:
    last = [0.0]

    def on_step(step: int, total: int, losses: dict[str, float]) -> None:
        if losses:  # every step's losses, appended: curve.json is written only at the end (a resumed run repeats steps)
            with open(folder / LIVE_CURVE, "a") as live:
                live.write(json.dumps({"stage": stage, "step": step, **{k: float(v) for k, v in losses.items()}}) + "\n")
        now = time.monotonic()
        if now - last[0] > 1.0 or step >= total:  # the live view polls this file
            last[0] = now
            atomic_write_json(folder / PROGRESS, {"stage": stage, "step": step, "total": total, "time": time.time()})
        if chained is not None:
            chained(step, total, losses)

    return on_step


def execute(stage: str, key: str, config: dict[str, Any], upstream: dict[str, str], cache_root: str,
            threads: int = 1, fault: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run `stage` for the RunConfig dict `config`; upstream maps stage name -> its folder."""
    folder = stage_dir(Path(cache_root), stage, key)
    folder.mkdir(parents=True, exist_ok=True)
    with _instance_lock(folder):
        done, why = verify_done(folder)
        if done is not None:
            return {**done, "skipped": True}
        if why is not None:  # the driver checked it too; a folder can change between the two looks
            clear_for_rerun(folder)
            with open(folder / LOG, "a") as log:
                print(f"{stage} {key}: {why}; rerunning", file=log)
        _start_lineage(stage, key, folder, upstream)
        return _run_stage(stage, key, config, upstream, folder, threads, fault)


def _start_lineage(stage: str, key: str, folder: Path, upstream: dict[str, str]) -> None:
    """Record the upstream results this attempt builds from (`LINEAGE`) before any work. Partial work
    an interrupted attempt left (checkpoints, finished shards) is resumed only if it was built from
    the same ones; otherwise it goes, and the log says why."""
    lineage = upstream_lineage(upstream)
    try:
        earlier = json.loads((folder / LINEAGE).read_text())
    except (OSError, ValueError):
        earlier = None  # a first attempt (or one from before lineage was recorded): nothing to compare
    if earlier is not None and earlier != lineage:
        clear_for_rerun(folder, keep=(LOG, INSTANCE_LOCK))
        with open(folder / LOG, "a") as log:
            print(f"{stage} {key}: an upstream result changed since the last attempt; starting afresh", file=log)
    atomic_write_json(folder / LINEAGE, lineage)


@contextlib.contextmanager
def _instance_lock(folder: Path):
    """One process at a time in a stage folder. Sweeps of other names on the same results root share
    `_cache/`: the second to reach an instance waits here, then finds it DONE and reuses it. The
    kernel drops the lock of a killed process."""
    with open(folder / INSTANCE_LOCK, "a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _run_stage(stage: str, key: str, config: dict[str, Any], upstream: dict[str, str], folder: Path, threads: int,
               fault: dict[str, Any] | None) -> dict[str, Any]:
    import torch

    from ablations.configs import run_config_from_dict
    from ablations.stages.common import seed_everything

    torch.set_num_threads(max(1, threads))
    cfg = run_config_from_dict(config)
    seed_everything(cfg.seed)  # Ray reuses worker processes: reseed so no stage depends on what its worker ran before
    on_step = _progress_writer(folder, stage, _fault_hook(stage, folder, fault))
    if fault is not None and fault["mode"] == "raise" and fault.get("at_step") is None:
        raise RuntimeError(f"injected failure in {stage}")
    started = time.time()
    clock = time.perf_counter()
    with open(folder / LOG, "a") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        ups = {k: Path(v) for k, v in upstream.items()}
        runner = STAGES_RUN[stage]
        if stage in TRAINING:
            result = runner(cfg, folder, ups, on_step, fault)
        else:
            result = runner(cfg, folder, ups, on_step)
    result = {**result, "stage": stage, "key": key, "started_at": started, "compute_s": time.perf_counter() - clock,
              "hardware": hardware(), "node_id": _node_id(), "provenance": code_provenance(),
              "upstream": upstream_lineage(upstream)}
    atomic_write_json(folder / RESULT, result)
    write_done(folder)
    return result


# --------------------------------------------------------------------------- stages


def training_videos(spec: Any, split: str = "train"):
    """What a training worker trains on: the manifest source as a streamed dataset
    (`ClipVideos`, decoded per step by DataLoader workers), every other source as one
    in-memory tensor (N, 3, T, H, W) as before."""
    import torch

    from ablations.training.data import ClipVideos
    from clips.dataset import load_clips, open_clips
    from clips.io import to_model

    if spec.source == "manifest":
        return ClipVideos(open_clips(spec, split))
    return torch.stack([to_model(c.frames) for c in load_clips(spec, split)])  # (N, 3, T, H, W)


def _curve_rows(path: Path) -> list[dict[str, Any]]:
    """curve.json rows {stage, step, <name>: value...} -> long rows {stage, step, name, value}."""
    if not path.exists():
        return []
    rows = []
    for row in json.loads(path.read_text()):
        for name, value in row.items():
            if name not in ("stage", "step") and isinstance(value, (int, float)):
                rows.append({"stage": row["stage"], "step": int(row["step"]), "name": name, "value": float(value)})
    return rows


def train_vae_entry(config: dict[str, Any], folder: str, *, layout: Any, on_step=None) -> dict[str, Any]:
    """One worker's `train_vae` (every Ray Train worker, or the stage's own task): loads its data itself."""
    from ablations.configs import run_config_from_dict
    from ablations.stages.train_vae import train_vae

    cfg = run_config_from_dict(config)
    videos = training_videos(cfg.vae_data, "train")
    return train_vae(cfg.vae, cfg.loss, _seeded(cfg.vae_train, cfg.seed), videos, Path(folder), layout=layout,
                     progress=False, on_step=on_step, data=cfg.vae_data)  # the header records the clip shape


def train_dit_entry(config: dict[str, Any], folder: str, latents_dir: str, *, layout: Any, on_step=None) -> dict[str, Any]:
    """One worker's `train_dit`."""
    from ablations.configs import run_config_from_dict
    from ablations.stages.train_dit import train_dit

    cfg = run_config_from_dict(config)
    return train_dit(cfg.dit, cfg.flow, cfg.text, _seeded(cfg.dit_train, cfg.seed), Path(latents_dir), Path(folder),
                     layout=layout, progress=False, on_step=on_step)


def _train(cfg, stage: str, kwargs: dict[str, Any], folder: Path, on_step, fault) -> dict[str, Any]:
    from ablations.training import launch
    from models.config import to_dict

    entry = f"ablations.executor:{stage}_entry"
    worker_fault = fault if fault and fault.get("mode") == "kill_worker" else None
    summary = launch.run(entry, {"config": to_dict(cfg), "folder": str(folder), **kwargs}, cfg.train, folder,
                         name=stage, threads=max(1, int(cfg.train.cpus_per_worker)), on_step=on_step,
                         fault=worker_fault)
    return {"summary": summary, "curve": _curve_rows(folder / "curve.json")}


def run_train_vae(cfg, folder: Path, upstream: dict[str, Path], on_step, fault=None) -> dict[str, Any]:
    return _train(cfg, "train_vae", {}, folder, on_step, fault)


def run_eval_recon(cfg, folder: Path, upstream: dict[str, Path], on_step) -> dict[str, Any]:
    return _sharded("eval_recon", cfg, folder, upstream, on_step)


def run_encode_latents(cfg, folder: Path, upstream: dict[str, Path], on_step) -> dict[str, Any]:
    return _sharded("encode_latents", cfg, folder, upstream, on_step)


def run_train_dit(cfg, folder: Path, upstream: dict[str, Path], on_step, fault=None) -> dict[str, Any]:
    return _train(cfg, "train_dit", {"latents_dir": str(upstream["encode_latents"])}, folder, on_step, fault)


def run_sample(cfg, folder: Path, upstream: dict[str, Path], on_step) -> dict[str, Any]:
    return _sharded("sample", cfg, folder, upstream, on_step)


def run_eval_gen(cfg, folder: Path, upstream: dict[str, Path], on_step) -> dict[str, Any]:
    return _sharded("eval_gen", cfg, folder, upstream, on_step)


def run_cost(cfg, folder: Path, upstream: dict[str, Path], on_step) -> dict[str, Any]:
    from evaluation.cost import variant_cost

    return {"cost": variant_cost(cfg)}


def run_speed(cfg, folder: Path, upstream: dict[str, Path], on_step) -> dict[str, Any]:
    from ablations.stages.speed import run_speed as measure

    return measure(cfg, Path(upstream["train_vae"]), Path(upstream["train_dit"]))


def _sharded(stage: str, cfg, folder: Path, upstream: dict[str, Path], on_step) -> dict[str, Any]:
    """`stage` as `train.workers` shards (Ray tasks, a GPU each when the cluster has GPUs; one shard runs
    in this task), merged into one result."""
    import ray

    from ablations.stages import sharded

    gpus = 1 if ray.is_initialized() and ray.cluster_resources().get("GPU", 0) > 0 and cfg.train.gpus_per_worker > 0 else 0
    return getattr(sharded, f"run_{stage}")(cfg, folder, upstream, on_step, cfg.train.workers, num_gpus=gpus)


def _seeded(section: Any, seed: int) -> Any:
    """The run's seed overrides a section's own seed field, so `seed` is one axis."""
    import dataclasses

    return dataclasses.replace(section, seed=seed) if hasattr(section, "seed") else section


# encode_latents, sample, eval_recon and eval_gen always go through stages/sharded.py: split over
# train.workers shards, with per-item seeds, so one worker gives exactly what N give
TRAINING = ("train_vae", "train_dit")  # stages that run on `train.workers` workers (ablations.training.launch)
STAGES_RUN: dict[str, Callable[..., dict[str, Any]]] = {
    "train_vae": run_train_vae,
    "eval_recon": run_eval_recon,
    "encode_latents": run_encode_latents,
    "train_dit": run_train_dit,
    "sample": run_sample,
    "eval_gen": run_eval_gen,
    "cost": run_cost,
    "speed": run_speed,
}
