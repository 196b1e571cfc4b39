"""Precision, recall, density and coverage of generated samples (Naeem et al., 2020).

"Reliable Fidelity and Diversity Metrics for Generative Models", ICML 2020. Each real
point gets a ball whose radius is the distance to its k-th nearest other real point
(likewise for fake points, used by recall only). Then, with M fake and N real points:

    precision = share of fake points inside at least one real ball        (fidelity)
    recall    = share of real points inside at least one fake ball        (diversity)
    density   = 1/(k M) * sum over fake of the number of real balls containing it
    coverage  = share of real points whose ball contains at least one fake point

"Inside" is strict (distance < radius), as in the authors' `prdc` package, which this
implementation matches (tests/evaluation); it is torch-based and blockwise, so memory is
O(chunk^2) rather than three dense N x M matrices. Density is not capped at 1: it exceeds
1 when fakes crowd into dense real regions. Identical sets give 1 for all four.
"""
from __future__ import annotations

import torch

from scaleflow.evaluation.distribution import DEFAULT_CHUNK, ArrayLike, as_matrix_pair, chunks, squared_distances
from scaleflow.evaluation.memorization import knn_squared_distances


def _ball_counts(
    real: ArrayLike, fake: ArrayLike, k: int, chunk_size: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-point ball memberships: `[M]` number of real balls holding each fake (int64),
    `[N]` real ball holds some fake (coverage), `[N]` real inside some fake ball (recall)."""
    r, f = as_matrix_pair(real, fake, ("real", "fake"))
    n, m = r.shape[0], f.shape[0]
    if k < 1 or n <= k or m <= k:
        raise ValueError(f"need 1 <= k < number of rows in each set; got k={k}, N={n} real, M={m} fake")
    # One shared center: distances unchanged, less cancellation in the matmul form.
    center = r.mean(0)
    r, f = r - center, f - center

    # Squared radii throughout: d < rad iff d^2 < rad^2, and no square roots on N x M blocks.
    real_rad2 = knn_squared_distances(r, None, k, chunk_size)[:, k - 1]  # [N]
    fake_rad2 = knn_squared_distances(f, None, k, chunk_size)[:, k - 1]  # [M]

    r_sq, f_sq = (r * r).sum(1), (f * f).sum(1)
    fake_in_real_balls = torch.zeros(m, dtype=torch.int64, device=r.device)  # per fake: real balls containing it
    real_covered = torch.zeros(n, dtype=torch.bool, device=r.device)  # real ball contains some fake
    real_in_fake_ball = torch.zeros(n, dtype=torch.bool, device=r.device)  # real inside some fake ball
    for i in chunks(n, chunk_size):
        for j in chunks(m, chunk_size):
            # [real block, fake block], oriented exactly as knn_squared_distances oriented the
            # real-real block (i, j): below the diagonal it computed block (j, i) and transposed it.
            # When fake is a copy of real, every distance then equals the one its radius came from
            # bit for bit, so the k-th neighbour ties exactly and (strict <) density stays exactly 1.
            if j.start < i.start:
                d2 = squared_distances(f[j], r[i], f_sq[j], r_sq[i]).T
            else:
                d2 = squared_distances(r[i], f[j], r_sq[i], f_sq[j])
            inside_real = d2 < real_rad2[i].unsqueeze(1)
            fake_in_real_balls[j] += inside_real.sum(0)
            real_covered[i] |= inside_real.any(1)
            real_in_fake_ball[i] |= (d2 < fake_rad2[j].unsqueeze(0)).any(1)
    return fake_in_real_balls, real_covered, real_in_fake_ball


def prdc_indicators(
    real: ArrayLike, fake: ArrayLike, k: int = 5, chunk_size: int = DEFAULT_CHUNK
) -> dict[str, torch.Tensor]:
    """Per-point terms whose means are PRDC, for bootstrapping without recomputing distances.

    Resampling these rows keeps the kNN radii of the full sets fixed (a conditional
    bootstrap), which leaves out the noise of the other set and of the radii: too narrow
    (coverage 80-90% for a 95% interval on a Gaussian toy). `score_samples` redraws both sets
    instead (`neighbour_bootstrap.prdc_resampled`).

    Args:
        real: `[N, D]` real embeddings; fake: `[M, D]` generated ones (N, M > k).
        k, chunk_size: as in `precision_recall_density_coverage`.

    Returns:
        float64 tensors:
          "precision": `[M]` 1 if the fake point lies in some real ball, else 0;
          "density":   `[M]` number of real balls holding the fake point, divided by k;
          "recall":    `[N]` 1 if the real point lies in some fake ball, else 0;
          "coverage":  `[N]` 1 if the real point's ball holds some fake point, else 0.
        Each `.mean()` equals the corresponding `precision_recall_density_coverage` value
        (up to float64 round-off for density).
    """
    counts, covered, recalled = _ball_counts(real, fake, k, chunk_size)
    return {
        "precision": (counts > 0).double(),
        "recall": recalled.double(),
        "density": counts.double() / k,
        "coverage": covered.double(),
    }


def precision_recall_density_coverage(
    real: ArrayLike, fake: ArrayLike, k: int = 5, chunk_size: int = DEFAULT_CHUNK
) -> dict[str, float]:
    """PRDC of `fake: [M, D]` against `real: [N, D]` with k-nearest-neighbour balls.

    Args:
        real: real (reference) embeddings, N > k rows.
        fake: generated embeddings, M > k rows.
        k: neighbour rank that sets the ball radii (the paper recommends 5).
        chunk_size: rows per distance block; memory is O(chunk_size^2).

    Returns:
        {"precision", "recall", "density", "coverage"} as floats; precision, recall and
        coverage lie in [0, 1], density in [0, N/k].
    """
    counts, covered, recalled = _ball_counts(real, fake, k, chunk_size)
    return {
        "precision": float((counts > 0).double().mean()),
        "recall": float(recalled.double().mean()),
        "density": float(counts.sum()) / (k * counts.shape[0]),  # exact integer sum: identical sets give 1.0
        "coverage": float(covered.double().mean()),
    }
