"""A folder's checkpoints resume only under the config they were trained with (review runner finding 3).

Unit level: a two-parameter model through the real `Trainer.save` / `Trainer.resume` (DCP), no
training and no Ray. The command-level refusal is checked in test_cli_errors (train-vae).
"""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from ablations.training import checkpoint as ckpt
from ablations.training.config import ParallelConfig
from ablations.training.loop import Schedule, Trainer
from ablations.training.world import World


def _config(**train):
    return {"vae": {"kind": "ltx", "latent_channels": 4}, "vae_train": {"steps": 4, "lr": 3e-4, "seed": 0, **train}}


def _trainer(out, config, width: int = 2, steps: int = 4) -> Trainer:
    model = nn.Linear(width, 1)
    opt = torch.optim.AdamW(model.parameters())
    return Trainer("train_vae", Schedule(steps, 1, 0, 2, 4), ParallelConfig(), World(), out,
                   {"m": model}, {"m": (model, opt)}, config=config)


def _saved(out, config, step: int = 2) -> None:
    trainer = _trainer(out, config)
    trainer.step = step
    trainer.save()


def test_a_checkpoint_records_its_config_and_resumes_only_under_it(tmp_path):
    _saved(tmp_path, _config())
    meta = json.loads((ckpt.latest(tmp_path) / ckpt.META).read_text())
    assert meta[ckpt.CONFIG]["vae_train"]["seed"] == 0 and len(meta[ckpt.CONFIG_HASH]) == 12

    again = _trainer(tmp_path, _config(steps=8, checkpoint_every=50), steps=8)  # training on longer is a resume
    again.resume()
    assert again.step == 2

    with pytest.raises(ckpt.ConfigMismatchError) as info:
        _trainer(tmp_path, _config(seed=1, lr=1e-3)).resume()
    said = str(info.value)
    assert "holds checkpoints of another config (vae_train.lr 0.0003 -> 0.001, vae_train.seed 0 -> 1)" in said
    assert said.endswith(f"use a new --out or delete {tmp_path / 'checkpoints'} to start over.")


def test_another_architecture_is_refused_before_its_tensors_are_loaded(tmp_path):
    _saved(tmp_path, _config())
    other = {**_config(), "vae": {"kind": "conventional", "latent_channels": 16}}
    with pytest.raises(ckpt.ConfigMismatchError, match=r"vae.kind ltx -> conventional, vae.latent_channels 4 -> 16"):
        _trainer(tmp_path, other, width=3).resume()  # was DCP's "Size mismatch" traceback


def test_a_checkpoint_past_the_steps_asked_for_is_refused(tmp_path):
    _saved(tmp_path, _config(), step=4)
    with pytest.raises(ckpt.ConfigMismatchError, match="checkpoint at step 4, past the 2 steps asked for"):
        ckpt.check_config(tmp_path, _config(steps=2), 2)


def test_checkpoints_without_a_recorded_config_pass_only_where_the_folder_is_keyed(tmp_path):
    """A sweep's stage folder is keyed by its config, so its older checkpoints still resume there;
    a folder the user names (--out) cannot vouch for them."""
    _saved(tmp_path, None)  # as written before configs were recorded
    assert ckpt.CONFIG_HASH not in json.loads((ckpt.latest(tmp_path) / ckpt.META).read_text())
    ckpt.check_config(tmp_path, _config(), 4)
    with pytest.raises(ckpt.ConfigMismatchError, match="do not record the config they were trained with"):
        ckpt.check_config(tmp_path, _config(), 4, unrecorded_ok=False)
