import math

import torch

from scaleflow.flows.stochastic_interpolant import SIGVP


def _batch(seed=0, b=8, d=5):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, d, generator=g, dtype=torch.float64), torch.randn(b, d, generator=g, dtype=torch.float64)


def test_closed_form_given_t():
    x0, x1 = _batch()
    t = torch.linspace(0, 1, 8, dtype=torch.float64)
    tt, xt, ut = SIGVP().sample_location_and_conditional_flow(x0, x1, t)
    c, s = torch.cos(math.pi * t / 2)[:, None], torch.sin(math.pi * t / 2)[:, None]
    assert SIGVP().name == "si-gvp"
    torch.testing.assert_close(xt, c * x0 + s * x1, rtol=0, atol=1e-12)
    torch.testing.assert_close(ut, -(math.pi / 2) * s * x0 + (math.pi / 2) * c * x1, rtol=0, atol=1e-12)
    # Spot value at t = 1/2: both coefficients are sqrt(2)/2.
    torch.testing.assert_close(SIGVP().compute_xt(x0, x1, 0.5), (x0 + x1) * math.sqrt(0.5), rtol=0, atol=1e-12)


def test_endpoints():
    x0, x1 = _batch(1)
    f = SIGVP()
    torch.testing.assert_close(f.compute_xt(x0, x1, 0.0), x0, rtol=0, atol=1e-12)
    torch.testing.assert_close(f.compute_xt(x0, x1, 1.0), x1, rtol=0, atol=1e-12)
    # Velocity at the ends: pure data direction at t=0, pure (negative) noise direction at t=1.
    torch.testing.assert_close(f.compute_ut(x0, x1, 0.0), (math.pi / 2) * x1, rtol=0, atol=1e-12)
    torch.testing.assert_close(f.compute_ut(x0, x1, 1.0), -(math.pi / 2) * x0, rtol=0, atol=1e-12)


def test_finite_difference_matches_ut():
    x0, x1 = _batch(2)
    f = SIGVP()
    t = torch.rand(8, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    h = 1e-6
    fd = (f.compute_xt(x0, x1, t + h) - f.compute_xt(x0, x1, t - h)) / (2 * h)
    _, _, ut = f.sample_location_and_conditional_flow(x0, x1, t)
    torch.testing.assert_close(fd, ut, rtol=0, atol=1e-6)


def test_variance_preserving():
    g = torch.Generator().manual_seed(4)
    x0, x1 = torch.randn(100_000, 2, generator=g), torch.randn(100_000, 2, generator=g)
    for t in (0.1, 0.5, 0.9):
        assert abs(SIGVP().compute_xt(x0, x1, t).var().item() - 1.0) < 0.02
