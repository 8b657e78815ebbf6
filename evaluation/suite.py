"""Every registered metric between two sets of videos: per pair, per test video and per set.

`ltxlab metrics --ref DIR --test DIR` runs this (and a stage can feed it pairs the same way):
- pair metrics (`evaluation.metrics.METRICS`: PSNR ... LPIPS) on each (reference, test) pair
  of equal frame size, over their common first frames, averaged over the pairs;
- video metrics (`evaluation.generation.GENERATION_METRICS`: CLIP similarity, frame
  consistency, flicker, the synthetic-scene oracle) on each test video with its caption (and its
  paired reference for flicker_excess), averaged over the test videos;
- set metrics (`evaluation.fvd.DISTRIBUTION_METRICS`): FVD over all reference vs all test
  videos, rFVD over the pairs only. I3D features are kept, not videos, so memory does not grow
  with the number of videos.
A metric with no value anywhere is reported with the one sentence that says what it needs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import numpy as np

from evaluation.fvd import DEFAULT_MIN_SAMPLES, DISTRIBUTION_METRICS, fvd_from_features, i3d_features, load_detector
from evaluation.frechet import sample_count_reason
from evaluation.generation import GENERATION_METRICS, GenerationSample, as_unit_float, score_sample
from evaluation.metrics import METRICS, DEFAULT_ORDER, evaluate_pair
from evaluation.weights import Weights, WeightsMissing, weights_record

# why a video metric without a value did not apply, for those whose reason is not in a result
_VIDEO_REASONS = {
    "oracle_color": "the oracle reads only synthetic-scene captions ('a red circle moves left ...'), and none matched",
    "first_frame_psnr": "first_frame_psnr needs an image-to-video conditioning frame, which a folder of videos lacks",
    "temporal_flicker": "temporal_flicker needs videos of at least 3 frames",
    "flicker_excess": "flicker_excess needs each test video paired with a reference of the same shape",
}
_VIDEO_REASONS["oracle_shape"] = _VIDEO_REASONS["oracle_direction"] = _VIDEO_REASONS["oracle_color"]


def selected_metrics(names: Iterable[str] | None) -> list[str]:
    """Validated names over all three registries (all of them when None), in a stable order."""
    every = list(DEFAULT_ORDER) + GENERATION_METRICS.names() + DISTRIBUTION_METRICS.names()
    if names is None:
        return every
    chosen = [n.strip() for n in names if n.strip()]
    for name in chosen:
        if name not in every:
            from models.registry import Registry

            everything: Registry[str] = Registry("metric")
            for known in every:
                everything.register(known, known)
            everything.get(name)  # raises UnknownNameError with "did you mean"
    return list(dict.fromkeys(chosen))


class SetEvaluation:
    """Accumulates (reference, test) pairs, then reports every selected metric."""

    def __init__(self, names: list[str], weights: Weights, *, fvd_frames: int = 16,
                 fvd_min_samples: int | None = None, device: str | None = None, expected: tuple[int, int] = (0, 0)):
        self.names, self.weights, self.device = names, weights, device
        self.pair_names = [n for n in names if n in METRICS]
        self.video_names = [n for n in names if n in GENERATION_METRICS]
        self.set_names = [n for n in names if n in DISTRIBUTION_METRICS]
        self.fvd_frames = fvd_frames
        self.fvd_min = DEFAULT_MIN_SAMPLES if fvd_min_samples is None else fvd_min_samples
        self.values: dict[str, dict[str, float]] = {n: {} for n in names}  # metric -> video name -> value
        self.reasons: dict[str, dict[str, str]] = {n: {} for n in names}  # metric -> video name -> why not
        self.features: dict[str, dict[str, np.ndarray]] = {"reference": {}, "test": {}}
        self.set_reasons: dict[str, str] = {}
        self.short: dict[str, int] = {"reference": 0, "test": 0}  # videos under fvd_frames, left out of FVD
        self.notes: list[str] = []  # what the report should say about inputs scored in part
        self.detector, self.detector_sha = self._detector(expected)

    def _detector(self, expected: tuple[int, int]) -> tuple[Any, str | None]:
        """The I3D detector when a set metric can be computed; else each set metric's reason, decided up front."""
        if not self.set_names:
            return None, None
        for name in self.set_names:  # counts of files known before decoding: refuse small N before any work
            counts = expected if name == "fvd" else (min(expected),) * 2
            reason = sample_count_reason(name, counts, self.fvd_min) if any(expected) else None
            if reason:
                self.set_reasons[name] = reason
        if len(self.set_reasons) == len(self.set_names):
            return None, None
        try:
            return load_detector(self.weights, self.device or "cpu", self.set_names[0])
        except WeightsMissing as exc:
            for name in self.set_names:
                self.set_reasons.setdefault(name, str(exc).replace(self.set_names[0], name, 1))
            return None, None

    def add(self, name: str, reference: np.ndarray | None, test: np.ndarray | None, caption: str | None) -> None:
        """One video name: uint8 (T, H, W, 3) reference and/or test frames, and the test video's caption."""
        if reference is not None and test is not None:
            self._pair(name, reference, test)
        if test is not None:
            self._video(name, test, caption, reference)
        if self.detector is not None:
            for role, video in (("reference", reference), ("test", test)):
                if video is not None and len(video) < self.fvd_frames:
                    self.short[role] += 1
                elif video is not None:
                    self.features[role][name] = i3d_features([video], self.detector, self.fvd_frames,
                                                             device=self.device or "cpu")[0]

    def _pair(self, name: str, reference: np.ndarray, test: np.ndarray) -> None:
        if not self.pair_names:
            return
        if reference.shape[1:] != test.shape[1:]:
            why = (f"{name}: reference {reference.shape[2]}x{reference.shape[1]} and test "
                   f"{test.shape[2]}x{test.shape[1]} differ in frame size")
            for metric in self.pair_names:
                self.reasons[metric][name] = why
            return
        frames = min(len(reference), len(test))
        if len(reference) != len(test):
            self.notes.append(f"{name}: reference {len(reference)} and test {len(test)} frames; "
                              f"the pair metrics score the first {frames}.")
        results = evaluate_pair(reference[:frames], test[:frames], self.pair_names, device=self.device,
                                weights=self.weights)
        for metric, result in results.items():
            if result.value is None:
                self.reasons[metric][name] = result.not_applicable or "not applicable"
            else:
                self.values[metric][name] = result.value

    def _video(self, name: str, test: np.ndarray, caption: str | None, reference: np.ndarray | None) -> None:
        if not self.video_names:
            return
        video = as_unit_float(test)
        same_shape = reference is not None and reference.shape == test.shape
        sample = GenerationSample(video=video, task="t2v", text=caption or "", weights=self.weights,
                                  reference=as_unit_float(reference) if same_shape else None)
        values = score_sample(sample, self.video_names)
        for metric in self.video_names:
            if metric in values:
                self.values[metric][name] = values[metric]
            else:
                outcome = (sample.clip_outcomes or {}).get(metric)
                self.reasons[metric][name] = (outcome.not_applicable if outcome is not None
                                              else _VIDEO_REASONS.get(metric, "not applicable"))

    def report(self) -> dict[str, dict[str, Any]]:
        """{metric: {kind, value, n, per_video, skipped, not_applicable, version, ...}} in `names` order."""
        out = {}
        for metric in self.names:
            if metric in DISTRIBUTION_METRICS:
                out[metric] = self._set_entry(metric)
                continue
            spec = METRICS.get(metric) if metric in METRICS else GENERATION_METRICS.get(metric)
            values, reasons = self.values[metric], self.reasons[metric]
            first_reason = next(iter(reasons.values()), "no videos to score")
            out[metric] = {
                "kind": "pair" if metric in METRICS else "video", "version": spec.version,
                "higher_is_better": spec.higher_is_better, "unit": spec.unit, "description": spec.description,
                "value": float(np.mean(list(values.values()))) if values else None, "n": len(values),
                "per_video": values, "skipped": reasons, "not_applicable": None if values else first_reason,
            }
        return out

    def _set_entry(self, metric: str) -> dict[str, Any]:
        spec = DISTRIBUTION_METRICS.get(metric)
        ref, test = self.features["reference"], self.features["test"]
        if metric == "rfvd":
            paired = sorted(set(ref) & set(test))
            ref, test = {k: ref[k] for k in paired}, {k: test[k] for k in paired}
        entry = {"kind": "set", "version": spec.version, "higher_is_better": spec.higher_is_better, "unit": "",
                 "description": spec.description, "value": None, "n": min(len(ref), len(test))}
        if metric in self.set_reasons:
            return {**entry, "not_applicable": self.set_reasons[metric]}
        stack = lambda d: np.stack([d[k] for k in sorted(d)]) if d else np.zeros((0, 400))  # noqa: E731
        short = self.short["reference"] + self.short["test"]
        result = fvd_from_features(stack(ref), stack(test), metric=metric, clip_frames=self.fvd_frames,
                                   detector_sha256=self.detector_sha, min_samples=self.fvd_min, discarded=short)
        return {**entry, "value": result.value, "not_applicable": result.not_applicable, "protocol": result.protocol}


