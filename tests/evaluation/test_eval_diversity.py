"""Cosine diversity and norm statistics against closed forms and brute force."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from scaleflow.evaluation.diversity import (
    mean_pairwise_cosine_distance,
    nearest_cosine_similarity,
    norm_and_cosine_stats,
)


def _cos_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return a @ b.T


def test_orthogonal_vectors_have_mean_cosine_distance_one():
    scaled_basis = np.diag(np.arange(1.0, 9.0))
    assert mean_pairwise_cosine_distance(scaled_basis) == 1.0
    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(32, 32)))
    assert mean_pairwise_cosine_distance(q[:20] * 7.0) == pytest.approx(1.0, abs=1e-12)


def test_identical_directions_have_distance_zero_and_opposite_two():
    v = np.random.default_rng(1).normal(size=16)
    assert mean_pairwise_cosine_distance(np.outer([1.0, 2.0, 0.5, 3.0], v)) == pytest.approx(0.0, abs=1e-12)
    assert mean_pairwise_cosine_distance(np.stack([v, -v])) == pytest.approx(2.0, abs=1e-12)


def test_zero_rows_have_cosine_zero_with_everything():
    # Ordered pairs of {e1, e1, 0}: (e1, e1) twice with cosine 1, four pairs with the zero row at 0.
    x = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 0.0]])
    assert mean_pairwise_cosine_distance(x) == pytest.approx(1.0 - 2 / 6, abs=1e-12)


def test_mean_pairwise_cosine_distance_matches_brute_force():
    x = np.random.default_rng(2).normal(size=(50, 8)) + 0.5
    c = _cos_matrix(x, x)
    expected = 1.0 - (c.sum() - np.trace(c)) / (50 * 49)
    assert mean_pairwise_cosine_distance(torch.tensor(x, dtype=torch.float32)) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("chunk_size", [2048, 9])
def test_norm_and_cosine_stats_match_brute_force(chunk_size):
    rng = np.random.default_rng(3)
    gen, ref = rng.normal(size=(40, 6)) * 2.0, rng.normal(size=(30, 6)) + 1.0
    got = norm_and_cosine_stats(gen, ref, chunk_size=chunk_size)
    gn, rn = np.linalg.norm(gen, axis=1), np.linalg.norm(ref, axis=1)
    cg, cr = _cos_matrix(gen, gen), _cos_matrix(ref, ref)
    expected = {
        "generated_norm_mean": gn.mean(),
        "generated_norm_std": gn.std(ddof=1),
        "reference_norm_mean": rn.mean(),
        "reference_norm_std": rn.std(ddof=1),
        "nearest_reference_cosine_mean": _cos_matrix(gen, ref).max(axis=1).mean(),
        "generated_pairwise_cosine_mean": (cg.sum() - np.trace(cg)) / (40 * 39),
        "reference_pairwise_cosine_mean": (cr.sum() - np.trace(cr)) / (30 * 29),
    }
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key


def test_generated_equal_to_reference_has_nearest_cosine_one():
    x = torch.randn(64, 10, generator=torch.Generator().manual_seed(4))
    assert norm_and_cosine_stats(x * 3.0, x)["nearest_reference_cosine_mean"] == pytest.approx(1.0, abs=1e-6)
    assert torch.allclose(nearest_cosine_similarity(x, x), torch.ones(64), atol=1e-6)


def test_rejects_single_row():
    with pytest.raises(ValueError):
        mean_pairwise_cosine_distance(np.ones((1, 3)))
