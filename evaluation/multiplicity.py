"""Multiple-comparison adjustments of p-values (numpy only; the dashboard imports this).

One report tests many effects at once (axes x metrics, their interactions, every cell of a
survey's win matrix). At 24 tests and alpha 0.05 a null sweep shows at least one "winner"
about 70% of the time, so every report adjusts its p-values over the whole family it prints:

- Holm (1979), "A simple sequentially rejective multiple test procedure": controls the
  family-wise error rate (the chance of one or more false claims) under any dependence.
  The default: a verdict a researcher acts on should not be the one false claim in 24.
- Benjamini & Hochberg (1995): controls the false-discovery rate (the expected share of
  false claims among the claims) under independence or positive dependence. Offered for
  screening sweeps with many metrics, where a few false leads are acceptable.

Both return adjusted p-values (compare them with alpha), NaN where the input is NaN (an
effect that was not tested, such as one seed per variant, is not part of the family).
"""

from __future__ import annotations

import numpy as np

METHODS = ("holm", "bh", "none")
METHOD_NAMES = {"holm": "Holm (family-wise error)", "bh": "Benjamini-Hochberg (false-discovery rate)", "none": "no correction"}


def _in_sorted_order(p: np.ndarray, step) -> np.ndarray:  # noqa: ANN001 - step: sorted (m,) -> adjusted (m,)
    """Apply `step` to the finite p-values in ascending order and put the results back in place."""
    p = np.asarray(p, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        vals = p[ok]
        order = np.argsort(vals, kind="stable")
        back = np.empty(len(vals))
        back[order] = np.minimum(step(vals[order], len(vals)), 1.0)
        out[ok] = back
    return out


def holm(p: np.ndarray) -> np.ndarray:
    """Holm step-down adjusted p-values: max over j <= i of p_(j) * (m - j + 1), capped at 1."""
    return _in_sorted_order(p, lambda v, m: np.maximum.accumulate(v * (m - np.arange(m))))


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg step-up adjusted p-values (q-values): min over j >= i of p_(j) m / j."""
    return _in_sorted_order(p, lambda v, m: np.minimum.accumulate((v * m / np.arange(1, m + 1))[::-1])[::-1])


def adjust(p: np.ndarray, method: str = "holm") -> np.ndarray:
    """Adjusted p-values by `method` ("holm", "bh" or "none")."""
    if method == "holm":
        return holm(p)
    if method == "bh":
        return benjamini_hochberg(p)
    if method == "none":
        return np.asarray(p, dtype=float).copy()
    raise ValueError(f"Unknown multiple-comparison method {method!r}; use one of {', '.join(METHODS)}.")
