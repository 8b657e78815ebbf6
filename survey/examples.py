"""Tiny example inputs for trying the survey without a sweep (and for its tests and benchmark).

`write_example_dir` lays out `DIR/<system>/<prompt_id>.mp4` + `DIR/prompts.jsonl`;
`write_example_sweep` writes the results-store layout of docs/results-store.md with `done` runs.
Clips are tiny (default 9 frames, 64x64, 24 fps): a moving square over a gradient.
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np

from survey.media import write_video


def example_frames(seed: int, frames: int = 9, size: int = 64) -> np.ndarray:
    """(T, H, W, 3) uint8: a coloured square moving over a gradient; `seed` picks colour/path."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    base = np.stack([xx * 255 // size, yy * 255 // size, np.full_like(xx, 96)], axis=-1).astype(np.uint8)
    colour = rng.integers(0, 256, size=3, dtype=np.uint8)
    side = size // 4
    out = np.repeat(base[None], frames, axis=0)  # (T, H, W, 3)
    dx, dy = rng.integers(-3, 4, size=2)
    x0, y0 = rng.integers(side, size - 2 * side, size=2)
    for k in range(frames):
        x = int(np.clip(x0 + dx * k, 0, size - side))
        y = int(np.clip(y0 + dy * k, 0, size - side))
        out[k, y : y + side, x : x + side] = colour
    return out


def _write_png(frame: np.ndarray, path: Path) -> None:
    from PIL import Image

    Image.fromarray(frame).save(path)


def write_example_dir(folder: str | Path, systems: list[str], n_prompts: int = 3, i2v_prompts: int = 0,
                      frames: int = 9, size: int = 64) -> Path:
    """Write a from-dir study source; the last `i2v_prompts` prompts are image-to-video."""
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    lines = []
    for p in range(n_prompts):
        pid = f"p{p:03d}"
        row = {"id": pid, "text": f"a square moves across a gradient, prompt {p}"}
        if p >= n_prompts - i2v_prompts:
            row["image"] = f"{pid}.png"
            _write_png(example_frames(1000 + p, 1, size)[0], root / row["image"])
        lines.append(json.dumps(row))
        for s, system in enumerate(systems):
            (root / system).mkdir(exist_ok=True)
            write_video(example_frames(100 * p + s, frames, size), root / system / f"{pid}.mp4", Fraction(24))
    (root / "prompts.jsonl").write_text("\n".join(lines) + "\n")
    return root


def write_example_sweep(results: str | Path, sweep: str, variants: list[str], n_prompts: int = 2,
                        failed: list[str] = (), frames: int = 9, size: int = 64, seeds: tuple[int, ...] = (0,)) -> Path:
    """Write `RESULTS/<sweep>/runs.parquet` and each run's samples (t2v and i2v per prompt), one run per seed.

    Run ids are content-hash-like, as in a real store, so their order says nothing about the seed.
    """
    import hashlib

    import pandas as pd

    root = Path(results) / sweep
    rows = []
    for seed in seeds:
        for v, variant in enumerate(list(variants) + list(failed)):
            run_id = hashlib.sha256(f"{sweep}/{variant}/{seed}".encode()).hexdigest()[:10]
            status = "failed" if variant in failed else "done"
            rows.append({"run_id": run_id, "variant": variant, "seed": seed, "block": seed, "status": status,
                         "failure_reason": "boom" if status == "failed" else None})
            samples = root / "runs" / run_id / "samples"
            samples.mkdir(parents=True, exist_ok=True)
            index = []
            for p in range(n_prompts):
                pid = f"p{p:03d}"
                look = 10 * p + v + 1000 * seed  # each seed's model draws differently
                write_video(example_frames(look, frames, size), samples / f"t2v-{pid}.mp4", Fraction(24))
                index.append({"file": f"t2v-{pid}.mp4", "task": "t2v", "prompt_id": pid, "text": f"prompt {p}",
                              "image": None, "clip_id": None, "fps": 24.0})
                _write_png(example_frames(500 + p, 1, size)[0], samples / f"i2v-{pid}.png")
                write_video(example_frames(look + 5, frames, size), samples / f"i2v-{pid}.mp4", Fraction(24))
                index.append({"file": f"i2v-{pid}.mp4", "task": "i2v", "prompt_id": pid, "text": f"image prompt {p}",
                              "image": f"i2v-{pid}.png", "clip_id": None, "fps": 24.0})
                index.append({"file": f"recon-{pid}.mp4", "task": "recon", "prompt_id": pid, "text": "",
                              "image": None, "clip_id": f"bikes:heldout:{p}", "fps": 24.0})
            (samples / "index.jsonl").write_text("\n".join(json.dumps(r) for r in index) + "\n")
    pd.DataFrame(rows).to_parquet(root / "runs.parquet", index=False)
    return root


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(db: str | Path, admin_token: str = "admin-token", port: int | None = None,
                 synchronous: str = "NORMAL", timeout_s: float = 30.0, workers: int = 1):  # noqa: ANN201 - (Popen, str)
    """Run `ltxlab survey serve` as a real uvicorn subprocess on loopback; returns (process, base URL).

    Waits until the server answers. The caller stops it (terminate or SIGKILL) and waits on it;
    with `workers` > 1 the server is a process group (a supervisor and its workers), so a hard
    kill is `os.killpg(proc.pid, signal.SIGKILL)`.
    """
    import subprocess
    import sys
    import time
    import urllib.error
    import urllib.request

    port = port or free_port()
    cmd = [sys.executable, "-m", "ablations.cli", "survey", "serve", "--db", str(db), "--host", "127.0.0.1",
           "--port", str(port), "--admin-token", admin_token, "--synchronous", synchronous, "--workers", str(workers)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"survey server exited early: {proc.stderr.read().decode()[-2000:]}")
        try:
            urllib.request.urlopen(base + "/api/admin/studies", timeout=1)
        except urllib.error.HTTPError:
            return proc, base  # 401 without the token: it is up
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"survey server did not answer on {base} within {timeout_s} s")
