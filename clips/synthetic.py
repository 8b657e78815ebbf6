"""Synthetic captioned scenes and the oracle that reads their attributes back from pixels.

A scene is one coloured shape (square / circle / triangle) gliding in a straight line
(left / right / up / down) over a crop of a real photo from scikit-image's bundled data.
The caption comes from a tiny grammar ("a red square moves left over a photo of coffee"),
so a text-to-video model trained on these can be scored for text alignment at CPU scale:
`oracle(frames)` recovers colour, shape and direction from the pixels of a generated video
and is compared with the prompt's attributes.

Only photos whose files ship inside the installed scikit-image are used (many
`skimage.data` images are pooch downloads, and nothing may be downloaded at run time); they
are read straight from the package folder.

Each scene's colour, shape, direction, photo crop and path are drawn from its own seed, so
every scene is its own independent source (`Clip.source_id` is its clip id), though the
handful of photos recur as backgrounds.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from clips.errors import ClipError
from clips.types import Clip, Split

COLORS: tuple[str, ...] = ("red", "green", "blue", "yellow", "purple", "cyan")
SHAPES: tuple[str, ...] = ("square", "circle", "triangle")
DIRECTIONS: tuple[str, ...] = ("left", "right", "up", "down")

# Saturated and far apart in RGB (min pairwise distance ~170), so a blurred, noisy or
# slightly off-colour generation still lands nearest its intended colour.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (225, 30, 30),
    "green": (30, 190, 40),
    "blue": (30, 60, 235),
    "yellow": (245, 225, 30),
    "purple": (150, 30, 200),
    "cyan": (30, 215, 225),
}

# file in skimage/data -> how the caption names it ("... over a photo of <phrase>").
# Chosen among the bundled files for natural content; retina/ihc (dominantly red or
# purple), logos, text pages and binary masks are left out.
PHOTOS: dict[str, str] = {
    "astronaut.png": "an astronaut",
    "chelsea.png": "a cat",
    "coffee.png": "coffee",
    "rocket.jpg": "a rocket",
    "motorcycle_left.png": "a motorcycle",
    "hubble_deep_field.jpg": "galaxies",
    "camera.png": "a cameraman",
    "brick.png": "a brick wall",
    "grass.png": "grass",
    "gravel.png": "gravel",
    "moon.png": "the moon",
    "coins.png": "coins",
}

# Shape side as a fraction of the frame's shorter side. Kept small enough that the shape
# covers any pixel on its path for fewer than half the frames: then the temporal median is
# the clean photo, which the oracle uses as background.
_SIZE_RANGE = (0.2, 0.26)
_MARGIN = 0.04  # gap between the shape and the frame edge at both ends of its path


def caption_for(color: str, shape: str, direction: str, photo: str) -> str:
    """The grammar: 'a <color> <shape> moves <direction> over a photo of <photo phrase>'."""
    return f"a {color} {shape} moves {direction} over a photo of {PHOTOS[photo]}"


def _skimage_data_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise ClipError("Synthetic scenes need scikit-image; install it with `pip install scikit-image`.")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


@lru_cache(maxsize=1)
def available_photos() -> tuple[str, ...]:
    """The PHOTOS whose files are bundled in the installed scikit-image (no download needed)."""
    folder = _skimage_data_dir()
    found = tuple(name for name in PHOTOS if (folder / name).is_file())
    if not found:
        raise ClipError(
            f"No bundled scikit-image photos found in {folder}; reinstall scikit-image."
        )
    return found


@lru_cache(maxsize=len(PHOTOS))
def load_photo(name: str) -> np.ndarray:
    """A bundled photo as read-only float32 `(H, W, 3)` in [0, 255]."""
    from skimage.io import imread

    image = np.asarray(imread(_skimage_data_dir() / name), dtype=np.float32)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)  # (H, W) grey -> (H, W, 3)
    image = image[..., :3]
    if image.max() <= 1.0:  # some readers return [0, 1] floats
        image = image * 255.0
    image.flags.writeable = False
    return image


def _photo_background(name: str, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A random crop of the photo with the target aspect, resized to float `(height, width, 3)`."""
    from skimage.transform import resize

    photo = load_photo(name)
    ph, pw = photo.shape[:2]
    zoom = rng.uniform(0.6, 1.0)  # crop covers 60-100% of the largest box of this aspect
    crop_h = min(ph, pw * height / width) * zoom
    crop_w = crop_h * width / height
    y = int(rng.integers(0, int(ph - crop_h) + 1))
    x = int(rng.integers(0, int(pw - crop_w) + 1))
    crop = photo[y:y + int(crop_h), x:x + int(crop_w)]
    # Box-average by the integer part of the shrink factor first: anti-aliased resizing of
    # a 512 px crop straight to 32 px costs a large Gaussian filter per scene.
    factor = int(min(crop.shape[0] / height, crop.shape[1] / width))
    if factor >= 2:
        h, w = crop.shape[0] // factor, crop.shape[1] // factor
        crop = crop[:h * factor, :w * factor].reshape(h, factor, w, factor, 3).mean(axis=(1, 3))
    return resize(crop, (height, width), order=1, anti_aliasing=False, preserve_range=True)


