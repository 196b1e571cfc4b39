"""A Gaussian kernel density estimate as a prior: the mixture `1/N sum_i N(x_i, h^2 I)` over the training
rows (normalized space), its exact flow from `N(0, I)` and its exact log-density.

Given row i, `x_t ~ N(t x_i, c I)` with `c = (1 - t)^2 + t^2 h^2`, and
`E[x1 | x_t = x, i] = x_i + (t h^2 / c) (x - t x_i)`; `forward` weighs these by the rows' posterior.
At small bandwidths this is a copier (every sample a training row plus a little noise): the
memorization-aware ranking says so (`evaluation.ranking`).
"""
from __future__ import annotations

import math

import torch
from torch import nn

LOG_2PI = math.log(2 * math.pi)


def squared_distances(x: torch.Tensor, rows: torch.Tensor, t: torch.Tensor | float = 1.0) -> torch.Tensor:
    """`[B, N]` squared Euclidean distances `||x - t x_i||^2` from `x: [B, D]` to the rows shrunk by `t` (a number
    or `[B, 1]`; 1: the rows themselves), float64, matmul form clamped at 0."""
    x, rows = x.to(torch.float64), rows.to(torch.float64)
    return ((x * x).sum(1, keepdim=True) - 2 * t * (x @ rows.T) + t ** 2 * (rows * rows).sum(1)).clamp_min(0)


class KernelDensityPrior(nn.Module):
    """`x1_hat(x: [B, D], t: [B]) -> [B, D]` of a Gaussian KDE over `rows [N, D]` with bandwidth `h`."""

    def __init__(self, input_dim: int = 1024, n_rows: int = 1, bandwidth: float = 1.0):
        super().__init__()
        if not bandwidth > 0:
            raise ValueError(f"bandwidth must be > 0; got {bandwidth}")
        self.input_dim, self.n_rows, self.bandwidth = input_dim, n_rows, float(bandwidth)
        self.register_buffer("rows", torch.zeros(n_rows, input_dim, dtype=torch.float64))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = t.to(torch.float64).reshape(-1, 1)
        h2 = self.bandwidth ** 2
        c = (1 - t) ** 2 + t ** 2 * h2  # [B, 1]
        weights = torch.softmax(-squared_distances(x, self.rows, t) / (2 * c), dim=1)  # rows' posterior at time t
        gain = t * h2 / c
        out = (1 - gain * t) * (weights @ self.rows) + gain * x.to(torch.float64)
        return out.to(x.dtype)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """`[B]` exact log-density of `x: [B, D]` (normalized space)."""
        h2 = self.bandwidth ** 2
        return (torch.logsumexp(-squared_distances(x, self.rows) / (2 * h2), dim=1) - math.log(self.n_rows)
                - 0.5 * self.input_dim * (LOG_2PI + math.log(h2)))

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """`[n, D]` exact draws (float32): a row at random plus `N(0, h^2 I)`."""
        picks = torch.randint(self.n_rows, (n,), generator=generator)
        noise = torch.randn(n, self.input_dim, dtype=torch.float64, generator=generator)
        return (self.rows.cpu()[picks] + self.bandwidth * noise).float().to(self.rows.device)

