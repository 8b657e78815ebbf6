"""The curated-manifest video source: clips planned from `DATASET/manifest.parquet`, decoded on read.

`ltxlab curate` writes one row per candidate clip (`clips.curate.manifest`, the contract);
this module turns its kept rows into training and held-out windows without decoding
anything, and decodes a window only when it is read, so a dataset of any size streams:

- **Rows.** `subset="all"` reads the kept rows of `manifest.parquet`; `"finetune"` the rows
  of `finetune.parquet` (the top-k aesthetic clips). Each row is the frame range
  `[start_frame, end_frame)` of one source file, with a black-bar crop box.
- **Shape (buckets).** Every clip gets one `(T, H, W)` shape: the spec's single shape, or
  with `DataSpec.buckets` the bucket nearest the clip's cropped aspect ratio (in log ratio)
  among those whose frame count fits its held-out part; ties go to more frames, then more
  pixels. A clip no shape fits is left out (`validate` says so when none is left).
- **Split and windows.** Each clip is split 75/25 in time like a bundled or folder video
  (`clips.sampling.TRAIN_FRACTION`): train windows come from its first 75% of frames,
  held-out windows from the rest, so train and held-out never share a frame. The crop box
  is resized so its shorter side is `short_side_for(H, W, scale)` (as the other real
  sources resize the whole frame), then `clips_per_video` windows per clip and split are
  spaced evenly as `clips.sampling.window_starts` spaces them; crop corners come from a
  stable hash per (seed, split, clip, window) (`plan_split`). Planning is numpy over the
  manifest's columns: the plan of a million clips is a few arrays, and each window's
  record (`ManifestItem`) is built only when it is read.
- **Decode.** A window is `clips.curate.crop.read_cropped` of its frame range (a seek to the
  keyframe before it, frames scaled while decoding to about twice the final width, cut to
  the box), area-resized by swscale to the planned size (as `clips.io.read_video` resizes)
  and cut to its crop. Captions and `source_id` come from the manifest.

Same manifest + same spec -> same windows, ids and pixels in any process.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from clips.errors import ClipError
from clips.sampling import TRAIN_FRACTION, check_split, make_clip_id, short_side_for, stable_seed
from clips.types import Clip

if TYPE_CHECKING:
    from clips.dataset import DataSpec

Shape = tuple[int, int, int]  # (T, H, W) of a clip
_SHAPE = re.compile(r"^(\d+)x(\d+)x(\d+)$")


def parse_shape(text: str) -> Shape:
    """'17x32x64' -> (17, 32, 64); ClipError for anything else or a shape the VAEs cannot take."""
    match = _SHAPE.match(str(text).strip())
    if not match:
        raise ClipError(f"A bucket is 'TxHxW' frames x height x width (e.g. '17x32x64'), not {text!r}.")
    t, h, w = (int(g) for g in match.groups())
    if t < 1 or (t - 1) % 8 or h < 32 or h % 32 or w < 32 or w % 32:
        raise ClipError(f"Bucket {text!r} needs frames = 1 + 8k and height, width positive multiples of 32.")
    return t, h, w


def spec_shapes(spec: "DataSpec") -> list[Shape]:
    """The spec's clip shapes: its buckets, or the single (frames, height, width)."""
    if spec.buckets:
        return [parse_shape(b) for b in spec.buckets]
    return [(spec.frames, spec.height, spec.width)]


def shape_name(shape: Shape) -> str:
    return "x".join(str(v) for v in shape)


@dataclass(frozen=True, kw_only=True)
class ManifestItem:
    """One planned window of one manifest clip; nothing decoded."""

    clip_id: str  # the window's id: '<manifest clip_id>:<split>:tA-B:yYxX:HxW[:sN]'
    manifest_clip_id: str  # the manifest row's clip_id
    source: str  # the source video file
    source_id: str  # the independent video (the manifest's source_id: what the statistics resample)
    caption: str | None  # the manifest's caption
    fps: float  # source frame rate
    split: str  # "train" | "heldout"
    first_frame: int  # the window's first frame in the source file (decode order)
    shape: Shape  # (T, H, W) of the window: its bucket
    crop_box: tuple[int, int, int, int]  # (x0, y0, x1, y1) in source pixels, end-exclusive
    frame_hw: tuple[int, int]  # the source's full frame (height, width)
    resized_hw: tuple[int, int] | None  # size the crop box is resized to (None: native pixels)
    corner: tuple[int, int]  # (y, x) of the window in the resized crop
    window: tuple[int, int]  # (start, stop) frames within the manifest clip
    source_stat: tuple[int, int]  # the source's (size_bytes, mtime_ns) when it was curated (-1, -1: not recorded)


