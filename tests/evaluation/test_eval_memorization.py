"""Nearest-neighbour distances and the memorization rate."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from scaleflow.evaluation.memorization import memorization_rate, nearest_neighbor_distances


def _brute_knn(q: np.ndarray, r: np.ndarray, k: int, exclude_self: bool) -> np.ndarray:
    d = np.sqrt(((q[:, None, :] - r[None, :, :]) ** 2).sum(-1))
    if exclude_self:
        np.fill_diagonal(d, np.inf)
    return np.sort(d, axis=1)[:, k - 1]


@pytest.mark.parametrize("chunk_size", [2048, 13])
@pytest.mark.parametrize("k", [1, 3])
def test_nearest_neighbor_distances_match_brute_force(chunk_size, k):
    rng = np.random.default_rng(0)
    q, r = rng.normal(size=(70, 6)), rng.normal(size=(45, 6)) + 0.2
    got = nearest_neighbor_distances(q, r, k=k, chunk_size=chunk_size)
    assert isinstance(got, torch.Tensor) and got.shape == (70,)
    np.testing.assert_allclose(got.numpy(), _brute_knn(q, r, k, False), rtol=1e-9)
    got_self = nearest_neighbor_distances(r, r, exclude_self=True, k=k, chunk_size=chunk_size)
    np.testing.assert_allclose(got_self.numpy(), _brute_knn(r, r, k, True), rtol=1e-9)


def test_exclude_self_is_by_index_so_duplicates_count():
    x = np.random.default_rng(1).normal(size=(20, 4))
    x[5] = x[11]
    d = nearest_neighbor_distances(x, x, exclude_self=True)
    assert d[5] == 0 and d[11] == 0
    assert (np.delete(d.numpy(), [5, 11]) > 0).all()
    assert (nearest_neighbor_distances(x, x)[:] == 0).all()  # without exclusion each row finds itself


def test_small_distances_are_exact_in_float32():
    # The matmul form ||a||^2 + ||b||^2 - 2ab has round-off ~1e-3 here; returned distances must not.
    g = torch.Generator().manual_seed(2)
    train = torch.randn(300, 64, generator=g) * 3.0
    noise = torch.randn(300, 64, generator=g) * 1e-4
    got = nearest_neighbor_distances(train + noise, train)
    torch.testing.assert_close(got, noise.norm(dim=1), rtol=1e-3, atol=0.0)
    assert (nearest_neighbor_distances(train, train.clone()) == 0).all()


def test_exclude_self_requires_the_same_set():
    x = np.zeros((4, 2))
    with pytest.raises(ValueError):
        nearest_neighbor_distances(x, x + 1, exclude_self=True)


def _train(n: int = 400, d: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_copies_and_near_copies_are_memorized():
    train = _train()
    result = memorization_rate(train[:100].clone(), train)
    assert result["rate"] == 1.0
    noise = 1e-3 * torch.randn(100, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert memorization_rate(train[100:200] + noise, train)["rate"] == 1.0


def test_far_away_points_are_not_memorized():
    train = _train()
    far = _train(seed=2) + 50.0
    assert memorization_rate(far, train)["rate"] == 0.0


def test_threshold_follows_the_documented_rule():
    train = _train(300, 8)
    gen = _train(200, 8, seed=3)
    result = memorization_rate(gen, train, ratio=0.5)
    train_nn = _brute_knn(train.numpy(), train.numpy(), 1, True)
    gen_nn = _brute_knn(gen.numpy(), train.numpy(), 1, False)
    threshold = 0.5 * float(torch.tensor(train_nn).median())  # median (lower median for even N)
    assert result["threshold"] == pytest.approx(threshold, rel=1e-12)
    assert result["train_median_nn_distance"] == pytest.approx(2 * threshold, rel=1e-12)
    assert result["rate"] == pytest.approx(float((gen_nn < threshold).mean()))
    assert result["baseline_rate"] == pytest.approx(float((train_nn < threshold).mean()))
    assert "median" in result["rule"] and "0.5" in result["rule"]
    assert list(result["nn_distance_quantiles"]) == [5, 25, 50, 75, 95]
    assert result["nn_distance_quantiles"][50] == pytest.approx(float(np.quantile(gen_nn, 0.5)), rel=1e-9)
    assert result["train_nn_distance_quantiles"][95] == pytest.approx(float(np.quantile(train_nn, 0.95)), rel=1e-9)
    # Fresh samples from the training distribution score about the baseline, far below 1.
    assert result["rate"] < 0.2 and result["baseline_rate"] < 0.2
    # ratio 1 with a median is the literal "closer than training points are to each other":
    # then about half of the *training points themselves* would count, which is why it is not the default.
    assert memorization_rate(gen, train, ratio=1.0)["baseline_rate"] == pytest.approx(0.5, abs=0.01)


def test_subsampled_threshold_excludes_each_point_itself():
    train = _train(300, 8)
    sub = memorization_rate(train[:10], train, max_threshold_queries=50, seed=4)
    idx = torch.randperm(300, generator=torch.Generator().manual_seed(4))[:50]
    train_nn = _brute_knn(train.numpy(), train.numpy(), 1, True)[idx.numpy()]
    assert sub["train_median_nn_distance"] == pytest.approx(float(torch.tensor(train_nn).median()), rel=1e-12)
    assert sub["rate"] == 1.0


def test_rejects_bad_arguments():
    train = _train(10, 2)
    with pytest.raises(ValueError):
        memorization_rate(train, train, ratio=0.0)
    with pytest.raises(ValueError):
        memorization_rate(train, train[:1])
    with pytest.raises(ValueError):
        memorization_rate(train[:, :1], train)


def test_returned_distances_reproduce_the_rate():
    g = torch.Generator().manual_seed(5)
    train = torch.randn(200, 6, generator=g)
    generated = torch.cat([train[:30] + 1e-4, torch.randn(70, 6, generator=g)])
    out = memorization_rate(generated, train, return_distances=True)
    assert out["nn_distances"].shape == (100,)
    assert float((out["nn_distances"] < out["threshold"]).double().mean()) == out["rate"]
    assert "nn_distances" not in memorization_rate(generated, train)
