import pytest
import torch

from scaleflow.flows.icfm import ICFM
from scaleflow.flows.registry import FLOWS, create_flow


def _batch(seed=0, b=8, d=5):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, d, generator=g, dtype=torch.float64), torch.randn(b, d, generator=g, dtype=torch.float64) * 2 + 1


def test_closed_form_given_t():
    x0, x1 = _batch()
    t = torch.linspace(0, 1, 8, dtype=torch.float64)
    tt, xt, ut = ICFM().sample_location_and_conditional_flow(x0, x1, t)
    assert torch.equal(tt, t)
    torch.testing.assert_close(xt, (1 - t[:, None]) * x0 + t[:, None] * x1, rtol=0, atol=1e-12)
    torch.testing.assert_close(ut, x1 - x0, rtol=0, atol=1e-12)


def test_endpoints():
    x0, x1 = _batch(1)
    f = ICFM()
    _, xt0, _ = f.sample_location_and_conditional_flow(x0, x1, 0.0)
    _, xt1, _ = f.sample_location_and_conditional_flow(x0, x1, 1.0)
    torch.testing.assert_close(xt0, x0, rtol=0, atol=1e-12)
    torch.testing.assert_close(xt1, x1, rtol=0, atol=1e-12)


def test_finite_difference_matches_ut():
    x0, x1 = _batch(2)
    f = ICFM()
    t = torch.rand(8, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 0.9 + 0.05
    h = 1e-6
    fd = (f.compute_xt(x0, x1, t + h) - f.compute_xt(x0, x1, t - h)) / (2 * h)
    _, _, ut = f.sample_location_and_conditional_flow(x0, x1, t)
    torch.testing.assert_close(fd, ut, rtol=0, atol=1e-6)


def test_sigma_adds_seeded_gaussian_noise_and_keeps_target():
    x0, x1 = _batch(4, b=4096, d=4)
    f = ICFM(sigma=0.3)
    t = torch.full((4096,), 0.4, dtype=torch.float64)
    _, xt, ut = f.sample_location_and_conditional_flow(x0, x1, t, generator=torch.Generator().manual_seed(0))
    _, xt2, _ = f.sample_location_and_conditional_flow(x0, x1, t, generator=torch.Generator().manual_seed(0))
    assert torch.equal(xt, xt2)
    resid = xt - (0.6 * x0 + 0.4 * x1)
    assert abs(resid.std().item() - 0.3) < 0.01 and abs(resid.mean().item()) < 0.01
    torch.testing.assert_close(ut, x1 - x0)
    # Noise is the only randomness given t: a different seed gives a different x_t.
    _, xt3, _ = f.sample_location_and_conditional_flow(x0, x1, t, generator=torch.Generator().manual_seed(1))
    assert not torch.allclose(xt, xt3)


def test_sampled_times_are_seeded_and_in_range():
    x0, x1 = _batch(5, b=256)
    f = ICFM()
    t1, xt1, _ = f.sample_location_and_conditional_flow(x0, x1, generator=torch.Generator().manual_seed(9))
    t2, xt2, _ = f.sample_location_and_conditional_flow(x0, x1, generator=torch.Generator().manual_seed(9))
    assert t1.shape == (256,) and t1.dtype == torch.float64
    assert torch.equal(t1, t2) and torch.equal(xt1, xt2)
    assert t1.min() >= 0 and t1.max() < 1 and t1.std() > 0.2
    torch.testing.assert_close(xt1, (1 - t1[:, None]) * x0 + t1[:, None] * x1)


def test_bad_inputs():
    x0, x1 = _batch()
    with pytest.raises(ValueError):
        ICFM(sigma=-1.0)
    with pytest.raises(ValueError):
        ICFM().sample_location_and_conditional_flow(x0, x1[:, :3])
    with pytest.raises(ValueError):
        ICFM().sample_location_and_conditional_flow(x0, x1, torch.zeros(3))


def test_registry():
    assert set(FLOWS) == {"icfm", "otcfm", "si-gvp", "reflow"}
    for name, cls in FLOWS.items():
        flow = create_flow(name, sigma=0.1)
        assert isinstance(flow, cls) and flow.name == name and flow.sigma == 0.1
    with pytest.raises(ValueError, match="icfm, otcfm, reflow, si-gvp"):
        create_flow("ddpm")


def test_sample_path_returns_the_coupled_pairs():
    x0, x1 = _batch()
    g = torch.Generator().manual_seed(0)
    sample = ICFM().sample_path(x0, x1, generator=g)
    assert torch.equal(sample.x0, x0) and torch.equal(sample.x1, x1)
    torch.testing.assert_close(sample.u_t, x1 - x0)
    t, x_t, u_t = ICFM().sample_location_and_conditional_flow(x0, x1, generator=torch.Generator().manual_seed(0))
    assert torch.equal(t, sample.t) and torch.equal(x_t, sample.x_t) and torch.equal(u_t, sample.u_t)


def test_reflow_keeps_given_pairs_on_the_straight_path():
    x0, x1 = _batch()
    sample = create_flow("reflow").sample_path(x0, x1, t=0.25)
    assert torch.equal(sample.x0, x0) and torch.equal(sample.x1, x1)
    torch.testing.assert_close(sample.x_t, 0.75 * x0 + 0.25 * x1)
