"""The Flow interface: a probability path from noise to data, and how noise and data are paired.

A flow is the one object a trainer asks for `(t, x_t, u_t)` and a sampler asks for conversions
between parameterizations. Every path here has the form

    x_t = alpha(t) * x0 + beta(t) * x1 + sigma * eps,      u_t = alpha_dot(t) * x0 + beta_dot(t) * x1

with x0 noise, x1 data, t in [0, 1], alpha(0)=beta(1)=1, alpha(1)=beta(0)=0. Subclasses give the
four coefficient functions and, optionally, a coupling `couple` that re-pairs the batch.
"""
from __future__ import annotations

import abc
from typing import NamedTuple

import torch

from scaleflow.flows.time_sampling import TimeSampler
from scaleflow.times import broadcast_time as as_times  # one rule for t's shapes everywhere


class PathSample(NamedTuple):
    """One draw from a flow: times `[B]`, points and target velocities `[B, D]`, and the coupled pairs."""

    t: torch.Tensor
    x_t: torch.Tensor
    u_t: torch.Tensor
    x0: torch.Tensor
    x1: torch.Tensor


def pad_like(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Reshape `t: [B]` to `[B, 1, ...]` so it broadcasts against `x: [B, ...]`."""
    return t.reshape(-1, *([1] * (x.dim() - 1)))


class Flow(abc.ABC):
    """Abstract probability path + coupling. Subclasses define `alpha`, `beta`, `alpha_dot`, `beta_dot`.

    Args:
        sigma: constant std of the Gaussian noise added around the path (0 = deterministic path).
        time_sampler: distribution of t when the caller does not pass one (default uniform).
    """

    name: str = "flow"

    def __init__(self, sigma: float = 0.0, time_sampler: TimeSampler | None = None) -> None:
        if sigma < 0:
            raise ValueError(f"sigma must be >= 0, got {sigma}")
        self.sigma = float(sigma)
        self.time_sampler = time_sampler if time_sampler is not None else TimeSampler()

    # --- path coefficients: t [B] -> [B] ---------------------------------------------------------
    @abc.abstractmethod
    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        """Coefficient of the noise x0 in x_t; 1 at t=0, 0 at t=1."""

    @abc.abstractmethod
    def beta(self, t: torch.Tensor) -> torch.Tensor:
        """Coefficient of the data x1 in x_t; 0 at t=0, 1 at t=1."""

    @abc.abstractmethod
    def alpha_dot(self, t: torch.Tensor) -> torch.Tensor:
        """d alpha / dt."""

    @abc.abstractmethod
    def beta_dot(self, t: torch.Tensor) -> torch.Tensor:
        """d beta / dt."""

    # --- coupling ---------------------------------------------------------------------------------
    def couple(
        self, x0: torch.Tensor, x1: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Pair noise and data rows. Default: independent coupling, i.e. keep the given pairing.

        Keeping pairs as given is also what a flow with a fixed coupling (e.g. reflow, whose
        (noise, sample) pairs come from a trained model) needs: the trainer passes them pre-paired.

        Args:
            x0: `[B0, D]` noise. x1: `[B1, D]` data.
        Returns:
            `(x0, x1)`, both `[B, D]`, row i of one paired with row i of the other.
        """
        return x0, x1

    # --- path -------------------------------------------------------------------------------------
    def compute_xt(
        self, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor | float, eps: torch.Tensor | None = None
    ) -> torch.Tensor:
        """`x_t = alpha(t) x0 + beta(t) x1 + sigma eps`; x0, x1, eps: `[B, D]`, t: `[B]` -> `[B, D]`."""
        t = as_times(t, x0)
        xt = pad_like(self.alpha(t), x0) * x0 + pad_like(self.beta(t), x1) * x1
        if eps is not None and self.sigma > 0:
            xt = xt + self.sigma * eps
        return xt

    def compute_ut(self, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        """Conditional target velocity `u_t = alpha_dot(t) x0 + beta_dot(t) x1`: `[B, D]`.

        The noise term sigma*eps has a constant scale, so it contributes nothing to d x_t / dt.
        """
        t = as_times(t, x0)
        return pad_like(self.alpha_dot(t), x0) * x0 + pad_like(self.beta_dot(t), x1) * x1

    def sample_path(
        self,
        x0: torch.Tensor,
        x1: torch.Tensor,
        t: torch.Tensor | float | None = None,
        generator: torch.Generator | None = None,
    ) -> PathSample:
        """Couple the batch, draw times (unless given) and return a point on the path and its velocity.

        Args:
            x0: `[B, D]` noise (standard normal).
            x1: `[B, D]` data.
            t: `[B]` (or scalar) times in [0, 1]; drawn from `self.time_sampler` when None.
            generator: seeds the coupling, the times and the path noise.
        Returns:
            `PathSample(t: [B], x_t: [B, D], u_t: [B, D], x0: [B, D], x1: [B, D])`, with x0/x1 as
            re-paired by `couple` (a data-predicting network's target is this x1).
        """
        if x0.shape[1:] != x1.shape[1:]:
            raise ValueError(f"x0 and x1 must have the same feature shape, got {tuple(x0.shape)} and {tuple(x1.shape)}")
        x0, x1 = self.couple(x0, x1, generator=generator)
        if t is None:
            t = self.time_sampler.sample(x0.shape[0], x0.device, generator=generator, dtype=x0.dtype)
        t = as_times(t, x0)
        eps = None
        if self.sigma > 0:  # draw nothing when the path is deterministic, so sigma=0 costs no RNG
            draw_device = generator.device if generator is not None else x0.device
            eps = torch.randn(x0.shape, generator=generator, device=draw_device, dtype=x0.dtype).to(x0.device)
        return PathSample(t, self.compute_xt(x0, x1, t, eps), self.compute_ut(x0, x1, t), x0, x1)

    def sample_location_and_conditional_flow(
        self,
        x0: torch.Tensor,
        x1: torch.Tensor,
        t: torch.Tensor | float | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`(t, x_t, u_t)` of `sample_path` (TorchCFM's name for the call)."""
        sample = self.sample_path(x0, x1, t, generator)
        return sample.t, sample.x_t, sample.u_t

    # --- conversions between parameterizations (used by x1-prediction training and sampling) ----
    def velocity_from_x1(
        self, x_t: torch.Tensor, x1_hat: torch.Tensor, t: torch.Tensor | float, min_alpha: float = 1e-3
    ) -> torch.Tensor:
        """Velocity implied by a data prediction: `v = alpha_dot x0_hat + beta_dot x1_hat`.

        `x0_hat = (x_t - beta x1_hat) / alpha`, with alpha clamped to >= `min_alpha` because it
        vanishes at t=1 (linear path: `v = (x1_hat - x_t) / (1 - t)`). Exact when sigma=0 and
        alpha(t) >= min_alpha. Near t=1 it divides the prediction's error by alpha, so the solvers
        never evaluate it at t=1 (their endpoint rule, `sampling.solvers`); the clamp only keeps a
        stray call finite.

        Args:
            x_t: `[B, D]`. x1_hat: `[B, D]` predicted data. t: `[B]` or scalar.
        Returns:
            `[B, D]` velocity.
        """
        t = as_times(t, x_t)
        alpha = pad_like(self.alpha(t).clamp_min(min_alpha), x_t)
        x0_hat = (x_t - pad_like(self.beta(t), x_t) * x1_hat) / alpha
        return pad_like(self.alpha_dot(t), x_t) * x0_hat + pad_like(self.beta_dot(t), x_t) * x1_hat

    def x1_from_velocity(self, x_t: torch.Tensor, v: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        """Data prediction implied by a velocity: solve `x_t = a x0 + b x1, v = a' x0 + b' x1` for x1.

        `x1 = (a v - a' x_t) / (a b' - a' b)`; the determinant is 1 for the linear path and pi/2
        for the VP path, so no clamping is needed. `x_t, v: [B, D]` -> `[B, D]`.
        """
        t = as_times(t, x_t)
        a, b = pad_like(self.alpha(t), x_t), pad_like(self.beta(t), x_t)
        da, db = pad_like(self.alpha_dot(t), x_t), pad_like(self.beta_dot(t), x_t)
        return (a * v - da * x_t) / (a * db - da * b)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(sigma={self.sigma}, time_sampler={self.time_sampler!r})"
