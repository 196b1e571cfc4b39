"""Every metric of a set of samples against the test split, each next to its real-vs-real floor, both
with 95% intervals. No network needed: `evaluate` calls it on generated samples, and tests (or a search)
on any rows.

Floor: the same metric for a draw of real *training* rows of the same size as the samples, against the
same test rows. Exception: the memorization floor is the test rows' own rate (training rows would find
themselves at distance 0).

Intervals: the floor's are computed exactly as the value's, on the real draw in place of the samples.
Each resamples every set the metric reads and recomputes what those sets define:
- FD: samples, real draw and test rows with replacement, jointly, bias-shifted (`frechet_with_floor`);
  FD_inf: half-samples of all three, the extrapolation refitted (`frechet_infinite_with_floor`).
- MMD: samples and test rows with replacement, copies not paired with themselves.
- precision, recall, density, coverage, validity, nearest_cosine: half-samples of the samples, the test
  rows and the real draw, with the kNN radii of both PRDC sets, validity's threshold and each row's
  nearest test row recomputed in every half (`neighbour_bootstrap`; the conditional bootstrap these
  replace held them fixed and was too narrow).
- memorization: the samples (the floor: the test rows). The training set and its threshold are not
  resampled: "copies of the rows the prior was trained on" is defined by that one set.
- diversity: its rows, with replacement, bias-shifted.

Spaces: FD, MMD, PRDC and memorization in the space given (the network's normalized space in
`evaluate`); diversity and validity in the original space (`to_original`), where cosine similarity
means what users expect.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import torch

from scaleflow.data.prepare import PRDC_NEIGHBOURS
from scaleflow.evaluation.distribution import frechet_distance, median_pairwise_distance, mmd_rbf_bootstrap
from scaleflow.evaluation.diversity import mean_pairwise_cosine_distance
from scaleflow.evaluation.frechet import FD_INF_RESAMPLES, frechet_infinite_with_floor, frechet_with_floor
from scaleflow.evaluation.memorization import memorization_rate, nearest_neighbor_distances
from scaleflow.evaluation.neighbour_bootstrap import (MAX_ROWS, half_sample_indices, prdc_resampled, subset_indices,
                                                      validity_resampled)
from scaleflow.evaluation.prdc import precision_recall_density_coverage
from scaleflow.evaluation.validity import validity
from scaleflow.stats.bootstrap import bootstrap_ci, percentile_interval

SAMPLE_METRICS = ("fd", "mmd", "precision", "recall", "density", "coverage", "memorization", "diversity",
                  "validity", "nearest_cosine")
CI_METHOD = "half-samples of samples, test rows and real draw; radii and threshold recomputed"
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


def neighbour_metrics(samples: torch.Tensor, test: torch.Tensor, real_draw: torch.Tensor,
                      to_original: Callable[[torch.Tensor], torch.Tensor], n_boot: int, seed: int,
                      k: int) -> dict[str, dict]:
    """Entries for precision, recall, density, coverage, validity and nearest_cosine: values on the full
    sets, intervals from `n_boot` half-samples of the samples, the test rows and the real draw together
    (radii, threshold and nearest rows recomputed in each; `neighbour_bootstrap`).

    Args: as `score_samples` (`samples`, `real_draw`: `[N, D]`, `test`: `[M, D]`, in the space of PRDC).
    """
    samples_raw, test_raw, real_raw = to_original(samples), to_original(test), to_original(real_draw)
    fake, real = (precision_recall_density_coverage(test, x, k) for x in (samples, real_draw))
    valid = validity(samples_raw, test_raw, real_raw)

    g = torch.Generator().manual_seed(seed)
    keep = [subset_indices(len(x), MAX_ROWS, g) for x in (samples, test, real_draw)]
    s, t, r, s_raw, t_raw, r_raw = (x[i.to(x.device)] for x, i in zip(
        (samples, test, real_draw, samples_raw, test_raw, real_raw), keep + keep))
    halves_s, halves_t, halves_r = (half_sample_indices(len(i), n_boot, g) for i in keep)
    fake_b, real_b = prdc_resampled(t, s, k, halves_t, halves_s), prdc_resampled(t, r, k, halves_t, halves_r)
    valid_b = validity_resampled(s_raw, t_raw, r_raw, valid.quantile, halves_s, halves_t, halves_r)

    def interval(value: float, resampled: torch.Tensor, bounds: tuple[float, float]) -> tuple[float, float]:
        # Held to contain the value it is reported with: a constant metric (validity's floor is 0.95 by
        # construction in every half) would otherwise land an ulp off it through the centering.
        lo, hi = percentile_interval(resampled, center=value, bounds=bounds)
        return min(lo, value), max(hi, value)

    out: dict[str, dict] = {}
    for name in ("precision", "recall", "density", "coverage"):
        bounds = (0.0, float("inf")) if name == "density" else (0.0, 1.0)
        out[name] = entry(fake[name], interval(fake[name], fake_b[name], bounds), real[name],
                          interval(real[name], real_b[name], bounds), k=k, ci_method=CI_METHOD)
    out["validity"] = entry(valid.value, interval(valid.value, valid_b["valid"], (0.0, 1.0)), valid.floor,
                            interval(valid.floor, valid_b["floor_valid"], (0.0, 1.0)), threshold=valid.threshold,
                            quantile=valid.quantile, space="original", ci_method=CI_METHOD,
                            rule=f"valid iff cosine to the nearest test row >= {valid.threshold:.6g}, the "
                                 f"{valid.quantile:g} quantile of the real draw's nearest-test cosines")
    out["nearest_cosine"] = entry(
        valid.nearest_cosine, interval(valid.nearest_cosine, valid_b["nearest_cosine"], (-1.0, 1.0)),
        valid.floor_nearest_cosine, interval(valid.floor_nearest_cosine, valid_b["floor_nearest_cosine"],
                                             (-1.0, 1.0)), space="original", ci_method=CI_METHOD)
    return out


def score_samples(samples: torch.Tensor, test: torch.Tensor, real_draw: torch.Tensor, train: torch.Tensor,
                  to_original: Optional[Callable[[torch.Tensor], torch.Tensor]] = None, n_boot: int = 200,
                  seed: int = 0, k: int = DEFAULT_K, extrapolate: bool = True,
                  n_boot_inf: Optional[int] = None) -> dict:
    """Score `samples: [N, D]` against `test: [M, D]`, the floor being `real_draw: [N, D]` (training rows).

    Args:
        samples: the rows to judge (generated), in the same space as the others.
        test: held-out real rows (M > k).
        real_draw: N training rows, as many as samples, so value and floor share every sample size.
        train: the training set `[T, D]` (memorization looks for copies of it).
        to_original: maps rows to the original embedding space for diversity and validity (default: none).
        n_boot: resamples per interval. seed: seeds every draw. k: PRDC neighbours.
        extrapolate: also fit FD_inf and its floor, with intervals (`frechet_infinite_with_floor`).
        n_boot_inf: half-sample refits behind FD_inf's interval (default: `min(n_boot, FD_INF_RESAMPLES)`,
            at least 2); each costs about as much as the fit itself.

    Returns:
        `{name: entry}` for `SAMPLE_METRICS`, each `{"value", "ci", "floor", "floor_ci", ...}`; "fd" adds
        "excess", "excess_ci", "fd_inf", "floor_inf", "fd_inf_ci", "floor_inf_ci" and "extrapolation" (the
        fit: its model, sizes, mean FDs, and the resamples behind the intervals); "validity" adds
        "threshold"; the half-sampled metrics add "ci_method".
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
                      excess_ci=fd["excess_ci"], fd_inf=None, floor_inf=None, fd_inf_ci=None, floor_inf_ci=None)
    if extrapolate:
        resamples = max(2, min(n_boot, FD_INF_RESAMPLES) if n_boot_inf is None else n_boot_inf)
        inf = frechet_infinite_with_floor(samples, real_draw, test, resamples, seed=seed)
        out["fd"].update(fd_inf=inf["fd_inf"], floor_inf=inf["floor_inf"], fd_inf_ci=inf["fd_inf_ci"],
                         floor_inf_ci=inf["floor_inf_ci"], extrapolation={
                             "model": "FD(n) = FD_inf + k / n", "sizes": inf["sizes"], "fd": inf["fd"],
                             "floor_fd": inf["floor_fd"], "resample_sizes": inf["resample_sizes"],
                             "resamples": inf["resamples"],
                             "interval": "value +- t sd of the fit rerun on half-samples of every set"})

    # One kernel scale for value, floor and every resample, so they are comparable. The unbiased MMD of
    # real vs real is ~0 (and can be negative): read it by its interval, never as a ratio to the floor.
    bandwidths = [s * median_pairwise_distance(test) for s in (0.5, 1.0, 2.0)]
    value, ci = mmd_rbf_bootstrap(samples, test, bandwidths, n_boot, seed=seed)
    floor, floor_ci = mmd_rbf_bootstrap(real_draw, test, bandwidths, n_boot, seed=seed)
    out["mmd"] = entry(value, ci, floor, floor_ci, bandwidths=bandwidths)

    neighbours = neighbour_metrics(samples, test, real_draw, to_original, n_boot, seed, k)
    out.update((name, neighbours[name]) for name in ("precision", "recall", "density", "coverage"))

    # Floor: the rate of held-out test rows (a real draw of training rows would find itself at distance 0).
    # Per-row terms given the training set, so a bootstrap of their mean is the whole story (module docstring).
    memo = memorization_rate(samples, train, return_distances=True)
    copies = (memo["nn_distances"] < memo["threshold"]).double()
    held_out = (nearest_neighbor_distances(test, train) < memo["threshold"]).double()
    out["memorization"] = entry(*mean_ci(copies, n_boot, seed), *mean_ci(held_out, n_boot, seed), rule=memo["rule"],
                                nn_distance_quantiles=memo["nn_distance_quantiles"],
                                ci_method="bootstrap of the samples (floor: the test rows), conditional on the "
                                          "training set and its threshold, which define a copy")

    samples_raw, real_raw = to_original(samples), to_original(real_draw)
    value, ci = bootstrap_ci(mean_pairwise_cosine_distance, samples_raw, n_resamples=n_boot, seed=seed,
                             correct_bias=True)  # copies in a resample lower the diversity
    floor, floor_ci = bootstrap_ci(mean_pairwise_cosine_distance, real_raw, n_resamples=n_boot, seed=seed,
                                   correct_bias=True)
    out["diversity"] = entry(value, ci, floor, floor_ci, space="original")
    out["validity"], out["nearest_cosine"] = neighbours["validity"], neighbours["nearest_cosine"]
    return out


