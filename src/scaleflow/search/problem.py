"""A search problem: the prior, the real rows a user has, the judge, and the objective of each seed.

Rows of the run's data play three parts (all in the original embedding space):

- **reference**: the prior's training rows. Candidates are judged against them (valid: close to them
  as real rows are; novel: no near-copy of one) and their texts name what a candidate is near.
- **pool**: the held-out rows (validation and test splits), minus any objective's targets. They are
  the real rows a user already has that the prior never saw: the initial design, and what the
  real-row baselines (random rows, retrieval) choose from. Being real and unseen, they are valid
  (95% of them, by the rule) and novel.
- **targets** (built-in `target` objective): held-out rows whose best reference row is not already a
  near-match, split once (a fixed seed) into two disjoint sets: `dev` (5 rows), on which settings are
  tuned, and `test` (10 rows), on which results are reported. Seed i of a search maximizes the cosine
  to target i of the chosen set (cycling when there are more seeds than targets). Every target of both
  sets is removed from the pool and from the rows that set the validity threshold, so no part of the
  judge or of the initial design has seen a target, whichever set is searched.

Several objectives (`search.pareto`): a list of 2 to 4 `MODULE:FUNCTION` specs, or the built-in
`two-category` (two WordNet categories' probabilities, `search.category`; its pairs are split into `dev` and
`test` as targets are, and seed i takes pair i of the set).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
from torch import Tensor

from scaleflow.search.guidance import median_pairwise_cosine
from scaleflow.search.judge import CandidateJudge
from scaleflow.search.log_density import prior_log_density
from scaleflow.search.text_hooks import TextHooks
from scaleflow.search.objectives import Objective, ObjectiveError, cosine_to, load_objective
from scaleflow.search.pareto import ParetoObjective

BUILTIN_OBJECTIVES = ("target", "category", "two-category")
TWO_CATEGORY = "two-category"  # the built-in problem with two objectives
TARGET_SETS = ("dev", "test")
N_DEV_TARGETS, N_TEST_TARGETS = 5, 10
TARGET_SPLIT_SEED = 0  # the one split of the targets: never varied, so dev and test never mix
N_TARGETS = N_TEST_TARGETS  # targets of a default search (the test set)
DEFAULT_CATEGORY = "noun.animal"
REAL_LOG_DENSITY_ROWS = 64  # held-out rows whose log-densities give the band real points fall in


@dataclass
class SearchProblem:
    """Everything fixed for a search over a prior (see the module docstring).

    Attributes:
        run: the loaded prior (`training.run.Run`).
        reference, pool: `[M, D]`, `[P, D]` float32 original-space rows.
        reference_texts, pool_texts: their texts, or None.
        judge: the candidate judge.
        objective_name: "target", "category" or the `MODULE:FUNCTION` given.
        targets: `[T, D]` target rows of the `target` objective (else empty), with `target_texts`.
        target_set: which set `targets` is ("dev" or "test"; None for other objectives).
        hooks: the decoder and encoder of candidates (`search.text_hooks`; none by default).
        min_log_density: the least log-density under the prior (original space) a candidate needs to count
            (`--min-log-density`; None: recorded, not required).
    """

    run: object
    reference: Tensor
    pool: Tensor
    reference_texts: Optional[list[str]]
    pool_texts: Optional[list[str]]
    judge: CandidateJudge
    objective_name: str
    make_objective: Callable[[int], Objective]
    targets: Tensor = field(default_factory=lambda: torch.empty(0))
    target_texts: Optional[list[str]] = None
    notes: dict = field(default_factory=dict)
    target_set: Optional[str] = None
    hooks: TextHooks = field(default_factory=TextHooks)  # decoder, encoder, round-trip rule (search.text_hooks)
    min_log_density: Optional[float] = None  # a candidate below this log-density under the prior does not count
    constraints: list = field(default_factory=list)  # outcome constraints (search.constraints), measured after scoring

    @property
    def dim(self) -> int:
        return int(self.reference.shape[1])

    @functools.cached_property
    def median_cosine(self) -> float:
        """How alike two of the prior's training rows typically are (`guidance.median_pairwise_cosine`; computed
        once, ~30 ms: the diversity hinge of every guided batch reads it)."""
        return median_pairwise_cosine(self.reference)

    def objective(self, seed: int) -> Objective:
        """The objective of search seed `seed` (the `target` objective cycles through its targets)."""
        return self.make_objective(seed)

    def target_of_seed(self, seed: int) -> Optional[int]:
        """Which target of `targets` seed `seed` maximizes (None without targets)."""
        return seed % len(self.targets) if len(self.targets) else None

    def log_density(self, x: Tensor) -> Tensor:
        """`[N]` the prior's log-density of original-space points `x: [N, D]` (`search.log_density`), as the
        search records it: Hutchinson with 8 probes over 8 rk4 steps, x1 runs at their smoothed endpoint
        (measured on the default prior: within ~3 nats of the exact divergence at 1/20 of its time). A
        reference prior with a closed-form density (Gaussian, GMM, KDE) gives it exactly instead."""
        return prior_log_density(self.run, x, steps=8, divergence="hutchinson", n_probes=8, endpoint="smoothed")

    def counts_by_rules(self, counts: Tensor, log_density: Optional[Tensor],
                        roundtrip: Optional[Tensor]) -> Tensor:
        """`[N]` bool: the judge's `counts` less the candidates the problem's other rules known before scoring
        reject: the log-density minimum (given `log_density: [N]`) and the round trip's minimum (given
        `roundtrip: [N]`), each where set. The one place these rules are applied (records and filters alike)."""
        counts = counts.clone()
        if self.min_log_density is not None and log_density is not None:
            counts &= log_density >= self.min_log_density
        if self.hooks.min_roundtrip is not None and roundtrip is not None:
            counts &= roundtrip >= self.hooks.min_roundtrip
        return counts

    def free_counts(self, x: Tensor) -> Tensor:
        """`[N]` bool: whether candidates `x: [N, D]` (original space) count by every rule known before scoring
        (`counts_by_rules`). The free filters keep these (judging costs no objective evaluation); the
        log-density and a decoding plus encoding per candidate are paid only where those rules are on. Outcome
        constraints are measured with the score, so no filter knows them."""
        log_density = self.log_density(x) if self.min_log_density is not None else None
        roundtrip = None
        if self.hooks.min_roundtrip is not None:
            decoded = self.hooks.decode(x)
            roundtrip = self.hooks.roundtrip(x, decoded) if decoded is not None else None
        return self.counts_by_rules(self.judge(x).counts, log_density, roundtrip)

    def to_normalized(self, x: Tensor) -> Tensor:
        return self.run.standardizer.transform(x)

    def to_original(self, z: Tensor) -> Tensor:
        return self.run.standardizer.inverse_transform(z)


def _target_order(held_out: Tensor, judge: CandidateJudge, n: int, seed: int) -> Tensor:
    """The first `n` eligible held-out rows in a seeded random order (see `choose_targets`)."""
    verdicts = judge(held_out)
    roomy = verdicts.nearest_cosine <= verdicts.nearest_cosine.median()
    candidates = torch.nonzero(verdicts.valid & verdicts.novel & roomy).flatten()
    if len(candidates) < n:
        raise ValueError(f"only {len(candidates)} held-out rows are valid and novel (and no nearer the reference than "
                         f"the median held-out row); need {n} targets ({N_DEV_TARGETS} dev and {N_TEST_TARGETS} test "
                         "for --objective target): train the prior with more held-out rows (--n-val, --n-test)")
    g = torch.Generator().manual_seed(seed)
    return candidates[torch.randperm(len(candidates), generator=g)[:n]]


def choose_targets(held_out: Tensor, judge: CandidateJudge, n: int = N_DEV_TARGETS, seed: int = 0) -> Tensor:
    """Indices `[n]` into `held_out` of target rows: valid themselves (so the optimum, the target, is a
    point that counts), no closer to their nearest reference row than the median held-out row is (so
    the reference does not nearly hold them: there is room to search), drawn at random (`seed`)."""
    return _target_order(held_out, judge, n, seed).sort().values


@dataclass(frozen=True)
class TargetSplit:
    """Disjoint target rows (indices `[n]` into the held-out rows, ascending) for tuning and for reporting."""

    dev: Tensor
    test: Tensor

    def of(self, name: str) -> Tensor:
        if name not in TARGET_SETS:
            raise ValueError(f"target set {name!r}: choose {' or '.join(TARGET_SETS)}")
        return self.dev if name == "dev" else self.test

    @property
    def all(self) -> Tensor:
        return torch.cat([self.dev, self.test]).sort().values


def split_targets(held_out: Tensor, judge: CandidateJudge, n_dev: int = N_DEV_TARGETS, n_test: int = N_TEST_TARGETS,
                  seed: int = TARGET_SPLIT_SEED) -> TargetSplit:
    """The fixed split of eligible held-out rows (`choose_targets`' rule) into `dev` (the first `n_dev` of
    one seeded random order: the 5 targets `choose_targets` gives, on which the guided defaults were chosen)
    and `test` (the next `n_test`). Deterministic in (`held_out`, `judge`, `seed`); disjoint by construction."""
    order = _target_order(held_out, judge, n_dev + n_test, seed)
    return TargetSplit(order[:n_dev].sort().values, order[n_dev:].sort().values)


def build_problem(run, objective: str | list[str] = "target", category: str = DEFAULT_CATEGORY,
                  timeout: Optional[float] = None, targets: str = "test",
                  hooks: Optional[TextHooks] = None, min_log_density: Optional[float] = None,
                  constraints: Optional[list] = None, ref_point: Optional[list[float]] = None) -> SearchProblem:
    """The search problem over `run` (a loaded `Run`) for `objective`: "target", "category", "external" (scores
    told from outside, `search.ask_tell`) or a `MODULE:FUNCTION` / `file.py:FUNCTION` spec (see
    `objectives.load_objective`), or several (a list of 2 to 4 specs, or "two-category": a Pareto search,
    `search.pareto`; `ref_point` fixes the reference point of a list). `targets` picks the
    target set of the `target` objective (and the pair set of `two-category`): "test" (report on it) or "dev"
    (tune on it). Its `notes` hold
    what the records are read against: the real held-out rows' log-density quantiles, and the objective's
    facts (for `target`: the set, its rows, the rows of both sets)."""
    if targets not in TARGET_SETS:
        raise ValueError(f"target set {targets!r}: choose {' or '.join(TARGET_SETS)}")
    objectives = [objective] if isinstance(objective, str) else list(objective)
    if len(objectives) > 1:
        problem = _pareto_problem(run, objectives, timeout, ref_point)
    else:
        problem = _build_problem(run, objectives[0], category, timeout, targets)
    if hooks is not None:
        problem.hooks = hooks
    problem.min_log_density = min_log_density
    problem.constraints = list(constraints or [])
    sample = problem.pool[torch.randperm(len(problem.pool), generator=torch.Generator().manual_seed(0))[:REAL_LOG_DENSITY_ROWS]]
    quantiles = torch.quantile(problem.log_density(sample), torch.tensor([0.05, 0.5, 0.95], dtype=torch.float64))
    problem.notes["real_log_density_q05_q50_q95"] = [round(float(q), 2) for q in quantiles]
    return problem


def _rows(run) -> tuple[Tensor, Tensor, Optional[list[str]], Optional[list[str]], CandidateJudge]:
    """The reference rows and held-out rows of `run` (original space), their texts, and the judge."""
    data = run.data()
    standardizer = data.standardizer
    reference = standardizer.inverse_transform(data.train).float()
    held_out = standardizer.inverse_transform(torch.cat([data.val, data.test])).float()
    texts = data.texts_of("train")
    held_texts = None if data.texts is None else data.texts_of("val") + data.texts_of("test")
    return reference, held_out, texts, held_texts, CandidateJudge(reference, held_out)


def _pareto_problem(run, specs: list[str], timeout: Optional[float], ref_point: Optional[list[float]]) -> SearchProblem:
    """A search of several `MODULE:FUNCTION` objectives (each loaded once)."""
    reference, held_out, texts, held_texts, judge = _rows(run)
    functions = [load_objective(spec) for spec in specs]
    objective = ParetoObjective([Objective(fn, spec, timeout) for fn, spec in zip(functions, specs)], ref_point)
    notes = {"objectives": specs, "ref_point": ref_point,
             "ref_point_rule": "fixed (--ref-point)" if ref_point is not None else
             "per seed, each objective's least score over the seed's initial design (recorded as ref_point)"}
    return SearchProblem(run, reference, held_out, texts, held_texts, judge, objective.name, lambda seed: objective,
                         notes=notes)


def _build_problem(run, objective: str, category: str, timeout: Optional[float], target_set: str) -> SearchProblem:
    reference, held_out, texts, held_texts, judge = _rows(run)

    if objective == "target":
        # Targets are chosen by the judge of every held-out row; then every target of both sets leaves the
        # pool and the rows behind the validity threshold (the judge searched with has never seen one).
        split = split_targets(held_out, judge)
        keep = torch.ones(len(held_out), dtype=torch.bool)
        keep[split.all] = False
        judge = judge.with_held_out(held_out[keep])
        chosen = split.of(target_set)
        targets = held_out[chosen]
        target_texts = None if held_texts is None else [held_texts[int(i)] for i in chosen]
        pool, pool_texts = held_out[keep], None if held_texts is None else [t for t, k in zip(held_texts, keep) if k]
        unit_reference = torch.nn.functional.normalize(reference, dim=1)
        best_reference = (torch.nn.functional.normalize(targets, dim=1) @ unit_reference.T).max(1).values
        best_pool = (torch.nn.functional.normalize(targets, dim=1)
                     @ torch.nn.functional.normalize(pool, dim=1).T).max(1).values
        file_rows = [int(i) for i in run.splits.val] + [int(i) for i in run.splits.test]
        notes = {"target_set": target_set,
                 "target_file_rows": [file_rows[int(i)] for i in chosen],
                 "target_sets_file_rows": {name: [file_rows[int(i)] for i in split.of(name)] for name in TARGET_SETS},
                 "target_rule": f"{len(split.dev)} dev and {len(split.test)} test targets, disjoint, drawn once "
                                f"(seed {TARGET_SPLIT_SEED}) from held-out rows that are valid, novel and no nearer "
                                "the reference than the median held-out row; all of them are out of the pool and "
                                "of the validity rows; seed i maximizes the cosine to target i % "
                                f"{len(chosen)} of the {target_set} set",
                 "target_best_reference_cosine": best_reference.tolist(),
                 "target_best_pool_cosine": best_pool.tolist()}

        def make(seed: int) -> Objective:
            i = seed % len(targets)
            return Objective(cosine_to(targets[i]), f"target[{i}]", timeout, optimum=1.0)

        return SearchProblem(run, reference, pool, texts, pool_texts, judge, objective, make, targets,
                             target_texts, notes, target_set)

    if objective == "category":
        from scaleflow.search.category import category_objective  # trains a classifier: only when asked

        make_category, notes = category_objective(run, held_out, category, timeout)
        return SearchProblem(run, reference, held_out, texts, held_texts, judge, f"category:{category}",
                             lambda seed: make_category, notes=notes)

    if objective == TWO_CATEGORY:
        from scaleflow.search.category import two_category_objective  # trains a classifier: only when asked

        make_pair, notes = two_category_objective(run, held_out, target_set, timeout)
        return SearchProblem(run, reference, held_out, texts, held_texts, judge, TWO_CATEGORY, make_pair, notes=notes,
                             target_set=target_set)

    if objective == "external":  # ask/tell: scores come from outside the process (`search.ask_tell`)
        def told(x, texts=None):
            raise ObjectiveError("an external objective is scored by `tell`, not called (use search.ask_tell.Search)")

        return SearchProblem(run, reference, held_out, texts, held_texts, judge, "external",
                             lambda seed: Objective(told, "external", timeout))

    fn = load_objective(objective)
    return SearchProblem(run, reference, held_out, texts, held_texts, judge, objective,
                         lambda seed: Objective(fn, objective, timeout))


__all__ = ["BUILTIN_OBJECTIVES", "TARGET_SETS", "SearchProblem", "TargetSplit", "build_problem", "choose_targets",
           "split_targets", "ObjectiveError"]
