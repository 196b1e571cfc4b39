"""The rule every search method is judged by: a candidate counts only if it is valid and novel.

- **valid**: its cosine to the nearest reference row (the prior's training rows) is at least the 5th
  percentile of real held-out rows' own nearest-reference cosine (`evaluation.validity`): as close to
  the data as 95% of real sentences are.
- **novel**: it is not a near-copy of a reference row, in either geometry the rules use: its distance to
  the nearest reference row is at least half the median spacing of the reference rows (the memorization
  rule, `evaluation.memorization`), and its angle to the most cosine-similar reference row is at least
  half the median angular spacing of the reference rows (the same rule with angles for distances).
  Validity looks only at directions, so without the angle a rescaled copy of a training row (3x the
  row: cosine 1, far away) was valid *and* novel; now it is not novel. On the built-in data (10,000
  training rows, 2,000 held-out) the angle threshold is cosine 0.896 (half of a median spacing of 52.8
  degrees); 99.2% of held-out rows are novel under both rules against 99.3% under distance alone
  (the rows are unit-norm, so both rules flag nearly the same near-duplicate glosses).

A method's score is the best objective value among its valid novel candidates within the budget.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from scaleflow.evaluation.distribution import DEFAULT_CHUNK, chunks
from scaleflow.evaluation.memorization import knn_squared_distances, memorization_rate
from scaleflow.evaluation.validity import VALIDITY_QUANTILE, validity_threshold

NOVELTY_RATIO = 0.5  # of the median spacing, by distance and by angle (the memorization rule's ratio)
SPACING_ROWS = 10_000  # reference rows whose spacing sets the thresholds (a seeded subset above it, as memorization)
JUDGE_VERSION = 2  # 2: novelty by distance and by angle; search.json records it so old folders are refused


@dataclass
class Verdicts:
    """Per-candidate judgements of `[N]` candidates.

    Attributes:
        valid, novel: `[N]` bool.
        nearest_cosine: `[N]` cosine to the nearest reference row.
        nearest_distance: `[N]` Euclidean distance to the nearest reference row.
        nearest_rows: `[N, k]` indices of the k most cosine-similar reference rows.
        nearest_cosines: `[N, k]` their cosines.
        nearest_angle: `[N]` angle (radians) to the most cosine-similar reference row, in float64.
    """

    valid: Tensor
    novel: Tensor
    nearest_cosine: Tensor
    nearest_distance: Tensor
    nearest_rows: Tensor
    nearest_cosines: Tensor
    nearest_angle: Optional[Tensor] = None

    @property
    def counts(self) -> Tensor:
        """`[N]` bool: valid and novel."""
        return self.valid & self.novel


def angle_between(x: Tensor, y: Tensor) -> Tensor:
    """`[N]` angles (radians, float64) between rows of `x: [N, D]` and `y: [N, D]`: `2 atan2(|u - v|, |u + v|)`
    of the unit rows, exact near 0 where `acos` of a cosine near 1 loses every digit."""
    u = torch.nn.functional.normalize(x.double(), dim=1)
    v = torch.nn.functional.normalize(y.double(), dim=1)
    return 2 * torch.atan2((u - v).norm(dim=1), (u + v).norm(dim=1))


def median_angular_spacing(reference: Tensor, max_rows: int = SPACING_ROWS, seed: int = 0,
                           chunk_size: int = DEFAULT_CHUNK) -> float:
    """The median over reference rows of the angle (radians) to their most cosine-similar *other* row
    (`torch.median`: the lower middle value); above `max_rows` rows, over a seeded subset of them, each
    searched against all rows (as `memorization_rate` does for distances)."""
    unit = torch.nn.functional.normalize(reference.detach().float(), dim=1)
    ids = torch.arange(len(unit))
    if len(unit) > max_rows:
        ids = torch.randperm(len(unit), generator=torch.Generator().manual_seed(seed))[:max_rows]
    nearest = torch.empty(len(ids), dtype=torch.long)
    for i in chunks(len(ids), chunk_size):
        cosines = unit[ids[i]] @ unit.T
        cosines[torch.arange(cosines.shape[0]), ids[i]] = -2.0  # not its own neighbour (an exact duplicate is)
        nearest[i] = cosines.argmax(1)
    return float(angle_between(reference[ids], reference[nearest]).median())


class CandidateJudge:
    """Judges candidates (original space) against the reference rows, with thresholds fixed up front.

    Args:
        reference: `[M, D]` the prior's training rows (original space).
        held_out: `[K, D]` real rows not in `reference` (they set the validity threshold).
        quantile: share of real rows allowed below the validity threshold.
        neighbors: how many nearest reference rows to report per candidate.
    """

    def __init__(self, reference: Tensor, held_out: Tensor, quantile: float = VALIDITY_QUANTILE,
                 neighbors: int = 3, _novelty: Optional[tuple[float, float]] = None) -> None:
        self.reference = reference.detach().to(torch.float32)
        self.unit_reference = torch.nn.functional.normalize(self.reference, dim=1)
        self.quantile = quantile
        self.validity_threshold, real_cosines = validity_threshold(self.reference, held_out, quantile)
        self.real_validity = float((real_cosines >= self.validity_threshold).double().mean())
        self.held_out_rows = int(held_out.shape[0])
        if _novelty is None:
            distance = float(memorization_rate(self.reference[:2], self.reference, ratio=NOVELTY_RATIO)["threshold"])
            _novelty = distance, NOVELTY_RATIO * median_angular_spacing(self.reference)
        self.novelty_threshold, self.novelty_angle = _novelty
        self.novelty_cosine = math.cos(self.novelty_angle)
        self.neighbors = neighbors
        self._center = self.reference.mean(0)

    def with_held_out(self, held_out: Tensor) -> "CandidateJudge":
        """The same judge with its validity threshold set by other real rows (`held_out: [K, D]`); the
        novelty thresholds, which depend on the reference alone, are reused rather than recomputed."""
        return CandidateJudge(self.reference, held_out, self.quantile, self.neighbors,
                              _novelty=(self.novelty_threshold, self.novelty_angle))

    def __call__(self, x: Tensor) -> Verdicts:
        """Verdicts on candidates `x: [N, D]` (original space)."""
        x = x.detach().to(torch.float32)
        cosines = torch.nn.functional.normalize(x, dim=1) @ self.unit_reference.T
        top, rows = cosines.topk(min(self.neighbors, cosines.shape[1]), dim=1)
        # Exact distance to the nearest reference row (by Euclidean distance, as the memorization rule).
        q, r = x - self._center, self.reference - self._center
        _, nearest = knn_squared_distances(q, r, 1, return_indices=True)
        distance = (q - r[nearest[:, 0]]).norm(dim=1)
        angle = angle_between(x, self.reference[rows[:, 0]])
        return Verdicts(
            valid=top[:, 0].double() >= self.validity_threshold,
            novel=(distance >= self.novelty_threshold) & (angle >= self.novelty_angle),
            nearest_cosine=top[:, 0], nearest_distance=distance, nearest_rows=rows, nearest_cosines=top,
            nearest_angle=angle,
        )

    def describe(self) -> dict:
        """The thresholds, for the search's records."""
        return {"validity_threshold": self.validity_threshold, "real_validity": self.real_validity,
                "novelty_threshold": self.novelty_threshold, "novelty_angle": self.novelty_angle,
                "novelty_cosine": self.novelty_cosine, "reference_rows": int(self.reference.shape[0]),
                "validity_rows": self.held_out_rows, "judge_version": JUDGE_VERSION}


def best_counted(scores: Tensor, counts: Tensor) -> Optional[float]:
    """The best score among candidates that count (`counts: [N]` bool), or None when none does."""
    if not bool(counts.any()):
        return None
    return float(scores[counts].max())
