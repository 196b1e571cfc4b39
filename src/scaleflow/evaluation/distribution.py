"""Distances between two sets of embedding vectors: Frechet distance and kernel MMD.

Both compare a generated set `x: [N, D]` with a real set `y: [M, D]` as samples of
two distributions; neither needs the rows to be paired.

This module also holds the small helpers the other metric modules share: turning an
array into a 2-D float tensor, and the blockwise squared-distance kernel.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Union

import numpy as np
import torch

ArrayLike = Union[torch.Tensor, np.ndarray]

# Rows per block in every pairwise computation: a block of squared distances is at most
# DEFAULT_CHUNK^2 entries (16 MiB in float32), so peak memory does not grow with N.
DEFAULT_CHUNK = 2048

# Default MMD bandwidths, as multiples of the median pairwise distance.
DEFAULT_BANDWIDTH_SCALES = (0.5, 1.0, 2.0)
# Rows of the pooled sample used to estimate that median (a seeded random subset above it).
MEDIAN_HEURISTIC_MAX_ROWS = 1000


# --------------------------------------------------------------------------- helpers


def as_matrix(x: ArrayLike, name: str = "x") -> torch.Tensor:
    """Return `x` as a 2-D floating-point tensor `[N, D]` (same device; no copy when possible).

    numpy arrays are wrapped with `torch.as_tensor`; integer and half-precision inputs become
    float32 (CPU matmul and cdist do not support half); float32/float64 are kept as they are.

    Raises:
        ValueError: not 2-D, no rows, or non-finite values (they would silently poison
            every distance-based metric).
    """
    t = torch.as_tensor(x).detach()
    if t.dim() != 2:
        raise ValueError(f"{name} must be a 2-D array [N, D]; got shape {tuple(t.shape)}")
    if t.shape[0] == 0:
        raise ValueError(f"{name} has no rows")
    if t.dtype not in (torch.float32, torch.float64):
        t = t.to(torch.float32)
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return t


def as_matrix_pair(
    x: ArrayLike, y: ArrayLike, names: tuple[str, str] = ("x", "y")
) -> tuple[torch.Tensor, torch.Tensor]:
    """Convert two sets with `as_matrix` and bring them to a common dtype and feature size.

    The common dtype is float64 when either input is float64, else float32.
    """
    a, b = as_matrix(x, names[0]), as_matrix(y, names[1])
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"{names[0]} and {names[1]} must have the same number of features; got {a.shape[1]} and {b.shape[1]}"
        )
    dtype = torch.promote_types(a.dtype, b.dtype)
    return a.to(dtype), b.to(device=a.device, dtype=dtype)


def squared_distances(
    a: torch.Tensor, b: torch.Tensor, a_sq: torch.Tensor | None = None, b_sq: torch.Tensor | None = None
) -> torch.Tensor:
    """Squared Euclidean distances `[A, B]` between rows of `a: [A, D]` and `b: [B, D]`.

    Uses ||a||^2 + ||b||^2 - 2 a.b (one matmul, far faster than differences on CPU).
    That form loses precision when the norms are large next to the distances, so callers
    center both sets on a common point first. Negative round-off is clamped to 0.
    `a_sq`, `b_sq` are the precomputed squared row norms, if the caller has them.
    """
    if a_sq is None:
        a_sq = (a * a).sum(1)
    if b_sq is None:
        b_sq = (b * b).sum(1)
    d = torch.addmm(b_sq.unsqueeze(0), a, b.T, beta=1.0, alpha=-2.0)
    d.add_(a_sq.unsqueeze(1))
    return d.clamp_min_(0.0)


def chunks(n: int, size: int) -> Iterator[slice]:
    """Consecutive slices of `range(n)` with at most `size` elements each."""
    if size < 1:
        raise ValueError(f"chunk size must be >= 1; got {size}")
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


# --------------------------------------------------------------------------- Frechet


def _sqrtm_psd(c: torch.Tensor) -> torch.Tensor:
    """Symmetric square root of a symmetric PSD matrix via eigh; negative round-off eigenvalues -> 0."""
    w, v = torch.linalg.eigh(c)
    return (v * w.clamp_min(0.0).sqrt()) @ v.T


def frechet_distance_from_moments(
    mu1: ArrayLike, cov1: ArrayLike, mu2: ArrayLike, cov2: ArrayLike
) -> float:
    """Frechet (2-Wasserstein squared) distance between N(mu1, cov1) and N(mu2, cov2).

        FD = ||mu1 - mu2||^2 + Tr(C1 + C2 - 2 (C1^1/2 C2 C1^1/2)^1/2)

    Tr((C1 C2)^1/2), which FID code usually gets from `scipy.linalg.sqrtm(C1 @ C2)` (a
    non-symmetric product, hence complex round-off and occasional failures), equals
    Tr((C1^1/2 C2 C1^1/2)^1/2) because C1 C2 and C1^1/2 C2 C1^1/2 are similar. The latter
    matrix is symmetric PSD, so its eigenvalues are real: we take eigh, clamp round-off
    negatives to 0 and sum the square roots. Everything runs in float64.

    Args:
        mu1, mu2: `[D]` means.
        cov1, cov2: `[D, D]` symmetric PSD covariances.

    Returns:
        The distance as a float, clamped at 0 (tiny negative values are round-off).
    """
    m1 = torch.as_tensor(mu1).detach().to(torch.float64)
    m2 = torch.as_tensor(mu2).detach().to(device=m1.device, dtype=torch.float64)
    c1 = torch.as_tensor(cov1).detach().to(device=m1.device, dtype=torch.float64)
    c2 = torch.as_tensor(cov2).detach().to(device=m1.device, dtype=torch.float64)
    d = m1.shape[0]
    if m1.shape != (d,) or m2.shape != (d,) or c1.shape != (d, d) or c2.shape != (d, d):
        raise ValueError(
            "expected mu1, mu2 of shape [D] and cov1, cov2 of shape [D, D]; got "
            f"{tuple(m1.shape)}, {tuple(c1.shape)}, {tuple(m2.shape)}, {tuple(c2.shape)}"
        )
    # Symmetrize: sample covariances are symmetric only up to round-off, and eigh reads one triangle.
    c1 = 0.5 * (c1 + c1.T)
    c2 = 0.5 * (c2 + c2.T)
    s1 = _sqrtm_psd(c1)
    m = s1 @ c2 @ s1
    m = 0.5 * (m + m.T)
    tr_sqrt = torch.linalg.eigvalsh(m).clamp_min(0.0).sqrt().sum()
    diff = m1 - m2
    fd = diff.dot(diff) + torch.trace(c1) + torch.trace(c2) - 2.0 * tr_sqrt
    return max(float(fd), 0.0)


def mean_and_covariance(x: ArrayLike) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean `[D]` and unbiased covariance `[D, D]` (divisor N - 1, as `np.cov`) of `x: [N, D]`, in float64."""
    t = as_matrix(x).to(torch.float64)
    if t.shape[0] < 2:
        raise ValueError(f"need at least 2 rows to estimate a covariance; got {t.shape[0]}")
    mu = t.mean(0)
    xc = t - mu
    return mu, (xc.T @ xc) / (t.shape[0] - 1)


