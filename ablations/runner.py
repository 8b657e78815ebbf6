"""Run a sweep's stage instances as Ray tasks, in dependency order, into the results store.

Embedded `ray.init()` sized to the machine by default; `address` (or `RAY_ADDRESS`)
joins a cluster, where each task asks for one GPU if the cluster has any. Finished
instances (DONE markers) are never run again; a failing instance is retried a bounded
number of times (worker death by Ray, exceptions by the driver), then recorded as failed
with its reason while the rest of the sweep goes on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ablations import watchdog
from ablations.config_file import config_changes
from ablations.executor import (INSTANCE_LOCK, KEPT_ON_RERUN, LOG, PROGRESS, clear_for_rerun, execute,
                                lineage_problem, stage_dir, verify_done)
from ablations.graph import Plan, StageInstance, StageSpec, expand_variants, plan_sweep, replicate_summary
from ablations.provenance import provenance
from ablations.store import StoreError, SweepBusyError, SweepStore
from ablations.threads import threads_per_task
from models.config import to_dict


def _recon_versions(cfg: Any) -> dict[str, str]:
    from ablations.stages.sharded import recon_metric_versions

    return recon_metric_versions(cfg)


def _gen_versions(cfg: Any) -> dict[str, str]:
    from ablations.stages.sharded import gen_metric_versions

    return gen_metric_versions(cfg)


# `fields`: every RunConfig section the stage reads (tests/test_graph_keys.py runs `cost` on a config that records its reads)
STAGE_SPECS: dict[str, StageSpec] = {
    spec.name: spec
    for spec in (
        StageSpec("train_vae", ("seed", "vae_data", "vae", "loss", "vae_train"), (), gpu=True, numerics=True),
        StageSpec("eval_recon", ("vae_data", "eval"), ("train_vae",), gpu=True, versions=_recon_versions),
        StageSpec("encode_latents", ("dit_data", "text"), ("train_vae",), gpu=True),
        StageSpec("train_dit", ("seed", "dit", "flow", "text", "dit_train"), ("encode_latents",), gpu=True,
                  numerics=True),
        StageSpec("sample", ("seed", "sample", "dit_data", "eval"), ("train_vae", "train_dit"), gpu=True),
        StageSpec("eval_gen", ("eval",), ("sample",), versions=_gen_versions),
        # cost's latency_s is a rough figure taken beside other stages; `speed` is the careful measurement.
        # `sample`: the DiT forwards it counts follow sample.steps and guidance_scale (evaluation/cost.py)
        StageSpec("cost", ("vae", "dit", "vae_data", "dit_data", "sample", "cost"), ()),
        StageSpec("speed", ("sample", "dit_data", "cost"), ("train_vae", "train_dit"), gpu=True, alone=True),  # stages/speed.py
    )
}
# stages that run on the run's `train.workers` workers (Ray Train for training, shards for the rest)
SPREAD_STAGES = ("train_vae", "train_dit", "encode_latents", "sample", "eval_recon", "eval_gen")
# errors that a retry cannot fix: record them at once
NO_RETRY = ("NonFiniteLossError", "ConfigError", "ClipError", "UnknownNameError", "StageInterrupted")
VERIFY_MODES = ("fast", "full")  # how finished instances are checked before reuse (executor.verify_done)


@dataclass
class InstanceState:
    instance: StageInstance
    status: str = "pending"  # pending | running | done | failed
    attempts: int = 0
    ref: Any = None
    started: float = 0.0
    result: dict[str, Any] | None = None
    reason: str | None = None
    skipped: bool = False
    note: str | None = None  # what verifying its DONE record found (a rerun's reason, a legacy record)


@dataclass
class SweepOutcome:
    sweep: str
    path: Path
    wall_s: float
    executed: int  # stage instances that ran in this invocation
    skipped: int  # found DONE and reused
    failed: int
    runs_done: int
    runs_failed: int
    slots: int  # parallel task slots
    compute_s: float  # summed stage compute time of the instances that ran
    states: dict[str, InstanceState] = field(default_factory=dict)


def _host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of a `HOST:PORT` or `ray://HOST:PORT` address; None for `auto`, `local` and other forms."""
    host_port = address.removeprefix("ray://")
    host, _, port = host_port.rpartition(":")
    if not host or not port.isdigit() or "/" in host_port:
        return None
    return host.strip("[]"), int(port)


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """One TCP connect to a `ray://HOST:PORT` or `HOST:PORT` address before `ray.init`, which would
    retry an unreachable head for ~30 s and then print a traceback; `auto` and other forms are left
    to Ray."""
    import socket

    from ablations.cli import UserError

    endpoint = _host_port(address)
    if endpoint is None:
        return
    try:
        socket.create_connection(endpoint, timeout=timeout_s).close()
    except OSError as exc:
        hint = "ray://HEAD:10001 (Ray Client)" if address.startswith("ray://") else "HEAD:6379 (the GCS port)"
        raise UserError(f"No Ray cluster answers at {address} ({exc.strerror or exc}); check the address "
                        f"(e.g. {hint}) and that the head is up, or leave --address out for an embedded Ray.") from None


