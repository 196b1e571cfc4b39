"""What every search method sees and returns, and the registry of methods."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Protocol

import torch
from torch import Tensor

NOISE_SEED_STRIDE = 100_003  # noise seeds of (search seed, step): distinct for < 100,003 steps


@dataclass
class History:
    """The candidates one search has scored so far, in order.

    Attributes:
        x: `[m, D]` float32 original-space embeddings.
        y: `[m]` float64 scores.
        counts: `[m]` bool, valid and novel.
        pool_rows: per candidate, its row in the problem's pool, or None (a generated point).
        steps: per candidate, the step (batch) that proposed it; 0 is the initial design.
        methods: per candidate, the method that proposed it ("initial" for the initial design).
        constraints: `[m, C]` float64 measured values of the problem's C outcome constraints (C = 0: none).
        objectives: `[m, M]` float64 score vectors of a search with M >= 2 objectives (`search.pareto`; M = 0:
            one objective, whose scores are `y`); then `y` is their worst-objective score.
    """

    x: Tensor
    y: Tensor
    counts: Tensor
    pool_rows: list[Optional[int]] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    methods: list[str] = field(default_factory=list)
    constraints: Optional[Tensor] = None
    objectives: Optional[Tensor] = None

    @classmethod
    def empty(cls, dim: int) -> "History":
        return cls(torch.empty(0, dim), torch.empty(0, dtype=torch.float64), torch.empty(0, dtype=torch.bool))

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def extend(self, x: Tensor, y: Tensor, counts: Tensor, pool_rows: list[Optional[int]], step: int,
               method: str, constraints: Optional[Tensor] = None, objectives: Optional[Tensor] = None) -> None:
        self.constraints = _columns(self.constraints, constraints, len(x), len(self))
        self.objectives = _columns(self.objectives, objectives, len(x), len(self))
        self.x = torch.cat([self.x, x.detach().float().cpu()])
        self.y = torch.cat([self.y, y.detach().double().cpu()])
        self.counts = torch.cat([self.counts, counts.detach().bool().cpu()])
        self.pool_rows += list(pool_rows)
        self.steps += [step] * len(pool_rows)
        self.methods += [method] * len(pool_rows)

    def scored_pool_rows(self) -> set[int]:
        return {row for row in self.pool_rows if row is not None}

    @property
    def n_steps(self) -> int:
        """Steps recorded so far (the initial design is step 0)."""
        return (max(self.steps) + 1) if self.steps else 0


def _columns(kept: Optional[Tensor], new: Optional[Tensor], n: int, before: int) -> Tensor:
    """`kept: [m, K]` with the batch's `new: [n, K]` appended (None: K = 0); the first batch sets K."""
    values = torch.zeros(n, 0, dtype=torch.float64) if new is None else new.detach().double().cpu()
    if kept is None or before == 0:
        return values
    return torch.cat([kept, values])


@dataclass
class Proposal:
    """A method's next candidates.

    Attributes:
        x: `[n, D]` original-space embeddings.
        pool_rows: per candidate its pool row, or None.
        info: per-batch facts worth recording (e.g. the guidance term's size), JSON-ready.
    """

    x: Tensor
    pool_rows: list[Optional[int]]
    info: dict = field(default_factory=dict)


class SearchMethod(Protocol):
    """A method proposes `n` candidates from what was scored so far. It must be a pure function of
    (problem, history, n, seed, step): a resumed search replays nothing and proposes what an
    uninterrupted one would have. Methods with inner state (CMA-ES, TuRBO) rebuild it from the history."""

    name: str

    def propose(self, problem, history: History, n: int, seed: int, step: int) -> Proposal: ...


def step_generator(seed: int, step: int, salt: int = 0) -> torch.Generator:
    """A CPU generator for (search seed, step): every draw of a step is reproducible on resume."""
    return torch.Generator().manual_seed((seed * NOISE_SEED_STRIDE + step) * 7 + salt)


def noise_seed(seed: int, step: int) -> int:
    """The `sampling.sample_noise` seed of (search seed, step), < 2**31."""
    return (seed * NOISE_SEED_STRIDE + step) % (2 ** 31)


METHODS: dict[str, Callable[..., SearchMethod]] = {}


def register(name: str) -> Callable:
    def add(factory: Callable[..., SearchMethod]) -> Callable[..., SearchMethod]:
        METHODS[name] = factory
        return factory
    return add
