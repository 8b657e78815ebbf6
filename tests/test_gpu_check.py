"""The GPU check (`benchmarks/gpu_check.sh`) must run on the GPU image, which has python3 with
torch, numpy, pandas and safetensors but no ray, PyAV, diffusers, pywavelets or streamlit: its two
scripts' GPU paths run here at tiny size (`--dry-run`) with those packages refused at import."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ABSENT_ON_GPU_IMAGE = ("ray", "diffusers", "pywt", "av", "streamlit", "fastapi", "uvicorn", "sqlalchemy", "playwright")

BLOCKER = f"""
import sys
BLOCK = {set(ABSENT_ON_GPU_IMAGE)!r}
class _Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCK:
            raise ModuleNotFoundError(f"No module named {{name!r}} (not on the GPU image)")
        return None
sys.meta_path.insert(0, _Refuse())
"""


@pytest.fixture(scope="module")
def gpu_image_env(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("gpu_image")
    (folder / "sitecustomize.py").write_text(BLOCKER)
    return {**os.environ, "PYTHONPATH": str(folder), "OMP_NUM_THREADS": "1"}


def _run(env: dict[str, str], *args: str) -> str:
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_the_blocker_refuses_what_the_gpu_image_lacks(gpu_image_env):
    proc = subprocess.run([sys.executable, "-c", "import av"], env=gpu_image_env, capture_output=True, text=True)
    assert proc.returncode != 0 and "not on the GPU image" in proc.stderr


def test_generate_cuda_path_needs_nothing_the_gpu_image_lacks(gpu_image_env):
    out = _run(gpu_image_env, "benchmarks/generate_speed.py", "--cuda", "--dry-run", "--steps", "2", "--repeats", "1")
    assert "FLOP-bound time at 800 TFLOP/s" in out
    assert "dry run (tiny, CPU, bf16): wall median" in out and "the GPU figure is missing" in out


def test_scaling_gpu_path_needs_nothing_the_gpu_image_lacks(gpu_image_env):
    out = _run(gpu_image_env, "benchmarks/scaling.py", "--gpu", "--dry-run", "--steps", "4")
    assert '"dry_run": true' in out and '"step_s"' in out
