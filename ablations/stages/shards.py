"""Splitting a stage's items across workers: slices, fan-out, per-item seeds and part folders.

A sharded stage (`ablations/stages/sharded.py`) gives each of `world` ranks a contiguous
slice of its clips or prompts (`shard_slice`), runs the ranks as Ray tasks (`map_shards`),
and has each rank write its part to `<folder>/parts/rank-K-of-N/`. A part is built under a
temporary name, gets its `DONE` marker last and is then renamed into place (`build_part`),
so a shard killed half-way never leaves a folder that looks complete, and two attempts of
one shard never write into the same folder. The merge checks that all N parts are there
and complete (`complete_parts`) before it writes the stage's final files; a rerun reuses
the complete parts and redoes the rest.

Results must not depend on the split, so per-item randomness comes from a generator seeded
per item (`item_seed`), never from one generator advanced through the loop.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import uuid
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ablations.store import check_file_record, file_record

PARTS = "parts"
DONE = "DONE"


class ShardError(RuntimeError):
    """A shard failed in a way that has no exception of its own to re-raise (a dead worker, say)."""


class IncompletePartsError(RuntimeError):
    """The merge found a part missing or without its DONE marker."""


# --------------------------------------------------------------------------- slices and seeds


def shard_slice(n_items: int, rank: int, world: int) -> slice:
    """The contiguous slice of `n_items` that rank `rank` of `world` processes.

    Balanced: the first `n_items % world` ranks get one item more. The slices of ranks
    0..world-1 tile range(n_items) in order; a rank past the items gets an empty slice.
    """
    if world < 1:
        raise ValueError(f"world must be at least 1, got {world}.")
    if not 0 <= rank < world:
        raise ValueError(f"rank must be in [0, {world}), got {rank}.")
    if n_items < 0:
        raise ValueError(f"n_items must be non-negative, got {n_items}.")
    base, extra = divmod(n_items, world)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (1 if rank < extra else 0))


ITEM_SALT = 0x17E5EED  # keeps per-item stage seeds apart from models.rng.BatchRNG's training streams (salt 0)


def item_seed(seed: int, *keys: int) -> int:
    """A well-mixed 63-bit seed for one item, from the run's seed and the item's keys.

    A hash (`models.rng.mix_seed`, blake2b) of (ITEM_SALT, seed, keys), so seed s item i
    and seed s+1 item i-1 draw unrelated noise, which `seed + index` would not give.
    """
    from models.rng import mix_seed

    return mix_seed(ITEM_SALT, seed, *keys)


def item_generator(seed: int, *keys: int):
    """A CPU torch.Generator seeded with `item_seed(seed, *keys)` (CPU: the same noise on any device)."""
    import torch

    return torch.Generator().manual_seed(item_seed(seed, *keys))


# --------------------------------------------------------------------------- fan-out


def _shard_call(fn: Callable[..., Any], rank: int, world: int, threads: int, args: Sequence[Any],
                kwargs: Mapping[str, Any]) -> Any:
    """What a shard's Ray task runs: `fn(rank, world, *args, **kwargs)` with its torch threads set."""
    try:
        import torch

        torch.set_num_threads(max(1, threads))
    except ImportError:
        pass
    return fn(rank, world, *args, **kwargs)


def _rank_error(exc: BaseException, rank: int, world: int, name: str) -> BaseException:
    """The shard's own exception type with its rank named (the runner decides retries by type name).

    A Ray error with no exception of its own (a dead worker, a lost node) becomes a ShardError.
    """
    cause = getattr(exc, "cause", None) or exc
    text = str(cause).strip().splitlines()
    message = next((line for line in reversed(text) if line.strip()), type(cause).__name__)
    prefix = f"{name} shard {rank} of {world} failed"
    if type(cause).__module__.startswith("ray."):
        return ShardError(f"{prefix}: {type(cause).__name__}: {message}")
    try:
        return type(cause)(f"{prefix}: {message}")
    except Exception:  # noqa: BLE001 - an exception type with another constructor
        return ShardError(f"{prefix}: {type(cause).__name__}: {message}")


