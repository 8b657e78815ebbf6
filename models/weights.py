"""Load official LTX-Video checkpoints into our VAE and DiT (`vae.init`, `dit.init`).

Three layouts, all safetensors, all read from local paths only:
- the original single file (`ltx-video-2b-v0.9.1.safetensors`): VAE and transformer in one
  file, under the prefixes `vae.` and `model.diffusion_model.` (diffusers'
  `scripts/convert_ltx_to_diffusers.py`, `convert_vae` / `convert_transformer`);
- diffusers' folder: `vae/` and `transformer/`, each with `config.json` and
  `diffusion_pytorch_model.safetensors` (or shards listed in
  `diffusion_pytorch_model.safetensors.index.json`). A component folder itself works too.
- ltxlab's own trained model, `vae.safetensors` / `dit.safetensors` (or the stage folder holding
  it): our key names, the config in its header, so a sweep can fine-tune from an earlier run. Its
  kind must be the config's; any VAE or DiT kind works (the official layouts need ltx / cross-attention).
The checkpoint's own config is compared with the model's, field by field, before any tensor is
read: diffusers' `config.json`, the single file's header (`metadata["config"]`, its `vae` and
`transformer` sections, in LTX-Video's names: the fields that change no tensor shape, such as
`causal_decoder`, the upsamplers' `residual`, `timestep_scale_multiplier` and the RoPE settings),
or our artifact's header config (every field but the labels in `_LABELS`). Shapes check the rest.
Key names of the official layouts are mapped by `models/vae/convert.py` and `models/dit/convert.py`.

Memory: the model is built on the meta device, each tensor is read from the file and cast
once, and `load_state_dict(assign=True)` makes those tensors the parameters, so a
full-size checkpoint is never held twice. On CPU, tensors already in the wanted dtype stay
views of safetensors' private (copy-on-write) map of the file: pages are read when first
used and copied only when training writes them; the file itself is never written. Every mismatch (absent path, not safetensors,
a config that differs, missing, extra or mis-shaped tensors) raises `WeightsError`: one
sentence that names the file, the keys (first few and the count) and the fix. This module
reads files and writes none.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from models.config import ConfigError

WEIGHTS = "diffusion_pytorch_model.safetensors"
INDEX = "diffusion_pytorch_model.safetensors.index.json"
SHOWN = 4  # keys named in an error sentence before "... (N in all)"
ARTIFACTS = {"vae": "vae.safetensors", "dit": "dit.safetensors"}  # ltxlab's trained models (ablations/artifacts.py FILES)
OURS = "ltxlab_artifact"  # Source.container (and LoadReport.key_layout "ltxlab") of one of ours


@dataclass(frozen=True)
class Component:
    name: str  # "vae" or "dit"
    field: str  # the config field users set
    prefix: str  # key prefix in the original single file
    subfolder: str  # folder in diffusers' layout
    title: str  # what the sentences call it


COMPONENTS = {
    "vae": Component("vae", "vae.init", "vae.", "vae", "LTX VAE"),
    "dit": Component("dit", "dit.init", "model.diffusion_model.", "transformer", "LTX transformer"),
}
# config fields that do not describe the weights: names, the start path, and the DiT's caption
# padding length (describe and cost read it; the weights take any caption length)
_LABELS = {"vae": ("size", "init", "kind"), "dit": ("size", "init", "kind", "max_text_tokens")}


class WeightsError(ConfigError):
    """A checkpoint that cannot start this model; the message says what to change."""


@dataclass(frozen=True)
class Source:
    """Where a component's tensors are: the files, their layout, diffusers' config if any."""

    path: Path  # what the user gave
    files: tuple[Path, ...]  # safetensors files holding the tensors
    container: str  # "single_file", "diffusers_folder" or OURS
    config: dict[str, Any] | None  # diffusers' config.json of the component
    meta: dict[str, Any] | None = None  # the header JSON of one of our artifacts (OURS)
    # a single file's own config: the component's section ("vae" / "transformer") of the JSON in
    # its header's metadata["config"], in LTX-Video's names (what its from_pretrained builds from)
    header_config: dict[str, Any] | None = None


@dataclass(frozen=True)
class LoadReport:
    """What `load_*` read: JSON-able via `as_dict`, printed by `ltxlab inspect --init`."""

    component: str
    path: str
    container: str  # single_file | diffusers_folder | ltxlab_artifact
    key_layout: str  # original | diffusers | ltxlab (names of the tensors)
    files: tuple[str, ...]
    tensors: int  # tensors read from the file(s) for this component
    ignored: int  # tensors of other components in the same file (e.g. the transformer next to the VAE)
    params: int  # parameters of the built model
    dtypes: tuple[str, ...]  # dtypes stored in the file(s)
    loaded_dtype: str  # dtype of the model's floating tensors after loading

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ------------------------------------------------------------------------------- locating files


def _need_sentence(comp: Component, path: Path) -> str:
    return (f"{comp.field}={path} needs an LTX-Video checkpoint there: the single file (such as "
            f"ltx-video-2b-v0.9.1.safetensors), a diffusers folder with {comp.subfolder}/config.json and "
            f"{comp.subfolder}/{WEIGHTS}, or an ltxlab {ARTIFACTS[comp.name]} (or its folder)")


def _ours(file: Path, comp: Component, path: Path) -> Source | None:
    """`file` as one of our trained artifacts of this component, or None when ltxlab did not write it."""
    from models import tensor_file

    try:
        meta = tensor_file.read_meta(file)
    except tensor_file.TensorFileError:
        return None  # an official, foreign or unreadable file: the other layouts' checks say which
    fmt = str(meta.get("format", ""))
    if not fmt.startswith(f"ltxlab-{comp.name}/"):
        raise WeightsError(f"{comp.field}={path} is an ltxlab file of format {fmt!r}, not a trained {comp.name}; "
                           f"give the {ARTIFACTS[comp.name]} that `ltxlab train-{comp.name}` wrote.")
    return Source(path, (file,), OURS, None, meta)


def _single_file(file: Path, comp: Component, path: Path) -> Source:
    """An official single file, with its header's config section for `comp` when it has one."""
    from safetensors import safe_open

    try:
        with safe_open(str(file), framework="pt") as f:
            text = (f.metadata() or {}).get("config")
    except Exception:  # not safetensors: _header says so in its sentence
        text = None
    if text is None:
        return Source(path, (file,), "single_file", None)
    try:
        section = json.loads(text).get(comp.subfolder)
    except (ValueError, AttributeError):
        raise WeightsError(f"{comp.field}={path}: its header's config is not a JSON object; fix or remove that "
                           "metadata entry.") from None
    return Source(path, (file,), "single_file", None, header_config=section)


