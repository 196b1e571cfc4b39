"""Log-densities under a flow prior, against Gaussians whose flow, marginal velocity and (for x1
prediction) the sampler's endpoint jump are all known in closed form."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from scaleflow.data.normalization import Standardizer
from scaleflow.flows.registry import create_flow
from scaleflow.nets.registry import create_model
from scaleflow.sampling.solvers import DOPRI5_ENDPOINT_GAP
from scaleflow.sampling.velocity import VelocityField
from scaleflow.search import log_density as ld
from scaleflow.search.log_density import LogDensityResult, log_density

DT = torch.float64


class Gaussian:
    """Data N(mu, diag(s^2)) and the exact marginal velocity of the linear (ICFM, sigma = 0) path
    from N(0, I): x_t = (1 - t) x0 + t x1, var_t = (1 - t)^2 + t^2 s^2 per dimension."""

    def __init__(self, dim: int):
        self.mu = torch.linspace(-1.5, 2.0, dim, dtype=DT)
        self.s = torch.linspace(0.3, 1.6, dim, dtype=DT)  # both contracting and expanding dimensions

    def velocity(self, x, t):
        t = t[:, None]
        var = (1 - t) ** 2 + t**2 * self.s**2
        return self.mu + (x - t * self.mu) * (t * self.s**2 - (1 - t)) / var

    def x1_hat(self, x, t):
        """E[x1 | x_t = x] = x + (1 - t) v(x, t)."""
        return x + (1 - t[:, None]) * self.velocity(x, t)

    def log_pdf(self, x, scale=None):
        return torch.distributions.Normal(self.mu, self.s if scale is None else scale).log_prob(x).sum(-1)

    def points(self, n=12, spread=1.5, seed=1):
        g = torch.Generator().manual_seed(seed)
        return self.mu + spread * self.s * torch.randn(n, len(self.mu), generator=g, dtype=DT)


class Predictor(torch.nn.Module):
    """A 'network' that outputs a closed-form x1 estimate, and remembers the latest time it saw."""

    def __init__(self, fn):
        super().__init__()
        self.fn, self.max_t = fn, -math.inf

    def forward(self, x, t):
        self.max_t = max(self.max_t, float(t.max()))
        return self.fn(x, t)


@pytest.mark.parametrize("dim", [3, 8])
def test_velocity_field_matches_the_gaussian_log_pdf(dim):
    g = Gaussian(dim)
    x = g.points()
    result = log_density(g.velocity, x)
    assert isinstance(result, LogDensityResult)
    # rk4 at the default 16 steps: measured 3e-6 (D = 3) and 1.2e-5 (D = 8).
    torch.testing.assert_close(result.log_density, g.log_pdf(x), rtol=0, atol=1e-4)
    # The flow map of this path is affine, x1 = mu + s x0: the noise is known too.
    torch.testing.assert_close(result.noise, (x - g.mu) / g.s, rtol=0, atol=1e-5)
    assert torch.all(result.endpoint_logdet == 0)


def test_more_steps_converge_to_the_closed_form():
    g = Gaussian(5)
    x = g.points()
    errors = [float((log_density(g.velocity, x, steps=n, solver=solver).log_density - g.log_pdf(x)).abs().max())
              for solver, n in (("heun", 8), ("heun", 32), ("rk4", 8), ("rk4", 32))]
    assert errors[1] < errors[0] / 10 and errors[1] < 0.05  # second order
    assert errors[3] < errors[2] / 100 and errors[3] < 1e-5  # fourth order


def test_sign_of_the_divergence_term():
    """v = a x: x(t) = x1 exp(a (t - 1)), div v = a D, so log p1(x1) = log N(x1 e^-a) - a D."""
    a, dim = 0.7, 4
    x = torch.randn(5, dim, generator=torch.Generator().manual_seed(0), dtype=DT)
    result = log_density(lambda y, t: a * y, x, steps=32)
    noise = x * math.exp(-a)
    expected = torch.distributions.Normal(0.0, 1.0).log_prob(noise).sum(-1).double() - a * dim
    torch.testing.assert_close(result.log_density, expected, rtol=0, atol=1e-8)
    torch.testing.assert_close(result.divergence_integral, torch.full((5,), a * dim, dtype=DT))


@pytest.mark.parametrize("dim", [3, 8])
def test_x1_prediction_is_the_ode_up_to_the_gap_then_the_samplers_jump(dim):
    g = Gaussian(dim)
    net = Predictor(g.x1_hat)
    field = VelocityField(net, create_flow("icfm"), "x1")
    assert field.singular_at_one
    x = g.points()
    result = log_density(field, x)
    assert net.max_t <= 1.0 - DOPRI5_ENDPOINT_GAP + 1e-12  # never near the singularity
    # Exact ODE up to s = 1 - gap gives N(s mu, var_s); the jump x = mu + c (y - s mu), c = s s^2 / var_s,
    # pushes it to N(mu, c^2 var_s): the sampler's model, slightly narrower than the data.
    s = 1.0 - DOPRI5_ENDPOINT_GAP
    var_s = (1 - s) ** 2 + s**2 * g.s**2
    c = s * g.s**2 / var_s
    torch.testing.assert_close(result.log_density, g.log_pdf(x, scale=c * var_s.sqrt()), rtol=0, atol=2e-4)
    torch.testing.assert_close(result.endpoint_logdet, c.log().sum().expand(len(x)), rtol=0, atol=1e-9)
    torch.testing.assert_close(result.noise, (x - g.mu) / (c * var_s.sqrt()), rtol=0, atol=1e-4)
    # The same Gaussian as the data to within the gap's effect (a 1 - c sqrt(var_s) / s share of the std).
    assert float((result.log_density - g.log_pdf(x)).abs().max()) < 1.0


def test_x1_jump_jacobian_chunking_changes_nothing(monkeypatch):
    g = Gaussian(6)
    field = VelocityField(Predictor(g.x1_hat), create_flow("icfm"), "x1")
    x = g.points(n=7)
    whole = log_density(field, x, steps=4)
    monkeypatch.setattr(ld, "_JACOBIAN_ELEMENTS", 2 * 6 * 6)  # two points at a time
    monkeypatch.setattr(ld, "_CHUNK_ELEMENTS", 2 * 6 * 4)  # a few Jacobian rows per backward
    chunked = log_density(field, x, steps=4)
    torch.testing.assert_close(chunked.log_density, whole.log_density, rtol=0, atol=1e-10)
    torch.testing.assert_close(chunked.endpoint_logdet, whole.endpoint_logdet, rtol=0, atol=1e-12)


def test_hutchinson_is_exact_for_a_diagonal_jacobian():
    """Rademacher probes have eps_i^2 = 1: for a diagonal Jacobian every probe gives the trace."""
    g = Gaussian(6)
    x = g.points()
    exact = log_density(g.velocity, x, divergence="exact")
    hutch = log_density(g.velocity, x, divergence="hutchinson", seed=3)
    torch.testing.assert_close(hutch.log_density, exact.log_density, rtol=0, atol=1e-10)


class Nonlinear:
    """A field with a full, x-dependent Jacobian."""

    def __init__(self, dim, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.w = torch.randn(dim, dim, generator=g, dtype=DT) / math.sqrt(dim)
        self.b = torch.randn(dim, generator=g, dtype=DT)

    def __call__(self, x, t):
        return torch.tanh(x @ self.w.T + self.b) * (1.0 + t[:, None]) - 0.3 * x


def test_hutchinson_is_unbiased():
    field, dim = Nonlinear(5), 5
    x = torch.randn(4, dim, generator=torch.Generator().manual_seed(1), dtype=DT)
    exact = log_density(field, x, steps=4, divergence="exact")
    runs = torch.stack([log_density(field, x, steps=4, divergence="hutchinson", seed=seed).log_density
                        for seed in range(100)])  # [100, 4]
    sem = runs.std(0) / math.sqrt(runs.shape[0])
    assert torch.all(sem > 1e-3)  # the estimator is noisy at all...
    assert torch.all((runs.mean(0) - exact.log_density).abs() < 4 * sem)  # ...and unbiased
    # The state never depends on the divergence: the noise is the same whatever the estimator.
    torch.testing.assert_close(log_density(field, x, steps=4, divergence="hutchinson").noise, exact.noise,
                               rtol=0, atol=0)


def test_hutchinson_with_many_probes_matches_exact_on_a_linear_field():
    dim = 6
    m = 0.4 * torch.randn(dim, dim, generator=torch.Generator().manual_seed(2), dtype=DT)
    field = lambda y, t: y @ m.T  # noqa: E731  div = tr m everywhere
    x = torch.randn(3, dim, generator=torch.Generator().manual_seed(3), dtype=DT)
    exact = log_density(field, x, steps=4, divergence="exact")
    hutch = log_density(field, x, steps=4, divergence="hutchinson", n_probes=2000)
    torch.testing.assert_close(exact.divergence_integral, torch.trace(m).expand(3), rtol=0, atol=1e-12)
    torch.testing.assert_close(hutch.log_density, exact.log_density, rtol=0, atol=0.08)


def test_hutchinson_is_reproducible_and_independent_of_batching():
    field = Nonlinear(7)
    x = torch.randn(9, 7, generator=torch.Generator().manual_seed(4), dtype=DT)
    kwargs = dict(steps=3, divergence="hutchinson", n_probes=2, seed=11)
    whole = log_density(field, x, **kwargs)
    torch.testing.assert_close(log_density(field, x, **kwargs).log_density, whole.log_density, rtol=0, atol=0)
    split = log_density(field, x, batch_size=4, **kwargs)
    torch.testing.assert_close(split.log_density, whole.log_density, rtol=0, atol=1e-12)
    other_seed = log_density(field, x, **{**kwargs, "seed": 12})
    assert not torch.allclose(other_seed.log_density, whole.log_density)


def test_auto_switches_to_hutchinson_above_the_threshold(monkeypatch):
    field = Nonlinear(6)
    x = torch.randn(3, 6, generator=torch.Generator().manual_seed(5), dtype=DT)
    assert ld.EXACT_DIVERGENCE_MAX_DIM == 1024
    exact = log_density(field, x, steps=3, divergence="exact")
    torch.testing.assert_close(log_density(field, x, steps=3).log_density, exact.log_density, rtol=0, atol=0)
    monkeypatch.setattr(ld, "EXACT_DIVERGENCE_MAX_DIM", 5)
    auto = log_density(field, x, steps=3, seed=2)
    hutch = log_density(field, x, steps=3, divergence="hutchinson", seed=2)
    torch.testing.assert_close(auto.log_density, hutch.log_density, rtol=0, atol=0)
    assert not torch.allclose(auto.log_density, exact.log_density)


def test_standardizer_gives_the_original_space_density():
    g, dim = Gaussian(4), 4
    mean = np.array([0.5, -3.0, 10.0, 0.0])
    std = np.array([0.05, 2.0, 0.5, 1.0])
    standardizer = Standardizer(mean, std)
    z = g.points()
    x = torch.as_tensor(standardizer.inverse_transform(z.numpy()))  # original-space points
    normalized = log_density(g.velocity, z)
    original = log_density(g.velocity, x, standardizer=standardizer)
    log_std = float(np.log(standardizer.std.astype(np.float64)).sum())
    torch.testing.assert_close(original.log_density, normalized.log_density - log_std, rtol=0, atol=1e-6)
    mean32 = torch.as_tensor(standardizer.mean, dtype=DT)
    std32 = torch.as_tensor(standardizer.std, dtype=DT)
    expected = torch.distributions.Normal(mean32 + std32 * g.mu, std32 * g.s).log_prob(x).sum(-1)
    torch.testing.assert_close(original.log_density, expected, rtol=0, atol=1e-4)
    assert original.noise.shape == (len(x), dim)


def test_mode_beats_tail_and_shapes_dtypes_batching():
    g = Gaussian(5)
    mode, tail = g.mu[None], (g.mu + 3 * g.s)[None]
    result = log_density(g.velocity, torch.cat([mode, tail, g.points(n=9)]), batch_size=4)
    assert result.log_density[0] > result.log_density[1] + 5.0
    assert result.log_density.shape == (11,) and result.log_density.dtype == torch.float64
    assert result.divergence_integral.shape == (11,) and result.divergence_integral.dtype == torch.float64
    assert result.noise.shape == (11, 5) and result.noise.dtype == DT
    whole = log_density(g.velocity, torch.cat([mode, tail, g.points(n=9)]), batch_size=256)
    torch.testing.assert_close(result.log_density, whole.log_density, rtol=0, atol=1e-12)
    # float32 input: float32 evaluation, float64 densities
    f32 = log_density(lambda y, t: g.velocity(y.double(), t.double()).float(), g.points().float())
    assert f32.noise.dtype == torch.float32 and f32.log_density.dtype == torch.float64
    torch.testing.assert_close(f32.log_density, g.log_pdf(g.points()), rtol=0, atol=1e-3)
    empty = log_density(g.velocity, torch.zeros(0, 5, dtype=DT))
    assert empty.log_density.shape == (0,) and empty.noise.shape == (0, 5)


class Residual(torch.nn.Module):
    """x1 prediction `x + net(x, t)`: an untrained net outputs ~0, so the jump is invertible."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x, t):
        return x + self.net(x, t)


