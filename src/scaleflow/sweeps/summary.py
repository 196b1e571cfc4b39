"""A sweep's records as a table: one flat row per trial (results.csv), settings averaged over seeds with
t intervals, and the winner per data size on a chosen metric, with the interval of its lead."""
from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import numpy as np
from scipy import stats

from scaleflow.evaluation.evaluate import METRICS
from scaleflow.evaluation.report import LOWER_IS_BETTER as METRIC_LOWER_IS_BETTER
from scaleflow.evaluation.report import RATIO_METRICS, ratio_to_floor
from scaleflow.files import write_text
from scaleflow.sweeps.spec import canonical
from scaleflow.sweeps import vit_task
from scaleflow.sweeps.tasks import known_options
from scaleflow.training.config import ConfigError

TRIAL_OPTIONS = frozenset(known_options())

# Lower is better for these (and any *_loss column); higher for every other column (ratios to the floor included).
LOWER_IS_BETTER = METRIC_LOWER_IS_BETTER | {"fd_ratio", "train_seconds", "eval_seconds", "peak_rss_mb", "params",
                                           "gap_acc", "peak_cuda_mb", "trial_seconds"}
TRAIN_COLUMNS = ("best_val_loss", "final_val_loss", "baseline_val_loss", "best_step", "steps_per_second", "train_rows")


def lower_is_better(column: str) -> bool:
    """Whether a smaller value of `column` is better (a metric's _lo/_hi/_floor go with the metric)."""
    base = column.removesuffix("_lo").removesuffix("_hi").removesuffix("_floor")
    return base in LOWER_IS_BETTER or base.endswith("_loss")


def metric_columns() -> list[str]:
    """Every numeric column `flatten` can write for a result (weight statistics aside): what --metric takes."""
    columns = ["params", *TRAIN_COLUMNS, "worst_ratio", "fd_excess", "fd_inf", "train_seconds", "eval_seconds",
               "peak_rss_mb"]
    for name in METRICS:
        column = _metric_column(name)
        columns += [column, f"{column}_lo", f"{column}_hi", f"{column}_floor"]
        if name in RATIO_METRICS:
            columns.append(f"{name}_ratio")
    return columns


def check_metric(metric: str, rows: Sequence[dict[str, Any]] = (), task: str = "train") -> None:
    """Refuse a --metric that is no result column (of the task's columns, or numeric in `rows`).

    Raises:
        ConfigError: naming the metric and the columns to choose from.
    """
    columns = vit_task.metric_columns() if task == "vit" else metric_columns()
    known = set(columns) | {k for r in rows for k, v in r.items()
                            if isinstance(v, (int, float)) and not isinstance(v, bool)}
    if metric not in known:
        raise ConfigError(f"--metric {metric!r}: not a result column; choose one of {', '.join(sorted(known))}")


def _metric_column(name: str) -> str:
    """A metric's column: its name, or `sample_<name>` where a trial option has the same name
    (`precision` is also the training's numeric precision; a sweep may vary it)."""
    return f"sample_{name}" if name in TRIAL_OPTIONS else name


# "Every measure at once": the worst of these ratios to their real-vs-real floors (FD inverted, so 1
# is at the floor and smaller is worse for all). What the defaults study ranks by.
WORST_OF = ("fd", "precision", "recall", "coverage", "validity")
DEFAULT_METRIC = "worst_ratio"


def flatten(record: dict[str, Any]) -> dict[str, Any]:
    """One trial's record as a flat row: its options, status, and every number worth a column."""
    row: dict[str, Any] = {"id": record["id"], "status": record["status"], "error": record.get("error", "")}
    row.update({k: (canonical(v) if isinstance(v, (dict, list)) else v) for k, v in record["config"].items()})
    result = record.get("result") or {}
    if not result:
        return row
    row["params"] = result.get("params")
    row.update(result.get("columns", {}))  # a task's own flat numbers (the vit task's accuracies, ranks, ...)
    for key, value in result.get("labels", {}).items():  # options a task's analysis groups by, defaults included
        row.setdefault(key, value)
    for key in TRAIN_COLUMNS:
        row[key] = result.get("train", {}).get(key)
    for name, entry in result.get("metrics", {}).items():
        column = _metric_column(name)
        row[column] = entry.get("value")
        lo, hi = (entry.get("ci") or [None, None])[:2]
        row[f"{column}_lo"], row[f"{column}_hi"] = lo, hi
        if entry.get("floor") is not None:
            row[f"{column}_floor"] = entry["floor"]
        if name in RATIO_METRICS:
            row[f"{name}_ratio"] = ratio_to_floor(name, entry)
        if name == "fd":
            row["fd_excess"], row["fd_inf"] = entry.get("excess"), entry.get("fd_inf")
    ratios = [row.get(f"{m}_ratio") for m in WORST_OF]
    if all(r is not None for r in ratios) and ratios[0] > 0:
        at_floor = [1 / ratios[0], *ratios[1:]]  # FD inverted: for every entry 1 is the floor, less is worse
        row["worst_ratio"] = min(at_floor)
        row["binding"] = WORST_OF[int(np.argmin(at_floor))]
    if row.get("memorization") is not None and row.get("memorization_floor") is not None:
        row["memorizes_more_than_real"] = bool(row["memorization"] > row["memorization_floor"])
    row.update({k: v for k, v in result.get("timing", {}).items() if k != "threads"})
    row["peak_rss_mb"] = record.get("peak_rss_mb", result.get("memory", {}).get("peak_rss_mb"))
    for kind, summary in result.get("weights", {}).items():
        row[f"effective_rank.{kind}"] = summary.get("effective_rank")
        row[f"effective_rank_ratio.{kind}"] = summary.get("effective_rank_ratio")
        row[f"stable_rank.{kind}"] = summary.get("stable_rank")
    return row


