"""Frechet distance next to its floor (joint bootstrap) and extrapolated to infinite samples."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from scaleflow.evaluation.distribution import frechet_distance, frechet_distance_from_moments
from scaleflow.evaluation.frechet import (SINGULAR_JITTER, _Reference, extrapolation_sizes,
                                          frechet_distance_infinite, frechet_infinite_with_floor, frechet_with_floor)

D, N = 64, 400  # n near D: most of FD at n is finite-sample bias, as with 1,000 rows in 384-D
SCALES = torch.linspace(0.3, 1.5, D, dtype=torch.float64)  # per-dimension standard deviations


def _gaussians(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """x ~ N(0, S^2), y ~ N(0.1, (1.2 S)^2), x2 ~ N(0, S^2) (x's distribution again), and the true FD(x, y)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N, D, generator=g, dtype=torch.float64) * SCALES
    y = torch.randn(N, D, generator=g, dtype=torch.float64) * SCALES * 1.2 + 0.1
    x2 = torch.randn(N, D, generator=g, dtype=torch.float64) * SCALES
    true = frechet_distance_from_moments(torch.zeros(D, dtype=torch.float64), torch.diag(SCALES**2),
                                         torch.full((D,), 0.1, dtype=torch.float64),
                                         torch.diag((1.2 * SCALES) ** 2))
    # Diagonal closed form: ||mu1 - mu2||^2 + sum (s1 - s2)^2.
    assert true == pytest.approx(D * 0.01 + float(((0.2 * SCALES) ** 2).sum()), rel=1e-9)
    return x, y, x2, true


# ----------------------------------------------------------------------------- FD against a fixed reference


def test_reference_distance_matches_frechet_distance():
    x, y, _, _ = _gaussians(0)
    assert _Reference(y).distance(x) == pytest.approx(frechet_distance(x, y), rel=1e-9)


def test_fewer_rows_than_dimensions_take_the_small_gram_matrix():
    x, y, _, _ = _gaussians(0)
    # 40 rows in 64-D: the [40, 40] Gram matrix in place of the [64, 64] product. They share the 39 nonzero
    # eigenvalues; the product's 25 others are 0 up to round-off, whose square roots (~1e-7 each) are the
    # only difference from the full computation.
    reference, rows = _Reference(y), x[:40]
    product = reference.factor.T @ torch.cov(rows.T) @ reference.factor
    nonzero = torch.linalg.eigvalsh(product)[-39:].sqrt().sum()
    mu = rows.mean(0) - reference.mu
    exact = float(mu.dot(mu) + reference.trace + torch.trace(torch.cov(rows.T)) - 2 * nonzero)
    assert reference.distance(rows) == pytest.approx(exact, rel=1e-12)
    assert reference.distance(rows) == pytest.approx(frechet_distance(rows, y), rel=1e-7)


def test_singular_reference_is_jittered_within_the_documented_bound():
    x, y, _, _ = _gaussians(0)
    y = y[:40]  # 40 rows in 64-D: a singular covariance
    reference = _Reference(y)
    assert not bool(torch.linalg.cholesky_ex(reference.cov).info == 0)
    exact = frechet_distance(x, y)
    jitter = SINGULAR_JITTER * float(reference.cov.diagonal().max())
    bound = 2 * jitter**0.5 * float(torch.linalg.eigvalsh(torch.cov(x.T)).clamp_min(0).sqrt().sum())
    assert 0 <= exact - reference.distance(x) <= bound and bound < 1e-3 * exact
    # All rows equal: no jitter helps the zero matrix; the eigh square root takes over.
    assert _Reference(y[:1].repeat(5, 1)).distance(x) == pytest.approx(frechet_distance(x, y[:1].repeat(5, 1)))


# ----------------------------------------------------------------------------- joint bootstrap


def test_fd_with_floor_values_and_intervals():
    x, y, x2, _ = _gaussians(1)
    out = frechet_with_floor(x, x2, y, n_resamples=100, seed=0)
    assert out["value"] == frechet_distance(x, y) and out["floor"] == frechet_distance(x2, y)
    assert out["excess"] == pytest.approx(out["value"] - out["floor"], abs=1e-12)
    for key, ci in (("value", "ci"), ("floor", "floor_ci"), ("excess", "excess_ci")):
        assert out[ci][0] < out[key] < out[ci][1], key
    # x and x2 share a distribution: their FDs to y differ by noise, and the excess interval holds 0.
    assert out["excess_ci"][0] < 0 < out["excess_ci"][1]
    assert frechet_with_floor(x, x2, y, n_resamples=100, seed=0) == out  # seeded


def test_excess_interval_detects_a_shift():
    x, y, x2, _ = _gaussians(2)
    out = frechet_with_floor(x + 0.5, x2, y, n_resamples=100, seed=0)
    # x + 0.5 is 0.4 from y's mean in every dimension, x2 0.1: FD grows by 64 (0.4^2 - 0.1^2) = 9.6.
    assert out["excess"] == pytest.approx(9.6, abs=1.0)
    assert 0 < out["excess_ci"][0] < out["excess"] < out["excess_ci"][1]
    assert out["ci"][0] > out["floor_ci"][1]  # the value's interval lies above the floor's


def test_fd_with_floor_rejects_one_row():
    x, y, x2, _ = _gaussians(0)
    with pytest.raises(ValueError, match="real_draw needs at least 2 rows"):
        frechet_with_floor(x, x2[:1], y)


# ----------------------------------------------------------------------------- FD_inf


def test_extrapolation_sizes():
    assert extrapolation_sizes(1000) == [500, 556, 611, 667, 722, 778, 833, 889, 944, 1000]
    assert extrapolation_sizes(6) == [3, 4, 5, 6]
    with pytest.raises(ValueError):
        extrapolation_sizes(2)


@pytest.mark.parametrize("seed", [0, 1])
def test_fd_inf_recovers_the_true_distance_between_gaussians(seed):
    x, y, _, true = _gaussians(seed)
    at_n = frechet_distance(x, y)
    out = frechet_distance_infinite(x, y, seed=seed)
    assert at_n - true > 4.0  # at n = 400 in 64-D the bias is larger than the distance (true 3.03)
    assert abs(out["fd_inf"] - true) < 0.1 * (at_n - true)
    assert out["sizes"] == extrapolation_sizes(N) and len(out["fd"]) == len(out["sizes"])
    assert out["fd"][-1] == pytest.approx(at_n, rel=1e-9)  # the full sets: one subset, FD at n
    assert out["slope"] > 0  # FD falls as n grows


@pytest.mark.parametrize("seed", [0, 1])
def test_fd_inf_of_one_distribution_is_about_zero(seed):
    x, _, x2, _ = _gaussians(seed)
    at_n = frechet_distance(x, x2)
    fd_inf = frechet_distance_infinite(x, x2, seed=seed)["fd_inf"]
    assert at_n > 3.0 and abs(fd_inf) < 0.15 * at_n


def test_fd_inf_uses_both_sets_at_each_size_and_given_sizes():
    x, y, _, _ = _gaussians(0)
    out = frechet_distance_infinite(x, y[:300], sizes=[100, 200, 300], subsets=2, seed=0)
    assert out["sizes"] == [100, 200, 300]
    # Exactly a line through the three points' least-squares fit.
    design = np.stack([np.ones(3), 1 / np.array([100, 200, 300])], axis=1)
    expected = np.linalg.lstsq(design, np.array(out["fd"]), rcond=None)[0]
    assert (out["fd_inf"], out["slope"]) == pytest.approx(tuple(expected), rel=1e-9)
    with pytest.raises(ValueError, match="sizes"):
        frechet_distance_infinite(x, y[:300], sizes=[100, 400])


# ----------------------------------------------------------------------------- FD_inf with intervals


def test_fd_inf_with_floor_values_are_the_two_fits_and_intervals_hold_them():
    x, y, x2, true = _gaussians(0)
    out = frechet_infinite_with_floor(x + 0.5, x2, y, n_resamples=10, seed=3)
    value, floor = frechet_distance_infinite(x + 0.5, y, seed=3), frechet_distance_infinite(x2, y, seed=3)
    assert out["fd_inf"] == pytest.approx(value["fd_inf"], rel=1e-9) and out["fd"] == value["fd"]
    assert out["floor_inf"] == pytest.approx(floor["fd_inf"], rel=1e-9) and out["floor_fd"] == floor["fd"]
    assert out["sizes"] == extrapolation_sizes(N) and out["resamples"] == 10
    assert out["resample_sizes"] == sorted({round(s / 2) for s in out["sizes"]})  # the fit on halves
    lo, hi = out["fd_inf_ci"]
    assert lo < out["fd_inf"] < hi and out["fd_inf"] - lo == pytest.approx(hi - out["fd_inf"])  # value +- t sd
    # x + 0.5 is 0.4 from y's mean in every dimension (x: 0.1): FD_inf ~ true + 64 (0.4^2 - 0.1^2) = 12.6,
    # well clear of the floor's interval, which holds the truth for x2 (3.03).
    assert out["fd_inf"] == pytest.approx(true + 9.6, rel=0.1) and lo > out["floor_inf_ci"][1]
    assert out["floor_inf_ci"][0] < true < out["floor_inf_ci"][1]
    assert frechet_infinite_with_floor(x + 0.5, x2, y, n_resamples=10, seed=3) == out  # seeded


def test_fd_inf_interval_needs_two_half_sizes():
    x, y, x2, _ = _gaussians(0)
    out = frechet_infinite_with_floor(x[:4], x2[:4], y[:4], n_resamples=5)
    assert out["fd_inf_ci"] is None and out["floor_inf_ci"] is None and out["resample_sizes"] == []
    with pytest.raises(ValueError, match="as many rows"):
        frechet_infinite_with_floor(x, x2[:100], y)