def map_shards(
    fn: Callable[..., Any],
    world: int,
    *,
    num_cpus: float = 1,
    num_gpus: float = 0,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    on_done: Callable[[int, int], None] | None = None,
) -> list[Any]:
    """Run `fn(rank, world, *args, **kwargs)` for every rank; return the results in rank order.

    With Ray initialised and world > 1, every rank is a Ray task with `num_cpus` /
    `num_gpus` (`fn` must be a module-level function, so Ray can import it); this also
    works from inside another Ray task, which should then hold no resources the shards
    need (Ray lends a task's CPUs back while it waits, never its GPUs). Otherwise the
    ranks run here, one after the other. All ranks run to the end even when one fails, so
    a rerun finds their parts complete; then the lowest failed rank raises, its exception
    type kept and its rank named (`ShardError` for a dead worker). `on_done(rank,
    finished)` is called as each rank finishes.
    """
    kwargs = dict(kwargs or {})
    name = getattr(fn, "__name__", "shard").lstrip("_")
    if world < 1:
        raise ValueError(f"world must be at least 1, got {world}.")
    ray = None
    if world > 1:
        try:
            import ray as _ray

            ray = _ray if _ray.is_initialized() else None
        except ImportError:
            ray = None
    results: dict[int, Any] = {}
    failures: dict[int, BaseException] = {}
    if ray is None:
        if world == 1:
            result = fn(0, 1, *args, **kwargs)  # one shard: its exception as it is
            if on_done is not None:
                on_done(0, 1)
            return [result]
        for rank in range(world):
            try:
                results[rank] = fn(rank, world, *args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - re-raised below with its rank
                failures[rank] = exc
            if on_done is not None:
                on_done(rank, rank + 1)
    else:
        remote = ray.remote(_shard_call).options(num_cpus=num_cpus, num_gpus=num_gpus, name=f"{name}[shard]")
        threads = max(1, int(num_cpus))
        refs = [remote.remote(fn, rank, world, threads, tuple(args), kwargs) for rank in range(world)]
        rank_of = {ref: rank for rank, ref in enumerate(refs)}
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for ref in ready:
                rank = rank_of[ref]
                try:
                    results[rank] = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - re-raised below with its rank
                    failures[rank] = exc
                if on_done is not None:
                    on_done(rank, len(results) + len(failures))
    if failures:
        rank = min(failures)
        error = _rank_error(failures[rank], rank, world, name)
        if len(failures) > 1:
            others = ", ".join(str(r) for r in sorted(failures) if r != rank)
            error.args = (f"{error.args[0]} (shards {others} failed too)",) + tuple(error.args[1:])
        raise error from failures[rank]
    return [results[rank] for rank in range(world)]


# --------------------------------------------------------------------------- part folders


def part_dir(folder: Path, rank: int, world: int) -> Path:
    return Path(folder) / PARTS / f"rank-{rank}-of-{world}"


def read_part(path: Path) -> dict[str, Any] | None:
    """A part's DONE record ({rank, world, n_items, start, stop, info, host, pid, files}), or None if it is not
    complete or a file of it no longer matches the record's size and mtime (else sha256), which is said in one line."""
    try:
        record = json.loads((Path(path) / DONE).read_text())
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
        return None
    why = check_file_record(path, record.get("files") or {}) if isinstance(record, dict) else "DONE is not a record"
    if why is not None:
        print(f"part {Path(path).name} of {Path(path).parent.parent}: {why}; it is redone", flush=True)
        return None
    return record


def build_part(folder: Path, rank: int, world: int, n_items: int,
               work: Callable[[Path, slice], Mapping[str, Any] | None]) -> dict[str, Any]:
    """Make rank's part of `folder` unless a complete one is there; return its DONE record.

    `work(tmp_dir, items)` writes the part's files into `tmp_dir` for the slice `items` of
    `n_items` and returns a small JSON-able `info` dict. DONE is written last, then the
    folder is renamed to `parts/rank-K-of-N`; a folder at that name without DONE (a part
    left by an older layout, or by hand) is removed and rebuilt. The record gets
    `"reused": True` when the part was already complete.
    """
    final = part_dir(folder, rank, world)
    record = read_part(final)
    if record is not None and _matches(record, rank, world, n_items):
        return {**record, "reused": True}
    items = shard_slice(n_items, rank, world)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.tmp-{uuid.uuid4().hex[:12]}"
    tmp.mkdir()
    try:
        info = work(tmp, items) or {}
        record = {"rank": rank, "world": world, "n_items": n_items, "start": items.start, "stop": items.stop,
                  "info": dict(info), "host": socket.gethostname(), "pid": os.getpid(),
                  "files": file_record(tmp)}  # sizes, mtimes, sha256: a damaged part is redone, not merged
        done = tmp / DONE
        done.write_text(json.dumps(record) + "\n")
        _install(tmp, final, rank, world, n_items)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {**record, "reused": False}


def _matches(record: Mapping[str, Any], rank: int, world: int, n_items: int | None) -> bool:
    if record.get("rank") != rank or record.get("world") != world:
        return False
    return n_items is None or record.get("n_items") == n_items


def _install(tmp: Path, final: Path, rank: int, world: int, n_items: int) -> None:
    """Rename a finished part into place; an incomplete folder there is replaced, a complete one kept."""
    for _ in range(3):
        if final.exists():
            existing = read_part(final)
            if existing is not None and _matches(existing, rank, world, n_items):
                return  # another attempt of this shard got there first: its part is as good as ours
            shutil.rmtree(final, ignore_errors=True)
        try:
            os.rename(tmp, final)
            return
        except OSError:
            continue  # a concurrent attempt renamed its part in between: look again
    raise OSError(f"could not move part {tmp} to {final}")


def complete_parts(folder: Path, world: int) -> list[tuple[Path, dict[str, Any]]]:
    """[(part folder, DONE record)] of ranks 0..world-1, checked complete and tiling the items.

    Raises IncompletePartsError naming the missing or incomplete ranks.
    """
    parts, missing = [], []
    for rank in range(world):
        path = part_dir(folder, rank, world)
        record = read_part(path)
        if record is None or not _matches(record, rank, world, None):
            missing.append(rank)
        else:
            parts.append((path, record))
    if missing:
        raise IncompletePartsError(f"{Path(folder) / PARTS}: part(s) {', '.join(map(str, missing))} of {world} "
                                   f"are missing or have no DONE marker; rerun the stage to redo them.")
    sizes = {record["n_items"] for _, record in parts}
    tiles = [(record["start"], record["stop"]) for _, record in parts]
    n_items = sizes.pop() if len(sizes) == 1 else None
    if n_items is None or tiles != [(shard_slice(n_items, r, world).start, shard_slice(n_items, r, world).stop)
                                    for r in range(world)]:
        raise IncompletePartsError(f"{Path(folder) / PARTS}: the {world} parts do not tile one item list "
                                   f"(sizes {sorted(record['n_items'] for _, record in parts)}); delete the folder "
                                   f"and rerun the stage.")
    return parts


def clean_stale(folder: Path) -> None:
    """Remove temporary part folders left by killed attempts (after a successful merge)."""
    root = Path(folder) / PARTS
    if root.exists():
        for path in root.glob(".rank-*.tmp-*"):
            shutil.rmtree(path, ignore_errors=True)


def link_or_copy(src: Path, dst: Path) -> Path:
    """Hard-link `src` at `dst` (a copy across file systems), replacing `dst` atomically."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.link-{uuid.uuid4().hex[:8]}")
    try:
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copy2(src, tmp)
        os.replace(tmp, dst)
    finally:
        if tmp.exists():
            tmp.unlink()
    return dst
