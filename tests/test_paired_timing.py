"""The speed benchmarks' verdict (benchmarks/_paired.py): the median ratio's 95% interval is calibrated,
and a median under the target whose interval is not is reported UNCLEAR, not PASS."""

from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def paired_module():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("_paired", REPO / "benchmarks" / "_paired.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["_paired"] = module  # dataclasses look their module up while the class is built
    try:
        spec.loader.exec_module(module)  # type: ignore[union-attr]
        yield module
    finally:
        sys.modules.pop("_paired", None)


@pytest.mark.parametrize("n", [8, 12, 30])
def test_median_interval_covers_the_true_median_as_often_as_it_says(paired_module, n: int) -> None:
    """Skewed ratios (lognormal, true median 0.85): the interval holds the median in about its stated
    share of 3,000 draws (binomial standard error about 0.4%)."""
    rng = random.Random(n)
    hits, coverage = 0, None
    for _ in range(3000):
        values = [0.85 * rng.lognormvariate(0.0, 0.1) for _ in range(n)]
        low, high, coverage = paired_module.median_interval(values)
        hits += low <= 0.85 <= high
    assert coverage is not None and coverage >= 0.95
    assert abs(hits / 3000 - coverage) < 0.015


def test_verdict_separates_pass_unclear_and_miss(paired_module) -> None:
    def result(ratios: list[float]):  # type: ignore[no-untyped-def]
        return paired_module.Paired(ours_s=ratios, theirs_s=[1.0] * len(ratios), ours_cpu_s=ratios,
                                    theirs_cpu_s=[1.0] * len(ratios))

    tight = [0.80 + 0.001 * i for i in range(12)]
    wide = [0.70, 0.72, 0.75, 0.78, 0.80, 0.82, 0.83, 0.86, 0.88, 0.90, 0.92, 0.95]  # median 0.825
    assert result(tight).verdict("x", 0.85).startswith("PASS x")
    unclear = result(wide).verdict("x", 0.85)
    assert unclear.startswith("UNCLEAR x") and "its interval reaches 0.900" in unclear
    assert result([r + 0.2 for r in tight]).verdict("x", 0.85).startswith("MISS x")
    assert "clearly" in result([r + 0.2 for r in tight]).verdict("x", 0.85)
    assert "clearly" not in result([r + 0.04 for r in wide]).verdict("x", 0.85)
    assert result(tight[:5]).verdict("x", 0.85).startswith("UNCLEAR x")  # 5 pairs: no 95% interval, no verdict
