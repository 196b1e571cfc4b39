"""Validity: does a generated embedding land where real embeddings do, judged by cosine similarity?

A sample is *valid* when its cosine similarity to its nearest reference row is at least what 95% of
real rows reach: the threshold is the 5th percentile of the real draw's own nearest-reference cosines.
Real data therefore scores ~0.95 by construction, and a generator that drifts off the data (a shift,
a collapse into empty directions) scores less. Guided search uses the per-sample flags to keep its
candidates on the data; `evaluate` reports the share, next to the real draw's.

Use it in the space users compare embeddings in (the original space, not the standardized one the
network samples in), and with a real draw that does not overlap the reference (training rows against
test rows), or the real rows find themselves at cosine 1.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from scaleflow.evaluation.distribution import DEFAULT_CHUNK, ArrayLike
from scaleflow.evaluation.diversity import nearest_cosine_similarity

VALIDITY_QUANTILE = 0.05  # share of real rows that fall below the threshold


@dataclass
class ValidityResult:
    """Validity of N samples against a reference, with a real draw of K rows as the floor.

    Attributes:
        threshold: the `quantile` of the real draw's nearest-reference cosines.
        quantile: as passed.
        cosines: `[N]` nearest-reference cosine of each sample.
        real_cosines: `[K]` nearest-reference cosine of each real row.
    """

    threshold: float
    quantile: float
    cosines: torch.Tensor
    real_cosines: torch.Tensor

    @property
    def valid(self) -> torch.Tensor:
        """`[N]` bool: which samples are valid."""
        return self.cosines >= self.threshold

    @property
    def real_valid(self) -> torch.Tensor:
        """`[K]` bool: which real rows are valid (the floor's terms)."""
        return self.real_cosines >= self.threshold

    @property
    def value(self) -> float:
        """Share of samples with nearest-reference cosine >= threshold."""
        return float(self.valid.double().mean())

    @property
    def floor(self) -> float:
        """The same share for the real draw (~1 - quantile by construction)."""
        return float(self.real_valid.double().mean())

    @property
    def nearest_cosine(self) -> float:
        """Mean nearest-reference cosine of the samples."""
        return float(self.cosines.mean())

    @property
    def floor_nearest_cosine(self) -> float:
        """The same mean for the real draw."""
        return float(self.real_cosines.mean())


def validity_threshold(reference: ArrayLike, real_draw: ArrayLike, quantile: float = VALIDITY_QUANTILE,
                       chunk_size: int = DEFAULT_CHUNK) -> tuple[float, torch.Tensor]:
    """The cosine threshold from `real_draw: [K, D]` against `reference: [M, D]`, and the `[K]` cosines it
    came from. Compute it once to judge many batches of samples against one reference (guided search).

    The threshold is `torch.quantile(real_cosines, quantile)` (linear interpolation), in float64.
    """
    if not 0.0 < quantile < 1.0:
        raise ValueError(f"quantile must be in (0, 1); got {quantile}")
    real_cosines = nearest_cosine_similarity(real_draw, reference, chunk_size).to(torch.float64)
    return float(torch.quantile(real_cosines, quantile)), real_cosines


def validity(samples: ArrayLike, reference: ArrayLike, real_draw: ArrayLike, quantile: float = VALIDITY_QUANTILE,
             chunk_size: int = DEFAULT_CHUNK) -> ValidityResult:
    """Validity of `samples: [N, D]` against `reference: [M, D]`, thresholded by `real_draw: [K, D]`.

    Args:
        samples: embeddings to judge (generated, or candidates of a search).
        reference: real embeddings the samples should resemble (the test split).
        real_draw: other real embeddings of the same distribution (training rows), K >= 1; they set the
            threshold and score the floor.
        quantile: share of the real draw allowed below the threshold (0.05: real data scores ~0.95).
        chunk_size: rows per block of the cosine search; memory is O(chunk_size^2).

    Returns:
        `ValidityResult` (shares, threshold, mean nearest cosines, and per-row cosines).
    """
    threshold, real_cosines = validity_threshold(reference, real_draw, quantile, chunk_size)
    cosines = nearest_cosine_similarity(samples, reference, chunk_size).to(torch.float64)
    return ValidityResult(threshold, float(quantile), cosines, real_cosines)
