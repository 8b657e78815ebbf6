"""Expand a sweep into stage instances keyed by content hash.

A stage's key hashes only the config fields that stage reads plus its upstream keys (and the
fingerprints of files those fields name, `ablations/inputs.py`), so
two variants that share a VAE share one `train_vae` instance, and a rerun with the same
config finds the same folders (and their DONE markers) again. Two more things change what a
stage computes without being one of its fields, so they enter its key too: a training stage's
numerics (GPU or CPU, bf16 or fp32, compiled or not: `training_numerics`), and the versions of
the metrics an evaluation stage computes (a version is bumped whenever its numbers change).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

from ablations.inputs import input_fingerprints
from ablations.overrides import set_field
from models.config import ConfigError, content_hash, to_dict


@dataclass(frozen=True)
class StageSpec:
    """What a stage reads: top-level RunConfig fields and the stages it consumes."""

    name: str
    fields: tuple[str, ...]  # RunConfig fields whose values enter the key
    upstream: tuple[str, ...] = ()  # stages whose outputs it reads
    gpu: bool = False  # asks for one GPU on GPU nodes
    cpus: float = 1.0  # CPU slots it occupies
    alone: bool = False  # a timing stage: without GPUs it holds every CPU of its node, so nothing runs beside it
    numerics: bool = False  # a training stage: `training_numerics` of its layout enters the key
    # {name: version} of what it computes from a RunConfig (an eval stage's metrics); enters the key
    versions: Callable[[Any], Mapping[str, str]] | None = None


def training_numerics(train: Any, gpus: bool) -> dict[str, Any]:
    """The fields of the `train` layout that change a training stage's weights, as the stage will run.

    Workers, accumulation, ddp/fsdp and placement leave the result alone (the training core
    slices one global batch the same way on any layout) and stay out of the key. The device,
    the compute precision and `torch.compile` do not: bf16 autocast runs only on CUDA, so on
    a cluster without GPUs every precision is fp32. The device follows the runner's resource
    request: a one-worker stage takes a GPU whenever the cluster has one, Ray Train workers
    only when `gpus_per_worker > 0` (`ablations.training.launch.run`)."""
    cuda = bool(gpus) and (train.workers == 1 or train.gpus_per_worker > 0)
    return {"device": "cuda" if cuda else "cpu", "precision": train.mixed_precision if cuda else "fp32",
            "compile": bool(train.compile)}


@dataclass(frozen=True)
class StageInstance:
    stage: str
    key: str  # content hash: folder name under _cache/<stage>/
    config: Any  # the RunConfig of the first variant that needs it (fields outside the key may differ)
    upstream: tuple[str, ...]  # ids ("stage/key") of the instances it depends on
    runs: tuple[str, ...] = ()  # run ids that need this instance

    @property
    def id(self) -> str:
        return f"{self.stage}/{self.key}"


@dataclass(frozen=True)
class Level:
    """A named axis level that sets several fields at once (e.g. GAN = none | gan | rgan)."""

    label: str  # what runs.parquet and the dashboard show
    settings: Mapping[str, Any]  # dotted config path -> value

    def __repr__(self) -> str:
        return self.label


REPLICATE_SUFFIX = ",replicate=b"  # appended to the baseline's name for its replicate copies
REPLICATE_SEED_BLOCK = 1000  # replicate seeds start at the first multiple of this above every sweep seed


@dataclass(frozen=True)
class Variant:
    run_id: str
    name: str  # "axis=value,..." for people
    axes: Mapping[str, Any]  # axis -> value, as in runs.parquet columns
    config: Any  # RunConfig
    seed: int
    block: int | None = None  # the nominal seed the run belongs to (seed - offset for replicate copies); None = seed
    replicate: str | None = None  # "a" | "b" in sweeps with a replicated baseline ("b": the copy), else None

    @property
    def nominal_seed(self) -> int:
        return self.seed if self.block is None else self.block


@dataclass
class Plan:
    variants: list[Variant]
    instances: dict[str, StageInstance] = field(default_factory=dict)  # id -> instance (topological order)
    run_stages: dict[str, list[str]] = field(default_factory=dict)  # run_id -> instance ids it needs


def expand_variants(
    base: Any,
    axes: Mapping[str, Sequence[Any]],
    seeds: Sequence[int],
    explicit: Sequence[Mapping[str, Any]] | None = None,
    replicate_baseline: bool = False,
) -> list[Variant]:
    """Full factorial over `axes` x `seeds` (or the explicit variant list x seeds).

    Every variant is derived from `base` with `dataclasses.replace` along dotted paths;
    a wrong field name or value raises `ConfigError` before anything runs. With
    `replicate_baseline` the baseline combo (`baseline_combo`) runs once more after them,
    on the disjoint seeds `s + replicate_seed_offset(seeds)`, as replicate "b" (an A/A
    comparison: its differences from the baseline are noise by construction).
    """
    if explicit:
        combos = [dict(v) for v in explicit]
    else:
        names = list(axes)
        combos = [dict(zip(names, values)) for values in itertools.product(*(axes[n] for n in names))]
    replicate = "a" if replicate_baseline else None
    variants = [v for combo in combos for v in _combo_variants(base, combo, seeds, replicate=replicate)]
    if replicate_baseline:
        offset = replicate_seed_offset(seeds)
        variants += _combo_variants(base, baseline_combo(axes, explicit), seeds, replicate="b", offset=offset)
    ids = [v.run_id for v in variants]
    if len(set(ids)) != len(ids):
        raise ConfigError("Two variants of this sweep have identical configs; remove the duplicate axis values.")
    return variants


def _combo_variants(base: Any, combo: Mapping[str, Any], seeds: Sequence[int], *, replicate: str | None,
                    offset: int = 0) -> list[Variant]:
    """One variant per seed of one axis combination; replicate copies run on seed + offset."""
    cfg = base
    for axis, value in combo.items():
        settings = value.settings if isinstance(value, Level) else {axis: value}
        for path, setting in settings.items():
            cfg = set_field(cfg, path, setting)
    labels = {axis: (value.label if isinstance(value, Level) else value) for axis, value in combo.items()}
    name = ",".join(f"{k}={_short(v)}" for k, v in labels.items()) or "base"
    if replicate == "b":
        name += REPLICATE_SUFFIX
    out = []
    for seed in seeds:
        seeded = dataclasses.replace(cfg, seed=seed + offset)
        out.append(Variant(run_id=content_hash(seeded, 10), name=name, axes=labels, config=seeded,
                           seed=seed + offset, block=seed, replicate=replicate))
    return out


def baseline_combo(axes: Mapping[str, Sequence[Any]], explicit: Sequence[Mapping[str, Any]] | None = None) -> dict:
    """The sweep's baseline: the first explicit variant, else every axis at its first level ({} without axes)."""
    if explicit:
        return dict(explicit[0])
    return {name: levels[0] for name, levels in axes.items() if len(levels)}


