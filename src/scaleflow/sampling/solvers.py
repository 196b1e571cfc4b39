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

A field with a ``begin_step(step, n_steps)`` method is told, before each fixed step, which step its
next evaluations belong to (guidance counts its on/off windows in steps, and a step's stages must
agree; ``dopri5`` has no steps to tell and never calls it).

Fields that predict the data (x1-prediction) are singular at t = 1: their velocity
``(x1_hat - x) / (1 - t)`` divides the network's error by ``1 - t``, so a stage at t = 1
multiplies it by ~1000 (heun, rk4 and dopri5 have one; inversion starts there). Such a field
says so with ``singular_at_one = True`` and gives ``predict_endpoint(x, t) -> x1_hat``; the
solvers then never evaluate it at t = 1:

- forward, the step that ends at t = 1 takes the prediction itself, ``x(1) = x1_hat(x, t)``
  (for the straight path this *is* Euler's step; heun and rk4 take it as their last step, as
  EDM's Heun and DPM-Solver's ``lower_order_final`` do), so ``nfe`` is ``2 * steps - 1`` for
  heun and ``4 * steps - 3`` for rk4; euler and midpoint have no stage at t = 1 and are unchanged;
- backward, the step that leaves t = 1 undoes that jump: it solves ``x1_hat(y, t) = x`` for
  ``y`` by fixed-point iteration (one NFE each, until ``ENDPOINT_INVERSE_TOLERANCE``);
- ``dopri5`` integrates up to ``1 - DOPRI5_ENDPOINT_GAP`` and jumps from there (and back).
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
SINGULAR_STAGE_SOLVERS = ("heun", "rk4")  # solvers with a stage at the end of a step
# For fields singular at t = 1 (module docstring). The gap was measured on an x1 run (BENCHMARKS.md):
# FD 62.0 / 59.8 / 57.9 / 55.6 at gaps 0.005 / 0.01 / 0.02 / 0.05 (a smaller gap divides the network's
# error by a smaller 1 - t); 0.05 is also where heun's last step at 20 steps jumps from.
DOPRI5_ENDPOINT_GAP = 0.05
# The inverse jump iterates until its residual is this small relative to x (3 iterations at 20 steps on
# a Gaussian; coarse grids need more), at most ENDPOINT_INVERSE_MAX_ITERATIONS (one NFE each).
ENDPOINT_INVERSE_TOLERANCE = 1e-5
ENDPOINT_INVERSE_MAX_ITERATIONS = 20


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
        self.nfe += 1
        v = self.velocity(x, self._times(x, t))
        if v.shape != x.shape:
            raise ValueError(f"velocity returned shape {tuple(v.shape)}, expected {tuple(x.shape)}")
        return v

    @property
    def singular_at_one(self) -> bool:
        return bool(getattr(self.velocity, "singular_at_one", False))

    def begin_step(self, step: int, n_steps: int) -> None:
        """Tell a field that wants to know (``begin_step(step, n_steps)``, e.g. guidance, whose windows
        are counted in steps) which step the next evaluations belong to."""
        hook = getattr(self.velocity, "begin_step", None)
        if hook is not None:
            hook(step, n_steps)

    def endpoint(self, x: Tensor, t: float | Tensor) -> Tensor:
        """The field's prediction of the data, ``x1_hat(x, t)``: ``[B, D]`` (one evaluation)."""
        self.nfe += 1
        return self.velocity.predict_endpoint(x, self._times(x, t))

    @staticmethod
    def _times(x: Tensor, t: float | Tensor) -> Tensor:
        # Time goes to the network as one value per row, with x's dtype/device.
        if isinstance(t, Tensor):  # odeint passes a 0-d tensor; avoid a host sync
            return t.to(dtype=x.dtype, device=x.device).reshape(1).repeat(x.shape[0])
        return torch.full((x.shape[0],), t, dtype=x.dtype, device=x.device)


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


def _endpoint_step(f: _CountedVelocity, x: Tensor, t: float, h: float) -> tuple[Tensor, Tensor]:
    """The step into t = 1 of a field singular there: the predicted data itself."""
    x_new = f.endpoint(x, t)
    return x_new, (x_new - x) / h


