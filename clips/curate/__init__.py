"""Per-video curation detectors: pure functions of one file (or frame array), no Ray.

- `clips.curate.probe`: `probe(path) -> Probe` or `ProbeError` with a `.reason` code;
  `probe_many`; `read_frames` (a frame range or sample, PyAV).
- `clips.curate.shots`: shot cuts with PySceneDetect's ContentDetector, then clips of
  `[min_duration_s, max_duration_s]` as `(start_frame, end_frame)`.
- `clips.curate.bars`: the black-bar crop box `(x0, y0, x1, y1)`.
- `clips.curate.motion`: Farneback flow and frame-difference scores, `is_static`.
- `clips.curate.synthetic`: mp4s with a known answer, for tests and benchmarks.

The pipeline over them (`ltxlab curate`, LTX-Video §4 on Ray Data):
- `clips.curate.config`: `CurateConfig`, every threshold a field (TOML + `--set`).
- `clips.curate.inputs`: SRC (folder or manifest) and the driver's pre-check (no decoding).
- `clips.curate.stages`: the per-file / per-clip work as plain functions and model actors.
- `clips.curate.crop`: frames inside the black-bar box, scaled while decoding.
- `clips.curate.pipeline`: `curate()` on Ray Data (or one process), the staged dataset write.
- `clips.curate.manifest`: the output files' contract.

Each detector takes a frozen `*Config` dataclass whose fields are its thresholds, so
curation choices can be an ablation axis. Submodules are imported on use (cv2 and
scenedetect are not loaded by `import clips.curate`).
"""
