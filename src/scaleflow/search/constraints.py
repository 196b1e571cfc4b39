"""Outcome constraints: measured functions of a candidate that must stay on one side of a bound for it to count.

`--constraint MODULE:FUNCTION>=VALUE` (or `<=`; repeatable): `f(x: [N, D], texts=None) -> [N]` is measured
for every scored candidate, after the objective, with the objective's checks (shape, finite values, the
timeout). A candidate that violates any constraint does not count (as an invalid one does not); every
value is recorded (`constraint_values`, `constraints_ok`). `guided` models each constraint with a GP of
its own and steers by the acquisition plus the log-probability that every constraint holds
(`FeasibilityGuide`: with `logei` this is BoTorch's constrained log-EI; with `ucb` the same term added to
the UCB in units of the scores' spread). The other methods only count by them.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from scaleflow.search.objectives import Objective, load_objective

SPEC = re.compile(r"^\s*(?P<function>.+?)\s*(?P<sense>>=|<=)\s*(?P<bound>[-+0-9.eE]+|inf|-inf)\s*$")


@dataclass
class Constraint:
    """`measure(x, texts) -> [N]` must be `>=` or `<=` `bound`; `name` is the spec's function part."""

    measure: Objective
    sense: str
    bound: float

    @property
    def name(self) -> str:
        return self.measure.name

    def holds(self, values: Tensor) -> Tensor:
        """`[N]` bool: whether each measured value meets the bound."""
        return values >= self.bound if self.sense == ">=" else values <= self.bound

    def describe(self) -> str:
        return f"{self.name}{self.sense}{self.bound:g}"


def parse_constraint(text: str, timeout: Optional[float] = None) -> Constraint:
    """`"my_lab.py:toxicity<=0.2"` -> a `Constraint` (the function imported).

    Raises:
        ValueError: not FUNCTION>=VALUE or FUNCTION<=VALUE (one line naming --constraint).
        ObjectiveError: the function cannot be imported.
    """
    match = SPEC.match(text)
    if match is None:
        raise ValueError(f"--constraint {text!r}: expected MODULE:FUNCTION>=VALUE or MODULE:FUNCTION<=VALUE")
    try:
        bound = float(match["bound"])
    except ValueError:
        raise ValueError(f"--constraint {text!r}: {match['bound']!r} is not a number") from None
    spec = match["function"]
    return Constraint(Objective(load_objective(spec, option="--constraint"), spec, timeout), match["sense"], bound)


TOLD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")


def parse_told_constraint(text: str) -> Constraint:
    """`"toxicity<=0.2"` -> a `Constraint` whose values are measured outside the process and told with the scores
    (ask/tell: a column `toxicity` of the scores file). Its measure cannot be called.

    Raises:
        ValueError: not NAME>=VALUE or NAME<=VALUE with NAME a plain column name (one line naming --constraint).
    """
    match = SPEC.match(text)
    if match is None or not TOLD_NAME.match(match["function"]) or match["function"] in ("id", "score"):
        raise ValueError(f"--constraint {text!r}: expected NAME>=VALUE or NAME<=VALUE, NAME a column of the scores "
                         "file other than id and score (letters, digits, _ . -)")
    try:
        bound = float(match["bound"])
    except ValueError:
        raise ValueError(f"--constraint {text!r}: {match['bound']!r} is not a number") from None
    name = match["function"]

    def told(x: Tensor) -> Tensor:
        raise RuntimeError(f"constraint {name} is measured outside the process: tell its values with the scores")

    return Constraint(Objective(told, name), match["sense"], bound)


def all_hold(constraints: list[Constraint], values: Tensor) -> Tensor:
    """`[N]` bool: whether every constraint holds for its measured values `values: [N, C]`."""
    if not constraints:
        return torch.ones(len(values), dtype=torch.bool)
    return torch.stack([c.holds(values[:, j]) for j, c in enumerate(constraints)], dim=1).all(1)


def measure_constraints(constraints: list[Constraint], x: Tensor, texts: Optional[list]) -> tuple[Tensor, Tensor]:
    """`[N, C]` float64 values of every constraint at `x: [N, D]`, and `[N]` bool whether all hold."""
    if not constraints:
        return torch.zeros(len(x), 0, dtype=torch.float64), torch.ones(len(x), dtype=torch.bool)
    values = torch.stack([c.measure(x, texts) for c in constraints], dim=1)
    return values, all_hold(constraints, values)


class FeasibilityGuide:
    """A guide plus the log-probability, under one GP per constraint, that every constraint holds:
    `value(x) + sum_j log Phi(+-(mu_j(x) - bound_j) / sigma_j(x))` (`+` for `>=`, `-` for `<=`)."""

    def __init__(self, guide, surrogates: list, constraints: list[Constraint]) -> None:
        self.guide, self.surrogates, self.constraints = guide, surrogates, constraints

    def __call__(self, x: Tensor) -> tuple[Tensor, Optional[Tensor]]:
        value, sigma = self.guide(x)
        return value + log_feasibility(self.surrogates, self.constraints, x).to(value.dtype), sigma


def log_feasibility(surrogates: list, constraints: list[Constraint], x: Tensor) -> Tensor:
    """`[B]` sum over constraints of log P(constraint j holds at x), from each constraint's GP (differentiable)."""
    total = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
    for surrogate, constraint in zip(surrogates, constraints):
        posterior = surrogate.model.posterior(surrogate.inputs(x))
        mean = posterior.mean.reshape(-1)
        std = posterior.variance.reshape(-1).clamp_min(1e-12).sqrt()
        margin = (mean - constraint.bound) if constraint.sense == ">=" else (constraint.bound - mean)
        total = total + torch.special.log_ndtr(margin / std)  # stable far into the infeasible tail
    return total