def evaluate_folders(ref_dir: str | Path, test_dir: str | Path, names: list[str], weights: Weights, *,
                     max_frames: int | None = None, fvd_frames: int = 16, fvd_min_samples: int | None = None,
                     device: str | None = None) -> dict[str, Any]:
    """Score the mp4 files of `test_dir` against those of `ref_dir` (paired by file name); the full report."""
    from clips.errors import ClipError
    from clips.folder import list_mp4, read_captions
    from clips.io import read_video

    refs = {p.name: p for p in list_mp4(ref_dir)}
    tests = {p.name: p for p in list_mp4(test_dir)}
    if not refs or not tests:
        empty = ref_dir if not refs else test_dir
        raise ClipError(f"{empty} contains no .mp4 files; pass folders of mp4 videos.")
    captions = {**read_captions(ref_dir), **read_captions(test_dir)}  # the test folder's captions win
    evaluation = SetEvaluation(names, weights, fvd_frames=fvd_frames, fvd_min_samples=fvd_min_samples, device=device,
                               expected=(len(refs), len(tests)))
    notes: list[str] = []
    for name in sorted(set(refs) | set(tests)):
        try:
            ref = read_video(refs[name], max_frames)[0] if name in refs else None
            test = read_video(tests[name], max_frames)[0] if name in tests else None
        except ClipError as exc:
            notes.append(f"Skipped {name}: {exc}")
            continue
        evaluation.add(name, ref, test, captions.get(name))
    report = evaluation.report()
    unpaired = {"reference_only": sorted(set(refs) - set(tests)), "test_only": sorted(set(tests) - set(refs))}
    for role, files in unpaired.items():
        if files:
            notes.append(f"{len(files)} {role.replace('_', ' ')} videos have no partner of the same name; "
                         "they count for FVD only.")
    return {"reference": str(ref_dir), "test": str(test_dir), "reference_videos": len(refs), "test_videos": len(tests),
            "pairs": sorted(set(refs) & set(tests)), "unpaired": unpaired,
            "captioned": sum(1 for n in tests if captions.get(n)), "notes": notes + evaluation.notes,
            "metrics": report, "weights": weights_record(weights, [m for m, e in report.items() if e["value"] is not None])}
