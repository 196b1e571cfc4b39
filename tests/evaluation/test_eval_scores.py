"""The metric layer on real rows: held-out rows score like the floor, a shifted copy does not.

Rule for "scores like the floor": the value's and the floor's 95% intervals overlap, for every metric.
Both are independent estimates of one quantity, so neither point need fall inside the other's interval
(validity, for one, draws its threshold from the floor's rows), but disjoint intervals would be a ~0.5%
event. FD is held to more: its excess interval contains 0.
"""
from __future__ import annotations

import pytest
import torch

from scaleflow.data.normalization import Standardizer
from scaleflow.evaluation.scores import SAMPLE_METRICS, min_samples, score_samples

D, N_TRAIN, N = 16, 600, 300


@pytest.fixture(scope="module")
def rows():
    """Original-space Gaussian rows (rank-6 signal plus noise, mean away from 0): a standardizer fitted on
    train, and normalized train [600, 16], test [300, 16] and held-out "samples" [300, 16], plus raw held-out."""
    g = torch.Generator().manual_seed(0)
    mix, mean = torch.randn(6, D, generator=g), 2.0 * torch.randn(D, generator=g)
    n = N_TRAIN + 2 * N
    x = torch.randn(n, 6, generator=g) @ mix + 0.5 * torch.randn(n, D, generator=g) + mean
    train, test, held_out = x[:N_TRAIN], x[N_TRAIN:N_TRAIN + N], x[N_TRAIN + N:]
    standardizer = Standardizer.fit(train)
    z = standardizer.transform
    return standardizer, z(train), z(test), z(held_out), held_out


def _score(rows, samples):
    standardizer, train, test, _, _ = rows
    return score_samples(samples, test, train[:N], train, standardizer.inverse_transform, n_boot=200, seed=0)


@pytest.fixture(scope="module")
def real_report(rows):
    return _score(rows, rows[3])


def test_every_metric_has_value_floor_and_intervals(real_report):
    assert list(real_report) == list(SAMPLE_METRICS)
    for name, entry in real_report.items():
        lo, hi = entry["ci"]
        floor_lo, floor_hi = entry["floor_ci"]
        assert lo <= hi and floor_lo <= floor_hi, name
        assert lo <= entry["value"] <= hi and floor_lo <= entry["floor"] <= floor_hi, name
    fd = real_report["fd"]
    assert set(fd) >= {"value", "ci", "floor", "floor_ci", "excess", "excess_ci", "fd_inf", "floor_inf"}
    assert fd["excess"] == pytest.approx(fd["value"] - fd["floor"])
    assert real_report["validity"]["floor"] == pytest.approx(0.95, abs=1 / N)  # by construction


def test_held_out_real_rows_score_like_the_floor(real_report):
    for name, entry in real_report.items():
        (lo, hi), (floor_lo, floor_hi) = entry["ci"], entry["floor_ci"]
        assert lo <= floor_hi and floor_lo <= hi, (name, entry["value"], entry["ci"], entry["floor"], entry["floor_ci"])
    fd = real_report["fd"]
    assert fd["excess_ci"][0] < 0 < fd["excess_ci"][1]
    # FD at n = 300 in 16-D is mostly bias; extrapolated, both are near the truth, 0.
    assert abs(fd["fd_inf"]) < 0.5 * fd["value"] and abs(fd["floor_inf"]) < 0.5 * fd["floor"]
    assert real_report["validity"]["value"] == pytest.approx(0.95, abs=0.03)


@pytest.mark.parametrize("change", ["shift", "scale"])
def test_a_shifted_or_scaled_copy_scores_worse(rows, real_report, change):
    standardizer, _, _, _, raw = rows
    # In the original space, where validity's cosines live: every coordinate + 1 (~0.4 standard
    # deviations), or the spread about the mean doubled.
    if change == "shift":
        moved = raw + 1.0
    else:
        moved = raw.mean(0) + 2.0 * (raw - raw.mean(0))
    report = _score(rows, standardizer.transform(moved))
    fd, precision, valid = report["fd"], report["precision"], report["validity"]
    assert fd["ci"][0] > fd["floor_ci"][1] and fd["excess_ci"][0] > 0  # FD up
    assert fd["fd_inf"] > fd["floor_inf"] + fd["excess_ci"][0] / 2
    assert precision["ci"][1] < precision["floor_ci"][0]  # precision down
    assert valid["ci"][1] < valid["floor_ci"][0]  # validity down
    assert valid["value"] < real_report["validity"]["value"] - 0.1


def test_rejects_a_floor_of_another_size_and_too_few_rows(rows):
    standardizer, train, test, held_out, _ = rows
    with pytest.raises(ValueError, match="as many rows as samples"):
        score_samples(held_out, test, train[:N - 1], train)
    assert min_samples(5) == 6
    with pytest.raises(ValueError, match="at least 6"):
        score_samples(held_out[:5], test, train[:5], train)
