"""The rule every search method is judged by: a candidate counts only if it is valid and novel.

- **valid**: its cosine to the nearest reference row (the prior's training rows) is at least the 5th
  percentile of real held-out rows' own nearest-reference cosine (`evaluation.validity`): as close to
  the data as 95% of real sentences are.
- **novel**: it is not a near-copy of a reference row by the memorization rule
  (`evaluation.memorization`): its distance to the nearest reference row is at least half the median
  spacing of the reference rows.

A method's score is the best objective value among its valid novel candidates within the budget.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from scaleflow.evaluation.memorization import knn_squared_distances, memorization_rate
from scaleflow.evaluation.validity import VALIDITY_QUANTILE, validity_threshold


@dataclass
class Verdicts:
    """Per-candidate judgements of `[N]` candidates.

    Attributes:
        valid, novel: `[N]` bool.
        nearest_cosine: `[N]` cosine to the nearest reference row.
        nearest_distance: `[N]` Euclidean distance to the nearest reference row.
        nearest_rows: `[N, k]` indices of the k most cosine-similar reference rows.
        nearest_cosines: `[N, k]` their cosines.
    """

    valid: Tensor
    novel: Tensor
    nearest_cosine: Tensor
    nearest_distance: Tensor
    nearest_rows: Tensor
    nearest_cosines: Tensor

    @property
    def counts(self) -> Tensor:
        """`[N]` bool: valid and novel."""
        return self.valid & self.novel


class CandidateJudge:
    """Judges candidates (original space) against the reference rows, with thresholds fixed up front.

    Args:
        reference: `[M, D]` the prior's training rows (original space).
        held_out: `[K, D]` real rows not in `reference` (they set the validity threshold).
        quantile: share of real rows allowed below the validity threshold.
        neighbors: how many nearest reference rows to report per candidate.
    """

    def __init__(self, reference: Tensor, held_out: Tensor, quantile: float = VALIDITY_QUANTILE,
                 neighbors: int = 3) -> None:
        self.reference = reference.detach().to(torch.float32)
        self.unit_reference = torch.nn.functional.normalize(self.reference, dim=1)
        self.validity_threshold, real_cosines = validity_threshold(self.reference, held_out, quantile)
        self.real_validity = float((real_cosines >= self.validity_threshold).double().mean())
        self.novelty_threshold = float(memorization_rate(self.reference[:2], self.reference)["threshold"])
        self.neighbors = neighbors
        self._center = self.reference.mean(0)

    def __call__(self, x: Tensor) -> Verdicts:
        """Verdicts on candidates `x: [N, D]` (original space)."""
        x = x.detach().to(torch.float32)
        cosines = torch.nn.functional.normalize(x, dim=1) @ self.unit_reference.T
        top, rows = cosines.topk(min(self.neighbors, cosines.shape[1]), dim=1)
        # Exact distance to the nearest reference row (by Euclidean distance, as the memorization rule).
        q, r = x - self._center, self.reference - self._center
        _, nearest = knn_squared_distances(q, r, 1, return_indices=True)
        distance = (q - r[nearest[:, 0]]).norm(dim=1)
        return Verdicts(
            valid=top[:, 0].double() >= self.validity_threshold,
            novel=distance >= self.novelty_threshold,
            nearest_cosine=top[:, 0], nearest_distance=distance, nearest_rows=rows, nearest_cosines=top,
        )

    def describe(self) -> dict:
        """The thresholds, for the search's records."""
        return {"validity_threshold": self.validity_threshold, "real_validity": self.real_validity,
                "novelty_threshold": self.novelty_threshold, "reference_rows": int(self.reference.shape[0])}


def best_counted(scores: Tensor, counts: Tensor) -> Optional[float]:
    """The best score among candidates that count (`counts: [N]` bool), or None when none does."""
    if not bool(counts.any()):
        return None
    return float(scores[counts].max())