def csv_text(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as CSV, columns in first-seen order."""
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def write_csv(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Write `results.csv` atomically."""
    write_text(path, csv_text(rows))
    return Path(path)


def mean_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, Optional[list[float]]]:
    """Mean over seeds and its t interval (None for one seed: one draw says nothing of the spread)."""
    x = np.asarray(values, dtype=float)
    mean = float(x.mean())
    if len(x) < 2:
        return mean, None
    half = float(stats.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return mean, [mean - half, mean + half]


def setting_label(config: dict[str, Any], varied: Iterable[str], base: Optional[dict[str, Any]] = None) -> str:
    """`arch=dit scale=small`: the options that vary across the sweep (seed aside); with a screen's
    `base`, only those that differ from it (`base` when none does)."""
    base = base or {}
    parts = [f"{k}={config[k]}" for k in varied
             if k in config and k != "seed" and not (k in base and canonical(base[k]) == canonical(config[k]))]
    return " ".join(parts) or "base"


def aggregate(rows: Sequence[dict[str, Any]], metric: str, varied: Sequence[str],
              base: Optional[dict[str, Any]] = None) -> list[dict[str, Any]]:
    """Per setting (the varied options, seeds pooled): n seeds, mean and interval of `metric`.

    Failed trials and trials without the metric are left out; `n_failed` counts the failures."""
    groups: dict[str, dict[str, Any]] = {}
    for row in rows:
        label = setting_label(row, varied, base)
        group = groups.setdefault(label, {"setting": label, "config": {k: row.get(k) for k in varied if k != "seed"},
                                          "values": [], "n_failed": 0})
        if row["status"] != "ok":
            group["n_failed"] += 1
        elif row.get(metric) is not None and math.isfinite(row[metric]):
            group["values"].append(float(row[metric]))
    out = []
    for group in groups.values():
        if group["values"]:
            group["mean"], group["ci"] = mean_interval(group["values"])
        else:
            group["mean"], group["ci"] = None, None
        group["n"] = len(group["values"])
        out.append(group)
    return out


def _difference_interval(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> Optional[list[float]]:
    """Welch's interval for mean(a) - mean(b); None when either has one seed."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 2 or len(b) < 2:
        return None
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    diff = float(a.mean() - b.mean())
    if se == 0:
        return [diff, diff]
    dof = (va + vb) ** 2 / ((va ** 2 / (len(a) - 1) if va else 0) + (vb ** 2 / (len(b) - 1) if vb else 0) or 1e-300)
    half = float(stats.t.ppf(0.5 + level / 2, dof) * se)
    return [diff - half, diff + half]


def winners(rows: Sequence[dict[str, Any]], metric: str, varied: Sequence[str],
            per: str = "n_train", base: Optional[dict[str, Any]] = None) -> list[dict[str, Any]]:
    """For each value of `per` (data size): the best setting on `metric`, its lead over the runner-up,
    and whether the lead's interval says there is a difference at all.

    Returns one dict per data size: {per, metric, best, runner_up, lead, lead_ci, verdict}.
    """
    lower = lower_is_better(metric)
    by_size: dict[Any, list[dict]] = defaultdict(list)
    for row in rows:
        by_size[row.get(per)].append(row)
    out = []
    def order(kv):  # numeric values in order, named ones (scales) by their models' size, None ("all rows") last
        value, members = kv
        if isinstance(value, (int, float)):
            return (value is None, 0, value, "")
        sizes = [r["params"] for r in members if isinstance(r.get("params"), (int, float))]
        return (value is None, 1, min(sizes) if sizes else 0, str(value))

    for size, size_rows in sorted(by_size.items(), key=order):
        settings = [g for g in aggregate(size_rows, metric, [v for v in varied if v != per], base) if g["n"]]
        if not settings:
            continue
        settings.sort(key=lambda g: g["mean"], reverse=not lower)
        best = settings[0]
        entry = {per: size, "metric": metric, "lower_is_better": lower, "best": best, "runner_up": None,
                 "lead": None, "lead_ci": None, "verdict": "only one setting"}
        if len(settings) > 1:
            second = settings[1]
            sign = -1 if lower else 1
            entry.update(runner_up=second, lead=sign * (best["mean"] - second["mean"]))
            diff = _difference_interval(best["values"], second["values"])
            if diff is None:
                entry["verdict"] = "one seed: no interval; run more seeds before trusting the order"
            else:
                lead_ci = sorted(sign * d for d in diff)
                entry["lead_ci"] = lead_ci
                entry["verdict"] = ("a difference" if lead_ci[0] > 0
                                    else "no difference: the interval of the lead includes 0")
        out.append(entry)
    return out
