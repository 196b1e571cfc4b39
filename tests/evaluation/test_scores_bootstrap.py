"""Intervals of the nearest-neighbour metrics that redraw both sets (half-samples): each resample is the
metric on subsets of the rows, and the 95% intervals cover the expected value ~95% of the time."""
from __future__ import annotations

import pytest
import torch

from scaleflow.evaluation import neighbour_bootstrap
from scaleflow.evaluation.neighbour_bootstrap import (KnnRadii, half_sample_indices, prdc_resampled, subset_indices,
                                                      validity_resampled)
from scaleflow.evaluation.prdc import precision_recall_density_coverage, prdc_indicators
from scaleflow.evaluation.scores import neighbour_metrics
from scaleflow.evaluation.validity import validity
from scaleflow.stats.bootstrap import percentile_interval


def _rows(seed: int, n: int, d: int = 8, shift: float = 0.0) -> torch.Tensor:
    """`[n, d]` Gaussian rows with mean (2 + shift, 0, ...): away from the origin, so cosines mean something."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    x[:, 0] += 2.0 + shift
    return x


# ----------------------------------------------------------------------------- each resample is the metric on subsets


def test_half_samples_are_distinct_halves():
    idx = half_sample_indices(7, 50, torch.Generator().manual_seed(0))
    assert idx.shape == (50, 4)
    assert all(len(set(row.tolist())) == 4 and 0 <= min(row) and max(row) < 7 for row in idx)
    assert torch.equal(subset_indices(5, 10, torch.Generator()), torch.arange(5))
    assert len(set(subset_indices(50, 10, torch.Generator().manual_seed(0)).tolist())) == 10


@pytest.mark.parametrize("window", [neighbour_bootstrap.NEIGHBOUR_WINDOW, -14])
def test_prdc_of_a_resample_is_prdc_of_the_subsets(monkeypatch, window):
    # -14 keeps 6 sorted neighbours per row (window + 4k), so most rows fall back to their full rows.
    monkeypatch.setattr(neighbour_bootstrap, "NEIGHBOUR_WINDOW", window)
    real, fake = _rows(0, 120), _rows(1, 90, shift=0.3)
    g = torch.Generator().manual_seed(2)
    real_idx, fake_idx = half_sample_indices(120, 4, g), half_sample_indices(90, 4, g)
    out = prdc_resampled(real, fake, 5, real_idx, fake_idx)
    for b in range(4):
        expected = precision_recall_density_coverage(real[real_idx[b]], fake[fake_idx[b]], 5)
        assert {name: float(v[b]) for name, v in out.items()} == pytest.approx(expected, abs=1e-12)


def test_radii_are_the_kth_neighbour_within_the_subset():
    x = _rows(3, 40)
    rows = torch.tensor([[0, 3, 5, 7, 11, 13, 17, 19], [1, 2, 4, 8, 16, 32, 33, 39]])
    radii = KnnRadii(x, 3).radii(rows)
    for b in range(2):
        d2 = torch.cdist(x[rows[b]], x[rows[b]]).square().fill_diagonal_(float("inf"))
        assert radii[b] == pytest.approx(d2.sort(1).values[:, 2], rel=1e-4)
    # Fewer than k + 1 rows: each row's ball reaches its farthest other row; one row: an empty ball.
    few = torch.tensor([[0, 1, 2]])
    assert KnnRadii(x, 5).radii(few)[0] == pytest.approx(
        torch.cdist(x[:3], x[:3]).square().max(1).values, rel=1e-4)
    assert KnnRadii(x, 5).radii(torch.tensor([[4]])).tolist() == [[0.0]]


@pytest.mark.parametrize("window", [neighbour_bootstrap.NEIGHBOUR_WINDOW, 1])
def test_validity_of_a_resample_is_validity_of_the_subsets(monkeypatch, window):
    # A window of 1 keeps each row's nearest reference row only: half the rows fall back to their full rows.
    monkeypatch.setattr(neighbour_bootstrap, "NEIGHBOUR_WINDOW", window)
    samples, reference, real = _rows(4, 80, shift=0.5), _rows(5, 100), _rows(6, 80)
    g = torch.Generator().manual_seed(7)
    s_idx, ref_idx, r_idx = (half_sample_indices(n, 3, g) for n in (80, 100, 80))
    out = validity_resampled(samples, reference, real, 0.05, s_idx, ref_idx, r_idx)
    for b in range(3):
        v = validity(samples[s_idx[b]], reference[ref_idx[b]], real[r_idx[b]])
        assert float(out["valid"][b]) == pytest.approx(v.value, abs=1e-12)
        assert float(out["floor_valid"][b]) == pytest.approx(v.floor, abs=1e-12)
        assert float(out["nearest_cosine"][b]) == pytest.approx(v.nearest_cosine, abs=1e-6)
        assert float(out["floor_nearest_cosine"][b]) == pytest.approx(v.floor_nearest_cosine, abs=1e-6)


def test_percentile_interval_centers_and_clips():
    values = torch.tensor([0.0, 1.0, 2.0, 3.0, 4.0], dtype=torch.float64)
    assert percentile_interval(values, confidence=0.5) == pytest.approx((1.0, 3.0))
    # Centered on 10: the spread kept (mean 2 moves to 10), then clipped to the metric's range.
    assert percentile_interval(values, confidence=0.5, center=10.0) == pytest.approx((9.0, 11.0))
    assert percentile_interval(values, confidence=0.5, center=0.5, bounds=(0.0, 1.0)) == pytest.approx((0.0, 1.0))


def test_entries_hold_their_value_and_name_their_method():
    samples, test, real = _rows(8, 60, shift=0.4), _rows(9, 60), _rows(10, 60)
    out = neighbour_metrics(samples, test, real, lambda x: x, n_boot=50, seed=0, k=5)
    assert list(out) == ["precision", "recall", "density", "coverage", "validity", "nearest_cosine"]
    for name, entry in out.items():
        assert entry["ci"][0] <= entry["value"] <= entry["ci"][1], name
        assert entry["floor_ci"][0] <= entry["floor"] <= entry["floor_ci"][1], name
        assert entry["ci_method"].startswith("half-samples"), name
    assert out["precision"]["value"] == precision_recall_density_coverage(test, samples, 5)["precision"]
    assert out["validity"]["floor"] == pytest.approx(0.95, abs=1 / 60)
    assert neighbour_metrics(samples, test, real, lambda x: x, n_boot=50, seed=0, k=5) == out  # seeded


# ----------------------------------------------------------------------------- coverage of the true value

N, REPEATS, TRUTH_DRAWS, N_BOOT = 100, 200, 1000, 100
COVERED = ("precision", "recall", "density", "coverage", "validity")


def test_intervals_cover_the_expected_value_at_the_nominal_rate():
    """Samples, test rows and real draw all N(mu, I) in 8-D, 100 rows each. The truth is each metric's
    expectation at n = 100 (a mean over 1,000 independent draws, +-0.002 for precision); 200 independent
    repeats of the 95% interval must cover it 90-99% of the time (the binomial spread of 200 repeats at
    0.95 is +-0.015). The conditional interval these replace (per-row terms resampled, radii and threshold
    held fixed) covers coverage and validity less than 90% of the time on the same draws (0.835, 0.795)."""
    g = torch.Generator().manual_seed(0)
    draw = lambda: torch.randn(N, 8, generator=g) + torch.tensor([2.0] + [0.0] * 7)  # noqa: E731
    truth = dict.fromkeys(COVERED, 0.0)
    for _ in range(TRUTH_DRAWS):
        samples, test, real = draw(), draw(), draw()
        for name, value in precision_recall_density_coverage(test, samples, 5).items():
            truth[name] += value / TRUTH_DRAWS
        truth["validity"] += validity(samples, test, real).value / TRUTH_DRAWS
    assert truth["coverage"] == pytest.approx(0.971, abs=0.005) and truth["validity"] == pytest.approx(0.94, abs=0.01)

    covered, old_covered = dict.fromkeys(COVERED, 0), dict.fromkeys(("coverage", "validity"), 0)
    for repeat in range(REPEATS):
        samples, test, real = draw(), draw(), draw()
        out = neighbour_metrics(samples, test, real, lambda x: x, n_boot=N_BOOT, seed=repeat, k=5)
        for name in COVERED:
            covered[name] += out[name]["ci"][0] <= truth[name] <= out[name]["ci"][1]
        terms = {"coverage": prdc_indicators(test, samples, 5)["coverage"],
                 "validity": validity(samples, test, real).valid.double()}
        for name, term in terms.items():  # the old interval: a bootstrap of the per-row terms
            lo, hi = percentile_interval(term[torch.randint(N, (N_BOOT, N), generator=g)].mean(1))
            old_covered[name] += lo <= truth[name] <= hi
    rates = {name: hits / REPEATS for name, hits in covered.items()}
    assert all(0.9 <= rate <= 0.99 for rate in rates.values()), rates
    assert all(hits / REPEATS < 0.9 for hits in old_covered.values()), old_covered
