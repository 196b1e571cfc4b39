"""Cosine-based diversity and norm statistics of embedding sets.

Embedding models are usually compared by cosine similarity, and a flow that collapses
(all samples alike) or drifts off the norm shell of the data shows up here first.
Zero rows have no direction: they are treated as having cosine 0 with everything
(the `torch.nn.functional.normalize` convention).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from scaleflow.evaluation.distribution import DEFAULT_CHUNK, ArrayLike, as_matrix, as_matrix_pair, chunks


def _mean_pairwise_cosine(u: torch.Tensor) -> float:
    """Mean of u_i . u_j over ordered pairs i != j of unit rows `u: [N, D]`, in O(N D).

    sum_{i,j} u_i . u_j = ||sum_i u_i||^2, so the off-diagonal sum is that minus sum_i ||u_i||^2:
    no N x N matrix. Float64 keeps the subtraction exact enough (both terms can be ~N^2).
    """
    n = u.shape[0]
    if n < 2:
        raise ValueError(f"need at least 2 rows for pairwise statistics; got {n}")
    u = u.to(torch.float64)
    s = u.sum(0)
    off_diag = s.dot(s) - (u * u).sum()
    return float(off_diag) / (n * (n - 1))


def mean_pairwise_cosine_distance(x: ArrayLike) -> float:
    """Mean cosine distance 1 - cos(x_i, x_j) over pairs i != j of `x: [N, D]` (N >= 2).

    0 when all rows point the same way, 1 for mutually orthogonal rows (and for directions
    spread uniformly on the sphere, on average), up to 2 for opposite rows.
    """
    return 1.0 - _mean_pairwise_cosine(F.normalize(as_matrix(x).to(torch.float64), dim=1))


def nearest_cosine_similarity(
    query: ArrayLike, reference: ArrayLike, chunk_size: int = DEFAULT_CHUNK
) -> torch.Tensor:
    """For each row of `query: [Q, D]`, the largest cosine similarity to any row of `reference: [R, D]`.

    Returns:
        `[Q]` tensor in [-1, 1] (the inputs' float dtype).
    """
    q, r = as_matrix_pair(query, reference, ("query", "reference"))
    q, r = F.normalize(q, dim=1), F.normalize(r, dim=1)
    best = torch.full((q.shape[0],), -float("inf"), dtype=q.dtype, device=q.device)
    for i in chunks(q.shape[0], chunk_size):
        for j in chunks(r.shape[0], chunk_size):
            best[i] = torch.maximum(best[i], (q[i] @ r[j].T).amax(1))
    return best.clamp_(-1.0, 1.0)


def norm_and_cosine_stats(
    generated: ArrayLike, reference: ArrayLike, chunk_size: int = DEFAULT_CHUNK
) -> dict[str, float]:
    """Norm and cosine statistics of `generated: [M, D]` next to `reference: [N, D]` (M, N >= 2).

    Returns:
        {
          "generated_norm_mean", "generated_norm_std",   # L2 norms of generated rows
          "reference_norm_mean", "reference_norm_std",   # L2 norms of reference rows
          "nearest_reference_cosine_mean":  mean over generated rows of the cosine similarity
                                            to their most similar reference row,
          "generated_pairwise_cosine_mean": mean cosine similarity over pairs i != j of generated,
          "reference_pairwise_cosine_mean": same within reference,
        }
        Standard deviations are unbiased (divisor n - 1).
    """
    g, r = as_matrix_pair(generated, reference, ("generated", "reference"))
    g_norm = g.to(torch.float64).norm(dim=1)
    r_norm = r.to(torch.float64).norm(dim=1)
    return {
        "generated_norm_mean": float(g_norm.mean()),
        "generated_norm_std": float(g_norm.std()),
        "reference_norm_mean": float(r_norm.mean()),
        "reference_norm_std": float(r_norm.std()),
        "nearest_reference_cosine_mean": float(nearest_cosine_similarity(g, r, chunk_size).double().mean()),
        "generated_pairwise_cosine_mean": _mean_pairwise_cosine(F.normalize(g.to(torch.float64), dim=1)),
        "reference_pairwise_cosine_mean": _mean_pairwise_cosine(F.normalize(r.to(torch.float64), dim=1)),
    }
