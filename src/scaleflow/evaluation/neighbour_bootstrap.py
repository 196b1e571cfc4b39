"""Intervals of the nearest-neighbour metrics (PRDC, validity, nearest cosine) that redraw every set:
half-sampling.

Why every set. These metrics compare two samples (generated or real-draw rows against test rows) through
quantities of both: the kNN radii of either set, validity's threshold (a quantile of the real draw's
nearest-test cosines), each row's nearest test row. Resampling only the per-row terms with the full
sets' radii and threshold held fixed (a conditional bootstrap) leaves out the noise of the other set
and of the radii: on a Gaussian toy (8- and 32-D, 200 rows per set, 400 repeats) its 95% intervals
covered the expected value 80-90% of the time, validity's and density's ~80%.

Why half-samples, not a bootstrap with replacement. A resample with replacement repeats rows, and a
repeat is its own neighbour at distance 0. Excluding a row's own copies (neighbours sought among the
other original rows, each counted as often as drawn) keeps the expected count of neighbours within a
radius, but not its variance (multiplicities ~Poisson(1) double it): the radii jitter more than a fresh
sample's do, and the 95% intervals came out 1.35-2.2x too wide (covering 0.985-1.0) on the same toy. A
half-sample, each resample taking a random half of every set's rows *without* replacement, has no
copies: its radii, threshold and nearest rows are those of a genuine sample. Its spread needs no
rescaling: for a mean, the variance of a half-sample's mean given the data, (1 - 1/2) s^2 / (n/2), is
s^2 / n, the full sample's; for other statistics it is the delete-n/2 jackknife's estimate, which like
the jackknife's (Efron & Stein, 1981) errs wide rather than narrow: measured 1.1-1.3x the true spread,
95% intervals covering 0.935-0.99 of the time (tests/evaluation/test_scores_bootstrap.py). (Smaller
fractions with the jackknife's rescaling sqrt(m / (n - m)) came closer, 1.1x at a quarter, but the
half needs no constant of ours.) A half-sample measures the metric at n/2, whose expectation differs
(larger radii), so the interval is the full-set value plus the percentiles of the half-sample values'
deviations from their mean (`stats.bootstrap.percentile_interval(center=value)`).

Cost. Every distance and cosine is computed once (`[N, M]` across sets, `[N, N]` within), and each row's
nearest `NEIGHBOUR_WINDOW` neighbours sorted once; a resample then gathers membership along those and
compares an `[N/2, M/2]` block with the radii, resamples batched (benchmarks/bootstrap_cost.py).
Above `MAX_ROWS` rows per set the resamples run on a seeded subset of that size (the values always use
every row), which can only widen the interval.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from scaleflow.evaluation.distribution import ArrayLike, as_matrix_pair, squared_distances

# Sorted neighbours kept per row. In a half-sample each other row is present with probability 1/2, so
# the first 16 + 4k hold fewer than k present ones with probability ~1e-6 (k = 5), and the first 16 no
# present reference row for a cosine with 2^-16: such rows are redone over their full rows (a few per
# evaluation of 1,000 rows, 200 resamples).
NEIGHBOUR_WINDOW = 16
MAX_ROWS = 4000  # distance matrices of the resamples: 5 x rows^2 floats
BLOCK_ELEMENTS = 1 << 22  # entries of the distance blocks of the resamples handled at once (16 MB of float32)


def half_sample_indices(n: int, n_resamples: int, generator: torch.Generator) -> torch.Tensor:
    """`[B, ceil(n / 2)]` row indices: in each row a random half of range(n), without replacement."""
    return torch.rand(n_resamples, n, generator=generator).argsort(dim=1)[:, : (n + 1) // 2]


def subset_indices(n: int, max_rows: int, generator: torch.Generator) -> torch.Tensor:
    """`[min(n, max_rows)]` rows to resample: all n, or a seeded subset of `max_rows` when there are more."""
    return torch.arange(n) if n <= max_rows else torch.randperm(n, generator=generator)[:max_rows]


def _batches(n_resamples: int, per_resample: int) -> list[slice]:
    """Resamples handled together, so that each batch's blocks hold about `BLOCK_ELEMENTS` entries."""
    size = max(1, BLOCK_ELEMENTS // max(1, per_resample))
    return [slice(b, min(b + size, n_resamples)) for b in range(0, n_resamples, size)]


def _first(hits: torch.Tensor) -> torch.Tensor:
    """Position `[..., 1]` of the first True along the last dim of `hits` (0 where there is none)."""
    return hits.to(torch.int8).argmax(-1, keepdim=True)


class KnnRadii:
    """Squared k-th-neighbour radii of one set `x: [N, D]` within its subsets, neighbours sorted once.

    `radii(rows)` gives each of `rows` its squared distance to its k-th nearest *other* row among `rows`.
    A subset of k rows or fewer has no k-th neighbour: its rows take their farthest (only for sets of
    fewer than 2(k + 1) rows, whose intervals say little anyway).
    """

    def __init__(self, x: torch.Tensor, k: int) -> None:
        d2 = squared_distances(x, x)
        d2.fill_diagonal_(float("inf"))  # never a row's own neighbour: it sorts last
        self.d2, self.k = d2, k
        window = min(len(x) - 1, NEIGHBOUR_WINDOW + 4 * k)
        self.near, self.order = d2.topk(window, dim=1, largest=False, sorted=True)  # [N, window] each

    def radii(self, rows: torch.Tensor) -> torch.Tensor:
        """`rows: [B, R]` distinct row indices per subset -> `[B, R]` squared radii within each subset."""
        n_sets, size = rows.shape
        need = min(self.k, size - 1)
        if need < 1:  # a single row: its ball is empty (inside is strict <)
            return torch.zeros(rows.shape, dtype=self.d2.dtype, device=self.d2.device)
        member = torch.zeros(n_sets, len(self.d2), dtype=torch.int32, device=rows.device)
        member.scatter_(1, rows, 1)
        order = self.order[rows]  # [B, R, window]
        counts = member.gather(1, order.flatten(1)).view(order.shape).cumsum(2)  # present neighbours up to a rank
        rad = self.near[rows].gather(2, _first(counts >= need))[..., 0]
        for b, i in (counts[..., -1] < need).nonzero().tolist():  # rare: redo over every neighbour
            near, order = self.d2[rows[b, i]].sort()
            rad[b, i] = near[_first(member[b][order].cumsum(0) >= need)]
        return rad


def prdc_resampled(real: ArrayLike, fake: ArrayLike, k: int, real_idx: torch.Tensor,
                   fake_idx: torch.Tensor) -> dict[str, torch.Tensor]:
    """PRDC of subsets of both sets, every radius recomputed within its subset.

    Args:
        real: `[M, D]` reference rows; fake: `[N, D]` samples (M, N > k).
        k: neighbour rank of the balls.
        real_idx: `[B, M']`, fake_idx: `[B, N']`: distinct rows of each resample (`half_sample_indices`).

    Returns:
        {"precision", "recall", "density", "coverage"}: `[B]` float64, resample b's entry being
        `prdc.precision_recall_density_coverage(real[real_idx[b]], fake[fake_idx[b]], k)` (up to the
        float round-off of the distances).
    """
    r, f = as_matrix_pair(real, fake, ("real", "fake"))
    center = r.mean(0)  # one shared center: distances unchanged, less cancellation in the matmul form
    r, f = r - center, f - center
    cross = squared_distances(f, r)  # [N, M]: fake i to real j
    real_radii, fake_radii = KnnRadii(r, k), KnnRadii(f, k)
    real_idx, fake_idx = real_idx.to(r.device), fake_idx.to(r.device)
    out: dict[str, list[torch.Tensor]] = {"precision": [], "recall": [], "density": [], "coverage": []}
    for batch in _batches(len(real_idx), real_idx.shape[1] * fake_idx.shape[1]):
        ri, fi = real_idx[batch], fake_idx[batch]
        d2 = torch.stack([cross.index_select(0, f_rows).index_select(1, r_rows)  # [B, N', M']; two
                          for f_rows, r_rows in zip(fi, ri)])  # contiguous selects beat one fancy index 2x
        inside = d2 < real_radii.radii(ri).unsqueeze(1)  # fake i in the ball of real j
        out["precision"].append(inside.any(2).double().mean(1))
        out["density"].append(inside.sum((1, 2)).double() / (k * fi.shape[1]))
        out["coverage"].append(inside.any(1).double().mean(1))
        out["recall"].append((d2 < fake_radii.radii(fi).unsqueeze(2)).any(1).double().mean(1))
    return {name: torch.cat(values).cpu() for name, values in out.items()}


class NearestCosine:
    """Each query row's largest cosine to the reference rows of a subset; `query: [Q, D]`, `reference: [M, D]`."""

    def __init__(self, query: torch.Tensor, reference: torch.Tensor) -> None:
        self.cos = F.normalize(query, dim=1) @ F.normalize(reference, dim=1).T  # [Q, M]
        window = min(reference.shape[0], NEIGHBOUR_WINDOW)
        self.near, self.order = self.cos.topk(window, dim=1, largest=True, sorted=True)

    def nearest(self, rows: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """`rows: [B, R]` query rows, `present: [B, M]` bool (reference rows in each subset) -> `[B, R]` float64."""
        order = self.order[rows]  # [B, R, window]
        held = present.gather(1, order.flatten(1)).view(order.shape)
        best = self.near[rows].gather(2, _first(held))[..., 0]
        for b, i in (~held.any(2)).nonzero().tolist():  # P = 2^-16 per row: redo over every reference row
            best[b, i] = self.cos[rows[b, i]][present[b]].max()
        return best.clamp(-1.0, 1.0).to(torch.float64)


def validity_resampled(samples: ArrayLike, reference: ArrayLike, real_draw: ArrayLike, quantile: float,
                       sample_idx: torch.Tensor, reference_idx: torch.Tensor,
                       real_idx: torch.Tensor) -> dict[str, torch.Tensor]:
    """Validity and nearest cosine of subsets of the three sets, the threshold recomputed in each.

    Resample b is `validity.validity(samples[sample_idx[b]], reference[reference_idx[b]],
    real_draw[real_idx[b]], quantile)`: nearest cosines among the subset's reference rows, the threshold
    the `quantile` of the subset real draw's cosines.

    Args:
        samples: `[N, D]`; reference: `[M, D]`; real_draw: `[K, D]`, in the space cosines are read in.
        sample_idx `[B, N']`, reference_idx `[B, M']`, real_idx `[B, K']`: distinct rows of each resample.

    Returns:
        {"valid", "floor_valid", "nearest_cosine", "floor_nearest_cosine"}: `[B]` float64 each.
    """
    s, ref = as_matrix_pair(samples, reference, ("samples", "reference"))
    real, _ = as_matrix_pair(real_draw, reference, ("real_draw", "reference"))
    of_samples, of_real = NearestCosine(s, ref), NearestCosine(real, ref)
    sample_idx, reference_idx, real_idx = (i.to(ref.device) for i in (sample_idx, reference_idx, real_idx))
    out: dict[str, list[torch.Tensor]] = {"valid": [], "floor_valid": [], "nearest_cosine": [],
                                          "floor_nearest_cosine": []}
    for batch in _batches(len(reference_idx), NEIGHBOUR_WINDOW * (sample_idx.shape[1] + real_idx.shape[1])):
        present = torch.zeros(len(reference_idx[batch]), len(ref), dtype=torch.bool, device=ref.device)
        present.scatter_(1, reference_idx[batch], True)
        cos_s = of_samples.nearest(sample_idx[batch], present)  # [B, N']
        cos_r = of_real.nearest(real_idx[batch], present)  # [B, K']
        threshold = torch.quantile(cos_r, quantile, dim=1, keepdim=True)
        out["valid"].append((cos_s >= threshold).double().mean(1))
        out["floor_valid"].append((cos_r >= threshold).double().mean(1))
        out["nearest_cosine"].append(cos_s.mean(1))
        out["floor_nearest_cosine"].append(cos_r.mean(1))
    return {name: torch.cat(values).cpu() for name, values in out.items()}


__all__ = ["KnnRadii", "MAX_ROWS", "NearestCosine", "half_sample_indices", "prdc_resampled", "subset_indices",
           "validity_resampled"]