def locate(path: str | Path, component: str) -> Source:
    """Resolve a user's path to the safetensors file(s) of `component` ("vae" or "dit")."""
    comp = COMPONENTS[component]
    path = Path(path).expanduser()
    if not path.exists():
        raise WeightsError(f"{_need_sentence(comp, path)}, but nothing exists at that path.")
    if path.is_file():
        return _ours(path, comp, path) or _single_file(path, comp, path)
    if (path / ARTIFACTS[component]).is_file():
        return _ours(path / ARTIFACTS[component], comp, path) or _single_file(path / ARTIFACTS[component], comp, path)
    for folder in (path / comp.subfolder, path):
        index, weights = folder / INDEX, folder / WEIGHTS
        if not (index.exists() or weights.exists()):
            continue
        config_path = folder / "config.json"
        config = json.loads(config_path.read_text()) if config_path.exists() else None
        if index.exists():
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            missing = [s for s in shards if not (folder / s).exists()]
            if missing:
                raise WeightsError(f"{comp.field}={path}: {index.name} lists {len(missing)} shard(s) that are "
                                   f"not in {folder}, e.g. {missing[0]}; copy them there.")
            return Source(path, tuple(folder / s for s in shards), "diffusers_folder", config)
        return Source(path, (weights,), "diffusers_folder", config)
    raise WeightsError(f"{_need_sentence(comp, path)}, but {path} is a folder without {comp.subfolder}/{WEIGHTS} "
                       f"or {WEIGHTS}.")


