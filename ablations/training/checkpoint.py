"""Sharded, atomic training checkpoints with `torch.distributed.checkpoint` (DCP).

Layout under the stage folder:

    checkpoints/step-000200/   .metadata + one __R_0.distcp per rank (DCP), meta.json, DONE
    checkpoints/.tmp-step-000300/   being written; never read

Every rank writes its shards into the temporary folder; rank 0 then writes `meta.json`
(step, loss curve, world size, stage, the training config and its hash) and `DONE`, and
renames the folder into place, so a folder without `DONE` (a crash mid-write) is never
mistaken for a checkpoint. `DONE` records the size and sha256 of every file; `latest` returns the newest checkpoint whose
files match it, says which ones it passed over and why, and returns None (a fresh start)
when none does, so a torn checkpoint costs one checkpoint interval, not every retry.
Hashing reads the checkpoint once more at save and at resume (the resume's read then
comes from the page cache). Older complete checkpoints beyond `keep` (2) are removed. DCP reshards on load: a checkpoint
written by N workers (DDP or FSDP2) resumes on M. Model and optimizer states go through
`torch.distributed.checkpoint.state_dict` (`get_state_dict` / `set_state_dict`), which
handles FSDP2's DTensors and plain modules alike.

`check_config` refuses to resume checkpoints trained with another config (the hash in
`meta.json`), before anything is loaded, in one sentence naming the fields that differ.
The step count, checkpoint interval and latent-statistics sample (`RESUMABLE`) are not
hashed: the learning rate is warm-up-then-constant, so training on to more steps from a
checkpoint gives what one longer run gives.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from ablations.store import atomic_write_json, check_file_record, file_record
from ablations.training.world import World
from models.config import content_hash, to_dict

FOLDER = "checkpoints"
DONE = "DONE"
META = "meta.json"
CONFIG, CONFIG_HASH = "config", "config_hash"  # meta.json keys: the training config, and the hash resume compares
# config fields a resume may change: none alters any step's update (the statistics are taken after the last step)
RESUMABLE = frozenset({"steps", "checkpoint_every", "stats_max_clips"})


class ConfigMismatchError(ValueError):
    """A folder's checkpoints were trained with another config than the one asked to resume them."""


@contextlib.contextmanager
def _single_process_quiet():
    """DCP warns on every call made in one process without a process group, which is intended here
    (one worker, or `read` for inspection); torch words it "is disabled" or "is unavailable or uninitialized"."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is (disabled|unavailable)")
        yield


def _name(step: int) -> str:
    return f"step-{step:06d}"


def complete_checkpoints(out_dir: Path) -> list[Path]:
    """Complete checkpoint folders (with DONE and meta.json), oldest first."""
    root = Path(out_dir) / FOLDER
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.name.startswith("step-") and (p / DONE).exists() and (p / META).exists()]
    return sorted(found, key=lambda p: p.name)


def latest(out_dir: Path) -> Path | None:
    """The newest complete checkpoint whose files match its DONE record, or None (start from step 0).

    Each checkpoint passed over is named on stdout (the stage log) with the reason.
    """
    found = complete_checkpoints(out_dir)
    for folder in reversed(found):
        why = verify(folder)
        if why is None:
            return folder
        older = [p.name for p in found if p.name < folder.name]
        then = f"resuming from {older[-1]} instead" if older else "no intact checkpoint is left, so training starts from step 0"
        print(f"checkpoint {folder.name} in {folder.parent}: {why}; {then}.", flush=True)
    return None


def verify(folder: Path) -> str | None:
    """None if the checkpoint's files match its DONE record (sizes and sha256), else what is wrong.

    A DONE without a record (checkpoints written before records) is accepted as before.
    """
    try:
        marker = json.loads((Path(folder) / DONE).read_text() or "null")
    except (OSError, ValueError):
        marker = None
    if not isinstance(marker, dict) or not isinstance(marker.get("files"), dict):
        return None
    return check_file_record(folder, marker["files"], full=True)


def config_meta(config: Any) -> dict[str, Any]:
    """What each checkpoint records of its training config: the config (to name differences) and its hash."""
    return {CONFIG: to_dict(config), CONFIG_HASH: content_hash(_hashed(to_dict(config)))}


def _hashed(config: dict[str, Any]) -> dict[str, Any]:
    """The config without the `RESUMABLE` fields of its sections."""
    return {name: {k: v for k, v in section.items() if k not in RESUMABLE} if isinstance(section, dict) else section
            for name, section in config.items()}


def check_config(out_dir: Path, config: Any, steps: int, *, unrecorded_ok: bool = True) -> None:
    """Refuse, in one sentence, to resume checkpoints in `out_dir` trained with another `config`
    (or already past `steps`); nothing is loaded. Checkpoints that record no config (written
    before configs were recorded) pass when `unrecorded_ok`: a sweep's stage folder is keyed by
    its config, so its checkpoints are this config's; a folder the user names is not."""
    want = config_meta(config)
    root = Path(out_dir) / FOLDER
    redo = f"use a new --out or delete {root} to start over"
    for folder in complete_checkpoints(out_dir):
        try:
            meta = json.loads((folder / META).read_text())
        except (OSError, ValueError):
            continue  # `latest` passes over a damaged checkpoint, saying why
        if CONFIG_HASH not in meta:
            if unrecorded_ok:
                continue
            raise ConfigMismatchError(f"{root} holds checkpoints that do not record the config they were trained with "
                                      f"(written by an older ltxlab), so resuming them may mix two runs; {redo}.")
        if meta[CONFIG_HASH] != want[CONFIG_HASH]:
            raise ConfigMismatchError(f"{root} holds checkpoints of another config "
                                      f"({_changes(_hashed(meta.get(CONFIG) or {}), _hashed(want[CONFIG]))}); {redo}.")
        if int(meta.get("step", 0)) > steps:
            raise ConfigMismatchError(f"{root} holds a checkpoint at step {meta['step']}, past the {steps} steps asked "
                                      f"for; ask for at least {meta['step']} steps, or {redo}.")


