"""Video helpers for the Compare page: PyAV decoding, per-frame PSNR, a synchronised HTML player.

No torch: frames are decoded with PyAV into numpy and compared with numpy.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import av
import numpy as np

MAX_INLINE_BYTES = 8 * 2**20  # larger files are not inlined as base64 (the page would get heavy)


def decode_frames(path: str | Path, max_frames: int | None = None) -> tuple[np.ndarray, float]:
    """Decode an mp4 into RGB frames.

    Returns:
        uint8 `(T, H, W, 3)` frames and the stream's average frame rate.
    """
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.base_rate or 24)
        frames = []
        for frame in container.decode(stream):
            frames.append(frame.to_ndarray(format="rgb24"))
            if max_frames is not None and len(frames) >= max_frames:
                break
    if not frames:
        raise ValueError(f"{path} has no video frames.")
    return np.stack(frames), fps


def per_frame_psnr(frames: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """PSNR in dB of each frame against the reference frame at the same index (uint8 peak 255).

    Args:
        frames, reference: uint8 `(T, H, W, 3)`; compared over the shorter length; sizes must match.

    Returns:
        float64 `(T,)`; identical frames give inf.
    """
    if frames.shape[1:] != reference.shape[1:]:
        raise ValueError(f"frame size {frames.shape[1:3]} differs from the reference's {reference.shape[1:3]}.")
    n = min(len(frames), len(reference))
    diff = frames[:n].astype(np.float64) - reference[:n].astype(np.float64)
    mse = (diff**2).reshape(n, -1).mean(axis=1)  # (T,) mean over H*W*3
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(255.0**2 / mse)


def synced_player_html(videos: list[tuple[str, str | Path]], height: int = 220) -> str:
    """HTML for side-by-side <video> elements that play, pause and seek together.

    Args:
        videos: (caption, mp4 path) pairs; the files are inlined as base64 data URLs.

    The first video is the clock: the others follow its play/pause/seek events and are
    nudged back when they drift by more than half a frame's worth (40 ms).
    """
    cells = []
    for i, (caption, path) in enumerate(videos):
        data = Path(path).read_bytes()
        if len(data) > MAX_INLINE_BYTES:
            cells.append(f'<div class="cell"><div class="cap">{html.escape(caption)}</div><p>file too large to inline ({len(data) >> 20} MiB)</p></div>')
            continue
        src = "data:video/mp4;base64," + base64.b64encode(data).decode()
        cells.append(
            f'<div class="cell"><div class="cap">{html.escape(caption)}</div>'
            f'<video id="v{i}" src="{src}" muted playsinline loop preload="auto" style="height:{height}px"></video></div>'
        )
    n = len(videos)
    script = """
const vids = Array.from(document.querySelectorAll('video'));
const clock = vids[0];
const others = vids.slice(1);
const btn = document.getElementById('play');
const seek = document.getElementById('seek');
function syncAll() { others.forEach(v => { if (Math.abs(v.currentTime - clock.currentTime) > 0.04) v.currentTime = clock.currentTime; }); }
btn.onclick = () => { if (clock.paused) { syncAll(); vids.forEach(v => v.play()); btn.textContent = 'Pause'; }
                      else { vids.forEach(v => v.pause()); syncAll(); btn.textContent = 'Play'; } };
clock.addEventListener('timeupdate', () => { if (clock.duration) seek.value = 1000 * clock.currentTime / clock.duration; if (!clock.paused) syncAll(); });
seek.oninput = () => { const t = (seek.value / 1000) * (clock.duration || 0); vids.forEach(v => v.currentTime = t); };
document.getElementById('step').onclick = () => { vids.forEach(v => { v.pause(); v.currentTime = Math.min(v.duration || 0, clock.currentTime + FRAME); }); btn.textContent = 'Play'; };
"""
    fps_hint = json.dumps(1.0 / 24.0)
    return f"""
<style>
 body {{ margin: 0; }}
 .row {{ display: flex; gap: 8px; font-family: sans-serif; }}
 .cell {{ flex: 1 1 0; min-width: 0; display: flex; flex-direction: column; align-items: center; }}
 .cap {{ font-size: 13px; margin-bottom: 4px; max-width: 100%; white-space: normal; overflow-wrap: anywhere; }}  /* wrapped, never cut */
 video {{ background: #111; image-rendering: pixelated; max-width: 100%; }}
 .ctl {{ margin-top: 8px; display: flex; gap: 8px; align-items: center; font-family: sans-serif; }}
</style>
<div class="row">{''.join(cells)}</div>
<div class="ctl"><button id="play">Play</button><button id="step">Next frame</button>
<input id="seek" type="range" min="0" max="1000" value="0" style="width: 60%"> <span>{n} videos, synchronised</span></div>
<script>const FRAME = {fps_hint};{script}</script>
"""
