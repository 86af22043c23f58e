"""Accuracy over behaviours with a bootstrap confidence interval.

The unit of analysis is the behaviour, not the sample: each behaviour's accuracy is the mean
score over its test inputs, the reported accuracy is the mean over behaviours, and the 95%
interval resamples behaviours (so a few easy behaviours with many samples cannot narrow it).
Where every behaviour scored the same, resampling has nothing to vary and would claim a
zero-width interval ([0, 0], or [25%, 25%] when each behaviour got 1 of its 4 inputs right);
there the interval is the exact (Clopper-Pearson) one for k = n x rate successes in n behaviours:
0 of 30 gives [0, 11.6%], 30 behaviours at 25% (k = 7.5) about [11%, 44%]. For a k that is not
a whole number the Clopper-Pearson bounds are the same beta quantiles, which lie between those
of the whole numbers either side.
"""

from __future__ import annotations

import math
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
    return _percentiles(means, level)


def grouped_ci(groups: list[list[float]], resamples: int = 1000, seed: int = 0,
               level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the pooled mean of values that come in groups (one
    group per seed): each resample draws the groups with replacement, then the values within
    each drawn group. Resampling the values alone would treat the seeds as one big run and give
    an interval that another seed's run can fall outside; drawing the groups too carries the
    spread between seeds. With one group it is the plain bootstrap of that group."""
    gs = [np.asarray(g, dtype=float) for g in groups if len(g)]
    if not gs:
        return (float("nan"), float("nan"))
    means = _grouped_means(gs, np.random.default_rng(seed), resamples)
    return _percentiles(means, level)


def gap_ci(here: list[list[float]], there: list[list[float]], resamples: int = 1000,
           seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the pooled mean of ``here`` minus that of ``there``: two
    unpaired sets of grouped values (e.g. one claim's paired differences against another's, on
    other functions), each resampled apart as :func:`grouped_ci` resamples one."""
    a = [np.asarray(g, dtype=float) for g in here if len(g)]
    b = [np.asarray(g, dtype=float) for g in there if len(g)]
    if not a or not b:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    gaps = _grouped_means(a, rng, resamples) - _grouped_means(b, rng, resamples)
    return _percentiles(gaps, level)


def _percentiles(draws: np.ndarray, level: float) -> tuple[float, float]:
    """The central ``level`` interval of bootstrap draws (their percentiles)."""
    alpha = (1 - level) / 2
    return (float(np.quantile(draws, alpha)), float(np.quantile(draws, 1 - alpha)))


def _grouped_means(gs: list[np.ndarray], rng, resamples: int) -> np.ndarray:
    """``resamples`` pooled means, each of the groups drawn with replacement and then the
    values within each drawn group."""
    means = np.empty(resamples)
    for r in range(resamples):
        drawn = [gs[i] for i in rng.integers(0, len(gs), size=len(gs))]
        means[r] = np.concatenate([g[rng.integers(0, g.size, size=g.size)] for g in drawn]).mean()
    return means


def proportion_ci(values: list[float], resamples: int = 1000, seed: int = 0,
                  level: float = 0.95) -> tuple[float, float]:
    """Interval of a mean of per-behaviour rates in [0, 1]: the percentile bootstrap, except when
    all are equal (the bootstrap would give a zero-width interval), where it is the exact
    binomial (Clopper-Pearson) interval for ``n x rate`` successes in the ``n`` behaviours."""
    x = np.asarray(values, dtype=float)
    if x.size and np.all(x == x[0]):
        return clopper_pearson(float(x.sum()), int(x.size), level)
    return bootstrap_ci(values, resamples, seed, level)


def clopper_pearson(k: float, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact binomial interval for ``k`` successes in ``n`` trials: the ``(1 - level) / 2`` and
    ``(1 + level) / 2`` quantiles of Beta(k, n - k + 1) and Beta(k + 1, n - k); 0 and 1 at the
    ends (closed forms there: 0 of n gives [0, 1 - (alpha/2)^(1/n)])."""
    alpha = (1 - level) / 2
    if k <= 0:
        return (0.0, 1.0 - float(alpha ** (1 / n)))
    if k >= n:
        return (float(alpha ** (1 / n)), 1.0)
    return (_beta_quantile(alpha, k, n - k + 1), _beta_quantile(1 - alpha, k + 1, n - k))


def _beta_quantile(q: float, a: float, b: float) -> float:
    """The ``q`` quantile of Beta(a, b), by bisection on the regularised incomplete beta (numpy
    has no beta quantile, and scipy is not a dependency)."""
    lo, hi = 0.0, 1.0
    for _ in range(100):
        mid = (lo + hi) / 2
        if _beta_cdf(mid, a, b) < q:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _beta_cdf(x: float, a: float, b: float) -> float:
    """I_x(a, b), the regularised incomplete beta, by its continued fraction (Lentz's method, as
    in Numerical Recipes' ``betai``); the symmetry I_x(a, b) = 1 - I_{1-x}(b, a) keeps the
    fraction where it converges fast."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                     + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1) / (a + b + 2):
        return front * _beta_fraction(x, a, b) / a
    return 1.0 - front * _beta_fraction(1.0 - x, b, a) / b


def _beta_fraction(x: float, a: float, b: float) -> float:
    tiny = 1e-300

    def guard(v: float) -> float:
        return v if abs(v) >= tiny else tiny

    c, d = 1.0, 1.0 / guard(1.0 - (a + b) * x / (a + 1))
    h = d
    for m in range(1, 500):
        aa = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
        d = 1.0 / guard(1.0 + aa * d)
        c = guard(1.0 + aa / c)
        h *= d * c
        aa = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
        d = 1.0 / guard(1.0 + aa * d)
        c = guard(1.0 + aa / c)
        h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


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