@dataclass(frozen=True)
class Entry:
    """One tensor in a checkpoint's header."""

    file: Path
    key: str  # the file's own name for it (with any prefix)
    shape: tuple[int, ...]
    dtype: str


def _header(source: Source, comp: Component) -> dict[str, Entry]:
    """{key: Entry} from the safetensors headers; nothing is read past them."""
    from safetensors import safe_open

    out: dict[str, Entry] = {}
    for file in source.files:
        try:
            with safe_open(str(file), framework="pt") as f:
                for key in f.keys():
                    view = f.get_slice(key)
                    out[key] = Entry(file, key, tuple(view.get_shape()), str(view.get_dtype()))
        except Exception as exc:  # safetensors raises its own error types for foreign files
            raise WeightsError(f"{comp.field}={source.path}: {file} is not a safetensors file "
                               f"({type(exc).__name__}); give the .safetensors checkpoint, not a .ckpt/.bin/.pt.") from None
    return out


def _select(header: dict[str, Entry], comp: Component, source: Source) -> tuple[dict[str, Entry], int]:
    """This component's entries keyed without the single file's prefix, and how many others were skipped."""
    prefixes = tuple(c.prefix for c in COMPONENTS.values())
    if source.container == OURS or not any(k.startswith(prefixes) for k in header):
        return dict(header), 0  # an unprefixed file: all of it is this component
    mine = {k[len(comp.prefix):]: v for k, v in header.items() if k.startswith(comp.prefix)}
    if not mine:
        raise WeightsError(f"{comp.field}={source.path} holds no {comp.title} weights (no key starts with "
                           f"'{comp.prefix}'); point {comp.field} at the file or folder that does.")
    return mine, len(header) - len(mine)


def _names(keys: list[str]) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:SHOWN])
    return f"{shown}{', ...' if len(keys) > SHOWN else ''} ({len(keys)} in all)"


# ------------------------------------------------------------------------------ key mapping


def _config_mismatch(cfg: Any, source: Source, comp: Component) -> None:
    """The checkpoint's own config (diffusers' config.json, a single file's header config, or the
    kind and config in our artifact's header) must describe the model `cfg` builds, field by field."""
    if source.meta is not None and source.meta.get("kind") != cfg.kind:
        raise WeightsError(f"{comp.field}={source.path} holds a trained {source.meta.get('kind')} "
                           f"{'VAE' if comp.name == 'vae' else 'DiT'}, not {cfg.kind}; set the config's kind to "
                           f"{source.meta.get('kind')} or start from a {cfg.kind} one.")
    where = "config.json" if source.container == "diffusers_folder" else "header config"
    title = comp.title if source.meta is None else f"trained {cfg.kind} {'VAE' if comp.name == 'vae' else 'DiT'}"
    try:
        stated = _stated_fields(cfg, source, comp)
    except WeightsError:
        raise
    except (ConfigError, ValueError, KeyError, TypeError) as exc:
        reason = f"it has no {exc}" if isinstance(exc, KeyError) else str(exc).rstrip(".")
        raise WeightsError(f"{comp.field}={source.path}: its {where} does not describe a {title} we can build "
                           f"({reason}).") from None
    if stated is None:
        return
    theirs_values, theirs = stated
    ours_values = {f: getattr(cfg, f) for f in theirs_values}
    if "decoder_inject_noise" in theirs_values:  # a layout name equals its flags
        ours_values["decoder_inject_noise"], theirs_values["decoder_inject_noise"] = cfg.noise_pattern, theirs.noise_pattern
    differ = [f for f in theirs_values if _plain(ours_values[f]) != _plain(theirs_values[f])]
    if differ:
        shown = ", ".join(f"{f}={_plain(theirs_values[f])} (not {_plain(ours_values[f])})" for f in differ[:SHOWN])
        raise WeightsError(f"{comp.field}={source.path} holds a {title} with {shown}"
                           f"{', ...' if len(differ) > SHOWN else ''}; {_hint(theirs, source, comp)}.")


