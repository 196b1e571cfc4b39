"""The Frechet distance next to its floor: one joint bootstrap for the value, the floor and their
difference, and the distance extrapolated to infinitely many samples (Chong & Forsyth, 2020).

At n = 1,000 rows in 384-D most of a Frechet distance is finite-sample bias (sample covariances are
noisy): two draws of one distribution score ~44 on the built-in data. Reading a model's FD as a ratio
to that floor compresses differences, so the report carries two bias-aware numbers:

    excess = FD(generated, test) - FD(real draw, test), both at the same n, with an interval from
             resampling generated, real and test rows together (the shared test rows' noise
             partly cancels);
    FD_inf = the intercept of FD(n_i) = FD_inf + k / n_i fitted by least squares over subsets of
             several sizes n_i ("Effectively Unbiased FID and Inception Score and where to find
             them", Chong & Forsyth, CVPR 2020); ~0 for two draws of one distribution. Its interval
             refits the extrapolation on half-samples of every set (`frechet_infinite_with_floor`),
             so two runs' FD_inf are compared by their intervals, not by their points.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch
from scipy import stats

from scaleflow.evaluation.distribution import ArrayLike, as_matrix, frechet_distance

# Subset sizes of the extrapolation span [EXTRAPOLATION_SMALLEST * n, n]. Chong & Forsyth go down to
# n/10, with n far above D; here n is often near D (1,000 rows in 384-D), where FD(n) bends away from
# the 1/n line for n < ~D and a fit down to n/5 overshoots (measured on the built-in data, train vs
# test: +5.9 from n/5, +0.9 from n/2, where the truth is 0).
EXTRAPOLATION_SMALLEST = 0.5
EXTRAPOLATION_SIZES = 10
EXTRAPOLATION_SUBSETS = 5
# Half-sample refits behind FD_inf's interval: each reruns the fit (~46 FDs per set), ~1.1 s of one CPU
# core at 1,000 rows in 384-D for value and floor together (benchmarks/bootstrap_cost.py). The interval
# takes Student's t with resamples - 1 degrees of freedom, so few refits widen it rather than mislead.
FD_INF_RESAMPLES = 10


# A singular reference covariance (constant dimensions, or M <= D rows) gets this jitter, relative to its
# largest variance, before its Cholesky factor: an eigh would cost ~10x the Cholesky in every resample.
# The jitter lowers FD by at most 2 sqrt(jitter) Tr(C_x^1/2) (Rotfel'd: Tr (A + B)^1/2 <= Tr A^1/2 +
# Tr B^1/2), under 0.01 for 384-D standardized rows, where bootstrap intervals are several units wide.
SINGULAR_JITTER = 1e-10


class _Reference:
    """Moments of the reference set `[M, D]` and a factor F with F F^T = C, for FDs against it."""

    def __init__(self, y: torch.Tensor) -> None:
        self.mu, self.cov = _moments(y)
        factor, info = torch.linalg.cholesky_ex(self.cov)
        if int(info) != 0:
            jitter = SINGULAR_JITTER * float(self.cov.diagonal().max())
            eye = torch.eye(len(self.cov), dtype=self.cov.dtype, device=self.cov.device)
            factor, info = torch.linalg.cholesky_ex(self.cov + jitter * eye)
        if int(info) != 0:  # e.g. all rows equal: the symmetric square root is a factor too
            w, v = torch.linalg.eigh(self.cov)
            factor = (v * w.clamp_min(0.0).sqrt()) @ v.T
        self.factor, self.trace = factor, float(torch.trace(self.cov))

    def distance(self, x: torch.Tensor) -> float:
        """FD between Gaussians fitted to `x: [N, D]` and the reference.

        Tr((C_y C_x)^1/2) is the sum of square roots of the eigenvalues of C_y C_x, which equal those
        of the symmetric F^T C_x F: one Cholesky per reference and one eigvalsh per set, where
        `frechet_distance_from_moments` takes an eigh and an eigvalsh per pair. `x` is float64, N >= 2.
        """
        mu = x.mean(0)
        xc = x - mu
        if len(x) < xc.shape[1]:
            # Fewer rows than dimensions (the half-sample refits of FD_inf): with A = xc F, F^T C_x F =
            # A^T A / (N - 1) shares its nonzero eigenvalues with the [N, N] A A^T / (N - 1), ~2.5x cheaper.
            a = xc @ self.factor
            m, tr_cov = (a @ a.T) / (len(x) - 1), xc.square().sum() / (len(x) - 1)
        else:
            cov = (xc.T @ xc) / (len(x) - 1)
            m, tr_cov = self.factor.T @ cov @ self.factor, torch.trace(cov)
        tr_sqrt = torch.linalg.eigvalsh(0.5 * (m + m.T)).clamp_min(0.0).sqrt().sum()
        diff = mu - self.mu
        return max(float(diff.dot(diff) + self.trace + tr_cov - 2.0 * tr_sqrt), 0.0)


def _moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean `[D]` and unbiased covariance `[D, D]` of a float64 `x: [N, D]` (N >= 2), unchecked."""
    mu = x.mean(0)
    xc = x - mu
    return mu, (xc.T @ xc) / (x.shape[0] - 1)


