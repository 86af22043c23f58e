"""Accuracy over behaviours and its bootstrap interval."""

import math
import random
import subprocess
import sys

import numpy as np
import pytest

from pbb.evaluation.metrics import bootstrap_ci, per_behaviour, proportion_ci, summarize


def test_accuracy_is_mean_over_behaviours_not_samples():
    samples = [{"behaviour_id": "a", "score": 1.0}] * 9 + [{"behaviour_id": "b", "score": 0.0}]
    s = summarize(samples)
    assert per_behaviour(samples) == {"a": 1.0, "b": 0.0}
    assert s["accuracy"] == 0.5 and s["n_behaviours"] == 2 and s["n_samples"] == 10


def _binomial_tail(k: int, n: int, p: float, upper: bool) -> float:
    """P(X >= k) (``upper``) or P(X <= k) for X ~ Binomial(n, p), summed term by term."""
    ks = range(k, n + 1) if upper else range(0, k + 1)
    return sum(math.comb(n, i) * p ** i * (1 - p) ** (n - i) for i in ks)


def test_equal_rates_get_an_interval_with_width_not_a_point():
    """30 behaviours that each got 1 of 4 inputs right: resampling behaviours has nothing to vary
    (the bootstrap says [0.25, 0.25]), which is no evidence that the rate is exactly 25%."""
    assert bootstrap_ci([0.25] * 30) == (0.25, 0.25)  # why the bootstrap cannot be used here
    lo, hi = proportion_ci([0.25] * 30)
    assert lo < 0.25 < hi and hi - lo > 0.2
    # k = 7.5 of 30: between the exact intervals of 7 and of 8 successes
    assert proportion_ci([7 / 30] * 30)[0] < lo < proportion_ci([8 / 30] * 30)[0]
    assert proportion_ci([7 / 30] * 30)[1] < hi < proportion_ci([8 / 30] * 30)[1]
    s = summarize([{"behaviour_id": f"b{i}", "score": float(j == 0)}
                   for i in range(30) for j in range(4)])
    assert s["accuracy"] == 0.25 and (s["ci_low"], s["ci_high"]) == (lo, hi)


def test_equal_rates_interval_is_the_exact_binomial_one():
    """Every one of 10 behaviours at 50%: 5 successes in 10, whose Clopper-Pearson bounds are
    where the binomial tails beyond 5 hold 2.5% each (checked by summing the tails here)."""
    lo, hi = proportion_ci([0.5] * 10)
    assert _binomial_tail(5, 10, lo, upper=True) == pytest.approx(0.025, abs=1e-9)
    assert _binomial_tail(5, 10, hi, upper=False) == pytest.approx(0.025, abs=1e-9)
    assert (lo, hi) == pytest.approx((0.1871, 0.8129), abs=1e-4)  # the textbook values
    assert hi - lo > 0.6


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
    first = bootstrap_ci(small, seed=3)
    # the seed alone decides it: not numpy's global state, not an earlier call in this process
    np.random.seed(12345)
    np.random.random(1000)
    bootstrap_ci(small, seed=8)
    assert bootstrap_ci(small, seed=3) == first
    fresh = subprocess.run(
        [sys.executable, "-c", "import random; from pbb.evaluation.metrics import bootstrap_ci; "
         "rng = random.Random(2); print(repr(bootstrap_ci([rng.random() for _ in range(20)], "
         "seed=3)))"], capture_output=True, text=True, check=True)
    assert fresh.stdout.strip() == repr(first)
    # and the seed does decide it: other seeds resample other behaviours
    others = {bootstrap_ci(small, seed=s) for s in (4, 5, 6)}
    assert first not in others and len(others) == 3
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
    lo, hi = proportion_ci(values, seed=4)
    assert lo < sum(values) / len(values) < hi  # with width: the one success is resampled
    mixed = [0.25, 0.5] * 10
    assert proportion_ci(mixed, seed=1) == bootstrap_ci(mixed, seed=1)


def test_grouped_interval_carries_the_spread_between_seeds():
    """Three seeds that disagree (every behaviour 0, 0.5 or 1 by seed): the plain bootstrap of
    the pooled values is narrow around 0.5, as if the seeds were one run; the grouped interval,
    drawing seeds first, is wide enough to hold another seed like them."""
    from pbb.evaluation.metrics import bootstrap_ci, grouped_ci

    groups = [[0.0] * 30, [0.5] * 30, [1.0] * 30]
    plain = bootstrap_ci([v for g in groups for v in g])
    grouped = grouped_ci(groups)
    assert plain[1] - plain[0] < 0.25
    assert grouped[0] <= 0.2 and grouped[1] >= 0.8
    varied = [[(7 * i + 3 * j) % 10 / 10 for i in range(12)] for j in range(3)]
    assert grouped_ci(varied) == grouped_ci(varied) != grouped_ci(varied, seed=1)
    assert grouped_ci([[0.25, 0.75]] * 1, resamples=200)[0] >= 0.25
