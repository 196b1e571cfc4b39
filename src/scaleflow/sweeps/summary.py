"""A sweep's records as a table: one flat row per trial (results.csv), settings averaged over seeds with
t intervals, and the winner per data size on a chosen metric, with the interval of its lead (paired over
the seeds the two settings share), and that lead again on seeds not used to pick the winner."""
from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import numpy as np

from scaleflow.evaluation.evaluate import METRICS
from scaleflow.evaluation.ranking import RANKED, novelty_ratio, worst_ratio
from scaleflow.evaluation.report import LOWER_IS_BETTER as METRIC_LOWER_IS_BETTER
from scaleflow.evaluation.report import RATIO_METRICS, ratio_to_floor
from scaleflow.files import atomic_write, write_text
from scaleflow.stats import (Difference, mean_interval, paired_difference, seed_difference, verdict,
                             welch_difference)
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
    columns = ["params", *TRAIN_COLUMNS, "worst_ratio", "novelty_ratio", "fd_excess", "fd_inf", "train_seconds", "eval_seconds",
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


# "Every measure at once": the worst of the ratios to their real-vs-real floors, novelty included
# (`evaluation.ranking`). What the defaults study ranks by.
WORST_OF = RANKED
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
    metrics = result.get("metrics", {})
    if "memorization" in metrics:
        row["novelty_ratio"] = novelty_ratio(metrics["memorization"])
    worst, binding = worst_ratio(metrics)
    if worst is not None:
        row["worst_ratio"], row["binding"] = worst, binding
    if row.get("memorization") is not None and row.get("memorization_floor") is not None:
        row["memorizes_more_than_real"] = bool(row["memorization"] > row["memorization_floor"])
    # The reference priors fitted to the same rows (`reference.scoring`): the study's reference lines.
    for name, prior in ((result.get("reference") or {}).get("priors") or {}).items():
        row[f"reference.{name}.worst_ratio"] = prior.get("worst_ratio")
        for measure, value in (prior.get("ratios") or {}).items():
            row[f"reference.{name}.{measure}_ratio"] = value
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


def write_parquet(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Write `results.parquet` atomically: the rows of `results.csv` with typed columns (numbers stay numbers,
    flags booleans; nested results already flattened with dots, e.g. `reference.gmm.fd_ratio`). A column
    whose values mix kinds (a number in one trial, text in another) is written as text."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    arrays, names = [], []
    for name in columns:
        values = [row.get(name) for row in rows]
        try:
            array = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            array = pa.array([None if v is None else str(v) for v in values], type=pa.string())
        arrays.append(array)
        names.append(name)
    table = pa.Table.from_arrays(arrays, names=names)
    atomic_write(path, lambda tmp: pq.write_table(table, tmp))  # a reader sees the old file or the new one
    return Path(path)


def setting_label(config: dict[str, Any], varied: Iterable[str], base: Optional[dict[str, Any]] = None) -> str:
    """`arch=dit scale=small`: the options that vary across the sweep (seed aside); with a screen's
    `base`, only those that differ from it (`base` when none does)."""
    base = base or {}
    parts = [f"{k}={config[k]}" for k in varied
             if k in config and k != "seed" and not (k in base and canonical(base[k]) == canonical(config[k]))]
    return " ".join(parts) or "base"


def keyed_by_seed(seeds: Sequence[Any], values: Sequence[float]) -> Optional[dict[Any, float]]:
    """One setting's values as {seed: value}; None where a seed is missing or repeats (pairing with another
    setting needs one trial per seed), so that its differences fall back to Welch (`group_difference`)."""
    if any(s is None for s in seeds) or len({str(s) for s in seeds}) < len(seeds):
        return None
    return dict(zip(seeds, values))


def group_difference(a: dict[str, Any], b: dict[str, Any]) -> Difference:
    """mean(a) - mean(b) of two settings ({"values": [S], "by_seed": {seed: value} or None}): paired over
    the seeds they share (a sweep's seed fixes the split, initialization, batch order, floor draw and noise
    of every setting), Welch where they share fewer than two or seeds do not identify their trials."""
    if a.get("by_seed") is None or b.get("by_seed") is None:
        return welch_difference(a["values"], b["values"])
    return seed_difference(a["by_seed"], b["by_seed"])


def aggregate(rows: Sequence[dict[str, Any]], metric: str, varied: Sequence[str],
              base: Optional[dict[str, Any]] = None) -> list[dict[str, Any]]:
    """Per setting (the varied options, seeds pooled): n seeds, mean and interval of `metric`, and the
    values keyed by seed (`by_seed`), so that two settings' differences can be paired seed by seed.

    Failed trials and trials without the metric are left out; `n_failed` counts the failures."""
    groups: dict[str, dict[str, Any]] = {}
    seeds: dict[str, list[Any]] = defaultdict(list)
    for row in rows:
        label = setting_label(row, varied, base)
        group = groups.setdefault(label, {"setting": label, "config": {k: row.get(k) for k in varied if k != "seed"},
                                          "values": [], "n_failed": 0})
        if row["status"] != "ok":
            group["n_failed"] += 1
        elif row.get(metric) is not None and math.isfinite(row[metric]):
            group["values"].append(float(row[metric]))
            seeds[label].append(row.get("seed"))
    out = []
    for label, group in groups.items():
        if group["values"]:
            group["mean"], group["ci"] = mean_interval(group["values"])
        else:
            group["mean"], group["ci"] = None, None
        group["n"] = len(group["values"])
        group["by_seed"] = keyed_by_seed(seeds[label], group["values"])
        out.append(group)
    return out


def _lead(best: dict, second: dict, lower: bool, seeds: Optional[Sequence[Any]] = None) -> Difference:
    """How much `best` beats `second` (positive: better, whichever way the metric points): paired over their
    shared seeds (only `seeds`, if given), Welch where they share fewer than two."""
    a, b = (second, best) if lower else (best, second)
    if seeds is None:
        return group_difference(a, b)
    return paired_difference([a["by_seed"][s] for s in seeds], [b["by_seed"][s] for s in seeds])


def _sorted_seeds(seeds: Iterable[Any]) -> list[Any]:
    try:
        return sorted(seeds)
    except TypeError:
        return sorted(seeds, key=str)


def held_out_lead(settings: Sequence[dict[str, Any]], lower: bool) -> Optional[dict[str, Any]]:
    """The winner's lead measured on seeds that did not pick it: the seeds every setting ran on, sorted,
    split alternately; the order of the settings is picked by their means on one half (`pick_seeds`) and
    the lead of that half's best over its runner-up is the paired interval on the other (`measure_seeds`,
    the larger half). None with fewer than 4 such seeds (2 + 2 is the least that gives an interval).

    Why: ordering settings by their means and then testing the top two on the same seeds is optimistic
    (with many settings, the best of them is partly the luckiest); on fresh seeds the interval is honest.
    """
    if len(settings) < 2 or any(g["by_seed"] is None for g in settings):
        return None
    common = set.intersection(*(set(g["by_seed"]) for g in settings))
    if len(common) < 4:
        return None
    seeds = _sorted_seeds(common)
    measure, pick = seeds[0::2], seeds[1::2]
    order = sorted(settings, key=lambda g: float(np.mean([g["by_seed"][s] for s in pick])), reverse=not lower)
    best, second = order[:2]
    diff = _lead(best, second, lower, measure)
    return {"pick_seeds": pick, "measure_seeds": measure, "best": best["setting"], "runner_up": second["setting"],
            "lead": diff.estimate, "lead_ci": diff.ci, "lead_width": diff.width, "lead_p": diff.p_value,
            "method": diff.method, "verdict": verdict(diff, names=(best["setting"], second["setting"]), word="better")}


def winners(rows: Sequence[dict[str, Any]], metric: str, varied: Sequence[str],
            per: str = "n_train", base: Optional[dict[str, Any]] = None) -> list[dict[str, Any]]:
    """For each value of `per` (data size): the best setting on `metric`, its lead over the runner-up with
    the interval of the lead (paired over shared seeds, Welch otherwise), and what that interval says.

    The best and the runner-up are chosen by their means on the same seeds the lead is measured on, which
    makes the lead optimistic; `selection` says so, and `held_out` (with >= 4 seeds shared by every setting)
    measures the lead again on seeds not used to choose (`held_out_lead`).

    Returns one dict per data size: {per, metric, lower_is_better, n_settings, best, runner_up, lead, lead_ci,
    lead_width, lead_p, method ("paired", "welch" or "none"), verdict, selection, held_out}. `lead` is
    positive where the best is better, whichever way the metric points.
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
        entry = {per: size, "metric": metric, "lower_is_better": lower, "n_settings": len(settings), "best": best,
                 "runner_up": None, "lead": None, "lead_ci": None, "lead_width": None, "lead_p": None,
                 "method": "none", "verdict": "only one setting", "selection": None, "held_out": None}
        if len(settings) > 1:
            second = settings[1]
            diff = _lead(best, second, lower)
            entry.update(runner_up=second, lead=diff.estimate, lead_ci=diff.ci, lead_width=diff.width,
                         lead_p=diff.p_value, method=diff.method,
                         verdict=verdict(diff, names=(best["setting"], second["setting"]), word="better"),
                         held_out=held_out_lead(settings, lower))
            entry["selection"] = (
                f"best and runner-up chosen by their means among {len(settings)} settings, on the same seeds the "
                "lead is measured on: the lead is optimistic"
                + ("; held_out measures it on seeds not used to choose" if entry["held_out"] else
                   "; with 4 or more seeds shared by every setting it is also measured on seeds not used to choose"))
        out.append(entry)
    return out