def _coverage(shape: str, top: float, left: float, size: float, height: int, width: int) -> np.ndarray:
    """Anti-aliased coverage in [0, 1], `(height, width)`, of a shape in the box (top, left, size).

    Signed distance to the boundary (positive inside) clipped to one pixel gives sub-pixel
    positions, so motion is smooth rather than jumping whole pixels.
    """
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32) + 0.5  # pixel centres
    cy, cx, half = top + size / 2, left + size / 2, size / 2
    if shape == "circle":
        inside = half - np.hypot(ys - cy, xs - cx)
    elif shape == "square":
        inside = half - np.maximum(np.abs(ys - cy), np.abs(xs - cx))
    elif shape == "triangle":  # isosceles, apex up, base at the bottom of the box
        bottom = top + size - ys
        # the two slanted edges: points (cx, top) -> (left, top+size) and -> (left+size, top+size)
        slope_norm = np.hypot(size, half)
        left_edge = (size * (xs - left) - half * (top + size - ys)) / slope_norm
        right_edge = (size * (left + size - xs) - half * (top + size - ys)) / slope_norm
        inside = np.minimum(bottom, np.minimum(left_edge, right_edge))
    else:
        raise ClipError(f"Unknown shape {shape!r}; choose one of {', '.join(SHAPES)}.")
    return np.clip(inside + 0.5, 0.0, 1.0)


def make_scene(
    seed: int,
    frames: int = 17,
    height: int = 64,
    width: int = 64,
    *,
    fps: float = 24.0,
    split: Split = "train",
) -> Clip:
    """One synthetic scene, fully determined by `seed` (same seed -> same pixels and caption).

    Returns a Clip with uint8 `(frames, height, width, 3)` frames and
    `meta = {"color", "shape", "direction", "photo", "seed", "size", "path"}`.
    """
    if seed < 0:
        raise ClipError(f"Scene seed must be non-negative, got {seed}.")
    if frames < 1 or height < 8 or width < 8:
        raise ClipError(f"Scenes need frames >= 1 and sides >= 8 pixels, got {frames}x{height}x{width}.")
    rng = np.random.default_rng(seed)
    photos = available_photos()
    color = COLORS[rng.integers(len(COLORS))]
    shape = SHAPES[rng.integers(len(SHAPES))]
    direction = DIRECTIONS[rng.integers(len(DIRECTIONS))]
    photo = photos[rng.integers(len(photos))]
    background = _photo_background(photo, height, width, rng)  # (H, W, 3) float
    size = rng.uniform(*_SIZE_RANGE) * min(height, width)
    margin = _MARGIN * min(height, width)
    along_len, across_len = (width, height) if direction in ("left", "right") else (height, width)
    start, end = margin, along_len - size - margin
    if direction in ("left", "up"):  # image rows grow downwards, so "up" is decreasing y
        start, end = end, start
    across = rng.uniform(margin, across_len - size - margin)
    along = np.linspace(start, end, frames)
    color_rgb = np.asarray(PALETTE[color], np.float32)
    video = np.empty((frames, height, width, 3), np.uint8)
    path = []
    for t, position in enumerate(along):
        top, left = (across, position) if direction in ("left", "right") else (position, across)
        alpha = _coverage(shape, top, left, size, height, width)[..., None]  # (H, W, 1)
        video[t] = np.round(background * (1 - alpha) + color_rgb * alpha).clip(0, 255).astype(np.uint8)
        path.append((round(float(top), 3), round(float(left), 3)))
    return Clip(
        clip_id=f"synthetic:{split}:s{seed}:{frames}x{height}x{width}",
        frames=video,
        fps=float(fps),
        caption=caption_for(color, shape, direction, photo),
        source="synthetic",
        split=split,
        meta={"color": color, "shape": shape, "direction": direction, "photo": photo,
              "seed": seed, "size": round(float(size), 3), "path": path},
    )


