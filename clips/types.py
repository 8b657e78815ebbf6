"""The `Clip` record every video source returns (bundled corpus, synthetic scenes, user folder,
curated manifest)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from clips.ids import source_of_clip_id, source_of_video

Source = Literal["bundled", "synthetic", "folder", "manifest"]
Split = Literal["train", "heldout"]
SPLITS: tuple[str, ...] = ("train", "heldout")


@dataclass(kw_only=True)
class Clip:
    """One training or evaluation clip.

    `frames` is uint8 `(T, H, W, 3)` RGB; use `clips.io.to_model` for the `(3, T, H, W)`
    [-1, 1] tensor the models take. Not frozen only because numpy arrays are unhashable
    anyway; treat it as read-only (cached corpus frames are marked non-writeable).
    """

    clip_id: str  # stable across runs and processes, e.g. "bikes:heldout:t190-206:y0x41:64x64:s64"
    frames: np.ndarray  # uint8 (T, H, W, 3) RGB
    fps: float  # native frame rate; RoPE positions are in seconds, so it travels with the clip
    caption: str | None  # text prompt; None where the source has none
    source: Source  # "bundled" | "synthetic" | "folder" | "manifest"
    split: Split  # "train" (first 75% of a video's frames) | "heldout" (last 25%)
    meta: dict[str, Any] = field(default_factory=dict)  # crop box, frame window, scene attributes

    @property
    def source_id(self) -> str:
        """The independent content this clip comes from, the unit the effect statistics resample.

        Bundled: the video name (both carphone files are "carphone"); folder: the mp4's
        stem; synthetic: the scene itself (every scene is drawn independently); manifest:
        the manifest's `source_id` column (kept in `meta["source_id"]`).
        """
        if self.source == "manifest":
            return str(self.meta["source_id"])
        if self.source == "synthetic":
            return self.clip_id
        video = self.meta.get("video")
        return source_of_video(str(video)) if video else source_of_clip_id(self.clip_id)

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def duration_s(self) -> float:
        return self.num_frames / self.fps
