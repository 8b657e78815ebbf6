"""models.layers.WorkspaceLinear: each CPU library's product equals nn.Linear's, follows weight changes, and the
library choice is the documented one."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from models import layers
from models.layers import CPU_LINEAR_ENV, WorkspaceLinear, cpu_linear_backend


@pytest.fixture
def backend(request, monkeypatch):  # type: ignore[no-untyped-def]
    """Forces `cpu_linear_backend()` to request.param for one test (the choice is cached per process)."""
    monkeypatch.setenv(CPU_LINEAR_ENV, request.param)
    cpu_linear_backend.cache_clear()
    try:
        chosen = cpu_linear_backend()
    except ValueError as exc:
        pytest.skip(str(exc))  # a torch build without oneDNN's packed linear
    yield chosen
    cpu_linear_backend.cache_clear()


@pytest.mark.parametrize("backend", ["mkl", "onednn"], indirect=True)
@pytest.mark.parametrize("rows", [1, 96, 300])
def test_products_equal_nn_linear(backend: str, rows: int) -> None:
    """Within float rounding of a float64 product at 1, 96 and 300 rows (MKL's packed product <= 256 rows, addmm
    above; oneDNN at every count), with the leading dims kept; MKL's packed product is addmm's sgemm bit for bit."""
    torch.manual_seed(0)
    linear = WorkspaceLinear(64, 48, role="test")
    x = torch.randn(rows, 2, 32).reshape(-1, 64)[:rows].reshape(rows, 1, 64)
    with torch.no_grad():
        out = linear(x).clone()
        exact = F.linear(x.double(), linear.weight.double(), linear.bias.double())
    assert out.shape == (rows, 1, 48) and backend == cpu_linear_backend()
    torch.testing.assert_close(out.double(), exact, rtol=1e-5, atol=1e-5)
    if backend == "mkl" and rows > 1:  # (one row: addmm runs a matrix-vector kernel, not sgemm)
        assert torch.equal(out.reshape(rows, 48), torch.addmm(linear.bias, x.reshape(rows, 64), linear.weight.t()))
    with torch.enable_grad():  # autograd: plain nn.Linear
        assert torch.equal(linear(x), F.linear(x, linear.weight, linear.bias))


@pytest.mark.parametrize("backend", ["mkl", "onednn"], indirect=True)
def test_packed_weight_follows_updates(backend: str) -> None:
    """An optimizer-style in-place update and a load_state_dict are both seen by the next no-grad product."""
    torch.manual_seed(0)
    linear = WorkspaceLinear(16, 8, role="test")
    x = torch.randn(4, 16)
    with torch.no_grad():
        before = linear(x).clone()
        linear.weight.mul_(-2.0)
        after = linear(x).clone()
        torch.testing.assert_close(after, F.linear(x, linear.weight, linear.bias), rtol=1e-5, atol=1e-5)
        assert not torch.allclose(after, before)
        linear.load_state_dict({"weight": torch.zeros(8, 16), "bias": torch.ones(8)})
        assert torch.equal(linear(x), torch.ones(4, 8))
    assert len(layers._PACKED_LINEAR[linear]) == 1  # the stale layouts were dropped


def test_auto_follows_the_cpu_and_a_bad_setting_is_one_sentence(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """`auto` is oneDNN on AVX-512 CPUs (when the build has it) and MKL on AVX2; a bad value says what to set."""
    monkeypatch.delenv(CPU_LINEAR_ENV, raising=False)
    has_onednn = layers.onednn_linear_available()
    try:
        for capability, expected in [("AVX512", "onednn" if has_onednn else "mkl"), ("AVX2", "mkl")]:
            monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda c=capability: c)
            cpu_linear_backend.cache_clear()
            assert cpu_linear_backend() == expected
        monkeypatch.setenv(CPU_LINEAR_ENV, "blas")
        cpu_linear_backend.cache_clear()
        with pytest.raises(ValueError, match=r"^LTXLAB_CPU_LINEAR='blas': set it to auto, onednn or mkl \(or unset it\)\.$"):
            cpu_linear_backend()
    finally:
        cpu_linear_backend.cache_clear()


def test_the_cli_refuses_a_bad_setting_before_any_work(monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    from ablations.cli import main

    monkeypatch.setenv(CPU_LINEAR_ENV, "blas")
    cpu_linear_backend.cache_clear()
    try:
        assert main(["results", "no-such-sweep"]) == 2
    finally:
        cpu_linear_backend.cache_clear()
    assert capsys.readouterr().err == "ltxlab results: LTXLAB_CPU_LINEAR='blas': set it to auto, onednn or mkl (or unset it).\n"
