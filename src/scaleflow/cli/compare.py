"""`scaleflow compare RUN...`: runs side by side: a table of their eval metrics and four figures
(training curves, metric bars, quality vs NFE, a 2-D map of generated vs real test points)."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from scaleflow.cli.errors import user_errors
from scaleflow.data.normalization import normalization_from_tensors
from scaleflow.evaluation.plots import plot_embedding_map, plot_metric_bars, plot_quality_vs_nfe, plot_training_curves
from scaleflow.evaluation.ranking import novelty_ratio, worst_ratio
from scaleflow.evaluation.report import FD_NOTE, HIGHER_IS_BETTER, LOWER_IS_BETTER, metric_entries, metric_names
from scaleflow.training.config import ConfigError
from scaleflow.files import read_json, read_safetensors
from scaleflow.training.run import load_run



@dataclass
class RunFiles:
    """What `compare` reads from one run folder (no network is built)."""

    path: Path
    label: str
    info: dict                # model.json
    summary: dict             # summary.json, {} while training
    records: list[dict]       # metrics.jsonl
    report: Optional[dict]    # eval.json, None before `scaleflow eval`
    samples: Optional[Path]   # eval_samples.safetensors: "generated" [n, D], normalized space


def _read_records(path: Path) -> list[dict]:
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
            if isinstance(record, dict):
                records.append(record)
        except json.JSONDecodeError:  # a run killed mid-write can leave a torn last line
            continue
    return records


def read_run(path: Path, label: str) -> RunFiles:
    """Read a run folder's metadata, metrics and (if evaluated) its report; ConfigError if not a run."""
    if not path.is_dir() or not (path / "model.json").exists():
        raise ConfigError(f"{path}: not a scaleflow run folder (no model.json); pass folders written by `scaleflow train`")
    report = read_json(path / "eval.json") if (path / "eval.json").exists() else None
    samples = path / "eval_samples.safetensors"
    return RunFiles(path, label, read_json(path / "model.json"),
                    read_json(path / "summary.json") if (path / "summary.json").exists() else {},
                    _read_records(path / "metrics.jsonl"), report, samples if samples.exists() else None)


def _labels(paths: list[Path]) -> list[str]:
    """Folder names, or full paths where two runs share a name (a/run, b/run)."""
    names = [p.name or str(p) for p in paths]
    return [n if names.count(n) == 1 else str(p) for n, p in zip(names, paths)]


def _fmt(x) -> str:
    if isinstance(x, float):
        return f"{x:.4g}"
    if isinstance(x, int) and abs(x) >= 10_000:
        return f"{x:,}"
    return "-" if x is None else str(x)


def _interval(ci) -> str:
    return f" [{_fmt(ci[0])}, {_fmt(ci[1])}]" if ci else ""


def _cell(entry: Optional[dict]) -> str:
    """`value [lo, hi] (floor f [lo, hi])`, the floor dimmed; "-" when the report lacks the metric."""
    if not entry:
        return "-"
    text = escape(_fmt(entry["value"]) + _interval(entry.get("ci")))  # "[nan, ...]" would parse as markup
    if entry.get("floor") is None:
        return text
    return text + f" [dim]{escape('(floor ' + _fmt(entry['floor']) + _interval(entry.get('floor_ci')) + ')')}[/]"


def _overlap(a, b) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]


def _best(name: str, values: list[Optional[float]], intervals: Optional[list] = None) -> Optional[int]:
    """The run with the best value of a metric that has a direction; with `intervals` (one [lo, hi] or None
    per run), only a run whose interval overlaps no other run's: two runs are compared by their intervals."""
    finite = [(v, i) for i, v in enumerate(values) if v is not None and math.isfinite(v)]
    if len(finite) < 2 or name not in LOWER_IS_BETTER | HIGHER_IS_BETTER:
        return None
    best = (min if name in LOWER_IS_BETTER else max)(finite)[1]
    if intervals is not None and intervals[best]:
        if any(intervals[i] and _overlap(intervals[best], intervals[i]) for _, i in finite if i != best):
            return None
    return best


def _rank_cells(reports: list[Optional[dict]]) -> dict[str, list[str]]:
    """Rows for the ranking rule (`evaluation.ranking`): the worst ratio to the floors with its binding
    measure, and the novelty term; "-" where a report lacks a term."""
    worst, novelty = [], []
    for report in reports:
        value, binding = worst_ratio(report) if report else (None, None)
        worst.append("-" if value is None else f"{value:.3g} ({binding})")
        ratio = novelty_ratio(report["memorization"]) if report and report.get("memorization") else None
        novelty.append("-" if ratio is None else f"{ratio:.3g}")
    return {"worst_ratio": worst, "novelty_ratio": novelty}


