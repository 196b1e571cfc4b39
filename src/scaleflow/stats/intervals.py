"""Means over seeds and differences between two settings, with t intervals: paired where the two share
seeds, Welch where they do not; Holm's adjustment where many pairs are compared.

Why paired: a seed fixes the split, the initialization, the batch order, the floor's draw and the noise
for every setting of a sweep (and the target and initial rows of a search), so two settings run on the
same seeds differ by much less than their spreads over seeds. Welch's interval treats them as
independent and is too wide there; the t interval of the per-seed differences is the right one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

import numpy as np
from scipy import stats

LEVEL = 0.95


def mean_interval(values: Sequence[float], level: float = LEVEL) -> tuple[float, Optional[list[float]]]:
    """Mean of `values: [S]` (one per seed) and its t interval (None for one value: one draw says nothing of
    the spread)."""
    x = np.asarray(values, dtype=float)
    mean = float(x.mean())
    if len(x) < 2:
        return mean, None
    half = float(stats.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return mean, [mean - half, mean + half]


@dataclass(frozen=True)
class Difference:
    """mean(a) - mean(b) and its interval.

    Attributes:
        estimate: the difference of the means (paired: the mean of the per-seed differences).
        ci: [lo, hi] at `level`, or None (fewer than 2 values on a side, or fewer than 2 shared seeds).
        p_value: two-sided t test of "no difference" (None without an interval; 1.0 or 0.0 with no spread).
        method: "paired" (t on per-seed differences over `n` shared seeds), "welch" (independent sides),
            or "none" (no interval).
        n: values used on each side (paired: the shared seeds on both).
        level: the interval's coverage.
    """

    estimate: float
    ci: Optional[list[float]]
    p_value: Optional[float]
    method: str
    n: tuple[int, int]
    level: float = LEVEL

    @property
    def width(self) -> Optional[float]:
        return None if self.ci is None else self.ci[1] - self.ci[0]

    def as_dict(self) -> dict:
        return {"estimate": self.estimate, "ci": self.ci, "width": self.width, "p_value": self.p_value,
                "method": self.method, "n": list(self.n), "level": self.level}


def _t_test(mean: float, se: float, dof: float, level: float) -> tuple[list[float], float]:
    """Interval and two-sided p-value of a t statistic; no spread (se = 0) gives a zero-width interval and
    p = 0 (a consistent nonzero difference) or 1 (none)."""
    if se == 0 or not math.isfinite(se):
        return [mean, mean], (0.0 if mean else 1.0)
    half = float(stats.t.ppf(0.5 + level / 2, dof) * se)
    p = float(2 * stats.t.sf(abs(mean) / se, dof))
    return [mean - half, mean + half], p


def welch_difference(a: Sequence[float], b: Sequence[float], level: float = LEVEL) -> Difference:
    """mean(a) - mean(b) with Welch's interval: for settings that share no seeds (independent draws)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    diff = float(a.mean() - b.mean())
    if len(a) < 2 or len(b) < 2:
        return Difference(diff, None, None, "none", (len(a), len(b)), level)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    denominator = (va ** 2 / (len(a) - 1) if va else 0.0) + (vb ** 2 / (len(b) - 1) if vb else 0.0)
    dof = (va + vb) ** 2 / denominator if denominator else float(len(a) + len(b) - 2)
    ci, p = _t_test(diff, se, dof, level)
    return Difference(diff, ci, p, "welch", (len(a), len(b)), level)


def paired_difference(a: Sequence[float], b: Sequence[float], level: float = LEVEL) -> Difference:
    """mean(a - b) over pairs `a[i], b[i]` (the same seed) with the t interval of the differences."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.shape != b.shape:
        raise ValueError(f"paired values need one of each per seed; got {len(a)} and {len(b)}")
    d = a - b
    diff = float(d.mean()) if len(d) else float("nan")
    if len(d) < 2:
        return Difference(diff, None, None, "none", (len(a), len(b)), level)
    ci, p = _t_test(diff, float(d.std(ddof=1) / math.sqrt(len(d))), len(d) - 1, level)
    return Difference(diff, ci, p, "paired", (len(a), len(b)), level)


def seed_difference(a: Mapping[object, float], b: Mapping[object, float], level: float = LEVEL) -> Difference:
    """mean(a) - mean(b) of values keyed by seed: paired over the shared seeds when at least two are
    shared (values without a partner, e.g. a seed that diverged on one side, are left out), Welch on
    everything otherwise."""
    shared = sorted(set(a) & set(b), key=str)
    if len(shared) >= 2:
        return paired_difference([a[s] for s in shared], [b[s] for s in shared], level)
    return welch_difference(list(a.values()), list(b.values()), level)


def holm(p_values: Sequence[Optional[float]]) -> list[Optional[float]]:
    """Holm's step-down adjustment of `p_values` (None stays None and is not counted): an adjusted p below
    alpha controls the chance of any false "difference" among all the comparisons at alpha."""
    present = [(p, i) for i, p in enumerate(p_values) if p is not None]
    m = len(present)
    out: list[Optional[float]] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(sorted(present)):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out


def decide(diff: Difference, adjusted_p: Optional[float] = None, alpha: float = 1 - LEVEL) -> str:
    """What `diff` lets one say, as a code: "a" (a higher), "b" (b higher), "no difference" (the interval,
    or with `adjusted_p` the adjusted test, allows 0), "no interval" (one value on a side), "no spread"
    (every seed gave the same nonzero difference: a t test has nothing to judge it by) or "identical"."""
    if diff.ci is None:
        return "no interval"
    lo, hi = diff.ci
    if lo == hi:
        return "no spread" if diff.estimate else "identical"
    significant = (adjusted_p < alpha) if adjusted_p is not None else (lo > 0 or hi < 0)
    if not significant:
        return "no difference"
    return "a" if diff.estimate > 0 else "b"


def verdict(diff: Difference, adjusted_p: Optional[float] = None, alpha: float = 1 - LEVEL,
            names: tuple[str, str] = ("a", "b"), word: str = "higher") -> str:
    """A plain sentence: which side is `word` (higher), or "no difference at this precision" with the
    interval and its width, or why there is no interval. With `adjusted_p` (Holm, many comparisons) the
    decision is the adjusted test's (`decide`); the interval shown stays the unadjusted one, and says so."""
    decision = decide(diff, adjusted_p, alpha)
    if decision == "no interval":
        return "cannot tell: one seed on a side, no interval"
    lo, hi = diff.ci
    seeds = f"{diff.n[0]}" if diff.n[0] == diff.n[1] else f"{diff.n[0]} and {diff.n[1]}"
    interval = f"[{lo:+.4g}, {hi:+.4g}], width {hi - lo:.3g}, {diff.method}, {seeds} seeds"
    if decision == "no spread":
        return f"cannot tell: no spread over seeds ({interval})"
    if decision == "identical":
        return "identical on every seed"
    if adjusted_p is not None:
        interval += f"; Holm-adjusted p {adjusted_p:.3g} (interval unadjusted)"
    if decision == "no difference":
        return f"no difference at this precision ({interval})"
    return f"{names[0] if decision == 'a' else names[1]} {word} ({interval})"


__all__ = ["LEVEL", "Difference", "decide", "holm", "mean_interval", "paired_difference", "seed_difference", "verdict",
           "welch_difference"]