def _init_ray(address: str | None, quiet: bool) -> int:
    """Start or join Ray quietly; returns the number of parallel CPU slots.

    A process already connected to Ray (a notebook, a test) keeps its connection; an explicit
    `address` is still checked first, and one that names another GCS than the connected one is
    refused, since the sweep would otherwise run on the connected cluster without saying so."""
    import ray

    if address:
        _check_reachable(address)
    if ray.is_initialized():
        _check_same_cluster(address, ray.get_runtime_context().gcs_address)
    else:
        address = address or os.environ.get("RAY_ADDRESS")
        os.environ.setdefault("RAY_ACCEPT_CLUSTER_TELEMETRY", "0")
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        kwargs: dict[str, Any] = dict(log_to_driver=not quiet, logging_level=logging.ERROR, include_dashboard=False,
                                      configure_logging=True)
        if address:
            ray.init(address=address, **kwargs)
        else:
            # a SIGKILLed driver would leave Ray's agents running: a watchdog ends them (ablations/watchdog.py)
            watchdog.start(Path(ray.__file__).parent)
            # "local": always a fresh embedded instance, never a stale `ray start` cluster
            ray.init(address="local", num_cpus=os.cpu_count() or 1, **kwargs)
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def _gcs_endpoint(address: str) -> tuple[str, int] | None:
    """(resolved IP, port) of a `HOST:PORT` address, with every address of this machine as
    127.0.0.1 (Ray names its own node by its network IP); None for other forms."""
    import ipaddress
    import socket

    endpoint = _host_port(address)
    if endpoint is None:
        return None
    host, port = endpoint
    try:
        ip = socket.gethostbyname(host)
    except OSError:
        return None
    local = ipaddress.ip_address(ip).is_loopback
    if not local:
        try:
            import ray.util

            local = ip == ray.util.get_node_ip_address()
        except Exception:  # noqa: BLE001 - no node address to compare with
            pass
    return ("127.0.0.1" if local else ip), port


def _check_same_cluster(address: str | None, connected: str) -> None:
    """Refuse an explicit `HOST:PORT` GCS address other than the one this process is already
    connected to (a Ray Client `ray://` address, `auto` and `local` cannot be compared and are
    left alone)."""
    from ablations.cli import UserError

    if not address or address.startswith("ray://"):
        return
    wanted = _gcs_endpoint(address)
    if wanted is None or wanted == _gcs_endpoint(connected):
        return
    raise UserError(f"This process is already connected to the Ray cluster at {connected}, not {address}; "
                    f"call ray.shutdown() first, or leave the address out to run there.")


def _holds_node(spec: StageSpec, gpus_available: bool) -> bool:
    """A stage that times itself holds a whole node where there are no GPUs (with GPUs, its GPU)."""
    return spec.alone and not gpus_available


def _remote(spec: StageSpec, gpus_available: bool, max_retries: int, workers: int = 1, node_cpus: float = 0.0):
    """The stage's Ray task. A stage spread over several workers (a Ray Train job, or
    shards) is coordinated by a task that holds no resources, so it can never sit on a CPU
    its own workers wait for: the workers reserve theirs together (a placement group). A
    stage that times itself (`alone`) holds `node_cpus`, every CPU of the largest node, when
    the cluster has no GPUs: a CPU neighbour would slow it by an amount that differs from run
    to run (on a GPU it holds its GPU, which is what it times)."""
    import ray

    coordinator = workers > 1 and spec.name in SPREAD_STAGES
    cpus = max(spec.cpus, node_cpus) if _holds_node(spec, gpus_available) else spec.cpus
    return ray.remote(execute).options(
        name=spec.name,
        num_cpus=0 if coordinator else cpus,
        num_gpus=1 if (spec.gpu and gpus_available and not coordinator) else 0,
        max_retries=max_retries,  # worker death (killed process, lost node) is retried by Ray
        retry_exceptions=False,  # exceptions are retried by the driver, which can tell which ones are worth it
    )


