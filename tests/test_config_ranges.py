"""Every config field a user can set has a declared range, and every value outside it is
refused in one sentence before Ray starts (issue 15, item 8).

- Completeness: every field reachable by `--set` (the run config with each VAE and DiT kind,
  and train-dit's own run config) has a range, a `Literal` choice set or is a bool, so a new
  field cannot forget its range. The defaults and every recipe's variants lie inside.
- Refusal: a table of bad values through the real `ltxlab sweep` (Ray's start patched to fail
  the test), each refused with exit 2 and one line naming the field and its range; the same
  for `train-vae`, `train-dit` and `sample` flags, before any file is written or model loaded.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import pytest

from ablations.cli import main
from ablations.configs import default_run_config, sync_pairing
from ablations.graph import expand_variants
from ablations.recipes import RECIPES
from models.config import ConfigError, check_ranges, field_ranges
from models.dit import DITS
from models.vae import VAES, vae_config
from tests._cli import one_sentence, stop_before_ray


def _reachable(cfg: Any, prefix: str = "") -> dict[str, tuple[type, str]]:
    """dotted path -> (its dataclass, field name) for every leaf field of a config tree."""
    out = {}
    for f in dataclasses.fields(cfg):
        value, path = getattr(cfg, f.name), f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            out.update(_reachable(value, f"{path}."))
        else:
            out[path] = (type(cfg), f.name)
    return out


def _run_configs() -> list[Any]:
    """The run config with every VAE kind and every DiT kind; train-dit's DiTRunConfig too."""
    from ablations.commands.train_dit import DiTRunConfig

    configs = []
    for vae_kind in VAES.names():
        base = default_run_config(vae_kind, "tiny")
        for dit_kind in DITS.names():
            configs.append(dataclasses.replace(base, dit=DITS.get(dit_kind)(**dataclasses.asdict(base.dit))))
    base = configs[0]
    configs.append(DiTRunConfig(dit=base.dit, flow=base.flow, text=base.text, train=base.dit_train, data=base.dit_data))
    return configs


def test_every_settable_field_declares_its_range():
    missing = []
    for cfg in _run_configs():
        for path, (cls, name) in _reachable(cfg).items():
            if name not in field_ranges(cls):
                missing.append(f"{cls.__name__}.{name} (--set {path})")
    assert not missing, "fields without a declared range: " + ", ".join(sorted(set(missing)))
    assert len(_reachable(_run_configs()[0])) > 140  # the walk reached every section, not just a few


def test_defaults_presets_and_every_recipe_lie_inside_their_ranges():
    for cfg in _run_configs():
        check_ranges(cfg)
    for kind in VAES.names():
        for size in ("tiny", "small", "full"):
            check_ranges(vae_config(kind, size))
    for name in RECIPES.names():
        sweep = RECIPES.get(name)()
        for variant in expand_variants(sweep.base, sweep.axes, sweep.seeds, sweep.variants):
            check_ranges(sync_pairing(variant.config))


def test_every_range_has_a_sentence_and_refuses_nan_inf_and_blank():
    for cfg in _run_configs():
        for path, (cls, name) in _reachable(cfg).items():
            valid = field_ranges(cls)[name]
            assert valid.text and "must be" not in valid.text
            for junk in (float("nan"), float("inf"), "", "   ", [[]]):
                assert not valid.accepts(junk), f"{path} accepts {junk!r}"


def test_a_recipe_axis_outside_its_range_is_refused_before_launch():
    """`--set` is not the only way in: check_buildable checks a recipe's own values too."""
    from ablations.configs import check_buildable

    cfg = default_run_config()
    bad = dataclasses.replace(cfg, vae_train=dataclasses.replace(cfg.vae_train, steps=-5))
    with pytest.raises(ConfigError, match=r"^vae_train\.steps must be an integer from 1 to 10,000,000, not -5\.$"):
        check_buildable(bad, {"train_vae"})


