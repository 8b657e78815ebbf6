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
  (`clips.sampling.split_range`): train windows come from its first 75% of frames,
  held-out windows from the rest, so train and held-out never share a frame. The crop box
  is resized so its shorter side is `short_side_for(H, W, scale)` (as the other real
  sources resize the whole frame), then `clips_per_video` windows and crop corners are
  planned per clip and split by `clips.sampling.plan_windows`: the same rule and seeds
  as bundled/folder clips.
- **Decode.** A window is `clips.curate.probe.read_frames` of its frame range (a seek to the
  keyframe before it), cropped to the box, resized by swscale (area, as `clips.io.read_video`
  resizes) and cut to its crop. Captions and `source_id` come from the manifest.

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
from clips.sampling import check_split, make_clip_id, plan_windows, short_side_for, split_range
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
    resized_hw: tuple[int, int] | None  # size the crop box is resized to (None: native pixels)
    corner: tuple[int, int]  # (y, x) of the window in the resized crop
    window: tuple[int, int]  # (start, stop) frames within the manifest clip


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


def _crop_box(row: Any) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of a row; the whole frame when bars were not computed (-1)."""
    box = (int(row.crop_x0), int(row.crop_y0), int(row.crop_x1), int(row.crop_y1))
    if min(box) < 0 or box[2] <= box[0] or box[3] <= box[1]:
        return 0, 0, int(row.width), int(row.height)
    return box


def _resized(crop_h: int, crop_w: int, shape: Shape, scale: float | None) -> tuple[int, int] | None:
    """The size the crop box is resized to for `shape` (None: kept native)."""
    from clips.io import resized_hw

    short = short_side_for(shape[1], shape[2], scale)
    return None if short is None else resized_hw(crop_h, crop_w, short)


def assign_shape(num_frames: int, crop_hw: tuple[int, int], shapes: Sequence[Shape],
                 scale: float | None) -> Shape | None:
    """The bucket of a clip of `num_frames` frames and cropped size `crop_hw`, or None if none fits.

    A shape fits when the clip's held-out part (the shorter one) holds T frames and the
    resized crop holds H x W pixels. Among those, the nearest aspect ratio in log terms
    (|log(w/h) - log(W/H)|) wins; ties go to more frames, then more pixels, then list order.
    """
    lo, hi = split_range(num_frames, "heldout")
    crop_h, crop_w = crop_hw
    best, best_key = None, None
    for order, shape in enumerate(shapes):
        t, h, w = shape
        size = _resized(crop_h, crop_w, shape, scale) or (crop_h, crop_w)
        if hi - lo < t or size[0] < h or size[1] < w:
            continue
        key = (round(abs(math.log(crop_w / crop_h) - math.log(w / h)), 9), -t, -h * w, order)
        if best_key is None or key < best_key:
            best, best_key = shape, key
    return best


def _row_items(row: Any, spec: "DataSpec", shape: Shape, split: str) -> list[ManifestItem]:
    box = _crop_box(row)
    crop_h, crop_w = box[3] - box[1], box[2] - box[0]
    resized = _resized(crop_h, crop_w, shape, spec.scale)
    pic_h, pic_w = resized or (crop_h, crop_w)
    num_frames = int(row.end_frame) - int(row.start_frame)
    t, h, w = shape
    short = short_side_for(h, w, spec.scale)
    caption = row.caption if isinstance(row.caption, str) else None
    items = []
    for start, y, x in plan_windows(row.clip_id, num_frames, pic_h, pic_w, split=split, frames=t, height=h,
                                    width=w, count=spec.clips_per_video, seed=spec.seed):
        items.append(ManifestItem(
            clip_id=make_clip_id(row.clip_id, split, start, t, y, x, h, w, short), manifest_clip_id=row.clip_id,
            source=str(row.source), source_id=str(row.source_id), caption=caption, fps=float(row.fps), split=split,
            first_frame=int(row.start_frame) + start, shape=shape, crop_box=box, resized_hw=resized, corner=(y, x),
            window=(start, start + t)))
    return items


@dataclass(frozen=True, kw_only=True)
class Plan:
    """What a spec makes of its manifest: the windows of each split and the rows left out."""

    train: tuple[ManifestItem, ...]
    heldout: tuple[ManifestItem, ...]
    kept_rows: int  # rows read (kept, or the fine-tune subset)
    used_rows: int  # rows some shape fits
    longest_heldout: int  # frames in the longest held-out part of any row (for the error sentence)
    where: str  # the manifest file


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
    shapes = spec_shapes(spec)
    splits: dict[str, list[ManifestItem]] = {"train": [], "heldout": []}
    used, longest = 0, 0
    for row in rows.itertuples(index=False):
        num_frames = int(row.end_frame) - int(row.start_frame)
        box = _crop_box(row)
        lo, hi = split_range(max(num_frames, 0), "heldout")
        longest = max(longest, hi - lo)
        shape = assign_shape(num_frames, (box[3] - box[1], box[2] - box[0]), shapes, spec.scale) \
            if num_frames > 0 else None
        if shape is None:
            continue
        used += 1
        for split in splits:
            splits[split] += _row_items(row, spec, shape, split)
    return Plan(train=tuple(splits["train"]), heldout=tuple(splits["heldout"]), kept_rows=len(rows), used_rows=used,
                longest_heldout=longest, where=where)


def check_manifest_spec(spec: "DataSpec") -> Plan:
    """What `DataSpec.validate` runs for a manifest: readable, has usable clips, sources present.

    Raises ClipError (one sentence) before anything expensive starts.
    """
    found = plan(spec)
    shapes = ", ".join(shape_name(s) for s in spec_shapes(spec))
    if not found.kept_rows:
        raise ClipError(f"The curated dataset {found.where} has no kept clips; loosen the curation thresholds "
                        f"and re-run `ltxlab curate`, or point at another dataset.")
    if not found.used_rows:
        raise ClipError(f"None of the {found.kept_rows} kept clips of {found.where} is long and large enough for "
                        f"{shapes} clips in both splits (the longest held-out part has {found.longest_heldout} "
                        f"frames); lower frames, height or width.")
    sources = sorted({item.source for item in found.train})
    missing = [s for s in sources if not os.path.isfile(s)]
    if missing:
        raise ClipError(f"{len(missing)} source video(s) of {found.where} are missing (first: {missing[0]}); "
                        "restore them or re-run `ltxlab curate` on the moved files.")
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


def decode_item(item: ManifestItem) -> np.ndarray:
    """The window's pixels: uint8 (T, H, W, 3). ClipError if the source ends early or cannot be read."""
    from clips.curate.probe import read_frames

    t, h, w = item.shape
    frames = read_frames(item.source, start=item.first_frame, end=item.first_frame + t)  # (<=T, Hs, Ws, 3)
    if len(frames) < t:
        raise ClipError(f"Video file {item.source} has {len(frames)} frames from frame {item.first_frame}, fewer than "
                        f"the {t} its manifest row promises; re-run `ltxlab curate` on it.")
    x0, y0, x1, y1 = item.crop_box
    frames = frames[:, y0:y1, x0:x1]
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

    def __init__(self, items: Sequence[ManifestItem], on_decode: Callable[[ManifestItem], None] | None = None):
        self.items = tuple(items)
        self.on_decode = on_decode

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return ManifestClips(self.items[index], self.on_decode)
        item = self.items[index]
        frames = decode_item(item)
        if self.on_decode is not None:
            self.on_decode(item)
        return to_clip(item, frames)

    def shapes(self) -> list[Shape]:
        """(T, H, W) of every clip, in order, without decoding."""
        return [item.shape for item in self.items]


def manifest_clips(spec: "DataSpec", split: str) -> ManifestClips:
    """The split's clips of a manifest spec, lazily decoded."""
    check_split(split)
    found = check_manifest_spec(spec)
    return ManifestClips(found.train if split == "train" else found.heldout)


def bucket_groups(shapes: Sequence[Shape]) -> list[list[int]]:
    """Indices grouped by shape, groups in order of first appearance (one group = one bucket)."""
    groups: dict[Shape, list[int]] = {}
    for index, shape in enumerate(shapes):
        groups.setdefault(tuple(shape), []).append(index)
    return list(groups.values())

