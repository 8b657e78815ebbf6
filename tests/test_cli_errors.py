"""Everyday-use errors of the `ltxlab` commands (issue 17): one sentence on stderr and exit code 2,
never a traceback; a closed stdout pipe; `--version`; defaults in `--help`; `--size` renamed;
`--threads` and progress lines.

In-process (`ablations.cli.main`) except where a real pipe is the point.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _cli import one_sentence

from ablations.cli import DefaultsFormatter, build_parser, main
from ablations.commands.common import ProgressLines

REPO = Path(__file__).resolve().parent.parent


def _refused(capsys, argv: list[str]) -> str:
    """Run argv; it must be refused in one sentence with exit 2. Returns that sentence."""
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own refusals
        code = exc.code
    return one_sentence(capsys, code)


# --- numeric flags: each was a traceback (ZeroDivisionError, NaN loss, allocation failure) or silently accepted


@pytest.mark.parametrize("argv, says", [
    (["train-vae", "--out", "{tmp}/v", "--batch-size", "0"], "batch_size must be an integer from 1"),
    (["train-vae", "--out", "{tmp}/v", "--threads", "0"], "--threads must be an integer from 1"),
    (["train-vae", "--out", "{tmp}/v", "--lr", "nan"], "lr must be a finite number"),
    (["train-dit", "--vae", "{tmp}/none", "--out", "{tmp}/d", "--batch-size", "0"], "batch_size must be an integer from 1"),
    (["train-dit", "--vae", "{tmp}/none", "--out", "{tmp}/d", "--steps", "-1"], "steps must be an integer from 1"),
    (["sample", "--checkpoint", "{tmp}/none", "--prompt", "a", "--out", "{tmp}/s.mp4", "--steps", "0"], "steps must be"),
    (["sample", "--checkpoint", "{tmp}/none", "--prompt", "a", "--out", "{tmp}/s.mp4", "--guidance", "inf"], "guidance"),
    (["inspect", "dit", "--fps", "0"], "--fps must be a frame rate above 0"),
    (["inspect", "dit", "--fps", "nan"], "--fps must be a frame rate above 0"),
    (["inspect", "vae", "--workers", "99999999999999"], "--workers must be from 1 to 1,000,000"),
    (["metrics", "--ref", "{tmp}/a.mp4", "--test", "{tmp}/b.mp4", "--fvd-min-samples", "1"], "--fvd-min-samples must be at least 2"),
    (["aesthetic", "train", "--pairs", "{tmp}/p.csv", "--out", "{tmp}/s", "--image-size", "16"], "--image-size must be an integer from 32"),
    (["aesthetic", "train", "--pairs", "{tmp}/p.csv", "--out", "{tmp}/s", "--lr", "inf"], "--lr must be a finite number"),
    (["aesthetic", "train", "--pairs", "{tmp}/p.csv", "--out", "{tmp}/s", "--seed", "-1"], "--seed must be an integer from 0"),
    (["aesthetic", "train", "--pairs", "{tmp}/p.csv", "--out", "{tmp}/s", "--frames", "99999999999999"], "--frames must be"),
    (["plan", "x", "--effect", "psnr=0.1", "--power", "2"], "--power must be in"),
    (["train-vae", "--out", "{tmp}/v", "--batch-size", "a"], "invalid int value: 'a'"),
    (["sample", "--checkpoint", "x", "--prompt", "a", "--out", "y", "--threads", "a"], "invalid int value: 'a'"),
    (["train-vae"], "the following arguments are required: --out"),
    (["sweep", "demo", "--results", "{tmp}/r", "--seeds", "a,b"], "--seeds takes comma-separated non-negative integers"),
    (["sweep", "demo", "--results", "{tmp}/r", "--seeds", "0,0"], "--seeds lists a seed twice"),
    (["sweep", "demo", "--results", "{tmp}/r", "--config", "{tmp}/missing.toml"], "missing.toml"),
    # via submit, which builds the sweep as a run does, so code without the check fails here without starting Ray
    (["sweep", "submit", "demo", "--max-retries", "-1"], "--max-retries must be an integer from 0 to 100"),
    (["sweep", "submit", "demo", "--max-retries", "101"], "--max-retries must be an integer from 0 to 100"),
])
def test_bad_flag_is_one_sentence(capsys, tmp_path, argv, says):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert says in _refused(capsys, argv)
    assert not (tmp_path / "v").exists() and not (tmp_path / "d").exists()  # refused before anything was written


def test_model_size_given_to_the_clip_size_flag_is_refused(capsys, tmp_path):
    err = _refused(capsys, ["train-vae", "--out", str(tmp_path / "v"), "--size", "tiny"])
    assert "--model-size" in err and "--resolution" in err


def test_size_is_a_deprecated_alias_of_resolution(capsys):
    args = build_parser().parse_args(["train-vae", "--out", "x", "--size", "32x64"])
    assert args.resolution == "32x64"
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "deprecated" in err[0] and "--resolution 32x64" in err[0]
    assert build_parser().parse_args(["eval-recon", "--checkpoint", "c", "--resolution", "96x128"]).resolution == "96x128"
    assert capsys.readouterr().err == ""


# --- a closed stdout pipe


def test_stdout_closed_by_head_exits_quietly(tmp_path):
    """`ltxlab inspect ... | head -c 10` after head has read its 10 bytes and gone: deterministic EPIPE."""
    read_end, write_end = os.pipe()
    head = subprocess.Popen(["head", "-c", "10"], stdin=read_end, stdout=subprocess.PIPE)
    os.close(read_end)
    os.write(write_end, b"0123456789")
    assert head.communicate(timeout=30)[0] == b"0123456789"  # head has exited: the pipe has no reader now
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "ablations.cli", "inspect", "vae", "--size", "tiny", "--json"],
                          stdout=write_end, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env, timeout=120)
    os.close(write_end)
    assert done.stderr == "" and done.returncode == 1, done.stderr  # nothing on stderr: no BrokenPipeError traceback


# --- --version and --help


def test_version_names_the_package_version_and_commit(capsys):
    from ablations.provenance import package_version, source_commit

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    out = capsys.readouterr().out.strip()
    assert exc.value.code == 0 and out.startswith(f"ltxlab {package_version()}")
    commit, _ = source_commit()
    if commit:
        assert f"git {commit[:7]}" in out


def _parsers(parser: argparse.ArgumentParser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in set(action.choices.values()):
                yield from _parsers(sub)


def test_every_help_shows_defaults_once():
    checked = 0
    for parser in _parsers(build_parser()):
        assert parser.formatter_class is DefaultsFormatter, parser.prog
        formatter = parser._get_formatter()
        for action in parser._actions:
            if not action.option_strings or action.help == argparse.SUPPRESS:
                continue
            text = formatter._expand_help(action) if action.help else ""
            showable = action.default not in (None, False, [], argparse.SUPPRESS)
            assert len(re.findall(r"default", text, re.I)) <= 1, f"{parser.prog} {action.option_strings}: {text}"
            if showable and action.dest != "help":
                assert re.search(r"default", text, re.I), f"{parser.prog} {action.option_strings} hides its default"
                checked += 1
    assert checked > 50
    assert "(default: 4)" in " ".join(build_parser()._subparsers._group_actions[0].choices["train-vae"].format_help().split())


# --- threads and progress


def test_progress_lines_every_interval_with_rate_and_eta():
    now = [0.0]
    lines: list[str] = []

    class Sink:
        def write(self, text):
            lines.extend(line for line in text.splitlines() if line)

        def flush(self):
            pass

    progress = ProgressLines("train-vae", every=10.0, stream=Sink(), clock=lambda: now[0])
    for step in range(1, 101):  # one step per second
        progress(step, 100, {"total": 1.0 / step})
        now[0] += 1.0
    assert lines[0].startswith("train-vae: step 1/100 (1%)  total 1")
    assert len(lines) == 1 + 9 + 1  # the first step, every 10 s, the last step
    assert "step 11/100" in lines[1] and "1 it/s  ETA 1m29s" in lines[1] and "step 21/100" in lines[2]
    assert lines[-1].startswith("train-vae: step 100/100 (100%)") and lines[-1].endswith("done")


def test_train_vae_threads_config_file_and_progress_in_a_log(capsys, tmp_path):
    """--threads sets torch's pool; --config's fields and --set apply (--set wins); progress lines reach a log;
    the same --out under another config is refused (it resumed the other config's checkpoint)."""
    before = torch.get_num_threads()
    config = tmp_path / "run.toml"
    config.write_text("[vae_train]\nsteps = 3\nbatch_size = 2\n\n[vae_data]\nnum_scenes = 2\nclips_per_video = 1\n")
    try:
        code = main(["train-vae", "--out", str(tmp_path / "v"), "--data", "synthetic", "--frames", "9",
                     "--resolution", "32x32", "--threads", "1", "--config", str(config), "--set", "vae_train.steps=2"])
        assert code == 0 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    saved = json.loads((tmp_path / "v" / "run_config.json").read_text())
    assert saved["vae_train"]["steps"] == 2 and saved["vae_train"]["batch_size"] == 2
    assert saved["vae_data"]["num_scenes"] == 2
    err = capsys.readouterr().err  # pytest's captured stderr is not a terminal: lines, not a tqdm bar
    assert re.search(r"^train-vae: step 1/2 \(50%\)", err, re.M) and re.search(r"^train-vae: step 2/2 .* done$", err, re.M)

    # the same --out under another seed: refused before any data is read, run_config.json left as it was
    before = (tmp_path / "v" / "run_config.json").read_bytes()
    err = _refused(capsys, ["train-vae", "--out", str(tmp_path / "v"), "--data", "synthetic", "--frames", "9",
                            "--resolution", "32x32", "--config", str(config), "--set", "vae_train.steps=2", "--seed", "1"])
    assert "holds checkpoints of another config (vae_data.seed 0 -> 1, vae_train.seed 0 -> 1); use a new --out" in err
    assert (tmp_path / "v" / "run_config.json").read_bytes() == before


def test_bad_field_in_a_config_file_names_file_and_line(capsys, tmp_path):
    config = tmp_path / "run.toml"
    config.write_text("seed = 1\n\n[vae_train]\nsteps = 3\nbatch_size = 0\n")
    err = _refused(capsys, ["train-vae", "--out", str(tmp_path / "v"), "--config", str(config)])
    assert f"{config}, line 5: vae_train.batch_size must be an integer from 1" in err
    assert not (tmp_path / "v").exists()


@pytest.mark.parametrize("cores, load, expected", [(16, 0.0, 8), (16, 11.6, 4), (2, 0.2, 2), (2, 11.6, 1), (1, 0.0, 1)])
def test_default_threads_leave_busy_cores_alone(monkeypatch, cores, load, expected):
    """On a loaded machine more threads than idle cores cost 10x (benchmarks/train_threads.py)."""
    from ablations import threads

    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: set(range(cores)))
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (load, load, load))
    assert threads.default_threads() == expected
    assert threads.threads_per_task(4) == max(1, cores // 4)


def test_sweep_config_file_sets_fields_and_travels_to_a_cluster_job_as_set_strings(tmp_path):
    """`ltxlab sweep --config FILE`: the file's fields reach the base config (--set wins), and a
    `sweep submit` entrypoint carries them as --set strings (the cluster never sees the file)."""
    from ablations.commands.sweep import build_sweep, job_entrypoint

    config = tmp_path / "run.toml"
    config.write_text("[vae_train]\nsteps = 7\nlr = 2e-4\n")
    args = build_parser().parse_args(["sweep", "tiny-pair", "--smoke", "--config", str(config),
                                      "--set", "vae_train.lr=1e-4", "--results", str(tmp_path / "r")])
    base = build_sweep(args, "tiny-pair").base
    assert base.vae_train.steps == 7 and base.vae_train.lr == 1e-4
    entry = job_entrypoint(args, "tiny-pair")
    assert "--set vae_train.steps=7" in entry and entry.index("vae_train.lr=0.0002") < entry.index("vae_train.lr=1e-4")
    assert str(config) not in entry


def _dead_port() -> int:
    import socket

    with socket.socket() as sock:  # bound then closed: nothing listens there
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("argv, says", [
    (["sweep", "submit", "tiny-pair", "--smoke", "--address", "http://127.0.0.1:{port}"], "No Ray dashboard answers at"),
    (["sweep", "tiny-pair", "--smoke", "--address", "ray://127.0.0.1:{port}"], "No Ray cluster answers at"),
    (["sweep", "tiny-pair", "--smoke", "--address", "127.0.0.1:{port}"], "No Ray cluster answers at"),
])
def test_an_unreachable_cluster_is_one_sentence_and_no_sweep_is_left_running(ray_local, capsys, tmp_path, argv, says):
    # with this process already connected to an embedded Ray (ray_local), as in a notebook: the
    # address is still checked, not silently replaced by the connected cluster
    port = _dead_port()
    argv = [a.format(port=port) for a in argv] + ["--results", str(tmp_path), "--quiet", "--no-report"]
    assert says in _refused(capsys, argv)
    assert not list(tmp_path.glob("*/sweep.json"))  # nothing says "running"


def test_an_address_other_than_the_connected_cluster_is_refused():
    from ablations.cli import UserError
    from ablations.runner import _check_same_cluster

    with pytest.raises(UserError, match="already connected to the Ray cluster at 127.0.0.1:6379, not 127.0.0.1:6380"):
        _check_same_cluster("127.0.0.1:6380", "127.0.0.1:6379")
    _check_same_cluster("localhost:6379", "127.0.0.1:6379")  # the same GCS, named another way
    _check_same_cluster("ray://127.0.0.1:10001", "127.0.0.1:6379")  # a Ray Client address: not comparable
    _check_same_cluster(None, "127.0.0.1:6379")


def test_survey_create_with_db_in_a_missing_folder_is_one_sentence_before_encoding(capsys, tmp_path):
    from survey.examples import write_example_dir

    src = write_example_dir(tmp_path / "src", ["a", "b"], n_prompts=2)
    db = tmp_path / "missing" / "sub" / "survey.db"
    says = _refused(capsys, ["survey", "create", "s", "--from-dir", str(src), "--db", str(db)])
    assert "does not exist; create it first" in says
    assert not (tmp_path / "missing").exists()  # nothing was made on the way
