"""Cold and warm load time of the dashboard's Data page on a large curated manifest.

    python benchmarks/data_page_load.py [--clips 100000] [--sources 5000] [--repeats 3]

The dataset is written to the `clips.curate.manifest` contract with planted rows (no
curation runs): `--clips` candidate clips cut from `--sources` source videos, 2% of the
sources unusable, the rest dropped by duration, bars, motion and aesthetic in planted shares;
report.json with every key. Every source is a symlink to the bundled `bigbuckbunny.mp4`, so the
page's thumbnails decode real H.264 (4 per group, 5 groups).

What is measured (as `benchmarks/dashboard_load.py`, whose subprocess runner this reuses): the
wall time of one Streamlit script run of the page under `streamlit.testing.v1.AppTest`.
- cold: the first run in a fresh process (parquet read and checks, thumbnail decoding);
- warm: a rerun with nothing changed (the mtime-keyed caches hit).
Each cold figure is its own process; the median and the range over `--repeats` are printed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]


def make_dataset(out: Path, clips: int, sources: int, seed: int = 0) -> None:
    """A contract-following dataset of `clips` planted clip rows plus 2% of `sources` unusable files."""
    from clips.corpus import video_path
    from clips.curate.manifest import FILTERS, MANIFEST, REPORT, score_summary

    rng = np.random.default_rng(seed)
    videos = out / "videos"
    videos.mkdir(parents=True)
    real = video_path("bigbuckbunny")
    paths = []
    for i in range(sources):
        link = videos / f"src_{i:05d}.mp4"
        link.symlink_to(real)
        paths.append(str(link))
    bad = max(1, sources // 50)
    src = rng.integers(bad, sources, clips)  # the first `bad` sources are the unusable files
    start = rng.integers(0, 100, clips)
    fate = rng.choice(["kept", "duration", "bars", "motion", "aesthetic"], clips, p=[0.5, 0.15, 0.05, 0.2, 0.1])
    flow = np.where(fate == "motion", rng.uniform(0, 0.2, clips), rng.uniform(0.2, 4, clips))
    aesthetic = np.where(fate == "aesthetic", rng.uniform(0, 3, clips), rng.uniform(3, 8, clips))
    frame = pd.DataFrame({
        "clip_id": [f"src_{s:05d}:f{a}-{a + 24}:{i}" for i, (s, a) in enumerate(zip(src, start))],
        "source": [paths[s] for s in src], "source_id": [f"src_{s:05d}" for s in src],
        "start_frame": start, "end_frame": start + 24, "fps": 25.0, "width": 320, "height": 240,
        "duration_s": np.where(fate == "duration", 0.5, 24 / 25.0),
        "crop_x0": 0, "crop_y0": np.where(fate == "bars", 100, 0), "crop_x1": 320, "crop_y1": np.where(fate == "bars", 140, 240),
        "motion_flow": flow, "motion_diff": flow * 4, "aesthetic": aesthetic, "caption": None, "caption_source": "none",
        "keep": fate == "kept", "dropped_by": np.where(fate == "kept", None, fate), "drop_reason": None,
        "finetune": False, "clip_path": None,
    })  # fmt: skip
    for column in ("motion_flow", "motion_diff"):
        frame.loc[frame["dropped_by"].isin(["duration", "bars"]), column] = np.nan
    frame.loc[frame["dropped_by"].isin(["duration", "bars", "motion"]), "aesthetic"] = np.nan
    unusable = pd.DataFrame({"clip_id": [f"bad_{i}" for i in range(bad)], "source": paths[:bad],
                             "source_id": [f"src_{i:05d}" for i in range(bad)], "dropped_by": "probe",
                             "drop_reason": "truncated: planted", "keep": False, "finetune": False})  # fmt: skip
    from clips.curate.manifest import to_frame

    manifest = to_frame(pd.concat([frame, unusable], ignore_index=True).fillna(
        {"start_frame": -1, "end_frame": -1, "width": -1, "height": -1, "crop_x0": -1, "crop_y0": -1, "crop_x1": -1,
         "crop_y1": -1}).to_dict("records"))  # fmt: skip
    top = manifest[manifest["keep"]].nlargest(1000, "aesthetic").index
    manifest.loc[top, "finetune"] = True
    manifest.to_parquet(out / MANIFEST)
    manifest[manifest["finetune"]].reset_index(drop=True).to_parquet(out / "finetune.parquet")
    report = {"format": "ltxlab-curated/1", "created_at": "now", "source": str(videos),
              "config": {"shots": {"min_duration_s": 1.0}, "bars": {"min_area_fraction": 0.3},
                         "motion": {"static_flow": 0.2, "static_diff": 0.5}, "aesthetic": {"threshold": 3.0, "top_k": 1000}},
              "counts": {"kept": int(manifest["keep"].sum()), "finetune": 1000,
                         "dropped_by": {f: int((manifest["dropped_by"] == f).sum()) for f in FILTERS}},
              "scores": {c: score_summary(manifest[c]) for c in ("motion_flow", "motion_diff", "aesthetic")},
              "failures": [], "timing": {"wall_s": 1.0, "workers": 1}, "provenance": {"commit": None}}  # fmt: skip
    (out / REPORT).write_text(json.dumps(report, default=str))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=100_000, help="candidate clip rows")
    parser.add_argument("--sources", type=int, default=5_000, help="source videos (2%% of them unusable)")
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes (cold runs)")
    args = parser.parse_args()
    spec = importlib.util.spec_from_file_location("dashboard_load", REPO / "benchmarks" / "dashboard_load.py")
    runner = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runner)
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        make_dataset(Path(tmp) / "dataset", args.clips, args.sources)
        print(f"wrote {args.clips} clips from {args.sources} sources in {time.perf_counter() - t:.1f} s")
        os.environ["LTXLAB_DATA"] = str(Path(tmp) / "dataset")  # the runner's subprocess inherits it
        runs = [runner._child(Path(tmp) / "no-results", "data")["data"] for _ in range(args.repeats)]
    cold, warm = [r["cold_s"] for r in runs], [r["warm_s"] for r in runs]
    print(f"Data page: {runs[0]['charts']} charts, {runs[0]['dataframes']} tables")
    print(f"cold: median {statistics.median(cold):.2f} s, range {min(cold):.2f}-{max(cold):.2f} s over {len(cold)} processes")
    print(f"warm: median {statistics.median(warm):.3f} s, range {min(warm):.3f}-{max(warm):.3f} s (median of 3 reruns each)")


if __name__ == "__main__":
    main()
