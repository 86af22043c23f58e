"""Accuracy over behaviours with a bootstrap confidence interval.

The unit of analysis is the behaviour, not the sample: each behaviour's accuracy is the mean
score over its test inputs, the reported accuracy is the mean over behaviours, and the 95%
interval resamples behaviours (so a few easy behaviours with many samples cannot narrow it).
Where every behaviour scored 0 (or every one 1) resampling has nothing to vary and would claim
[0, 0]; there the interval is the exact (Clopper-Pearson) one for 0 (or n) successes in n
behaviours: 0 of 30 gives [0, 11.6%].
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


def proportion_ci(values: list[float], resamples: int = 1000, seed: int = 0,
                  level: float = 0.95) -> tuple[float, float]:
    """Interval of a mean of per-behaviour rates in [0, 1]: the percentile bootstrap, except when
    all are 0 or all are 1, where it is the exact binomial bound over the behaviours."""
    x = np.asarray(values, dtype=float)
    if x.size and (np.all(x == 0.0) or np.all(x == 1.0)):
        edge = float(((1 - level) / 2) ** (1 / x.size))
        return (0.0, 1.0 - edge) if x[0] == 0.0 else (edge, 1.0)
    return bootstrap_ci(values, resamples, seed, level)


def per_behaviour_field(samples: list[dict], field: str) -> dict[str, float]:
    return per_behaviour([{"behaviour_id": s["behaviour_id"], "score": s[field]} for s in samples])


def distinct_rate(samples: list[dict]) -> dict[str, float]:
    """Per behaviour: distinct predictions / samples (1.0 = no two outputs alike)."""
    preds: dict[str, list] = defaultdict(list)
    for s in samples:
        preds[s["behaviour_id"]].append(s.get("prediction"))
    return {b: len({p for p in v if p is not None}) / len(v) for b, v in preds.items()}


def _mean_ci(by_behaviour: dict[str, float], resamples: int, seed: int) -> dict:
    values = [by_behaviour[b] for b in sorted(by_behaviour)]
    low, high = proportion_ci(values, resamples, seed)
    return {"mean": float(np.mean(values)) if values else float("nan"), "ci_low": low, "ci_high": high}


def summarize(samples: list[dict], resamples: int = 1000, seed: int = 0,
              sample_metrics: dict[str, str] | None = None) -> dict:
    """Accuracy with its interval; the CoT recall share; and, for a domain with
    ``sample_metrics`` (per-sample field -> summary name), those averages and the distinct rate
    under ``generation``."""
    acc = per_behaviour(samples)
    values = [acc[b] for b in sorted(acc)]
    low, high = proportion_ci(values, resamples, seed)
    out = {"accuracy": float(np.mean(values)) if values else float("nan"), "ci_low": low,
           "ci_high": high, "n_behaviours": len(values), "n_samples": len(samples)}
    if samples and "recall_exact" in samples[0]:
        out["recall_exact"] = _mean_ci(per_behaviour_field(samples, "recall_exact"), resamples, seed)
    if sample_metrics and samples and set(sample_metrics) <= set(samples[0]):
        gen = {name: _mean_ci(per_behaviour_field(samples, f), resamples, seed)
               for f, name in sample_metrics.items()}
        gen["distinct"] = _mean_ci(distinct_rate(samples), resamples, seed)
        out["generation"] = gen
    return out
