"""Methods that sample the prior: unguided (a baseline), unguided through the guided method's filter (its
control), and guided by the GP (the method of this project)."""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Optional

import torch

from scaleflow.sampling.sample import generate, sample_noise
from scaleflow.search.constraints import FeasibilityGuide
from scaleflow.search.density_penalty import DensityPenaltyGuide
from scaleflow.search.gp import (ACQUISITIONS, Projection, Surrogate, acquisition_values, fit_gp, gp_hyperparameters,
                                 make_guide)
from scaleflow.search.guidance import DiversityGuide, GuidanceConfig, GuidedVelocity
from scaleflow.search.methods.base import History, Proposal, noise_seed, register
from scaleflow.search.methods.common import OVERSAMPLE, counted_apart, diverse_counted_first, filter_info
from scaleflow.search.pareto import initial_scores
from scaleflow.search.pareto_gp import PARETO_ACQUISITION, fit_pareto_gp
from scaleflow.search.report import DIVERSE_K, DIVERSE_MAX_COSINE
from scaleflow.search.restarts import restart_count, sample_with_restarts

DEFAULT_SOLVER, DEFAULT_STEPS = "euler", 20
# The guided search's own settings, chosen on the built-in `target` objective (README, "Guided search"): a
# term up to twice the flow velocity's length found better candidates than the knob's 0.5 default (mean best
# 0.78 against 0.58 over 3 targets at 96 evaluations), and drawing 4 samples per candidate scored, then
# dropping those the judge would not count, kept 95 of 96 scored candidates valid and novel.
SEARCH_GUIDANCE = GuidanceConfig(strength=1000.0, cap=2.0)
SEARCH_OVERSAMPLE = OVERSAMPLE
# The batch's diversity term (`guidance.DiversityGuide`): a hinge at cosine SEARCH_DIVERSITY_COSINE with weight
# SEARCH_DIVERSITY, row 0 of each batch left free. On the dev problems (5 seeds, budget 96; README, "Diverse
# batches") it took the dev category's batches from cosine 0.64 to 0.42 and their 4-diverse best from 0.36 to
# 0.79, with the dev targets' best score unchanged (+0.003 [-0.037, +0.044]). Before it, a mean-cosine term of
# weight 1 (what a folder without "diversity_cosine" ran): it pushed every row off the batch's mean direction,
# and at weights 3 and 10 cost `target` 0.10 and 0.21 of its best score.
SEARCH_DIVERSITY = 10.0
SEARCH_DIVERSITY_COSINE: Optional[float] = 0.5
# The filter's spread (`common.diverse_counted_first`): off (1.0). Measured with the mean-cosine diversity term
# (weight 1) of that time: at 0.5 a category search's batches were spread (cosine 0.64 -> 0.31) at no cost in the
# best score, but by poor candidates: a batch's 4-diverse best fell from 0.36 to 0.05 (README, "Diverse batches").
SEARCH_MAX_BATCH_COSINE = 1.0
# Each GP fit starts from the previous fit's hyperparameters: on the 5 dev targets at budget 200 the same best
# score (paired difference -0.000 [-0.009, +0.008]) with fits ~4x shorter (README, "Fast enough to think with").
SEARCH_GP_WARM_START = True
# Restarts (`search.restarts`): with several objectives, half the drawn rows start at flow time 0.5 from the best
# different candidates found so far. On the 5 dev pairs (budget 96, 5 seeds; README, "Diverse batches") the
# 4-diverse best rose from 0.097 to 0.181 with the best score kept (0.284 -> 0.309); times 0.3-0.6 and a share of
# 0.75 were tried. With one objective they are off (not measured there).
SEARCH_PARETO_RESTART_SHARE = 0.5
SEARCH_RESTART_TIME = 0.5


@register("prior")
@dataclass
class PriorSamples:
    """Unguided samples of the prior (fresh noise each step)."""

    solver: str = DEFAULT_SOLVER
    steps: int = DEFAULT_STEPS
    noise_scale: float = 1.0
    name: str = "prior"

    def propose(self, problem, history: History, n: int, seed: int, step: int) -> Proposal:
        batch = generate(problem.run.velocity, n, problem.dim, self.solver, self.steps, noise_seed(seed, step),
                         noise_scale=self.noise_scale)
        return Proposal(problem.to_original(batch.x).float(), [None] * n)


