"""Rows on a sphere (a normalized encoder's): detected, and samples projected onto it on request."""
from __future__ import annotations

import pytest
import torch

from scaleflow.sampling.sphere import project_to_sphere, sphere_radius


def test_sphere_radius_finds_one_shared_norm_and_nothing_else():
    g = torch.Generator().manual_seed(0)
    rows = torch.nn.functional.normalize(torch.randn(50, 8, generator=g), dim=1) * 3.0
    assert sphere_radius(rows) == pytest.approx(3.0)
    assert sphere_radius(rows * (1 + 1e-5)) == pytest.approx(3.0, rel=1e-4)  # float rounding still counts
    spread = rows.clone()
    spread[0] *= 1.01
    assert sphere_radius(spread) is None
    assert sphere_radius(torch.randn(50, 8, generator=g)) is None


def test_projection_keeps_directions_and_sets_the_norm():
    x = torch.tensor([[3.0, 4.0], [0.0, 0.0], [-1.0, 0.0]])
    projected = project_to_sphere(x, 2.0)
    assert torch.allclose(projected, torch.tensor([[1.2, 1.6], [0.0, 0.0], [-2.0, 0.0]]))