# (assignment, what the sentence must contain: the field and its range)
BAD_VALUES = [
    ("vae_train.lr=-0.001", "vae_train.lr must be a finite number in (0, 1]"),
    ("vae_train.lr=0", "vae_train.lr must be a finite number in (0, 1]"),
    ("vae_train.lr=NaN", "vae_train.lr must be a finite number in (0, 1], not nan"),
    ("dit_train.lr=Infinity", "dit_train.lr must be a finite number in (0, 1], not inf"),
    ("vae_train.steps=0", "vae_train.steps must be an integer from 1 to 10,000,000"),
    ("vae_train.steps=-5", "vae_train.steps must be an integer from 1 to 10,000,000"),
    ("dit_train.steps=-1", "dit_train.steps must be an integer from 1 to 10,000,000"),
    ("vae_train.batch_size=0", "vae_train.batch_size must be an integer from 1 to 65,536"),
    ("vae_train.warmup_steps=-1", "vae_train.warmup_steps must be an integer from 0"),
    ("vae_train.grad_clip=0", "vae_train.grad_clip must be a finite number in (0,"),
    ("vae_train.betas=[0.9]", "vae_train.betas must be a list of 2 items"),
    ("vae_train.betas=[1.5,0.9]", "vae_train.betas must be a list of 2 items, each a finite number in [0, 1)"),
    ("vae_train.checkpoint_every=0", "vae_train.checkpoint_every must be an integer from 1"),
    ("dit_train.ema_decay=1.0", "dit_train.ema_decay must be a finite number in [0, 1)"),
    ("vae_data.frames=100001", "vae_data.frames must be 1 + 8k from 1 to 1,025"),
    ("vae_data.frames=16", "vae_data.frames must be 1 + 8k from 1 to 1,025, not 16; try 17"),
    ("vae_data.height=100000", "vae_data.height must be a multiple of 32 from 32 to 4,096"),
    ("vae_data.width=65", "vae_data.width must be a multiple of 32 from 32 to 4,096, not 65; try 64"),
    ("dit_data.height=0", "dit_data.height must be a multiple of 32 from 32 to 4,096"),
    ("vae_data.clips_per_video=0", "vae_data.clips_per_video must be an integer from 1"),
    ("vae_data.fps=NaN", "vae_data.fps must be a finite number in (0, 1,000]"),
    ("vae_data.scale=0.5", "vae_data.scale must be unset (null) or a finite number in [1, 100]"),
    ("vae_data.folder=", "vae_data.folder must be unset (null) or a path"),
    ("vae_data.buckets=[\"17x64\"]", "vae_data.buckets must be a list of 0 to 64 items, each a 'TxHxW' shape"),
    ("vae_train.steps.x=1", "vae_train.steps is a single value, not a section"),
    ("vae=3", "vae names a section, not a single value"),
    ("text.kind=", "text.kind must be 'minilm' or 'hf:<Hugging Face name or local path>'"),
    ("text.kind=t5", "text.kind must be 'minilm' or 'hf:<Hugging Face name or local path>'"),
    ("text.max_length=0", "text.max_length must be an integer from 1 to 4,096"),
    ("dit.num_layers=0", "dit.num_layers must be an integer from 1 to 256"),
    ("dit.head_dim=15", "dit.head_dim must be a multiple of 2 from 2 to 1,024"),
    ("dit.num_heads=-2", "dit.num_heads must be an integer from 1 to 256"),
    ("dit.init=", "dit.init must be unset (null) or a path"),
    ("vae.latent_channels=0", "vae.latent_channels must be an integer from 1 to 4,096"),
    ("vae.patch_size=0", "vae.patch_size must be an integer from 1 to 16"),
    ("vae.encoder_strides=[[2,2],[2,2,2],[2,2,2],[1,1,1]]", "vae.encoder_strides must be a list of 1 to 8 items"),
    ("loss.kl=-1", "loss.kl must be a finite number in [0, 1,000,000]"),
    ("loss.dwt=NaN", "loss.dwt must be a finite number in [0, 1,000,000], not nan"),
    ("loss.diffusion_max_t=0", "loss.diffusion_max_t must be a finite number in (0, 1]"),
    ("loss.disc_lr=-1", "loss.disc_lr must be a finite number in (0, 1]"),
    ("flow.caption_dropout=1.5", "flow.caption_dropout must be a finite number in [0, 1]"),
    ("flow.decode_timestep=-0.1", "flow.decode_timestep must be a finite number in [0, 1]"),
    ("flow.logit_normal_std=0", "flow.logit_normal_std must be a finite number in (0, 10]"),
    ("flow.shift_max_tokens=1", "flow.shift_max_tokens (1) must be larger than flow.shift_min_tokens"),
    ("sample.steps=0", "sample.steps must be an integer from 1 to 10,000"),
    ("sample.guidance_scale=-1", "sample.guidance_scale must be a finite number in [0, 100]"),
    ("sample.tasks=[\"t2x\"]", "sample.tasks must be a list of 1 to 2 items, each one of 't2v', 'i2v'"),
    ("eval.heldout_prompts=0", "eval.heldout_prompts must be an integer from 1 to 10,000"),
    ("eval.recon_metrics=[\"psnrr\"]", "eval.recon_metrics must be a list of 1 to 64 items, each one of"),
    ("eval.fvd_frames=0", "eval.fvd_frames must be an integer from 1 to 1,024"),
    ("eval.weights.i3d=", "eval.weights.i3d must be unset (null) or a path"),
    ("cost.h100_utilisation=0", "cost.h100_utilisation must be a finite number in (0, 1]"),
    ("cost.reference_shape=[0,512,768]", "cost.reference_shape must be a list of 3 items"),
    ("train.workers=0", "train.workers must be an integer from 1 to 4,096"),
    ("train.grad_accum=0", "train.grad_accum must be an integer from 1 to 4,096"),
    ("train.cpus_per_worker=0", "train.cpus_per_worker must be a finite number in (0, 1,024]"),
    ("train.data_workers=-1", "train.data_workers must be an integer from 0 to 256"),
    ("seed=-1", "seed must be an integer from 0 to 2,147,483,647"),
    # in range one by one, but not together: found by one forward on the meta device (shapes only) or a config.json
    ("dit.patch=4x4x2", "The DiT cannot run on 9x32x32 clips of dit_data (ValueError: latent height x width 1x1 must "
                        "be divisible by the 4x4x2 patch.); check dit.patch"),
    ("vae.patch_size=3", "The VAE cannot encode and decode 9x32x32 clips of vae_data (ValueError: video of 9x32x32"),
    ("vae.in_channels=1", "The VAE cannot encode and decode 9x32x32 clips of vae_data (RuntimeError"),
    ("dit.caption_channels=100", "dit.caption_channels is 100 but text.kind=minilm gives 384-d captions; set "
                                 "dit.caption_channels=384."),
    ("text.kind=hf:/no/such/encoder", "Text encoder folder /no/such/encoder does not exist"),
]


