"""The prior's log-density as a term of a guide: steer towards points the prior finds typical.

`log_density` (`search.log_density`) reports a number per candidate; a guide needs a value it can
differentiate at every guided step. This term integrates the flow backwards from the point over a few
euler steps with a Hutchinson divergence, keeping the graph (`create_graph=True`), so the gradient of
`log p(x)` reaches `x` through the whole backward ODE. x1-predicting priors are taken at their smoothed
endpoint (the marginal at t = 1 - gap, as the records are). It is an estimate (few steps, one probe):
good enough to point uphill in density, not to report.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from scaleflow.sampling.solvers import DOPRI5_ENDPOINT_GAP


def differentiable_log_density(velocity, z: Tensor, steps: int = 4, seed: int = 0) -> Tensor:
    """`[B]` estimate of the prior's log-density (normalized space) at `z: [B, D]`, differentiable in `z`.

    Euler steps of the backward ODE from t = 1 (t = 1 - gap for fields singular at 1) to 0, each with a
    one-probe Rademacher Hutchinson divergence (probes drawn from `seed`)."""
    start = 1.0 - DOPRI5_ENDPOINT_GAP if getattr(velocity, "singular_at_one", False) else 1.0
    h = start / steps
    generator = torch.Generator().manual_seed(seed)
    integral = torch.zeros(z.shape[0], dtype=z.dtype, device=z.device)
    x = z
    with torch.enable_grad():
        for i in range(steps):
            t = torch.full((x.shape[0],), start - i * h, dtype=x.dtype, device=x.device)
            if not x.requires_grad:
                x = x.requires_grad_(True)
            v = velocity(x, t)
            probe = (torch.randint(0, 2, x.shape, generator=generator) * 2 - 1).to(x)
            (vjp,) = torch.autograd.grad(v, x, probe, create_graph=True)
            integral = integral + h * (vjp * probe).sum(1)
            x = x - h * v
    dim = z.shape[1]
    return -0.5 * x.square().sum(1) - 0.5 * dim * math.log(2 * math.pi) - integral


class DensityPenaltyGuide:
    """A guide plus `weight` times the prior's log-density of the point (`differentiable_log_density`, in
    the normalized space: the records' original-space values differ by the constant `sum(log std)`, which
    changes no gradient), in the guide's units per nat (log-densities of real rows spread over hundreds
    of nats: weights of 0.001-0.01 keep the two terms comparable).

    Args:
        guide: the guide (`search.guidance.Guide`) over original-space points.
        velocity: the prior's velocity field (normalized space).
        to_normalized: maps original-space points to the normalized space, differentiably.
        weight: the penalty's weight (0: the guide alone).
        steps: euler steps of the backward ODE.
    """

    def __init__(self, guide, velocity, to_normalized, weight: float, steps: int = 4) -> None:
        if not (math.isfinite(weight) and weight >= 0):
            raise ValueError(f"density weight must be >= 0 and finite; got {weight}")
        self.guide, self.velocity, self.to_normalized = guide, velocity, to_normalized
        self.weight, self.steps = weight, steps

    def __call__(self, x: Tensor) -> tuple[Tensor, Optional[Tensor]]:
        value, sigma = self.guide(x)
        if self.weight == 0:
            return value, sigma
        log_p = differentiable_log_density(self.velocity, self.to_normalized(x), self.steps)
        return value + self.weight * log_p.to(value.dtype), sigma
