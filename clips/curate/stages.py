"""The per-file and per-clip work of the curation pipeline (LTX-Video arXiv 2501.00103 §4), as plain functions.

Ray Data (`pipeline.py`) and the single-process loop call exactly these, so the two paths
differ only in how work is scheduled (the benchmark compares like with like):

    probe_and_split(file) -> rows     probe, shot cuts, clips of [min, max] duration
    measure_clip(row) -> row          black-bar crop box, motion scores (inside the box)
    ScoreAesthetic()(batch) -> batch  Siamese aesthetic score (models/aesthetic.py), threshold
    CaptionClips()(batch) -> batch    captions from a local image-to-text model (models/captioner.py)
    caption_rule(row) -> row          the caption filter for source captions (mode 'require')
    reencode_clip(row) -> row         cropped H.264 copy of a kept clip under DATASET/clips/

A row is a dict with every column of `clips.curate.manifest.COLUMNS`. A dropped row keeps
the scores computed before its drop and skips every later stage. Rows carry no frames:
each stage decodes the few frames it needs, so memory does not grow with the input.
"""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path
from typing import Any

from clips.curate.bars import CropBox, detect_bars_file
from clips.curate.config import CurateConfig
from clips.curate.crop import box_of_row, read_cropped
from clips.curate.manifest import CLIPS_DIR
from clips.curate.motion import is_static, motion_scores_file
from clips.curate.probe import ProbeError, probe
from clips.curate.shots import find_cuts_file, shots_from_cuts, split_shots
from clips.errors import ClipError

CAPTION_WIDTH = 384  # captioners resize to ~224-384 themselves; decoding wider only costs memory


# ----------------------------------------------------------------------------- rows


def source_prefix(path: str) -> str:
    """'<stem>-<8 hex of the absolute path>': the clip id's first part and the row's source_id."""
    return f"{Path(path).stem}-{hashlib.sha1(path.encode()).hexdigest()[:8]}"


def new_row(path: str, caption: str | None) -> dict[str, Any]:
    """The row of an unprobed file: every column at its 'not computed' value."""
    prefix = source_prefix(path)
    return {"clip_id": f"{prefix}:f-1--1", "source": path, "source_id": prefix, "start_frame": -1,
            "end_frame": -1, "fps": math.nan, "width": -1, "height": -1, "duration_s": math.nan,
            "crop_x0": -1, "crop_y0": -1, "crop_x1": -1, "crop_y1": -1, "motion_flow": math.nan,
            "motion_diff": math.nan, "aesthetic": math.nan, "caption": caption or None,
            "caption_source": "source" if caption else "none", "keep": True, "dropped_by": None,
            "drop_reason": None, "finetune": False, "clip_path": None}


def has_caption(row: dict[str, Any]) -> bool:
    """A non-empty caption string (a pandas batch may hold None or NaN for 'none')."""
    return isinstance(row["caption"], str) and bool(row["caption"])


def drop(row: dict[str, Any], by: str, reason: str) -> dict[str, Any]:
    """Mark `row` dropped by filter `by` (one of manifest.FILTERS) with a one-sentence reason."""
    row.update(keep=False, dropped_by=by, drop_reason=reason)
    return row


def probe_row(path: str, caption: str | None, error: ProbeError) -> dict[str, Any]:
    """The one row of an unusable file: `probe` drop, reason code then the sentence."""
    return drop(new_row(path, caption), "probe", f"{error.reason}: {error}")


def _undecodable(row: dict[str, Any], exc: Exception) -> dict[str, Any]:
    """A clip whose frames failed to decode after its file probed fine (a damaged middle)."""
    return drop(row, "probe", f"undecodable: {exc}")


# ----------------------------------------------------------------------------- probe + shots


def clip_spans(cuts: list[int], frames: int, fps: float, cfg: CurateConfig) -> list[tuple[int, int, bool]]:
    """(start, end, long enough) for every piece of every shot, in frame order.

    `split_shots` gives the kept clips; what it leaves of a shot (after `trim_frames`) is a
    piece shorter than `shots.min_duration_s`, listed so the manifest shows the `duration` drop.
    """
    shots = shots_from_cuts(cuts, frames)
    kept = split_shots(shots, fps, cfg.shots)
    spans = [(a, b, True) for a, b in kept]
    trim = cfg.shots.trim_frames
    for a, b in shots:
        inside = [end for start, end in kept if a + trim <= start and end <= b - trim]
        lo, hi = (max(inside) if inside else a + trim), b - trim
        if hi > lo:
            spans.append((lo, hi, False))
    return sorted(spans)