def filter_by_acquisition(problem, surrogate: Surrogate, acquisition: str, x: torch.Tensor, n: int,
                          seed: int, max_cosine: float = 1.0) -> tuple[torch.Tensor, dict]:
    """The free filter of the prior's samplers: of candidates `x: [N, D]` (original space), the `n` to
    score: those the judge counts first, each group ranked by `acquisition` on `surrogate`
    (`gp.acquisition_values`; `seed` seeds a Thompson draw), each counted one taken only below cosine
    `max_cosine` to those taken before it (`common.diverse_counted_first`; 1: no spread). Returns `[n, D]`
    and what the filter did."""
    counts = problem.free_counts(x)
    values = acquisition_values(surrogate, acquisition, x, seed)
    chosen = diverse_counted_first(counts, values, x, n, max_cosine)
    best = float(values[chosen].max())
    return x[chosen], {**filter_info(counts, chosen), "best_acquisition": best if math.isfinite(best) else None}


@register("prior-filtered")
@dataclass
class FilteredPrior:
    """The control of `guided` without guidance: unguided prior samples through the same filter.

    Each step draws `oversample * n` unguided samples from the same noise `guided` starts from (seed
    `noise_seed(seed, step)`), drops those the judge would not count, and scores the `n` with the highest
    `acquisition` on the GP fitted to everything scored (`filter_by_acquisition`, as `guided` does). The
    gap between `prior` and this method is what the filter buys; between this method and `guided`, what
    the guidance buys.
    """

    acquisition: str = "ucb"
    solver: str = DEFAULT_SOLVER
    steps: int = DEFAULT_STEPS
    noise_scale: float = 1.0
    pca: int | None = None
    oversample: int = SEARCH_OVERSAMPLE
    refit_every: int = 1
    warm_start: bool = SEARCH_GP_WARM_START
    max_batch_cosine: float = SEARCH_MAX_BATCH_COSINE
    name: str = "prior-filtered"

    def __post_init__(self) -> None:
        _check(self.acquisition, self.oversample, self.max_batch_cosine, self.refit_every)
        self.gp_cache: dict = {}  # the latest anchor's fit, by its history digest (`_fit_surrogate`)

    def propose(self, problem, history: History, n: int, seed: int, step: int) -> Proposal:
        surrogate = _fit_surrogate(problem, history, self.pca, self.refit_every, self.gp_cache,
                                   self.acquisition, seed, self.warm_start)
        draws = n * self.oversample
        batch = generate(problem.run.velocity, draws, problem.dim, self.solver, self.steps, noise_seed(seed, step),
                         batch_size=draws, noise_scale=self.noise_scale)
        x, info = filter_by_acquisition(problem, surrogate, self.acquisition, problem.to_original(batch.x).float(), n,
                                        noise_seed(seed, step), self.max_batch_cosine)
        return Proposal(x, [None] * n, info)