def _stated_fields(cfg: Any, source: Source, comp: Component) -> tuple[dict[str, Any], Any] | None:
    """({our field: the checkpoint's value}, its whole config or None) from the config the checkpoint
    states, or None when it states none (a single file without a header config: shapes alone check it)."""
    if source.container == OURS:
        from models.config import from_dict

        assert source.meta is not None
        theirs = from_dict(type(cfg), source.meta["config"], f"its {comp.name} config")
        fields = [f.name for f in dataclasses.fields(cfg) if f.name not in _LABELS[comp.name]]
        return {f: getattr(theirs, f) for f in fields}, theirs
    if source.container == "single_file":
        if source.header_config is None:
            return None
        if comp.name == "vae":
            from models.vae.convert import fields_from_original as vae_fields

            return vae_fields(source.header_config), None
        from models.dit.convert import fields_from_original as dit_fields

        return dit_fields(source.header_config), None
    if source.config is None:
        return None
    if comp.name == "vae":
        from models.vae.convert import config_from_diffusers

        theirs = config_from_diffusers(source.config)
        fields = [f.name for f in dataclasses.fields(cfg) if f.name not in _LABELS["vae"]]
        return {f: getattr(theirs, f) for f in fields}, theirs
    from models.dit.convert import config_from_diffusers as dit_from_diffusers

    theirs = dit_from_diffusers(source.config, vae_temporal_compression=cfg.vae_temporal_compression,
                                vae_spatial_compression=cfg.vae_spatial_compression)
    fields = ["in_channels", "num_layers", "num_heads", "head_dim", "caption_channels", "norm_eps"]
    return {f: getattr(theirs, f) for f in fields}, theirs


def _plain(value: Any) -> Any:
    return list(_plain(v) for v in value) if isinstance(value, tuple) else value


def _hint(theirs: Any, source: Source, comp: Component) -> str:
    """How to fix a config that differs from the checkpoint's."""
    if source.container == OURS:
        return (f"start from the config it was trained with (its header; `ltxlab inspect {comp.name} --init "
                f"{source.path}` shows it) or from a checkpoint of this config")
    if source.container == "single_file":
        return "set those fields to the checkpoint's (its header config states them)"
    return _preset_hint(theirs, comp)


def _preset_hint(theirs: Any, comp: Component) -> str:
    if comp.name == "vae":
        from models.vae import vae_config
        from models.vae.ltx import RELEASES, SIZES

        for size in (*RELEASES, *SIZES):
            if dataclasses.replace(vae_config("ltx", size), size="converted") == dataclasses.replace(theirs, size="converted"):
                return f"it is the ltx '{size}' preset: start from that (--model-size {size} or vae_config('ltx', '{size}'))"
        return "set vae to that config (models.vae.convert.config_from_diffusers reads it)"
    return "set those dit fields to the checkpoint's (models.dit.convert.config_from_diffusers reads them)"


def _to_ours(state: dict[str, torch.Tensor], cfg: Any, comp: Component, consume: bool = False, source: Source | None = None
             ) -> tuple[dict[str, torch.Tensor], dict[str, str], list[str], str]:
    """This component's tensors -> our names.

    Returns (state in our names, {our key: checkpoint key} where one maps to one, checkpoint
    keys with no place, key layout "original" | "diffusers" | "ltxlab").
    """
    if source is not None and source.container == OURS:
        return dict(state), {}, [], "ltxlab"  # our own names already
    if comp.name == "vae":
        return _vae_to_ours(state, cfg)
    from models.dit.convert import is_original_dit_layout, original_to_diffusers_state_dict, split_diffusers_ltx

    layout = "original" if is_original_dit_layout(state) else "diffusers"
    names = {k: k for k in state}
    if layout == "original":
        renamed = original_to_diffusers_state_dict(state)
        names = dict(zip(renamed, state))  # diffusers key -> original key (the rename is one to one)
        if consume:
            state.clear()  # `renamed` holds the tensors now; fused q, k, v free their parts as they go
        state = renamed
    ours, unused = split_diffusers_ltx(state, consume=consume)
    return ours, {}, [names[k] for k in unused], layout


