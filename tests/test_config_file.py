"""Config files (ablations/config_file.py) and `ltxlab config show` (issue 17).

Round trip: every recipe's base config, dumped to TOML and read back onto another recipe's
base, is the same config. `config show` lists every leaf field of the config tree with its
declared range.
"""

from __future__ import annotations

import json

import pytest
from _cli import one_sentence

from ablations.cli import main
from ablations.config_file import apply_file_overrides, dump_toml, flatten, overrides_from_file, read_config_file
from ablations.configs import default_run_config
from ablations.overrides import apply_overrides
from ablations.recipes import RECIPES
from models.config import ConfigError, to_dict

BASES = {name: RECIPES.get(name)().base for name in RECIPES.names()}


def _leaves(cfg) -> dict:
    return flatten(to_dict(cfg))


@pytest.mark.parametrize("name", sorted(BASES))
def test_toml_round_trip_of_every_recipe(tmp_path, name):
    base = BASES[name]
    path = tmp_path / f"{name}.toml"
    path.write_text(dump_toml(base, header=f"recipe {name}"))
    other = default_run_config("conventional", "small")  # a different starting point: every value must come from the file
    assert apply_file_overrides(other, path) == base
    values, _ = read_config_file(path)
    assert values == {k: v for k, v in _leaves(base).items() if v is not None}  # TOML has no null: unset fields are comments
    assert apply_overrides(base, overrides_from_file(path)) == base  # the --set strings a sweep would take


def test_yaml_is_read_with_nulls_and_nested_keys(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("seed: 3\nvae:\n  init: null\n  logvar: per_channel\n  encoder_channels: [8, 16, 32, 64]\n"
                    "loss:\n  dwt: 0.25\n")
    assert overrides_from_file(path) == ['seed=3', 'vae.init=null', 'vae.logvar="per_channel"',
                                         'vae.encoder_channels=[8, 16, 32, 64]', 'loss.dwt=0.25']
    base = BASES["demo"]
    cfg = apply_file_overrides(base, path, ["seed=4"])  # the command line wins over the file
    assert (cfg.seed, cfg.vae.logvar, cfg.loss.dwt, cfg.vae.encoder_channels) == (4, "per_channel", 0.25, (8, 16, 32, 64))


def test_set_vae_kind_wins_over_a_file_holding_every_vae_field(tmp_path):
    """The file is applied first, then --set: a dump of the ltx recipe plus --set vae.kind=conventional is
    the conventional VAE (was: the class name conventional with the ltx geometry, 128 channels, patch 4)."""
    base = BASES["tiny-pair"]
    path = tmp_path / "run.toml"
    path.write_text(dump_toml(base).replace('logvar = "uniform"', 'logvar = "per_channel"'))
    swapped = apply_file_overrides(base, path, ["vae.kind=conventional"])
    alone = apply_overrides(base, ["vae.logvar=per_channel", "vae.kind=conventional"])
    assert swapped.vae == alone.vae and swapped.vae.logvar == "per_channel"  # a shared switch from the file carries
    assert (swapped.vae.latent_channels, swapped.vae.patch_size) != (base.vae.latent_channels, base.vae.patch_size)
    later = apply_file_overrides(base, path, ["vae.kind=conventional", "vae.latent_channels=32"])
    assert later.vae.latent_channels == 32  # the command line's other vae fields still land on the swapped VAE


def test_string_values_keep_their_type(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('[vae]\nsize = "0.9"\n')  # a string that looks like a number stays a string
    assert overrides_from_file(path) == ['vae.size="0.9"']


@pytest.mark.parametrize("text, suffix, says", [
    ("seed = 1\n[vae_train]\nstepz = 3\n", ".toml", "line 3 (vae_train.stepz): VAETrainConfig has no field 'stepz'"),
    ("seed = 1\n\n[vae]\nlogvar = 'per_chanel'\n", ".toml", "line 4: "),
    ("[loss]\ndwt = -1.0\n", ".toml", "line 2: loss.dwt must be"),
    ("seed = 1\n[vae_train\nsteps = 3\n", ".toml", "is not valid TOML: Expected ']' at the end of a table declaration (at line 2"),
    ("vae:\n  logvar: [unclosed\n", ".yaml", "is not valid YAML at line 3"),
    ("seed: 1\nvae:\n  logvarr: none\n", ".yaml", "line 3 (vae.logvarr): LTXVAEConfig has no field 'logvarr'"),
    ("- a\n- b\n", ".yml", "must hold a table of fields"),
    ("seed = 1\n", ".json", "must end in .toml, .yaml or .yml"),
    ("when: 2024-01-01\n", ".yaml", "line 1: when is a date"),
])
def test_bad_file_is_one_sentence_with_file_and_line(tmp_path, text, suffix, says):
    path = tmp_path / f"run{suffix}"
    path.write_text(text)
    with pytest.raises(ConfigError) as exc:
        apply_file_overrides(BASES["demo"], path)
    message = str(exc.value)
    assert str(path) in message and says in message and "\n" not in message, message


def test_missing_file_through_the_command(capsys, tmp_path):
    code = main(["config", "show", "demo", "--config", str(tmp_path / "absent.toml")])
    assert "absent.toml does not exist" in one_sentence(capsys, code)


@pytest.mark.parametrize("name", sorted(BASES))
def test_config_show_lists_every_field_with_its_range(capsys, name):
    assert main(["config", "show", name, "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    leaves = _leaves(BASES[name])
    assert [r["field"] for r in rows] == list(leaves)  # every field --set can reach, in config order
    assert all(r["range"] for r in rows), [r["field"] for r in rows if not r["range"]]
    assert all(r["value"] == leaves[r["field"]] == r["default"] and not r["changed"] for r in rows)


def test_config_show_marks_what_set_and_config_change(capsys, tmp_path):
    path = tmp_path / "run.toml"
    path.write_text("[vae_train]\nsteps = 9\n")
    assert main(["config", "show", "demo", "--config", str(path), "--set", "loss.dwt=0.5"]) == 0
    out = capsys.readouterr().out
    assert "2 changed" in out
    changed = [line.split()[1] for line in out.splitlines() if line.startswith("* ")]
    assert changed == ["loss.dwt", "vae_train.steps"]
    assert main(["config", "show", "demo", "--format", "toml", "--set", "loss.dwt=0.5"]) == 0
    dumped = tmp_path / "dumped.toml"
    dumped.write_text(capsys.readouterr().out)
    assert apply_file_overrides(BASES["demo"], dumped).loss.dwt == 0.5  # --format toml is a --config file


def test_config_show_refuses_a_bad_override(capsys):
    code = main(["config", "show", "demo", "--set", "vae_train.steps=0"])
    assert "vae_train.steps must be an integer from 1" in one_sentence(capsys, code)
