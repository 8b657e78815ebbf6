"""Trained artifacts as safetensors (issue 17): round trip, refusals in one sentence, conversion, no pickle.

The tiny VAE + DiT come from the real stages (`tests._generate_util`); an "old" checkpoint
is written the way ltxlab wrote it before (torch.save of {kind, config, ..., state_dict}).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from ablations import artifacts, cli
from ablations.stages.train_dit import load_dit
from ablations.stages.train_vae import load_vae
from models import tensor_file
from models.config import to_dict
from tests._generate_util import tiny_pair


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    return tiny_pair(tmp_path_factory)


def _one_line_error(capsys, code: int) -> str:
    err = capsys.readouterr().err.strip()
    assert code == 2 and err and "\n" not in err and "Traceback" not in err, err
    return err


def _old_pickle(folder: Path, component: str, target: Path) -> Path:
    """The artifact rewritten as the pickle blob older ltxlab versions saved (vae.pt / dit.pt)."""
    weights, meta = artifacts.load(folder, component)
    blob = {k: v for k, v in meta.items() if k not in ("format", "tensors_sha256")}
    if "latent_shape" in blob:  # the old blob held tuples here
        blob["latent_shape"], blob["video_shape"] = tuple(blob["latent_shape"]), tuple(blob["video_shape"])
    target.mkdir(parents=True, exist_ok=True)
    path = target / artifacts.LEGACY[component]
    torch.save({**blob, "state_dict": {k: v.clone() for k, v in weights.items()}}, path)
    return path


def test_round_trip_gives_identical_tensors_and_configs(trained, tmp_path):
    vae_dir, dit_dir = trained
    vae = load_vae(vae_dir, torch.device("cpu"))
    dit = load_dit(dit_dir, torch.device("cpu"))
    meta = artifacts.read_meta(vae_dir, "vae")
    again = tmp_path / "vae.safetensors"
    artifacts.save(again, "vae", vae.state_dict(), {k: v for k, v in meta.items() if k != "tensors_sha256"})
    weights, read = artifacts.load(again, "vae")
    assert weights.keys() == vae.state_dict().keys()
    assert all(torch.equal(weights[k], v) for k, v in vae.state_dict().items())
    assert {k: v for k, v in read.items() if k != "written_by"} == {k: v for k, v in meta.items() if k != "written_by"}
    assert read["config"] == to_dict(vae.cfg) and read["tensors_sha256"] == meta["tensors_sha256"]
    # the writer's provenance, including the thread count a load-dependent `--threads` default chose
    assert read["written_by"]["torch_threads"] == torch.get_num_threads()
    assert {"git_commit", "versions", "hardware"} <= read["written_by"].keys()
    dit_meta = artifacts.read_meta(dit_dir, "dit")
    assert dit_meta["config"] == to_dict(dit.model.config) and dit_meta["text"] == to_dict(dit.text)
    assert tuple(dit_meta["video_shape"]) == dit.video_shape and Path(dit_meta["vae_dir"]) == dit.vae_dir


def test_shared_storage_is_written_once_each(tmp_path):
    base = torch.arange(12.0)
    tied = {"a": base, "b": base, "view": base[4:8], "empty": torch.zeros(0)}  # safetensors refuses shared storage as is
    tensor_file.save(tmp_path / "t.safetensors", tied, {"x": 1})
    back, meta = tensor_file.load(tmp_path / "t.safetensors")
    assert meta == {"x": 1} and all(torch.equal(back[k], v) for k, v in tied.items())


@pytest.mark.parametrize("damage", ["truncate", "append", "header"])
def test_damaged_artifact_is_refused_in_one_sentence(trained, tmp_path, capsys, damage):
    vae_dir, dit_dir = trained
    bad = tmp_path / "vae"
    bad.mkdir()
    data = (vae_dir / artifacts.FILES["vae"]).read_bytes()
    data = {"truncate": data[: len(data) - 100], "append": data + b"\0" * 8, "header": b"\xff" * 8 + data[8:]}[damage]
    (bad / artifacts.FILES["vae"]).write_bytes(data)
    with pytest.raises(tensor_file.TensorFileError, match="is not a whole safetensors file"):
        load_vae(bad, torch.device("cpu"))
    assert tensor_file.problem(bad / artifacts.FILES["vae"]).startswith("is not a whole safetensors file")
    code = cli.main(["sample", "--checkpoint", str(dit_dir), "--vae", str(bad), "--prompt", "x",
                     "--out", str(tmp_path / "o.mp4"), "--steps", "1"])
    assert "is not a whole safetensors file" in _one_line_error(capsys, code)
    assert not (tmp_path / "o.mp4").exists()


def test_changed_tensor_bytes_fail_the_recorded_sha256(trained, tmp_path):
    vae_dir, _ = trained
    path = tmp_path / "vae.safetensors"
    data = bytearray((vae_dir / artifacts.FILES["vae"]).read_bytes())
    data[-5] ^= 0xFF  # inside the last tensor: the header still covers the file
    path.write_bytes(bytes(data))
    assert tensor_file.problem(path, digest=False) is None
    assert "does not hash to the tensors_sha256" in tensor_file.problem(path)


def test_old_pickle_is_refused_with_the_conversion_sentence_then_converted(trained, tmp_path, capsys):
    vae_dir, dit_dir = trained
    old_vae = _old_pickle(vae_dir, "vae", tmp_path / "old_vae")
    old_dit = _old_pickle(dit_dir, "dit", tmp_path / "old_dit")
    for argv in (["generate", "--dit", str(old_dit.parent), "--vae", str(vae_dir)],
                 ["generate", "--dit", str(dit_dir), "--vae", str(old_vae)],
                 ["sample", "--checkpoint", str(dit_dir), "--vae", str(old_vae.parent)]):
        code = cli.main([*argv, "--prompt", "x", "--out", str(tmp_path / "o.mp4"), "--steps", "1"])
        err = _one_line_error(capsys, code)
        assert "in the old pickle format; convert it once with `ltxlab convert-checkpoint" in err, err
    code = cli.main(["train-dit", "--vae", str(old_vae.parent), "--out", str(tmp_path / "d"), "--steps", "1"])
    assert f"ltxlab convert-checkpoint {old_vae}" in _one_line_error(capsys, code)

    assert cli.main(["convert-checkpoint", str(old_vae), str(old_dit.parent)]) == 0
    printed = capsys.readouterr().out
    assert "(VAE)" in printed and "(DiT)" in printed
    for old, new, component in ((old_vae, vae_dir, "vae"), (old_dit, dit_dir, "dit")):
        converted, meta = artifacts.load(old.parent, component)
        original, expected = artifacts.load(new, component)
        assert converted.keys() == original.keys() and all(torch.equal(converted[k], original[k]) for k in original)
        assert meta == expected  # configs, provenance and the tensors' sha256 all carried over
    assert load_dit(old_dit.parent, torch.device("cpu")).video_shape == load_dit(dit_dir, torch.device("cpu")).video_shape


class NotPlainData:  # what a pickle can smuggle in: any importable class
    pass


def test_conversion_never_runs_pickled_objects(tmp_path, capsys):
    torch.save({"kind": "ltx", "config": {}, "state_dict": {}, "payload": NotPlainData()}, tmp_path / "vae.pt")
    code = cli.main(["convert-checkpoint", str(tmp_path / "vae.pt")])
    assert "does not load as a plain-data torch checkpoint" in _one_line_error(capsys, code)
    assert not (tmp_path / "vae.safetensors").exists()


def test_training_and_sampling_unpickle_nothing(tmp_path, monkeypatch, capsys):
    """The whole chain (train_vae, encode_latents, train_dit, sample) with every unpickler made to fail."""
    from tests._generate_util import train_tiny_pair

    def refuse(*args, **kwargs):
        raise AssertionError("an artifact was unpickled")

    for owner, name in ((torch, "load"), (torch.serialization, "load"), (pickle, "load"), (pickle, "loads")):
        monkeypatch.setattr(owner, name, refuse)
    vae_dir, dit_dir = train_tiny_pair(tmp_path)
    code = cli.main(["sample", "--checkpoint", str(dit_dir), "--prompt", "a red circle moves left",
                     "--out", str(tmp_path / "s.mp4"), "--steps", "2", "--threads", "1"])
    assert code == 0 and (tmp_path / "s.mp4").stat().st_size > 0, capsys.readouterr().err
    products = [p.name for p in tmp_path.rglob("*") if p.is_file() and "checkpoints" not in p.parts]
    assert not [name for name in products if name.endswith(".pt")], products


def test_a_trained_artifact_is_a_fine_tuning_start(trained, tmp_path):
    """`vae.init` / `dit.init` take our own vae.safetensors / dit.safetensors (file or stage folder), so a run
    can fine-tune from an earlier one; a wrong kind or the other component's file is one sentence."""
    import dataclasses

    from ablations.stages.train_dit import DiTTrainConfig, build_state
    from ablations.stages.train_vae import build_vae_model
    from models import weights
    from models.config import from_dict
    from models.dit import DITS
    from models.vae import VAES

    vae_dir, dit_dir = trained
    vae_weights, vae_meta = artifacts.load(vae_dir, "vae")
    vae_cfg = dataclasses.replace(from_dict(VAES.get(vae_meta["kind"]), vae_meta["config"]), init=str(vae_dir))
    vae, report = build_vae_model(vae_cfg, torch.device("cpu"))
    assert report["key_layout"] == "ltxlab" and report["container"] == weights.OURS
    assert vae.state_dict().keys() == vae_weights.keys()
    assert all(torch.equal(v, vae_weights[k]) for k, v in vae.state_dict().items())

    dit_weights, dit_meta = artifacts.load(dit_dir / artifacts.FILES["dit"], "dit")
    dit_cfg = dataclasses.replace(from_dict(DITS.get(dit_meta["kind"]), dit_meta["config"]),
                                  init=str(dit_dir / artifacts.FILES["dit"]))
    state = build_state(dit_cfg, DiTTrainConfig(seed=0), torch.device("cpu"))
    for model in (state.model, state.ema):
        assert all(torch.equal(v, dit_weights[k]) for k, v in model.state_dict().items())
    assert all(p.requires_grad for p in state.model.parameters())

    other = next(k for k in VAES.names() if k != vae_meta["kind"])
    with pytest.raises(weights.WeightsError, match=f"holds a trained {vae_meta['kind']} VAE, not {other}") as info:
        weights.check(dataclasses.replace(vae_cfg, kind=other), "vae")
    assert "\n" not in str(info.value)
    with pytest.raises(weights.WeightsError, match="not a trained vae; give the vae.safetensors"):
        weights.check(vae_cfg, "vae", dit_dir / artifacts.FILES["dit"])


def test_inspect_reads_a_trained_artifact_with_its_header_config(trained, capsys):
    import json

    _, dit_dir = trained
    assert cli.main(["inspect", "dit", "--init", str(dit_dir), "--shape", "17x64x64", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["fits"] == "its header" and info["key_layout"] == "ltxlab" and info["params"] > 0 and len(info["sha256"]) == 64
