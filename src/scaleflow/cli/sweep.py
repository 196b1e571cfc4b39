"""`scaleflow sweep SPEC.yaml --out DIR` runs a sweep (resuming a killed one); `scaleflow sweep summarize
DIR` redraws its table, figures and winners from the records."""
from __future__ import annotations

import math
import shlex
from pathlib import Path
from typing import Any, Optional

import typer
import yaml
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from scaleflow.cli.errors import user_errors
from scaleflow.data.errors import DataError
from scaleflow.sweeps.design import expand
from scaleflow.sweeps.environment import usable_cores
from scaleflow.sweeps.ledger import MAX_DEATHS, one_line
from scaleflow.sweeps.local import run_sweep, threads_per_job
from scaleflow.sweeps.ray_runner import run_sweep_ray
from scaleflow.sweeps.records import ResultStore, trial_id
from scaleflow.sweeps.report import SweepSummary, summarize_sweep
from scaleflow.sweeps.spec import SweepSpec, load_sweep
from scaleflow.sweeps.scale_study import question_lines
from scaleflow.sweeps.summary import aggregate, check_metric, flatten
from scaleflow.sweeps.tasks import TASKS, check_trial
from scaleflow.training.config import ConfigError, validation_message
from scaleflow.training.logger import log_finished_run, require_wandb


def default_jobs() -> int:
    """One trial per core, one thread each: on 2 cores 2 jobs x 1 thread ran 260 trials/hour against
    193 for 1 job x 2 threads (benchmarks/sweep_throughput.py, BENCHMARKS.md)."""
    return usable_cores()


