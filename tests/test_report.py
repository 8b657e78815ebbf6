"""`ltxlab report`: effects with intervals, corrected verdicts in words, the A/A check, --json, bad input."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pandas as pd
import pytest

from ablations.cli import main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    spec = importlib.util.spec_from_file_location("make_store", REPO / "benchmarks" / "make_store.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    root = tmp_path_factory.mktemp("results")
    module.make_store(root, "aa", "small", videos=False, replicate=True)
    return root


def _report(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["report", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_text_report_has_units_correction_verdicts_and_aa(store, capsys):
    code, out, _ = _report(capsys, "aa", "--results", str(store))
    assert code == 0
    assert "seed block(s) x 2 source video(s)" in out and "Holm (family-wise error) over" in out
    assert "p_adjusted" in out and "mde80" in out and "n_seeds" in out
    assert "Verdicts (Holm correction over" in out and "no significant difference" in out
    assert "A/A check: the baseline (vae.kind=ltx,loss.dwt=0.0,dit.attention=cross)" in out
    assert "Best variant per metric" in out


def test_json_report_and_correction_choice(store, capsys):
    code, out, _ = _report(capsys, "aa", "--results", str(store), "--json", "--metrics", "psnr,lpips", "--correction", "bh")
    report = json.loads(out)
    assert code == 0 and report["metrics"] == ["psnr", "lpips"] and report["correction"]["method"] == "bh"
    assert report["correction"]["family_size"] == len([e for e in report["effects"] + report["interactions"] if e["status"] == "estimated"])
    effect = report["effects"][0]
    assert {"p_value", "p_adjusted", "mde80", "n_seeds", "n_sources", "verdict", "status"} <= set(effect)
    assert report["replicate"] and report["replicate"][0]["variant"] == "vae.kind=ltx,loss.dwt=0.0,dit.attention=cross"


def test_one_seed_sweep_gives_no_verdict(store, capsys):
    runs_path = store / "aa" / "runs.parquet"
    original = pd.read_parquet(runs_path)
    try:
        original.assign(status=original["status"].where(original["block"] == 0, "failed")).to_parquet(runs_path)
        code, out, _ = _report(capsys, "aa", "--results", str(store))
    finally:
        original.to_parquet(runs_path)
    assert code == 0 and "Every variant has one seed" in out
    assert "0 significant" in out and "one seed per variant: training noise cannot be estimated, so no verdict" in out


@pytest.mark.parametrize("args, message", [(["nope"], "No sweep 'nope'"), (["aa", "--metrics", "fvd"], "has no scores for fvd")])
def test_bad_input_is_one_sentence(store, capsys, args, message):
    code, _, err = _report(capsys, *args, "--results", str(store))
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
