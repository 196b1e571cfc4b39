"""Log-density of any point under a trained flow prior, by the instantaneous change of variables.

Sampling integrates `dx/dt = v(x, t)` from t = 0 (standard normal noise) to t = 1 (data), so along a
trajectory `d log p_t(x(t)) / dt = -div v(x(t), t)`, and for a data point x1

    log p1(x1) = log N(x0; 0, I) - integral_0^1 div v(x(t), t) dt,

with x0 and the integral obtained by integrating the joint ODE `dx/dt = v`, `dI/dt = div v` backwards
from x(1) = x1 to t = 0 (a fixed-step explicit Runge-Kutta solver of this module: euler, heun, rk4).

Divergence (trace of the Jacobian dv/dx), per evaluation of the field:

- ``"exact"``: all D diagonal entries by vector-Jacobian products, batched into a few backward passes
  (`torch.autograd.grad(..., is_grads_batched=True)`, chunked so at most `_CHUNK_ELEMENTS` cotangent
  entries are alive at once). Costs about D forward passes' worth of work per evaluation.
- ``"hutchinson"``: `mean_p eps_p^T (dv/dx) eps_p` over `n_probes` Rademacher probes: unbiased, one
  backward pass per probe. Each row gets its own probes (seeded by `seed` and the row's index, so
  the numbers do not depend on `batch_size`), re-randomised at every evaluation (an independent sign
  flip per evaluation, shared by the rows), which averages the estimator's noise over the steps.
- ``"auto"``: exact when D <= `EXACT_DIVERGENCE_MAX_DIM`, Hutchinson beyond.

Fields singular at t = 1 (x1-prediction networks, `singular_at_one = True`, whose velocity
`(x1_hat - x) / (1 - t)` divides by 1 - t) are never evaluated at t = 1. The samplers reach t = 1 from
s = 1 - gap by the jump `x(1) = predict_endpoint(y, s)` (`sampling.solvers`), so the density they
sample is that of the ODE up to s pushed through that jump, and here

    log p1(x) = log p_s(y) - log |det d x1_hat(y, s) / dy|,   x1_hat(y, s) = x,

with y found by the fixed-point iteration `y <- y + (x - x1_hat(y, s))` (as the solvers' inverse jump)
and the log-determinant from the full D x D Jacobian (D vector-Jacobian products, `slogdet` in
float64). That is exact and Hutchinson-free at every D; beyond D = 1024 it is assembled a few points
at a time to bound memory, and then costs about D / (stages * steps * n_probes) times the ODE part
(a Hutchinson estimate of a log-determinant would be biased, and integrating the ODE through t = 1
multiplies the network's error there by 1 / (1 - t) ~ 1000). Note this is the density of the
*sampler's* model: even an exact data predictor's jump differs slightly from the ODE flow over
[s, 1] (for a Gaussian, the posterior mean is not the transported point).

Embeddings are normalized per dimension, z = (x - mean) / std (`data.normalization.Standardizer`);
with a standardizer the input is in the original space and `log p_x(x) = log p_z(z) - sum(log std)`.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np
import torch
from torch import Tensor, nn

from scaleflow.sampling.solvers import (DOPRI5_ENDPOINT_GAP, ENDPOINT_INVERSE_MAX_ITERATIONS,
                                        ENDPOINT_INVERSE_TOLERANCE)

VelocityFn = Callable[[Tensor, Tensor], Tensor]

# Beyond this dimension "auto" switches from the exact divergence (D backward rows per row and
# evaluation) to Hutchinson's estimator (n_probes backward rows).
EXACT_DIVERGENCE_MAX_DIM = 1024
DIVERGENCES = ("auto", "exact", "hutchinson")
ENDPOINTS = ("jump", "smoothed")
# Explicit Runge-Kutta tableaus (A, b, c) of the augmented ODE.
_TABLEAUS: dict[str, tuple[tuple[tuple[float, ...], ...], tuple[float, ...], tuple[float, ...]]] = {
    "euler": ((), (1.0,), (0.0,)),
    "heun": (((1.0,),), (0.5, 0.5), (0.0, 1.0)),
    "rk4": (((0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)), (1 / 6, 1 / 3, 1 / 3, 1 / 6), (0.0, 0.5, 0.5, 1.0)),
}
SOLVERS = tuple(_TABLEAUS)
# rk4 at 16 steps is within ~1e-6 nats of the closed form on Gaussians (D = 3..8) and heun at 32
# within ~1e-3 (tests/search/test_log_density.py); a trained network's own error dominates either.
DEFAULT_SOLVER = "rk4"
DEFAULT_STEPS = 16
# At most this many cotangent entries (rows x D) per batched backward pass (64 MB in float32);
# the exact divergence and the endpoint Jacobian are computed in chunks of that size.
_CHUNK_ELEMENTS = 2 ** 24
# At most this many Jacobian entries (points x D x D) at once for the endpoint log-determinant.
_JACOBIAN_ELEMENTS = 2 ** 24


@dataclass
class LogDensityResult:
    """Outcome of :func:`log_density`; all tensors detached, on the input's device.

    Attributes:
        log_density: `[N]` float64 log-density of each point (in the original space when a
            standardizer was given, else in the normalized space the flow runs in).
        noise: `[N, D]` the points carried back to t = 0 (the flow's noise space), in the dtype the
            field was evaluated in.
        divergence_integral: `[N]` float64 total log-volume change from noise to data,
            `integral_0^1 div v dt` plus `endpoint_logdet`, so that
            `log_density = log N(noise; 0, I) - divergence_integral (- sum(log std))`.
        endpoint_logdet: `[N]` float64 `log|det d x1_hat / dy|` of the sampler's jump over
            [1 - gap, 1] for fields singular at t = 1; zeros otherwise.
    """

    log_density: Tensor
    noise: Tensor
    divergence_integral: Tensor
    endpoint_logdet: Tensor


def log_density(
    velocity: VelocityFn,
    x: Tensor,
    steps: int = DEFAULT_STEPS,
    divergence: str = "auto",
    n_probes: int = 1,
    seed: int = 0,
    batch_size: int = 256,
    standardizer: Optional[Any] = None,
    solver: str = DEFAULT_SOLVER,
    endpoint_gap: float = DOPRI5_ENDPOINT_GAP,
    endpoint: str = "jump",
) -> LogDensityResult:
    """Log-density of the points `x` under the flow prior `velocity` (module docstring).

    Args:
        velocity: `v(x: [B, D], t: [B]) -> [B, D]` in the normalized space, e.g. a
            `sampling.VelocityField`. If it has `singular_at_one = True` it must also give
            `predict_endpoint(x: [B, D], t: [B]) -> [B, D]`. It is evaluated in the dtype and on the
            device of its `model`'s parameters when it has one (a `VelocityField`), else of `x`.
        x: `[N, D]` points; in the original embedding space when `standardizer` is given, else
            normalized.
        steps: fixed steps of the backward ODE (over [0, 1], or [0, 1 - gap] for singular fields).
        divergence: "exact", "hutchinson" or "auto" (exact when D <= EXACT_DIVERGENCE_MAX_DIM).
        n_probes: Rademacher probes per evaluation for "hutchinson".
        seed: seeds the probes (results are reproducible and independent of `batch_size`).
        batch_size: points integrated together (memory: the exact divergence keeps at most
            `_CHUNK_ELEMENTS` cotangent entries alive, whatever the batch).
        standardizer: a `Standardizer` (anything with `transform` and `std` `[D]`), or None.
        solver: "euler", "heun" or "rk4" for the augmented ODE.
        endpoint_gap: for singular fields, the jump from 1 - gap to 1 that the sampler takes.
        endpoint: for singular fields, "jump" (the sampler's density, above) or "smoothed": the density of
            the prior's marginal at s = 1 - gap (the data smoothed by the last bit of noise) at `x` itself,
            with no jump. A trained x1 network projects onto the data near t = 1, so its jump's Jacobian
            is (nearly) singular off the data and "jump" densities there are not finite (measured on the
            default prior); "smoothed" is finite everywhere and ranks points by how typical they are,
            which is what a validity signal needs.

    Returns:
        :class:`LogDensityResult` (`log_density [N]` float64, `noise [N, D]`,
        `divergence_integral [N]` float64, `endpoint_logdet [N]` float64).
    """
    if x.dim() != 2 or not x.is_floating_point():
        raise ValueError(f"x must be a floating-point [N, D] tensor; got {x.dtype} of shape {tuple(x.shape)}")
    if divergence not in DIVERGENCES:
        raise ValueError(f"divergence must be one of {', '.join(DIVERGENCES)}; got {divergence!r}")
    if solver not in _TABLEAUS:
        raise ValueError(f"solver must be one of {', '.join(SOLVERS)}; got {solver!r}")
    for name, value in (("steps", steps), ("n_probes", n_probes), ("batch_size", batch_size)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1; got {value!r}")
    singular = bool(getattr(velocity, "singular_at_one", False))
    if endpoint not in ENDPOINTS:
        raise ValueError(f"endpoint must be one of {', '.join(ENDPOINTS)}; got {endpoint!r}")
    if singular and not 0.0 < endpoint_gap < 1.0:
        raise ValueError(f"endpoint_gap must lie in (0, 1); got {endpoint_gap}")

    n, dim = x.shape
    if divergence == "auto":
        divergence = "exact" if dim <= EXACT_DIVERGENCE_MAX_DIM else "hutchinson"
    dtype, device = _evaluation_dtype_device(velocity, x)
    out_device = x.device
    # Standardize in float64 first, so a float32 field still gets z rounded once.
    z = standardizer.transform(x.detach().double()) if standardizer is not None else x.detach()
    z = z.to(dtype=dtype, device=device)

    parts: list[tuple[Tensor, Tensor, Tensor]] = []
    with torch.no_grad():  # gradients are switched on only around each divergence (no graph leaks)
        for start in range(0, n, batch_size):
            zb = z[start:start + batch_size]
            probes = _Probes(n_probes, seed, start, zb) if divergence == "hutchinson" else None
            t_start, logdet = 1.0, torch.zeros(zb.shape[0], dtype=torch.float64, device=device)
            if singular:
                t_start = 1.0 - endpoint_gap
                if endpoint == "jump":
                    zb = _inverse_endpoint(velocity, zb, t_start)
                    logdet = _endpoint_logdet(velocity, zb, t_start)
            noise, integral = _integrate_backward(velocity, zb, t_start, steps, solver, probes)
            parts.append((noise, integral + logdet, logdet))

    if not parts:  # no points
        empty = torch.zeros(0, dtype=torch.float64, device=out_device)
        return LogDensityResult(empty, z.to(out_device), empty, empty)
    noise = torch.cat([p[0] for p in parts]).to(out_device)
    total = torch.cat([p[1] for p in parts]).to(out_device)
    logdet = torch.cat([p[2] for p in parts]).to(out_device)
    noise64 = noise.double()
    log_p = -0.5 * noise64.square().sum(-1) - 0.5 * dim * math.log(2.0 * math.pi) - total
    if standardizer is not None:
        # dx = std dz per dimension (or the whitening's coloring): densities in the original space are smaller
        # by its |det|.
        log_p = log_p - standardizer.log_scale
    return LogDensityResult(log_density=log_p, noise=noise, divergence_integral=total, endpoint_logdet=logdet)


def prior_log_density(run: Any, x: Tensor, **flow_options: Any) -> Tensor:
    """`[N]` float64 log-density of original-space points `x: [N, D]` under a loaded run's prior: exact where its
    model has a closed-form `log_prob` (Gaussian, GMM, KDE reference priors), else the flow's change of variables
    (`log_density(run.velocity, ...)` with `flow_options`). `run` needs `standardizer` and `velocity`."""
    exact = getattr(getattr(run, "model", None), "log_prob", None)
    if exact is not None:
        with torch.no_grad():
            return exact(run.standardizer.transform(x.detach().double())) - run.standardizer.log_scale
    return log_density(run.velocity, x.double(), standardizer=run.standardizer, **flow_options).log_density


def _evaluation_dtype_device(velocity: Any, x: Tensor) -> tuple[torch.dtype, torch.device]:
    """The dtype/device of the network behind `velocity` (a float32 net cannot take float64 rows)."""
    model = getattr(velocity, "model", None)
    if isinstance(model, nn.Module):
        for p in model.parameters():
            if p.is_floating_point():
                return p.dtype, p.device
    return x.dtype, x.device


def _times(x: Tensor, t: float) -> Tensor:
    return torch.full((x.shape[0],), t, dtype=x.dtype, device=x.device)


def _batched_vjp(out: Tensor, inp: Tensor, cotangents: Tensor) -> Tensor:
    """`[K, B, D]` cotangents -> `[K, B, D]` vector-Jacobian products `c^T d out / d inp` per row."""
    try:
        grads = torch.autograd.grad(out, inp, cotangents, retain_graph=True, allow_unused=True,
                                    is_grads_batched=True)[0]
    except torch.OutOfMemoryError:
        raise
    except RuntimeError:  # an op without a vmap rule (e.g. a custom autograd Function): one at a time
        grads_list = [torch.autograd.grad(out, inp, c, retain_graph=True, allow_unused=True)[0]
                      for c in cotangents]
        grads = None if grads_list[0] is None else torch.stack(grads_list)
    return torch.zeros_like(cotangents) if grads is None else grads  # None: out does not depend on inp


def _jacobian_rows(out: Tensor, inp: Tensor, rows: Tensor) -> Tensor:
    """Rows `rows: [K]` of each point's Jacobian `d out / d inp`: `[K, B, D]` (one batched backward)."""
    k = rows.shape[0]
    cotangents = torch.zeros(k, *out.shape, dtype=out.dtype, device=out.device)
    cotangents[torch.arange(k, device=out.device), :, rows] = 1.0
    return _batched_vjp(out, inp, cotangents)


def _row_chunks(batch: int, dim: int, device: torch.device) -> list[Tensor]:
    """Jacobian row indices, in chunks of at most `_CHUNK_ELEMENTS` cotangent entries."""
    k = max(1, min(dim, _CHUNK_ELEMENTS // max(1, batch * dim)))
    return list(torch.arange(dim, device=device).split(k))


def _exact_divergence(v: Tensor, x: Tensor) -> Tensor:
    """`[B]` trace of `dv/dx` from D vector-Jacobian products (D diagonal entries per point)."""
    total = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
    for rows in _row_chunks(x.shape[0], x.shape[1], x.device):
        jac = _jacobian_rows(v, x, rows)  # [K, B, D]
        total += jac[torch.arange(rows.shape[0], device=x.device), :, rows].double().sum(0)  # [K, B] diagonal
    return total


def _hutchinson_divergence(v: Tensor, x: Tensor, probes: Tensor) -> Tensor:
    """`[B]` Hutchinson estimate `mean_p eps_p^T (dv/dx) eps_p` with probes `[P, B, D]`."""
    return (_batched_vjp(v, x, probes) * probes).double().sum(-1).mean(0)


def _velocity_and_divergence(velocity: VelocityFn, x: Tensor, t: float,
                             probes: Optional["_Probes"]) -> tuple[Tensor, Tensor]:
    """`v(x, t)`: `[B, D]` and its divergence `[B]` (float64), both detached."""
    with torch.enable_grad():
        xi = x.detach().requires_grad_(True)
        v = velocity(xi, _times(xi, t))
        if v.shape != x.shape:
            raise ValueError(f"velocity returned shape {tuple(v.shape)}, expected {tuple(x.shape)}")
        if not v.requires_grad:  # the field ignores x (e.g. constant): no volume change
            div = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
        elif probes is None:
            div = _exact_divergence(v, xi)
        else:
            div = _hutchinson_divergence(v, xi, probes.next(v.dtype))
    return v.detach(), div.detach()


def _integrate_backward(velocity: VelocityFn, x: Tensor, t_start: float, steps: int, solver: str,
                        probes: Optional["_Probes"]) -> tuple[Tensor, Tensor]:
    """Integrate `dx/dt = v`, `dI/dt = div v` from `t_start` down to 0 with a fixed-step explicit
    Runge-Kutta rule. Returns x(0) `[B, D]` and `integral_0^t_start div v dt` `[B]` float64."""
    a_tab, b_tab, c_tab = _TABLEAUS[solver]
    grid = torch.linspace(t_start, 0.0, steps + 1, dtype=torch.float64).tolist()
    integral = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
    for t, t_next in zip(grid[:-1], grid[1:]):
        h = t_next - t  # negative: backwards in time
        vs: list[Tensor] = []
        divs: list[Tensor] = []
        for j, c in enumerate(c_tab):
            stage = x
            for a, vl in zip(a_tab[j - 1] if j else (), vs):
                if a:
                    stage = stage + (h * a) * vl
            v, div = _velocity_and_divergence(velocity, stage, t + c * h, probes)
            vs.append(v)
            divs.append(div)
        x = x + h * sum(b * v for b, v in zip(b_tab, vs))
        integral = integral - h * sum(b * d for b, d in zip(b_tab, divs))  # -h > 0: integral over [t_next, t]
    return x, integral


def _inverse_endpoint(velocity: Any, x: Tensor, s: float) -> Tensor:
    """`y: [B, D]` with `predict_endpoint(y, s) = x`: the fixed-point iteration of the solvers' inverse
    jump (`y <- y + (x - x1_hat(y))`, from y = x; it converges where `d x1_hat/dy` is close to I)."""
    y = x
    times = _times(x, s)
    bound = ENDPOINT_INVERSE_TOLERANCE * (1.0 + float(x.abs().max()))
    # Four times the solvers' budget: an unconverged y would bias the density, not just a sample.
    for _ in range(4 * ENDPOINT_INVERSE_MAX_ITERATIONS):
        residual = x - velocity.predict_endpoint(y, times)
        y = y + residual
        if float(residual.abs().max()) <= bound:
            return y
    warnings.warn(f"the inverse of the endpoint jump did not converge (residual {float(residual.abs().max()):.3g});"
                  " the log-densities of these points are approximate", RuntimeWarning, stacklevel=3)
    return y


def _endpoint_logdet(velocity: Any, y: Tensor, s: float) -> Tensor:
    """`[B]` float64 `log|det d predict_endpoint(y, s) / dy|` from the full Jacobian, a few points at
    a time (at most `_JACOBIAN_ELEMENTS` entries) so that large D stays within memory."""
    dim = y.shape[1]
    per = max(1, _JACOBIAN_ELEMENTS // (dim * dim))
    out = []
    for yb in y.split(per):
        with torch.enable_grad():
            yi = yb.detach().requires_grad_(True)
            pred = velocity.predict_endpoint(yi, _times(yi, s))
            if pred.requires_grad:
                rows = [_jacobian_rows(pred, yi, r) for r in _row_chunks(yi.shape[0], dim, yi.device)]
                jac = torch.cat(rows).transpose(0, 1).detach()  # [b, D (output), D (input)]
            else:  # a constant prediction: the jump collapses everything (det 0)
                jac = torch.zeros(yi.shape[0], dim, dim, dtype=yi.dtype, device=yi.device)
        sign, logabs = torch.linalg.slogdet(jac.double())
        if bool((sign <= 0).any()):
            warnings.warn("the endpoint jump's Jacobian is singular or orientation-reversing at some points:"
                          " the jump is not invertible there and their log-densities are not meaningful",
                          RuntimeWarning, stacklevel=3)
        out.append(logabs)
    return torch.cat(out)


class _Probes:
    """Rademacher probes `[P, B, D]` for one batch of rows, fresh at every evaluation.

    Each row's base probes come from a generator seeded by `seed` and the row's index in the whole
    input (so splitting into batches changes nothing); evaluation e multiplies them by a sign vector
    `[P, 1, D]` drawn from a generator seeded by `seed` alone, in evaluation order (every batch runs
    the same grid). Given the base, the products are independent Rademacher vectors across
    evaluations, and across rows because the bases are. (NumPy's seed sequences hash the whole
    `(seed, tag, row)` key; torch's CPU generator would keep only 32 bits of a combined integer.)
    """

    def __init__(self, n_probes: int, seed: int, first_row: int, x: Tensor):
        seed = int(seed) % 2 ** 64
        shape = (n_probes, x.shape[1])
        base = np.stack([_rademacher(np.random.default_rng([seed, 1, row]), shape)
                         for row in range(first_row, first_row + x.shape[0])], 1)
        self.base = torch.from_numpy(base).to(x.device)  # [P, B, D] int8
        self.stream = np.random.default_rng([seed, 0])

    def next(self, dtype: torch.dtype) -> Tensor:
        signs = torch.from_numpy(_rademacher(self.stream, (self.base.shape[0], 1, self.base.shape[2])))
        return (self.base * signs.to(self.base.device)).to(dtype)


def _rademacher(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.integers(0, 2, size=shape, dtype=np.int8) * np.int8(2) - np.int8(1)