def _number_or_text(value: Any) -> Any:
    """YAML 1.1 reads `1e-3` as text; a researcher means the number."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _yaml(text: str, flag: str, pair: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{flag} {pair!r}: not a YAML value ({' '.join(str(err).split())[:200]})") from None


def _parse_axis(pair: str) -> tuple[str, list[Any]]:
    key, sep, values = pair.partition("=")
    if not sep or not key.strip() or not values.strip():
        raise ConfigError(f"--axis {pair!r}: expected NAME=V1,V2,..., e.g. --axis arch=mlp,dit")
    parsed = _yaml(f"[{values}]", "--axis", pair)  # a YAML list: values may be lists themselves, [0.9, 0.99]
    return key.strip(), [_number_or_text(v) for v in parsed]


def _parse_set(pair: str) -> tuple[str, Any]:
    key, sep, value = pair.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {pair!r}: expected NAME=VALUE, e.g. --set steps=500")
    return key.strip(), _number_or_text(_yaml(value, "--set", pair))


def build_spec(path: Optional[Path], axes: list[str], fixed: list[str], seeds: Optional[str],
               name: Optional[str], task: Optional[str] = None) -> SweepSpec:
    """The spec from the YAML file (if any) with the flags on top: --axis adds or replaces an axis,
    --set fixes an option (taking it off the axes), --seeds replaces the seeds, --task the task."""
    base = load_sweep(path).model_dump() if path is not None else {"name": "sweep", "axes": {}}
    if task is not None:
        base["task"] = task
    for key, values in map(_parse_axis, axes):
        base["fixed"] = {k: v for k, v in base.get("fixed", {}).items() if k != key}
        base["axes"][key] = values
    for key, value in map(_parse_set, fixed):
        base["axes"].pop(key, None)
        base.setdefault("fixed", {})[key] = value
        if base.get("base"):
            base["base"].pop(key, None)
    if seeds is not None:
        try:
            base["seeds"] = [int(s) for s in seeds.split(",")]
        except ValueError:
            raise ConfigError(f"--seeds {seeds!r}: expected whole numbers separated by commas, e.g. 0,1,2") from None
    if name:
        base["name"] = name
    if path is None and not base["axes"]:
        raise ConfigError("give a sweep YAML file or at least one --axis NAME=V1,V2")
    where = f"{path}: " if path is not None else ""
    try:
        return SweepSpec(**base)
    except ValidationError as err:
        raise ConfigError(validation_message(err, where or "sweep options: ", SweepSpec, "key", "sweep")) from None


def _interval(group: dict) -> str:
    if group["mean"] is None:
        return "-"
    if group["ci"] is None:
        return f"{group['mean']:.3f}"
    return f"{group['mean']:.3f} ±{(group['ci'][1] - group['ci'][0]) / 2:.3f}"


def summary_table(summary: SweepSummary) -> Table:
    """Per setting (seeds pooled), best first: the task's columns (`train`: each measure / its floor),
    mean ± half the 95% t interval."""
    what = "measures / their real-vs-real floors (1 = as good as real data; " if summary.spec.task == "train" else "("
    table = Table(title=f"{summary.spec.name}: {what}mean ± 95% interval over seeds), ranked by {summary.metric}")
    table.add_column("setting")
    table.add_column("seeds", justify="right")
    columns = [summary.metric, *(c for c in summary.table_columns if c != summary.metric)]
    for column in columns:
        table.add_column(column.removesuffix("_ratio"), justify="right")
    by_column = {c: {g["setting"]: g for g in aggregate(summary.rows, c, summary.varied, summary.spec.base)} for c in columns}
    for group in summary.settings:
        label = group["setting"]
        seeds = f"{group['n']}" + (f" ({group['n_failed']} failed)" if group["n_failed"] else "")
        table.add_row(label, seeds, *(_interval(by_column[c][label]) for c in columns))
    return table


def winner_lines(summary: SweepSummary) -> list[str]:
    """Per data size: which setting wins, by how much, what the lead's interval says (with its width and
    whether seeds were paired), that the lead is measured where it was chosen, and the lead on held-out seeds."""
    lines = []
    for w in summary.winners:
        size = w.get(summary.per)
        head = f"{summary.per}={size if size is not None else 'all'}: best on {w['metric']} is {w['best']['setting']} " \
               f"({_interval(w['best'])}, {w['best']['n']} seed(s); {w['n_settings']} setting(s) compared)"
        if w["runner_up"] is None:
            lines.append(f"{head}; the only setting")
            continue
        lines.append(f"{head}; over {w['runner_up']['setting']} by {w['lead']:.3f}: {w['verdict']}")
        lines.append(f"   note: {w['selection']}")
        held = w.get("held_out")
        if held:
            lines.append(f"   held out: order chosen on seeds {', '.join(map(str, held['pick_seeds']))}, "
                         f"{held['best']} over {held['runner_up']} by {held['lead']:.3f} on seeds "
                         f"{', '.join(map(str, held['measure_seeds']))}: {held['verdict']}")
    return lines


def _print_summary(summary: SweepSummary, folder: Path) -> None:
    screen = Console()
    if not screen.is_terminal:  # a log file: no reason to squeeze the table into 80 columns
        screen = Console(width=200)
    screen.print(summary_table(summary))
    console = Console(soft_wrap=True, highlight=False)
    for line in winner_lines(summary):
        console.print(line, markup=False)
    if summary.questions:
        console.print("The scale study's questions (95% intervals, paired over seeds; verdicts Holm-adjusted per "
                      "question):", markup=False)
        for line in question_lines(summary.questions):
            console.print(line, markup=False)
    figures = [p.name for p in summary.written if p.suffix == ".png"]
    died = (f", {summary.n_died} died: rerun the same command to retry them" if summary.n_died else "")
    console.print(f"{len(summary.rows)} trials ({summary.n_failed} failed{died}); wrote {folder / 'results.jsonl'}, "
                  f"results.csv, results.parquet, summary.json, figures/ ({', '.join(figures) or 'none'})", markup=False)


def _logging_to_wandb(on_trial, project: str, group: str, out: Path, bar_console: Optional[Console] = None):
    """`on_trial` that also logs each finished trial as one W&B run (`training.logger.log_finished_run`), from the
    sweep's own process (so local and Ray sweeps log alike)."""
    require_wandb()  # before any trial runs
    bar_console = bar_console or Console(stderr=True)

    def logged(record: dict, n_done: int, n_total: int) -> None:
        on_trial(record, n_done, n_total)
        if record["status"] == "ok":
            row = flatten(record)
            try:
                log_finished_run(project, group, record["id"], record["config"],
                                 {k: v for k, v in row.items() if k not in record["config"]}, folder=out)
            except Exception as err:  # a logging failure must not stop the sweep: the trial is recorded
                bar_console.print(f"warning: W&B logging of trial {record['id']} failed: {one_line(err)}",
                                  markup=False, highlight=False)

    return logged


