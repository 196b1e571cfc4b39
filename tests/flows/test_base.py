import pytest
import torch

from scaleflow.flows.base import Flow
from scaleflow.flows.icfm import ICFM
from scaleflow.flows.otcfm import OTCFM
from scaleflow.flows.stochastic_interpolant import SIGVP
from scaleflow.flows.time_sampling import TimeSampler

ALL_FLOWS = [ICFM(), OTCFM(), OTCFM(method="sinkhorn"), SIGVP()]


class QuadraticPath(Flow):
    """A non-standard path, to check the template only needs the four coefficients."""

    name = "quadratic"

    def alpha(self, t):
        return (1 - t) ** 2

    def beta(self, t):
        return 1 - (1 - t) ** 2

    def alpha_dot(self, t):
        return -2 * (1 - t)

    def beta_dot(self, t):
        return 2 * (1 - t)


def _batch(seed=0, b=16, d=6):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, d, generator=g, dtype=torch.float64), torch.randn(b, d, generator=g, dtype=torch.float64) + 3


def test_flow_is_abstract():
    with pytest.raises(TypeError):
        Flow()


@pytest.mark.parametrize("flow", ALL_FLOWS + [QuadraticPath()], ids=lambda f: f"{f.name}-{getattr(f, 'method', '')}")
def test_velocity_from_x1_recovers_target(flow):
    x0, x1 = _batch()
    t = torch.linspace(0.0, 0.9, 16, dtype=torch.float64)
    # The conversion is a property of the path (coupling plays no part), so use known pairs.
    xt, ut = flow.compute_xt(x0, x1, t), flow.compute_ut(x0, x1, t)
    torch.testing.assert_close(flow.velocity_from_x1(xt, x1, t), ut, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(flow.x1_from_velocity(xt, ut, t), x1, rtol=1e-9, atol=1e-9)
    # A wrong data prediction gives a wrong velocity (the check can fail).
    assert not torch.allclose(flow.velocity_from_x1(xt, x1 + 0.1, t), ut)


@pytest.mark.parametrize("flow", [ICFM(), SIGVP()], ids=lambda f: f.name)
def test_velocity_from_x1_on_sampled_batch(flow):
    # End to end: the (x_t, u_t) the trainer gets are consistent with the x1 it passed in.
    x0, x1 = _batch(7, b=64)
    t, xt, ut = flow.sample_location_and_conditional_flow(x0, x1, generator=torch.Generator().manual_seed(0))
    keep = flow.alpha(t) > 0.05
    torch.testing.assert_close(flow.velocity_from_x1(xt, x1, t)[keep], ut[keep], rtol=1e-7, atol=1e-7)


def test_linear_velocity_from_x1_formula_and_clamp():
    x0, x1 = _batch(1)
    f = ICFM()
    t = torch.full((16,), 0.3, dtype=torch.float64)
    xt = f.compute_xt(x0, x1, t)
    x1_hat = x1 + 0.2  # any prediction, not only the true x1
    torch.testing.assert_close(f.velocity_from_x1(xt, x1_hat, t), (x1_hat - xt) / 0.7, rtol=1e-12, atol=1e-12)
    # At t=1 alpha=0: the clamp keeps it finite, x0_hat = (x_t - x1_hat) / min_alpha.
    v1 = f.velocity_from_x1(x1, x1_hat, 1.0, min_alpha=1e-3)
    assert torch.isfinite(v1).all()
    torch.testing.assert_close(v1, -(x1 - x1_hat) / 1e-3 + x1_hat, rtol=1e-12, atol=1e-12)


def test_sigvp_velocity_from_x1_finite_at_t1():
    x0, x1 = _batch(2)
    v = SIGVP().velocity_from_x1(x1, x1 + 0.5, torch.ones(16, dtype=torch.float64))
    assert torch.isfinite(v).all()


def test_quadratic_path_template_finite_difference_and_endpoints():
    x0, x1 = _batch(3)
    f = QuadraticPath()
    t = torch.rand(16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    h = 1e-6
    fd = (f.compute_xt(x0, x1, t + h) - f.compute_xt(x0, x1, t - h)) / (2 * h)
    torch.testing.assert_close(fd, f.sample_location_and_conditional_flow(x0, x1, t)[2], rtol=0, atol=1e-6)
    torch.testing.assert_close(f.compute_xt(x0, x1, 0.0), x0)
    torch.testing.assert_close(f.compute_xt(x0, x1, 1.0), x1)


def test_given_pairs_are_kept_by_identity_coupling():
    # What a reflow-style flow relies on: pre-paired (noise, sample) pairs go through unchanged.
    x0, x1 = _batch(4)
    t = torch.full((16,), 0.25, dtype=torch.float64)
    for flow in (ICFM(), SIGVP()):
        _, xt, ut = flow.sample_location_and_conditional_flow(x0, x1, t)
        torch.testing.assert_close(xt, flow.compute_xt(x0, x1, t))
        torch.testing.assert_close(ut, flow.compute_ut(x0, x1, t))


def test_flow_uses_its_time_sampler():
    x0, x1 = _batch(5, b=20_000, d=2)
    f = ICFM(time_sampler=TimeSampler.logit_normal(mean=1.5, std=0.5))
    t, _, _ = f.sample_location_and_conditional_flow(x0, x1, generator=torch.Generator().manual_seed(0))
    assert abs(torch.logit(t).mean().item() - 1.5) < 0.02


@pytest.mark.parametrize("t", [0.5, torch.tensor(0.5), torch.full((16, 1), 0.5)])
def test_time_shapes_accepted(t):
    x0, x1 = _batch(6)
    tt, xt, _ = ICFM().sample_location_and_conditional_flow(x0, x1, t)
    assert tt.shape == (16,) and tt.dtype == torch.float64
    torch.testing.assert_close(xt, 0.5 * (x0 + x1))
