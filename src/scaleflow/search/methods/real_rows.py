"""Baselines that only pick real rows a user already has (the pool): at random, or by a GP (retrieval)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from scaleflow.search.gp import fit_gp, make_acquisition
from scaleflow.search.methods.base import History, Proposal, register, step_generator


def unscored_rows(problem, history: History) -> torch.Tensor:
    """`[k]` pool rows not scored yet by this search."""
    scored = history.scored_pool_rows()
    return torch.tensor([i for i in range(len(problem.pool)) if i not in scored], dtype=torch.long)


def random_rows(problem, history: History, n: int, seed: int, step: int) -> Proposal:
    """`n` unscored pool rows drawn uniformly at random (the initial design of every method)."""
    rows = unscored_rows(problem, history)
    if len(rows) < n:
        raise ValueError(f"the pool has {len(rows)} unscored rows left; {n} were asked for")
    chosen = rows[torch.randperm(len(rows), generator=step_generator(seed, step))[:n]]
    return Proposal(problem.pool[chosen], [int(i) for i in chosen])


@register("random")
@dataclass
class RandomRows:
    """Random real rows from the pool."""

    name: str = "random"

    def propose(self, problem, history: History, n: int, seed: int, step: int) -> Proposal:
        return random_rows(problem, history, n, seed, step)


@register("retrieval")
@dataclass
class Retrieval:
    """BO over the pool of real rows: the GP (fitted to everything scored) picks the `n` unscored rows with
    the highest acquisition (each judged alone, q = 1; the top n of one ranking make the batch)."""

    acquisition: str = "logei"
    name: str = "retrieval"

    def propose(self, problem, history: History, n: int, seed: int, step: int) -> Proposal:
        rows = unscored_rows(problem, history)
        surrogate = fit_gp(history.x, history.y)
        acquisition = make_acquisition(self.acquisition, surrogate)
        with torch.no_grad():
            values = torch.cat([acquisition(surrogate.inputs(chunk).unsqueeze(1))
                                for chunk in problem.pool[rows].split(1024)])
        chosen = rows[values.topk(min(n, len(rows))).indices]
        return Proposal(problem.pool[chosen], [int(i) for i in chosen],
                        {"best_acquisition": float(values.max())})
