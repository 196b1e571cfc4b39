"""Variance-preserving trigonometric stochastic interpolant (Albergo & Vanden-Eijnden, "GVP" in SiT)."""
from __future__ import annotations

import math

import torch

from scaleflow.flows.base import Flow
from scaleflow.flows.time_sampling import TimeSampler

_HALF_PI = math.pi / 2


class SIGVP(Flow):
    """`x_t = cos(pi t/2) x0 + sin(pi t/2) x1`, `u_t = -(pi/2) sin(pi t/2) x0 + (pi/2) cos(pi t/2) x1`.

    alpha^2 + beta^2 = 1, so with unit-variance independent x0, x1 every x_t has unit variance
    (the path never shrinks toward the mean as the linear path does at t=1/2).

    Args:
        sigma: constant std of extra noise around the path (default 0, the deterministic interpolant).
        time_sampler: distribution of t when none is passed (default uniform).
    """

    name = "si-gvp"

    def __init__(self, sigma: float = 0.0, time_sampler: TimeSampler | None = None) -> None:
        super().__init__(sigma=sigma, time_sampler=time_sampler)

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        return torch.cos(_HALF_PI * t)

    def beta(self, t: torch.Tensor) -> torch.Tensor:
        return torch.sin(_HALF_PI * t)

    def alpha_dot(self, t: torch.Tensor) -> torch.Tensor:
        return -_HALF_PI * torch.sin(_HALF_PI * t)

    def beta_dot(self, t: torch.Tensor) -> torch.Tensor:
        return _HALF_PI * torch.cos(_HALF_PI * t)
