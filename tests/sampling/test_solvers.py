"""Tests for scaleflow.sampling.solvers: convergence orders, NFE, inversion, time, hooks."""
from __future__ import annotations

import math

import pytest
import torch

from scaleflow.sampling.solvers import SOLVERS, SolveResult, integrate

DT = torch.float64
ORDERS = {"euler": 1, "midpoint": 2, "heun": 2, "rk4": 4}
NFE_PER_STEP = {"euler": 1, "midpoint": 2, "heun": 2, "rk4": 4}


def _x0(b: int = 3, d: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, d, generator=torch.Generator().manual_seed(seed), dtype=DT)


def _exp_field(a: float):
    return lambda x, t: a * x


def _rotation(w: float):
    A = torch.tensor([[0.0, -w], [w, 0.0]], dtype=DT)
    return (lambda x, t: x @ A.T), A


def _rotate(x: torch.Tensor, w: float, dt: float) -> torch.Tensor:
    c, s = math.cos(w * dt), math.sin(w * dt)
    R = torch.tensor([[c, -s], [s, c]], dtype=DT)
    return x @ R.T


def _observed_orders(errors: list[float]) -> list[float]:
    # With steps doubling, err(h) ~ C h^p gives p = log2(err(h) / err(h/2)).
    return [math.log2(e0 / e1) for e0, e1 in zip(errors, errors[1:])]


@pytest.mark.parametrize("solver", list(ORDERS))
def test_order_exponential(solver):
    x0, a, t0, t1 = _x0(), 1.3, 0.0, 1.0
    exact = x0 * math.exp(a * (t1 - t0))
    errs = [(integrate(_exp_field(a), x0, t0, t1, solver, n).x - exact).abs().max().item() for n in (8, 16, 32)]
    for p in _observed_orders(errs):
        assert abs(p - ORDERS[solver]) < 0.3, (solver, errs)


@pytest.mark.parametrize("solver", list(ORDERS))
def test_order_rotation(solver):
    w, t0, t1 = 2.0, 0.0, 1.0
    v, _ = _rotation(w)
    x0 = _x0(d=2)
    exact = _rotate(x0, w, t1 - t0)
    errs = [(integrate(v, x0, t0, t1, solver, n).x - exact).abs().max().item() for n in (8, 16, 32)]
    for p in _observed_orders(errs):
        assert abs(p - ORDERS[solver]) < 0.3, (solver, errs)


@pytest.mark.parametrize("solver", list(ORDERS))
@pytest.mark.parametrize("steps", [1, 7, 20])
def test_nfe_fixed(solver, steps):
    calls = []

    def v(x, t):
        calls.append(1)
        return -x

    res = integrate(v, _x0(), solver=solver, steps=steps)
    assert isinstance(res, SolveResult)
    # Heun reuses nothing across steps and makes no extra final evaluation: exactly 2 per step.
    assert res.nfe == steps * NFE_PER_STEP[solver] == len(calls)
    assert res.trajectory is None


def test_dopri5_accuracy_and_nfe():
    x0, a = _x0(), 1.3
    res = integrate(_exp_field(a), x0, solver="dopri5", rtol=1e-9, atol=1e-9)
    assert (res.x - x0 * math.exp(a)).abs().max().item() < 1e-6
    assert res.nfe > 0

    v, _ = _rotation(2.0)
    x2 = _x0(d=2)
    calls = []
    res2 = integrate(lambda x, t: (calls.append(1), v(x, t))[1], x2, solver="dopri5", rtol=1e-9, atol=1e-9)
    assert (res2.x - _rotate(x2, 2.0, 1.0)).abs().max().item() < 1e-6
    assert res2.nfe == len(calls) > 0


def test_dopri5_tolerance_matters():
    # Loose tolerance must be measurably worse and cheaper: proves rtol/atol reach odeint.
    x0, a = _x0(), 3.0
    exact = x0 * math.exp(a)
    loose = integrate(_exp_field(a), x0, solver="dopri5", rtol=1e-2, atol=1e-2)
    tight = integrate(_exp_field(a), x0, solver="dopri5", rtol=1e-10, atol=1e-10)
    assert loose.nfe < tight.nfe
    assert (loose.x - exact).abs().max() > (tight.x - exact).abs().max()


@pytest.mark.parametrize("solver", ["rk4", "dopri5"])
def test_backward_inverts_forward(solver):
    # Nonlinear, time-dependent field so the round trip is a real test.
    def v(x, t):
        return torch.sin(x) + t[:, None] * torch.cos(2 * x)

    x0 = _x0()
    kw = dict(solver=solver, steps=64, rtol=1e-10, atol=1e-10)
    fwd = integrate(v, x0, 0.0, 1.0, **kw)
    back = integrate(v, fwd.x, 1.0, 0.0, **kw)
    assert (fwd.x - x0).abs().max() > 0.1  # the map moved the points
    assert (back.x - x0).abs().max().item() < 1e-7


@pytest.mark.parametrize("solver", SOLVERS)
def test_backward_matches_exact(solver):
    x0, a = _x0(), 1.3
    res = integrate(_exp_field(a), x0, 1.0, 0.0, solver, steps=64, rtol=1e-9, atol=1e-9)
    tol = 0.05 if solver == "euler" else 1e-3
    assert (res.x - x0 * math.exp(-a)).abs().max().item() < tol


