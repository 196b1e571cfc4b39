"""The ranking rule cannot be gamed: copies of the training rows, a KDE with a tiny bandwidth and a Gaussian
fitted to the rows all rank below an honest prior, each failing the term that reads what it lacks."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.covariance import LedoitWolf
from sklearn.neighbors import KernelDensity

from scaleflow.evaluation.ranking import RANKED, fd_ratio, novelty_ratio, ranked_ratios, worst_ratio
from scaleflow.evaluation.scores import score_samples

D, CLUSTERS, RANK, N = 32, 4, 3, 400


# ----------------------------------------------------------------------------- the terms, in closed form


def test_fd_term_is_floor_over_fd():
    assert fd_ratio({"value": 60.0, "floor": 50.0, "excess_ci": [4.0, 16.0]}) == pytest.approx(50 / 60)
    assert fd_ratio({"value": 60.0, "floor": 50.0, "excess_ci": [-3.0, 20.0]}) == pytest.approx(50 / 60)
    assert fd_ratio({"value": 60.0, "floor": 0.0}) is None


def test_novelty_and_the_binding_measure():
    assert novelty_ratio({"value": 0.25, "floor": 0.05}) == pytest.approx(0.75 / 0.95)
    assert novelty_ratio({"value": 0.25, "floor": None}) is None
    entry = lambda value, floor: {"value": value, "floor": floor}  # noqa: E731
    metrics = {"fd": {"value": 60.0, "floor": 50.0, "excess_ci": [-1.0, 21.0]}, "precision": entry(0.8, 0.9),
               "recall": entry(0.6, 0.8), "coverage": entry(0.95, 0.95), "validity": entry(0.9, 0.95),
               "memorization": entry(0.0, 0.01)}
    assert ranked_ratios(metrics) == pytest.approx(
        {"fd": 50 / 60, "precision": 0.8 / 0.9, "recall": 0.75, "coverage": 1.0, "validity": 0.9 / 0.95,
         "novelty": 1 / 0.99})
    assert worst_ratio(metrics) == (pytest.approx(0.75), "recall")
    del metrics["memorization"]
    assert worst_ratio(metrics) == (None, None)  # every term or no rank


# ----------------------------------------------------------------------------- priors that game the floors


def _draw(n: int, g: torch.Generator, means: torch.Tensor, mixes: torch.Tensor) -> torch.Tensor:
    """`[n, D]` rows of a mixture of 4 clusters, each a 3-D linear patch (anisotropic) plus 0.3 noise."""
    cluster = torch.randint(CLUSTERS, (n,), generator=g)
    z = torch.randn(n, RANK, generator=g)
    return torch.einsum("ndr,nr->nd", mixes[cluster], z) + means[cluster] + 0.3 * torch.randn(n, D, generator=g)


@pytest.fixture(scope="module")
def ranked():
    """Each prior's ranked terms and worst ratio, N = 400 samples against 400 test rows (floor: 400 training
    rows of 1,200)."""
    g = torch.Generator().manual_seed(0)
    means = 2.0 * torch.randn(CLUSTERS, D, generator=g) + 3.0  # away from the origin: cosines mean something
    mixes = 1.5 * torch.randn(CLUSTERS, D, RANK, generator=g)
    train, test = _draw(3 * N, g, means, mixes), _draw(N, g, means, mixes)
    lw = LedoitWolf().fit(train.numpy())
    gaussian = np.random.default_rng(0).multivariate_normal(lw.location_, lw.covariance_, N)
    priors = {
        "honest": _draw(N, g, means, mixes),  # fresh draws of the generating distribution
        "copier": train[N:2 * N],  # training rows offered as samples (not the floor's own rows)
        "kde": torch.from_numpy(KernelDensity(bandwidth=0.01).fit(train.numpy()).sample(N, random_state=0)),
        "gaussian": torch.from_numpy(gaussian),
    }
    out = {}
    for name, samples in priors.items():
        report = score_samples(samples.float(), test, train[:N], train, n_boot=50, seed=0, extrapolate=False)
        out[name] = (report, ranked_ratios(report), *worst_ratio(report))
    return out


def test_an_honest_prior_sits_at_its_floors(ranked):
    _, ratios, worst, binding = ranked["honest"]
    assert set(ratios) == set(RANKED) and worst > 0.9, ratios
    assert ratios["novelty"] == pytest.approx(1.0, abs=0.02)


@pytest.mark.parametrize("prior", ["copier", "kde"])
def test_copies_rank_last_on_novelty(ranked, prior):
    report, ratios, worst, binding = ranked[prior]
    # Real rows (or rows 0.01 from them): every measure read against the floor is at it...
    assert all(ratios[name] > 0.9 for name in ("precision", "recall", "coverage", "validity")), ratios
    # ...and every sample is a copy: memorization 1, novelty 0.
    assert report["memorization"]["value"] == 1.0
    assert (worst, binding) == (0.0, "novelty")
    assert worst < ranked["honest"][2]


def test_a_fitted_gaussian_wins_fd_but_not_the_rank(ranked):
    report, ratios, worst, binding = ranked["gaussian"]
    fd = report["fd"]
    # The first two moments of the rows: FD within noise of its floor (the excess interval holds 0).
    assert fd["excess_ci"][0] < 0 < fd["excess_ci"][1] and ratios["fd"] > 0.9
    assert ratios["novelty"] == pytest.approx(1.0, abs=0.02)  # no copies
    # Its mass between and around the clusters is off the data: the support measures bind.
    assert binding in ("precision", "coverage", "validity") and worst < 0.1
    assert max(ratios["precision"], ratios["coverage"]) < 0.1
    assert worst < ranked["honest"][2]
