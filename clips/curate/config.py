"""`CurateConfig`: every threshold of the curation pipeline (LTX-Video arXiv 2501.00103 §4), one field each.

The tree mirrors the pipeline's filters in `clips.curate.manifest.FILTERS` order: `probe`,
`shots` (the `duration` filter is `shots.min_duration_s`), `bars`, `motion`, `aesthetic`,
`captions`; then `output` (re-encoded clips) and the execution fields `workers`,
`files_per_block`, `seed`. Because each threshold is a field, a curation choice can be an
ablation axis (`--set motion.static_flow=8`).

A config comes from TOML (`load_config`; sections are the field names, e.g. `[motion]`),
then `--set a.b=value` overrides (`ablations.overrides.apply_overrides`), then
`check_config`, which refuses an out-of-range value in one sentence. Unknown fields and
wrong types are refused by `models.config.from_dict` / `replace_path`. All of it happens
before a file is opened.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

from clips.curate.bars import BarsConfig
from clips.curate.motion import MotionConfig
from clips.curate.probe import ProbeConfig
from clips.curate.shots import ShotConfig
from clips.errors import ClipError
from models.config import ConfigError, from_dict

CaptionMode = Literal["keep", "require", "captioner"]


@dataclass(frozen=True, kw_only=True)
class BarsFilter(BarsConfig):
    """The black-bar detector's thresholds, plus when a clip is dropped for its bars."""

    min_area_fraction: float = 0.3  # drop a clip whose crop box keeps less than this fraction of the frame area (0 = never)
    drop_all_black: bool = True  # drop a clip whose every sampled frame is black


@dataclass(frozen=True, kw_only=True)
class MotionFilter(MotionConfig):
    """Motion scoring and its static thresholds (`static_flow`, `static_diff`), plus the switch."""

    drop_static: bool = True  # drop clips `motion.is_static` flags (False: score only)


@dataclass(frozen=True, kw_only=True)
class AestheticFilter:
    """The Siamese aesthetic scorer (models/aesthetic.py) as a filter and as the fine-tune subset's ranking."""

    scorer: str | None = None  # scorer folder written by `save_scorer` / `ltxlab aesthetic train`; None = not scored
    threshold: float | None = None  # drop kept clips scoring below this; None = no aesthetic filter
    top_k: int = 1000  # finetune.parquet: the kept clips with the k highest scores
    frames: int = 4  # frames sampled evenly per clip; the clip's score is their mean
    batch_size: int = 16  # clips per scoring batch (one actor call)
    actors: int = 1  # scoring actors; each loads the scorer once
    actor_cpus: float = 0.0  # CPUs each actor reserves; 0 shares the per-file tasks' cores (scoring is light next to decoding)
    device: Literal["cpu", "cuda"] = "cpu"  # where the scorer runs ("cuda" also reserves one GPU per actor)


@dataclass(frozen=True, kw_only=True)
class CaptionFilter:
    """Where captions come from and whether a clip without one is dropped."""

    # 'keep': the source caption (captions.jsonl / the input manifest's caption column) or None;
    # 'require': the same, and a kept clip without one is dropped by `caption`;
    # 'captioner': kept clips are captioned by the model at `path`; an empty caption is dropped
    mode: CaptionMode = "keep"
    path: str | None = None  # captioner: a local Hugging Face image-to-text folder (models/captioner.py)
    prefer_source: bool = False  # captioner: keep a clip's source caption when it has one, caption only the rest
    prompt: str = ""  # captioner: text prefix for conditional models ("a picture of"); "" = none
    max_new_tokens: int = 40  # captioner: caption length limit in tokens
    batch_size: int = 8  # clips per captioning batch (one actor call)
    actors: int = 1  # captioning actors; each loads the model once
    actor_cpus: float = 0.0  # CPUs each actor reserves (see AestheticFilter.actor_cpus; a big model wants 1+)
    device: Literal["cpu", "cuda"] = "cpu"  # where the captioner runs


@dataclass(frozen=True, kw_only=True)
class OutputConfig:
    """Optional re-encoded copies of the kept clips under DATASET/clips/."""

    reencode: bool = False  # write clips/<clip_id>.mp4: cropped to the bar box, H.264
    short_side: int | None = 256  # resize so the shorter side has this many pixels (None = crop size)
    crf: int = 18  # x264 quality (0-51, lower is better and larger)


@dataclass(frozen=True, kw_only=True)
class CurateConfig:
    """The whole curation run; its dict goes into report.json as `config`."""

    probe: ProbeConfig = field(default_factory=ProbeConfig)  # how hard each file is checked
    shots: ShotConfig = field(default_factory=ShotConfig)  # cut detection and clip lengths (the duration filter)
    bars: BarsFilter = field(default_factory=BarsFilter)  # black-bar crop and its drop rule
    motion: MotionFilter = field(default_factory=MotionFilter)  # motion scores and the static rule
    aesthetic: AestheticFilter = field(default_factory=AestheticFilter)  # scorer, threshold, fine-tune top-k
    captions: CaptionFilter = field(default_factory=CaptionFilter)  # caption source and rule
    output: OutputConfig = field(default_factory=OutputConfig)  # re-encoded clips
    workers: int | None = None  # Ray CPUs (embedded Ray) and concurrent file tasks; None = every CPU here
    files_per_block: int = 4  # input files per Ray Data block: smaller balances load, larger cuts overhead
    seed: int = 0  # breaks ties of equal aesthetic scores in the top-k (a seeded hash of the clip id)

    @property
    def worker_count(self) -> int:
        return self.workers or os.cpu_count() or 1


