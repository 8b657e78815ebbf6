"""A training stage trains on the device Ray gave it, which is the one its key records
(`ablations.graph.training_numerics`): a mismatch is refused in one sentence before any step.

The cluster here declares GPUs the machine does not have (Ray lets a node advertise any count), so
a task is handed "GPU 0" while this CPU-only torch sees none: what a CPU torch wheel on a GPU node does.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ablations.training import launch
from ablations.training.config import ParallelConfig

ENTRY = "builtins:dict"  # an entry that accepts layout= and on_step= and trains nothing


@pytest.fixture(scope="module")
def fake_gpu_ray():
    """A local Ray whose one node advertises 2 GPUs (none exist); the shared 2-CPU Ray is shut down first."""
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        ray.shutdown()
    ray.init(address="local", num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


def test_check_device_refuses_either_mismatch(monkeypatch) -> None:
    launch.check_device(torch.cuda.is_available(), "train_dit")  # the device this process has: fine
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match=r"^train_dit: Ray gave this worker a GPU, but torch .* sees no CUDA "
                                               r"device; install a CUDA build of torch on the GPU nodes"):
            launch.check_device(True, "train_dit")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(RuntimeError, match=r"^train_vae: Ray gave this worker no GPU, but torch sees 1 "):
        launch.check_device(False, "train_vae")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a torch that sees no GPU")
def test_a_gpu_task_whose_torch_sees_none_fails_before_training(fake_gpu_ray, tmp_path: Path) -> None:
    """One-worker stages run in their Ray task: given GPU 0 (CUDA numerics in the key) they refuse to train on the CPU;
    given no GPU they run. Outside Ray (a driver) nothing is checked."""
    ray = fake_gpu_ray

    @ray.remote
    def stage(folder: str) -> dict:
        return launch.run(ENTRY, {}, ParallelConfig(), Path(folder), name="train_dit")

    with pytest.raises(ray.exceptions.RayTaskError, match=r"train_dit: Ray gave this worker a GPU, but torch"):
        ray.get(stage.options(num_gpus=1).remote(str(tmp_path / "gpu")))
    assert ray.get(stage.options(num_gpus=0).remote(str(tmp_path / "cpu")))["restarts"] == 0
    assert launch.run(ENTRY, {}, ParallelConfig(), tmp_path / "driver", name="train_dit")["restarts"] == 0


@pytest.mark.skipif(bool(torch.version.cuda), reason="needs a CPU-only torch build")
def test_a_ray_train_job_on_gpus_with_cpu_torch_is_refused_before_launch(fake_gpu_ray, tmp_path: Path) -> None:
    layout = ParallelConfig(workers=2, gpus_per_worker=1, cpus_per_worker=1)
    with pytest.raises(RuntimeError, match=r"^train_vae: the cluster has GPUs for these 2 workers, but torch .* is a "
                                           r"CPU-only build; .* or set train.gpus_per_worker=0 to train on CPUs\.$"):
        launch.run(ENTRY, {}, layout, tmp_path, name="train_vae")
    assert not list(tmp_path.iterdir())  # nothing launched, nothing written