def _progress_bar(total: int, done: int) -> tuple[Progress, Any]:
    bar = Progress(TextColumn("[bold]trials"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[failed]}"),
                   TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(), console=Console(stderr=True))
    task = bar.add_task("sweep", total=total, completed=done, failed="")
    counts = {"failed": 0, "died": 0}

    shown: set[str] = set()

    def on_trial(record: dict, n_done: int, n_total: int) -> None:
        status = record["status"]
        if status in counts:
            counts[status] += 1
        for warning in record.get("warnings", []):  # each distinct warning once, not once per trial
            if warning not in shown:
                shown.add(warning)
                bar.console.print(f"warning: {warning}", markup=False, highlight=False)
        bar.update(task, completed=n_done, failed=", ".join(f"{n} {k}" for k, n in counts.items() if n))
        if status == "died":  # killed from outside (OOM killer, kill -9, a lost node): a rerun retries it
            bar.console.print(f"trial {record['id']} died (attempt {record.get('attempt')} of {MAX_DEATHS}): "
                              f"{record['error']}", markup=False, highlight=False)
        elif status != "ok":
            bar.console.print(f"trial {record['id']} failed: {record['error']}", markup=False, highlight=False)

    return bar, on_trial


@user_errors
def sweep_summarize(
    folder: Path = typer.Argument(..., help="the sweep folder (holding spec.json and results.jsonl)"),
    metric: Optional[str] = typer.Option(None, "--metric", help="the measure that ranks settings (a results.csv "
                                         "column; default: the sweep task's, worst_ratio for train sweeps, test_acc "
                                         "for vit sweeps)"),
) -> None:
    """Redraw a sweep folder's outputs from its records: results.csv, results.parquet, figures/, summary.json and
    the table with intervals over seeds. Only reads the records: safe while the sweep still runs."""
    _print_summary(summarize_sweep(folder, metric), folder)


