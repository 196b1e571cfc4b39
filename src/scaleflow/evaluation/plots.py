"""Figures for comparing runs: training curves, metric bars, quality vs NFE, and a 2-D embedding map.

Each function takes plain data (metrics.jsonl records, eval.json reports, arrays), writes one PNG of
a fixed pixel size atomically and returns its path. Figures are built on the Agg canvas directly,
never through pyplot, so nothing needs a display and no global figure state leaks between calls.
Run `i` is drawn in color `Ci` in every figure, so one run keeps its color across figures.
"""
from __future__ import annotations

import importlib.util
import logging
import math
from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from scaleflow.evaluation.report import finite, metric_entries, metric_names
from scaleflow.files import atomic_write

logger = logging.getLogger(__name__)

DPI = 100
MAP_METHODS = ("auto", "tsne", "umap")


def new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: str | Path) -> Path:
    # No bbox_inches="tight": the PNG keeps exactly figsize * DPI pixels.
    path = Path(path)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=DPI))
    return path


# --- training curves ---------------------------------------------------------------------------

def plot_training_curves(runs: Mapping[str, Sequence[dict]], path: str | Path) -> Path:
    """Train loss (left) and validation loss (right, EMA solid, raw weights dashed) vs step, log-y.

    Args:
        runs: label -> metrics.jsonl records (`{"step", "loss", ...}` and `{"step", "val_loss", "val_loss_raw"}`).
    """
    fig = new_figure(11, 4)
    train_ax, val_ax = fig.subplots(1, 2)
    for i, (label, records) in enumerate(runs.items()):
        color = f"C{i}"
        train = [(r["step"], r["loss"]) for r in records if finite(r.get("loss")) and r["loss"] > 0]
        val = [(r["step"], r["val_loss"]) for r in records if finite(r.get("val_loss")) and r["val_loss"] > 0]
        raw = [(r["step"], r["val_loss_raw"]) for r in records if finite(r.get("val_loss_raw")) and r["val_loss_raw"] > 0]
        if train:
            train_ax.plot(*zip(*train), color=color, lw=1, label=label)
        if val:
            val_ax.plot(*zip(*val), color=color, lw=1.5, marker=".", label=f"{label} (EMA)")
        if raw:
            val_ax.plot(*zip(*raw), color=color, lw=1, ls="--", alpha=0.6, label=f"{label} (raw)")
    for ax, title in ((train_ax, "train loss"), (val_ax, "validation loss")):
        ax.set(title=title, xlabel="step", yscale="log")
        ax.grid(alpha=0.3, which="both")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    return save_figure(fig, path)


# --- metric bars ---------------------------------------------------------------------------------

def plot_metric_bars(reports: Mapping[str, dict], path: str | Path, metrics: Optional[Sequence[str]] = None) -> Path:
    """One panel per metric: a bar per run with its 95% CI, the real-vs-real floor dashed (when not null)
    over a gray band of the floor's 95% CI (when the report has one).

    Args:
        reports: label -> eval.json report (`{metric: {"value", "ci": [lo, hi], "floor", "floor_ci"}}`); a
            metric a report lacks is left out of its panel. FD's excess and FD_inf get panels of their own
            (`report.metric_entries`).
        metrics: panels to draw; default every metric the reports hold (`evaluate.METRICS`, in order).
    """
    metrics = metric_names(reports.values()) if metrics is None else list(metrics)
    cols = 4
    rows = math.ceil(len(metrics) / cols)
    fig = new_figure(3 * cols, 2.4 * rows)
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    labels = list(reports)
    entries = {label: metric_entries(report) for label, report in reports.items()}
    for ax, name in zip(axes, metrics):
        for i, label in enumerate(labels):
            entry = entries[label].get(name)
            if not entry or not finite(entry.get("value")):
                continue
            value, (lo, hi) = entry["value"], entry.get("ci") or [entry["value"]] * 2
            # Bootstrap intervals need not contain the point estimate; clip so error bars stay valid.
            err = [[max(value - lo, 0.0)], [max(hi - value, 0.0)]] if finite(lo) and finite(hi) else None
            ax.bar(i, value, color=f"C{i}", yerr=err, capsize=3)
            floor_lo, floor_hi = entry.get("floor_ci") or [None, None]
            if finite(floor_lo) and finite(floor_hi):
                ax.fill_between([i - 0.45, i + 0.45], floor_lo, floor_hi, color="k", alpha=0.15, lw=0)
            if finite(entry.get("floor")):
                ax.hlines(entry["floor"], i - 0.45, i + 0.45, colors="k", linestyles="--", lw=1)
        ax.set_title(name, fontsize=10)
        ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=7)
        ax.tick_params(axis="y", labelsize=7)
        ax.grid(alpha=0.3, axis="y")
    for ax in axes[len(metrics):]:
        ax.set_axis_off()
    fig.suptitle("metrics with 95% CI (dashed: real-vs-real floor, gray: its 95% CI)", fontsize=11)
    return save_figure(fig, path)


# --- quality vs NFE ------------------------------------------------------------------------------

SOLVER_STYLE = {"euler": ("-", "o"), "heun": ("--", "s"), "rk4": (":", "^"), "midpoint": ("-.", "D")}