def _vae_to_ours(state: dict[str, torch.Tensor], cfg: Any) -> tuple[dict[str, torch.Tensor], dict[str, str], list[str], str]:
    from models.vae.convert import from_diffusers_state_dict, is_original_vae_layout, original_to_diffusers_state_dict

    layout = "original" if is_original_vae_layout(state) else "diffusers"
    ours: dict[str, torch.Tensor] = {}
    names: dict[str, str] = {}
    unplaced: list[str] = []
    for key, value in state.items():  # one key at a time, so every error can name the checkpoint's key
        renamed = {key: value}
        if layout == "original":
            renamed, rest = original_to_diffusers_state_dict(renamed, cfg)
            unplaced += rest
        for new, tensor in from_diffusers_state_dict(renamed).items():
            if new in ours:
                raise WeightsError(f"vae.init: the checkpoint keys {names[new]} and {key} both map to {new}.")
            ours[new], names[new] = tensor, key
    return ours, names, unplaced, layout


def _what(cfg: Any, comp: Component) -> str:
    return f"our {cfg.kind} {'VAE' if comp.name == 'vae' else 'DiT'} (size {getattr(cfg, 'size', 'custom')})"


def _shapes_differ(wrong: list[str], cfg: Any, comp: Component, source: Source) -> WeightsError:
    """`wrong`: "checkpoint key [its shape] vs [the model's]" entries."""
    return WeightsError(f"{comp.field}={source.path} has tensors whose shapes differ from {_what(cfg, comp)} "
                        f"(checkpoint vs model): {_names(wrong)}; start from the config it was saved with.")


