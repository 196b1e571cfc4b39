"""Percentile bootstrap intervals."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from scaleflow.stats.bootstrap import bootstrap_ci


def _mean(x):
    return float(x.mean())


def test_value_is_the_full_data_metric_and_interval_contains_it():
    x = np.random.default_rng(0).normal(loc=2.0, size=500)
    value, (lo, hi) = bootstrap_ci(_mean, x)
    assert value == float(x.mean())
    assert lo < value < hi
    # The standard error of a mean is 1/sqrt(500): a 95% interval is about +-1.96 of it.
    assert (hi - lo) == pytest.approx(2 * 1.96 / np.sqrt(500), rel=0.25)


def test_interval_is_the_percentile_interval_of_the_resampled_metric():
    # Replays the documented draw order: per resample, one torch.randint(n, (n,)) per array.
    x = np.random.default_rng(5).exponential(size=80)
    _, (lo, hi) = bootstrap_ci(_mean, x, n_resamples=100, confidence=0.9, seed=3)
    g = torch.Generator().manual_seed(3)
    stats = [x[torch.randint(80, (80,), generator=g).numpy()].mean() for _ in range(100)]
    assert (lo, hi) == pytest.approx(tuple(np.percentile(stats, [5, 95])), rel=1e-12)


def test_interval_narrows_with_sample_size():
    rng = np.random.default_rng(1)
    small, large = rng.normal(size=250), rng.normal(size=4000)
    _, (lo_s, hi_s) = bootstrap_ci(_mean, small)
    _, (lo_l, hi_l) = bootstrap_ci(_mean, large)
    assert (hi_l - lo_l) < 0.5 * (hi_s - lo_s)  # ~ 1/sqrt(16) = 0.25 expected


def test_deterministic_with_a_seed_and_seed_dependent():
    x = torch.randn(300, 4, generator=torch.Generator().manual_seed(2))
    metric = lambda a: a.norm(dim=1).mean()  # noqa: E731 - returns a 0-d tensor, which is accepted
    first = bootstrap_ci(metric, x, n_resamples=50, seed=7)
    assert bootstrap_ci(metric, x, n_resamples=50, seed=7) == first
    assert bootstrap_ci(metric, x, n_resamples=50, seed=8) != first
    via_generator = bootstrap_ci(metric, x, n_resamples=50, generator=torch.Generator().manual_seed(7))
    assert via_generator == first


def test_arrays_are_resampled_independently_and_keep_their_type():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(200, 3)), torch.randn(50, 3, generator=torch.Generator().manual_seed(3)) + 1.0
    seen = []

    def diff(x, y):
        seen.append((type(x), type(y), len(x), len(y)))
        return float(x.mean()) - float(y.mean())

    value, (lo, hi) = bootstrap_ci(diff, a, b, n_resamples=30, confidence=0.9)
    assert lo < value < hi
    assert set(seen) == {(np.ndarray, torch.Tensor, 200, 50)}
    assert len(seen) == 31


def test_rejects_bad_arguments():
    x = np.ones(5)
    with pytest.raises(ValueError):
        bootstrap_ci(_mean)
    with pytest.raises(ValueError):
        bootstrap_ci(_mean, x, confidence=1.0)
    with pytest.raises(ValueError):
        bootstrap_ci(_mean, x, n_resamples=0)


def test_bias_correction_recenters_a_size_biased_metric():
    from scaleflow.evaluation.distribution import frechet_distance

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(200, 20, generator=g), torch.randn(200, 20, generator=g) + 0.3
    value, (lo, hi) = bootstrap_ci(frechet_distance, x, y, n_resamples=100, seed=0)
    assert lo > value  # duplicates inflate every resample: the plain interval misses the value
    value_c, (lo_c, hi_c) = bootstrap_ci(frechet_distance, x, y, n_resamples=100, seed=0, correct_bias=True)
    assert value_c == value and lo_c < value < hi_c
    assert hi_c - lo_c == pytest.approx(hi - lo)  # same spread, recentered