# --------------------------------------------------------------------------- rows and shapes


def _read_rows(spec: "DataSpec") -> Any:
    """The kept rows (or the fine-tune subset) of the spec's manifest; ClipError if unreadable."""
    from clips.curate.manifest import FINETUNE, MANIFEST, ManifestError, read_manifest

    try:
        if spec.subset == "finetune":
            return read_manifest(spec.path, which=FINETUNE, kept_only=True)
        return read_manifest(spec.path, which=MANIFEST, kept_only=True)
    except ManifestError as exc:
        raise ClipError(str(exc)) from None


def _read_sources(spec: "DataSpec") -> dict[str, tuple[int, int]]:
    """The dataset's recorded source fingerprints ({path: (size_bytes, mtime_ns)}); ClipError if unreadable."""
    from clips.curate.manifest import ManifestError, read_sources

    try:
        return read_sources(spec.path)
    except ManifestError as exc:
        raise ClipError(str(exc)) from None


def _recorded(stat: Sequence[int] | np.ndarray) -> tuple[int, int] | None:
    """A recorded (size_bytes, mtime_ns), or None where it was not recorded (-1)."""
    return None if int(stat[0]) < 0 else (int(stat[0]), int(stat[1]))


def _crop_boxes(rows: Any) -> np.ndarray:
    """(r, 4) int64 (x0, y0, x1, y1) per row; the whole frame where bars were not computed (-1)."""
    box = rows[["crop_x0", "crop_y0", "crop_x1", "crop_y1"]].to_numpy(np.int64).reshape(-1, 4)
    whole = np.stack([np.zeros(len(rows), np.int64), np.zeros(len(rows), np.int64),
                      rows["width"].to_numpy(np.int64), rows["height"].to_numpy(np.int64)], axis=1)
    bad = (box.min(axis=1) < 0) | (box[:, 2] <= box[:, 0]) | (box[:, 3] <= box[:, 1])
    return np.where(bad[:, None], whole, box)


def _resized_sizes(crop_h: np.ndarray, crop_w: np.ndarray, shape: Shape,
                   scale: float | None) -> tuple[np.ndarray, np.ndarray] | None:
    """(h, w) arrays the crops are resized to for `shape`, as `clips.io.resized_hw` (None: native)."""
    short = short_side_for(shape[1], shape[2], scale)
    if short is None:
        return None
    factor = short / np.minimum(crop_h, crop_w)
    return (np.maximum(short, np.round(crop_h * factor)).astype(np.int64),
            np.maximum(short, np.round(crop_w * factor)).astype(np.int64))


def heldout_frames(num_frames: np.ndarray) -> np.ndarray:
    """Frames in each clip's held-out part, as `clips.sampling.split_range(n, "heldout")` counts them."""
    return num_frames - np.floor(num_frames * TRAIN_FRACTION).astype(np.int64)


def assign_shapes(num_frames: np.ndarray, crop_h: np.ndarray, crop_w: np.ndarray, shapes: Sequence[Shape],
                  scale: float | None) -> np.ndarray:
    """Index into `shapes` of each clip's bucket, -1 where none fits (vectorised over clips).

    A shape fits when the clip's held-out part (the shorter one) holds T frames and the
    resized crop holds H x W pixels. Among those, the nearest aspect ratio in log terms
    (|log(w/h) - log(W/H)|) wins; ties go to more frames, then more pixels, then list order.
    """
    held = heldout_frames(num_frames)
    aspect = np.log(np.maximum(crop_w, 1) / np.maximum(crop_h, 1))
    best = np.full(len(num_frames), -1, np.int64)
    best_key = np.full((len(num_frames), 3), np.inf)
    for order, shape in enumerate(shapes):
        t, h, w = shape
        size_h, size_w = _resized_sizes(crop_h, crop_w, shape, scale) or (crop_h, crop_w)
        fits = (num_frames > 0) & (crop_h > 0) & (crop_w > 0) & (held >= t) & (size_h >= h) & (size_w >= w)
        key = np.stack([np.round(np.abs(aspect - math.log(w / h)), 9), np.full(len(held), -t, float),
                        np.full(len(held), -h * w, float)], axis=1)
        better = np.zeros(len(held), bool)
        undecided = np.ones(len(held), bool)
        for column in range(3):  # lexicographic (distance, -T, -H*W); list order breaks the rest
            better |= undecided & (key[:, column] < best_key[:, column])
            undecided &= key[:, column] == best_key[:, column]
        take = fits & better
        best[take], best_key[take] = order, key[take]
    return best