def _exception_reason(exc: BaseException) -> tuple[str, str]:
    """(exception type name, one-line reason) from a Ray error or a plain exception."""
    cause = getattr(exc, "cause", None) or exc
    name = type(cause).__name__
    text = str(cause).strip().splitlines()
    message = next((line for line in reversed(text) if line.strip()), name)
    if name in ("WorkerCrashedError", "OutOfMemoryError", "NodeDiedError"):
        message = f"worker died ({name})"
    return name, f"{name}: {message}"[:500]


class LiveView:
    """Stage counts and ETA on one terminal line (or a line per change when not a terminal)."""

    def __init__(self, sweep: str, enabled: bool) -> None:
        self.sweep, self.enabled = sweep, enabled
        self.tty = sys.stdout.isatty()
        self.last = ""

    def show(self, states: dict[str, InstanceState], slots: int, cache_root: Path) -> None:
        if not self.enabled:
            return
        counts = {s: 0 for s in ("pending", "running", "done", "failed")}
        for st in states.values():
            counts[st.status] += 1
        running = [self._running_text(st, cache_root) for st in states.values() if st.status == "running"]
        eta = self._eta(states, slots)
        line = (f"[{self.sweep}] done {counts['done']}  running {counts['running']}  pending {counts['pending']}  "
                f"failed {counts['failed']}  | ETA {eta}  | {'; '.join(running)[:120]}")
        if self.tty:
            sys.stdout.write("\r\033[K" + line)
            sys.stdout.flush()
        elif line.split("|")[0] != self.last.split("|")[0]:
            print(line, flush=True)
        self.last = line

    def close(self) -> None:
        if self.enabled and self.tty:
            sys.stdout.write("\n")

    @staticmethod
    def _running_text(st: InstanceState, cache_root: Path) -> str:
        progress = stage_dir(cache_root, st.instance.stage, st.instance.key) / PROGRESS
        try:
            import json

            p = json.loads(progress.read_text())
            return f"{st.instance.stage} {p['step']}/{p['total']}"
        except (OSError, ValueError, KeyError):
            return st.instance.stage

    @staticmethod
    def _eta(states: dict[str, InstanceState], slots: int) -> str:
        durations: dict[str, list[float]] = {}
        for st in states.values():
            if st.status == "done" and st.result and not st.skipped:
                durations.setdefault(st.instance.stage, []).append(float(st.result.get("compute_s", 0.0)))
        if not durations:
            return "--"
        overall = sum(sum(v) for v in durations.values()) / sum(len(v) for v in durations.values())
        remaining = 0.0
        for st in states.values():
            if st.status in ("pending", "running"):
                known = durations.get(st.instance.stage)
                est = sum(known) / len(known) if known else overall
                if st.status == "running":
                    est = max(0.0, est - (time.time() - st.started))
                remaining += est
        seconds = int(remaining / max(1, slots))
        return f"{seconds // 60}m{seconds % 60:02d}s"


