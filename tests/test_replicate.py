"""Units of replication in the results store: each metric row's `source_id`, and the A/A
replicate baseline (`Sweep.replicate_baseline`, `ltxlab sweep --replicate-baseline`)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ablations.graph import Level, baseline_combo, expand_variants, replicate_seed_offset, replicate_summary
from ablations.recipes import RECIPES
from ablations.store import METRIC_COLUMNS, METRIC_KEY, SweepStore, load_sweep, read_metrics, read_runs
from clips.ids import source_of_clip_id
from clips.types import Clip
from models.config import ConfigError

REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- source ids


@pytest.mark.parametrize("clip_id,source", [
    ("bikes:heldout:t190-206:y0x41:64x64:s64", "bikes"),
    ("bigbuckbunny:train:t0-16:y0x6:64x64", "bigbuckbunny"),
    ("carphone_pristine:heldout:t90-106:y0x11:64x64:s64", "carphone"),
    ("carphone_distorted:heldout:t90-106:y0x11:64x64:s64", "carphone"),  # the same content, compressed
    ("my:clip:heldout:t0-8:y0x0:32x32", "my:clip"),  # a folder stem may hold ':' itself
    ("synthetic:heldout:s8192:9x32x32", "synthetic:heldout:s8192:9x32x32"),  # every scene is its own source
    ("synthetic:heldout:t0-8:y0x0:32x32:s32", "synthetic"),  # ... but a folder video named synthetic.mp4 is one
    ("bikes:heldout:3", "bikes"),  # the short ids of hand-written stores
    ("p003", "p003"),  # a prompt without a clip
])  # fmt: skip
def test_source_of_clip_id(clip_id, source):
    assert source_of_clip_id(clip_id) == source


def test_bundled_clips_share_their_video_as_source():
    from clips.dataset import DataSpec, load_clips

    clips = load_clips(DataSpec(source="bundled", frames=9, height=32, width=32, clips_per_video=2), "heldout")
    assert [c.source_id for c in clips] == ["bigbuckbunny"] * 2 + ["bikes"] * 2 + ["carphone"] * 2
    assert all(c.source_id == source_of_clip_id(c.clip_id) for c in clips)  # the store's back-fill agrees
    distorted = dataclasses.replace(clips[-1], clip_id=clips[-1].clip_id.replace("pristine", "distorted"),
                                    meta={**clips[-1].meta, "video": "carphone_distorted"})
    assert distorted.source_id == "carphone"


def test_folder_clips_take_their_mp4_stem(tmp_path):
    from clips.dataset import DataSpec, load_clips
    from clips.io import write_video

    rng = np.random.default_rng(0)
    for stem in ("street", "harbour"):
        write_video(tmp_path / f"{stem}.mp4", rng.integers(0, 256, (40, 32, 48, 3), dtype=np.uint8), 24)
    clips = load_clips(DataSpec(source="folder", folder=str(tmp_path), frames=9, height=32, width=32,
                                clips_per_video=2, scale=None), "heldout")
    assert [c.source_id for c in clips] == ["harbour", "harbour", "street", "street"]
    assert all(c.source_id == source_of_clip_id(c.clip_id) for c in clips)


def test_synthetic_scenes_are_their_own_source():
    from clips.synthetic import make_scene

    scenes = [make_scene(seed, 9, 32, 32, split="heldout") for seed in (3, 4)]
    assert [s.source_id for s in scenes] == [s.clip_id for s in scenes]
    assert len({s.source_id for s in scenes}) == 2
    bare = Clip(clip_id="x:heldout:t0-8:y0x0:8x8", frames=np.zeros((9, 8, 8, 3), np.uint8), fps=24.0, caption=None,
                source="folder", split="heldout")  # no meta: the id is parsed
    assert bare.source_id == "x"


def test_eval_gen_source_of_an_index_row():
    from ablations.stages.eval_gen import sample_source_id

    assert sample_source_id({"prompt_id": "p0", "clip_id": "synthetic:heldout:s1:9x32x32", "source_id": "s"}) == "s"
    assert sample_source_id({"prompt_id": "p0", "clip_id": "bikes:heldout:t1-9:y0x0:8x8"}) == "bikes"  # older index
    assert sample_source_id({"prompt_id": "p0", "clip_id": None}) == "p0"


def test_store_import_stays_light():
    code = "import sys, ablations.store, clips.ids; print(sorted(m for m in ('torch', 'ray') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# ----------------------------------------------------------------------------- store back-fill


def _old_row(run_id: str, clip_id: str, value: float) -> dict:
    return {"run_id": run_id, "seed": 0, "split": "heldout", "clip_id": clip_id, "metric": "psnr", "value": value,
            "metric_version": "1"}


def test_source_id_is_a_column_but_not_a_key():
    assert "source_id" in METRIC_COLUMNS and "source_id" not in METRIC_KEY


def test_old_metrics_parquet_is_back_filled(tmp_path):
    store = SweepStore(tmp_path, "old")
    clips = ["bikes:heldout:t190-206:y0x41:64x64:s64", "carphone_pristine:heldout:t90-106:y0x11:64x64:s64",
             "synthetic:heldout:s5:9x32x32"]
    pd.DataFrame([_old_row("r1", c, 30.0 + k) for k, c in enumerate(clips)]).to_parquet(store.path / "metrics.parquet")
    metrics = read_metrics(tmp_path, "old")
    assert list(metrics.columns) == list(METRIC_COLUMNS)
    assert metrics["source_id"].tolist() == ["bikes", "carphone", clips[2]]
    assert load_sweep(tmp_path, "old").metrics["source_id"].tolist() == ["bikes", "carphone", clips[2]]
    # an old caller appends without source_id: derived the same way, and the old rows gain it on disk too
    store.append_metrics([{k: v for k, v in _old_row("r2", clips[0], 29.0).items() if k != "metric_version"}])
    on_disk = pd.read_parquet(store.path / "metrics.parquet")
    assert on_disk["source_id"].tolist() == ["bikes", "carphone", clips[2], "bikes"]
    assert on_disk["metric_version"].tolist() == ["1"] * 4


def test_given_source_id_is_kept_and_nulls_are_filled(tmp_path):
    store = SweepStore(tmp_path, "s")
    rows = [{**_old_row("r1", "bikes:heldout:t1-9:y0x0:8x8", 1.0), "source_id": "street-cam"},
            {**_old_row("r1", "bikes:heldout:t9-17:y0x0:8x8", 2.0), "source_id": None}]
    table = store.append_metrics(rows)
    assert table["source_id"].tolist() == ["street-cam", "bikes"]
    assert read_metrics(tmp_path, "s")["source_id"].tolist() == ["street-cam", "bikes"]
    empty = read_metrics(tmp_path, "none")
    assert list(empty.columns) == list(METRIC_COLUMNS) and empty.empty


def test_old_runs_parquet_gets_block_from_seed(tmp_path):
    store = SweepStore(tmp_path, "old")
    pd.DataFrame([{"run_id": "a", "variant": "x", "seed": 3, "status": "done"}]).to_parquet(store.path / "runs.parquet")
    store.upsert_run({"run_id": "b", "variant": "x", "seed": 1004, "block": 4, "replicate": "b", "status": "done"})
    runs = read_runs(tmp_path, "old")
    assert runs.set_index("run_id")["block"].to_dict() == {"a": 3, "b": 4}
    assert list(runs.columns[:5]) == ["run_id", "variant", "seed", "replicate", "block"]


# ----------------------------------------------------------------------------- replicate expansion


def _tiny_base():
    from ablations.configs import default_run_config

    return default_run_config("ltx", "tiny")


def test_replicate_copies_the_baseline_on_disjoint_seeds():
    axes = {"loss.dwt": [0.0, 0.1], "vae.logvar": ["uniform", "per_channel"]}
    variants = expand_variants(_tiny_base(), axes, (0, 1, 2), replicate_baseline=True)
    normal, copies = variants[:12], variants[12:]
    assert len(copies) == 3 and all(v.replicate == "a" for v in normal) and all(v.replicate == "b" for v in copies)
    assert {v.seed for v in normal} == {0, 1, 2} and [v.seed for v in copies] == [1000, 1001, 1002]
    assert [v.block for v in copies] == [0, 1, 2] and all(v.block == v.seed for v in normal)
    assert all(dict(v.axes) == {"loss.dwt": 0.0, "vae.logvar": "uniform"} for v in copies)
    assert all(v.name == "loss.dwt=0.0,vae.logvar=uniform,replicate=b" for v in copies)
    baseline = [v for v in normal if v.name == "loss.dwt=0.0,vae.logvar=uniform"]
    for a, b in zip(baseline, copies):  # the same config but for the seed
        assert dataclasses.replace(b.config, seed=a.seed) == a.config and b.config.seed == b.seed
    assert len({v.run_id for v in variants}) == 15
    assert replicate_summary(variants) == {
        "baseline_variant": "loss.dwt=0.0,vae.logvar=uniform", "baseline": {"loss.dwt": 0.0, "vae.logvar": "uniform"},
        "seed_offset": 1000, "seeds": [1000, 1001, 1002]}  # fmt: skip


def test_without_replicate_nothing_changes():
    variants = expand_variants(_tiny_base(), {"loss.dwt": [0.0, 0.1]}, (0, 1))
    assert len(variants) == 4 and all(v.replicate is None and v.block == v.seed for v in variants)
    assert replicate_summary(variants) is None


def test_baseline_of_levels_explicit_lists_and_no_axes():
    gan = [Level("none", {"loss.gan": 0.0}), Level("gan", {"loss.gan": 0.05})]
    copies = [v for v in expand_variants(_tiny_base(), {"gan": gan}, (0,), replicate_baseline=True) if v.replicate == "b"]
    assert [dict(v.axes) for v in copies] == [{"gan": "none"}] and copies[0].config.loss.gan == 0.0
    explicit = [{"loss.dwt": 0.1, "vae.logvar": "per_channel"}, {"loss.dwt": 0.0, "vae.logvar": "uniform"}]
    assert baseline_combo({}, explicit) == explicit[0]
    copies = [v for v in expand_variants(_tiny_base(), {}, (0,), explicit, replicate_baseline=True) if v.replicate == "b"]
    assert copies[0].config.loss.dwt == 0.1 and copies[0].name == "loss.dwt=0.1,vae.logvar=per_channel,replicate=b"
    plain = expand_variants(_tiny_base(), {}, (0, 1), replicate_baseline=True)
    assert [(v.name, v.seed, v.block) for v in plain] == [("base", 0, 0), ("base", 1, 1),
                                                          ("base,replicate=b", 1000, 0), ("base,replicate=b", 1001, 1)]


@pytest.mark.parametrize("seeds,offset", [((0,), 1000), ((0, 1, 2), 1000), ((5, 999), 1000), ((0, 1000), 2000),
                                          ((1999,), 2000)])
def test_seed_offset_clears_every_seed(seeds, offset):
    assert replicate_seed_offset(seeds) == offset
    assert not {s + offset for s in seeds} & set(seeds)


def test_negative_seeds_are_refused():
    with pytest.raises(ConfigError, match="seeds >= 0"):
        replicate_seed_offset((-1, 0))


def test_aa_vae_recipe_and_cli_flag():
    from ablations.cli import build_parser
    from ablations.commands.sweep import build_sweep, job_entrypoint

    sweep = RECIPES.get("aa-vae")()
    assert sweep.replicate_baseline and tuple(sweep.seeds) == (0, 1, 2) and not sweep.axes
    assert sweep.base.vae_train.steps == 150 and sweep.base.vae_data.source == "bundled"
    assert "eval_recon" in sweep.stages and set(sweep.headline_metrics) <= set(sweep.base.eval.recon_metrics)
    args = build_parser().parse_args(["sweep", "tiny-pair", "--replicate-baseline", "--smoke"])
    assert build_sweep(args, "tiny-pair").replicate_baseline
    assert "--replicate-baseline" in job_entrypoint(args, "tiny-pair")
    plain = build_parser().parse_args(["sweep", "tiny-pair"])
    assert not build_sweep(plain, "tiny-pair").replicate_baseline
    assert "--replicate-baseline" not in job_entrypoint(plain, "tiny-pair")
    assert build_sweep(build_parser().parse_args(["sweep", "aa-vae"]), "aa-vae").replicate_baseline


# ----------------------------------------------------------------------------- one sweep end to end


@pytest.fixture(scope="module")
def replicated_sweep(ray_local, tmp_path_factory):
    from ablations.cli import main

    root = tmp_path_factory.mktemp("replicate")
    code = main(["sweep", "tiny-pair", "--smoke", "--replicate-baseline", "--results", str(root), "--quiet",
                 "--no-report"])
    return root / "tiny-pair-smoke", code


def test_smoke_sweep_writes_replicate_block_and_source_id(replicated_sweep):
    sweep_dir, code = replicated_sweep
    assert code == 0
    meta = json.loads((sweep_dir / "sweep.json").read_text())
    assert meta["axes"] == {"dit.text_conditioning": ["cross_attention", "mmdit"]}  # replicate is not an axis
    assert meta["replicate"] == {"baseline_variant": "dit.text_conditioning=cross_attention",
                                 "baseline": {"dit.text_conditioning": "cross_attention"},
                                 "seed_offset": 1000, "seeds": [1000]}  # fmt: skip
    runs = pd.read_parquet(sweep_dir / "runs.parquet").set_index("variant")
    assert set(runs["status"]) == {"done"} and len(runs) == 3
    copy = runs.loc["dit.text_conditioning=cross_attention,replicate=b"]
    assert (copy["seed"], copy["block"], copy["replicate"], copy["dit.text_conditioning"]) == (1000, 0, "b", "cross_attention")
    normal = runs.drop(copy.name)
    assert set(normal["replicate"]) == {"a"} and normal["block"].tolist() == [0, 0] and normal["seed"].tolist() == [0, 0]
    metrics = pd.read_parquet(sweep_dir / "metrics.parquet")
    assert list(metrics.columns) == list(METRIC_COLUMNS) and metrics["source_id"].notna().all()
    recon = metrics[metrics["metric"] == "psnr"]
    assert set(recon["source_id"]) == {"bigbuckbunny", "bikes", "carphone"}
    gen = metrics[metrics["metric"].str.startswith(("t2v.", "i2v."))]
    assert not gen.empty and (gen["source_id"] == gen["clip_id"]).all()  # synthetic prompts: one scene each
    assert set(metrics["run_id"]) == set(runs["run_id"])
    manifest = json.loads((sweep_dir / "runs" / copy["run_id"] / "manifest.json").read_text())
    assert (manifest["block"], manifest["replicate"]) == (0, "b")


def test_plain_sweep_has_block_but_no_replicate(tmp_path):
    """Without the flag: block always, no replicate column, sweep.json replicate null (no Ray: only the store is written)."""
    from ablations.runner import _replication_columns, _write_sweep_json

    sweep = RECIPES.get("tiny-pair")()
    variants = expand_variants(sweep.base, sweep.axes, sweep.seeds, sweep.variants)
    store = SweepStore(tmp_path, "plain")
    _write_sweep_json(store, sweep, variants, 0.0)
    assert json.loads((store.path / "sweep.json").read_text())["replicate"] is None
    assert [_replication_columns(v) for v in variants] == [{"block": 0}, {"block": 0}]
