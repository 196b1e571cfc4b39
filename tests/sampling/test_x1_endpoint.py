"""x1-predicting fields are singular at t = 1; the solvers' endpoint rule keeps every solver, the
adaptive one and inversion exact where the field is (one data point) and accurate on a Gaussian,
whose exact data predictor E[x1 | x_t] and ODE endpoint are known in closed form."""
from __future__ import annotations

import pytest
import torch

from scaleflow.flows.icfm import ICFM
from scaleflow.sampling.solvers import SOLVERS, integrate
from scaleflow.sampling.velocity import VelocityField

DT = torch.float64
D = 6
MU = torch.linspace(-2.0, 2.0, D, dtype=DT)
S = torch.linspace(0.3, 1.5, D, dtype=DT)  # per-dimension data std
STEPS = (1, 2, 4, 20)


class SpyOnTimes(torch.nn.Module):
    """Remembers every time it is evaluated at."""

    def __init__(self, predict):
        super().__init__()
        self.predict, self.times = predict, []

    def forward(self, x, t):
        self.times.append(float(t.max()))
        return self.predict(x, t)


def one_point(x, t):
    """Exact x1 predictor when all data is one point: always that point."""
    return MU.expand_as(x)


def gaussian_x1(x, t):
    """E[x1 | x_t = x] for x1 ~ N(MU, diag S^2), x0 ~ N(0, I), x_t = (1 - t) x0 + t x1."""
    t = t[:, None]
    return MU + t * S**2 / ((1 - t) ** 2 + t**2 * S**2) * (x - t * MU)


def gaussian_velocity(x, t):
    """The same field as a velocity, in closed form (smooth at t = 1): x_t = a(t) z + t MU."""
    t = t[:, None]
    a = ((1 - t) ** 2 + t**2 * S**2).sqrt()
    da = (t * S**2 - (1 - t)) / a
    return da / a * (x - t * MU) + MU


def _noise(n=500, seed=0):
    return torch.randn(n, D, generator=torch.Generator().manual_seed(seed), dtype=DT)


def _field(predict):
    return VelocityField(SpyOnTimes(predict), ICFM(), "x1")


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("steps", STEPS)
def test_one_point_is_reached_exactly_and_t1_is_never_evaluated(solver, steps):
    field = _field(one_point)
    x = integrate(field, _noise(), solver=solver, steps=steps).x
    torch.testing.assert_close(x, MU.expand_as(x), rtol=0, atol=1e-9)
    assert max(field.model.times) < 1.0


# Mean absolute error of the endpoint against the exact one, S * z + MU (data std 0.3-1.5):
# what each solver reaches with the exact predictor (measured, with ~1.5x room). One step of any
# solver but midpoint lands on the mean (the predictor at t = 0); heun and rk4 are second order
# (their last step is the endpoint rule).
GAUSSIAN_TOLERANCE = {
    "euler": {1: 0.8, 2: 0.45, 4: 0.25, 20: 0.06},
    "midpoint": {1: 0.06, 2: 0.02, 4: 3e-3, 20: 3e-5},
    "heun": {1: 0.8, 2: 0.25, 4: 0.06, 20: 2.5e-3},
    "rk4": {1: 0.8, 2: 0.25, 4: 0.06, 20: 2.5e-3},
    "dopri5": {1: 2.5e-3, 2: 2.5e-3, 4: 2.5e-3, 20: 2.5e-3},  # the jump over its last 0.05
}


@pytest.mark.parametrize("solver", SOLVERS)
def test_gaussian_endpoint_within_tolerance(solver):
    z = _noise()
    exact = S * z + MU
    field = _field(gaussian_x1)
    for steps in STEPS:
        error = (integrate(field, z, solver=solver, steps=steps).x - exact).abs().mean().item()
        assert error < GAUSSIAN_TOLERANCE[solver][steps], (solver, steps, error)
    assert max(field.model.times) < 1.0


