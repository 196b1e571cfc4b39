"""A sweep folder's outputs, drawn from its records alone (so `sweep summarize` redraws them any time):
`results.csv`, the figures, and `summary.json` with the winner per data size."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scaleflow.files import read_json, write_json
from scaleflow.sweeps.plots import draw_scale_study_figures, draw_sweep_figures
from scaleflow.sweeps.records import ResultStore
from scaleflow.sweeps.scale_study import answer_questions
from scaleflow.sweeps.spec import SweepSpec
from scaleflow.sweeps.summary import (aggregate, check_metric, flatten, lower_is_better, winners, write_csv,
                                     write_parquet)
from scaleflow.sweeps.tasks import TASKS
from scaleflow.training.config import ConfigError


@dataclass
class SweepSummary:
    """What `summarize_sweep` found and wrote."""

    spec: SweepSpec
    rows: list[dict[str, Any]]
    varied: list[str]  # the options that take more than one value among the trials (seed aside)
    metric: str
    settings: list[dict[str, Any]]  # `summary.aggregate` of the metric, best first
    winners: list[dict[str, Any]]
    written: list[Path] = field(default_factory=list)
    per: str = "n_train"  # what the winners are found at (data size; scale for the vit task)
    table_columns: tuple[str, ...] = ()
    questions: dict[str, Any] = field(default_factory=dict)  # the vit task's answers (scale_study)
    n_died: int = 0  # trials whose process was killed from outside, left for a rerun to retry (`sweeps.ledger`)

    @property
    def n_failed(self) -> int:
        return sum(r["status"] == "failed" for r in self.rows)



def varied_options(spec: SweepSpec, rows: list[dict[str, Any]]) -> list[str]:
    """The axes, in spec order, that take more than one value among the recorded trials."""
    return [k for k in spec.axes if len({str(r.get(k)) for r in rows}) > 1]


def summarize_sweep(folder: str | Path, metric: str | None = None) -> SweepSummary:
    """Read `folder`'s spec.json and results.jsonl; write results.csv, figures/ and summary.json.
    `metric` ranks the settings (default: the task's, worst_ratio for `train`, test_acc for `vit`); a
    `vit` sweep's summary also answers the scale study's four questions.

    Raises:
        ConfigError: not a sweep folder, or a metric no trial recorded.
    """
    folder = Path(folder)
    if not (folder / "spec.json").exists():
        raise ConfigError(f"{folder}: not a sweep folder (no spec.json); run `scaleflow sweep SPEC.yaml --out {folder}`")
    spec = SweepSpec(**read_json(folder / "spec.json"))
    task = TASKS[spec.task]
    metric = metric or task.default_metric
    latest = {r["id"]: r for r in ResultStore(folder).records() if r.get("status") in ("ok", "failed", "died")}
    # A died trial (killed from outside) is waiting for a rerun: counted, never scored as a failed setting.
    n_died = sum(r["status"] == "died" for r in latest.values())
    latest = {tid: r for tid, r in latest.items() if r["status"] != "died"}
    rows = [flatten(r) for r in latest.values()]
    if not rows:
        raise ConfigError(f"{folder}: no finished trial yet")
    check_metric(metric, rows, spec.task)
    varied = varied_options(spec, rows)
    write_csv(rows, folder / "results.csv")
    write_parquet(rows, folder / "results.parquet")
    if spec.task == "vit":
        figures = draw_scale_study_figures(rows, list(latest.values()), varied, folder / "figures")
        questions = answer_questions(rows, [k for k in varied if k not in ("scale", "optimizer")])
    else:
        figures, questions = draw_sweep_figures(rows, varied, folder / "figures", spec.base), {}
    written = [folder / "results.csv", folder / "results.parquet", *figures]
    settings = aggregate(rows, metric, varied, spec.base)
    settings.sort(key=lambda g: (g["mean"] is None, (g["mean"] or 0) * (1 if lower_is_better(metric) else -1)))
    summary = SweepSummary(spec, rows, varied, metric, settings,
                           winners(rows, metric, varied, per=task.per, base=spec.base), written, task.per,
                           task.table_columns, questions, n_died)
    write_json(folder / "summary.json", {"metric": metric, "varied": varied, "n_trials": len(rows),
                                         "n_failed": summary.n_failed, "n_died": summary.n_died, "settings": settings,
                                         "winners": summary.winners, **({"questions": questions} if questions else {})})
    written.append(folder / "summary.json")
    return summary