@pytest.mark.parametrize("prediction", ["velocity", "x1"])
def test_real_network_runs_without_leaking_gradients(prediction):
    torch.manual_seed(0)
    dim = 12
    model = create_model("mlp", input_dim=dim, hidden_dim=32, num_layers=3, time_embed_dim=16)
    assert all(p.requires_grad for p in model.parameters())  # the unsafe case: grads could accumulate
    net = model if prediction == "velocity" else Residual(model)
    field = VelocityField(net, create_flow("icfm"), prediction)
    x = torch.randn(6, dim, dtype=DT, requires_grad=True)  # float64 rows for a float32 net
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no unconverged inverse, no singular jump
        result = log_density(field, x, steps=4)
        hutch = log_density(field, x, steps=4, divergence="hutchinson", n_probes=64)
    assert all(p.grad is None for p in model.parameters())
    assert x.grad is None
    for tensor in (result.log_density, result.noise, result.divergence_integral, result.endpoint_logdet):
        assert not tensor.requires_grad and torch.isfinite(tensor).all()
    assert result.noise.dtype == torch.float32  # evaluated in the network's dtype
    # An untrained velocity net is nearly zero: the density is nearly the standard normal's.
    base = torch.distributions.Normal(0.0, 1.0).log_prob(x.detach()).sum(-1)
    assert float((result.log_density - base).abs().max()) < 0.5
    torch.testing.assert_close(hutch.log_density, result.log_density, rtol=0, atol=0.05)