def _fit_surrogate(problem, history: History, pca: int | None, refit_every: int = 1,
                   cache: Optional[dict] = None, acquisition: str = "ucb", seed: int = 0, warm_start: bool = False):
    """The GP on everything scored, on the top-`pca` principal directions of the training rows if asked; for
    acquisition "qlognehvi", one GP per objective of a Pareto search (`pareto_gp`, fitted every step) with the
    seed's reference point (`problem.objective(seed)`, a `pareto.ParetoObjective`).

    The hyperparameters are fitted at the anchor steps 1, 1 + k, 1 + 2k, ... (`refit_every` k), each on what
    was scored before it; the steps between condition a GP with the last anchor's on everything scored (no
    fit: the fit is most of a batch's time). `warm_start`: each anchor's fit starts from the previous
    anchor's values, else from the priors' defaults. Every anchor fit is a pure function of the history (a
    warm one of the anchors before it too), so a resumed search recomputes the ones it lacks (`cache` keeps
    them between steps of one process) and proposes what an uninterrupted one did."""
    projection = Projection.fit(problem.reference, pca) if pca else None
    if acquisition == PARETO_ACQUISITION:
        objective = problem.objective(seed)
        if not hasattr(objective, "reference_point"):
            raise ValueError(f"acquisition {PARETO_ACQUISITION} needs several objectives (repeat --objective)")
        ref_point = objective.reference_point(initial_scores(history))
        return fit_pareto_gp(history.x, history.objectives, ref_point, projection)
    step = history.n_steps
    if not warm_start and (refit_every <= 1 or step <= 1):
        return fit_gp(history.x, history.y, projection)
    cache = {} if cache is None else cache
    anchors = list(range(1, max(step, 1) + 1, refit_every))
    # Each anchor: (its step, the rows scored before it, a digest of those rows).
    keys = []
    for anchor in anchors[::-1]:  # from the latest back to one already fitted (or to the first, cold)
        n_anchor = sum(s < anchor for s in history.steps)
        keys.append((anchor, n_anchor, hashlib.sha256(history.y[:n_anchor].numpy().tobytes()
                                                      + history.x[:n_anchor].numpy().tobytes()).hexdigest()))
        if keys[-1] in cache or not warm_start:
            break
    keys.reverse()
    hyperparameters, fitted = cache.get(keys[0]), None
    for key in keys[hyperparameters is not None:]:
        n_anchor = key[1]
        fitted = fit_gp(history.x[:n_anchor], history.y[:n_anchor], projection,
                        start=hyperparameters if warm_start else None)
        hyperparameters = gp_hyperparameters(fitted)
    cache.clear()  # only the latest anchor is needed from here on
    cache[keys[-1]] = hyperparameters
    if fitted is not None and keys[-1][1] == len(history.y):  # this step's own fit, on everything scored
        return fitted
    return fit_gp(history.x, history.y, projection, hyperparameters=hyperparameters)


def _check(acquisition: str, oversample: int, max_batch_cosine: float, refit_every: int) -> None:
    if refit_every < 1:
        raise ValueError(f"refit_every must be >= 1; got {refit_every}")
    if not -1 < max_batch_cosine <= 1:
        raise ValueError(f"max_batch_cosine must be in (-1, 1] (1: no spread); got {max_batch_cosine}")
    if acquisition not in ACQUISITIONS:
        raise ValueError(f"unknown acquisition {acquisition!r}; choose one of {', '.join(ACQUISITIONS)}")
    if oversample < 1:
        raise ValueError(f"oversample must be >= 1; got {oversample}")