@pytest.fixture()
def no_ray(monkeypatch):
    stop_before_ray(monkeypatch)  # an invalid config that got this far fails the test with RayReached


def test_the_table_is_wide():
    assert len(BAD_VALUES) >= 37 and len({a.split("=")[0] for a, _ in BAD_VALUES}) >= 50


@pytest.mark.parametrize("assignment,expected", BAD_VALUES, ids=[a for a, _ in BAD_VALUES])
def test_bad_set_value_is_one_sentence_before_ray(no_ray, tmp_path, capsys, assignment, expected):
    started = time.perf_counter()
    code = main(["sweep", "tiny-pair", "--results", str(tmp_path), "--set", assignment])
    elapsed = time.perf_counter() - started
    err = one_sentence(capsys, code)
    assert expected in err, err
    assert not any(tmp_path.iterdir()), "something was written for an invalid config"
    print(f"{assignment}: refused in {elapsed:.3f} s")


def test_frames_within_range_but_longer_than_every_bundled_video(no_ray, tmp_path, capsys):
    """In range, yet no bundled video has 121 held-out frames: refused from container metadata, before Ray."""
    code = main(["sweep", "tiny-pair", "--results", str(tmp_path), "--set", "vae_data.frames=121"])
    err = one_sentence(capsys, code)
    assert "No video in the bundled corpus is long and large enough for 121x32x32 clips in both splits" in err


