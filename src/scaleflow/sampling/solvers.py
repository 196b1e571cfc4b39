"""ODE solvers that integrate a flow-matching velocity field.

A velocity field is any callable ``v(x: [B, D], t: [B]) -> [B, D]``. Sampling integrates
``dx/dt = v(x, t)`` from ``t0=0`` (noise) to ``t1=1`` (data); ``t1 < t0`` integrates
backwards, which inverts data to noise.

Fixed-step solvers and their velocity evaluations (NFE) per step:

- ``euler``    (order 1): 1
- ``midpoint`` (order 2): 2
- ``heun``     (order 2, trapezoid predictor-corrector): 2. Evaluations are not reused
  across steps: the corrector slope is taken at the *predicted* point, not at the
  corrected ``x``, and a ``step_hook`` may replace ``x`` anyway. Each step evaluates
  only at its own start and end, so the last step makes no extra evaluation:
  ``nfe == 2 * steps`` exactly.
- ``rk4``      (order 4): 4

``dopri5`` is adaptive (``torchdiffeq.odeint`` with ``rtol``/``atol``); its NFE is
whatever the step-size controller needed, counted the same way.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import Tensor

VelocityFn = Callable[[Tensor, Tensor], Tensor]
StepHook = Callable[[int, float, Tensor, Tensor], Optional[Tensor]]

FIXED_STEP_SOLVERS: tuple[str, ...] = ("euler", "midpoint", "heun", "rk4")
SOLVERS: tuple[str, ...] = FIXED_STEP_SOLVERS + ("dopri5",)


@dataclass
class SolveResult:
    """Outcome of :func:`integrate`.

    Attributes:
        x: ``[B, D]`` state at ``t1``.
        nfe: number of velocity evaluations actually made.
        trajectory: ``steps + 1`` tensors ``[B, D]`` (the start, then each step's end),
            or ``None`` when not requested.
    """

    x: Tensor
    nfe: int
    trajectory: Optional[list[Tensor]] = None


class _CountedVelocity:
    """Wraps a velocity field: counts calls and turns a float time into a ``[B]`` tensor."""

    def __init__(self, velocity: VelocityFn) -> None:
        self.velocity = velocity
        self.nfe = 0

    def __call__(self, x: Tensor, t: float | Tensor) -> Tensor:
        # Time goes to the network as one value per row, with x's dtype/device.
        if isinstance(t, Tensor):  # odeint passes a 0-d tensor; avoid a host sync
            t_vec = t.to(dtype=x.dtype, device=x.device).reshape(1).repeat(x.shape[0])
        else:
            t_vec = torch.full((x.shape[0],), t, dtype=x.dtype, device=x.device)
        self.nfe += 1
        v = self.velocity(x, t_vec)
        if v.shape != x.shape:
            raise ValueError(f"velocity returned shape {tuple(v.shape)}, expected {tuple(x.shape)}")
        return v


def _euler_step(f: _CountedVelocity, x: Tensor, t: float, h: float) -> tuple[Tensor, Tensor]:
    v = f(x, t)
    return x + h * v, v


def _midpoint_step(f: _CountedVelocity, x: Tensor, t: float, h: float) -> tuple[Tensor, Tensor]:
    k1 = f(x, t)
    v = f(x + 0.5 * h * k1, t + 0.5 * h)
    return x + h * v, v


def _heun_step(f: _CountedVelocity, x: Tensor, t: float, h: float) -> tuple[Tensor, Tensor]:
    k1 = f(x, t)
    k2 = f(x + h * k1, t + h)  # slope at the Euler-predicted end point
    v = 0.5 * (k1 + k2)  # trapezoid rule
    return x + h * v, v


def _rk4_step(f: _CountedVelocity, x: Tensor, t: float, h: float) -> tuple[Tensor, Tensor]:
    k1 = f(x, t)
    k2 = f(x + 0.5 * h * k1, t + 0.5 * h)
    k3 = f(x + 0.5 * h * k2, t + 0.5 * h)
    k4 = f(x + h * k3, t + h)
    v = (k1 + 2.0 * k2 + 2.0 * k3 + k4) / 6.0
    return x + h * v, v


_STEP_FNS = {"euler": _euler_step, "midpoint": _midpoint_step, "heun": _heun_step, "rk4": _rk4_step}


def _time_grid(t0: float, t1: float, steps: int) -> list[float]:
    # Built in float64 so t1 is hit exactly and time rounding doesn't depend on x's dtype.
    return torch.linspace(t0, t1, steps + 1, dtype=torch.float64).tolist()


def _integrate_fixed(
    f: _CountedVelocity,
    x: Tensor,
    solver: str,
    grid: list[float],
    step_hook: Optional[StepHook],
    trajectory: Optional[list[Tensor]],
) -> Tensor:
    step_fn = _STEP_FNS[solver]
    for i in range(len(grid) - 1):
        t, t_next = grid[i], grid[i + 1]
        x, v = step_fn(f, x, t, t_next - t)
        if step_hook is not None:
            out = step_hook(i, t_next, x, v)
            if out is not None:
                if out.shape != x.shape:
                    raise ValueError(f"step_hook returned shape {tuple(out.shape)}, expected {tuple(x.shape)}")
                x = out
        if trajectory is not None:
            trajectory.append(x)
    return x


def _integrate_dopri5(
    f: _CountedVelocity, x: Tensor, grid: list[float], rtol: float, atol: float
) -> Tensor:
    from torchdiffeq import odeint  # local import: only this solver needs it

    t = torch.tensor(grid, dtype=x.dtype, device=x.device)
    # odeint's convention is func(t, y) with a 0-d t; the wrapper expands it to [B].
    return odeint(lambda s, y: f(y, s), x, t, rtol=rtol, atol=atol, method="dopri5")


def integrate(
    velocity: VelocityFn,
    x: Tensor,
    t0: float = 0.0,
    t1: float = 1.0,
    solver: str = "heun",
    steps: int = 20,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    step_hook: Optional[StepHook] = None,
    return_trajectory: bool = False,
    grad: bool = False,
) -> SolveResult:
    """Integrate ``dx/dt = velocity(x, t)`` from ``t0`` to ``t1``.

    Args:
        velocity: callable ``(x: [B, D], t: [B]) -> [B, D]``; ``t`` holds the current time
            for every row, with ``x``'s dtype and device.
        x: ``[B, D]`` start state at ``t0`` (noise when sampling, data when inverting).
        t0, t1: start and end time; ``t1 < t0`` integrates backwards. They must differ.
        solver: one of :data:`SOLVERS`.
        steps: number of fixed steps (>= 1). For ``dopri5`` it only sets the grid
            ``linspace(t0, t1, steps + 1)`` at which the trajectory is reported.
        rtol, atol: tolerances of ``dopri5``; ignored by fixed-step solvers.
        step_hook: fixed-step solvers only. Called after each step's update as
            ``step_hook(step, t, x, v)`` with ``step`` in ``0..steps-1``, ``t`` the time
            ``x`` has just reached, ``x`` ``[B, D]`` the updated state and ``v`` ``[B, D]``
            the slope the step used (``x_new = x_old + h * v``). If it returns a tensor,
            that tensor replaces ``x`` (e.g. for guidance); ``None`` keeps ``x``. Not
            supported by ``dopri5`` (its steps are internal): passing one raises
            ``ValueError``.
        return_trajectory: also return the ``steps + 1`` states on the time grid
            (after any hook replacement); for ``dopri5`` odeint's dense-output values.
        grad: by default everything runs under ``torch.no_grad()``; ``True`` leaves the
            autograd mode as the caller set it (gradient-based guidance, differentiating
            through the sampler). Hooks that need grad under ``grad=False`` can use
            ``torch.enable_grad()`` themselves.

    Returns:
        :class:`SolveResult` with ``x`` ``[B, D]`` at ``t1``, ``nfe``, ``trajectory``.
    """
    if solver not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r}; choose one of {', '.join(SOLVERS)}")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if t0 == t1:
        raise ValueError(f"t0 and t1 must differ, got t0 = t1 = {t0}")
    if x.dim() != 2:
        raise ValueError(f"x must be [B, D], got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"x must be a floating-point tensor, got {x.dtype}")
    if solver == "dopri5" and not (0 < rtol < math.inf and 0 < atol < math.inf):
        raise ValueError(f"dopri5 needs finite rtol and atol > 0 (--rtol/--atol), got rtol={rtol}, atol={atol}")
    if solver == "dopri5" and step_hook is not None:
        raise ValueError("step_hook is not supported by the adaptive solver 'dopri5'; use a fixed-step solver")

    f = _CountedVelocity(velocity)
    grid = _time_grid(float(t0), float(t1), steps)
    ctx = contextlib.nullcontext() if grad else torch.no_grad()
    with ctx:
        if solver == "dopri5":
            out_grid = grid if return_trajectory else [grid[0], grid[-1]]
            states = _integrate_dopri5(f, x, out_grid, rtol, atol)
            traj = list(states.unbind(0)) if return_trajectory else None
            return SolveResult(x=states[-1], nfe=f.nfe, trajectory=traj)
        traj = [x] if return_trajectory else None
        x_end = _integrate_fixed(f, x, solver, grid, step_hook, traj)
    return SolveResult(x=x_end, nfe=f.nfe, trajectory=traj)