def probe_and_split(item: dict[str, Any], cfg: CurateConfig) -> list[dict[str, Any]]:
    """One source file {path, caption} -> its candidate clip rows (one `probe` row if it is unusable)."""
    path, caption = str(item["path"]), item.get("caption") or None
    try:
        info = probe(path, cfg.probe)
    except ProbeError as exc:
        return [probe_row(path, caption, exc)]
    try:
        cuts, decoded = find_cuts_file(path, cfg.shots)
    except ClipError as exc:
        return [drop(new_row(path, caption), "probe", f"undecodable: {exc}")]
    total = decoded or info.frames
    rows = []
    for start, end, long_enough in clip_spans(cuts, total, info.fps, cfg):
        row = new_row(path, caption)
        row.update(clip_id=f"{row['source_id']}:f{start}-{end}", start_frame=start, end_frame=end,
                   fps=info.fps, width=info.width, height=info.height, duration_s=(end - start) / info.fps)
        if not long_enough:
            drop(row, "duration", f"The shot piece is {row['duration_s']:.2f} s, shorter than "
                                  f"shots.min_duration_s = {cfg.shots.min_duration_s} s.")
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------- bars + motion


def measure_clip(row: dict[str, Any], cfg: CurateConfig) -> dict[str, Any]:
    """Bars (crop box, drop rule), then motion inside the box (static rule); a dropped row passes through."""
    if not row["keep"]:
        return row
    path, start, end = row["source"], int(row["start_frame"]), int(row["end_frame"])
    try:
        box = detect_bars_file(path, cfg.bars, start=start, end=end, frames=end)
    except (ClipError, OSError) as exc:
        return _undecodable(row, exc)
    row.update(crop_x0=box.x0, crop_y0=box.y0, crop_x1=box.x1, crop_y1=box.y1)
    area = box.width * box.height / (box.frame_width * box.frame_height)
    if box.all_black and cfg.bars.drop_all_black:
        return drop(row, "bars", "Every sampled frame is black.")
    if area < cfg.bars.min_area_fraction:
        return drop(row, "bars", f"The crop inside the black bars keeps {area:.0%} of the frame, "
                                 f"less than bars.min_area_fraction = {cfg.bars.min_area_fraction}.")
    try:
        scores = motion_scores_file(path, cfg.motion, start=start, end=end, crop=box, fps=float(row["fps"]))
    except (ClipError, OSError) as exc:
        return _undecodable(row, exc)
    row.update(motion_flow=scores.flow, motion_diff=scores.diff)
    if cfg.motion.drop_static and is_static(scores, cfg.motion):
        return drop(row, "motion", f"Static: flow {scores.flow:.3f} px/s (motion.static_flow = "
                                   f"{cfg.motion.static_flow}), frame difference {scores.diff:.2f} "
                                   f"(motion.static_diff = {cfg.motion.static_diff}).")
    return row


# ----------------------------------------------------------------------------- model stages


def _torch_threads(cpus: float) -> None:
    import torch

    torch.set_num_threads(max(1, int(cpus)))  # an actor sharing cores must not spawn one thread per core


def _width_for_short_side(box: CropBox, short_side: int) -> int:
    """Crop width that gives the crop a shorter side of `short_side` pixels."""
    return int(math.ceil(short_side * box.width / max(1, min(box.width, box.height))))