def _as_float64(x: ArrayLike, name: str, min_rows: int = 2) -> torch.Tensor:
    t = as_matrix(x, name).to(torch.float64)
    if t.shape[0] < min_rows:
        raise ValueError(f"{name} needs at least {min_rows} rows for a covariance; got {t.shape[0]}")
    return t


def frechet_with_floor(generated: ArrayLike, real_draw: ArrayLike, reference: ArrayLike, n_resamples: int = 200,
                       confidence: float = 0.95, seed: int = 0) -> dict:
    """FD of `generated: [N, D]` and of a real draw `[K, D]` (the floor) to `reference: [M, D]`, their
    difference, and bootstrap intervals of all three.

    Each resample draws generated, real and reference rows with replacement, all in the same resample,
    so the difference's interval sees the reference's noise cancel. Duplicated rows inflate every
    resampled FD (a smaller effective sample), so, as `bootstrap_ci(correct_bias=True)`, each set of
    resampled values is shifted by its bias, `mean - value`, before taking percentiles (and the distances'
    lower bounds clamped at 0).

    Returns:
        {"value", "ci": [lo, hi], "floor", "floor_ci", "excess", "excess_ci"}; excess = value - floor.
    """
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1; got {n_resamples}")
    g, r, y = (_as_float64(a, name) for a, name in ((generated, "generated"), (real_draw, "real_draw"),
                                                     (reference, "reference")))
    value, floor = frechet_distance(g, y), frechet_distance(r, y)
    gen = torch.Generator().manual_seed(seed)
    stats = torch.empty(n_resamples, 3, dtype=torch.float64)
    for b in range(n_resamples):
        ig, ir, iy = (torch.randint(len(a), (len(a),), generator=gen).to(a.device) for a in (g, r, y))
        ref = _Reference(y[iy])
        stats[b, 0], stats[b, 1] = ref.distance(g[ig]), ref.distance(r[ir])
    stats[:, 2] = stats[:, 0] - stats[:, 1]
    point = torch.tensor([value, floor, value - floor], dtype=torch.float64)
    stats += point - stats.mean(0)
    tail = (1.0 - confidence) / 2.0
    lo, hi = torch.quantile(stats, torch.tensor([tail, 1.0 - tail], dtype=torch.float64), dim=0)
    lo[:2] = lo[:2].clamp_min(0.0)  # the shift can push a distance's bound below 0; the excess may be negative
    ci = [[float(lo[i]), float(hi[i])] for i in range(3)]
    return {"value": value, "ci": ci[0], "floor": floor, "floor_ci": ci[1], "excess": value - floor, "excess_ci": ci[2]}