def _fused_parts_error(exc: Any, expected: dict[str, torch.Tensor], cfg: Any, comp: Component,
                       source: Source) -> WeightsError:
    """q, k, v (`models.dit.convert.FusedShapeError`) that cannot be fused: name each part whose shape is
    not the model's share of the fused tensor (or, for a block the model lacks, not the parts' usual shape)."""
    whole = expected.get(exc.fused)
    shapes = list(exc.parts.values())
    want = (whole.shape[0] // len(shapes), *whole.shape[1:]) if whole is not None else max(shapes, key=shapes.count)
    return _shapes_differ([f"{k} {list(v)} vs {list(want)}" for k, v in exc.parts.items() if tuple(v) != tuple(want)],
                          cfg, comp, source)


def _check_keys(ours: dict[str, torch.Tensor], names: dict[str, str], unplaced: list[str],
                expected: dict[str, torch.Tensor], comp: Component, source: Source, cfg: Any) -> None:
    what = _what(cfg, comp)
    extra = unplaced + [names.get(k, k) for k in ours if k not in expected]
    if extra:
        raise WeightsError(f"{comp.field}={source.path} has tensors with no place in {what}: {_names(extra)}; "
                           "it is a checkpoint of another layout, so start from the config it was saved with.")
    missing = [k for k in expected if k not in ours]
    if missing:
        raise WeightsError(f"{comp.field}={source.path} lacks tensors {what} needs (our names): {_names(missing)}; "
                           "start from the config it was saved with.")
    wrong = [f"{names.get(k, k)} {list(ours[k].shape)} vs {list(expected[k].shape)}" for k in expected
             if tuple(ours[k].shape) != tuple(expected[k].shape)]
    if wrong:
        raise _shapes_differ(wrong, cfg, comp, source)


def _meta_model(cfg: Any) -> nn.Module:
    with torch.device("meta"):
        return cfg.build()


def _check_cfg(cfg: Any, comp: Component) -> None:
    if comp.name == "dit" and cfg.text_conditioning != "cross_attention":
        raise WeightsError(f"LTX-Video checkpoints hold a cross-attention transformer; dit.text_conditioning="
                           f"{cfg.text_conditioning} cannot start from {comp.field}.")
    if comp.name == "vae" and cfg.kind != "ltx":
        raise WeightsError(f"LTX-Video checkpoints hold an ltx VAE; vae.kind={cfg.kind} cannot start from {comp.field}.")


def check(cfg: Any, component: str, path: str | Path | None = None) -> dict[str, Any]:
    """Check that the checkpoint at `path` (default `cfg.init`) fits `cfg`, reading headers only.

    Returns {source, entries (this component's, prefix stripped), ignored, key_layout};
    raises WeightsError otherwise. Cheap enough for `check_buildable`: shapes come from the
    safetensors headers and the model is built on the meta device.
    """
    comp = COMPONENTS[component]
    if not (path or cfg.init):
        raise WeightsError(f"{comp.field} is not set; give it the checkpoint's path.")
    source = locate(path or cfg.init, component)
    if source.container != OURS:
        _check_cfg(cfg, comp)
    _config_mismatch(cfg, source, comp)
    entries, ignored = _select(_header(source, comp), comp, source)
    from models.dit.convert import FusedShapeError

    meta = {k: torch.empty(e.shape, device="meta") for k, e in entries.items()}
    expected = _meta_model(cfg).state_dict()
    try:
        ours, names, unplaced, layout = _to_ours(meta, cfg, comp, source=source)
    except FusedShapeError as exc:  # before torch.cat, which would fail naming no key
        raise _fused_parts_error(exc, expected, cfg, comp, source) from None
    _check_keys(ours, names, unplaced, expected, comp, source, cfg)
    return {"source": source, "entries": entries, "ignored": ignored, "key_layout": layout}


def load(
    cfg: Any, component: str, path: str | Path | None = None, *, device: torch.device | str = "cpu",
    dtype: torch.dtype | None = torch.float32,
) -> tuple[nn.Module, LoadReport]:
    """Build `cfg`'s model on the meta device and fill it from the checkpoint at `path` (default `cfg.init`).

    Each tensor is read once onto `device` and cast to `dtype` (None keeps the file's
    dtypes), then assigned as the parameter. Returns (model in train mode, LoadReport).
    """
    from safetensors import safe_open

    comp = COMPONENTS[component]
    plan = check(cfg, component, path)
    source, entries = plan["source"], plan["entries"]
    state: dict[str, torch.Tensor] = {}
    for file in source.files:
        keys = [(k, e.key) for k, e in entries.items() if e.file == file]
        if not keys:
            continue
        with safe_open(str(file), framework="pt", device=str(device)) as f:
            for key, file_key in keys:
                tensor = f.get_tensor(file_key)
                if dtype is not None and tensor.is_floating_point() and tensor.dtype != dtype:
                    tensor = tensor.to(dtype)  # cast one tensor at a time: the file's copy is dropped at once
                state[key] = tensor  # on CPU, a view of safetensors' private (copy-on-write) map of the file
    ours, _, _, layout = _to_ours(state, cfg, comp, consume=True, source=source)
    del state  # what is left of it is shared with `ours`
    model = _meta_model(cfg)
    model.load_state_dict(ours, strict=True, assign=True)
    del ours
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:
        raise WeightsError(f"{comp.field}={source.path} left tensors unfilled: {_names(left)}.")
    floating = {str(p.dtype) for p in model.parameters() if p.is_floating_point()}
    report = LoadReport(
        component=component, path=str(source.path), container=source.container, key_layout=layout,
        files=tuple(str(f) for f in source.files), tensors=len(entries), ignored=plan["ignored"],
        params=sum(p.numel() for p in model.parameters()),
        dtypes=tuple(sorted({e.dtype for e in entries.values()})), loaded_dtype=",".join(sorted(floating)),
    )
    return model.train(), report


def load_vae(cfg: Any, path: str | Path | None = None, **kwargs: Any) -> tuple[nn.Module, LoadReport]:
    """`load(cfg, "vae", path)`: our VAE holding an LTX-Video checkpoint's VAE weights."""
    return load(cfg, "vae", path, **kwargs)


def load_dit(cfg: Any, path: str | Path | None = None, **kwargs: Any) -> tuple[nn.Module, LoadReport]:
    """`load(cfg, "dit", path)`: our DiT holding an LTX-Video checkpoint's transformer weights."""
    return load(cfg, "dit", path, **kwargs)


def file_sha256(files: tuple[str, ...] | list[str], chunk: int = 1 << 24) -> str:
    """sha256 over the checkpoint file(s), in order (one file: the usual `sha256sum`)."""
    digest = hashlib.sha256()
    if len(files) == 1:
        with open(files[0], "rb") as f:
            while block := f.read(chunk):
                digest.update(block)
        return digest.hexdigest()
    for file in files:  # shards: hash of the per-file hashes
        digest.update(file_sha256([file], chunk).encode())
    return digest.hexdigest()
