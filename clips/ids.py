"""Clip ids and the independent source video each one comes from (stdlib only).

Clips cut from one video share its content, so they are not independent replicates: the
effect statistics resample sources, not clips. `source_of_clip_id` recovers the source
from an id alone, which lets the results store back-fill `source_id` for stores written
before it was a column. It imports nothing heavier than `re`, because the store (and so
the dashboard) imports it.
"""

from __future__ import annotations

import re

# ids made by clips.sampling.make_clip_id: `name:split:tA-B:yYxX:HxW[:sN]`; the name is a
# bundled video name or a folder mp4's stem (which may itself contain ':')
_WINDOW_ID = re.compile(r"^(?P<name>.+?):(?:train|heldout):t\d+-\d+:y\d+x\d+:\d+x\d+(?::s\d+)?$")
# ids made by clips.synthetic.make_scene: every scene is its own source
_SCENE_ID = re.compile(r"^synthetic:(?:train|heldout):s\d+:\d+x\d+x\d+$")
# files that are one content under two names: carphone_distorted is carphone_pristine compressed
SOURCE_ALIASES: dict[str, str] = {"carphone_pristine": "carphone", "carphone_distorted": "carphone"}


def source_of_video(name: str) -> str:
    """The source id of a bundled video name or folder mp4 stem (aliases folded together)."""
    return SOURCE_ALIASES.get(name, name)


def source_of_clip_id(clip_id: str) -> str:
    """The independent content a clip id comes from.

    `bikes:heldout:t190-206:y0x41:64x64:s64` -> `bikes`; `carphone_pristine:...` ->
    `carphone`; a folder clip -> its mp4's stem; a synthetic scene id, a prompt id or any
    other id -> the id itself (each is independent). Ids that only look like
    `name:split:...` (the synthetic results-store generator's `bikes:heldout:3`) also give
    `name`.
    """
    clip_id = str(clip_id)
    if _SCENE_ID.match(clip_id):
        return clip_id
    match = _WINDOW_ID.match(clip_id)
    if match:
        return source_of_video(match["name"])
    parts = clip_id.split(":")
    if len(parts) >= 3 and parts[1] in ("train", "heldout") and parts[0] and parts[0] != "synthetic":
        return source_of_video(parts[0])
    return clip_id