def assign_shape(num_frames: int, crop_hw: tuple[int, int], shapes: Sequence[Shape],
                 scale: float | None) -> Shape | None:
    """`assign_shapes` for one clip: its bucket, or None if none fits."""
    index = int(assign_shapes(np.array([num_frames]), np.array([crop_hw[0]]), np.array([crop_hw[1]]), shapes,
                              scale)[0])
    return None if index < 0 else tuple(shapes[index])


_MIX = np.uint64(0x9E3779B97F4A7C15)


def _splitmix(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser, elementwise on uint64 (wrapping arithmetic): a well-mixed hash."""
    with np.errstate(over="ignore"):
        x = (x + _MIX).astype(np.uint64)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def plan_split(clip_ids: np.ndarray, num_frames: np.ndarray, pic_h: np.ndarray, pic_w: np.ndarray,
               shape: np.ndarray, *, split: str, count: int, seed: int) -> tuple[np.ndarray, ...]:
    """(row, start, y, x) int64 arrays of `count` windows per clip of `split`, vectorised over clips.

    Windows follow `clips.sampling.window_starts` (evenly spaced over the split's frames,
    np.linspace rounding); crop corners are uniform draws from a hash of (seed, split,
    manifest clip id, window, axis), stable in every process, one clip's corners independent
    of every other row (a manifest of a million clips is planned in seconds, not with a
    generator per clip as a bundled video is).
    """
    check_split(split)
    boundary = np.floor(num_frames * TRAIN_FRACTION).astype(np.int64)  # clips.sampling.split_boundary
    lo, hi = (np.zeros_like(boundary), boundary) if split == "train" else (boundary, num_frames)
    t, h, w = shape[:, 0], shape[:, 1], shape[:, 2]
    k = np.arange(count)
    step = (hi - t - lo) / max(count - 1, 1)
    starts = np.round(lo[:, None] + k[None, :] * step[:, None]).astype(np.int64)  # (r, count)
    if count > 1:
        starts[:, -1] = hi - t  # np.linspace ends exactly at the last start
    import pandas as pd

    base = pd.util.hash_array(clip_ids.astype(object), categorize=False).astype(np.uint64)  # fixed key: stable
    salt = np.uint64(stable_seed(seed, split))
    draws = []
    for axis, room in ((0, pic_h - h + 1), (1, pic_w - w + 1)):
        hashed = _splitmix(_splitmix(base ^ salt)[:, None] + np.uint64(2) * k[None, :].astype(np.uint64)
                           + np.uint64(axis))
        draws.append((hashed % room[:, None].astype(np.uint64)).astype(np.int64))
    rows = np.repeat(np.arange(len(clip_ids)), count)
    return rows, starts.reshape(-1), draws[0].reshape(-1), draws[1].reshape(-1)


@dataclass(frozen=True, kw_only=True, eq=False)
class Windows:
    """A split's planned windows, one array entry each (columnar: a million clips stay arrays)."""

    row: np.ndarray  # int64 (n,): index into the plan's usable rows
    start: np.ndarray  # int64 (n,): first frame of the window within its manifest clip
    y: np.ndarray  # int64 (n,): crop corner in the resized picture
    x: np.ndarray  # int64 (n,)

    def __len__(self) -> int:
        return len(self.row)

    def subset(self, index: slice) -> "Windows":
        return Windows(row=self.row[index], start=self.start[index], y=self.y[index], x=self.x[index])


@dataclass(frozen=True, kw_only=True, eq=False)
class Plan:
    """What a spec makes of its manifest: its usable rows (as arrays) and the windows of each split."""

    clip_id: np.ndarray  # object (r,): manifest clip ids of the usable rows
    source: np.ndarray  # object (r,): their source files
    source_id: np.ndarray  # object (r,)
    source_stat: np.ndarray  # int64 (r, 2): the source's (size_bytes, mtime_ns) at curation; -1 = not recorded
    caption: np.ndarray  # object (r,): str or None
    fps: np.ndarray  # float64 (r,)
    start_frame: np.ndarray  # int64 (r,): the clip's first frame in its source
    crop: np.ndarray  # int64 (r, 4): (x0, y0, x1, y1) in source pixels
    frame: np.ndarray  # int64 (r, 2): (height, width) of the source frame
    resized: np.ndarray  # int64 (r, 2): (h, w) the crop is resized to; -1 = native
    shape: np.ndarray  # int64 (r,): index into `shapes`
    shapes: tuple[Shape, ...]
    short_side: tuple[int | None, ...]  # per shape: the resized shorter side recorded in clip ids
    train: Windows
    heldout: Windows
    kept_rows: int  # rows read (kept, or the fine-tune subset)
    longest_heldout: int  # frames in the longest held-out part of any row (for the error sentence)
    where: str  # the manifest file

    @property
    def used_rows(self) -> int:
        """Rows some shape fits."""
        return len(self.clip_id)

    def windows(self, split: str) -> Windows:
        check_split(split)
        return self.train if split == "train" else self.heldout

    def item(self, split: str, index: int) -> ManifestItem:
        """Window `index` of `split` as a record (built on demand)."""
        w = self.windows(split)
        r, start, y, x = int(w.row[index]), int(w.start[index]), int(w.y[index]), int(w.x[index])
        shape = self.shapes[int(self.shape[r])]
        t, h, wd = shape
        resized = tuple(int(v) for v in self.resized[r])
        return ManifestItem(
            clip_id=make_clip_id(self.clip_id[r], split, start, t, y, x, h, wd, self.short_side[int(self.shape[r])]),
            manifest_clip_id=str(self.clip_id[r]), source=str(self.source[r]), source_id=str(self.source_id[r]),
            caption=self.caption[r], fps=float(self.fps[r]), split=split, first_frame=int(self.start_frame[r]) + start,
            shape=shape, crop_box=tuple(int(v) for v in self.crop[r]),  # type: ignore[arg-type]
            frame_hw=(int(self.frame[r, 0]), int(self.frame[r, 1])),
            resized_hw=None if resized[0] < 0 else resized,  # type: ignore[arg-type]
            corner=(y, x), window=(start, start + t),
            source_stat=(int(self.source_stat[r, 0]), int(self.source_stat[r, 1])))


def plan(spec: "DataSpec") -> Plan:
    """Plan every window of `spec` (manifest source); cached per spec and manifest file version."""
    from clips.curate.manifest import FINETUNE, ManifestError, manifest_path

    try:
        path = manifest_path(spec.path)
    except ManifestError as exc:
        raise ClipError(str(exc)) from None
    if spec.subset == "finetune":
        path = path.parent / FINETUNE
    try:
        stat = path.stat()
    except OSError:
        stat = None  # _read_rows names what is missing
    return _plan(spec, str(path), stat.st_mtime_ns if stat else 0, stat.st_size if stat else 0)


@lru_cache(maxsize=16)
def _plan(spec: "DataSpec", where: str, mtime_ns: int, size: int) -> Plan:
    # mtime and size are in the key so a re-curated manifest is planned again, not served stale
    rows = _read_rows(spec)
    recorded = _read_sources(spec)
    shapes = spec_shapes(spec)
    num_frames = (rows["end_frame"] - rows["start_frame"]).to_numpy(np.int64)
    box = _crop_boxes(rows)
    crop_h, crop_w = box[:, 3] - box[:, 1], box[:, 2] - box[:, 0]
    which = assign_shapes(num_frames, crop_h, crop_w, shapes, spec.scale)
    used = np.flatnonzero(which >= 0)
    which, num_frames, crop_h, crop_w = which[used], num_frames[used], crop_h[used], crop_w[used]
    resized = np.full((len(used), 2), -1, np.int64)
    for index, shape in enumerate(shapes):
        mine = which == index
        sizes = _resized_sizes(crop_h[mine], crop_w[mine], shape, spec.scale)
        if sizes is not None:
            resized[mine] = np.stack(sizes, axis=1)
    pic_h = np.where(resized[:, 0] >= 0, resized[:, 0], crop_h)
    pic_w = np.where(resized[:, 1] >= 0, resized[:, 1], crop_w)
    shape_array = np.array(shapes, np.int64).reshape(-1, 3)[which]
    clip_id = rows["clip_id"].to_numpy(object)[used]
    windows = {split: Windows(**dict(zip(("row", "start", "y", "x"), plan_split(clip_id, num_frames, pic_h, pic_w, shape_array, split=split,
                                          count=spec.clips_per_video, seed=spec.seed))))
               for split in ("train", "heldout")}
    captions = rows["caption"].to_numpy(object)[used]
    return Plan(
        clip_id=clip_id, source=rows["source"].astype(str).to_numpy(object)[used],
        source_id=rows["source_id"].astype(str).to_numpy(object)[used],
        source_stat=np.array([recorded.get(str(path), (-1, -1)) for path in rows["source"].to_numpy(object)[used]],
                             np.int64).reshape(-1, 2),
        caption=np.array([c if isinstance(c, str) else None for c in captions], dtype=object),
        fps=rows["fps"].to_numpy(np.float64)[used], start_frame=rows["start_frame"].to_numpy(np.int64)[used],
        crop=box[used], frame=rows[["height", "width"]].to_numpy(np.int64).reshape(-1, 2)[used], resized=resized, shape=which, shapes=tuple(shapes),
        short_side=tuple(short_side_for(h, w, spec.scale) for _, h, w in shapes),
        train=windows["train"], heldout=windows["heldout"], kept_rows=len(rows),
        longest_heldout=int(heldout_frames(np.maximum((rows["end_frame"] - rows["start_frame"]).to_numpy(np.int64), 0))
                            .max(initial=0)),
        where=where)


def check_manifest_spec(spec: "DataSpec") -> Plan:
    """What `DataSpec.validate` runs for a manifest: readable, has usable clips, sources present.

    Raises ClipError (one sentence) before anything expensive starts.
    """
    from clips.curate.manifest import source_change

    found = plan(spec)
    shapes = ", ".join(shape_name(s) for s in spec_shapes(spec))
    if not found.kept_rows:
        raise ClipError(f"The curated dataset {found.where} has no kept clips; loosen the curation thresholds "
                        f"and re-run `ltxlab curate`, or point at another dataset.")
    if not found.used_rows:
        raise ClipError(f"None of the {found.kept_rows} kept clips of {found.where} is long and large enough for "
                        f"{shapes} clips in both splits (the longest held-out part has {found.longest_heldout} "
                        f"frames); lower frames, height or width.")
    first_row = dict(zip(found.source, range(len(found.source))))
    sources = sorted(first_row)
    missing = [s for s in sources if not os.path.isfile(s)]
    if missing:
        raise ClipError(f"{len(missing)} source video(s) of {found.where} are missing (first: {missing[0]}); "
                        "restore them or re-run `ltxlab curate` on the moved files.")
    changed = [(s, why) for s in sources
               for why in [source_change(s, _recorded(found.source_stat[first_row[s]]))] if why]
    if changed:
        raise ClipError(f"{len(changed)} source video(s) of {found.where} changed since it was curated (first: "
                        f"{changed[0][0]} {changed[0][1]}); re-run `ltxlab curate` so its clips, scores and crops "
                        "describe the videos as they are now.")
    return found


# --------------------------------------------------------------------------- decoding


def _resize(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """(T, h, w, 3) uint8 -> (T, height, width, 3), swscale area interpolation per frame."""
    import av

    out = np.empty((len(frames), height, width, 3), np.uint8)
    for i, frame in enumerate(frames):
        picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        out[i] = picture.reformat(width=width, height=height, format="rgb24", interpolation="AREA").to_ndarray()
    return out


OVERSAMPLE = 2  # decode at about twice the final crop width, then area-resize to the exact size


def decode_item(item: ManifestItem) -> np.ndarray:
    """The window's pixels: uint8 (T, H, W, 3). ClipError if the source ends early or cannot be read.

    The frames are scaled while decoding to about `OVERSAMPLE` times the final width
    (`clips.curate.crop.read_cropped`: a 4K source never sits in a loader worker at full
    size), cropped to the bar box there, then area-resized to the planned size exactly.
    """
    from clips.curate.bars import CropBox
    from clips.curate.crop import read_cropped
    from clips.curate.manifest import source_change

    why = source_change(item.source, _recorded(item.source_stat))
    if why:  # checked at each read too: a source replaced after validate() must not train silently
        raise ClipError(f"Video file {item.source} {why}; re-run `ltxlab curate` on the changed files.")
    t, h, w = item.shape
    x0, y0, x1, y1 = item.crop_box
    box = CropBox(x0=x0, y0=y0, x1=x1, y1=y1, frame_width=item.frame_hw[1], frame_height=item.frame_hw[0])
    width = None if item.resized_hw is None else OVERSAMPLE * item.resized_hw[1]
    frames = read_cropped(item.source, box, start=item.first_frame, end=item.first_frame + t, width=width)
    if len(frames) < t:
        raise ClipError(f"Video file {item.source} has {len(frames)} frames from frame {item.first_frame}, fewer than "
                        f"the {t} its manifest row promises; re-run `ltxlab curate` on it.")
    if item.resized_hw is not None and tuple(frames.shape[1:3]) != item.resized_hw:
        frames = _resize(frames, *item.resized_hw)
    y, x = item.corner
    return np.ascontiguousarray(frames[:, y:y + h, x:x + w])


def to_clip(item: ManifestItem, frames: np.ndarray) -> Clip:
    return Clip(clip_id=item.clip_id, frames=frames, fps=item.fps, caption=item.caption, source="manifest",
                split=item.split,  # type: ignore[arg-type]
                meta={"video": item.manifest_clip_id, "source_id": item.source_id, "path": item.source,
                      "frame_window": item.window, "first_frame": item.first_frame, "crop_box_source": item.crop_box,
                      "resized_hw": item.resized_hw, "crop_box": (*item.corner, item.shape[1], item.shape[2]),
                      "bucket": shape_name(item.shape)})


class ManifestClips(Sequence):
    """A split's clips as a lazy sequence: `clips[i]` decodes window i (nothing is kept).

    `on_decode(item)` is called after each decode (the streaming tests count with it).
    Picklable, so DataLoader workers and Ray tasks get their own copy.
    """

    def __init__(self, found: Plan, split: str, positions: range | None = None,
                 on_decode: Callable[[ManifestItem], None] | None = None):
        self.plan, self.split, self.on_decode = found, split, on_decode
        # the split's window numbers this (possibly sliced) sequence holds
        self.positions = range(len(found.windows(split))) if positions is None else positions

    def __len__(self) -> int:
        return len(self.positions)

    def item(self, index: int) -> ManifestItem:
        """The planned window `index` of this sequence, without decoding it."""
        return self.plan.item(self.split, self.positions[index])

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return ManifestClips(self.plan, self.split, self.positions[index], self.on_decode)
        item = self.item(index)
        frames = decode_item(item)
        if self.on_decode is not None:
            self.on_decode(item)
        return to_clip(item, frames)

    def clip_ids(self) -> list[str]:
        """Every clip id, in order, without decoding."""
        return [self.item(i).clip_id for i in range(len(self))]

    def _shape_index(self) -> np.ndarray:
        rows = self.plan.windows(self.split).row[self.positions.start:self.positions.stop:self.positions.step]
        return self.plan.shape[rows]  # (n,) index into plan.shapes

    def shapes(self) -> list[Shape]:
        """(T, H, W) of every clip, in order, without decoding."""
        return [self.plan.shapes[k] for k in self._shape_index()]

    def bucket_indices(self) -> list[np.ndarray]:
        """Clip indices per shape, shapes in order of first appearance (`bucket_groups`, vectorised)."""
        index = self._shape_index()
        _, first = np.unique(index, return_index=True)
        return [np.flatnonzero(index == index[i]) for i in sorted(first)]


def manifest_clips(spec: "DataSpec", split: str) -> ManifestClips:
    """The split's clips of a manifest spec, lazily decoded."""
    check_split(split)
    return ManifestClips(check_manifest_spec(spec), split)


def bucket_groups(shapes: Sequence[Shape]) -> list[list[int]]:
    """Indices grouped by shape, groups in order of first appearance (one group = one bucket)."""
    groups: dict[Shape, list[int]] = {}
    for index, shape in enumerate(shapes):
        groups.setdefault(tuple(shape), []).append(index)
    return list(groups.values())