@register("guided")
@dataclass
class GuidedPrior:
    """Prior samples steered by the GP's acquisition gradient (`search.guidance`).

    Each step fits the GP to everything scored, draws `oversample * n` guided samples from fresh noise,
    drops those the judge would not count (free: judging costs no objective evaluation), and keeps the
    `n` with the highest `acquisition` among the rest (`filter_by_acquisition`; Thompson: one joint
    posterior draw), topped up with the best others if too few count.

    Attributes:
        acquisition: the guide: "ucb" (default), "logei", "qlognei", "mean", or "thompson" (each row of the
            batch follows its own GP posterior sample, which keeps a batch diverse); with several objectives
            "qlognehvi" (the hypervolume gain, one GP per objective: `search.pareto_gp`; the others then act on
            the worst-objective score).
        guidance: the knobs (`GuidanceConfig`).
        pca: GP on the top-`pca` principal directions of the prior's training rows (None: the full space).
        oversample: candidates drawn per candidate scored.
        diversity: weight of the batch's diversity term (`guidance.DiversityGuide`; 0: none).
        diversity_cosine: its hinge's cosine, row 0 free (raised to the median cosine between two of the prior's
            training rows; None: the mean-cosine form of earlier searches).
        density_weight: weight of the prior's log-density in the guide (`density_penalty`; 0: none).
        max_batch_cosine: the filter takes a counted candidate only below this cosine to those it took before
            (`common.diverse_counted_first`; 1: no spread).
        restart_share: share of the drawn rows (the last ones; row 0 never) that start at flow time
            `restart_time` from the best pairwise-different counted candidates found so far instead of from
            fresh noise (`search.restarts`; 0: none).
    """

    acquisition: str = "ucb"
    guidance: GuidanceConfig = SEARCH_GUIDANCE
    solver: str = DEFAULT_SOLVER
    steps: int = DEFAULT_STEPS
    noise_scale: float = 1.0
    pca: int | None = None
    oversample: int = SEARCH_OVERSAMPLE
    diversity: float = SEARCH_DIVERSITY
    diversity_cosine: Optional[float] = SEARCH_DIVERSITY_COSINE
    density_weight: float = 0.0
    refit_every: int = 1
    warm_start: bool = SEARCH_GP_WARM_START
    max_batch_cosine: float = SEARCH_MAX_BATCH_COSINE
    restart_share: float = 0.0
    restart_time: float = SEARCH_RESTART_TIME
    name: str = "guided"

    def __post_init__(self) -> None:
        _check(self.acquisition, self.oversample, self.max_batch_cosine, self.refit_every)
        if self.diversity_cosine is not None and not -1 < self.diversity_cosine < 1:
            raise ValueError(f"diversity_cosine must be in (-1, 1) (or None); got {self.diversity_cosine}")
        restart_count(2, self.restart_share)  # checks the share
        if self.restart_share > 0 and self.acquisition == "thompson":
            raise ValueError("restarts need a guide that values any row (thompson draws one path per row of the "
                             "whole batch); set restart_share to 0 or choose another acquisition")
        if not 0 < self.restart_time < 1:
            raise ValueError(f"restart_time must be in (0, 1); got {self.restart_time}")
        self.gp_cache: dict = {}  # the latest anchor's fit, by its history digest (`_fit_surrogate`)

    def propose(self, problem, history: History, n: int, seed: int, step: int) -> Proposal:
        surrogate = _fit_surrogate(problem, history, self.pca, self.refit_every, self.gp_cache,
                                   self.acquisition, seed, self.warm_start)
        draws = n * self.oversample
        guide = make_guide(surrogate, self.acquisition, draws, seed=noise_seed(seed, step))
        constrained = getattr(problem, "constraints", None)
        if constrained and history.constraints is not None and history.constraints.shape[1] == len(constrained):
            # One GP per outcome constraint; the guide climbs the acquisition and the log-probability they hold.
            models = [fit_gp(history.x, history.constraints[:, j]) for j in range(len(constrained))]
            guide = FeasibilityGuide(guide, models, constrained)
        if self.diversity > 0:
            guide = DiversityGuide(guide, self.diversity, diversity_hinge_cosine(problem, self.diversity_cosine))
        if self.density_weight > 0:
            guide = DensityPenaltyGuide(guide, problem.run.velocity, problem.to_normalized, self.density_weight)
        guided = GuidedVelocity(problem.run.velocity, guide, self.guidance, to_original=problem.to_original)
        n_restarts = restart_count(draws, self.restart_share) if history.counts.any() else 0
        if n_restarts:  # the last rows restart from the best different counted candidates (`search.restarts`)
            anchors = history.x[counted_apart(history.counts, history.y, history.x, DIVERSE_K, DIVERSE_MAX_COSINE)]
            noise = sample_noise(draws, problem.dim, noise_seed(seed, step)) * self.noise_scale
            end = sample_with_restarts(guided, problem.run.velocity.flow, noise,
                                       problem.to_normalized(anchors).float(), n_restarts, self.restart_time,
                                       self.solver, self.steps)
        else:
            end = generate(guided, draws, problem.dim, self.solver, self.steps, noise_seed(seed, step),
                           batch_size=draws, noise_scale=self.noise_scale).x
        x = problem.to_original(end).float()
        info = {"guidance_to_velocity": _mean(guided.trace.term_to_velocity),
                "gradient_norm": _mean(guided.trace.gradient_norms)}
        if self.oversample > 1:
            x, filtered = filter_by_acquisition(problem, surrogate, self.acquisition, x, n, noise_seed(seed, step),
                                                self.max_batch_cosine)
            info.update(filtered)
        return Proposal(x, [None] * n, info)


def diversity_hinge_cosine(problem, setting: Optional[float]) -> Optional[float]:
    """The diversity hinge's cosine: `setting`, but never below the median cosine between two of the prior's
    training rows: a batch is never asked to be more spread than real rows are (where every row points one way,
    a lower hinge would push candidates off the data). None (the mean-cosine form) stays None."""
    if setting is None:
        return None
    return min(max(setting, problem.median_cosine), 0.999)


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None
