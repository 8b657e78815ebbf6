"""`ltxlab sweep submit` sends the sweep to a real Ray head as a Ray Job (working_dir upload,
runtime_env) and the job writes the results store on the shared path."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests._ports import free_port

ray = pytest.importorskip("ray")


@pytest.fixture
def ray_head(tmp_path, monkeypatch):
    if ray.is_initialized():
        ray.shutdown()
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # a local head without token auth
    gcs, dashboard = free_port(), free_port()
    ray_bin = str(Path(sys.executable).with_name("ray"))
    # a cluster node's `python` is its environment's python: put this venv first on PATH,
    # which the job driver inherits from the head
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    # every agent port free too: another Ray on this machine (a parallel test worker's embedded
    # one) holds the defaults (52365 ...), and a head whose job agent cannot bind never takes a job
    agent_ports = [f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
                   f"--runtime-env-agent-port={free_port()}", f"--metrics-export-port={free_port()}"]
    head = subprocess.Popen(
        [ray_bin, "start", "--head", "--block", "--num-cpus=2", f"--port={gcs}", "--dashboard-host=127.0.0.1",
         f"--dashboard-port={dashboard}", *agent_ports, "--disable-usage-stats", "--include-log-monitor=false"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, env=os.environ.copy())
    address = f"http://127.0.0.1:{dashboard}"
    from ray.job_submission import JobSubmissionClient

    deadline = time.time() + 90
    while True:
        try:
            client = JobSubmissionClient(address)
            client.list_jobs()
            break
        except Exception:  # noqa: BLE001 - the head is still starting
            if time.time() > deadline or head.poll() is not None:
                os.killpg(head.pid, signal.SIGTERM)
                pytest.fail("the Ray head did not start")
            time.sleep(1)
    yield address, client
    os.killpg(head.pid, signal.SIGTERM)
    try:  # a graceful stop takes Ray 30 s and more on a loaded machine; the session's processes go with the group
        head.wait(timeout=5)
    except subprocess.TimeoutExpired:
        os.killpg(head.pid, signal.SIGKILL)
        head.wait(timeout=30)


def test_submit_runs_the_sweep_as_a_ray_job(ray_head, tmp_path, capsys):
    from ray.job_submission import JobStatus

    from ablations.cli import main

    address, client = ray_head
    results = tmp_path / "shared-results"
    assert main(["sweep", "submit", "tiny-pair", "--address", address, "--results", str(results)]) == 0
    out = capsys.readouterr().out
    job_id = out.split("Submitted ", 1)[1].split(" ", 1)[0]
    deadline = time.time() + 400
    while client.get_job_status(job_id) not in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
        assert time.time() < deadline, "the job did not finish"
        time.sleep(2)
    logs = client.get_job_logs(job_id)
    assert client.get_job_status(job_id) == JobStatus.SUCCEEDED, logs[-3000:]
    runs = pd.read_parquet(results / "tiny-pair" / "runs.parquet")
    assert list(runs["status"]) == ["done", "done"]
    info = client.get_job_info(job_id)
    assert info.runtime_env["working_dir"].startswith(("gcs://", "/"))
    assert "Sweep tiny-pair: 2 runs done" in logs


def test_submit_validates_before_sending(capsys):
    from ablations.cli import main

    code = main(["sweep", "submit", "tiny-pair", "--address", "http://127.0.0.1:9", "--set", "vae_data.frames=16"])
    assert code == 2 and "1 + 8k" in capsys.readouterr().err
