"""Gradient guidance of a flow's ODE: `v' = v + w(t) g`, with `g` the guide's gradient at the predicted endpoint.

At each solver step the network predicts where the current point will land (`x1_hat`; for velocity
runs `x1_hat = x_t + (1 - t) v`), the guide (a GP's acquisition, or any differentiable score of
embeddings) is evaluated there *in the original embedding space*, and its gradient, carried back to
the normalized space the flow runs in, is added to the velocity. Steering the endpoint rather than
`x_t` is the approximation studied in "On the Guidance of Flow Matching" (ICML 2025); the knobs are
the ones a public UCB-guided sampler in SONAR space uses (FIELD_NOTES.md), each one optional:

- `clip`: the gradient's norm is clipped to this (per row), so one steep spot cannot fling a point;
- `strength` (lambda): the multiplier of the (clipped) gradient;
- `uncertainty`: the strength becomes `lambda / (1 + 2 sigma)` with `sigma` the guide's posterior
  standard deviation at `x1_hat` in units of the observed scores' standard deviation: where the GP
  knows nothing its gradient is mostly prior, so it pushes less;
- `cap`: the guidance term is shortened to at most `cap * ||v||` (per row; 0.5 by default), so the
  flow's own velocity always dominates and samples stay on the data;
- `start`: no guidance for the first 4% of steps (the "zero-init" of CFG-Zero*: early velocities of
  the flow are the least reliable, and a push there moves the whole trajectory);
- `stop`: no guidance in the last 20% of steps, so the flow alone lands the point on the data.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional, Protocol

import torch
from torch import Tensor

# Round-off guard for the step windows: 0.04 * 50 is 2.0000000000000004 in floating point.
_WINDOW_EPS = 1e-9


@dataclass(frozen=True)
class GuidanceConfig:
    """The knobs of gradient guidance (module docstring); every one can be switched off.

    Attributes:
        strength: lambda, the multiplier of the guide's gradient (0: no guidance at all).
        clip: largest norm of the gradient (normalized space), or None for no clipping.
        cap: largest guidance term relative to the flow velocity's norm, or None for no cap.
        start: share of the steps, from the start, with no guidance (0.04: the first 4%).
        stop: share of the steps, at the end, with no guidance (0.2: the last 20%).
        uncertainty: scale the strength by `1 / (1 + 2 sigma)` where the guide has a sigma.
    """

    strength: float = 1.0
    clip: Optional[float] = None
    cap: Optional[float] = 0.5
    start: float = 0.04
    stop: float = 0.2
    uncertainty: bool = True

    def __post_init__(self) -> None:
        if not (math.isfinite(self.strength) and self.strength >= 0):
            raise ValueError(f"guidance strength must be >= 0 and finite; got {self.strength}")
        for name in ("clip", "cap"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"guidance {name} must be > 0 and finite (or off); got {value}")
        if not (0 <= self.start < 1 and 0 <= self.stop < 1 and self.start + self.stop < 1):
            raise ValueError(f"guidance start and stop must be shares in [0, 1) that leave steps between them; "
                             f"got start={self.start}, stop={self.stop}")

    def guided_step(self, step: int, n_steps: int) -> bool:
        """Whether solver step `step` (0-based) of `n_steps` is guided: not among the first `start * n_steps`
        steps, nor among the last `stop * n_steps` (at 50 steps: steps 2..39; at 20: steps 1..15)."""
        if self.strength == 0:
            return False
        return step >= self.start * n_steps - _WINDOW_EPS and step < (1 - self.stop) * n_steps - _WINDOW_EPS

    def as_dict(self) -> dict:
        return asdict(self)


class Guide(Protocol):
    """What guidance steers towards: a differentiable score of original-space embeddings.

    `__call__(x: [B, D]) -> (value [B], sigma [B] or None)`: the value to increase, and where the guide
    is a model, its posterior standard deviation in units of the observed scores' spread (for the
    uncertainty rule); None where it has none.
    """

    def __call__(self, x: Tensor) -> tuple[Tensor, Optional[Tensor]]: ...


class FunctionGuide:
    """A guide made of any differentiable function `f(x: [B, D]) -> [B]` of original-space embeddings (no sigma)."""

    def __init__(self, fn: Callable[[Tensor], Tensor], name: str = "guide") -> None:
        self.fn, self.name = fn, name

    def __call__(self, x: Tensor) -> tuple[Tensor, None]:
        try:
            value = self.fn(x)
        except Exception as err:  # the user's function: one line, not a traceback from inside the sampler
            raise ValueError(f"{self.name} raised {type(err).__name__}: {' '.join(str(err).split())[:300]}") from None
        if not isinstance(value, Tensor) or not value.requires_grad:
            raise ValueError(f"{self.name} must return a tensor that depends differentiably on its input (torch "
                             "operations on x, no .numpy() or .detach())")
        if value.shape not in ((x.shape[0],), (x.shape[0], 1)):
            raise ValueError(f"{self.name} returned shape {tuple(value.shape)} for {x.shape[0]} embeddings; "
                             f"expected [{x.shape[0]}]")
        return value.reshape(-1), None


class DiversityGuide:
    """A guide plus a diversity term over the batch it steers, in one of two forms.

    - Hinge (`max_cosine` c, the search's default): row i's value is the guide's minus `weight` times
      `sum_j relu(cos(x_i, x_j) - c)^2` over the other rows j, except row 0, which is left alone: it climbs as
      if it were the only row, and the others keep below cosine c of it and of each other. Rows farther apart
      than c feel nothing, so a batch can hold several different good candidates where many exist, and a
      single-optimum search still has one row that goes all the way to it. Measured on the dev problems
      (README, "Diverse batches"): pushing every row, the first too, cost `target` 0.15 of its best score; a
      free row chosen anew at each step by its value changed rows' roles mid-path and spread batches less.
    - Mean cosine (`max_cosine` None, the form of searches before the hinge): row i's value minus `weight`
      times its mean cosine similarity to the other rows; every row is pushed off the batch's mean direction,
      so many rows sharing a good region are pushed out of it.

    `weight` is in the guide's units (the acquisition in units of the scores' spread). Guidance follows the
    gradient of the batch's summed value, so a close pair of rows other than row 0 counts twice (in each row's
    value) and pushes each of them with twice the force row 0 exerts on a row near it; the default weight was
    measured as it is.
    """

    def __init__(self, guide: "Guide", weight: float, max_cosine: Optional[float] = None) -> None:
        if not (math.isfinite(weight) and weight >= 0):
            raise ValueError(f"diversity weight must be >= 0 and finite; got {weight}")
        if max_cosine is not None and not -1 < max_cosine < 1:
            raise ValueError(f"diversity cosine must be in (-1, 1); got {max_cosine}")
        self.guide, self.weight, self.max_cosine = guide, weight, max_cosine

    def __call__(self, x: Tensor) -> tuple[Tensor, Optional[Tensor]]:
        value, sigma = self.guide(x)
        if self.weight == 0 or x.shape[0] < 2:
            return value, sigma
        unit = torch.nn.functional.normalize(x, dim=1)
        if self.max_cosine is None:
            similarity = unit @ unit.T
            mean_other = (similarity.sum(1) - similarity.diagonal()) / (x.shape[0] - 1)
            return value - self.weight * mean_other, sigma
        obstacles = torch.cat([unit[:1].detach(), unit[1:]])  # row 0 is an obstacle that nothing moves
        close = torch.relu(unit @ obstacles.T - self.max_cosine).square()
        pushed = torch.ones_like(close) - torch.eye(len(x), dtype=close.dtype, device=close.device)
        pushed[0] = 0.0  # row 0 feels no push
        return value - self.weight * (close * pushed).sum(1), sigma


def median_pairwise_cosine(rows: Tensor, limit: int = 1000) -> float:
    """The median cosine similarity between two of `rows: [N, D]` (the first `limit` of them): how alike two
    real rows typically are (0.05 on the built-in 384-D rows; near 1 where every row points one way)."""
    unit = torch.nn.functional.normalize(rows[:limit].double(), dim=1)
    upper = torch.triu_indices(len(unit), len(unit), offset=1)
    return float((unit @ unit.T)[upper[0], upper[1]].median()) if len(unit) > 1 else 0.0


def guidance_term(v: Tensor, gradient: Tensor, config: GuidanceConfig, sigma: Optional[Tensor] = None) -> Tensor:
    """The term added to the velocity: `[B, D]` from the flow velocity `v: [B, D]` and the guide's
    gradient `[B, D]` (both in the normalized space), and optionally the guide's `sigma: [B]`.

    Order: clip the gradient's norm to `clip`; multiply by `strength` (divided by `1 + 2 sigma` with
    `uncertainty`); shorten the result to at most `cap * ||v||`.
    """
    g = gradient
    if config.clip is not None:
        norm = g.norm(dim=1, keepdim=True)
        g = g * torch.clamp(config.clip / norm.clamp_min(1e-30), max=1.0)
    weight = torch.full_like(g[:, :1], config.strength)
    if config.uncertainty and sigma is not None:
        weight = weight / (1.0 + 2.0 * sigma.detach().to(g.dtype).reshape(-1, 1))
    term = weight * g
    if config.cap is not None:
        limit = config.cap * v.norm(dim=1, keepdim=True)
        term = term * torch.clamp(limit / term.norm(dim=1, keepdim=True).clamp_min(1e-30), max=1.0)
    return term


@dataclass
class GuidanceTrace:
    """What guidance did over one sampling call (for reports and the responsiveness study).

    Attributes:
        guided_steps: the solver steps that were guided.
        term_to_velocity: per guided evaluation, the mean of ||term|| / ||v|| over the batch.
        guide_values: per guided evaluation, the mean guide value at the predicted endpoints.
        gradient_norms: per guided evaluation, the mean norm of the guide's gradient (normalized space,
            before clipping): the scale `clip` and `strength` act on.
    """

    guided_steps: list[int]
    term_to_velocity: list[float]
    guide_values: list[float]
    gradient_norms: list[float] = field(default_factory=list)


class GuidedVelocity:
    """A velocity field `v(x: [B, D], t: [B])` (normalized space) steered by a guide.

    Args:
        field: the run's `VelocityField` (anything with `network_output`, `flow`, `prediction`,
            `predict_endpoint`, `singular_at_one`).
        guide: a `Guide` over original-space embeddings.
        config: the knobs.
        to_original: maps normalized points to original ones, differentiably (the run's
            `Standardizer.inverse_transform`); None when the guide lives in the normalized space.

    Off (strength 0, or a step outside the window) it returns the field's own velocity, computed the
    same way, so guidance off is plain sampling bit for bit. Needs a fixed-step solver (the window is
    counted in steps, which the solver announces through `begin_step`).
    """

    def __init__(self, field, guide: Guide, config: GuidanceConfig,
                 to_original: Optional[Callable[[Tensor], Tensor]] = None) -> None:
        self.field, self.guide, self.config, self.to_original = field, guide, config, to_original
        self._guided = False
        self._step: Optional[int] = None
        self.trace = GuidanceTrace([], [], [])

    @property
    def singular_at_one(self) -> bool:
        return bool(getattr(self.field, "singular_at_one", False))

    def begin_step(self, step: int, n_steps: int) -> None:
        self._step = step
        self._guided = self.config.guided_step(step, n_steps)
        if self._guided:
            self.trace.guided_steps.append(step)

    def predict_endpoint(self, x: Tensor, t: Tensor) -> Tensor:
        # The jump into t = 1 of x1 runs lies in the late window, which is never guided.
        return self.field.predict_endpoint(x, t)

    def gradient(self, x1_hat: Tensor) -> tuple[Tensor, Optional[Tensor], Tensor]:
        """The guide's gradient at normalized endpoints `x1_hat: [B, D]`, in the normalized space
        (chain rule through `to_original`): `[B, D]`, with its sigma `[B]` (or None) and values `[B]`."""
        with torch.enable_grad():
            z = x1_hat.detach().requires_grad_(True)
            x = self.to_original(z) if self.to_original is not None else z
            value, sigma = self.guide(x)
            if value.shape != (z.shape[0],):
                raise ValueError(f"the guide returned shape {tuple(value.shape)}; expected [{z.shape[0]}]")
            (grad,) = torch.autograd.grad(value.sum(), z)
        return grad.detach(), None if sigma is None else sigma.detach(), value.detach()

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        if self._step is None and self.config.strength > 0:
            raise ValueError("guidance needs a fixed-step solver (euler, midpoint, heun, rk4) that announces its "
                             "steps (sampling.solvers.integrate); this call came from elsewhere")
        if not self._guided:
            return self.field(x, t)
        out = self.field.network_output(x, t)
        if self.field.prediction == "x1":
            x1_hat, v = out, self.field.flow.velocity_from_x1(x, out, t)
        else:
            v, x1_hat = out, self.field.flow.x1_from_velocity(x, out, t)
        gradient, sigma, value = self.gradient(x1_hat)
        term = guidance_term(v, gradient.to(v.dtype), self.config, sigma)
        ratio = term.norm(dim=1) / v.norm(dim=1).clamp_min(1e-30)
        self.trace.term_to_velocity.append(float(ratio.mean()))
        self.trace.gradient_norms.append(float(gradient.norm(dim=1).mean()))
        self.trace.guide_values.append(float(value.mean()))
        return v + term
