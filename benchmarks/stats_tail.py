"""The tail of the effect test with few seeds and many sources, and why its df is what it is.

    python benchmarks/stats_tail.py [--sims 20000]

Simulates null contrast tables D[s, g] = a[s] + b[g] + e[s, g] (var_resid 1) at the designs
sweeps use (2-5 seed blocks; 4-192 sources: 16 held-out synthetic scenes by default, 192 in
the full recipes) and prints, for `evaluation.crossed` and three alternatives, the rate of
p < 0.05 and p < 0.005 (Holm compares the smallest p with alpha/m, so the tail decides the
family-wise error), the 95% interval's coverage, and the power at a true effect of 3 true
standard errors:

- pretest: the seed component dropped whenever MS_seed < MS_resid, Satterthwaite df
  (ltxlab before this benchmark existed);
- satterthwaite: seed term always kept, Satterthwaite df from the same mean squares;
- s-1: seed term always kept, df = S - 1;
- ltxlab: seed term always kept, Satterthwaite df capped at its value with MS_seed at its
  95% upper confidence limit (`evaluation.crossed.combined_df`).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy.special import stdtr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evaluation.crossed import crossed_contrasts  # noqa: E402

DESIGNS = [  # seeds, sources, var_seed, var_source (var_resid = 1)
    (2, 16, 0.25, 0.1), (3, 16, 0.25, 0.1), (3, 16, 0.05, 0.1), (3, 16, 0.0, 1.0), (5, 16, 0.25, 0.1),
    (3, 4, 1.0, 0.09), (3, 4, 0.0, 1.0), (2, 192, 0.01, 0.04), (3, 192, 0.01, 0.04), (3, 192, 0.04, 0.04), (5, 192, 0.01, 0.04),
]  # fmt: skip


def mean_squares(d: np.ndarray) -> tuple[np.ndarray, ...]:
    """Grand mean, MS_seed, MS_source, MS_resid of `(N, S, G)` tables."""
    s, g = d.shape[1:]
    grand, rows, cols = d.mean((1, 2)), d.mean(2), d.mean(1)
    ms_seed = g * ((rows - grand[:, None]) ** 2).sum(1) / (s - 1)
    ms_source = s * ((cols - grand[:, None]) ** 2).sum(1) / (g - 1)
    resid = d - rows[:, :, None] - cols[:, None, :] + grand[:, None, None]
    return grand, ms_seed, ms_source, (resid**2).sum((1, 2)) / ((s - 1) * (g - 1))


def alternatives(d: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(estimate, SE, df) per method."""
    s, g = d.shape[1:]
    grand, mss, msg, msr = mean_squares(d)
    seed_on, source_on = mss > msr, msg > msr
    k_resid = 1.0 - seed_on - source_on
    total = seed_on * mss + source_on * msg + k_resid * msr
    contrib = (np.where(seed_on, mss**2 / (s - 1), 0) + np.where(source_on, msg**2 / (g - 1), 0)
               + (k_resid * msr) ** 2 / ((s - 1) * (g - 1)))  # fmt: skip
    kept = mss + np.where(source_on, msg - msr, 0)
    kept_contrib = mss**2 / (s - 1) + np.where(source_on, msg**2 / (g - 1) + msr**2 / ((s - 1) * (g - 1)), 0)
    se = np.sqrt(kept / (s * g))
    c = crossed_contrasts(d)
    return {"pretest": (grand, np.sqrt(total / (s * g)), total**2 / contrib), "satterthwaite": (grand, se, kept**2 / kept_contrib),
            "s-1": (grand, se, np.full(len(grand), s - 1.0)), "ltxlab": (c.estimate, c.se, c.df)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sims", type=int, default=20000)
    args = parser.parse_args()
    rng = np.random.default_rng(7)
    start = time.perf_counter()
    names = ("pretest", "satterthwaite", "s-1", "ltxlab")
    print(" S   G  v_seed v_src | " + " | ".join(f"{n:>13}: p<.05 p<.005  cov  power" for n in names))
    for s, g, v_seed, v_source in DESIGNS:
        d = (rng.normal(0, np.sqrt(v_seed), (args.sims, s, 1)) + rng.normal(0, np.sqrt(v_source), (args.sims, 1, g))
             + rng.normal(0, 1.0, (args.sims, s, g)))  # fmt: skip
        shift = 3.0 * np.sqrt(v_seed / s + v_source / g + 1.0 / (s * g))
        null, alt = alternatives(d), alternatives(d + shift)
        cells = []
        for name in names:
            p0 = 2 * stdtr(null[name][2], -np.abs(null[name][0]) / null[name][1])
            p1 = 2 * stdtr(alt[name][2], -np.abs(alt[name][0]) / alt[name][1])
            cells.append(f"{'':>13}  {np.mean(p0 < 0.05):.3f} {np.mean(p0 < 0.005):.4f} {np.mean(p0 >= 0.05):.3f} {np.mean(p1 < 0.05):5.2f}")
        print(f"{s:2d} {g:3d}  {v_seed:5} {v_source:5} | " + " | ".join(cells), flush=True)
    print(f"({args.sims} null tables per design; {time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