@user_errors
def sweep(
    target: Optional[str] = typer.Argument(None, help="sweep YAML file (or `summarize DIR`: see `scaleflow sweep "
                                           "summarize --help`)"),
    folder: Optional[Path] = typer.Argument(None, hidden=True),
    out: Optional[Path] = typer.Option(None, "--out", help="sweep folder (default: sweeps/<name>); rerun to resume"),
    runs: Optional[Path] = typer.Option(None, "--runs", help="folder of the trials' run folders (default: OUT/runs); "
                                        "share it between sweeps and a training done by one is only evaluated by "
                                        "the other"),
    axis: list[str] = typer.Option([], "--axis", help="NAME=V1,V2,... an axis (repeatable; replaces the file's)"),
    set_: list[str] = typer.Option([], "--set", help="NAME=VALUE an option every trial shares (repeatable)"),
    seeds: Optional[str] = typer.Option(None, "--seeds", help="seeds, e.g. 0,1,2 (replaces the file's)"),
    name: Optional[str] = typer.Option(None, "--name", help="the sweep's name"),
    task: Optional[str] = typer.Option(None, "--task", help="what each trial runs: train (a flow prior; the "
                                       "default) or vit (the optimizer scale study's classifier)"),
    checkpoints: Optional[int] = typer.Option(None, "--checkpoints", help="vit sweeps: the same analysis at K evenly "
                                              "spaced points of training too (= --set checkpoints=K)"),
    jobs: Optional[int] = typer.Option(None, "--jobs", help="trials at a time, each in its own process "
                                       "(default: one per core)"),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch threads per trial (default: cores / jobs)"),
    backend: str = typer.Option("local", "--backend", help="local | ray"),
    address: Optional[str] = typer.Option(None, "--address", help="ray: `auto` joins a running cluster "
                                          "(default: start a local Ray)"),
    cpus_per_trial: float = typer.Option(1, "--cpus-per-trial", help="ray: CPUs each trial asks for"),
    gpus_per_trial: float = typer.Option(0, "--gpus-per-trial", help="ray: GPU fraction each trial asks for"),
    metric: Optional[str] = typer.Option(None, "--metric", help="the measure that ranks settings (a results.csv "
                                         "column; default for train sweeps: the worst of FD, precision, recall, "
                                         "coverage, validity vs floors; for vit sweeps: test_acc)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="list the trials and stop"),
    wandb: bool = typer.Option(False, "--wandb/--no-wandb", help="log each finished trial as a W&B run (its options "
                               "as config, its measures as summary), grouped by the sweep's name; offline unless "
                               "WANDB_MODE says otherwise (extra [wandb])"),
    wandb_project: str = typer.Option("scaleflow", "--wandb-project", help="W&B project of --wandb"),
) -> None:
    """Run a sweep: every trial trains, samples and scores one configuration; results.jsonl, results.csv,
    figures and a table per setting with intervals over seeds. A killed sweep reruns to completion.

    `scaleflow sweep summarize DIR [--metric M]` redraws the outputs of a sweep folder.
    """
    if wandb:
        require_wandb()  # before anything is written
    if folder is not None:
        raise ConfigError(f"unexpected argument {str(folder)!r}: the sweep folder goes in --out")
    if checkpoints is not None:
        set_ = [*set_, f"checkpoints={checkpoints}"]
    spec = build_spec(Path(target) if target else None, axis, set_, seeds, name, task)
    metric = metric or TASKS[spec.task].default_metric
    check_metric(metric, task=spec.task)  # before hours of trials, not after
    trials = expand(spec)
    for options in trials:  # every trial's options checked before the first one runs
        try:
            check_trial(options, spec.task)
        except ConfigError as err:
            where = f"{target}: " if target else ""
            raise ConfigError(f"{where}trial {options}: {err}") from None
        except DataError as err:  # the same data for every trial: no need to list the trial
            raise DataError(f"{target + ': ' if target else ''}{err}") from None
    out = out or Path("sweeps") / spec.name
    if dry_run:
        console = Console(soft_wrap=True, highlight=False)
        for options in trials:
            console.print(" ".join(f"{k}={v}" for k, v in options.items()), markup=False)
        console.print(f"{len(trials)} trials -> {out}", markup=False)
        return
    jobs = default_jobs() if jobs is None else jobs
    if jobs < 1 or (threads is not None and threads < 1):
        raise ConfigError("--jobs and --threads must be >= 1")
    if backend not in ("local", "ray"):
        raise ConfigError(f"--backend {backend!r}: choose local or ray")
    if not (cpus_per_trial > 0 and gpus_per_trial >= 0 and math.isfinite(cpus_per_trial + gpus_per_trial)):
        raise ConfigError("--cpus-per-trial must be > 0 and --gpus-per-trial >= 0")
    run_trial = TASKS[spec.task](str((runs or out / "runs").resolve()))
    console = Console(stderr=True, soft_wrap=True, highlight=False)
    how = f"ray ({address or 'local'})" if backend == "ray" else \
        f"{jobs} at a time x {threads or threads_per_job(jobs)} threads"
    console.print(f"sweep {spec.name}: {len(trials)} trials ({how}) -> {out}", markup=False)
    done = len({trial_id(t) for t in trials} & ResultStore(out).done_ids())
    bar, on_trial = _progress_bar(len(trials), done)
    if wandb:
        on_trial = _logging_to_wandb(on_trial, wandb_project, spec.name, out, bar.console)
    try:
        with bar:
            if backend == "ray":
                run_sweep_ray(spec, out, run_trial, on_trial, address, cpus_per_trial, gpus_per_trial)
            else:
                run_sweep(spec, out, run_trial, on_trial, jobs=jobs, threads=threads)
    except KeyboardInterrupt:
        console.print(f"interrupted; finished trials are in {out / 'results.jsonl'}. Rerun the same command to "
                      "continue.", markup=False)
        raise typer.Exit(130) from None
    _print_summary(summarize_sweep(out, metric), out)
    console.print(f"redraw: scaleflow sweep summarize {shlex.quote(str(out))} --metric {metric}", markup=False)
