"""TuRBO-1 (Eriksson et al. 2019, "Scalable global optimization via local Bayesian optimization") from
BoTorch components, after BoTorch's TuRBO tutorial: one trust region around the best point, Thompson
sampling over sparse perturbations of it."""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Optional

import torch

from scaleflow.search.gp import fit_gp
from scaleflow.search.methods.base import History, Proposal, noise_seed, register, step_generator
from scaleflow.search.methods.common import OVERSAMPLE, counted_first, filter_info, reference_box


@dataclass
class TurboState:
    """The trust region's state (the tutorial's `TurboState`, with restarts counted).

    Attributes:
        dim, batch_size: the problem's dimension and the method's batch size (they set the failure tolerance).
        length: the trust region's side (before the lengthscale weights) in the unit cube.
        success_counter, failure_counter: consecutive successful / failed batches.
        best_value: the best score seen so far (every scored point).
        restarts: how often the region shrank below `length_min` and was reset.
    """

    dim: int
    batch_size: int
    length: float = 0.8
    length_init: float = 0.8
    length_min: float = 0.5 ** 7
    length_max: float = 1.6
    success_tolerance: int = 3
    failure_tolerance: int = 0  # 0: ceil(max(4 / batch_size, dim / batch_size)), as TuRBO-1
    success_counter: int = 0
    failure_counter: int = 0
    best_value: float = -math.inf
    restarts: int = 0

    def __post_init__(self) -> None:
        if self.failure_tolerance <= 0:
            self.failure_tolerance = math.ceil(max(4.0 / self.batch_size, self.dim / self.batch_size))

    def observe(self, y: torch.Tensor) -> None:
        """Scores of points this method did not propose (the initial design): they only move the best."""
        if y.numel():
            self.best_value = max(self.best_value, float(y.max()))

    def update(self, y: torch.Tensor) -> None:
        """The tutorial's `update_state` after one of this method's batches with scores `y`; a region that
        shrank below `length_min` restarts (length back to `length_init`, counters cleared, best kept)."""
        if y.numel() == 0:
            return
        best_new = float(y.max())
        if best_new > self.best_value + 1e-3 * abs(self.best_value):
            self.success_counter, self.failure_counter = self.success_counter + 1, 0
        else:
            self.success_counter, self.failure_counter = 0, self.failure_counter + 1
        if self.success_counter == self.success_tolerance:
            self.length, self.success_counter = min(2.0 * self.length, self.length_max), 0
        elif self.failure_counter == self.failure_tolerance:
            self.length, self.failure_counter = self.length / 2.0, 0
        self.best_value = max(self.best_value, best_new)
        if self.length < self.length_min:
            self.length, self.success_counter, self.failure_counter = self.length_init, 0, 0
            self.restarts += 1


def batch_size_of(history: History, name: str, n: int) -> int:
    """The method's batch size: the size of its first recorded batch, else `n` (the batch asked now)."""
    for i, method in enumerate(history.methods):
        if method == name:
            step = history.steps[i]
            return sum(1 for s, m in zip(history.steps, history.methods) if s == step and m == name)
    return n


def replay_state(history: History, name: str, dim: int, batch_size: int, **options) -> TurboState:
    """The state after every batch in `history`, replayed in step order: batches of `name` update it,
    any other batch (the initial design) only moves the best value."""
    state = TurboState(dim, batch_size, **options)
    steps = torch.tensor(history.steps, dtype=torch.long)
    scores = history.y
    for step in sorted(set(history.steps)):
        rows = torch.nonzero(steps == step).flatten()
        y = scores[rows]
        if history.methods[int(rows[0])] == name:
            state.update(y)
        else:
            state.observe(y)
    return state


