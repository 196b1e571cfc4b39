"""Validity: share of samples whose nearest-reference cosine reaches the real draw's 5th percentile."""
from __future__ import annotations

import math

import pytest
import torch

from scaleflow.evaluation.validity import validity, validity_threshold


def _cloud(n: int, seed: int, d: int = 24) -> torch.Tensor:
    """Rows `[n, d]` around one mean direction (cosines ~0.9 between neighbours), like embeddings of one domain."""
    return 1.0 + 0.35 * torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def test_hand_computed_example():
    # Reference: the two axes of the plane. Real rows at angles 0, 10, 20, 30, 40 degrees from the x-axis
    # have nearest-axis cosines cos 0, cos 10, cos 20, cos 30, cos 50 (40 degrees is 50 from the y-axis).
    reference = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    angles = torch.tensor([0.0, 10.0, 20.0, 30.0, 40.0], dtype=torch.float64).deg2rad()
    real = torch.stack([angles.cos(), angles.sin()], 1)
    cos = [math.cos(math.radians(a)) for a in (0, 10, 20, 30, 40)]
    # torch.quantile at 0.25 of 5 values: position 0.25 * 4 = 1 -> the second smallest, cos 30.
    result = validity(3.0 * torch.stack([angles.cos(), angles.sin()], 1)[[0, 3, 4]],  # scale does not matter
                      reference, real, quantile=0.25)
    assert result.threshold == pytest.approx(cos[3], abs=1e-12)
    assert result.floor == pytest.approx(4 / 5)  # cos 0, 10, 20, 30 reach it; cos 40 does not
    assert result.value == pytest.approx(2 / 3)  # 0 and 30 degrees do, 40 does not
    assert result.valid.tolist() == [True, True, False]
    assert result.nearest_cosine == pytest.approx((cos[0] + cos[3] + cos[4]) / 3, abs=1e-12)
    assert result.floor_nearest_cosine == pytest.approx(sum(cos) / 5, abs=1e-12)
    assert result.real_valid.tolist() == [True, True, True, True, False]


def test_real_data_scores_095_and_a_shift_less():
    reference, real, fresh = _cloud(400, 0), _cloud(500, 1), _cloud(500, 2)
    result = validity(fresh, reference, real)
    assert result.floor == pytest.approx(0.95, abs=0.002)  # by construction
    assert result.value == pytest.approx(0.95, abs=0.03)  # another real draw: the same up to noise
    assert result.nearest_cosine == pytest.approx(result.floor_nearest_cosine, abs=0.01)
    off = fresh.clone()
    off[:, :6] -= 1.5  # rotate the rows away from the reference's directions
    shifted = validity(off, reference, real)
    assert shifted.value < 0.5 and shifted.nearest_cosine < result.nearest_cosine - 0.05


def test_threshold_can_be_computed_once_and_reused():
    reference, real = _cloud(300, 3), _cloud(300, 4)
    threshold, real_cosines = validity_threshold(reference, real)
    result = validity(_cloud(200, 5), reference, real)
    assert result.threshold == threshold and torch.equal(result.real_cosines, real_cosines)
    assert real_cosines.shape == (300,) and real_cosines.dtype == torch.float64
    assert float((real_cosines >= threshold).double().mean()) == pytest.approx(0.95, abs=1 / 300)


def test_rejects_bad_input():
    x = torch.randn(10, 4)
    with pytest.raises(ValueError, match="quantile"):
        validity(x, x, x, quantile=1.0)
    with pytest.raises(ValueError, match="same number of features"):
        validity(torch.randn(10, 3), x, x)
    with pytest.raises(ValueError, match="NaN"):
        validity(torch.full((3, 4), float("nan")), x, x)
