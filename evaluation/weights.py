"""Where the perceptual and distribution metrics find their pretrained weights: local files only.

A metric that needs a network (FVD's I3D, LPIPS's AlexNet/VGG and linear heads, CLIP,
DINO) asks for a named weight. The name resolves, in order, to:
1. `eval.weights.<name>` (a `WeightsConfig` field, set with `--set eval.weights.i3d=PATH`);
2. `$LTXLAB_WEIGHTS/<default file name>` (one folder holding them all);
3. for the LPIPS linear heads only, the file the `lpips` package ships (located, not imported);
and otherwise the metric is not applicable, with the sentence
`<metric> needs <file>; set eval.weights.<name>=PATH or put it in $LTXLAB_WEIGHTS` - it is never
silently dropped and nothing is ever downloaded (VBench and StyleGAN-V fetch weights on
first use; here a missing file is the user's to provide).

Every resolved weight is hashed (sha256 of the file, or of a model folder's weight files)
so each value can state which network produced it.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, fields
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping

from models.config import LOCAL_PATH, ConfigError, declare_ranges

WEIGHTS_ENV = "LTXLAB_WEIGHTS"


@dataclass(frozen=True, kw_only=True)
class WeightFile:
    """One pretrained network a metric can use, and the name it has in a weights folder."""

    name: str  # the `eval.weights.<name>` field
    file: str  # default file (or folder) name under $LTXLAB_WEIGHTS
    folder: bool  # a Hugging Face model folder (config.json + weights) rather than one file
    what: str  # what it is and where it comes from, for messages and docs


WEIGHT_FILES: dict[str, WeightFile] = {w.name: w for w in (
    WeightFile(name="i3d", file="i3d_torchscript.pt", folder=False,
               what="StyleGAN-V's TorchScript I3D (Kinetics-400) feature detector"),
    WeightFile(name="lpips_alex", file="alexnet-owt-7be5be79.pth", folder=False,
               what="torchvision's ImageNet AlexNet state dict, of which LPIPS uses features.*"),
    WeightFile(name="lpips_vgg", file="vgg16-397923af.pth", folder=False,
               what="torchvision's ImageNet VGG-16 state dict, of which LPIPS uses features.*"),
    WeightFile(name="lpips_alex_head", file="lpips_v0.1_alex.pth", folder=False,
               what="the lpips package's v0.1 linear heads for AlexNet, lpips/weights/v0.1/alex.pth"),
    WeightFile(name="lpips_vgg_head", file="lpips_v0.1_vgg.pth", folder=False,
               what="the lpips package's v0.1 linear heads for VGG-16, lpips/weights/v0.1/vgg.pth"),
    WeightFile(name="clip", file="clip", folder=True,
               what="a Hugging Face CLIP folder written by save_pretrained: CLIPModel, tokenizer and image processor"),
    WeightFile(name="dino", file="dino", folder=True,
               what="a Hugging Face ViT or DINO folder written by save_pretrained, for frame consistency"),
)}  # fmt: skip

_LPIPS_PACKAGE_HEADS = {"lpips_alex_head": "alex.pth", "lpips_vgg_head": "vgg.pth"}


@dataclass(frozen=True, kw_only=True)
class WeightsConfig:
    """`eval.weights`: local paths of pretrained networks; None = look in $LTXLAB_WEIGHTS."""

    i3d: str | None = None  # i3d_torchscript.pt (FVD, rFVD)
    lpips_alex: str | None = None  # torchvision AlexNet state dict (.pth) for lpips_alex
    lpips_vgg: str | None = None  # torchvision VGG-16 state dict (.pth) for lpips_vgg
    lpips_alex_head: str | None = None  # lpips v0.1 alex.pth linear heads (default: the lpips package's file)
    lpips_vgg_head: str | None = None  # lpips v0.1 vgg.pth linear heads (default: the lpips package's file)
    clip: str | None = None  # Hugging Face CLIP folder (clip_similarity, frame_consistency)
    dino: str | None = None  # Hugging Face ViT/DINO folder (frame_consistency; CLIP's image tower if unset)


assert {f.name for f in fields(WeightsConfig)} == set(WEIGHT_FILES)  # one field per known weight
declare_ranges(WeightsConfig, {f.name: LOCAL_PATH for f in fields(WeightsConfig)})


class WeightsMissing(LookupError):
    """A metric's weights are not on disk; the message is the one sentence the results show."""


class WeightsInvalid(ConfigError):
    """A configured weights path exists but is not what the metric needs; the message says what to fix."""