def _changes(old: dict[str, Any], new: dict[str, Any], shown: int = 4) -> str:
    """'vae_train.seed 0 -> 1, loss.mse 1.0 -> 0.0' for the leaves that differ (the first `shown`)."""
    from ablations.config_file import config_changes, flatten

    diff = config_changes(flatten(old), flatten(new))  # flat: a missing section's leaves are listed one by one
    more = f", and {len(diff) - shown} more" if len(diff) > shown else ""
    return ", ".join(diff[:shown]) + more if diff else "the recorded config differs"


def _state(models: dict[str, nn.Module], optimizers: dict[str, tuple[nn.Module, torch.optim.Optimizer]]) -> dict[str, Any]:
    # a module without state (the loss terms when no GAN is on) has nothing to save
    state: dict[str, Any] = {f"model.{k}": get_model_state_dict(m) for k, m in models.items() if m.state_dict()}
    for k, (m, opt) in optimizers.items():
        state[f"optim.{k}"] = get_optimizer_state_dict(m, opt)
    return state


def save(out_dir: Path, step: int, models: dict[str, nn.Module],
         optimizers: dict[str, tuple[nn.Module, torch.optim.Optimizer]], meta: dict[str, Any], world: World,
         keep: int = 2) -> Path:
    """Write checkpoint `step` (every rank calls this); returns its folder. `meta` goes into meta.json
    (with `config_meta(config)` among it, `check_config` can match a resume against it)."""
    root = Path(out_dir) / FOLDER
    final = root / _name(step)
    tmp = root / f".tmp-{_name(step)}"
    if world.is_main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    world.barrier()
    with _single_process_quiet():
        dcp.save(_state(models, optimizers), checkpoint_id=str(tmp))
    world.barrier()
    if world.is_main:
        atomic_write_json(tmp / META, {**meta, "step": step, "world_size": world.size})
        atomic_write_json(tmp / DONE, {"files": file_record(tmp)})  # last: sizes and sha256 of every file
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        for old in complete_checkpoints(out_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    world.barrier()
    return final


def load(folder: Path, models: dict[str, nn.Module], optimizers: dict[str, tuple[nn.Module, torch.optim.Optimizer]],
         world: World) -> dict[str, Any]:
    """Restore a complete checkpoint into `models` and `optimizers` (any world size); returns meta.json."""
    folder = Path(folder)
    if not (folder / DONE).exists():
        raise FileNotFoundError(f"{folder} is not a complete checkpoint (no {DONE} marker); delete it and resume from an older one.")
    state = _state(models, optimizers)
    with _single_process_quiet():
        dcp.load(state, checkpoint_id=str(folder))
    options = StateDictOptions(strict=True)
    for k, m in models.items():
        if f"model.{k}" in state:
            set_model_state_dict(m, state[f"model.{k}"], options=options)
    for k, (m, opt) in optimizers.items():
        set_optimizer_state_dict(m, opt, state[f"optim.{k}"], options=options)
    return json.loads((folder / META).read_text())


def full_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The whole (unsharded) state dict on the CPU, on every rank (FSDP2 gathers)."""
    sd = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return {k: v.detach().cpu() for k, v in sd.items()}


def read(folder: Path) -> dict[str, Any]:
    """Every tensor of a complete checkpoint as plain CPU tensors (for tests and inspection):
    {"model.<name>": {key: tensor}, "optim.<name>": {...}}, plus "meta"."""
    from torch.distributed.checkpoint.state_dict_loader import _load_state_dict_from_keys

    folder = Path(folder)
    if not (folder / DONE).exists():
        raise FileNotFoundError(f"{folder} is not a complete checkpoint (no {DONE} marker).")
    with _single_process_quiet():
        state = _load_state_dict_from_keys(checkpoint_id=str(folder))
    return {**state, "meta": json.loads((folder / META).read_text())}
