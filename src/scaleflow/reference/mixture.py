"""Gaussian mixtures as priors: the exact flow to a fitted density, with its exact log-density.

A mixture `sum_k pi_k N(mu_k, S_k)` (in the run's normalized space) reached from `N(0, I)` along the
straight path `x_t = (1 - t) x0 + t x1` (ICFM, sigma 0) has a closed-form denoiser. Given component k,
`x_t ~ N(t mu_k, C_k(t))` with `C_k(t) = (1 - t)^2 I + t^2 S_k`, and

    E[x1 | x_t = x, k] = mu_k + t S_k C_k(t)^-1 (x - t mu_k),

so `E[x1 | x_t = x] = sum_k r_k(x, t) E[x1 | x, k]`, with `r_k` the components' posterior weights at time t.
This is the x1-prediction a perfectly trained network would make: `forward(x, t)` returns it, so every
command (sample, eval, optimize's guidance) uses a reference prior exactly as a trained one. With
`S_k = U diag(lam) U^T` every `C_k(t)` is diagonal in `U`: one eigendecomposition per component serves all t.

One component with a shrunk covariance is the `gaussian` reference; several, the `gmm` one (`reference.fit`).
"""
from __future__ import annotations

import math

import torch
from torch import nn

LOG_2PI = math.log(2 * math.pi)


class GaussianMixturePrior(nn.Module):
    """`x1_hat(x: [B, D], t: [B]) -> [B, D]` of a full-covariance Gaussian mixture, and its `log_prob`.

    Buffers (float64, filled by `reference.fit` or a run's weights): `means [K, D]`, `eigenvectors [K, D, D]`
    (columns), `eigenvalues [K, D]` (> 0), `log_weights [K]`. The constructor options are what the run's
    model.json records: the sizes and how the covariances were made (for the reader; fitting sets them).
    """

    def __init__(self, input_dim: int = 1024, n_components: int = 1, covariance: str = "ledoit-wolf",
                 shrinkage: float = 0.0, reg_covar: float = 0.0):
        super().__init__()
        self.input_dim, self.n_components = input_dim, n_components
        self.covariance, self.shrinkage, self.reg_covar = covariance, shrinkage, reg_covar
        k, d = n_components, input_dim
        self.register_buffer("means", torch.zeros(k, d, dtype=torch.float64))
        self.register_buffer("eigenvectors", torch.eye(d, dtype=torch.float64).expand(k, d, d).clone())
        self.register_buffer("eigenvalues", torch.ones(k, d, dtype=torch.float64))
        self.register_buffer("log_weights", torch.full((k,), -math.log(k), dtype=torch.float64))

    @torch.no_grad()
    def set_components(self, weights: torch.Tensor, means: torch.Tensor, covariances: torch.Tensor) -> None:
        """Fill the buffers from `weights [K]`, `means [K, D]` and symmetric positive definite `covariances [K, D, D]`."""
        eigenvalues, eigenvectors = torch.linalg.eigh(covariances.to(torch.float64))
        self.means.copy_(means.to(torch.float64))
        self.eigenvectors.copy_(eigenvectors)
        self.eigenvalues.copy_(eigenvalues.clamp_min(1e-12))
        self.log_weights.copy_(weights.to(torch.float64).clamp_min(1e-300).log() - weights.sum().log())

    def _posterior(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per component at times `t`: log N(x; t mu_k, C_k(t)) `[B, K]`, the rotated offsets
        `U^T (x - t mu_k)` `[B, K, D]` and the variances `c = (1 - t)^2 + t^2 lam` `[B, K, D]`."""
        t = t.to(torch.float64).reshape(-1, 1, 1)
        offsets = x.to(torch.float64).unsqueeze(1) - t * self.means  # [B, K, D]
        rotated = torch.einsum("bkd,kde->bke", offsets, self.eigenvectors)
        variances = (1 - t) ** 2 + t ** 2 * self.eigenvalues
        log_density = -0.5 * ((rotated ** 2 / variances).sum(-1) + variances.log().sum(-1) + self.input_dim * LOG_2PI)
        return log_density, rotated, variances

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        log_density, rotated, variances = self._posterior(x, t)
        responsibilities = torch.softmax(log_density + self.log_weights, dim=1)  # [B, K]
        t64 = t.to(torch.float64).reshape(-1, 1, 1)
        shrunk = rotated * (t64 * self.eigenvalues / variances)  # S C^-1 (x - t mu) in the eigenbasis
        means = self.means + torch.einsum("bke,kde->bkd", shrunk, self.eigenvectors)
        return (responsibilities.unsqueeze(-1) * means).sum(1).to(x.dtype)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """`[B]` exact log-density of `x: [B, D]` (normalized space) under the mixture."""
        log_density, _, _ = self._posterior(x, torch.ones(len(x), dtype=torch.float64, device=x.device))
        return torch.logsumexp(log_density + self.log_weights, dim=1)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """`[n, D]` exact draws (float32): a component by its weight, then its Gaussian."""
        components = torch.multinomial(self.log_weights.exp().cpu(), n, replacement=True, generator=generator)
        noise = torch.randn(n, self.input_dim, dtype=torch.float64, generator=generator)
        scaled = noise * self.eigenvalues.cpu()[components].sqrt()
        x = self.means.cpu()[components] + torch.einsum("nd,ned->ne", scaled, self.eigenvectors.cpu()[components])
        return x.float().to(self.means.device)