@dataclass(frozen=True)
class Weights:
    """Resolved weight locations: explicit paths first, then the $LTXLAB_WEIGHTS folder."""

    paths: Mapping[str, str]  # name -> explicitly configured path
    root: str | None  # $LTXLAB_WEIGHTS at resolution time

    def find(self, name: str) -> Path | None:
        """The existing file or folder for `name`, or None. A configured path that is missing raises."""
        spec = WEIGHT_FILES[name]
        explicit = self.paths.get(name)
        if explicit:
            path = Path(explicit).expanduser()
            if not path.exists() and self.root and not path.is_absolute():
                path = Path(self.root) / path
            if not path.exists():
                raise WeightsInvalid(f"eval.weights.{name} is {explicit}, which does not exist; "
                                     f"point it at {spec.what} ({spec.file}).")
            return _checked(path, spec)
        if self.root:
            path = Path(self.root).expanduser() / spec.file
            if path.exists():
                return _checked(path, spec)
        if name in _LPIPS_PACKAGE_HEADS:
            return lpips_package_head(_LPIPS_PACKAGE_HEADS[name])
        return None

    def path(self, name: str, metric: str) -> Path:
        """The file for `name`, or WeightsMissing("<metric> needs <file>; set eval.weights.<name>...")."""
        found = self.find(name)
        if found is None:
            raise WeightsMissing(missing_reason(metric, name))
        return found

    def sha256(self, name: str, metric: str) -> str:
        """sha256 of the resolved file (or of a folder's weight files), cached by path, size and mtime."""
        path = self.path(name, metric)
        stat = path.stat()
        return _sha256(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


def missing_reason(metric: str, name: str) -> str:
    """The one sentence a result shows when `metric` lacks weight `name`."""
    spec = WEIGHT_FILES[name]
    return f"{metric} needs {spec.file}, {spec.what}; set eval.weights.{name}=PATH or put it in ${WEIGHTS_ENV}"


def _checked(path: Path, spec: WeightFile) -> Path:
    if spec.folder and not (path / "config.json").is_file():
        raise WeightsInvalid(f"{path} is not a Hugging Face model folder (no config.json); eval.weights.{spec.name} "
                             f"needs {spec.what}.")
    if not spec.folder and not path.is_file():
        raise WeightsInvalid(f"{path} is a folder, but eval.weights.{spec.name} needs one file: {spec.what}.")
    return path


def lpips_package_head(file: str) -> Path | None:
    """The linear-head file the installed `lpips` package ships (lpips/weights/v0.1/<file>), without importing it.

    Importing `lpips` imports torchvision, whose PyPI wheel is built against CUDA torch and
    fails to import beside a CPU torch; the heads are plain data, so only the file is read.
    """
    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "weights" / "v0.1" / file
    return path if path.is_file() else None


def check_formats(weights: Weights) -> None:
    """Open every weight that resolves as the metric that reads it will, before any training: a file in the
    wrong format is WeightsInvalid (one sentence naming it) now, not after the run has trained for hours.
    Cached per file (path, size, mtime); the largest, VGG-16, is a 0.5 GB torch.load."""
    for name in WEIGHT_FILES:
        path = weights.find(name)
        if path is not None:
            stat = path.stat()
            _check_format(name, str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=16)
def _check_format(name: str, path: str, size: int, mtime_ns: int) -> None:
    if name == "i3d":
        from evaluation.fvd import check_detector_file

        check_detector_file(path)
    elif name.startswith("lpips_"):
        from evaluation import lpips

        net = name.removeprefix("lpips_").removesuffix("_head")
        (lpips.load_head_state if name.endswith("_head") else lpips.load_backbone_state)(path, net)
    else:  # a Hugging Face folder: its config must load, and CLIP must be a CLIP model
        from evaluation.clip_similarity import check_folder

        check_folder(path, text=name == "clip")


def metric_weights(metric: str, weights: Weights) -> tuple[str, ...]:
    """The `eval.weights` names whose files `metric` reads ("<task>.<metric>" as eval_gen rows name it); of a
    spec's alternatives (frame_consistency: dino or clip) the first that resolves, as the metric picks it."""
    from evaluation.fvd import DISTRIBUTION_METRICS
    from evaluation.generation import GENERATION_METRICS
    from evaluation.lpips import NETS

    base = metric.split(".", 1)[-1]
    if base.startswith("lpips_") and base.removeprefix("lpips_") in NETS:
        net = NETS[base.removeprefix("lpips_")]
        return net.backbone_weight, net.head_weight
    for registry in (GENERATION_METRICS, DISTRIBUTION_METRICS):
        if base in registry:
            return next(((name,) for name in registry.get(base).needs if weights.find(name) is not None), ())
    return ()


def weights_record(weights: Weights, metrics: Iterable[str]) -> dict[str, dict[str, str]]:
    """{metric: {weights name: sha256}} for the given metrics that read network weights: which files made
    each value (stored beside the values: a replaced file, or DINO instead of CLIP, shows)."""
    record = {}
    for metric in metrics:
        names = [name for name in metric_weights(metric, weights) if weights.find(name) is not None]
        if names:
            record[metric] = {name: weights.sha256(name, metric) for name in names}
    return record


@lru_cache(maxsize=32)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    from models.aesthetic import weights_sha256
    from models.weights import file_sha256

    return weights_sha256(path) if Path(path).is_dir() else file_sha256([path])


def resolve_weights(config: WeightsConfig | Mapping[str, Any] | None = None,
                    environ: Mapping[str, str] | None = None) -> Weights:
    """Weights from `eval.weights` (a WeightsConfig or {name: path}) and $LTXLAB_WEIGHTS.

    An unknown name raises ConfigError naming the valid ones (a typo must not read as "missing"), and a
    configured path that does not exist (or is a file where a folder is needed) raises WeightsInvalid.
    """
    env = os.environ if environ is None else environ
    if config is None:
        given: dict[str, Any] = {}
    elif isinstance(config, WeightsConfig):
        given = {f.name: getattr(config, f.name) for f in fields(config)}
    else:
        given = dict(config)
    unknown = sorted(set(given) - set(WEIGHT_FILES))
    if unknown:
        raise ConfigError(f"Unknown eval.weights name(s) {', '.join(unknown)}; valid names are: "
                         f"{', '.join(WEIGHT_FILES)}.")
    weights = Weights(paths={k: str(v) for k, v in given.items() if v}, root=env.get(WEIGHTS_ENV) or None)
    for name in weights.paths:  # a configured path that is missing or of the wrong kind fails now, not mid-run
        weights.find(name)
    return weights