def extrapolation_sizes(n: int, count: int = EXTRAPOLATION_SIZES,
                        smallest: float = EXTRAPOLATION_SMALLEST) -> list[int]:
    """`count` subset sizes spread evenly over [smallest * n, n] (distinct integers, each >= 2)."""
    low = max(2, int(np.ceil(smallest * n)))
    if n < 3 or low >= n:
        raise ValueError(f"extrapolating FD needs subsets of at least two sizes >= 2; got n={n}")
    return sorted({int(round(s)) for s in np.linspace(low, n, count)})


def _fd_curve(xs: Sequence[torch.Tensor], y: torch.Tensor, sizes: Sequence[int], subsets: int,
              gen: torch.Generator) -> np.ndarray:
    """Mean FD `[len(xs), len(sizes)]` of each `xs[j]: [N, D]` (all of N rows) to `y: [M, D]` over random
    subsets of n_i rows of both; every x takes the same rows and the same reference subset (one factor)."""
    n = len(xs[0])
    means = np.empty((len(xs), len(sizes)))
    for i, s in enumerate(sizes):
        everything = s == n and s == len(y)
        values = np.empty((len(xs), 1 if everything else subsets))
        for j in range(values.shape[1]):
            ia = torch.randperm(n, generator=gen)[:s].to(y.device)
            ib = torch.randperm(len(y), generator=gen)[:s].to(y.device)
            reference = _Reference(y[ib])
            values[:, j] = [reference.distance(x[ia]) for x in xs]
        means[:, i] = values.mean(1)
    return means


def _fit(sizes: Sequence[int], means: np.ndarray) -> np.ndarray:
    """Least-squares (intercept, slope) `[2, ...]` of FD(n_i) = FD_inf + k / n_i, one per row of `means`."""
    design = np.stack([np.ones(len(sizes)), 1.0 / np.asarray(sizes, dtype=np.float64)], axis=1)
    return np.linalg.lstsq(design, np.atleast_2d(means).T, rcond=None)[0]


def _check_sizes(sizes: Optional[Sequence[int]], n: int) -> list[int]:
    sizes = extrapolation_sizes(n) if sizes is None else sorted({int(s) for s in sizes})
    if len(sizes) < 2 or sizes[0] < 2 or sizes[-1] > n:
        raise ValueError(f"sizes must hold two or more values in [2, {n}]; got {sizes}")
    return sizes


def frechet_distance_infinite(x: ArrayLike, y: ArrayLike, sizes: Optional[Sequence[int]] = None,
                              subsets: int = EXTRAPOLATION_SUBSETS, seed: int = 0) -> dict:
    """FD between `x: [N, D]` and `y: [M, D]` extrapolated to infinitely many samples.

    For each size n_i (default: `extrapolation_sizes(min(N, M))`) FD is averaged over `subsets` random
    subsets of n_i rows of x and n_i rows of y (drawn without replacement; one subset where n_i takes
    every row of both), then FD(n_i) = FD_inf + k / n_i is fitted by least squares. Both sets shrink
    together because both covariances carry a 1/n bias; a fixed y would leave its own bias in FD_inf.

    Returns:
        {"fd_inf": the intercept, "slope": k, "sizes": [n_i], "fd": [mean FD at n_i]}. FD_inf can be
        slightly negative (a fit, not a distance) when the two sets share one distribution.
    """
    a, b = _as_float64(x, "x"), _as_float64(y, "y")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"x and y must have the same number of features; got {a.shape[1]} and {b.shape[1]}")
    sizes = _check_sizes(sizes, min(len(a), len(b)))
    means = _fd_curve([a], b, sizes, subsets, torch.Generator().manual_seed(seed))[0]
    fd_inf, slope = _fit(sizes, means)[:, 0]
    return {"fd_inf": float(fd_inf), "slope": float(slope), "sizes": sizes, "fd": [float(m) for m in means]}


