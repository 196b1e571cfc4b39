"""near_duplicate_mask: removes exact and near copies greedily, keeps distinct rows."""
from __future__ import annotations


import numpy as np
import pytest
import torch

from scaleflow.data.dedup import near_duplicate_mask


def _unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _at_cosine(u: np.ndarray, c: float, rng: np.random.Generator) -> np.ndarray:
    """A unit vector with cosine exactly `c` to unit vector `u`."""
    w = rng.standard_normal(u.shape).astype(np.float64)
    w -= (w @ u) * u
    w /= np.linalg.norm(w)
    return (c * u + np.sqrt(1 - c * c) * w).astype(np.float32)


def test_exact_and_near_copies_removed_distinct_kept() -> None:
    rng = np.random.default_rng(0)
    base = _unit(rng, 20, 64)  # random 64-d directions: pairwise cosine ~ +-0.4
    x = np.concatenate([base, base[3:4] * 5.0, _at_cosine(base[7], 0.99, rng)[None], base[:1]])
    keep, removed = near_duplicate_mask(x, threshold=0.95)
    assert removed == 3 and keep[:20].all() and not keep[20:].any()


def test_threshold_respected() -> None:
    rng = np.random.default_rng(1)
    u = _unit(rng, 1, 32)[0]
    x = np.stack([u, _at_cosine(u, 0.94, rng), _at_cosine(u, 0.96, rng)])
    keep, removed = near_duplicate_mask(x, threshold=0.95)
    assert keep.tolist() == [True, True, False] and removed == 1
    assert near_duplicate_mask(x, threshold=0.9)[0].tolist() == [True, False, False]
    assert near_duplicate_mask(np.stack([u, u]), threshold=1.0)[0].tolist() == [True, False]


@pytest.mark.parametrize("chunk", [1, 2048])  # across chunks and inside one chunk
def test_greedy_only_against_kept_rows(chunk: int) -> None:
    # b ~ a and c ~ b but c is not ~ a: b is dropped, so c survives
    rng = np.random.default_rng(2)
    a = _unit(rng, 1, 16)[0]
    w = _at_cosine(a, 0.0, rng)
    b, c = 0.97 * a + np.sqrt(1 - 0.97**2) * w, 0.88 * a + np.sqrt(1 - 0.88**2) * w
    assert float(b @ c) > 0.95
    keep, _ = near_duplicate_mask(np.stack([a, b, c]).astype(np.float32), threshold=0.95, chunk_size=chunk)
    assert keep.tolist() == [True, False, True]


@pytest.mark.parametrize("chunk", [1, 3, 7, 100])
def test_chunking_does_not_change_the_answer(chunk: int) -> None:
    rng = np.random.default_rng(3)
    base = _unit(rng, 15, 8)
    x = np.concatenate([base, base[[2, 2, 9, 14, 0]] + 0.01 * rng.standard_normal((5, 8)).astype(np.float32)])
    x = x[rng.permutation(len(x))]
    ref = near_duplicate_mask(x, 0.95, chunk_size=1000)[0]
    np.testing.assert_array_equal(near_duplicate_mask(torch.from_numpy(x), 0.95, chunk_size=chunk)[0], ref)


def test_copies_across_many_chunks() -> None:
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3000, 256)).astype(np.float32)
    x[2500:] = x[:500]
    keep, removed = near_duplicate_mask(x, chunk_size=512)
    assert removed == 500 and keep[:2500].all() and not keep[2500:].any()