# ---------------------------------------------------------------------------- the oracle

_DIFF_FLOOR = 35.0  # RGB distance from the background below which a pixel is background
_DIFF_FRACTION = 0.4  # ... and below this fraction of the strongest change in the video
_MIN_PIXELS = 6  # smaller components are noise, not a shape
# (fill ratio, top-corner fill, bottom-corner fill) of the ideal shapes in their bounding
# box; the triangle's fill sits above its ideal 0.5 because edge pixels of small blobs count.
_SHAPE_PROTOTYPES = {"square": (1.0, 1.0, 1.0), "circle": (np.pi / 4, 0.3, 0.3),
                     "triangle": (0.55, 0.0, 0.8)}


def _empty_reading(reason: str) -> dict:
    return {"color": None, "shape": None, "direction": None, "color_confidence": 0.0,
            "shape_confidence": 0.0, "direction_confidence": 0.0, "confidence": 0.0,
            "frames_used": 0, "reason": reason}


def _foreground(video: np.ndarray) -> np.ndarray:
    """bool `(T, H, W)`: the largest moving blob per frame, against the temporal median."""
    from scipy import ndimage  # lazy: 0.5 s of imports that configs and the CLI never need

    background = np.median(video, axis=0)  # (H, W, 3): the shape is elsewhere most of the time
    diff = np.linalg.norm(video - background, axis=-1)  # (T, H, W)
    diff = ndimage.uniform_filter(diff, size=(1, 3, 3))  # averages out per-pixel noise
    threshold = max(_DIFF_FLOOR, _DIFF_FRACTION * float(np.percentile(diff, 99.5)))
    masks = diff > threshold
    for t in range(len(masks)):
        labels, count = ndimage.label(masks[t])
        if count == 0:
            continue
        sizes = ndimage.sum_labels(masks[t], labels, index=np.arange(1, count + 1))
        best = int(np.argmax(sizes)) + 1
        masks[t] = (labels == best) if sizes[best - 1] >= _MIN_PIXELS else False
    return masks


def _read_color(video: np.ndarray, masks: np.ndarray) -> tuple[str, float]:
    from scipy import ndimage

    # the interior only: edge pixels are mixed with the photo (anti-aliasing, blur)
    interior = ndimage.binary_erosion(masks, structure=np.ones((1, 3, 3), bool))
    pixels = video[interior] if interior.sum() >= _MIN_PIXELS else video[masks]
    rgb = np.median(pixels, axis=0)
    names = list(PALETTE)
    dist = np.array([np.linalg.norm(rgb - np.asarray(PALETTE[n])) for n in names])
    order = np.argsort(dist)
    confidence = 1.0 - dist[order[0]] / max(dist[order[1]], 1e-6)
    return names[order[0]], float(confidence)