@pytest.mark.parametrize("solver", ["heun", "rk4", "dopri5"])
def test_x1_field_is_as_accurate_as_the_velocity_field_at_20_steps(solver):
    """The same exact field given as a velocity has no singularity: the x1 form must not be worse
    than twice its error (before the endpoint rule, heun landed halfway on one point)."""
    z = _noise()
    exact = S * z + MU
    as_x1 = (integrate(_field(gaussian_x1), z, solver=solver, steps=20).x - exact).abs().mean().item()
    as_v = (integrate(gaussian_velocity, z, solver=solver, steps=20).x - exact).abs().mean().item()
    assert as_x1 < max(2 * as_v, 2.5e-3), (as_x1, as_v)


@pytest.mark.parametrize("solver", SOLVERS)
def test_gaussian_inversion_returns_the_noise(solver):
    z = _noise()
    field = _field(gaussian_x1)
    back = integrate(field, S * z + MU, 1.0, 0.0, solver=solver, steps=20).x
    assert (back - z).abs().mean().item() < (0.06 if solver == "euler" else 5e-3)  # euler: first order
    assert max(field.model.times) < 1.0


@pytest.mark.parametrize("solver, per_step, saved", [("euler", 1, 0), ("midpoint", 2, 0), ("heun", 2, 1), ("rk4", 4, 3)])
def test_nfe_of_the_endpoint_rule(solver, per_step, saved):
    field = _field(gaussian_x1)
    assert integrate(field, _noise(), solver=solver, steps=10).nfe == 10 * per_step - saved
    # Velocity fields are untouched by the rule.
    assert integrate(gaussian_velocity, _noise(), solver=solver, steps=10).nfe == 10 * per_step


def test_trajectory_and_hook_see_the_endpoint_step():
    field = _field(one_point)
    seen = []
    result = integrate(field, _noise(4), solver="heun", steps=4, return_trajectory=True,
                       step_hook=lambda i, t, x, v: seen.append((i, t)))
    assert [t for _, t in seen] == [0.25, 0.5, 0.75, 1.0]
    torch.testing.assert_close(result.trajectory[-1], MU.expand(4, D), rtol=0, atol=1e-12)
    dense = integrate(field, _noise(4), solver="dopri5", steps=4, return_trajectory=True)
    assert len(dense.trajectory) == 5
    torch.testing.assert_close(dense.trajectory[-1], MU.expand(4, D), rtol=0, atol=1e-9)


# --- a trained x1 run ------------------------------------------------------------------------------
class WithoutEndpointRule:
    """The same field with `singular_at_one` hidden: the solvers evaluate it at t = 1 (the old rule)."""

    def __init__(self, field):
        self.field = field

    def __call__(self, x, t):
        return self.field(x, t)


@pytest.fixture(scope="module")
def x1_run(tmp_path_factory):
    import numpy as np

    from scaleflow.training import load_run, make_config, train

    folder = tmp_path_factory.mktemp("x1run")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3000, 4)) @ rng.standard_normal((4, 16)) + 0.5 * np.tanh(rng.standard_normal((3000, 16)))
    np.save(folder / "data.npy", x.astype(np.float32))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny network: one thread is fastest
    try:
        config = make_config({"data": str(folder / "data.npy"), "arch": "mlp", "scale": "tiny", "prediction": "x1",
                              "steps": 400, "n_val": 500, "n_test": 1000, "batch_size": 128, "val_every": 100,
                              "model": {"hidden_dim": 64}, "recipe": "none"})  # the solvers' rule, at fixed options
        train(config, folder / "run", progress=False)
        yield load_run(folder / "run")
    finally:
        torch.set_num_threads(threads)


def test_trained_x1_run_heun_20_matches_euler_50(x1_run):
    from scaleflow.evaluation.distribution import frechet_distance
    from scaleflow.sampling import generate

    test = x1_run.data().test
    dim = test.shape[1]

    def fd(field, solver, steps):
        return frechet_distance(generate(field, 1000, dim, solver, steps).x, test)

    reference = fd(x1_run.velocity, "euler", 50)
    assert abs(fd(x1_run.velocity, "heun", 20) - reference) < 0.05 * reference
    # Without the rule the network's error at t = 1 is multiplied by ~1000 (measured: 24 vs 0.76).
    assert fd(WithoutEndpointRule(x1_run.velocity), "heun", 20) > 3 * reference
