"""PRDC against the authors' `prdc` package, a hand-worked 1-D case and limiting cases."""
from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
import torch

from scaleflow.evaluation.prdc import precision_recall_density_coverage, prdc_indicators



def _reference(real: np.ndarray, fake: np.ndarray, k: int) -> dict[str, float]:
    """The authors' `prdc` package (dev extra); only the tests comparing against it skip without it."""
    prdc = pytest.importorskip("prdc")
    with contextlib.redirect_stdout(io.StringIO()):  # compute_prdc prints the set sizes
        return {key: float(v) for key, v in prdc.compute_prdc(real, fake, k).items()}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(
    ("n", "m", "d", "k", "chunk_size"),
    [(300, 250, 16, 5, 2048), (257, 301, 32, 3, 64), (200, 200, 8, 10, 50), (150, 90, 64, 1, 33)],
)
def test_matches_prdc_package_on_random_data(dtype, n, m, d, k, chunk_size):
    rng = np.random.default_rng(n + m + d + k)
    real = rng.normal(size=(n, d)).astype(dtype)
    fake = (rng.normal(size=(m, d)) * 1.2 + 0.3).astype(dtype)
    ours = precision_recall_density_coverage(real, fake, k=k, chunk_size=chunk_size)
    ref = _reference(real, fake, k)
    assert set(ours) == {"precision", "recall", "density", "coverage"}
    for key in ref:
        assert ours[key] == pytest.approx(ref[key], abs=1e-6), key
    assert 0 < ours["precision"] < 1 and 0 < ours["coverage"] < 1  # a non-degenerate case


@pytest.mark.parametrize("chunk_size", [2048, 37])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_identical_sets_score_exactly_one(chunk_size, dtype):
    real = torch.randn(300, 24, generator=torch.Generator().manual_seed(0), dtype=dtype)
    ours = precision_recall_density_coverage(real, real.clone(), k=5, chunk_size=chunk_size)
    assert ours == {"precision": 1.0, "recall": 1.0, "density": 1.0, "coverage": 1.0}
    assert _reference(real.numpy(), real.numpy().copy(), 5) == ours


def test_hand_worked_one_dimensional_case():
    # Real 0..4 with k = 1: every real ball has radius 1. Fake 0.5 lies in the balls of 0 and 1,
    # fakes 10 and 12 in none. Fake radii (k = 1): 9.5, 2, 2; the ball of 0.5 holds every real point.
    # (The prdc package needs M >= k + 2 fakes, hence three.)
    real = np.arange(5.0)[:, None]
    fake = np.array([[0.5], [10.0], [12.0]])
    got = precision_recall_density_coverage(real, fake, k=1)
    assert got == pytest.approx({"precision": 1 / 3, "recall": 1.0, "density": 2 / 3, "coverage": 0.4})
    assert got == pytest.approx(_reference(real, fake, 1))


def test_indicators_average_to_the_metrics():
    rng = np.random.default_rng(3)
    real, fake = rng.normal(size=(120, 10)), rng.normal(size=(90, 10)) + 0.4
    metrics = precision_recall_density_coverage(real, fake, k=4, chunk_size=32)
    ind = prdc_indicators(real, fake, k=4, chunk_size=32)
    assert {name: tuple(v.shape) for name, v in ind.items()} == {
        "precision": (90,), "recall": (120,), "density": (90,), "coverage": (120,)
    }
    for name, value in metrics.items():
        assert ind[name].dtype == torch.float64
        assert float(ind[name].mean()) == pytest.approx(value, abs=1e-12), name
    assert set(ind["precision"].unique().tolist()) <= {0.0, 1.0}


def test_far_away_fakes_score_zero():
    g = torch.Generator().manual_seed(1)
    real, fake = torch.randn(100, 8, generator=g), torch.randn(80, 8, generator=g) + 100.0
    assert precision_recall_density_coverage(real, fake) == {
        "precision": 0.0,
        "recall": 0.0,
        "density": 0.0,
        "coverage": 0.0,
    }


def test_rejects_k_not_below_set_sizes():
    x = np.random.default_rng(2).normal(size=(6, 3))
    with pytest.raises(ValueError):
        precision_recall_density_coverage(x, x[:5], k=5)
    with pytest.raises(ValueError):
        precision_recall_density_coverage(x, x, k=0)