def frechet_infinite_with_floor(generated: ArrayLike, real_draw: ArrayLike, reference: ArrayLike,
                                n_resamples: int = FD_INF_RESAMPLES, confidence: float = 0.95, seed: int = 0,
                                sizes: Optional[Sequence[int]] = None,
                                subsets: int = EXTRAPOLATION_SUBSETS) -> dict:
    """FD_inf of `generated: [N, D]` and of a real draw `[N, D]` (the floor) to `reference: [M, D]`, each with
    an interval from refitting the extrapolation on half-samples.

    The values are `frechet_distance_infinite(generated, reference, sizes, subsets, seed)` and the same for
    the real draw (both fits take the same reference subsets, as two calls with one seed do).

    Interval: each resample takes a random half of the generated, real and reference rows (without
    replacement) and reruns the whole fit on them, at the sizes halved and with as many subsets; the
    interval is the value +- t (n_resamples - 1 degrees of freedom) times the standard deviation of those
    refits: with ten or twenty refits, each ~46 FDs, a standard deviation is steadier than the 2.5% and
    97.5% percentiles, and t pays for its own noise. Why halves: with
    replacement, copies shrink each subset's effective size by a varying amount that the extrapolation
    amplifies (refits spread 1.5x the spread across independent draws, 1,000 rows in 384-D). For a
    statistic whose noise falls as 1/n the spread of half-sample values given the data estimates the full
    sample's (the delete-n/2 jackknife): with FD_inf well above 0, on Gaussians in 32-D with 200 rows, the
    interval was 1.18x the true width and covered the expected FD_inf in 58 of 60 repeats. Near 0 (two
    draws of one distribution, the floor) FD's noise falls as 1/n^2, so a half's is 3x the full sample's
    variance: the interval errs wide by up to sqrt(3) in width (1.76x, covering 100 of 100 repeats).

    Returns:
        {"fd_inf", "floor_inf", "fd_inf_ci": [lo, hi] or None, "floor_inf_ci", "sizes": [n_i], "fd": [mean
        FD at n_i], "floor_fd", "slope", "floor_slope", "resample_sizes": the halved [n_i], "resamples"}.
        The intervals are None (and "resample_sizes" []) when the halves allow fewer than two sizes.
    """
    g, r, y = (_as_float64(a, name) for a, name in ((generated, "generated"), (real_draw, "real_draw"),
                                                     (reference, "reference")))
    if len(g) != len(r) or g.shape[1] != y.shape[1] or r.shape[1] != y.shape[1]:
        raise ValueError(f"generated and real_draw need as many rows, and all three as many features; got "
                         f"{tuple(g.shape)}, {tuple(r.shape)}, {tuple(y.shape)}")
    if n_resamples < 2:
        raise ValueError(f"n_resamples must be >= 2 (a standard deviation); got {n_resamples}")
    sizes = _check_sizes(sizes, min(len(g), len(y)))
    gen = torch.Generator().manual_seed(seed)
    means = _fd_curve([g, r], y, sizes, subsets, gen)
    (value, floor), (slope, floor_slope) = _fit(sizes, means)
    out = {"fd_inf": float(value), "floor_inf": float(floor), "fd_inf_ci": None, "floor_inf_ci": None,
           "sizes": sizes, "fd": means[0].tolist(), "floor_fd": means[1].tolist(), "slope": float(slope),
           "floor_slope": float(floor_slope), "resample_sizes": [], "resamples": n_resamples}
    half_n, half_m = (len(g) + 1) // 2, (len(y) + 1) // 2
    half_sizes = sorted({min(max(2, round(s / 2)), half_n, half_m) for s in sizes})
    if len(half_sizes) < 2:
        return out
    fits = np.empty((n_resamples, 2))
    for b in range(n_resamples):
        ig, ir = (torch.randperm(len(g), generator=gen)[:half_n].to(g.device) for _ in range(2))
        iy = torch.randperm(len(y), generator=gen)[:half_m].to(y.device)
        fits[b] = _fit(half_sizes, _fd_curve([g[ig], r[ir]], y[iy], half_sizes, subsets, gen))[0]
    half_width = stats.t.ppf(0.5 + confidence / 2, n_resamples - 1) * fits.std(0, ddof=1)
    out.update(fd_inf_ci=[float(value - half_width[0]), float(value + half_width[0])],
               floor_inf_ci=[float(floor - half_width[1]), float(floor + half_width[1])],
               resample_sizes=half_sizes)
    return out
