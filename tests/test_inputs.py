"""Stage keys see the files their paths name (ablations/inputs.py): a changed checkpoint or data
folder is a new key, so the sweep trains again instead of reusing a stage built from old files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ablations import artifacts
from ablations.configs import default_run_config
from ablations.graph import expand_variants, plan_sweep
from ablations.overrides import apply_overrides
from ablations.runner import STAGE_SPECS
from tests._generate_util import tiny_pair

STAGES = ["train_vae", "eval_recon", "cost"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    return tiny_pair(tmp_path_factory)


def _keys(cfg) -> dict[str, str]:  # type: ignore[no-untyped-def]
    plan = plan_sweep(expand_variants(cfg, {}, [0]), STAGE_SPECS, STAGES)
    return {i.stage: i.key for i in plan.instances.values()}


def test_a_changed_init_checkpoint_is_a_new_key(trained, tmp_path):
    vae_dir, _ = trained
    weights, meta = artifacts.load(vae_dir, "vae")
    start = tmp_path / "start" / artifacts.FILES["vae"]
    start.parent.mkdir()
    keep = {k: v for k, v in meta.items() if k not in ("format", "tensors_sha256", "written_by")}
    artifacts.save(start, "vae", weights, keep)
    cfg = apply_overrides(default_run_config("ltx", "tiny"), [f"vae.init={start.parent}"])
    before = _keys(cfg)
    assert _keys(cfg) == before  # the same files: the same keys, so the cache is found again
    os.utime(start, ns=(1, 1))  # a new mtime on the same weights: ours are keyed by their tensors_sha256
    assert _keys(cfg) == before
    changed = {k: v.clone() for k, v in weights.items()}
    name = next(k for k, v in changed.items() if v.is_floating_point() and v.numel() > 1)
    changed[name][0] += 1.0
    artifacts.save(start, "vae", changed, keep)  # the same path, other weights
    after = _keys(cfg)
    assert after["train_vae"] != before["train_vae"] and after["eval_recon"] != before["eval_recon"]
    plain = _keys(default_run_config("ltx", "tiny"))
    assert plain["train_vae"] not in (before["train_vae"], after["train_vae"])


def test_a_changed_video_folder_is_a_new_key(tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    (folder / "a.mp4").write_bytes(b"x" * 10)
    cfg = apply_overrides(default_run_config("ltx", "tiny"), ["vae_data.source=folder", f"vae_data.folder={folder}"])
    before = _keys(cfg)
    assert _keys(cfg) == before
    (folder / "b.mp4").write_bytes(b"y" * 10)  # a video added under the same path
    added = _keys(cfg)
    assert added["train_vae"] != before["train_vae"]
    (folder / "b.mp4").write_bytes(b"y" * 11)  # a video replaced by another of a different size
    assert _keys(cfg)["train_vae"] not in (before["train_vae"], added["train_vae"])


def test_configs_without_paths_keep_their_keys():
    """No path in the fields: the payload holds no fingerprints (only the fields and the training numerics)."""
    from ablations.graph import training_numerics
    from models.config import content_hash, to_dict

    cfg = default_run_config("ltx", "tiny")
    spec = STAGE_SPECS["train_vae"]
    variant = expand_variants(cfg, {}, [0])[0]
    payload = {"stage": "train_vae", "fields": {f: to_dict(getattr(variant.config, f)) for f in spec.fields},
               "upstream": (), "numerics": training_numerics(variant.config.train, gpus=False)}
    assert _keys(cfg)["train_vae"] == content_hash(payload, 16)


def test_evaluation_keys_see_the_networks_they_would_load(tmp_path, monkeypatch):
    """$LTXLAB_WEIGHTS is not in the config: a sweep evaluated without I3D and rerun with it set
    evaluates again; a replaced file is a new key; training keys never change."""
    monkeypatch.delenv("LTXLAB_WEIGHTS", raising=False)
    cfg = default_run_config("ltx", "tiny")
    before = _keys(cfg)
    folder = tmp_path / "weights"
    folder.mkdir()
    monkeypatch.setenv("LTXLAB_WEIGHTS", str(folder))
    assert _keys(cfg) == before  # an empty folder: nothing is loaded, the keys stay
    i3d = folder / "i3d_torchscript.pt"
    i3d.write_bytes(b"x" * 10)
    found = _keys(cfg)
    assert found["eval_recon"] != before["eval_recon"] and found["train_vae"] == before["train_vae"]
    i3d.write_bytes(b"y" * 11)  # the same name, another file
    replaced = _keys(cfg)
    assert replaced["eval_recon"] not in (before["eval_recon"], found["eval_recon"])
    monkeypatch.delenv("LTXLAB_WEIGHTS")
    named = apply_overrides(cfg, [f"eval.weights.i3d={i3d}"])  # named in the config: changes are seen there too
    first = _keys(named)["eval_recon"]
    i3d.write_bytes(b"z" * 12)
    assert _keys(named)["eval_recon"] != first


def test_a_replaced_local_text_encoder_is_a_new_key(tmp_path):
    """text.kind=hf:<folder>: caption embeddings from a replaced encoder folder are not reused."""
    folder = tmp_path / "t5"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"x" * 10)
    cfg = apply_overrides(default_run_config("ltx", "tiny"), [f"text.kind=hf:{folder}"])

    def latents_key() -> str:
        plan = plan_sweep(expand_variants(cfg, {}, [0]), STAGE_SPECS, ["encode_latents"])
        return next(i.key for i in plan.instances.values() if i.stage == "encode_latents")

    before = latents_key()
    assert latents_key() == before
    (folder / "model.safetensors").write_bytes(b"y" * 11)  # other weights at the same path
    assert latents_key() != before