def run_sweep(
    sweep: Any,
    results_root: str | os.PathLike = "results",
    *,
    address: str | None = None,
    max_retries: int = 2,
    progress: bool = True,
    quiet_ray: bool = True,
    poll_s: float = 0.5,
    faults: dict[str, dict[str, Any]] | None = None,
    verify: str = "fast",
    extend: bool = False,
) -> SweepOutcome:
    """Expand, validate, and run `sweep` (ablations.recipes.Sweep); write the results store.

    One runner per results folder and sweep name (`SweepStore.run_lock`); a sweep folder
    holds one set of runs unless `extend` adds others to it. Finished instances are
    verified against their DONE records before reuse (`verify`: "fast" checks sizes and
    mtimes, hashing files whose mtime moved; "full" hashes every file). `faults` (tests
    only) injects failures by stage name, see `ablations.executor`.
    """
    from ablations.cli import UserError
    from ablations.configs import check_buildable, sync_pairing

    if verify not in VERIFY_MODES:
        raise UserError(f"verify must be one of {', '.join(VERIFY_MODES)}, not '{verify}'.")
    try:  # a bad --name, or a results root that is a file: one sentence before any config is built
        SweepStore.check_location(Path(results_root).resolve(), sweep.name)
    except StoreError as exc:
        raise UserError(str(exc)) from None
    started = time.time()
    variants = expand_variants(sweep.base, sweep.axes, sweep.seeds, sweep.variants,
                               replicate_baseline=getattr(sweep, "replicate_baseline", False))
    variants = [dataclasses.replace(v, config=sync_pairing(v.config)) for v in variants]
    plan = plan_sweep(variants, STAGE_SPECS, list(sweep.stages))
    stages_used = {i.stage for i in plan.instances.values()}
    for variant in variants:  # every config is built on the meta device before anything launches
        check_buildable(variant.config, stages_used)

    try:  # a folder that cannot be made (read-only, full disk): one sentence
        store = SweepStore(Path(results_root).resolve(), sweep.name)
    except StoreError as exc:
        raise UserError(str(exc)) from None
    try:
        with store.run_lock():
            previous = check_same_runs(store, sweep, variants, extend)  # before Ray starts
            return _run_locked(sweep, plan, store, started, previous, address=address, max_retries=max_retries,
                               progress=progress, quiet_ray=quiet_ray, poll_s=poll_s, faults=faults,
                               full=verify == "full")
    except SweepBusyError as exc:
        raise UserError(str(exc)) from None


def _run_locked(sweep: Any, plan: Plan, store: SweepStore, started: float, previous: dict[str, str], *,
                address: str | None, max_retries: int, progress: bool, quiet_ray: bool, poll_s: float,
                faults: dict[str, dict[str, Any]] | None, full: bool) -> SweepOutcome:
    """The sweep, once its folder is locked: Ray, sweep.json, the scheduling loop, the final status."""
    variants = plan.variants
    slots = _init_ray(address, quiet_ray)
    import ray

    gpus = ray.cluster_resources().get("GPU", 0) > 0
    check_cluster(variants, gpus)  # before anything is written or launched
    node_cpus = max((n["Resources"].get("CPU", 0.0) for n in ray.nodes() if n.get("Alive")), default=1.0)
    # training keys hold the numerics the stages will run with, which depend on the cluster's GPUs
    plan = plan_sweep(variants, STAGE_SPECS, list(sweep.stages), gpus=gpus)

    # available cores (CPU affinity, not the machine's count) shared by the concurrent slots
    threads = threads_per_task(slots) if not (address or os.environ.get("RAY_ADDRESS")) else 1

    _write_sweep_json(store, sweep, variants, started, previous)
    with final_status(store, started):
        return _schedule(sweep, plan, store, started, slots=slots, threads=threads, gpus=gpus, node_cpus=node_cpus,
                         max_retries=max_retries, progress=progress, poll_s=poll_s, faults=faults, full=full)


@contextlib.contextmanager
def final_status(store: SweepStore, started: float):
    """sweep.json's status once the invocation ends, however it ends: "done", "interrupted" (Ctrl-C)
    or "failed" (an exception). Only a SIGKILLed driver leaves "running" behind: it runs no code."""
    status = "failed"
    try:
        yield
        status = "done"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        with contextlib.suppress(StoreError, OSError):  # the exception on its way out says what went wrong
            store.update_sweep_json(status=status, finished_at=_iso(time.time()), wall_time_s=time.time() - started)


