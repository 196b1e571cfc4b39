"""Restarts: guided rows that start part-way along the flow from a good candidate already found.

A search that has found a good candidate knows little about the rest of embedding space: its GP is informed
near what was scored and nowhere else, so rows that start from fresh noise explore, and good candidates of a
problem with many answers (two categories at once) stay few. Re-noising a good candidate `x*` to time `t0`
(`x_t0 = alpha(t0) noise + beta(t0) x*`, the flow's own path) and integrating the guided flow from there gives
rows that stay on the prior (they are the prior's samples from that point on) near `x*` but not at it, where the
GP, informed around `x*`, can steer them. On the built-in dev pairs, unguided restarts from the searches' best
candidates land at cosine ~0.85 to it and ~0.80 to each other from `t0 = 0.5` (~0.65 and ~0.55 from 0.3), and
a third of them (0-78% by pair) score >= 0.1 at both categories, which fresh prior samples rarely do (README,
"Diverse batches"). The guided method (`methods.prior.GuidedPrior`) takes as anchors the best counted candidates
that are pairwise below cosine 0.7 (the k-diverse best's candidates), best first; rows take them in turn.

Sampling runs in two phases on the solver's one grid: the fresh rows from 0 to `t0`, then every row from `t0`
to 1, with guidance told the step of the whole grid (its window and the diversity term see one batch).
"""
from __future__ import annotations

import torch
from torch import Tensor

from scaleflow.sampling.solvers import integrate


class _StepOffset:
    """A velocity field told steps `offset + step` of `total` (the whole grid) while it integrates part of it."""

    def __init__(self, field, offset: int, total: int) -> None:
        self.field, self.offset, self.total = field, offset, total

    @property
    def singular_at_one(self) -> bool:
        return bool(getattr(self.field, "singular_at_one", False))

    def predict_endpoint(self, x: Tensor, t: Tensor) -> Tensor:
        return self.field.predict_endpoint(x, t)

    def begin_step(self, step: int, n_steps: int) -> None:
        hook = getattr(self.field, "begin_step", None)
        if hook is not None:
            hook(self.offset + step, self.total)

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        return self.field(x, t)


def sample_with_restarts(field, flow, noise: Tensor, anchors: Tensor, n_restarts: int, t0: float,
                         solver: str, steps: int) -> Tensor:
    """`[N, D]` end points (normalized space) of `noise: [N, D]` integrated by `field` from t = 0, except its
    last `n_restarts` rows, which start at `t0` from `flow.compute_xt(noise, anchor, t0)` with anchors
    `anchors: [A, D]` (normalized space) taken in turn. `t0` is rounded to the solver's grid of `steps`
    fixed steps (at least one step before and after it)."""
    n = noise.shape[0]
    if not 0 < n_restarts < n:
        raise ValueError(f"restarts must leave at least one fresh row: {n_restarts} of {n}")
    if len(anchors) == 0:
        raise ValueError("restarts need at least one anchor (a counted candidate)")
    before = min(max(round(t0 * steps), 1), steps - 1)
    t_start = before / steps
    fresh = noise[:n - n_restarts]
    fresh = integrate(_StepOffset(field, 0, steps), fresh, 0.0, t_start, solver, before).x
    chosen = anchors[torch.arange(n_restarts) % len(anchors)].to(noise.dtype)
    restarted = flow.compute_xt(noise[n - n_restarts:], chosen, t_start)
    start = torch.cat([fresh, restarted])
    return integrate(_StepOffset(field, before, steps), start, t_start, 1.0, solver, steps - before).x


def restart_count(draws: int, share: float) -> int:
    """Rows of `draws` that restart at `share` (0: none), leaving at least row 0 fresh."""
    if not 0 <= share < 1:
        raise ValueError(f"restart share must be in [0, 1); got {share}")
    return min(round(draws * share), max(draws - 1, 0))