@register("turbo")
@dataclass
class TuRBO:
    """TuRBO-1 in the unit cube of the prior's training rows' min/max box (original space).

    Each step: fit `fit_gp` to every scored point (in unit-cube coordinates); center the trust region at
    the best-scoring point so far; its side per dimension is `length` times the GP's lengthscale there
    (normalized to geometric mean 1), clipped to the cube; draw `n_candidates` Sobol points in it and,
    per candidate, perturb each dimension of the center with probability min(20 / D, 1) (at least one);
    pick `n` of them by Thompson sampling (BoTorch's `MaxPosteriorSampling`, without replacement).

    The state (length, counters, restarts) is a pure function of the history: `replay_state` replays
    the tutorial's update rule over this method's batches in order (success: a batch's max beats the
    best before it by 1e-3 * |best|). TuRBO-1 restarts a collapsed region (length < 0.5**7) from a fresh
    design with its data dropped; here the search has no spare budget for a fresh design, so a restart
    keeps the data and the center (the best point) and resets length and counters. At D = 384 and n = 8
    the failure tolerance is 48 batches, so a budget of a few hundred points never shrinks the region.

    `n_candidates` default: min(5000, max(2000, 200 * D)), the tutorial's: 5000 at D = 384, affordable
    (measured on random data, D = 384, ~100 scored points, n = 8, one thread of a busy machine: 5-11 s a
    batch with 5000 candidates, ~8 s with 2000, ~5 s with 1000; the GP fit is ~4 s of it, the rest the
    exact joint posterior samples over all candidates, a Cholesky of their `[N, N]` covariance).
    Success tolerance 3 (TuRBO-1's; BoTorch's tutorial uses 10).

    The free filter (`oversample` > 1, as `guided` has): Thompson sampling picks `oversample * n` of the
    candidates (in the order drawn) instead of `n`; the judge drops those it would not count, and the first
    `n` that count are scored, topped up in drawn order when too few do (`common.counted_first`).
    `length_init` (the trust region's starting side, 0.8 as TuRBO-1) is the knob to tune.
    """

    n_candidates: Optional[int] = None
    success_tolerance: int = 3
    length_init: float = 0.8
    oversample: int = OVERSAMPLE
    name: str = "turbo"

    def state(self, problem, history: History, n: int) -> TurboState:
        """The trust region's state before the next batch of `n` (replayed from `history`)."""
        return replay_state(history, self.name, problem.dim, batch_size_of(history, self.name, n),
                            success_tolerance=self.success_tolerance, length=self.length_init,
                            length_init=self.length_init)

    def propose(self, problem, history: History, n: int, seed: int, step: int) -> Proposal:
        import gpytorch
        from botorch.generation.sampling import MaxPosteriorSampling
        from torch.quasirandom import SobolEngine

        dim = problem.dim
        state = self.state(problem, history, n)
        box = reference_box(problem)
        low, span = box[0], box[1] - box[0]
        span = torch.where(span > 0, span, torch.ones_like(span))  # a constant dimension: any unit
        unit = (history.x.to(torch.float64) - low) / span
        scores = history.y
        n_candidates = self.n_candidates or min(5000, max(2000, 200 * dim))
        draws = min(n * self.oversample, n_candidates)  # Thompson picks; the judge keeps n of them
        generator = step_generator(seed, step)
        with torch.random.fork_rng():
            torch.manual_seed(noise_seed(seed, step))
            surrogate = fit_gp(unit, scores)
            model = surrogate.model
            center = unit[int(torch.argmax(scores))]
            weights = self._lengthscales(model)
            weights = weights / weights.mean()
            weights = weights / weights.log().mean().exp()  # geometric mean 1
            lower = (center - weights * state.length / 2).clamp(0.0, 1.0)
            upper = (center + weights * state.length / 2).clamp(0.0, 1.0)
            sobol_seed = int(torch.randint(0, 2 ** 31 - 1, (1,), generator=generator))
            perturbation = SobolEngine(dim, scramble=True, seed=sobol_seed).draw(n_candidates, dtype=torch.float64)
            perturbation = lower + (upper - lower) * perturbation
            mask = torch.rand(n_candidates, dim, generator=generator) <= min(20.0 / dim, 1.0)
            empty = torch.nonzero(mask.sum(1) == 0).flatten()
            mask[empty, torch.randint(0, dim, (len(empty),), generator=generator)] = True
            candidates = center.expand(n_candidates, dim).clone()
            candidates[mask] = perturbation[mask]
            with torch.no_grad(), gpytorch.settings.max_cholesky_size(float("inf")), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # jitter added to a near-singular joint covariance
                chosen = MaxPosteriorSampling(model=model, replacement=False)(candidates, num_samples=draws)
        x = (low + chosen.reshape(draws, dim) * span).float()
        info = {"length": state.length, "restarts": state.restarts, "success_counter": state.success_counter,
                "failure_counter": state.failure_counter, "n_candidates": n_candidates}
        if draws > n:
            counts = problem.free_counts(x)
            keep = counted_first(counts, -torch.arange(draws, dtype=torch.float64), n)
            x = x[keep]
            info.update(filter_info(counts, keep))
        return Proposal(x, [None] * n, info)

    @staticmethod
    def _lengthscales(model) -> torch.Tensor:
        """`[D]` the GP's lengthscales in unit-cube units (its `Normalize` rescales the inputs first)."""
        kernel = model.covar_module
        while getattr(kernel, "lengthscale", None) is None:
            kernel = kernel.base_kernel
        lengthscale = kernel.lengthscale.detach().reshape(-1).to(torch.float64)
        transform = getattr(model, "input_transform", None)
        coefficient = getattr(transform, "coefficient", None)
        if coefficient is not None:  # inputs are divided by it before the kernel: scale back to the cube
            lengthscale = lengthscale * coefficient.detach().reshape(-1).to(torch.float64)
        return lengthscale