def _schedule(sweep: Any, plan: Plan, store: SweepStore, started: float, *, slots: int, threads: int, gpus: bool,
              node_cpus: float, max_retries: int, progress: bool, poll_s: float, faults: dict[str, dict[str, Any]] | None,
              full: bool) -> SweepOutcome:
    """The store's first rows, then the scheduling loop until every instance has ended."""
    from ablations.configs import run_data_warnings

    import ray

    variants = plan.variants
    cache_root = store.root / "_cache"
    for variant in variants:
        store.upsert_run({"run_id": variant.run_id, "variant": variant.name, "seed": variant.seed,
                          **_replication_columns(variant), **variant.axes, "status": "pending", "failure_reason": None,
                          "data_warnings": run_data_warnings(variant.config)})  # broken files the run skips
        store.write_run_json(variant.run_id, "config.json", to_dict(variant.config))
        # where the run's stages work (results/_cache/<stage>/<key>/): the dashboard reads a running run's live curve there
        store.write_run_json(variant.run_id, "stages.json", dict(iid.split("/", 1) for iid in plan.run_stages[variant.run_id]))

    states = {iid: InstanceState(inst) for iid, inst in plan.instances.items()}
    view = LiveView(sweep.name, progress)
    executed = skipped = 0
    finished_runs: set[str] = set()
    try:
        while True:
            for iid, st in states.items():  # launch what is ready
                if st.status != "pending":
                    continue
                ups = [states[u] for u in st.instance.upstream]
                if any(u.status == "failed" for u in ups):
                    bad = next(u for u in ups if u.status == "failed")
                    st.status, st.reason = "failed", f"upstream {bad.instance.stage} failed: {bad.reason}"
                    continue
                if not all(u.status == "done" for u in ups):
                    continue
                if _reuse(st, plan, cache_root, full, states):
                    skipped += 1
                    continue
                _submit(st, cache_root, gpus, max_retries, threads, states, faults, node_cpus)
            _finalize_runs(store, plan, states, finished_runs, cache_root, sweep)
            running = {st.ref: st for st in states.values() if st.status == "running"}
            view.show(states, slots, cache_root)
            if not running:
                if all(st.status in ("done", "failed") for st in states.values()):
                    break
                continue
            ready, _ = ray.wait(list(running), num_returns=1, timeout=poll_s)
            for ref in ready:
                st = running[ref]
                try:
                    st.result = ray.get(ref)
                    st.status = "done"
                    executed += 1
                except Exception as exc:  # noqa: BLE001 - every failure is recorded, the sweep goes on
                    name, reason = _exception_reason(exc)
                    if name not in NO_RETRY and st.attempts <= max_retries:
                        _submit(st, cache_root, gpus, max_retries, threads, states, faults, node_cpus)
                    else:
                        st.status, st.reason = "failed", reason
        _finalize_runs(store, plan, states, finished_runs, cache_root, sweep)
    finally:
        view.close()
    wall = time.time() - started
    runs = store_runs_status(plan, states)
    compute = sum(float(st.result.get("compute_s", 0)) for st in states.values()
                  if st.status == "done" and not st.skipped and st.result)
    return SweepOutcome(sweep.name, store.path, wall, executed, skipped,
                        sum(st.status == "failed" for st in states.values()),
                        sum(s == "done" for s in runs.values()), sum(s == "failed" for s in runs.values()),
                        slots, compute, states)


def _reuse(st: InstanceState, plan: Plan, cache_root: Path, full: bool, states: dict[str, InstanceState]) -> bool:
    """Take a finished instance's result if its DONE record checks out and it was built from the
    upstream results now in the cache; else clear it for a rerun. Either way a note (legacy record,
    failed check) is printed in one line and kept for the manifest."""
    folder = stage_dir(cache_root, st.instance.stage, st.instance.key)
    result, why = verify_done(folder, full=full)
    keep = KEPT_ON_RERUN
    if result is not None:
        changed = lineage_problem(result, _upstream_dirs(st.instance, states, cache_root))
        if changed is not None:  # a rebuilt upstream: what this stage made belongs to one that is gone
            result, why, keep = None, changed, (LOG, INSTANCE_LOCK)
    if why is not None:
        st.note = f"stage {st.instance.stage} of run {_first_run(plan, st)}: {why}" + ("" if result else "; rerunning")
        print(st.note, flush=True)
    if result is None:
        if why is not None:
            clear_for_rerun(folder, keep)
        return False
    st.status, st.result, st.skipped = "done", result, True
    return True


def _first_run(plan: Plan, st: InstanceState) -> str:
    """A run that needs this instance (shared instances serve several), by its variant name and id."""
    iid = f"{st.instance.stage}/{st.instance.key}"
    names = {v.run_id: v.name for v in plan.variants}
    for run_id, needed in plan.run_stages.items():
        if iid in needed:
            return f"{names[run_id]} ({run_id})"
    return st.instance.key