class _NumpySquare(torch.autograd.Function):
    """x^2 with a backward that cannot run under vmap (it leaves torch)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x**2

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return torch.from_numpy(2 * x.detach().numpy() * grad.detach().numpy())


def test_fields_without_batched_backward_fall_back_to_one_vjp_at_a_time():
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(6), dtype=DT)
    result = log_density(lambda y, t: 0.1 * _NumpySquare.apply(y), x, steps=2, divergence="exact")
    reference = log_density(lambda y, t: 0.1 * y**2, x, steps=2, divergence="exact")
    torch.testing.assert_close(result.log_density, reference.log_density, rtol=0, atol=1e-12)


def test_rejects_bad_arguments():
    g = Gaussian(3)
    x = g.points()
    with pytest.raises(ValueError, match="divergence"):
        log_density(g.velocity, x, divergence="trace")
    with pytest.raises(ValueError, match="solver"):
        log_density(g.velocity, x, solver="dopri5")
    with pytest.raises(ValueError, match="steps"):
        log_density(g.velocity, x, steps=0)
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        log_density(g.velocity, x[0])


@pytest.mark.parametrize("dim", [3, 8])
def test_smoothed_endpoint_is_the_marginal_at_one_minus_gap(dim):
    """`endpoint="smoothed"` (x1 fields): the density of the path's marginal at s = 1 - gap, evaluated at x
    itself: N(s mu, (1 - s)^2 + s^2 sigma^2) in closed form; no jump, so no Jacobian to go singular."""
    g = Gaussian(dim)
    x = g.points()
    field = VelocityField(Predictor(g.x1_hat), create_flow("icfm"), "x1")
    result = log_density(field, x, endpoint="smoothed", steps=32)
    s = 1.0 - DOPRI5_ENDPOINT_GAP
    marginal = torch.distributions.Normal(s * g.mu, torch.sqrt((1 - s) ** 2 + s**2 * g.s**2))
    torch.testing.assert_close(result.log_density, marginal.log_prob(x).sum(-1), rtol=0, atol=1e-3)
    assert torch.all(result.endpoint_logdet == 0)
    with pytest.raises(ValueError, match="endpoint"):
        log_density(field, x, endpoint="bogus")


def test_differentiable_log_density_and_its_gradient_on_a_gaussian():
    """The guide's log-density term: on the Gaussian's (diagonal) field, Hutchinson with Rademacher probes is
    exact, so only euler's error remains; its gradient points up the density, towards the mean."""
    from scaleflow.search.density_penalty import DensityPenaltyGuide, differentiable_log_density

    g = Gaussian(4)
    x = g.points(n=6)
    estimate = differentiable_log_density(g.velocity, x, steps=400)
    torch.testing.assert_close(estimate, g.log_pdf(x), rtol=0, atol=0.2)  # euler, first order: 0.08 at 400 steps
    z = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(differentiable_log_density(g.velocity, z, steps=400).sum(), z)
    exact = -(x - g.mu) / g.s**2
    assert torch.nn.functional.cosine_similarity(grad, exact).min() > 0.99

    def flat(x):
        return x.sum(1) * 0.0, None

    guide = DensityPenaltyGuide(flat, g.velocity, lambda x: x, weight=0.5, steps=50)
    value, _ = guide(x)
    torch.testing.assert_close(value, 0.5 * differentiable_log_density(g.velocity, x, steps=50))
    with pytest.raises(ValueError, match="density weight"):
        DensityPenaltyGuide(flat, g.velocity, lambda x: x, weight=-1.0)