def _inverse_endpoint_step(f: _CountedVelocity, x: Tensor, t: float, h: float) -> tuple[Tensor, Tensor]:
    """The step out of t = 1 (h < 0): the point ``y`` at ``t + h`` whose prediction is ``x``,
    ``x1_hat(y, t + h) = x``, by fixed-point iteration from ``y = x`` (near t = 1, x1_hat(y) ~ y)."""
    y = x
    for _ in range(ENDPOINT_INVERSE_MAX_ITERATIONS):
        residual = x - f.endpoint(y, t + h)
        y = y + residual
        if float(residual.abs().max()) <= ENDPOINT_INVERSE_TOLERANCE * (1.0 + float(x.abs().max())):
            break
    return y, (y - x) / h


def _step_fn(f: _CountedVelocity, solver: str, t: float, t_next: float):
    """The step rule from t to t_next: the solver's own, or the endpoint rule at t = 1."""
    if f.singular_at_one:
        if t_next == 1.0 and solver in SINGULAR_STAGE_SOLVERS:
            return _endpoint_step
        if t == 1.0 and t_next < t:
            return _inverse_endpoint_step
    return _STEP_FNS[solver]


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
    for i in range(len(grid) - 1):
        t, t_next = grid[i], grid[i + 1]
        f.begin_step(i, len(grid) - 1)
        x, v = _step_fn(f, solver, t, t_next)(f, x, t, t_next - t)
        if step_hook is not None:
            out = step_hook(i, t_next, x, v)
            if out is not None:
                if out.shape != x.shape:
                    raise ValueError(f"step_hook returned shape {tuple(out.shape)}, expected {tuple(x.shape)}")
                x = out
        if trajectory is not None:
            trajectory.append(x)
    return x


def _odeint(f: _CountedVelocity, x: Tensor, grid: list[float], rtol: float, atol: float,
            stop_at_end: bool = False) -> Tensor:
    from torchdiffeq import odeint  # local import: only this solver needs it

    t = torch.tensor(grid, dtype=x.dtype, device=x.device)
    # Adaptive steps may overshoot the last time (odeint interpolates back); `stop_at_end` makes the
    # last step land on it, so a field singular beyond it is never evaluated there.
    options = {"step_t": t[-1:]} if stop_at_end else None
    # odeint's convention is func(t, y) with a 0-d t; the wrapper expands it to [B].
    return odeint(lambda s, y: f(y, s), x, t, rtol=rtol, atol=atol, method="dopri5", options=options)


def _integrate_dopri5(f: _CountedVelocity, x: Tensor, grid: list[float], rtol: float, atol: float) -> Tensor:
    """States `[len(grid), B, D]` on `grid`. For fields singular at t = 1 the adaptive part stays below
    `1 - DOPRI5_ENDPOINT_GAP` and the endpoint rule crosses the gap (grid points inside the gap lie on
    the straight jump)."""
    if not f.singular_at_one or 1.0 not in (grid[0], grid[-1]):
        return _odeint(f, x, grid, rtol, atol)
    forward = grid[-1] == 1.0
    gap = max(1.0 - DOPRI5_ENDPOINT_GAP, grid[0] if forward else grid[-1])
    smooth = [t for t in grid if t < gap]  # grid points the adaptive part reaches

    def on_jump(t: float, at_gap: Tensor, at_one: Tensor) -> Tensor:
        return at_gap + ((t - gap) / (1.0 - gap)) * (at_one - at_gap)

    if forward:
        states = list(_odeint(f, x, smooth + [gap], rtol, atol, stop_at_end=True).unbind(0)) if smooth else [x]
        x_gap = states[-1]
        x_one = f.endpoint(x_gap, gap)
        return torch.stack(states[:-1] + [on_jump(t, x_gap, x_one) for t in grid[len(smooth):]])
    x_gap, _ = _inverse_endpoint_step(f, x, 1.0, gap - 1.0)
    head = [on_jump(t, x_gap, x) for t in grid[:len(grid) - len(smooth)]]
    tail = list(_odeint(f, x_gap, [gap] + smooth, rtol, atol).unbind(0))[1:] if smooth else []
    return torch.stack(head + tail)


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