def frechet_distance(x: ArrayLike, y: ArrayLike) -> float:
    """Frechet distance between Gaussians fitted to `x: [N, D]` and `y: [M, D]` (FID without Inception).

    Means and unbiased covariances are computed in float64, then passed to
    `frechet_distance_from_moments`. The estimate is biased upward for small N relative
    to D (sample covariances are noisy), so compare values only at equal sample sizes.

    Returns:
        FD >= 0 as a float; `frechet_distance(x, x) == 0` up to round-off.
    """
    a, b = as_matrix_pair(x, y)
    mu1, c1 = mean_and_covariance(a)
    mu2, c2 = mean_and_covariance(b)
    return frechet_distance_from_moments(mu1, c1, mu2, c2)


# --------------------------------------------------------------------------- MMD


def median_pairwise_distance(z: ArrayLike, max_rows: int = MEDIAN_HEURISTIC_MAX_ROWS, seed: int = 0) -> float:
    """(Lower) median of the nonzero Euclidean distances between distinct rows of `z: [N, D]`.

    Above `max_rows` rows, the median is taken over a random subset of `max_rows` rows
    drawn with a fixed `seed` (deterministic; the median of the ~5e5 pair distances among
    1000 rows is a precise estimate).
    Returns 1.0 if all rows coincide (then every RBF bandwidth gives the same MMD, 0).
    """
    z = as_matrix(z, "z")
    if z.shape[0] > max_rows:
        g = torch.Generator().manual_seed(seed)
        idx = torch.randperm(z.shape[0], generator=g)[:max_rows].to(z.device)
        z = z[idx]
    z = z - z.mean(0)
    d2 = squared_distances(z, z)
    upper = torch.ones_like(d2, dtype=torch.bool).triu_(1)
    d2 = d2[upper & (d2 > 0)]
    if d2.numel() == 0:
        return 1.0
    # Lower median of squared distances, then sqrt (monotone): no sqrt over all pairs.
    return float(d2.kthvalue((d2.numel() + 1) // 2).values.sqrt())


def _rbf_kernel_sum(
    a: torch.Tensor, b: torch.Tensor | None, gammas: Sequence[float], chunk: int
) -> float:
    """Sum over all pairs of sum_g exp(-g ||a_i - b_j||^2), accumulated in float64.

    With `b is None` the pairs are (a_i, a_j) with i != j: only blocks on or above the
    diagonal are computed (symmetry halves the work), and the diagonal is left out exactly.
    """
    total = 0.0
    a_sq = (a * a).sum(1)
    symmetric = b is None
    if symmetric:
        b, b_sq = a, a_sq
    else:
        b_sq = (b * b).sum(1)
    for i in chunks(a.shape[0], chunk):
        for j in chunks(b.shape[0], chunk):
            if symmetric and j.start < i.start:
                continue
            d2 = squared_distances(a[i], b[j], a_sq[i], b_sq[j])
            if symmetric and i == j:
                d2.fill_diagonal_(float("inf"))  # exp(-inf) = 0: the unbiased estimator drops i == j
            block = 0.0
            buf = torch.empty_like(d2)
            for g in gammas:
                torch.mul(d2, -g, out=buf).exp_()
                # Row sums in the block's dtype (cascade summation, ~1e-7 relative), then float64
                # across rows and blocks; a float64 sum of the whole block is far slower on CPU.
                block += float(buf.sum(1).sum(dtype=torch.float64))
            total += 2.0 * block if symmetric and i != j else block
    return total


def mmd_rbf(
    x: ArrayLike,
    y: ArrayLike,
    bandwidths: Sequence[float] | None = None,
    chunk_size: int = DEFAULT_CHUNK,
) -> float:
    """Unbiased estimate of the squared MMD between the distributions of `x: [N, D]` and `y: [M, D]`.

    Kernel: a sum of Gaussian RBF kernels, k(a, b) = sum_s exp(-||a - b||^2 / (2 s^2)), one per
    bandwidth s. Several bandwidths keep the test sensitive at several length scales.

        MMD^2_u = 1/(N(N-1)) sum_{i != j} k(x_i, x_j) + 1/(M(M-1)) sum_{i != j} k(y_i, y_j)
                  - 2/(NM) sum_{i, j} k(x_i, y_j)

    Being unbiased (diagonals excluded), it is ~0 in expectation for two samples of one
    distribution and can be slightly negative. `mmd_rbf(x, x)` is not 0 but
    (2/N)(mean off-diagonal kernel - len(bandwidths)) < 0, of order 1/N.

    Distances and kernel values are computed blockwise in the inputs' dtype (float32 unless
    a float64 array is given) and summed in float64; float32 gives ~1e-5 relative accuracy
    on the kernel means, float64 inputs ~1e-12.

    Args:
        x, y: the two samples (torch tensors or numpy arrays; N, M >= 2).
        bandwidths: kernel widths s (> 0), in the units of the data. Default: the median
            nonzero pairwise distance of the pooled sample [x; y] (over a seeded random
            subset of 1000 rows when larger; see `median_pairwise_distance`) times
            (0.5, 1, 2). Pass explicit values to compare MMDs across runs on one scale,
            since the default adapts to each pair.
        chunk_size: rows per block; memory is O(chunk_size^2), not O(N M).

    Returns:
        MMD^2_u as a float.
    """
    a, b = as_matrix_pair(x, y)
    n, m = a.shape[0], b.shape[0]
    if n < 2 or m < 2:
        raise ValueError(f"the unbiased MMD needs at least 2 rows in each sample; got {n} and {m}")
    # Center both on one point: distances are unchanged and the matmul form loses less precision.
    center = (a.sum(0) + b.sum(0)) / (n + m)
    a, b = a - center, b - center
    if bandwidths is None:
        med = median_pairwise_distance(torch.cat([a, b]))
        bandwidths = [s * med for s in DEFAULT_BANDWIDTH_SCALES]
    bandwidths = [float(s) for s in bandwidths]
    if not bandwidths or any(s <= 0 for s in bandwidths):
        raise ValueError(f"bandwidths must be a non-empty sequence of positive numbers; got {bandwidths}")
    gammas = [1.0 / (2.0 * s * s) for s in bandwidths]
    k_xx = _rbf_kernel_sum(a, None, gammas, chunk_size) / (n * (n - 1))
    k_yy = _rbf_kernel_sum(b, None, gammas, chunk_size) / (m * (m - 1))
    k_xy = _rbf_kernel_sum(a, b, gammas, chunk_size) / (n * m)
    return k_xx + k_yy - 2.0 * k_xy


MMD_BOOTSTRAP_MAX_ROWS = 5000  # kernel matrices of the interval: 3 x rows^2 float32


def mmd_rbf_bootstrap(
    x: ArrayLike,
    y: ArrayLike,
    bandwidths: Sequence[float],
    n_resamples: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, tuple[float, float]]:
    """`mmd_rbf(x, y, bandwidths)` and a percentile bootstrap interval that treats copies correctly.

    A plain bootstrap resample repeats rows, and the unbiased estimator would count two copies of one
    row as a pair at distance 0, pushing every resample up. Here a resample is a vector of row
    multiplicities `w`, and pairs of copies of one row are excluded exactly as the diagonal is:

        K_xx term = (w' K w - sum_i w_i^2 K_ii) / ((sum w)^2 - sum w^2)

    The kernel matrices are computed once, so each resample costs two quadratic forms. Above
    `MMD_BOOTSTRAP_MAX_ROWS` rows per set the interval is computed on a seeded subset of that size
    (the value always uses every row).

    Args:
        x: `[N, D]`, y: `[M, D]` (N, M >= 2). bandwidths: RBF widths, as for `mmd_rbf`.
    Returns:
        (MMD^2_u on all rows, (lo, hi)).
    """
    value = mmd_rbf(x, y, bandwidths)
    a, b = as_matrix_pair(x, y)
    g = torch.Generator().manual_seed(seed)
    if a.shape[0] > MMD_BOOTSTRAP_MAX_ROWS:
        a = a[torch.randperm(a.shape[0], generator=g)[:MMD_BOOTSTRAP_MAX_ROWS].to(a.device)]
    if b.shape[0] > MMD_BOOTSTRAP_MAX_ROWS:
        b = b[torch.randperm(b.shape[0], generator=g)[:MMD_BOOTSTRAP_MAX_ROWS].to(b.device)]
    center = torch.cat([a, b]).mean(0)
    a, b = (a - center).float(), (b - center).float()
    gammas = [1.0 / (2.0 * float(s) ** 2) for s in bandwidths]

    def kernel(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        d2 = squared_distances(p, q).clamp_min_(0)
        return sum(torch.exp(-gm * d2) for gm in gammas)

    k_xx, k_yy, k_xy = kernel(a, a), kernel(b, b), kernel(a, b)
    n, m = a.shape[0], b.shape[0]
    k_diag = float(len(gammas))  # every RBF kernel is 1 at distance 0
    values = []
    for _ in range(n_resamples):
        w = torch.bincount(torch.randint(n, (n,), generator=g), minlength=n).float().to(a.device)
        v = torch.bincount(torch.randint(m, (m,), generator=g), minlength=m).float().to(a.device)
        xx = (w @ k_xx @ w - k_diag * (w * w).sum()) / (w.sum() ** 2 - (w * w).sum())
        yy = (v @ k_yy @ v - k_diag * (v * v).sum()) / (v.sum() ** 2 - (v * v).sum())
        xy = (w @ k_xy @ v) / (w.sum() * v.sum())
        values.append(float(xx + yy - 2 * xy))
    tail = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(np.asarray(values), [tail, 1.0 - tail])
    return value, (float(lo), float(hi))
