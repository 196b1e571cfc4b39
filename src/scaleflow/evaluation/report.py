"""Reading an eval.json report: its metric rows (with the FD's bias-aware rows spelled out) and where a
value / floor ratio means something. Shared by `scaleflow eval`'s table, `compare` and the metric bars.
"""
from __future__ import annotations

import math
from typing import Iterable, Optional

# value / floor is a meaningful "x the floor" only for positive quantities whose floor is well away from
# 0. Not MMD (unbiased: ~0, even negative, for real data), memorization (floor ~0), cosines (can be
# negative) or losses (no floor).
RATIO_METRICS = frozenset({"fd", "precision", "recall", "density", "coverage", "diversity", "validity"})

# Which way is better for a metric's value (`compare` highlights the best run by it). Metrics judged against
# their floor (density ~1, diversity ~real, nearest_cosine ~real: collapsing onto dense regions raises it)
# have no direction. Runs are compared by value, never by a ratio to a floor (MMD's is ~0).
LOWER_IS_BETTER = frozenset({"val_loss", "reconstruction_mse", "fd", "fd_excess", "fd_inf", "mmd", "memorization",
                             "straightness"})
HIGHER_IS_BETTER = frozenset({"precision", "recall", "coverage", "validity"})

# Rows derived from the "fd" entry: its excess over the floor and its extrapolation to infinite samples.
FD_ROWS = ("fd_excess", "fd_inf")

# Printed wherever FD / floor is (`scaleflow eval`, `compare`): what FD can and cannot tell.
FD_NOTE = ("Reading FD: at n ~ 1,000 it reads mostly means and covariances (a Gaussian fitted to the rows can "
           "come close to its floor; where the floor's draw is every training row, as at 1,000 of them, even the "
           "training rows' exact mean and covariance sampled afresh score ~1.4x it), so read it with precision, "
           "coverage and validity, which read the samples' support; compare two runs' FD_inf only by their intervals.")
INTERVAL_NOTE = ("Intervals: 95% bootstrap; FD and MMD resample every set, precision/recall/density/coverage/validity/"
                 "nearest cosine recompute their radii and thresholds on half-samples of every set; memorization's is "
                 "conditional on the training set and its threshold (they define a copy).")


def finite(x) -> bool:
    """A real number (not bool), finite: what a metric value from JSON must be to be drawn or divided."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def metric_entries(report: dict) -> dict[str, dict]:
    """The report's metrics in report order (entries with a "value"; not "nfe_curve", "stats", "settings"),
    each `{"value", "ci", "floor", "floor_ci", ...}`, with "fd_excess" (value - floor: no floor of its own;
    real data scores 0) and "fd_inf" (with "fd_inf_ci" and "floor_inf_ci" as its intervals) after "fd" when
    the report has them. Older reports simply lack those keys (FD_inf without intervals: ci None)."""
    rows: dict[str, dict] = {}
    for name, entry in report.items():
        if not (isinstance(entry, dict) and "value" in entry):
            continue
        rows[name] = entry
        if name == "fd" and entry.get("excess") is not None:
            rows["fd_excess"] = {"value": entry["excess"], "ci": entry.get("excess_ci"), "floor": None,
                                 "floor_ci": None}
        if name == "fd" and entry.get("fd_inf") is not None:
            rows["fd_inf"] = {"value": entry["fd_inf"], "ci": entry.get("fd_inf_ci"), "floor": entry.get("floor_inf"),
                              "floor_ci": entry.get("floor_inf_ci")}
    return rows


def metric_names(reports: Iterable[dict]) -> list[str]:
    """`metric_entries` names united over reports in order, so older and newer reports line up."""
    names: dict[str, None] = {}
    for report in reports:
        names.update((k, None) for k in metric_entries(report))
    return list(names)


def ratio_to_floor(name: str, entry: dict) -> Optional[float]:
    """value / floor where that ratio means something (`RATIO_METRICS`, finite floor > 0), else None."""
    value, floor = entry.get("value"), entry.get("floor")
    if name not in RATIO_METRICS or not (finite(value) and finite(floor)) or floor <= 0:
        return None
    return value / floor