def replicate_seed_offset(seeds: Sequence[int]) -> int:
    """The shift that moves the replicate copies' seeds clear of every sweep seed: 1000 for seeds 0..999."""
    if not seeds:
        raise ConfigError("A sweep needs at least one seed; set seeds=(0,) or pass --seeds 0.")
    if min(seeds) < 0:
        raise ConfigError("Replicate seeds are the sweep's seeds shifted up by a block of 1000; use seeds >= 0.")
    return REPLICATE_SEED_BLOCK * math.ceil((max(seeds) + 1) / REPLICATE_SEED_BLOCK)


def replicate_summary(variants: Sequence[Variant]) -> dict[str, Any] | None:
    """sweep.json's `replicate` entry: the baseline copied, its levels, the seed offset and seeds; None if none."""
    copies = [v for v in variants if v.replicate == "b"]
    if not copies:
        return None
    first = copies[0]
    return {"baseline_variant": first.name.removesuffix(REPLICATE_SUFFIX), "baseline": dict(first.axes),
            "seed_offset": first.seed - first.nominal_seed, "seeds": [v.seed for v in copies]}


def _short(value: Any) -> str:
    return value if isinstance(value, str) else repr(value)


def plan_sweep(variants: Iterable[Variant], specs: Mapping[str, StageSpec], wanted: Sequence[str], *,
               gpus: bool = False) -> Plan:
    """Stage instances for every variant: the `wanted` stages and everything upstream of them.

    `gpus`: whether the cluster the sweep runs on has GPUs (training stages' keys depend on it)."""
    plan = Plan(variants=list(variants))
    taken: dict[tuple[str, str], str] = {}  # each path is fingerprinted once per plan
    for variant in plan.variants:
        needed: list[str] = []
        keys: dict[str, str] = {}

        def visit(stage: str) -> str:
            if stage in keys:
                return keys[stage]
            if stage not in specs:
                raise ConfigError(f"Unknown stage '{stage}'; valid stages are: {', '.join(specs)}.")
            spec = specs[stage]
            ups = tuple(f"{u}/{visit(u)}" for u in spec.upstream)
            payload = {"stage": stage, "fields": {f: to_dict(getattr(variant.config, f)) for f in spec.fields},
                       "upstream": ups}
            inputs = input_fingerprints(variant.config, spec.fields, taken)
            if inputs:  # files named by a path (vae.init, a data folder): changed files are a new key
                payload["inputs"] = inputs
            if spec.numerics:
                payload["numerics"] = training_numerics(variant.config.train, gpus)
            if spec.versions is not None:
                payload["versions"] = dict(spec.versions(variant.config))
            key = content_hash(payload, 16)
            keys[stage] = key
            iid = f"{stage}/{key}"
            existing = plan.instances.get(iid)
            runs = (existing.runs if existing else ()) + (variant.run_id,)
            plan.instances[iid] = StageInstance(stage, key, existing.config if existing else variant.config, ups, runs)
            needed.append(iid)
            return key

        for stage in wanted:
            visit(stage)
        plan.run_stages[variant.run_id] = needed
    return plan