@pytest.mark.parametrize("solver", ["midpoint", "heun", "rk4", "dopri5"])
@pytest.mark.parametrize("t0,t1", [(0.0, 1.0), (1.0, 0.0), (0.2, 0.9)])
def test_linear_in_t_field_is_exact(solver, t0, t1):
    x0 = _x0()
    res = integrate(lambda x, t: t[:, None].expand_as(x), x0, t0, t1, solver, steps=3)
    exact = x0 + (t1**2 - t0**2) / 2
    assert (res.x - exact).abs().max().item() < 1e-12


def test_euler_not_exact_for_linear_in_t():
    # Guards the test above: a first-order method must miss the t^2/2 term.
    x0 = _x0()
    res = integrate(lambda x, t: t[:, None].expand_as(x), x0, 0.0, 1.0, "euler", steps=4)
    assert (res.x - (x0 + 0.5)).abs().max().item() == pytest.approx(1 / 8)


@pytest.mark.parametrize(
    "solver,offsets",
    [("euler", [0.0]), ("midpoint", [0.0, 0.5]), ("heun", [0.0, 1.0]), ("rk4", [0.0, 0.5, 0.5, 1.0])],
)
@pytest.mark.parametrize("t0,t1", [(0.0, 1.0), (1.0, 0.25)])
def test_time_passed_to_velocity(solver, offsets, t0, t1, dtype=torch.float32):
    x0 = _x0().to(dtype)
    seen = []

    def v(x, t):
        assert t.shape == (x.shape[0],) and t.dtype == x.dtype and t.device == x.device
        assert torch.all(t == t[0])
        seen.append(t[0].item())
        return torch.zeros_like(x)

    steps = 4
    integrate(v, x0, t0, t1, solver, steps)
    h = (t1 - t0) / steps
    expected = [t0 + (i + o) * h for i in range(steps) for o in offsets]
    assert seen == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("solver", list(ORDERS))
def test_step_hook(solver):
    record = []

    def hook(step, t, x, v):
        record.append((step, t))
        assert x.shape == v.shape == (3, 4)
        return torch.zeros_like(x) if step == 2 else None

    steps = 5
    res = integrate(lambda x, t: torch.ones_like(x), _x0(), solver=solver, steps=steps,
                    step_hook=hook, return_trajectory=True)
    assert [s for s, _ in record] == list(range(steps))
    ts = [t for _, t in record]
    assert ts == sorted(ts) and ts[-1] == pytest.approx(1.0) and ts[0] == pytest.approx(0.2)
    # x was zeroed at t=0.6, then moved with unit speed for 0.4.
    assert torch.allclose(res.trajectory[3], torch.zeros(3, 4, dtype=DT))
    assert torch.allclose(res.x, torch.full((3, 4), 0.4, dtype=DT))


def test_step_hook_receives_step_slope():
    # v is the slope of the step: x_new = x_old + h * v.
    def hook(step, t, x, v):
        assert torch.allclose(v, 2 * torch.ones_like(x))

    integrate(lambda x, t: 2 * torch.ones_like(x), _x0(), solver="rk4", steps=3, step_hook=hook)


@pytest.mark.parametrize("solver", SOLVERS)
def test_trajectory(solver):
    x0, a, steps = _x0(), 0.7, 6
    res = integrate(_exp_field(a), x0, solver=solver, steps=steps, return_trajectory=True, rtol=1e-9, atol=1e-9)
    assert len(res.trajectory) == steps + 1
    assert torch.equal(res.trajectory[0], x0) and torch.equal(res.trajectory[-1], res.x)
    tol = {"euler": 0.3, "midpoint": 1e-2, "heun": 1e-2, "rk4": 1e-5, "dopri5": 1e-7}[solver]
    for i, xi in enumerate(res.trajectory):
        assert (xi - x0 * math.exp(a * i / steps)).abs().max().item() < tol


def test_no_grad_by_default_and_grad_option():
    w = torch.tensor(0.5, dtype=DT, requires_grad=True)

    def v(x, t):
        return w * x

    x0 = _x0()
    assert not integrate(v, x0, solver="heun", steps=4).x.requires_grad
    res = integrate(v, x0, solver="heun", steps=4, grad=True)
    res.x.sum().backward()
    assert w.grad is not None and w.grad.abs() > 0


def test_dopri5_float32():
    x0 = _x0().float()
    res = integrate(lambda x, t: -x, x0, solver="dopri5")
    assert res.x.dtype == torch.float32
    assert (res.x - x0 * math.exp(-1.0)).abs().max().item() < 1e-4


def test_errors():
    v, x0 = (lambda x, t: x), _x0()
    with pytest.raises(ValueError, match="unknown solver 'rk5'.*euler, midpoint, heun, rk4, dopri5"):
        integrate(v, x0, solver="rk5")
    for bad in (0, -3):
        with pytest.raises(ValueError, match="steps must be"):
            integrate(v, x0, steps=bad)
    with pytest.raises(ValueError, match="step_hook is not supported.*dopri5"):
        integrate(v, x0, solver="dopri5", step_hook=lambda *a: None)
    with pytest.raises(ValueError, match="t0 and t1 must differ"):
        integrate(v, x0, t0=0.5, t1=0.5)
    with pytest.raises(ValueError, match=r"x must be \[B, D\]"):
        integrate(v, x0[0])
    with pytest.raises(ValueError, match="velocity returned shape"):
        integrate(lambda x, t: x[:, :2], x0)
    with pytest.raises(ValueError, match="step_hook returned shape"):
        integrate(v, x0, step_hook=lambda s, t, x, vv: x[:1])
    assert SOLVERS == ("euler", "midpoint", "heun", "rk4", "dopri5")
