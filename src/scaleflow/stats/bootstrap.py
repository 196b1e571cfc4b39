"""Percentile bootstrap confidence intervals for any metric of one or more sample sets."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, Union

import numpy as np
import torch

ArrayLike = Union[torch.Tensor, np.ndarray]


def _take_rows(a: ArrayLike, idx: torch.Tensor) -> ArrayLike:
    """Rows `idx` of `a`, in `a`'s own type (numpy in, numpy out), so `metric_fn` sees what the caller passed."""
    if isinstance(a, torch.Tensor):
        return a[idx.to(a.device)]
    return np.asarray(a)[idx.numpy()]


def bootstrap_ci(
    metric_fn: Callable[..., Any],
    *arrays: ArrayLike,
    n_resamples: int = 200,
    confidence: float = 0.95,
    seed: int | None = 0,
    generator: torch.Generator | None = None,
    correct_bias: bool = False,
) -> tuple[float, tuple[float, float]]:
    """Value of `metric_fn(*arrays)` and a percentile bootstrap interval around it.

    Each resample draws, for every array independently, as many rows as it has, uniformly
    with replacement (the sets are independent samples, e.g. generated vs real, so they are
    not resampled jointly), and evaluates `metric_fn` on the resampled arrays. The interval
    is the ((1 - confidence)/2, (1 + confidence)/2) quantiles of those values (linear
    interpolation, as `numpy.percentile`).

    Caveat: resampling with replacement duplicates rows. Metrics that look at nearest
    neighbours or exclude self-pairs (PRDC, memorization, unbiased MMD) treat a duplicate as
    a neighbour at distance 0, so their bootstrap distribution is shifted and the interval
    need not contain the full-data value; read it as a spread, not an unbiased interval.
    (`evaluation.neighbour_bootstrap` draws half-samples without replacement for those.)
    Means and moment-based metrics (e.g. norm statistics) are fine.

    Args:
        metric_fn: called as `metric_fn(*resampled_arrays)`; returns a number or 0-d tensor
            (wrap dict-valued metrics, e.g. `lambda r, f: prdc(r, f)["precision"]`).
        *arrays: one or more `[N_i, ...]` torch tensors or numpy arrays, resampled along dim 0.
        n_resamples: number of bootstrap resamples (>= 1).
        confidence: interval coverage in (0, 1).
        seed: seeds a private generator (deterministic results); ignored if `generator` is given.
            None: a nondeterministic seed.
        generator: a CPU `torch.Generator` to draw indices from (advanced; overrides `seed`).
        correct_bias: shift the resampled values by their bias, `mean(resamples) - value`, before
            taking quantiles. For metrics biased by sample size (the Frechet distance grows as
            duplicates shrink the effective sample), the plain interval can miss the value entirely.

    Returns:
        (value on the full arrays, (lo, hi)) as floats.
    """
    if not arrays:
        raise ValueError("bootstrap_ci needs at least one array")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1; got {n_resamples}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1); got {confidence}")
    sizes = [len(a) for a in arrays]
    if min(sizes) == 0:
        raise ValueError(f"every array needs at least one row; got sizes {sizes}")
    if generator is None:
        generator = torch.Generator()
        if seed is None:
            generator.seed()
        else:
            generator.manual_seed(seed)

    value = float(metric_fn(*arrays))
    stats = torch.empty(n_resamples, dtype=torch.float64)
    for b in range(n_resamples):
        resampled = [_take_rows(a, torch.randint(n, (n,), generator=generator)) for a, n in zip(arrays, sizes)]
        stats[b] = float(metric_fn(*resampled))
    return value, percentile_interval(stats, confidence, center=value if correct_bias else None)


def percentile_interval(resampled: ArrayLike, confidence: float = 0.95, center: float | None = None,
                        bounds: tuple[float, float] = (-float("inf"), float("inf"))) -> tuple[float, float]:
    """The ((1 - confidence)/2, (1 + confidence)/2) quantiles of `resampled: [B]` values of a metric.

    Args:
        resampled: the metric on each resample.
        confidence: interval coverage in (0, 1).
        center: if given, the values are first shifted by `mean(resampled) - center`: the interval keeps
            their spread around the full-data value. For resamples that measure a shifted quantity (a
            bootstrap's copies shrink the effective sample; a half-sample measures the metric at n/2).
        bounds: the metric's range (e.g. (0, 1) for a share); the interval is clipped to it.

    Returns:
        (lo, hi) as floats (linear interpolation, as `numpy.percentile`).
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1); got {confidence}")
    stats = torch.as_tensor(resampled, dtype=torch.float64).flatten()
    if center is not None:
        stats = stats - (stats.mean() - center)
    alpha = (1.0 - confidence) / 2.0
    lo, hi = torch.quantile(stats, torch.tensor([alpha, 1.0 - alpha], dtype=torch.float64)).clamp(*bounds)
    return float(lo), float(hi)