class ScoreAesthetic:
    """Ray Data callable class: the scorer loads once per actor; each call scores a batch's kept clips.

    A clip's score is the mean of the scorer over `aesthetic.frames` frames spread over the
    clip, inside its crop box (`models.aesthetic.prepare` / `score_items`).
    """

    def __init__(self, cfg: CurateConfig):
        from models.aesthetic import load_scorer

        _torch_threads(cfg.aesthetic.actor_cpus)
        self.cfg = cfg
        self.scorer = load_scorer(cfg.aesthetic.scorer, device=cfg.aesthetic.device)

    def _frames(self, row: dict[str, Any]):
        from models.aesthetic import prepare, sample_indices

        k, size, box = self.cfg.aesthetic.frames, self.scorer.image_size, box_of_row(row)
        start, end = int(row["start_frame"]), int(row["end_frame"])
        indices = [start + i for i in sample_indices(end - start, k)]
        frames = read_cropped(row["source"], box, indices=indices, width=_width_for_short_side(box, size))
        return prepare(frames, size, k)  # uint8 (k', 3, S, S)

    def __call__(self, batch):
        """pandas batch of rows -> the same rows, `aesthetic` filled (and the threshold applied) where kept."""
        import torch

        from models.aesthetic import score_items

        rows = batch.to_dict("records")
        todo, items = [], []
        for i, row in enumerate(rows):
            if not row["keep"]:
                continue
            try:
                items.append(self._frames(row))
                todo.append(i)
            except (ClipError, OSError) as exc:
                _undecodable(row, exc)
        if items:
            k, size = self.cfg.aesthetic.frames, self.scorer.image_size
            frames = torch.zeros(len(items), k, 3, size, size, dtype=torch.uint8)  # (N, F, 3, S, S)
            mask = torch.zeros(len(items), k, dtype=torch.bool)  # (N, F) real frames
            for n, item in enumerate(items):
                frames[n, :len(item)], mask[n, :len(item)] = item, True
            scores = score_items(self.scorer, frames, mask, batch_size=self.cfg.aesthetic.batch_size)
            threshold = self.cfg.aesthetic.threshold
            for i, score in zip(todo, scores.tolist()):
                rows[i]["aesthetic"] = float(score)
                if threshold is not None and score < threshold:
                    drop(rows[i], "aesthetic", f"Aesthetic score {score:.3f} is below aesthetic.threshold = {threshold}.")
        return _frame_like(rows, batch)


class CaptionClips:
    """Ray Data callable class: the captioner loads once per actor; each call captions a batch's kept clips.

    The caption is of the clip's middle frame inside its crop box (`Captioner.caption_clip`).
    With `captions.prefer_source`, a clip that came with a caption keeps it.
    """

    def __init__(self, cfg: CurateConfig):
        from models.captioner import CaptionerConfig

        _torch_threads(cfg.captions.actor_cpus)
        self.cfg = cfg
        c = cfg.captions
        self.captioner = CaptionerConfig(kind=f"hf:{c.path}", max_new_tokens=c.max_new_tokens, prompt=c.prompt,
                                         batch_size=c.batch_size).build()
        if c.device == "cuda":
            self.captioner.model.to("cuda")

    def __call__(self, batch):
        rows = batch.to_dict("records")
        todo, clips = [], []
        for row in rows:
            if not row["keep"] or (self.cfg.captions.prefer_source and has_caption(row)):
                continue
            middle = (int(row["start_frame"]) + int(row["end_frame"])) // 2
            try:
                clips.append(read_cropped(row["source"], box_of_row(row), indices=[middle], width=CAPTION_WIDTH))
                todo.append(row)
            except (ClipError, OSError) as exc:
                _undecodable(row, exc)
        captions = self.captioner.caption_clip(clips) if clips else []
        for row, text in zip(todo, captions):
            text = text.strip()
            row.update(caption=text or None, caption_source=f"captioner:{self.captioner.name}")
            if not text:
                drop(row, "caption", f"The captioner {self.captioner.name} returned an empty caption.")
        return _frame_like(rows, batch)


def _frame_like(rows: list[dict[str, Any]], batch):
    """Rows back into a pandas batch with the input's columns."""
    import pandas as pd

    return pd.DataFrame(rows, columns=list(batch.columns))


# ----------------------------------------------------------------------------- captions, re-encode


def caption_rule(row: dict[str, Any], cfg: CurateConfig) -> dict[str, Any]:
    """Mode 'require': a kept clip without a source caption is dropped by `caption`."""
    if row["keep"] and cfg.captions.mode == "require" and not has_caption(row):
        return drop(row, "caption", "No caption in captions.jsonl or the input manifest, and captions.mode is 'require'.")
    return row


def reencode_clip(row: dict[str, Any], cfg: CurateConfig, dataset: str) -> dict[str, Any]:
    """Write a kept clip, cropped and resized, as DATASET/clips/<clip_id>.mp4 (H.264) and set `clip_path`."""
    from clips.io import write_video

    if not row["keep"]:
        return row
    box = box_of_row(row)
    short = cfg.output.short_side
    width = None if short is None else _width_for_short_side(box, short)
    try:
        frames = read_cropped(row["source"], box, start=int(row["start_frame"]), end=int(row["end_frame"]), width=width)
    except (ClipError, OSError) as exc:
        return _undecodable(row, exc)
    relative = f"{CLIPS_DIR}/{row['clip_id']}.mp4"
    write_video(os.path.join(dataset, relative), frames, float(row["fps"]), crf=cfg.output.crf)
    row["clip_path"] = relative
    return row
