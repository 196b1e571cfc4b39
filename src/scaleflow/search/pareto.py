"""Several objectives: a candidate's vector of scores, the one score every method can climb, and hypervolume.

With 2 to 4 objectives (`--objective A --objective B`) each candidate gets `scores: [M]`, one per objective,
each called with the `Objective` checks (a failure names its objective), and one scalar `score`: the
Chebyshev (worst-objective) scalarization `min_m (y_m - ref_m)` above the problem's reference point. Every
single-objective method climbs that score unchanged: a ParEGO-style baseline with fixed equal weights, whose
best candidate is the one best at all objectives at once. `guided` and `prior-filtered` can climb the
hypervolume instead (qLogNEHVI, `search.pareto_gp`). A search's result is the hypervolume of its counted
(valid and novel) candidates' score vectors against the reference point (`hypervolume`).

The reference point is fixed (a built-in problem's, probabilities: 0; or `--ref-point`) or else, per
objective, the least score of the seed's initial design (step 0: the same real rows for every method of a
seed). Either way it is a pure function of what was recorded: a resumed search uses the same one, and every
record holds it (`ref_point`) for the report.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor

from scaleflow.search.objectives import Objective

MAX_OBJECTIVES = 4  # qLogNEHVI's box decompositions grow fast with the number of objectives


class ParetoObjective:
    """Objectives `f_m(x: [N, D], texts=None) -> [N]` scored together: `x -> [N, M]`.

    Args:
        objectives: the M objectives (each an `Objective`, with its own checks and name).
        ref_point: a fixed reference point `[M]` (None: the initial design's least score per objective).
        name: how records call the vector (default: the objectives' names joined by " & ").
    """

    def __init__(self, objectives: Sequence[Objective], ref_point: Optional[Sequence[float]] = None,
                 name: Optional[str] = None) -> None:
        if not 2 <= len(objectives) <= MAX_OBJECTIVES:
            raise ValueError(f"a Pareto search takes 2 to {MAX_OBJECTIVES} objectives; got {len(objectives)}")
        if ref_point is not None and len(ref_point) != len(objectives):
            raise ValueError(f"--ref-point has {len(ref_point)} values for {len(objectives)} objectives")
        self.objectives = list(objectives)
        self.fixed_ref = None if ref_point is None else torch.tensor([float(v) for v in ref_point], dtype=torch.float64)
        self.name = name or " & ".join(o.name for o in objectives)

    @property
    def n(self) -> int:
        return len(self.objectives)

    def __call__(self, x: Tensor, texts: Optional[list] = None) -> Tensor:
        """`[N, M]` float64 scores of `x: [N, D]`; `ObjectiveError` (one line naming the objective) on a failure."""
        return torch.stack([objective(x, texts) for objective in self.objectives], dim=1)

    def reference_point(self, initial: Tensor) -> Tensor:
        """`[M]` float64: the fixed point, else the least score per objective of the initial design
        `initial: [n, M]`."""
        if self.fixed_ref is not None:
            return self.fixed_ref.clone()
        return initial.double().min(0).values


def initial_scores(history, batch: Optional[Tensor] = None) -> Tensor:
    """`[n, M]` score vectors of the initial design: the history's step-0 rows, or `batch` when the history is
    empty (the batch being scored is the initial design)."""
    if len(history) == 0:
        if batch is None:
            raise ValueError("no initial design scored yet")
        return batch
    initial = torch.tensor([s == 0 for s in history.steps])
    return history.objectives[initial]


def chebyshev(scores: Tensor, ref_point: Tensor) -> Tensor:
    """`[N]` worst objective above the reference point, `min_m (scores[:, m] - ref_point[m])`, of `scores: [N, M]`:
    positive only where a candidate beats the reference at every objective."""
    return (scores.double() - ref_point.double()).min(dim=-1).values


def hypervolume(scores: Tensor, ref_point: Tensor) -> float:
    """The hypervolume (maximization) that points `scores: [N, M]` dominate above `ref_point: [M]`: the measure
    of the region between the reference point and the points' Pareto front (BoTorch's `Hypervolume` on the
    non-dominated points; points not above the reference at every objective add nothing; 0 for none)."""
    from botorch.utils.multi_objective.hypervolume import Hypervolume
    from botorch.utils.multi_objective.pareto import is_non_dominated

    ref = ref_point.double()
    points = scores.double().reshape(-1, ref.shape[0])
    points = points[(points > ref).all(dim=-1)]
    if len(points) == 0:
        return 0.0
    return float(Hypervolume(ref).compute(points[is_non_dominated(points)]))


def non_dominated(scores: Tensor) -> Tensor:
    """`[N]` bool: the points of `scores: [N, M]` that no other point dominates (maximization; BoTorch)."""
    from botorch.utils.multi_objective.pareto import is_non_dominated

    if len(scores) == 0:
        return torch.zeros(0, dtype=torch.bool)
    return is_non_dominated(scores.double(), deduplicate=False)


def parse_ref_point(text: str, n: int) -> list[float]:
    """`"0.1,0.2"` -> `[0.1, 0.2]` for `n` objectives.

    Raises:
        ValueError: not `n` comma-separated finite numbers (one line naming --ref-point).
    """
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise ValueError(f"--ref-point {text!r}: expected {n} comma-separated numbers, one per --objective") from None
    if len(values) != n or not all(abs(v) < float("inf") for v in values):
        raise ValueError(f"--ref-point {text!r}: expected {n} finite comma-separated numbers, one per --objective")
    return values
