"""Accuracy over behaviours with a bootstrap confidence interval.

The unit of analysis is the behaviour, not the sample: each behaviour's accuracy is the mean
score over its test inputs, the reported accuracy is the mean over behaviours, and the 95%
interval resamples behaviours (so a few easy behaviours with many samples cannot narrow it).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np


def per_behaviour(samples: list[dict]) -> dict[str, float]:
    scores: dict[str, list[float]] = defaultdict(list)
    for s in samples:
        scores[s["behaviour_id"]].append(float(s["score"]))
    return {b: float(np.mean(v)) for b, v in scores.items()}


def bootstrap_ci(values: list[float], resamples: int = 1000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values``."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(resamples, x.size))].mean(axis=1)
    alpha = (1 - level) / 2
    return (float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha)))


def summarize(samples: list[dict], resamples: int = 1000, seed: int = 0) -> dict:
    acc = per_behaviour(samples)
    values = [acc[b] for b in sorted(acc)]
    low, high = bootstrap_ci(values, resamples, seed)
    return {"accuracy": float(np.mean(values)) if values else float("nan"), "ci_low": low,
            "ci_high": high, "n_behaviours": len(values), "n_samples": len(samples)}
