"""Nearest-neighbour distances, and how many generated samples sit on top of training points."""
from __future__ import annotations

import torch

from scaleflow.evaluation.distribution import (
    DEFAULT_CHUNK,
    ArrayLike,
    as_matrix_pair,
    chunks,
    squared_distances,
)

NN_QUANTILES = (5, 25, 50, 75, 95)


def _block_topk(d2: torch.Tensor, k: int, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """k smallest entries along `dim` of a distance block, as `[rows, k]` values and positions."""
    if k == 1:  # min is ~2x faster than topk
        v, i = d2.min(dim=dim)
        return v.unsqueeze(1), i.unsqueeze(1)
    v, i = d2.topk(k, dim=dim, largest=False)
    return (v, i) if dim == 1 else (v.T, i.T)


def _merge(
    best: torch.Tensor, best_idx: torch.Tensor | None, v: torch.Tensor, i: torch.Tensor | None, k: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Keep the k smallest of `[best | v]` per row (ascending), with their indices when tracked."""
    vals, pos = torch.cat([best, v], dim=1).topk(k, dim=1, largest=False, sorted=True)
    if best_idx is None:
        return vals, None
    return vals, torch.cat([best_idx, i], dim=1).gather(1, pos)


def knn_squared_distances(
    query: torch.Tensor,
    reference: torch.Tensor | None,
    k: int,
    chunk_size: int = DEFAULT_CHUNK,
    query_ids: torch.Tensor | None = None,
    return_indices: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Squared distances `[Q, k]` (ascending) from each query row to its k nearest reference rows.

    With `reference=None` the reference is `query` itself minus the query row, excluded by
    index (not by value: an exact duplicate of a row still counts as a neighbour).
    That case only computes blocks on or above the diagonal and uses each block for both
    sides, halving the work.
    With `query_ids: [Q]` (only with a reference), query row i is reference row
    `query_ids[i]`, which is excluded the same way: a subset of a set against the whole set.

    Distances come from the fast matmul form (see `squared_distances`), so they carry its
    round-off; `nearest_neighbor_distances` recomputes the selected ones exactly.
    Inputs are 2-D float tensors of one dtype and device (see `as_matrix_pair`); the caller
    is expected to have centered them. Memory is O(chunk_size^2).

    Returns:
        `[Q, k]` squared distances, and with `return_indices` also `[Q, k]` reference row indices.
    """
    within = reference is None
    ref = query if within else reference
    if within and query_ids is not None:
        raise ValueError("query_ids is only meaningful with a separate reference")
    n_ref = ref.shape[0] - (1 if within or query_ids is not None else 0)
    if not 1 <= k <= n_ref:
        raise ValueError(f"k must be between 1 and the number of reference points ({n_ref}); got {k}")
    q_sq, r_sq = (query * query).sum(1), (ref * ref).sum(1)
    best = torch.full((query.shape[0], k), float("inf"), dtype=query.dtype, device=query.device)
    best_idx = torch.full((query.shape[0], k), -1, dtype=torch.int64, device=query.device) if return_indices else None
    for i in chunks(query.shape[0], chunk_size):
        for j in chunks(ref.shape[0], chunk_size):
            if within and j.start < i.start:
                continue  # already seen as the transpose of block (j, i)
            d2 = squared_distances(query[i], ref[j], q_sq[i], r_sq[j])
            if within and i == j:
                d2.fill_diagonal_(float("inf"))
            if query_ids is not None:
                ref_ids = torch.arange(j.start, j.stop, device=d2.device)
                d2.masked_fill_(query_ids[i].unsqueeze(1) == ref_ids.unsqueeze(0), float("inf"))
            # Reduce the block to its k best per row first, then merge: cheaper than topk over [best | block].
            v, pos = _block_topk(d2, min(k, d2.shape[1]), dim=1)
            merged = _merge(best[i], None if best_idx is None else best_idx[i], v, pos + j.start, k)
            best[i] = merged[0]
            if best_idx is not None:
                best_idx[i] = merged[1]
            if within and i != j:
                v, pos = _block_topk(d2, min(k, d2.shape[0]), dim=0)
                merged = _merge(best[j], None if best_idx is None else best_idx[j], v, pos + i.start, k)
                best[j] = merged[0]
                if best_idx is not None:
                    best_idx[j] = merged[1]
    return (best, best_idx) if return_indices else best


def _exact_distances(query: torch.Tensor, reference: torch.Tensor, idx: torch.Tensor, chunk_size: int) -> torch.Tensor:
    """||query_i - reference_idx[i]|| `[Q]` from differences: exact to the dtype (duplicates give 0)."""
    out = torch.empty(query.shape[0], dtype=query.dtype, device=query.device)
    for i in chunks(query.shape[0], chunk_size):
        out[i] = (query[i] - reference[idx[i]]).norm(dim=1)
    return out


def nearest_neighbor_distances(
    query: ArrayLike,
    reference: ArrayLike,
    exclude_self: bool = False,
    k: int = 1,
    chunk_size: int = DEFAULT_CHUNK,
) -> torch.Tensor:
    """Euclidean distance `[Q]` from each row of `query: [Q, D]` to its k-th nearest row of `reference: [R, D]`.

    Neighbours are found with the fast matmul form of squared distances; the returned
    distance to the chosen neighbour is then recomputed from the difference, so it is exact to
    the dtype's precision (exact duplicates give 0, near-copies are not swamped by round-off).

    Args:
        query, reference: torch tensors or numpy arrays.
        exclude_self: `query` and `reference` are the same set and row i must not be its own
            neighbour; then the result is the distance to the k-th nearest *other* row (an exact
            duplicate of row i still counts, at distance 0). Requires equal inputs (checked).
            It also halves the work (each distance block serves both sides).
        k: which neighbour (1 = nearest).
        chunk_size: rows per block; memory is O(chunk_size^2), not O(Q R).

    Returns:
        `[Q]` float tensor of distances, in the inputs' float dtype (float32 unless float64 given).
    """
    q, r = as_matrix_pair(query, reference, ("query", "reference"))
    if exclude_self and (q.shape != r.shape or not torch.equal(q, r)):
        raise ValueError("exclude_self=True needs query and reference to be the same set of rows")
    center = r.mean(0)  # a shared center keeps distances exact while reducing matmul cancellation
    q = q - center
    r = q if exclude_self else r - center
    _, idx = knn_squared_distances(q, None if exclude_self else r, k, chunk_size, return_indices=True)
    return _exact_distances(q, r, idx[:, k - 1], chunk_size)


def _quantiles(d: torch.Tensor) -> dict[int, float]:
    probs = torch.tensor([p / 100 for p in NN_QUANTILES], dtype=torch.float64, device=d.device)
    qs = torch.quantile(d.to(torch.float64), probs)
    return {p: float(v) for p, v in zip(NN_QUANTILES, qs)}


def memorization_rate(
    generated: ArrayLike,
    train: ArrayLike,
    ratio: float = 0.5,
    max_threshold_queries: int | None = 10_000,
    seed: int = 0,
    chunk_size: int = DEFAULT_CHUNK,
    return_distances: bool = False,
) -> dict:
    """Share of generated samples that are near-copies of a training point.

    Rule (exact): generated sample g is *memorized* when

        d(g, nearest training point)
            < ratio * median over training points t of d(t, nearest other training point)

    with Euclidean d, `ratio = 0.5` by default, and the median taken as `torch.median` does
    (the lower middle value for an even count). The median nearest-neighbour spacing of
    the training set is the data's own notion of "close"; a generated point much closer to
    a training point than training points typically are to each other is a copy or a
    near-copy. Why not ratio 1 (the literal "closer than training points are to each
    other"): a generator that draws *fresh* samples from the data distribution has
    nearest-training distances distributed like the training set's own spacings, so it
    would score ~50% "memorized". Halving the median keeps exact and near copies in and
    fresh samples out; `baseline_rate` reports what the rule gives fresh samples (see below).

    The threshold is exact when train has at most `max_threshold_queries` rows; above that the
    median is estimated from that many training points drawn with `seed` (each still searched
    against the whole training set), which bounds the cost at O(max_threshold_queries * N_train).

    Args:
        generated: `[M, D]` generated samples.
        train: `[N, D]` training set, N >= 2.
        ratio: multiplier of the median training spacing (> 0).
        max_threshold_queries: cap on training points used for the median, or None for all.
        seed: seed for that subset.
        chunk_size: rows per distance block.

    Returns:
        dict with
          "rate": share of generated samples that are memorized, in [0, 1];
          "threshold": the distance threshold;
          "rule": the rule above as a string, with the numbers filled in;
          "ratio": `ratio`;
          "train_median_nn_distance": the median training spacing;
          "baseline_rate": share of (the sampled) training points whose nearest other
              training point is closer than the threshold: what a generator sampling fresh
              points from the training distribution would roughly score;
          "nn_distance_quantiles": {5, 25, 50, 75, 95} -> percentile of the generated
              samples' nearest-training-point distances;
          "train_nn_distance_quantiles": the same percentiles of the training spacings;
          "nn_distances": with `return_distances`, the `[M]` tensor of generated-to-train distances.
    """
    if ratio <= 0:
        raise ValueError(f"ratio must be > 0; got {ratio}")
    g, t = as_matrix_pair(generated, train, ("generated", "train"))
    if t.shape[0] < 2:
        raise ValueError(f"train needs at least 2 rows; got {t.shape[0]}")
    center = t.mean(0)
    g, t = g - center, t - center

    if max_threshold_queries is None or t.shape[0] <= max_threshold_queries:
        _, nn = knn_squared_distances(t, None, 1, chunk_size, return_indices=True)
        train_nn = _exact_distances(t, t, nn[:, 0], chunk_size)
    else:
        gen = torch.Generator().manual_seed(seed)
        ids = torch.randperm(t.shape[0], generator=gen)[:max_threshold_queries].to(t.device)
        # Each sampled point against the full training set, its own row excluded by index.
        _, nn = knn_squared_distances(t[ids], t, 1, chunk_size, query_ids=ids, return_indices=True)
        train_nn = _exact_distances(t[ids], t, nn[:, 0], chunk_size)
    median = float(train_nn.to(torch.float64).median())
    threshold = ratio * median
    _, nn = knn_squared_distances(g, t, 1, chunk_size, return_indices=True)
    # Exact distances for the selected neighbours: a near-copy's tiny distance would otherwise be
    # swamped by the matmul form's round-off (~sqrt(eps) * norm in float32).
    gen_nn = _exact_distances(g, t, nn[:, 0], chunk_size)
    rule = (
        f"memorized iff d(generated, nearest train point) < {ratio:g} * median over train points of "
        f"d(train point, nearest other train point) = {ratio:g} * {median:.6g} = {threshold:.6g} (Euclidean)"
    )
    out = {
        "rate": float((gen_nn < threshold).to(torch.float64).mean()),
        "threshold": threshold,
        "rule": rule,
        "ratio": float(ratio),
        "train_median_nn_distance": median,
        "baseline_rate": float((train_nn < threshold).to(torch.float64).mean()),
        "nn_distance_quantiles": _quantiles(gen_nn),
        "train_nn_distance_quantiles": _quantiles(train_nn),
    }
    if return_distances:
        out["nn_distances"] = gen_nn
    return out
