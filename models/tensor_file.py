"""Tensors plus a JSON header in one safetensors file: how ltxlab stores what it trains and encodes.

Trained models (`vae.safetensors`, `dit.safetensors`), latent shards and caption embeddings
are written here: the tensors as safetensors, everything else (kind, configs, provenance,
captions) as one JSON object in the header's `__metadata__` under the key "ltxlab". Nothing
is ever unpickled, so opening a file cannot run code. Reading the JSON reads the header
only; `load` returns the tensors as views of safetensors' private (copy-on-write) map of
the file, so pages are read when first used. Writes go to a temporary name, then
`os.replace`: a crash never leaves half a file under the real name.

safetensors refuses tensors that share storage (tied weights, views of one buffer): `save`
clones every tensor after the first of a shared storage, so each is written once and whole.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:  # torch loads in the functions: the CLI imports TensorFileError to print it, and stays fast
    import torch

META_KEY = "ltxlab"  # the __metadata__ key that holds the JSON object
SUFFIX = ".safetensors"


class TensorFileError(ValueError):
    """A file that is not a whole, readable ltxlab safetensors file; the message says what to do."""


def _unshared(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Contiguous CPU tensors, none sharing storage with another (the first keeps the original)."""
    seen: set[int] = set()
    out = {}
    for name, tensor in tensors.items():
        tensor = tensor.detach().cpu().contiguous()
        ptr = tensor.untyped_storage().data_ptr()
        if tensor.numel() and ptr in seen:
            tensor = tensor.clone()  # tied or a view of an earlier tensor's buffer
        seen.add(ptr)
        out[name] = tensor
    return out


def tensors_sha256(tensors: Mapping[str, torch.Tensor]) -> str:
    """sha256 over the tensors in name order: each name, dtype, shape and raw bytes.

    Independent of safetensors' byte layout, so it identifies the weights, not the file.
    """
    import torch

    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{str(tensor.dtype).removeprefix('torch.')}|{list(tensor.shape)}\n".encode())
        if tensor.numel():
            digest.update(memoryview(tensor.reshape(-1).view(torch.uint8).numpy()))
    return digest.hexdigest()


def save(path: str | Path, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> Path:
    """Write `tensors` with `meta` (JSON-serialisable) in the header, atomically; the path."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        save_file(_unshared(tensors), str(tmp), metadata={META_KEY: json.dumps(dict(meta), sort_keys=True)})
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def _damage(exc: BaseException) -> str:
    """What safetensors said about a file it could not read, as a clause."""
    return f"is not a whole safetensors file ({str(exc).split(':')[-1].strip() or type(exc).__name__})"


def _unreadable(path: Path, exc: BaseException) -> TensorFileError:
    return TensorFileError(f"{path} {_damage(exc)}; it was cut short or damaged: delete it and write it again "
                           "(rerun the stage that made it).")


def read_meta(path: str | Path) -> dict[str, Any]:
    """The JSON object from the header; reads nothing past the header. Checks the header covers the file."""
    from safetensors import safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
    except FileNotFoundError:
        raise
    except Exception as exc:  # safetensors raises its own error type for a short or foreign file
        raise _unreadable(path, exc) from None
    if META_KEY not in header:
        raise TensorFileError(f"{path} is a safetensors file but not one ltxlab wrote (no '{META_KEY}' header entry); "
                              "pass a file written by ltxlab.")
    try:
        meta = json.loads(header[META_KEY])
    except ValueError:
        raise TensorFileError(f"{path} has a damaged '{META_KEY}' header entry (not JSON); write the file again.") from None
    if not isinstance(meta, dict):
        raise TensorFileError(f"{path} has a '{META_KEY}' header entry that is not a JSON object; write the file again.")
    return meta


def load(path: str | Path, device: str | torch.device = "cpu") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, meta); on the CPU the tensors are views of the file's private map (copied when written)."""
    from safetensors import safe_open

    path = Path(path)
    meta = read_meta(path)
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as f:
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except Exception as exc:  # noqa: BLE001 - the header was read; a failing tensor read is damage too
        raise _unreadable(path, exc) from None
    return tensors, meta


def problem(path: str | Path, *, digest: bool = True) -> str | None:
    """What is wrong with the file as a clause ("is not a whole safetensors file (...)"), or None.

    The header must parse and cover the file exactly (sizes match); with `digest`, a file
    whose header records `tensors_sha256` must still hash to it (every byte read once).
    """
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()} if digest else {}
    except OSError as exc:
        return f"does not read back ({type(exc).__name__})"
    except Exception as exc:  # noqa: BLE001 - safetensors' own error type
        return _damage(exc)
    try:
        recorded = json.loads(header.get(META_KEY, "{}")).get("tensors_sha256")
    except (ValueError, AttributeError):
        return f"has a damaged '{META_KEY}' header entry"
    if digest and recorded is not None and tensors_sha256(tensors) != recorded:
        return "does not hash to the tensors_sha256 its header records (its tensors changed)"
    return None
