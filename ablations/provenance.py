"""Provenance stamped on every sweep and run: git commit, package versions, hardware."""

from __future__ import annotations

import functools
import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

PACKAGES = ("ltxlab", "torch", "ray", "numpy", "pandas", "pyarrow", "av", "scikit-image", "pywavelets",
            "torchmetrics", "transformers", "streamlit")
REPO = Path(__file__).resolve().parent.parent


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=5, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def package_version(name: str = "ltxlab") -> str:
    """The installed distribution's version ('unknown' when run from an uninstalled checkout)."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def source_commit() -> tuple[str | None, bool | None]:
    """(HEAD commit, whether tracked files differ from it) of this checkout; (None, None) outside git."""
    status = _git("status", "--porcelain", "--untracked-files=no")
    return _git("rev-parse", "HEAD"), bool(status) if status is not None else None


@functools.lru_cache(maxsize=1)
def code_provenance() -> dict[str, Any]:
    """The code this process runs: {git_commit, dirty, versions}. Every stage's result.json carries
    it, so a result reused by a later checkout still names the code that computed it."""
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    commit, dirty = source_commit()
    return {"git_commit": commit, "dirty": dirty, "versions": versions}


@functools.lru_cache(maxsize=1)
def cpu_hardware() -> dict[str, Any]:
    """The CPU's model name, the instruction set torch's kernels use and the library the DiT's inference
    projections run on (`models.layers.cpu_linear_backend`): what a CPU timing or a CPU-sampled output
    depends on beyond the code (the same code ran the `small` DiT 0.91 of diffusers' time with MKL and
    0.82 with oneDNN on one AVX-512 machine)."""
    model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        model = platform.processor() or None
    info: dict[str, Any] = {"cpu_model": model}
    try:
        import torch

        from models.layers import cpu_linear_backend

        info["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
        info["cpu_linear"] = cpu_linear_backend()
    except ImportError:
        pass
    return info


@functools.lru_cache(maxsize=1)
def provenance() -> dict[str, Any]:
    """`code_provenance` and this machine's hardware: what the driver stamps on sweep.json."""
    gpu = None
    try:
        import torch

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        pass
    return {
        **code_provenance(),
        "hardware": {"host": platform.node(), "platform": platform.platform(), "cpus": os.cpu_count(), **cpu_hardware(),
                     "gpu": gpu},
    }


def machine_label(hardware: dict[str, Any]) -> str:
    """What a measured time depends on beyond the code, from a stage result's `hardware` record: the GPU, or
    the CPU model with torch's kernel ISA, the DiT projections' library and the threads ("" when unrecorded)."""
    if hardware.get("gpu"):
        return str(hardware["gpu"])
    parts = [str(hardware[k]) for k in ("cpu_capability", "cpu_linear") if hardware.get(k)]
    if hardware.get("torch_threads"):
        parts.append(f"{hardware['torch_threads']} threads")
    model = str(hardware.get("cpu_model") or "")
    return f"{model} ({', '.join(parts)})" if model and parts else model or ", ".join(parts)


def mixed_machines_note(runs: Any) -> str | None:
    """One sentence when a run table's `speed.*` times come from more than one machine kind, else None."""
    if "speed.machine" not in getattr(runs, "columns", ()):
        return None
    kinds = sorted({str(m) for m in runs["speed.machine"].dropna() if str(m)})
    if len(kinds) < 2:
        return None
    return (f"speed.* was measured on {len(kinds)} different machines ({'; '.join(kinds)}): compare measured times "
            "only between runs of one machine (speed.machine), or rerun the speed stages on one node.")
