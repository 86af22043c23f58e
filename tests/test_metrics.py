"""Accuracy over behaviours and its bootstrap interval."""

import math
import random

from pbb.metrics import bootstrap_ci, per_behaviour, proportion_ci, summarize


def test_accuracy_is_mean_over_behaviours_not_samples():
    samples = [{"behaviour_id": "a", "score": 1.0}] * 9 + [{"behaviour_id": "b", "score": 0.0}]
    s = summarize(samples)
    assert per_behaviour(samples) == {"a": 1.0, "b": 0.0}
    assert s["accuracy"] == 0.5 and s["n_behaviours"] == 2 and s["n_samples"] == 10


def test_interval_degenerate_when_all_equal():
    assert bootstrap_ci([0.25] * 30) == (0.25, 0.25)


def test_interval_matches_normal_approximation():
    rng = random.Random(0)
    values = [float(rng.random() < 0.5) for _ in range(400)]
    mean = sum(values) / len(values)
    lo, hi = bootstrap_ci(values, resamples=4000, seed=1)
    half = 1.96 * math.sqrt(mean * (1 - mean) / len(values))
    assert lo < mean < hi
    assert abs((hi - lo) / 2 - half) < 0.01


def test_interval_is_seeded_and_narrows_with_more_behaviours():
    rng = random.Random(2)
    small = [rng.random() for _ in range(20)]
    large = small * 10
    assert bootstrap_ci(small, seed=3) == bootstrap_ci(small, seed=3)
    assert (bootstrap_ci(large)[1] - bootstrap_ci(large)[0]) < (bootstrap_ci(small)[1] - bootstrap_ci(small)[0])


def test_accuracy_interval_at_zero_and_one_is_not_certain():
    """0 of 30 behaviours is not proof of a 0% rate: the exact binomial bound, 1 - 0.025**(1/30)."""
    upper = 1 - 0.025 ** (1 / 30)
    assert abs(upper - 0.1157) < 1e-4
    assert proportion_ci([0.0] * 30) == (0.0, upper)
    assert proportion_ci([1.0] * 30) == (1 - upper, 1.0)
    s = summarize([{"behaviour_id": f"b{i}", "score": 0.0} for i in range(30)])
    assert (s["ci_low"], s["ci_high"]) == (0.0, upper)
    # fewer behaviours, wider: 0 of 5 allows up to 52%
    assert proportion_ci([0.0] * 5)[1] > 0.5


def test_accuracy_interval_elsewhere_is_the_bootstrap():
    values = [0.0] * 29 + [1.0]
    assert proportion_ci(values, seed=4) == bootstrap_ci(values, seed=4)
    assert proportion_ci([0.5] * 10) == bootstrap_ci([0.5] * 10)
