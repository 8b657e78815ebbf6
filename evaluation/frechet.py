"""The Frechet distance between two Gaussians fitted to feature sets, in float64 (FID, FVD).

    d^2 = |mu_1 - mu_2|^2 + tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2))

Follows StyleGAN-V's `src/metrics/frechet_video_distance.py` and `metric_utils.py`
(itself after StyleGAN2-ADA's FID): features are accumulated in float64, the covariance is
the population one (E[x x^T] - mu mu^T, divided by N, not N - 1), the matrix square root
is `scipy.linalg.sqrtm` of S_1 S_2 and its real part is kept (round-off can leave a tiny
imaginary part).

Small samples: the distance computed from N samples is biased upward, by a term that
shrinks roughly as 1/N, so two numbers are comparable only at the same N; below a
minimum N the callers refuse (`sample_count_reason`).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

# StyleGAN-V's protocol: 2048 videos per set; this is the number an FVD is comparable with.
PROTOCOL_SAMPLES = 2048


def feature_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) features -> (mean (D,), population covariance (D, D)), both float64 (StyleGAN-V's FeatureStats)."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"Feature statistics need an (N, D) array with N >= 2, got shape {x.shape}.")
    mean = x.mean(axis=0)
    cov = x.T @ x / x.shape[0] - np.outer(mean, mean)
    return mean, cov


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """|mu1 - mu2|^2 + tr(sigma1 + sigma2 - 2 sqrtm(sigma1 @ sigma2)), float64; the real part."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise ValueError(f"Mismatched Gaussian statistics: means {mu1.shape} and {mu2.shape}, "
                         f"covariances {sigma1.shape} and {sigma2.shape}.")
    mean_term = np.square(mu1 - mu2).sum()
    root = scipy.linalg.sqrtm(sigma1 @ sigma2)
    return float(np.real(mean_term + np.trace(sigma1 + sigma2 - 2.0 * root)))


def frechet_distance_of_features(features1: np.ndarray, features2: np.ndarray) -> float:
    """The Frechet distance of Gaussians fitted to two (N_i, D) feature sets."""
    return frechet_distance(*feature_stats(features1), *feature_stats(features2))


def sample_count_reason(metric: str, counts: tuple[int, int], min_samples: int) -> str | None:
    """None when both sets hold >= min_samples, else the one sentence that says why the metric refuses."""
    n = min(counts)
    if n >= max(2, min_samples):
        return None
    return (f"{metric} needs at least {max(2, min_samples)} videos in each set and got {n}, because the Frechet "
            f"distance estimated from N samples is biased upward (sample means and covariances add spread that "
            f"only grows the distance, by roughly 1/N), so {metric} at N={n} is not comparable with "
            f"{metric} at N={PROTOCOL_SAMPLES}")
