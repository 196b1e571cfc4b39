"""A sweep's figures: measures against parameter count or data size, one line per setting with error
bars over seeds (against data size, one dashed line per reference prior too); and precision against
recall, each setting a point, the floors as lines."""
from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from scaleflow.evaluation.plots import new_figure, save_figure
from scaleflow.stats import mean_interval
from scaleflow.sweeps.summary import setting_label

# One panel each, all "x its real-vs-real floor" so every panel reads the same way (1 = real data).
PANELS = ("worst_ratio", "fd_ratio", "precision_ratio", "recall_ratio", "coverage_ratio", "validity_ratio")
# Options that set the parameter count: a line over params joins settings differing only in these.
SIZE_OPTIONS = ("scale", "model")


def _ok(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r.get("status") == "ok"]


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _series(rows, x: str, metric: str, line_keys: Sequence[str], base) -> dict[str, list[tuple[float, float, float]]]:
    """line label -> [(x, mean, half-width)] sorted by x; the mean over seeds at each x."""
    points: dict[str, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in _ok(rows):
        if _finite(row.get(x)) and _finite(row.get(metric)):
            points[setting_label(row, line_keys, base)][float(row[x])].append(float(row[metric]))
    out = {}
    for label, by_x in points.items():
        line = []
        for xv in sorted(by_x):
            mean, ci = mean_interval(by_x[xv])
            line.append((xv, mean, 0.0 if ci is None else (ci[1] - ci[0]) / 2))
        out[label] = line
    return out


def _reference_series(rows, x: str, metric: str) -> dict[str, list[tuple[float, float]]]:
    """Reference prior name -> [(x, mean over seeds)] of `metric` (a trial's `reference.NAME.METRIC` column). The
    reference priors are fitted to each (x, seed)'s rows once, whatever the setting: each pair counts once."""
    values: dict[str, dict[float, dict[Any, float]]] = defaultdict(lambda: defaultdict(dict))
    for row in _ok(rows):
        for key, value in row.items():
            name, _, measure = key.removeprefix("reference.").partition(".")
            if key.startswith("reference.") and measure == metric and _finite(value) and _finite(row.get(x)):
                values[name][float(row[x])][row.get("seed")] = float(value)
    return {name: [(xv, float(np.mean(list(by_seed.values())))) for xv, by_seed in sorted(by_x.items())]
            for name, by_x in values.items()}


def _spans_decades(rows, x: str) -> bool:
    values = [float(r[x]) for r in _ok(rows) if _finite(r.get(x)) and r[x] > 0]
    return bool(values) and max(values) / min(values) >= 4


def _panel_grid(n_panels: int, cols: int = 3):
    """A figure with a grid of `n_panels` axes, `cols` per row; returns (figure, flat axes)."""
    fig = new_figure(5.0 * cols, 3.6 * math.ceil(n_panels / cols))
    return fig, fig.subplots(math.ceil(n_panels / cols), cols, squeeze=False).ravel()


def _finish_grid(fig, axes, n_panels: int, path: str | Path, legend_columns: int) -> Path:
    """Hide the unused axes, put the first panel's legend under the grid, save."""
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncol=min(legend_columns, len(labels)), fontsize=8)
    return save_figure(fig, path)


def plot_measures_vs(rows: Sequence[dict[str, Any]], x: str, varied: Sequence[str], path: str | Path,
                     panels: Sequence[str] = PANELS, base: Optional[dict[str, Any]] = None) -> Path:
    """Each measure (a panel) against `x` ("params" or a numeric option), a line per setting of the other
    varied options, error bars = 95% t interval over seeds (none with one seed); x log-scaled when
    it spans a factor of 4 or more."""
    excluded = {x, "seed", *(SIZE_OPTIONS if x == "params" else ())}
    line_keys = [k for k in varied if k not in excluded]
    fig, axes = _panel_grid(len(panels))
    for ax, metric in zip(axes, panels):
        for i, (label, line) in enumerate(sorted(_series(rows, x, metric, line_keys, base).items())):
            xs, ys, errs = (np.array(v) for v in zip(*line))
            ax.errorbar(xs, ys, yerr=errs, marker="o", capsize=3, color=f"C{i % 10}", label=label)
        if x == "n_train":  # the reference priors at each data size (dashed, grey): what a classical model does
            for j, (name, line) in enumerate(sorted(_reference_series(rows, x, metric).items())):
                xs, ys = (np.array(v) for v in zip(*line))
                ax.plot(xs, ys, ls="--", marker="x", color=str(0.15 + 0.2 * j), lw=1, label=f"ref {name}")
        if metric.endswith("_ratio"):
            ax.axhline(1.0, color="0.5", ls="--", lw=1)  # the floor: real data against real data
        if x == "params" or _spans_decades(rows, x):
            ax.set_xscale("log")
        ax.set_xlabel(x)
        ax.set_title(f"{metric.removesuffix('_ratio')} / floor" if metric.endswith("_ratio") and metric in PANELS
                     else metric)
        ax.grid(alpha=0.3)
    return _finish_grid(fig, axes, len(panels), path, legend_columns=3)


