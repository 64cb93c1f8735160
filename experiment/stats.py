"""Uncertainty for per-question scores on one dev set.

Hand-written (numpy only): scipy is not a dependency of lmcot, and ``scipy.stats.bootstrap`` has no
paired two-sample test; the exact McNemar test is a two-sided binomial test on the discordant pairs,
a few lines with ``math.comb``.
"""

from __future__ import annotations

import math

import numpy as np


def bootstrap_ci(values: list[float], samples: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (resampling questions)."""
    x = np.asarray(values, dtype=float)
    if len(x) == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(samples, len(x)))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def paired_bootstrap(a: list[float], b: list[float], samples: int = 1000, seed: int = 0) -> dict[str, float]:
    """Mean difference a - b over the same questions, its 95% interval, and a two-sided p-value
    (twice the share of resamples on the other side of zero, Koehn 2004 style)."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape:
        raise ValueError("paired bootstrap needs scores for the same questions")
    d = x - y
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), size=(samples, len(d)))].mean(axis=1)
    lo, hi = np.quantile(means, [0.025, 0.975])
    diff = float(d.mean())
    if diff == 0 and not d.any():
        p = 1.0
    else:
        p = min(1.0, 2 * float(np.mean(means <= 0) if diff > 0 else np.mean(means >= 0)))
    return {"diff": diff, "ci_low": float(lo), "ci_high": float(hi), "p": p}


def mcnemar_exact(a: list[float], b: list[float]) -> dict[str, float]:
    """Exact McNemar test on paired 0/1 outcomes: ``b01`` = only b right, ``b10`` = only a right,
    p = two-sided binomial(b01 + b10, 1/2) probability of a split at least this uneven."""
    b10 = sum(1 for x, y in zip(a, b) if x >= 0.5 > y)
    b01 = sum(1 for x, y in zip(a, b) if y >= 0.5 > x)
    n = b10 + b01
    if n == 0:
        return {"only_a": 0, "only_b": 0, "p": 1.0}
    k = min(b10, b01)
    p = min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n)
    return {"only_a": b10, "only_b": b01, "p": p}
