"""Turn the finished stage instances of one run into results-store records.

Set-level metrics (rFVD, FVD: one value per run, not per clip) are rows of metrics.parquet
with clip_id and source_id "__set__"; their protocol (clip length, resolution, detector
sha256, N) and every metric's not-applicable sentence go to the run's manifest.json under
"evaluation" (`run_evaluation`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ablations.executor import stage_dir
from ablations.stages.shards import link_or_copy
from clips.ids import source_of_clip_id


def _link(src: Path, dst: Path) -> None:
    """Hard-link (cheap, same file system) or copy a finished artifact into the run folder.

    A rerun finds `dst` already linked to `src`: rename(2) of one hard link onto another of the
    same file does nothing and leaves the temporary name behind, so that case is a no-op here and
    `link_or_copy` removes its temporary name whatever happens."""
    if dst.exists() and os.path.samefile(src, dst):
        return
    link_or_copy(src, dst)


def collect_run(store: Any, variant: Any, needed: list[Any], cache_root: Path, sweep: Any) -> dict[str, Any]:
    metrics: list[dict[str, Any]] = []
    curve: list[dict[str, Any]] = []
    values: dict[str, list[float]] = {}
    cost: dict[str, Any] = {}
    evaluation: dict[str, Any] = {"not_applicable": {}, "set_metrics": {}, "weights": {}}
    stages = {st.instance.stage for st in needed}
    for st in needed:
        if st.status != "done" or not st.result:
            continue
        folder = stage_dir(cache_root, st.instance.stage, st.instance.key)
        result = st.result
        if st.instance.stage in ("eval_recon", "eval_gen"):
            for row in result.get("rows", []):
                if row.get("variant", "model") != "model":
                    continue
                clip_id = row.get("clip_id") or row.get("prompt_id")
                # rows cached by stages that predate source_id derive it from the clip id
                source_id = row.get("source_id") or source_of_clip_id(clip_id)
                metrics.append({"run_id": variant.run_id, "seed": variant.seed, "split": "heldout",
                                "clip_id": clip_id, "source_id": source_id, "metric": row["metric"],
                                "value": float(row["value"]), "metric_version": str(row.get("metric_version", "1")),
                                "producer": f"{st.instance.stage}/{st.instance.key}"})
                values.setdefault(row["metric"], []).append(float(row["value"]))
            for part in ("not_applicable", "set_metrics", "weights"):  # weights: {metric: {file name: sha256}}
                evaluation[part].update(result.get(part, {}))
        if st.instance.stage == "eval_recon":
            for ref in result.get("references", []):
                reference = store.reference_path(ref["clip_id"])
                if not reference.exists():
                    _link(folder / ref["file"], reference)
                sample = folder / ref["sample"]
                if sample.exists():
                    _link(sample, store.sample_dir(variant.run_id) / sample.name)
                    store.add_sample(variant.run_id, {"file": sample.name, "task": "recon", "prompt_id": ref["clip_id"],
                                                      "text": None, "image": None, "clip_id": ref["clip_id"],
                                                      "source_id": source_of_clip_id(ref["clip_id"]), "fps": ref["fps"]})
        if st.instance.stage == "sample":
            samples = folder / "samples"
            for row in result.get("index", []):
                _link(samples / row["file"], store.sample_dir(variant.run_id) / row["file"])
                if row.get("image"):
                    _link(samples / row["image"], store.sample_dir(variant.run_id) / row["image"])
                store.add_sample(variant.run_id, row)
        if st.instance.stage in ("train_vae", "train_dit"):
            curve.extend(result.get("curve", []))
        if st.instance.stage == "cost":
            cost.update(_cost_columns(result["cost"], dit_used=bool(stages & {"train_dit", "sample"})))
        if st.instance.stage == "speed":  # measured generation beside the cost estimate (ablations/stages/speed.py)
            from ablations.provenance import machine_label
            from ablations.stages.speed import speed_columns

            cost.update(speed_columns(result["speed"]))
            cost["speed.machine"] = machine_label(result.get("hardware", {}))  # where it was measured
    headline = {name: float(np.mean(values[name])) for name in sweep.headline_metrics if values.get(name)}
    return {"metrics": metrics, "curve": curve, "headline": headline, "cost": cost, "evaluation": evaluation}


def run_evaluation(manifest: dict[str, Any]) -> dict[str, Any]:
    """A run manifest's {"not_applicable": {metric: sentence}, "set_metrics": {metric: value, N, protocol},
    "weights": {metric: {weights name: sha256}}} ({} parts for runs written before they existed)."""
    evaluation = manifest.get("evaluation") or {}
    return {part: dict(evaluation.get(part) or {}) for part in ("not_applicable", "set_metrics", "weights")}


def _cost_columns(cost: dict[str, Any], dit_used: bool) -> dict[str, Any]:
    """The run's cost: VAE encode+decode alone, or one DiT forward + one VAE decode when a DiT is in the run."""
    part = "generation" if dit_used else "vae"
    figures = cost[part]
    return {f"cost.{k}": v for k, v in figures.items()}


SET_COLUMNS = ["run_id", "variant", "seed", "metric", "value", "n_reference", "n_test", "clip_frames", "detector_sha256",
               "not_applicable"]  # fmt: skip


def sweep_evaluation(root: str | os.PathLike, sweep: str, runs: Any) -> dict[str, Any]:
    """What every finished run's manifest says about its metrics, for `ltxlab report` and the dashboard.

    Returns {"set_metrics": DataFrame (SET_COLUMNS; one row per run and set-level metric, the
    protocol's N, clip length and detector hash), "not_applicable": DataFrame (metric, reason,
    runs: how many runs gave that reason)}.
    """
    import pandas as pd

    from ablations.store import run_json

    set_rows: list[dict[str, Any]] = []
    reasons: dict[tuple[str, str], int] = {}
    for run in runs.itertuples() if len(runs) else []:
        evaluation = run_evaluation(run_json(root, sweep, run.run_id, "manifest.json"))
        for metric, reason in evaluation["not_applicable"].items():
            reasons[(metric, reason)] = reasons.get((metric, reason), 0) + 1
        for metric, result in evaluation["set_metrics"].items():
            protocol = result.get("protocol") or {}
            set_rows.append({"run_id": run.run_id, "variant": getattr(run, "variant", None),
                             "seed": getattr(run, "seed", None), "metric": metric, "value": result.get("value"), "n_reference": result.get("n_reference"),
                             "n_test": result.get("n_test"), "clip_frames": protocol.get("clip_frames"),
                             "detector_sha256": protocol.get("detector_sha256"),
                             "not_applicable": result.get("not_applicable")})  # fmt: skip
    not_applicable = pd.DataFrame([{"metric": m, "reason": r, "runs": n} for (m, r), n in sorted(reasons.items())],
                                  columns=["metric", "reason", "runs"])
    return {"set_metrics": pd.DataFrame(set_rows, columns=SET_COLUMNS), "not_applicable": not_applicable}


def not_applicable_lines(not_applicable: Any, total_runs: int) -> list[str]:
    """'<metric>: n/a: <reason> (k of n runs)' per (metric, reason): the sentences every page and report shows."""
    return [f"{r.metric}: n/a: {r.reason} ({r.runs} of {total_runs} runs)" for r in not_applicable.itertuples()]