def config_from_dict(data: dict[str, Any], where: str = "curate config") -> CurateConfig:
    """A dict (TOML tables) -> CurateConfig; unknown names, wrong types and bad ranges are one ConfigError."""
    try:
        return check_config(from_dict(CurateConfig, data, where))
    except ClipError as exc:  # a detector config's own range check (__post_init__)
        raise ConfigError(f"{where}: {exc}") from None


def load_config(path: str | os.PathLike | None) -> CurateConfig:
    """The config in a TOML file (None: the defaults)."""
    if path is None:
        return CurateConfig()
    path = Path(path).expanduser()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"Curate config {path} does not exist; pass an existing TOML file to --config.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"Curate config {path} cannot be read ({type(exc).__name__}); pass a UTF-8 TOML file.") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"Curate config {path} is not valid TOML ({exc}); fix that line.") from None
    return config_from_dict(data, where=str(path))


# (dotted field, test, what it must be); checked after overrides, so --set cannot slip past them
_RANGES: tuple[tuple[str, Callable[[Any], bool], str], ...] = (
    ("probe.max_boxes", lambda v: v >= 1, ">= 1"),
    ("probe.tail_max_packets", lambda v: v >= 1, ">= 1"),
    ("probe.min_frames", lambda v: v >= 1, ">= 1"),
    ("probe.end_tolerance_frames", lambda v: v >= 0, ">= 0"),
    ("shots.threshold", lambda v: v > 0, "> 0"),
    ("bars.samples", lambda v: v >= 1, ">= 1"),
    ("bars.black_median", lambda v: 0 <= v <= 255, "in [0, 255]"),
    ("bars.black_peak", lambda v: 0 <= v <= 255, "in [0, 255]"),
    ("bars.peak_quantile", lambda v: 0.5 <= v <= 1, "in [0.5, 1]"),
    ("bars.frame_fraction", lambda v: 0 < v <= 1, "in (0, 1]"),
    ("bars.max_asymmetry", lambda v: 0 <= v <= 1, "in [0, 1]"),
    ("bars.min_bar", lambda v: v >= 0, ">= 0"),
    ("bars.min_content_fraction", lambda v: 0 <= v <= 1, "in [0, 1]"),
    ("bars.round_to", lambda v: v >= 1, ">= 1"),
    ("bars.min_area_fraction", lambda v: 0 <= v <= 1, "in [0, 1]"),
    ("motion.static_flow", lambda v: v >= 0, ">= 0"),
    ("motion.static_diff", lambda v: v >= 0, ">= 0"),
    ("aesthetic.top_k", lambda v: v >= 0, ">= 0"),
    ("aesthetic.frames", lambda v: v >= 1, ">= 1"),
    ("aesthetic.batch_size", lambda v: v >= 1, ">= 1"),
    ("aesthetic.actors", lambda v: v >= 1, ">= 1"),
    ("aesthetic.actor_cpus", lambda v: v >= 0, ">= 0"),
    ("captions.max_new_tokens", lambda v: v >= 1, ">= 1"),
    ("captions.batch_size", lambda v: v >= 1, ">= 1"),
    ("captions.actors", lambda v: v >= 1, ">= 1"),
    ("captions.actor_cpus", lambda v: v >= 0, ">= 0"),
    ("output.short_side", lambda v: v is None or v >= 8, ">= 8 or unset"),
    ("output.crf", lambda v: 0 <= v <= 51, "in [0, 51]"),
    ("workers", lambda v: v is None or v >= 1, ">= 1 or unset"),
    ("files_per_block", lambda v: v >= 1, ">= 1"),
)


def _get(cfg: Any, dotted: str) -> Any:
    for name in dotted.split("."):
        cfg = getattr(cfg, name)
    return cfg


def check_config(cfg: CurateConfig) -> CurateConfig:
    """`cfg` itself, or a ConfigError naming the first out-of-range or inconsistent field."""
    for dotted, ok, rule in _RANGES:
        value = _get(cfg, dotted)
        if not ok(value):
            raise ConfigError(f"curate config {dotted} must be {rule}, not {value!r}.")
    if cfg.aesthetic.threshold is not None and cfg.aesthetic.scorer is None:
        raise ConfigError("curate config aesthetic.threshold is set but aesthetic.scorer is not; "
                          "set aesthetic.scorer to a scorer folder or drop the threshold.")
    if cfg.captions.mode == "captioner" and not cfg.captions.path:
        raise ConfigError("curate config captions.mode is 'captioner' but captions.path is unset; "
                          "set it to a local image-to-text model folder.")
    return cfg