def plot_quality_vs_nfe(reports: Mapping[str, dict], path: str | Path) -> Path:
    """Frechet distance vs number of function evaluations (log-x): a line per fixed-step solver per run,
    adaptive dopri5 as a star, and each run's FD floor dashed in the run's color.

    Args:
        reports: label -> eval.json report; uses `report["nfe_curve"]` rows `{"solver", "steps", "nfe", "fd"}`
            and `report["fd"]["floor"]`.
    """
    fig = new_figure(7, 4.5)
    ax = fig.subplots()
    positive = True
    for i, (label, report) in enumerate(reports.items()):
        color = f"C{i}"
        rows = [r for r in report.get("nfe_curve") or [] if finite(r.get("fd")) and finite(r.get("nfe"))]
        positive &= all(r["fd"] > 0 for r in rows)
        for solver in dict.fromkeys(r["solver"] for r in rows):
            points = sorted((r["nfe"], r["fd"]) for r in rows if r["solver"] == solver)
            if solver == "dopri5" or all(r["steps"] is None for r in rows if r["solver"] == solver):
                ax.scatter(*zip(*points), color=color, marker="*", s=120, zorder=3, label=f"{label} {solver}")
            else:
                ls, marker = SOLVER_STYLE.get(solver, ("-", "x"))
                ax.plot(*zip(*points), color=color, ls=ls, marker=marker, ms=4, label=f"{label} {solver}")
        floor = (report.get("fd") or {}).get("floor")
        if finite(floor):
            ax.axhline(floor, color=color, ls="--", lw=1, alpha=0.7, label=f"{label} floor")
            positive &= floor > 0
    ax.set(xscale="log", xlabel="NFE (network evaluations per sample)", ylabel="Frechet distance",
           title="sample quality vs NFE")
    if positive:  # FD spans orders of magnitude from 1 step to many; log-y only when it can
        ax.set_yscale("log")
    ax.grid(alpha=0.3, which="both")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, ncol=2)
    return save_figure(fig, path)


# --- embedding map -------------------------------------------------------------------------------

def umap_available() -> bool:
    return importlib.util.find_spec("umap") is not None


def project_2d(points: np.ndarray, method: str = "auto", seed: int = 0) -> tuple[np.ndarray, str]:
    """Project `points: [N, D]` to `[N, 2]`. Returns the coordinates and the method used ("UMAP" or "t-SNE").

    "auto" and "umap" use UMAP when `umap-learn` is installed, else fall back to t-SNE.
    """
    if method not in MAP_METHODS:
        raise ValueError(f"map method {method!r}: choose one of {', '.join(MAP_METHODS)}")
    if method in ("auto", "umap") and umap_available():
        import umap

        return umap.UMAP(n_components=2, random_state=seed).fit_transform(points), "UMAP"
    if method == "umap":
        logger.warning("umap-learn is not installed; drawing the map with t-SNE instead")
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    if points.shape[1] > 50:  # t-SNE's usual first step: PCA to 50 dims removes noise and time
        points = PCA(50, random_state=seed).fit_transform(points)
    from threadpoolctl import threadpool_limits

    perplexity = float(min(30.0, max(2.0, (len(points) - 1) / 3)))
    # One OpenMP thread: on a busy machine (training alongside) Barnes-Hut's spinning threads made a
    # 100-point map take 40 s instead of 0.2 s; single-threaded, a few thousand points take seconds.
    with threadpool_limits(1, user_api="openmp"):
        coords = TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(points)
    return coords, "t-SNE"


def plot_embedding_map(real: np.ndarray, generated: Mapping[str, np.ndarray], path: str | Path, method: str = "auto",
                       max_points: int = 1000, seed: int = 0) -> Path:
    """2-D map of real test points (gray) and each run's generated points, projected together.

    Args:
        real: `[N, D]` real (test) points.
        generated: label -> `[M, D]` generated points, same space and dimension as `real`.
        method: "auto" | "tsne" | "umap" (UMAP needs `umap-learn`; t-SNE otherwise).
        max_points: each set is subsampled (seeded) to at most this many points.
    """
    # Real points first under a key no label can take, so a run called "real" cannot collide.
    sets = [(None, np.asarray(real, dtype=np.float32))]
    sets += [(k, np.asarray(x, dtype=np.float32)) for k, x in generated.items()]
    dims = {"real" if k is None else k: x.shape[1] if x.ndim == 2 else None for k, x in sets}
    if len(set(dims.values())) != 1 or None in dims.values():
        raise ValueError(f"embedding map: every set must be [N, D] with one D; got {dims}")
    rng = np.random.default_rng(seed)
    sets = [(k, x[np.sort(rng.choice(len(x), max_points, replace=False))] if len(x) > max_points else x) for k, x in sets]
    # One projection of the pooled points, so real and generated share coordinates.
    coords, used = project_2d(np.concatenate([x for _, x in sets]), method, seed)
    fig = new_figure(7, 6.5)
    ax = fig.subplots()
    start = 0
    for i, (label, x) in enumerate(sets):
        xy = coords[start:start + len(x)]
        start += len(x)
        style = (dict(c="0.6", label=f"real test ({len(x)})") if label is None
                 else dict(color=f"C{i - 1}", label=f"{label} ({len(x)})"))
        ax.scatter(xy[:, 0], xy[:, 1], s=6, alpha=0.6, **style)
    ax.set(title=f"{used} map of real test points and generated samples", xticks=[], yticks=[])
    ax.legend(fontsize=8, markerscale=2)
    return save_figure(fig, path)
