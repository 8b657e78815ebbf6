"""The sweep driver's checks that need no Ray (fast): bad store input is one sentence before Ray,
sweep.json always gets a final status, `--force-extend` never pools two configs into one variant,
results carry the code that computed them and the upstream results they were built from."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

import ablations.runner as runner
from ablations.cli import UserError, main
from ablations.executor import DONE, LINEAGE, execute, lineage_problem, result_sha256, upstream_lineage
from ablations.graph import StageInstance, expand_variants
from ablations.recipes import RECIPES
from ablations.recipes.common import smoke
from ablations.store import SweepStore
from models.config import to_dict
from tests._cli import one_sentence, stop_before_ray


@pytest.fixture()
def no_ray(monkeypatch):
    stop_before_ray(monkeypatch)


@pytest.fixture(scope="module")
def sweep():
    recipe = RECIPES.get("tiny-pair")()
    return dataclasses.replace(recipe, base=smoke(recipe.base), name="s")


@pytest.mark.parametrize("flags,says", [
    (["--name", "a/b"], "Sweep name 'a/b' is not usable as a folder name"),
    (["--name", "_x"], "Sweep name '_x' is not usable as a folder name"),
    (["--results", "{file}"], "afile is a file); give a results root that is a writable folder."),
    (["--results", "{file}/below"], "afile is a file); give a results root that is a writable folder."),
])
def test_a_bad_name_or_results_root_is_one_sentence_before_any_config_is_built(tmp_path, capsys, monkeypatch,
                                                                               flags, says):
    import ablations.configs

    monkeypatch.setattr(ablations.configs, "check_buildable", lambda *a: pytest.fail("configs were built"))
    (tmp_path / "afile").write_text("x")
    flags = [f.format(file=tmp_path / "afile") for f in flags]
    results = [] if "--results" in flags else ["--results", str(tmp_path)]
    code = main(["sweep", "tiny-pair", "--smoke", *results, *flags])
    assert says in one_sentence(capsys, code)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]  # nothing written


@pytest.mark.parametrize("damaged", ["runs.parquet", "metrics.parquet"])
def test_a_corrupt_table_is_refused_before_ray_and_sweep_json_keeps_its_status(no_ray, tmp_path, capsys, damaged):
    folder = tmp_path / "tiny-pair-smoke"
    folder.mkdir()
    recipe = RECIPES.get("tiny-pair")()  # the finished sweep this command reruns: the same runs
    runs = {v.run_id: v.name for v in expand_variants(smoke(recipe.base), recipe.axes, recipe.seeds, recipe.variants)}
    (folder / "sweep.json").write_text(json.dumps({"status": "done", "variants": runs}))
    (folder / damaged).write_bytes(b"PAR1" + b"\0" * 296)  # a table cut short
    before = (folder / "sweep.json").read_bytes()
    code = main(["sweep", "tiny-pair", "--smoke", "--results", str(tmp_path)])
    err = one_sentence(capsys, code)
    assert f"{damaged} is not a readable parquet file" in err and "--name NEW" in err
    assert (folder / "sweep.json").read_bytes() == before


@pytest.mark.parametrize("ending,status", [(None, "done"), (RuntimeError, "failed"), (KeyboardInterrupt, "interrupted")])
def test_sweep_json_gets_a_final_status_however_the_driver_stops(tmp_path, ending, status):
    store = SweepStore(tmp_path, "s")
    store.write_sweep_json({"status": "running"})
    try:
        with runner.final_status(store, 0.0):
            if ending is not None:
                raise ending("stop")
    except (RuntimeError, KeyboardInterrupt):
        pass
    written = json.loads((store.path / "sweep.json").read_text())
    assert written["status"] == status and written["finished_at"]


def _store_with_runs(root: Path, sweep, **setting) -> tuple[SweepStore, list]:
    """A sweep folder holding the runs of `sweep` (its axes, seed 0) as a finished invocation leaves them."""
    store = SweepStore(root, sweep.name)
    variants = expand_variants(sweep.base, sweep.axes, [0])
    for v in variants:
        store.upsert_run({"run_id": v.run_id, "variant": v.name, "seed": v.seed, "status": "done"})
        store.write_run_json(v.run_id, "config.json", to_dict(v.config))
    runner._write_sweep_json(store, sweep, variants, 0.0)
    return store, variants


def test_force_extend_refuses_runs_that_would_join_a_variant_of_other_settings(tmp_path, sweep):
    store, first = _store_with_runs(tmp_path, sweep)
    other = dataclasses.replace(sweep, base=dataclasses.replace(
        sweep.base, vae_train=dataclasses.replace(sweep.base.vae_train, steps=sweep.base.vae_train.steps + 5)))
    for seeds in ([0], [1]):  # the same cells, or new seeds of the same variants: either way two configs in one
        with pytest.raises(UserError) as refused:
            runner.check_same_runs(store, other, expand_variants(other.base, other.axes, seeds), extend=True)
        message = str(refused.value)
        assert "vae_train.steps" in message and "--name NEW" in message and len(message.splitlines()) == 1
    # new seeds under the sweep's own settings: added
    more = expand_variants(sweep.base, sweep.axes, [1, 2])
    assert set(runner.check_same_runs(store, sweep, more, extend=True)) == {v.run_id for v in first}
    # a new level under other settings is a new variant: added, and sweep.json keeps the history
    extra = dataclasses.replace(other, axes={**other.axes, "dit_train.lr": [other.base.dit_train.lr / 2]})
    new = expand_variants(extra.base, extra.axes, [0])
    previous = runner.check_same_runs(store, extra, new, extend=True)
    runner._write_sweep_json(store, extra, new, 1.0, previous)
    written = json.loads((store.path / "sweep.json").read_text())
    assert written["config"] == to_dict(sweep.base) and len(written["invocations"]) == 2
    assert written["invocations"][1]["config_changes"][0].startswith("vae_train.steps")
    assert set(written["variants"]) == {v.run_id for v in first + new}


def _fake_stage(monkeypatch, value: int = 1) -> None:
    """Stages that return at once: what is checked here is the record execute() writes around them."""
    import ablations.executor as executor

    for stage in ("cost", "eval_gen"):
        monkeypatch.setitem(executor.STAGES_RUN, stage, lambda cfg, folder, ups, on_step: {"value": value})


def test_results_record_their_code_and_upstream_and_a_rebuilt_upstream_reruns_them(tmp_path, sweep, monkeypatch):
    from ablations.executor import LOG

    _fake_stage(monkeypatch)
    config, cache = to_dict(sweep.base), tmp_path / "_cache"
    up, down = cache / "cost" / "k1", cache / "eval_gen" / "k2"
    first = execute("cost", "k1", config, {}, str(cache))
    assert {"git_commit", "dirty", "versions"} <= set(first["provenance"]) and first["upstream"] == {}
    result = execute("eval_gen", "k2", config, {"cost": str(up)}, str(cache))
    assert result["upstream"] == {"cost": {"key": "k1", "result_sha256": result_sha256(up)}}
    assert lineage_problem(result, {"cost": str(up)}) is None
    states = {i.id: runner.InstanceState(i, status="done") for i in (
        StageInstance("cost", "k1", sweep.base, ()), StageInstance("eval_gen", "k2", sweep.base, ("cost/k1",)))}
    plan = runner.Plan(variants=[])
    st = runner.InstanceState(states["eval_gen/k2"].instance)
    assert runner._reuse(st, plan, cache, False, states) and st.skipped
    # the upstream is rebuilt (deleted by hand, a fix): its new result is another file
    (up / DONE).unlink()
    execute("cost", "k1", config, {}, str(cache))
    (down / "checkpoints").mkdir()
    st = runner.InstanceState(states["eval_gen/k2"].instance)
    assert not runner._reuse(st, plan, cache, False, states)
    assert "computed from another cost result" in st.note
    assert not (down / DONE).exists() and not (down / "checkpoints").exists() and (down / LOG).exists()
    # an attempt interrupted before the rebuild left partial work: it is not resumed; the same upstream's is
    for lineage, kept in (({"cost": {"key": "k1", "result_sha256": "0" * 64}}, False), (None, True)):
        (down / "checkpoints").mkdir(exist_ok=True)
        (down / LINEAGE).write_text(json.dumps(lineage or upstream_lineage({"cost": str(up)})))
        execute("eval_gen", "k2", config, {"cost": str(up)}, str(cache))
        assert (down / "checkpoints").exists() == kept
        (down / DONE).unlink()
    assert "an upstream result changed since the last attempt; starting afresh" in (down / LOG).read_text()


def test_a_run_manifest_names_the_commits_that_computed_it_not_the_driver(sweep):
    def state(stage: str, commit: str | None, reused: bool):
        result = {"provenance": {"git_commit": commit, "dirty": False, "versions": {"torch": "2"}}} if commit else {}
        return runner.InstanceState(StageInstance(stage, "k", sweep.base, ()), status="done", result=result,
                                    skipped=reused)

    same = runner.run_provenance([state("train_vae", "aaa", True), state("eval_recon", "aaa", False)])
    assert same["git_commit"] == "aaa" and same["dirty"] is False and same["versions"] == {"torch": "2"}
    mixed = runner.run_provenance([state("train_vae", "aaa", True), state("eval_recon", "bbb", False),
                                   state("cost", None, True)])
    assert mixed["git_commit"] is None and mixed["dirty"] is None
    assert mixed["commits"] == {"aaa": ["train_vae"], "bbb": ["eval_recon"], "unrecorded": ["cost"]}
