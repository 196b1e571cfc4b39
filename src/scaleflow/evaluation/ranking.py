"""The one rule that ranks priors by their samples: the worst of their measures, each against its
real-vs-real floor, novelty included.

Terms, each 1 at the floor and smaller when worse:
- fd: floor / FD (inverted: a larger FD is worse), a point estimate like every other term (a term built
  on an interval's lower end would reward the noisier measurement). FD at n = 1,000 in hundreds of
  dimensions reads mostly the first two moments: a Gaussian fitted to the rows can sit within noise of
  its floor (its excess over the floor, `excess_ci`, printed beside it, holds 0). In this rule FD is one
  term beside precision, coverage and validity, which read the samples' support, so a Gaussian (or
  anything) cannot rank well on FD alone (tests/evaluation/test_ranking.py).
- precision, recall, coverage, validity: value / floor.
- novelty: (1 - memorization) / (1 - held-out rows' memorization). The floors are real training rows
  against the test split, so a "prior" that returns its training rows scores exactly 1.0 on every other
  term; novelty is what it fails (0: every sample a copy). A kernel density estimate with a tiny
  bandwidth, or a flow whose last weights memorize, fails it in proportion to the copies.
"""
from __future__ import annotations

from typing import Mapping, Optional

from scaleflow.evaluation.report import finite, ratio_to_floor

RANKED = ("fd", "precision", "recall", "coverage", "validity", "novelty")


def novelty_ratio(memorization: Mapping) -> Optional[float]:
    """(1 - rate) / (1 - floor rate) of a memorization entry `{"value", "floor", ...}` (None without both)."""
    value, floor = memorization.get("value"), memorization.get("floor")
    if not (finite(value) and finite(floor)) or floor >= 1:
        return None
    return (1.0 - value) / (1.0 - floor)


def fd_ratio(fd: Mapping) -> Optional[float]:
    """The FD term of an "fd" entry `{"value", "floor", ...}`: floor / value (None without a positive floor
    and value)."""
    ratio = ratio_to_floor("fd", fd)
    return 1.0 / ratio if ratio else None  # FD 0 (ratio 0) has no inverse: leave the term out


def ranked_ratios(metrics: Mapping[str, Mapping]) -> dict[str, Optional[float]]:
    """Each `RANKED` term of a report's metrics (`{name: {"value", "floor", ...}}`), 1 at the floor, smaller
    worse; None where the report lacks it."""
    out: dict[str, Optional[float]] = {}
    for name in RANKED:
        if name == "novelty":
            memorization = metrics.get("memorization")
            out[name] = novelty_ratio(memorization) if memorization else None
        elif name not in metrics:
            out[name] = None
        else:
            out[name] = fd_ratio(metrics[name]) if name == "fd" else ratio_to_floor(name, metrics[name])
    return out


def worst_ratio(metrics: Mapping[str, Mapping]) -> tuple[Optional[float], Optional[str]]:
    """The worst `RANKED` term and its name (the binding measure); (None, None) unless every term exists."""
    ratios = ranked_ratios(metrics)
    if any(r is None for r in ratios.values()):
        return None, None
    binding = min(ratios, key=lambda name: ratios[name])
    return ratios[binding], binding


__all__ = ["RANKED", "fd_ratio", "novelty_ratio", "ranked_ratios", "worst_ratio"]
