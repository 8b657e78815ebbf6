"""What a stage reads from outside the results folder, fingerprinted into its cache key.

A stage's key hashes the config fields it reads (`graph.plan_sweep`). Some of those fields are
paths: `vae.init` / `dit.init` (a checkpoint to start from), a folder of videos
(`*_data.source=folder`) or a curated manifest (`source=manifest`); and the evaluation stages load
pretrained networks from `eval.weights.*` or the `$LTXLAB_WEIGHTS` folder, which is not in the
config at all. The files behind a path can
change while the path stays, and a key of the path alone would then reuse a stage built from the
old files. So each such path's fingerprint enters the key: changed files make a new key and the
stage runs again; unchanged files keep the key, and the cache. An evaluation key holds the
fingerprint of each network it would load, wherever it was found: a sweep first evaluated without
I3D, then run with `$LTXLAB_WEIGHTS` set, evaluates again instead of keeping its "n/a" rows.

Fingerprints are cheap enough to take at every plan. One of our trained artifacts gives the
`tensors_sha256` its header records (the weights, whatever the file's layout or mtime); any other
file or folder gives the names, sizes and modification times of its files. A file rewritten in
place at the same size and the same nanosecond is not seen; a copy elsewhere is a new path anyway.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Iterable

DATA_PATHS = {"folder": "folder", "manifest": "path"}  # a data source -> the DataSpec field naming its files


def stat_fingerprint(files: Iterable[Path], root: Path | None = None) -> str:
    """sha256 over each file's name (relative to `root`), size and mtime, in sorted order."""
    digest = hashlib.sha256()
    for file in sorted(files):
        stat = file.stat()
        name = str(file.relative_to(root)) if root is not None else str(file)
        digest.update(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return "stat:" + digest.hexdigest()[:32]


def path_fingerprint(path: str | os.PathLike) -> str:
    """A file's or a folder's (every file below it) `stat_fingerprint`; "missing" when nothing is there."""
    path = Path(path).expanduser()
    if path.is_file():
        return stat_fingerprint([path])
    if path.is_dir():
        return stat_fingerprint((p for p in path.rglob("*") if p.is_file()), root=path)
    return "missing"


def init_fingerprint(path: str, component: str) -> str:
    """`vae.init` / `dit.init`: our artifact's recorded weights hash, else the checkpoint files' stat."""
    from models import weights

    try:
        source = weights.locate(path, component)
    except weights.WeightsError:
        return path_fingerprint(path)  # the config check says what is wrong with it
    if source.meta is not None and source.meta.get("tensors_sha256"):
        return "tensors_sha256:" + str(source.meta["tensors_sha256"])
    return stat_fingerprint(source.files)


def _once(taken: dict[tuple[str, str], str], kind: str, path: Any, fingerprint: Any) -> str:
    """`fingerprint(path)`, taken once per plan: `taken` holds it under (kind, path)."""
    if (kind, str(path)) not in taken:
        taken[kind, str(path)] = fingerprint(path)
    return taken[kind, str(path)]


_LPIPS_HEADS = {"lpips_alex_head": "lpips_alex", "lpips_vgg_head": "lpips_vgg"}  # a head is loaded with its backbone


def weights_fingerprints(config: Any, taken: dict[tuple[str, str], str]) -> dict[str, str]:
    """{eval.weights.NAME: fingerprint} of every pretrained network `config.weights` (an EvalConfig's)
    resolves to, from the config or $LTXLAB_WEIGHTS, as the metrics will find them; the lpips
    package's own heads count only beside their backbone. Nothing found: {} (the key is as before)."""
    from evaluation.weights import WEIGHT_FILES, resolve_weights

    try:
        resolved = resolve_weights(config.weights)
        found = {name: resolved.find(name) for name in WEIGHT_FILES}
    except Exception:  # noqa: BLE001 - the config check says what is wrong, in one sentence
        return {}
    out: dict[str, str] = {}
    for name, path in found.items():
        if path is None or (name in _LPIPS_HEADS and found[_LPIPS_HEADS[name]] is None):
            continue
        out[f"eval.weights.{name}"] = _once(taken, "weights", path, path_fingerprint)
    return out


def input_fingerprints(config: Any, fields: Iterable[str], taken: dict[tuple[str, str], str] | None = None
                       ) -> dict[str, str]:
    """{dotted field: fingerprint} of the paths in `config`'s `fields` that name files a stage reads.

    `taken` ({(kind, path): fingerprint}) lets a plan fingerprint each path once for all its stages."""
    taken = {} if taken is None else taken
    out: dict[str, str] = {}
    for name in fields:
        value = getattr(config, name, None)
        init = getattr(value, "init", None)
        if name in ("vae", "dit") and init:
            out[f"{name}.init"] = _once(taken, name, init, lambda p, name=name: init_fingerprint(str(p), name))
        source = getattr(value, "source", None)
        path = getattr(value, DATA_PATHS[source], None) if name.endswith("_data") and source in DATA_PATHS else None
        if path:
            out[f"{name}.{DATA_PATHS[source]}"] = _once(taken, "data", path, path_fingerprint)
        if name == "eval" and hasattr(value, "weights"):
            out.update(weights_fingerprints(value, taken))
        kind = getattr(value, "kind", None) if name == "text" else None
        if isinstance(kind, str) and kind.startswith("hf:") and Path(kind[3:]).expanduser().exists():
            # a local encoder folder replaced at the same path must not reuse the old caption embeddings
            out["text.kind"] = _once(taken, "text", kind[3:], path_fingerprint)
    return out