def check_same_runs(store: SweepStore, sweep: Any, variants: list, extend: bool) -> dict[str, str]:
    """Refuse, in one sentence, a rerun whose runs differ from those the sweep folder already holds
    (another `--set`, `--seeds` or recipe) unless `extend`; returns the runs recorded before ({} if none)."""
    from ablations.cli import UserError
    from ablations.store import read_metrics, read_runs, read_sweep_json

    try:  # every file the run will rewrite reads back now, before Ray starts and sweep.json says "running"
        before = read_sweep_json(store.root, store.sweep)
        runs = read_runs(store.root, store.sweep)
        read_metrics(store.root, store.sweep)
    except StoreError as exc:
        raise UserError(f"{str(exc).rstrip('.')}, or run under another name with --name NEW.") from None
    previous = dict(before.get("variants") or {})
    if extend:
        _check_extension(store, runs, variants)
    if not previous or extend or set(previous) == {v.run_id for v in variants}:
        return previous
    changes = config_changes(before.get("config") or {}, to_dict(sweep.base))
    # other settings cannot join the runs held (`_check_extension`); new seeds and levels can
    extend_hint = (" (--force-extend adds only new seeds or axis levels under its own settings)" if changes
                   else ", or add these runs to it with --force-extend")
    if not changes and list(before.get("seeds") or []) != list(sweep.seeds):
        changes = [f"seeds {before.get('seeds')} -> {list(sweep.seeds)}"]
    what = f"other settings ({'; '.join(changes[:3])})" if changes else "other runs (axes, variants or seeds)"
    raise UserError(f"Sweep '{store.sweep}' in {store.root} holds runs made with {what}; rerun it with its own "
                    f"settings or start a new sweep with --name NEW{extend_hint}.")


def _check_extension(store: SweepStore, runs: Any, variants: list) -> None:
    """`--force-extend` adds new seeds or new variants; it refuses (one sentence) runs that would join
    a variant the folder holds under other settings: the statistics would average two configs as one."""
    from ablations.cli import UserError
    from ablations.store import run_json

    held = {} if not len(runs) else {name: group.run_id.tolist() for name, group in runs.groupby("variant")}
    for variant in variants:
        for run_id in held.get(variant.name, []):
            if run_id == variant.run_id:
                continue
            try:
                old = run_json(store.root, store.sweep, run_id, "config.json")
            except StoreError as exc:
                raise UserError(f"{str(exc).rstrip('.')}, or run under another name with --name NEW.") from None
            changes = config_changes({**old, "seed": None}, {**to_dict(variant.config), "seed": None}) if old else []
            if changes:
                raise UserError(f"--force-extend would add runs of variant '{variant.name}' made with other settings "
                                f"({'; '.join(changes[:3])}) to sweep '{store.sweep}', which would average two "
                                f"configs as one; extend it only with new seeds or axis levels under its own "
                                f"settings, or start a new sweep with --name NEW.")
            break  # one stored run of the variant is its settings (they all share them)


def check_cluster(variants: list, gpus: bool) -> None:
    """Before launch: every run's workers must fit the cluster (one sentence naming the run if not)."""
    from ablations.cli import UserError
    from ablations.training.launch import ClusterTooSmallError, check_fits, node_capacity

    capacity = node_capacity()
    for variant in variants:
        if variant.config.train.workers > 1:
            try:
                check_fits(variant.config.train, capacity, gpus, f"Run {variant.name}")
            except ClusterTooSmallError as exc:
                raise UserError(str(exc)) from None


def _submit(st: InstanceState, cache_root: Path, gpus: bool, max_retries: int, threads: int,
            states: dict[str, InstanceState], faults: dict[str, dict[str, Any]] | None, node_cpus: float = 0.0) -> None:
    inst = st.instance
    upstream = _upstream_dirs(inst, states, cache_root)
    spec = STAGE_SPECS[inst.stage]
    remote = _remote(spec, gpus, max_retries, inst.config.train.workers, node_cpus)
    if _holds_node(spec, gpus):
        # time it on all but one of the node's cores: that one takes the driver, raylet and worker
        # start-ups, which on every core would stall a thread of each timed op now and then (with
        # all cores, the demo's speed.wall_s of one variant spread up to 2.7x between its runs)
        threads = max(1, int(node_cpus) - 1)
    fault = (faults or {}).get(inst.stage)
    if fault and any(_config_value(inst.config, path) != value for path, value in fault.get("only", {}).items()):
        fault = None
    st.ref = remote.remote(inst.stage, inst.key, to_dict(inst.config), upstream, str(cache_root), threads, fault)
    st.status, st.attempts, st.started = "running", st.attempts + 1, time.time()


