"""The trained-model artifacts, `vae.safetensors` and `dit.safetensors`: find, write, read, convert.

Each is one safetensors file (`models.tensor_file`): the weights (the VAE's with its latent
statistics buffers; the DiT's are its EMA weights) as tensors, and in the header one JSON
object: {format, kind, config, ..., tensors_sha256}. The VAE adds loss, train, init; the DiT
adds flow, text, train, vae_dir, latents_dir, latent_shape, video_shape, fps, steps. Configs
are read from the header alone, before any weight is (`read_meta`).

ltxlab before this format wrote `vae.pt` / `dit.pt` with torch.save (a pickle). Those are
refused with the command that converts them, `ltxlab convert-checkpoint` (`convert`), which
reads them with `torch.load(weights_only=True)`: tensors and plain containers only, nothing
that can run code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch

from models import tensor_file
from models.tensor_file import TensorFileError
from models.weights import ARTIFACTS

FILES = ARTIFACTS  # {"vae": "vae.safetensors", "dit": "dit.safetensors"}, named once where vae.init / dit.init read them
LEGACY = {"vae": "vae.pt", "dit": "dit.pt"}  # the pickle files of older ltxlab versions
FORMATS = {"vae": "ltxlab-vae/2", "dit": "ltxlab-dit/2"}  # /1 was the pickle
MAKERS = {"vae": "train-vae", "dit": "train-dit"}  # the command that writes each
NAMES = {"vae": "VAE", "dit": "DiT"}  # as sentences spell them


class LegacyCheckpointError(TensorFileError):
    """An old pickle `vae.pt` / `dit.pt` where a safetensors artifact is needed."""


def legacy_sentence(path: Path) -> str:
    return (f"{path} is an ltxlab checkpoint in the old pickle format; convert it once with "
            f"`ltxlab convert-checkpoint {path}` (writes {path.with_suffix(tensor_file.SUFFIX).name} beside it) "
            "and pass that or its folder.")


def artifact_path(path: str | Path, component: str) -> Path:
    """The file a user's path names: the path itself when it is a file name, else its folder's artifact."""
    given = Path(path)
    return given if given.suffix in (tensor_file.SUFFIX, ".pt") else given / FILES[component]


def artifact_file(path: str | Path, component: str) -> Path:
    """The artifact file for a user's path (its folder or the file itself), checked to exist.

    A folder holding only the old `vae.pt` / `dit.pt`, or a `.pt` file, gets the conversion
    sentence; a missing one says which command writes it.
    """
    file = artifact_path(path, component)
    folder = file.parent
    if file.suffix == ".pt" and file.exists():
        raise LegacyCheckpointError(legacy_sentence(file))
    if not file.is_file():
        old = folder / LEGACY[component]
        if old.is_file():
            raise LegacyCheckpointError(legacy_sentence(old))
        raise FileNotFoundError(f"No trained {NAMES[component]} at {file}; run `ltxlab {MAKERS[component]} --out {folder}` "
                                "first, or pass the folder it wrote.")
    return file


def _checked(meta: dict[str, Any], file: Path, component: str) -> dict[str, Any]:
    if meta.get("format") != FORMATS[component]:
        raise TensorFileError(f"{file} is not a trained {NAMES[component]} artifact (format {meta.get('format')!r}, "
                              f"expected {FORMATS[component]!r}); pass the {FILES[component]} that "
                              f"`ltxlab {MAKERS[component]}` wrote.")
    return meta


def read_meta(path: str | Path, component: str) -> dict[str, Any]:
    """The artifact's configs and provenance from its header; no weights are read."""
    file = artifact_file(path, component)
    return _checked(tensor_file.read_meta(file), file, component)


def load(path: str | Path, component: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(weights memory-mapped on the CPU, meta) of the artifact at `path` (file or folder)."""
    file = artifact_file(path, component)
    weights, meta = tensor_file.load(file)
    return weights, _checked(meta, file, component)


def save(path: Path, component: str, weights: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> Path:
    """Write the artifact atomically; the header gets the format, the weights' sha256 and the provenance of
    the process that wrote it, `written_by` (commit, versions, hardware and its torch thread count, which a command's
    `--threads` default picks from the load at start)."""
    from ablations.provenance import provenance

    written_by = {**provenance(), "torch_threads": torch.get_num_threads()}
    full = {**meta, "format": FORMATS[component], "tensors_sha256": tensor_file.tensors_sha256(weights),
            "written_by": written_by}
    return tensor_file.save(path, weights, full)


def _plain(value: Any) -> Any:
    """A pickle blob's non-tensor value as JSON data (tuples become lists, as JSON has no tuples)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def convert(old: str | Path, out: str | Path | None = None) -> tuple[Path, str]:
    """Convert an old `vae.pt` / `dit.pt` (or the folder holding it) to safetensors: (new file, component).

    The pickle is read with weights_only=True: only tensors and plain containers load, so a
    file holding anything else is refused rather than run. The new file goes beside the old
    one unless `out` names another path; the old file is left as it was.
    """
    old = Path(old)
    if old.is_dir():
        found = [old / name for name in LEGACY.values() if (old / name).is_file()]
        if len(found) != 1:
            raise FileNotFoundError(f"{old} holds {'no' if not found else 'both'} vae.pt / dit.pt; "
                                    "pass the .pt file to convert.")
        old = found[0]
    if not old.is_file():
        raise FileNotFoundError(f"{old} does not exist; pass an old vae.pt or dit.pt (or its folder).")
    try:
        blob = torch.load(old, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # noqa: BLE001 - unpickling errors come as many types
        raise TensorFileError(f"{old} does not load as a plain-data torch checkpoint ({type(exc).__name__}); "
                              "only vae.pt / dit.pt files written by ltxlab convert.") from None
    if not isinstance(blob, dict) or not isinstance(blob.get("state_dict"), Mapping) or "kind" not in blob:
        raise TensorFileError(f"{old} is not an ltxlab vae.pt / dit.pt (no kind and state_dict); nothing to convert.")
    component = "dit" if "flow" in blob else "vae"
    meta = {k: _plain(v) for k, v in blob.items() if k != "state_dict"}
    target = Path(out) if out is not None else old.with_suffix(tensor_file.SUFFIX)
    return save(target, component, dict(blob["state_dict"]), meta), component
