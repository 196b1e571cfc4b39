"""Every metric of a set of samples against the test split, each next to its real-vs-real floor, both
with bootstrap intervals. No network needed: `evaluate` calls it on generated samples, and tests (or a
search) on any rows.

Floor: the same metric for a draw of real *training* rows of the same size as the samples, against the
same test rows. Exception: the memorization floor is the test rows' own rate (training rows would find
themselves at distance 0).

Intervals: the floor's are computed exactly as the value's, on the real draw in place of the samples.
FD and MMD resample both sets (with the test rows); PRDC, memorization, validity and nearest_cosine
bootstrap their per-row terms, holding the full sets' kNN radii and thresholds fixed (the validity
threshold belongs to the reference, not to a resample); diversity resamples its rows.

Spaces: FD, MMD, PRDC and memorization in the space given (the network's normalized space in
`evaluate`); diversity and validity in the original space (`to_original`), where cosine similarity
means what users expect.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import torch

from scaleflow.data.prepare import PRDC_NEIGHBOURS
from scaleflow.evaluation.bootstrap import bootstrap_ci
from scaleflow.evaluation.distribution import median_pairwise_distance, mmd_rbf_bootstrap
from scaleflow.evaluation.diversity import mean_pairwise_cosine_distance
from scaleflow.evaluation.frechet import frechet_distance_infinite, frechet_with_floor
from scaleflow.evaluation.memorization import memorization_rate, nearest_neighbor_distances
from scaleflow.evaluation.prdc import prdc_indicators
from scaleflow.evaluation.validity import validity

SAMPLE_METRICS = ("fd", "mmd", "precision", "recall", "density", "coverage", "memorization", "diversity",
                  "validity", "nearest_cosine")
DEFAULT_K = PRDC_NEIGHBOURS  # 5, as the paper recommends; the data's minimum splits are made for it


def min_samples(k: int = DEFAULT_K) -> int:
    """Fewest samples every metric is defined for: PRDC's balls need k + 1 rows in a set (its own row is
    not its neighbour), the Frechet distance needs 2 for a covariance, and FD_inf 4 for two subset sizes."""
    return max(k + 1, 4)


def mean_ci(values: torch.Tensor, n_boot: int, seed: int) -> tuple[float, list[float]]:
    """Mean of `values: [N]` and its percentile bootstrap interval."""
    value, (lo, hi) = bootstrap_ci(lambda v: v.double().mean(), values, n_resamples=n_boot, seed=seed)
    return value, [lo, hi]


def entry(value: float, ci: Sequence[float], floor: Optional[float] = None,
          floor_ci: Optional[Sequence[float]] = None, **extra: Any) -> dict:
    """One report entry: `{"value", "ci": [lo, hi], "floor", "floor_ci": [lo, hi], **extra}` (floors may be None)."""
    pair = lambda p: None if p is None else [float(p[0]), float(p[1])]  # noqa: E731
    return {"value": float(value), "ci": pair(ci), "floor": None if floor is None else float(floor),
            "floor_ci": pair(floor_ci), **extra}


def score_samples(samples: torch.Tensor, test: torch.Tensor, real_draw: torch.Tensor, train: torch.Tensor,
                  to_original: Optional[Callable[[torch.Tensor], torch.Tensor]] = None, n_boot: int = 200,
                  seed: int = 0, k: int = DEFAULT_K, extrapolate: bool = True) -> dict:
    """Score `samples: [N, D]` against `test: [M, D]`, the floor being `real_draw: [N, D]` (training rows).

    Args:
        samples: the rows to judge (generated), in the same space as the others.
        test: held-out real rows (M > k).
        real_draw: N training rows, as many as samples, so value and floor share every sample size.
        train: the training set `[T, D]` (memorization looks for copies of it).
        to_original: maps rows to the original embedding space for diversity and validity (default: none).
        n_boot: bootstrap resamples per interval. seed: seeds every draw. k: PRDC neighbours.
        extrapolate: also fit FD_inf and its floor (`frechet_distance_infinite`).

    Returns:
        `{name: entry}` for `SAMPLE_METRICS`, each `{"value", "ci", "floor", "floor_ci", ...}`; "fd" adds
        "excess", "excess_ci", "fd_inf", "floor_inf", "extrapolation"; "validity" adds "threshold".
    """
    n = len(samples)
    if len(real_draw) != n:
        raise ValueError(f"real_draw must have as many rows as samples (the floor at the same n); "
                         f"got {len(real_draw)} and {n}")
    if n < min_samples(k) or len(test) < min_samples(k):
        raise ValueError(f"need at least {min_samples(k)} samples and test rows with k={k}; got {n} and {len(test)}")
    to_original = to_original or (lambda x: x)
    out: dict[str, dict] = {}

    fd = frechet_with_floor(samples, real_draw, test, n_boot, seed=seed)
    out["fd"] = entry(fd["value"], fd["ci"], fd["floor"], fd["floor_ci"], excess=fd["excess"],
                      excess_ci=fd["excess_ci"], fd_inf=None, floor_inf=None)
    if extrapolate:
        value_inf = frechet_distance_infinite(samples, test, seed=seed)
        floor_inf = frechet_distance_infinite(real_draw, test, seed=seed)
        out["fd"].update(fd_inf=value_inf["fd_inf"], floor_inf=floor_inf["fd_inf"], extrapolation={
            "model": "FD(n) = FD_inf + k / n", "sizes": value_inf["sizes"], "fd": value_inf["fd"],
            "floor_fd": floor_inf["fd"]})

    # One kernel scale for value, floor and every resample, so they are comparable. The unbiased MMD of
    # real vs real is ~0 (and can be negative): read it by its interval, never as a ratio to the floor.
    bandwidths = [s * median_pairwise_distance(test) for s in (0.5, 1.0, 2.0)]
    value, ci = mmd_rbf_bootstrap(samples, test, bandwidths, n_boot, seed=seed)
    floor, floor_ci = mmd_rbf_bootstrap(real_draw, test, bandwidths, n_boot, seed=seed)
    out["mmd"] = entry(value, ci, floor, floor_ci, bandwidths=bandwidths)

    fake, real = prdc_indicators(test, samples, k), prdc_indicators(test, real_draw, k)
    for name in ("precision", "recall", "density", "coverage"):
        out[name] = entry(*mean_ci(fake[name], n_boot, seed), *mean_ci(real[name], n_boot, seed), k=k)

    # Floor: the rate of held-out test rows (a real draw of training rows would find itself at distance 0).
    memo = memorization_rate(samples, train, return_distances=True)
    copies = (memo["nn_distances"] < memo["threshold"]).double()
    held_out = (nearest_neighbor_distances(test, train) < memo["threshold"]).double()
    out["memorization"] = entry(*mean_ci(copies, n_boot, seed), *mean_ci(held_out, n_boot, seed), rule=memo["rule"],
                                nn_distance_quantiles=memo["nn_distance_quantiles"])

    samples_raw, real_raw, test_raw = to_original(samples), to_original(real_draw), to_original(test)
    value, ci = bootstrap_ci(mean_pairwise_cosine_distance, samples_raw, n_resamples=n_boot, seed=seed,
                             correct_bias=True)  # copies in a resample lower the diversity
    floor, floor_ci = bootstrap_ci(mean_pairwise_cosine_distance, real_raw, n_resamples=n_boot, seed=seed,
                                   correct_bias=True)
    out["diversity"] = entry(value, ci, floor, floor_ci, space="original")

    valid = validity(samples_raw, test_raw, real_raw)
    out["validity"] = entry(*mean_ci(valid.valid, n_boot, seed), *mean_ci(valid.real_valid, n_boot, seed),
                            threshold=valid.threshold, quantile=valid.quantile, space="original",
                            rule=f"valid iff cosine to the nearest test row >= {valid.threshold:.6g}, the "
                                 f"{valid.quantile:g} quantile of the real draw's nearest-test cosines")
    out["nearest_cosine"] = entry(*mean_ci(valid.cosines, n_boot, seed), *mean_ci(valid.real_cosines, n_boot, seed),
                                  space="original")
    return out