def _config_value(cfg: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg


def _upstream_dirs(inst: StageInstance, states: dict[str, InstanceState], cache_root: Path) -> dict[str, str]:
    """{stage: folder} of every instance `inst` reads, direct and transitive."""
    return {states[u].instance.stage: str(stage_dir(cache_root, *u.split("/"))) for u in _all_upstream(inst, states)}


def _all_upstream(inst: StageInstance, states: dict[str, InstanceState]) -> list[str]:
    """Direct and transitive upstream instance ids (a sampler needs the VAE as well as the DiT)."""
    seen: list[str] = []
    stack = list(inst.upstream)
    while stack:
        iid = stack.pop()
        if iid not in seen:
            seen.append(iid)
            stack.extend(states[iid].instance.upstream)
    return seen


def store_runs_status(plan: Plan, states: dict[str, InstanceState]) -> dict[str, str]:
    out = {}
    for run_id, needed in plan.run_stages.items():
        sts = [states[i].status for i in needed]
        if all(s in ("done", "failed") for s in sts):  # a run ends when every stage it needs has ended
            out[run_id] = "failed" if "failed" in sts else "done"
        else:
            out[run_id] = "running" if any(s in ("running", "done", "failed") for s in sts) else "pending"
    return out


def _replication_columns(variant: Any) -> dict[str, Any]:
    """runs.parquet's `block` (always) and `replicate` (only in sweeps with a replicated baseline)."""
    columns: dict[str, Any] = {"block": variant.nominal_seed}
    if variant.replicate is not None:
        columns["replicate"] = variant.replicate
    return columns


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _merged(first: list, then: list) -> list:
    """`first`, then the items of `then` it lacks, in order."""
    return list(first) + [item for item in then if item not in first]


def _write_sweep_json(store: SweepStore, sweep: Any, variants: list, started: float,
                      previous: dict[str, str] | None = None) -> None:
    """sweep.json at the start of an invocation. A sweep extended by later invocations (`--force-extend`)
    keeps its first `config`, the union of the axes' levels and seeds, and one `invocations` entry each
    (when, which code, which seeds and runs, which settings differed from `config`)."""
    from ablations.metric_specs import metric_specs
    from ablations.store import read_sweep_json

    axes = {name: list(levels) for name, levels in sweep.axes.items()}
    if sweep.variants:  # explicit lists: levels as they appear
        axes = {}
        for v in variants:
            for name, value in v.axes.items():
                axes.setdefault(name, [])
                if value not in axes[name]:
                    axes[name].append(value)
    before = read_sweep_json(store.root, store.sweep) if previous else {}  # read back whole before Ray started
    seeds = _merged(before.get("seeds") or [], list(sweep.seeds))
    axes = {name: _merged((before.get("axes") or {}).get(name) or [], levels) for name, levels in axes.items()}
    axes |= {name: levels for name, levels in (before.get("axes") or {}).items() if name not in axes and name != "seed"}
    if len(seeds) > 1:
        axes["seed"] = seeds
    config = before.get("config") or to_dict(sweep.base)
    invocation = {"started_at": _iso(started), **{k: provenance()[k] for k in ("git_commit", "dirty")},
                  "seeds": list(sweep.seeds), "runs": [v.run_id for v in variants],
                  "config_changes": config_changes(config, to_dict(sweep.base))}
    store.write_sweep_json({
        "sweep": sweep.name, "recipe": sweep.recipe, "description": sweep.description, "axes": axes,
        "seeds": seeds, "stages": list(sweep.stages), "headline_metrics": list(sweep.headline_metrics),
        "metrics": metric_specs(), "status": "running", "started_at": _iso(started),
        # runs an earlier `--force-extend`ed invocation added stay listed
        "variants": {**(previous or {}), **{v.run_id: v.name for v in variants}},
        # the A/A copy of the baseline (`--replicate-baseline`): not an axis, so not in `axes`; an extension
        # without copies keeps the earlier invocation's
        "replicate": replicate_summary(variants) or before.get("replicate"),
        "config": config,  # the first invocation's base config; later ones differ by their `config_changes`
        "invocations": [*(before.get("invocations") or []), invocation],
        "cost_assumptions": {"reference_shape": list(sweep.base.cost.reference_shape),
                             "h100_peak_tflops_bf16": sweep.base.cost.h100_peak_tflops,
                             "utilisation": sweep.base.cost.h100_utilisation,
                             "note": "H100 time = FLOPs / (peak x utilisation): an estimate, not a measurement"},
        **provenance(),
    })


def _finalize_runs(store: SweepStore, plan: Plan, states: dict[str, InstanceState], finished: set[str],
                   cache_root: Path, sweep: Any) -> None:
    """Write every run whose stages have all ended: status, metrics, curves, samples, manifest."""
    statuses = store_runs_status(plan, states)
    by_id = {v.run_id: v for v in plan.variants}
    for run_id, status in statuses.items():
        if run_id in finished:
            continue
        if status == "running":
            if not getattr(by_id[run_id], "_marked", False):
                store.upsert_run({"run_id": run_id, "status": "running"})
                object.__setattr__(by_id[run_id], "_marked", True)
            continue
        if status not in ("done", "failed"):
            continue
        finished.add(run_id)
        needed = [states[i] for i in plan.run_stages[run_id]]
        _write_run(store, by_id[run_id], needed, status, cache_root, sweep)


def run_provenance(needed: list[InstanceState]) -> dict[str, Any]:
    """A run's {git_commit, dirty, versions}, from the results of its finished stages, not the driver's:
    a commit or versions only where every stage records the same ones (None otherwise: `commits`
    says which stage each commit computed: "unknown" outside a git checkout, "unrecorded" for results
    from before stages recorded it)."""
    records = [(st.instance.stage, (st.result or {}).get("provenance")) for st in needed if st.status == "done"]
    commits: dict[str, list[str]] = {}
    for stage, record in records:
        commits.setdefault((record.get("git_commit") or "unknown") if record else "unrecorded", []).append(stage)
    known = [record for _, record in records if record]
    whole = bool(known) and len(known) == len(records)
    versions = [record.get("versions") for record in known]
    return {"git_commit": known[0].get("git_commit") if whole and len(commits) == 1 else None,
            "dirty": True if any(record.get("dirty") for record in known) else (False if whole else None),
            "versions": versions[0] if whole and all(v == versions[0] for v in versions) else None,
            "commits": commits}


def _write_run(store: SweepStore, variant: Any, needed: list[InstanceState], status: str, cache_root: Path,
               sweep: Any) -> None:
    import pandas as pd

    from ablations.collect import collect_run

    collected = collect_run(store, variant, needed, cache_root, sweep)
    if collected["metrics"]:
        store.append_metrics(collected["metrics"])
    if collected["curve"]:
        store.write_curve(variant.run_id, pd.DataFrame(collected["curve"]))
    failed = [st for st in needed if st.status == "failed"]
    reason = None
    if failed:
        first = failed[0]
        reason = f"{first.instance.stage}: {first.reason}"
    times = [st.result.get("started_at") for st in needed if st.result and st.result.get("started_at")]
    row = {"run_id": variant.run_id, "status": status, "failure_reason": reason,
           "started_at": _iso(min(times)) if times else None, "finished_at": _iso(time.time()),
           "wall_time_s": float(sum(st.result.get("compute_s", 0) for st in needed if st.result)),
           # worker-group restarts of the run's training stages (Ray Train, after a worker or node died)
           "restarts": int(sum((st.result or {}).get("summary", {}).get("restarts", 0) or 0 for st in needed
                               if st.instance.stage in ("train_vae", "train_dit"))),
           **collected["headline"], **collected["cost"]}
    store.write_run_json(variant.run_id, "manifest.json", {
        "run_id": variant.run_id, "variant": variant.name, "seed": variant.seed, **_replication_columns(variant),
        "status": status, "failure_reason": reason,
        "stages": {st.instance.stage: {"key": st.instance.key, "status": st.status, "attempts": st.attempts,
                                       "reused": st.skipped, "reason": st.reason, "verification": st.note,
                                       "compute_s": (st.result or {}).get("compute_s"),
                                       "hardware": (st.result or {}).get("hardware"),
                                       # the code that computed it (None: a result from before this was recorded)
                                       "provenance": (st.result or {}).get("provenance"),
                                       "upstream": (st.result or {}).get("upstream")} for st in needed},
        "evaluation": collected["evaluation"],  # set-level metrics' protocol; why a metric has no value
        **run_provenance(needed),
        "written_by": provenance(),  # the driver that assembled this manifest (not necessarily the code that computed it)
    })
    store.upsert_run(row)


__all__ = ["STAGE_SPECS", "SweepOutcome", "run_sweep", "shutil"]
