#!/usr/bin/env python3
"""Seconds for the intervals of `evaluation.scores.score_samples` at 1,000 samples x 384-D, 200 resamples.

On the built-in data (wordnet-minilm, standardized on its training rows): 1,000 test rows, a real draw of
1,000 training rows, and 1,000 samples from a Ledoit-Wolf Gaussian fitted to the training rows (the
prior that sits near its FD floor). Times, each the median of `--repeats`:

- neighbour metrics (precision, recall, density, coverage, validity, nearest_cosine, values and floors):
  the conditional bootstrap these used to have (per-row terms resampled, radii and threshold of the
  full sets held fixed) against the half-samples of every set with everything recomputed (now);
- FD_inf: the two fits alone (value and floor) against the fits with their interval (`--inf-resamples`
  half-sample refits);
- the whole `score_samples` as `evaluate` calls it.

Also prints the Gaussian's FD / floor, its ranked terms and worst ratio. Run:
    python benchmarks/bootstrap_cost.py [--threads 1] [--repeats 3] [--json results.json]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.covariance import LedoitWolf

try:
    import scaleflow  # noqa: F401
except ImportError:  # a bare checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from scaleflow.data.builtin import load_builtin
from scaleflow.data.normalization import Standardizer
from scaleflow.evaluation.frechet import FD_INF_RESAMPLES, frechet_distance_infinite, frechet_infinite_with_floor
from scaleflow.evaluation.prdc import prdc_indicators
from scaleflow.evaluation.ranking import ranked_ratios, worst_ratio
from scaleflow.evaluation.scores import mean_ci, neighbour_metrics, score_samples
from scaleflow.evaluation.validity import validity
from timing import timed  # benchmarks/timing.py, next to this script


def conditional_intervals(samples, test, real, to_original, n_boot: int, k: int = 5) -> None:
    """The previous intervals of the neighbour metrics: per-row terms bootstrapped, radii and threshold fixed."""
    fake, floor = prdc_indicators(test, samples, k), prdc_indicators(test, real, k)
    for terms in (fake, floor):
        for name in ("precision", "recall", "density", "coverage"):
            mean_ci(terms[name], n_boot, 0)
    valid = validity(to_original(samples), to_original(test), to_original(real))
    for terms in (valid.valid, valid.real_valid, valid.cosines, valid.real_cosines):
        mean_ci(terms.double(), n_boot, 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--boot", type=int, default=200)
    parser.add_argument("--inf-resamples", type=int, default=FD_INF_RESAMPLES)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None, help="also write the numbers to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rows, _ = load_builtin()
    order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(0))
    x = torch.from_numpy(np.asarray(rows, dtype=np.float32))[order]
    n = args.n
    test, train = x[:n], x[n:]
    standardizer = Standardizer.fit(train)
    z = standardizer.transform
    lw = LedoitWolf().fit(z(train).numpy())
    gaussian = torch.from_numpy(np.random.default_rng(0).multivariate_normal(lw.location_, lw.covariance_, n)).float()
    samples, test_z, train_z = gaussian, z(test), z(train)
    real = train_z[:n]
    to_original = standardizer.inverse_transform

    out = {"n": n, "dim": int(x.shape[1]), "boot": args.boot, "inf_resamples": args.inf_resamples,
           "threads": args.threads, "repeats": args.repeats}
    out["neighbour_conditional_s"], _ = timed(
        lambda: conditional_intervals(samples, test_z, real, to_original, args.boot), args.repeats)
    out["neighbour_half_samples_s"], _ = timed(
        lambda: neighbour_metrics(samples, test_z, real, to_original, args.boot, 0, 5), args.repeats)
    out["fd_inf_fits_only_s"], _ = timed(
        lambda: [frechet_distance_infinite(s, test_z, seed=0) for s in (samples, real)], 1)
    out["fd_inf_with_interval_s"], inf = timed(
        lambda: frechet_infinite_with_floor(samples, real, test_z, args.inf_resamples, seed=0), 1)
    out["score_samples_s"], report = timed(
        lambda: score_samples(samples, test_z, real, train_z, to_original, args.boot, seed=0,
                              n_boot_inf=args.inf_resamples), 1)
    worst, binding = worst_ratio(report)
    out["gaussian"] = {"fd_over_floor": report["fd"]["value"] / report["fd"]["floor"],
                       "fd_excess_ci": report["fd"]["excess_ci"], "fd_inf": inf["fd_inf"],
                       "fd_inf_ci": inf["fd_inf_ci"],
                       "floor_inf": inf["floor_inf"], "floor_inf_ci": inf["floor_inf_ci"],
                       "ranked": ranked_ratios(report), "worst_ratio": worst, "binding": binding}
    print(json.dumps(out, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