def plot_precision_recall(rows: Sequence[dict[str, Any]], varied: Sequence[str], path: str | Path,
                          base: Optional[dict[str, Any]] = None) -> Path:
    """Precision against recall (both / their floors), one point per setting with seed error bars."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for row in _ok(rows):
        if _finite(row.get("precision_ratio")) and _finite(row.get("recall_ratio")):
            groups[setting_label(row, varied, base)].append(row)
    fig = new_figure(8.0, 6.5)
    ax = fig.add_subplot()
    for i, (label, members) in enumerate(sorted(groups.items())):
        (px, pci), (rx, rci) = (mean_interval([m[k] for m in members]) for k in ("precision_ratio", "recall_ratio"))
        ax.errorbar(rx, px, xerr=0 if rci is None else (rci[1] - rci[0]) / 2,
                    yerr=0 if pci is None else (pci[1] - pci[0]) / 2, marker="o", capsize=3,
                    color=f"C{i % 10}", label=label)
    ax.axhline(1.0, color="0.5", ls="--", lw=1)
    ax.axvline(1.0, color="0.5", ls="--", lw=1)
    ax.set_xlabel("recall / floor")
    ax.set_ylabel("precision / floor")
    ax.set_title("precision vs recall (1, 1 = as good as real data)")
    ax.grid(alpha=0.3)
    if groups:
        ax.legend(fontsize=7, loc="best")
    return save_figure(fig, path)


def draw_sweep_figures(rows: Sequence[dict[str, Any]], varied: Sequence[str], folder: str | Path,
                       base: Optional[dict[str, Any]] = None) -> list[Path]:
    """Every figure the rows support (settings labelled by how they differ from `base`, if given) into `folder`: measures vs params, vs each numeric varied option
    (n_train, steps, noise_scale, ...), and precision vs recall. Returns the paths written."""
    folder = Path(folder)
    written = []
    if not _ok(rows):
        return written
    written.append(plot_measures_vs(rows, "params", varied, folder / "measures_vs_params.png", base=base))
    for option in varied:  # data size, steps, noise scale, lr, ...: every numeric axis gets its figure
        values = {r.get(option) for r in _ok(rows)}
        if len(values) > 1 and all(_finite(v) for v in values):
            written.append(plot_measures_vs(rows, option, varied, folder / f"measures_vs_{option}.png", base=base))
    written.append(plot_precision_recall(rows, varied, folder / "precision_vs_recall.png", base))
    return written


# The optimizer scale study's panels (the `vit` task): against parameter count, a line per optimizer.
SCALE_STUDY_PANELS = ("test_acc", "gap_acc", "effective_rank_ratio.hidden", "update_effective_rank_ratio.hidden",
                      "mlp_near_zero", "mlp_hoyer", "steps_per_second", "train_seconds", "peak_rss_mb")
EVOLUTION_PANELS = ("test_acc", "gap_acc", "effective_rank_ratio.hidden", "update_effective_rank_ratio.hidden",
                    "mlp_near_zero", "mlp_hoyer")


def plot_evolution(records: Sequence[dict[str, Any]], varied: Sequence[str], path: str | Path,
                   panels: Sequence[str] = EVOLUTION_PANELS) -> Optional[Path]:
    """Each measure against the epoch at a trial's checkpoints, a line per setting (seeds averaged, with
    95% t error bars); None when no trial recorded checkpoints."""
    keys = [k for k in varied if k != "seed"]
    series: dict[str, dict[float, dict[str, list[float]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for record in records:
        if record.get("status") != "ok":
            continue
        label = setting_label(record["config"], keys)
        for point in (record.get("result") or {}).get("checkpoints", []):
            for metric in panels:
                if _finite(point["columns"].get(metric)):
                    series[label][round(point["epoch"], 6)][metric].append(float(point["columns"][metric]))
    if not series:
        return None
    fig, axes = _panel_grid(len(panels))
    for ax, metric in zip(axes, panels):
        for i, (label, by_epoch) in enumerate(sorted(series.items())):
            points = [(e, *mean_interval(v[metric])) for e, v in sorted(by_epoch.items()) if v.get(metric)]
            if not points:
                continue
            xs = np.array([p[0] for p in points])
            ys = np.array([p[1] for p in points])
            errs = np.array([0.0 if p[2] is None else (p[2][1] - p[2][0]) / 2 for p in points])
            ax.errorbar(xs, ys, yerr=errs, marker="o", ms=3, capsize=2, color=f"C{i % 10}", label=label)
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
    return _finish_grid(fig, axes, len(panels), path, legend_columns=4)


def draw_scale_study_figures(rows: Sequence[dict[str, Any]], records: Sequence[dict[str, Any]],
                             varied: Sequence[str], folder: str | Path) -> list[Path]:
    """The `vit` task's figures: `scale_study.png` (measures against parameter count, a line per optimizer,
    seed error bars) and, when trials recorded checkpoints, `evolution.png` (measures against the epoch)."""
    folder = Path(folder)
    if not _ok(rows):
        return []
    panels = SCALE_STUDY_PANELS
    if any(_finite(r.get("train_peak_cuda_mb")) for r in rows):  # on a GPU, its memory is the one that limits
        panels = tuple("train_peak_cuda_mb" if p == "peak_rss_mb" else p for p in panels)
    written = [plot_measures_vs(rows, "params", varied, folder / "scale_study.png", panels=panels)]
    evolution = plot_evolution(records, varied, folder / "evolution.png")
    return written + ([evolution] if evolution else [])