POINT_METRICS = ("fd", "precision", "recall", "density", "coverage", "memorization", "diversity", "validity",
                 "nearest_cosine")


def point_scores(samples: torch.Tensor, held_out: torch.Tensor, real_draw: torch.Tensor, train: torch.Tensor,
                 to_original: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
                 k: int = DEFAULT_K) -> dict[str, dict]:
    """The sample measures but MMD (`POINT_METRICS`, the ranked ones among them) of `samples: [N, D]` against `held_out: [M, D]`, each with its
    floor (`real_draw: [N, D]` training rows; memorization's: the held-out rows' own rate), as point
    estimates without intervals: what choosing among settings needs (a reference prior's smoothing, early
    stopping on validation rows), at a fraction of `score_samples`' cost. Entries as `score_samples`'
    (`{"value", "floor", ...}`, "ci" None), so `evaluation.ranking.worst_ratio` reads them."""
    if len(real_draw) != len(samples):
        raise ValueError(f"real_draw must have as many rows as samples; got {len(real_draw)} and {len(samples)}")
    to_original = to_original or (lambda x: x)
    point = lambda value, floor: {"value": float(value), "ci": None, "floor": float(floor), "floor_ci": None}  # noqa: E731
    out = {"fd": point(frechet_distance(samples, held_out), frechet_distance(real_draw, held_out))}
    fake, real = (precision_recall_density_coverage(held_out, x, k) for x in (samples, real_draw))
    for name in ("precision", "recall", "density", "coverage"):
        out[name] = point(fake[name], real[name])
    memo = memorization_rate(samples, train)
    out["memorization"] = point(memo["rate"], (nearest_neighbor_distances(held_out, train) < memo["threshold"]).double().mean())
    samples_raw, held_out_raw, real_raw = to_original(samples), to_original(held_out), to_original(real_draw)
    out["diversity"] = point(mean_pairwise_cosine_distance(samples_raw), mean_pairwise_cosine_distance(real_raw))
    valid = validity(samples_raw, held_out_raw, real_raw)
    out["validity"] = point(valid.value, valid.floor)
    out["nearest_cosine"] = point(valid.nearest_cosine, valid.floor_nearest_cosine)
    return out