def comparison_table(runs: list[RunFiles]) -> Table:
    """Rows: a header block (arch, scale, params, steps, best val loss), one row per metric, then the ranking
    rule's worst ratio (with its binding measure) and novelty term; columns: runs. The best value of a
    metric with a direction is bold green where its interval overlaps no other run's."""
    table = Table(title="runs compared (95% CI; floor = real-vs-real)")
    table.add_column("", style="bold")
    for run in runs:
        table.add_column(escape(run.label), overflow="fold")
    header = {
        "arch": [r.info.get("arch") for r in runs],
        "scale": [r.info.get("scale") for r in runs],
        "params": [r.info.get("params") for r in runs],
        "steps": [r.summary.get("steps") for r in runs],
        "best_val_loss": [r.summary.get("best_val_loss") for r in runs],
    }
    for i, (name, values) in enumerate(header.items()):
        table.add_row(name, *[_fmt(v) for v in values], end_section=i == len(header) - 1)
    rows = [metric_entries(r.report) if r.report else {} for r in runs]
    for name in metric_names(r.report for r in runs if r.report):
        entries = [row.get(name) for row in rows]
        best = _best(name, [e["value"] if e else None for e in entries], [e.get("ci") if e else None for e in entries])
        cells = [_cell(e) for e in entries]
        if best is not None:
            cells[best] = f"[bold green]{cells[best]}[/]"
        table.add_row(name, *cells)
    if any(r.report for r in runs):
        for name, cells in _rank_cells([r.report for r in runs]).items():
            table.add_row(name, *cells, style="italic")
    return table


def _map_inputs(runs: list[RunFiles], note: Callable[[str], None]) -> Optional[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """The first run's normalized test rows `[N, D]` and every evaluated run's samples `[M, D]` moved
    into the first run's normalized space; None (with a note) when the map cannot be drawn."""
    with_samples = [r for r in runs if r.samples is not None]
    if not with_samples:
        note("map skipped: no run has eval_samples.safetensors (run `scaleflow eval RUN` first)")
        return None
    dims = {r.label: r.info.get("input_dim") for r in runs}
    if len(set(dims.values())) > 1:
        note(f"map skipped: the runs have different dimensions ({', '.join(f'{k}: {v}' for k, v in dims.items())})")
        return None
    if len({r.info.get("data_source") for r in runs}) > 1:
        note(f"map: runs were trained on different data; real points are {runs[0].label}'s test split")
    try:
        first = load_run(runs[0].path)
        real = first.data().test.numpy()
    except (ValueError, FileNotFoundError) as err:  # e.g. the data file moved; the other figures still stand
        note(f"map skipped: cannot read {runs[0].label}'s test split ({err})")
        return None
    generated = {}
    for run in with_samples:
        tensors = read_safetensors(run.samples)
        if "generated" not in tensors:
            raise ConfigError(f"{run.samples}: has no 'generated' tensor; rerun `scaleflow eval {run.path}`")
        # Each run standardizes with its own training rows; compare in one space.
        own = normalization_from_tensors(read_safetensors(run.path / "normalization.safetensors"))
        generated[run.label] = first.standardizer.transform(own.inverse_transform(tensors["generated"])).numpy()
    return real, generated


@user_errors
def compare(
    runs: list[Path] = typer.Argument(..., help="run folders (from `scaleflow train`, metrics from `scaleflow eval`)"),
    out: Optional[str] = typer.Option(None, "--out", help="figure folder (default: RUN/figures for one run, else ./compare)"),
    draw_map: bool = typer.Option(True, "--map/--no-map", help="draw map.png (t-SNE; UMAP if umap-learn is installed)"),
    quiet: bool = typer.Option(False, "--quiet", help="no table; print only notes and figure paths"),
) -> None:
    """Compare runs side by side: their eval metrics in one table, and curves/metrics/NFE/map figures."""
    if out is not None and not out.strip():
        raise ConfigError("--out: give a folder path, not an empty string")
    unique = list(dict.fromkeys(runs))
    loaded = [read_run(p, label) for p, label in zip(unique, _labels(unique))]
    out = Path(out) if out is not None else (unique[0] / "figures" if len(unique) == 1 else Path("compare"))
    console, err = Console(), Console(stderr=True)

    def note(text: str) -> None:  # a warning, not a failure: compare what the runs do have
        err.print(f"[yellow]note:[/] {escape(text)}", highlight=False, soft_wrap=True)

    for run in loaded:
        if run.report is None:
            note(f"{run.label}: no eval.json, so no metrics; run `scaleflow eval {run.path}` first")
        if not run.records:
            note(f"{run.label}: no metrics.jsonl records yet")
    evaluated = {r.label: r.report for r in loaded if r.report is not None}
    curves = {r.label: r.records for r in loaded if r.records}
    if not evaluated and not curves:
        raise ConfigError(f"nothing to compare: none of {', '.join(map(str, unique))} has metrics.jsonl or eval.json yet")
    if not quiet:
        console.print(comparison_table(loaded))
        if evaluated:
            console.print(f"{FD_NOTE} The best run of a metric is marked only where its interval overlaps no "
                          "other run's.", highlight=False, soft_wrap=True)

    written = []
    if curves:
        written.append(plot_training_curves(curves, out / "curves.png"))
    if evaluated and not metric_names(evaluated.values()):
        note(f"metrics.png skipped: no eval.json of {', '.join(evaluated)} holds a metric value")
    elif evaluated:
        written.append(plot_metric_bars(evaluated, out / "metrics.png"))
        if any(report.get("nfe_curve") for report in evaluated.values()):
            written.append(plot_quality_vs_nfe(evaluated, out / "nfe.png"))
        else:
            note("nfe.png skipped: no run has an nfe_curve (evaluated with --no-nfe-curve)")
    if draw_map and (inputs := _map_inputs(loaded, note)) is not None:
        written.append(plot_embedding_map(*inputs, out / "map.png"))
    for path in written:
        console.print(f"wrote {escape(str(path))}", highlight=False, soft_wrap=True)