def _shape_features(mask: np.ndarray) -> tuple[float, float, float] | None:
    """(fill ratio, top-corner fill, bottom-corner fill) of one frame's blob in its bbox.

    Corner patches (a quarter of the box per side) tell the shapes apart even when the
    bbox is a pixel too large, which moves the plain fill ratio of small blobs a lot:
    a square fills all four, a circle about a third, an apex-up triangle only the bottom two.
    """
    rows, cols = np.nonzero(mask)
    if rows.size < _MIN_PIXELS:
        return None
    if rows.min() == 0 or cols.min() == 0 or rows.max() == mask.shape[0] - 1 or cols.max() == mask.shape[1] - 1:
        return None  # clipped by the frame edge: the bbox is not the shape's
    box = mask[rows.min():rows.max() + 1, cols.min():cols.max() + 1].astype(np.float64)  # (h, w)
    qh, qw = max(1, round(box.shape[0] / 4)), max(1, round(box.shape[1] / 4))
    top = (box[:qh, :qw].mean() + box[:qh, -qw:].mean()) / 2
    bottom = (box[-qh:, :qw].mean() + box[-qh:, -qw:].mean()) / 2
    return float(box.mean()), float(top), float(bottom)


def _read_shape(masks: np.ndarray) -> tuple[str | None, float]:
    features = [f for f in (_shape_features(m) for m in masks) if f is not None]
    if not features:
        return None, 0.0
    measured = np.median(np.asarray(features), axis=0)  # median over frames: robust to a bad one
    names = list(_SHAPE_PROTOTYPES)
    dist = np.array([np.linalg.norm(measured - np.asarray(p)) for p in _SHAPE_PROTOTYPES.values()])
    order = np.argsort(dist)
    confidence = 1.0 - dist[order[0]] / max(dist[order[1]], 1e-6)
    return names[order[0]], float(confidence)


def _read_direction(masks: np.ndarray) -> tuple[str | None, float]:
    from scipy import ndimage

    times, centroids = [], []
    for t, mask in enumerate(masks):
        if mask.any():
            times.append(t)
            centroids.append(ndimage.center_of_mass(mask))  # (y, x)
    if len(times) < 2:
        return None, 0.0
    centroids = np.asarray(centroids)
    span = times[-1] - times[0]
    dy = np.polyfit(times, centroids[:, 0], 1)[0] * span  # least squares: robust to one bad frame
    dx = np.polyfit(times, centroids[:, 1], 1)[0] * span
    if abs(dx) >= abs(dy):
        name, major, frame_len = ("right" if dx > 0 else "left"), abs(dx), masks.shape[2]
    else:
        name, major, frame_len = ("down" if dy > 0 else "up"), abs(dy), masks.shape[1]
    straightness = major / max(abs(dx) + abs(dy), 1e-6)  # 1 = purely along one axis
    extent = min(1.0, major / (0.2 * frame_len))  # a shape that barely moves is a weak reading
    return name, float(straightness * extent)


def oracle(frames: np.ndarray) -> dict:
    """Read colour, shape and direction of the moving shape from pixels alone.

    Args:
        frames: `(T, H, W, 3)` RGB, uint8 or float in [0, 1] (e.g. a generated sample).
    Returns:
        {"color", "shape", "direction"}: names from COLORS / SHAPES / DIRECTIONS, or None
        when unreadable (no moving blob; a single frame has no direction); per-attribute
        confidences in [0, 1], "confidence" (their minimum), "frames_used" (frames with a
        blob) and "reason" (why something is None, else "").
    """
    video = np.asarray(frames)
    if video.ndim != 4 or video.shape[-1] != 3 or video.shape[0] == 0:
        return _empty_reading(f"expected (T, H, W, 3) frames, got shape {video.shape}")
    video = video.astype(np.float32)
    if np.issubdtype(np.asarray(frames).dtype, np.floating):
        video = np.clip(video, 0.0, 1.0) * 255.0
    if video.shape[0] < 2:
        return _empty_reading("one frame: no motion to separate the shape from the photo")
    masks = _foreground(video)
    if not masks.any():
        return _empty_reading("no moving region found")
    color, color_conf = _read_color(video, masks)
    shape, shape_conf = _read_shape(masks)
    direction, direction_conf = _read_direction(masks)
    missing = [k for k, v in (("shape", shape), ("direction", direction)) if v is None]
    return {"color": color, "shape": shape, "direction": direction,
            "color_confidence": color_conf, "shape_confidence": shape_conf,
            "direction_confidence": direction_conf,
            "confidence": min(color_conf, shape_conf, direction_conf),
            "frames_used": int(masks.any(axis=(1, 2)).sum()),
            "reason": f"unreadable: {', '.join(missing)}" if missing else ""}