@pytest.mark.parametrize("flags,expected", [
    (["--steps", "-5"], "vae_train.steps must be an integer from 1 to 10,000,000, not -5."),
    (["--lr", "-0.1"], "vae_train.lr must be a finite number in (0, 1], not -0.1."),
    (["--lr", "nan"], "vae_train.lr must be a finite number in (0, 1], not nan."),
    (["--frames", "100001"], "frames must be 1 + 8k from 1 to 1,025"),
    (["--set", "loss.kl=-1"], "loss.kl must be a finite number in [0, 1,000,000], not -1.0."),
])
def test_train_vae_refuses_before_writing(tmp_path, capsys, flags, expected):
    out = tmp_path / "vae"
    code = main(["train-vae", "--out", str(out), *flags])
    assert expected in one_sentence(capsys, code)
    assert not out.exists()


@pytest.mark.parametrize("flags,expected", [
    (["--steps", "0"], "train.steps must be an integer from 1 to 10,000,000, not 0."),
    (["--batch-size", "-4"], "train.batch_size must be an integer from 1 to 65,536, not -4."),
    (["--set", "flow.i2v_probability=2"], "flow.i2v_probability must be a finite number in [0, 1], not 2.0."),
    (["--set", "train.steps.x=1"], "train.steps is a single value, not a section"),
])
def test_train_dit_refuses_before_encoding(tmp_path, capsys, flags, expected):
    vae = tmp_path / "vae"
    vae.mkdir()
    (vae / "vae.safetensors").write_bytes(b"")  # never read: --preset names the VAE kind, and the refusal comes first
    out = tmp_path / "dit"
    code = main(["train-dit", "--vae", str(vae), "--preset", "ltx", "--out", str(out), *flags])
    assert expected in one_sentence(capsys, code)
    assert not out.exists()


@pytest.mark.parametrize("flags,expected", [
    (["--steps", "0"], "sample.steps must be an integer from 1 to 10,000, not 0."),
    (["--guidance", "nan"], "sample.guidance_scale must be a finite number in [0, 100], not nan."),
    (["--guidance", "-3"], "sample.guidance_scale must be a finite number in [0, 100], not -3.0."),
    (["--seed", "-1"], "sample.seed must be an integer from 0 to 2,147,483,647, not -1."),
])
def test_sample_refuses_before_loading(tmp_path, capsys, flags, expected):
    missing = tmp_path / "no-such-checkpoint"  # loading it would fail differently: the range comes first
    out = tmp_path / "video.mp4"
    code = main(["sample", "--checkpoint", str(missing), "--prompt", "a red circle", "--out", str(out), *flags])
    assert expected in one_sentence(capsys, code)
    assert not out.exists()


def test_ranges_are_listable_with_defaults():
    """What `ltxlab config show` (issue 17) will print: field, default and range, for every leaf."""
    cfg = default_run_config()
    rows = [(path, getattr(cfg_for(cfg, path), name), field_ranges(cls)[name].text)
            for path, (cls, name) in _reachable(cfg).items()]
    assert ("vae_train.steps", 400, "an integer from 1 to 10,000,000") in rows
    assert ("dit.patch", "1x1x1", "one of '1x1x1', '2x2x1', '4x4x2'") in rows
    assert all(text for _, _, text in rows)


def cfg_for(cfg: Any, path: str) -> Any:
    """The section that holds the leaf `path`."""
    for name in path.split(".")[:-1]:
        cfg = getattr(cfg, name)
    return cfg

