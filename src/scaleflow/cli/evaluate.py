"""`scaleflow eval RUN`: sample the run, score the samples against its test split, write eval.json."""
from __future__ import annotations

import math
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from scaleflow.cli.errors import user_errors
from scaleflow.evaluation.evaluate import METRICS, evaluate
from scaleflow.sampling.solvers import SOLVERS
from scaleflow.training.config import ConfigError
from scaleflow.files import write_json, write_safetensors
from scaleflow.training.run import load_run, resolve_device


def report_table(report: dict, title: str) -> Table:
    """Rich table: metric, value, 95% CI, floor, and value/floor where that ratio means something."""
    table = Table(title=title)
    for column, justify in (("metric", "left"), ("value", "right"), ("95% CI", "right"), ("floor", "right"), ("ratio", "right")):
        table.add_column(column, justify=justify)
    for name in METRICS:
        m = report[name]
        floor = m["floor"]
        ratio = m["value"] / floor if floor not in (None, 0) and math.isfinite(floor) and floor > 0 else None
        table.add_row(name, f"{m['value']:.4g}", f"[{m['ci'][0]:.4g}, {m['ci'][1]:.4g}]",
                      "-" if floor is None else f"{floor:.4g}", "-" if ratio is None else f"{ratio:.2f}x")
    return table


def evaluate_and_save(run_dir: Path, n: int | None = None, solver: str = "heun", steps: int = 20, bootstrap: int = 200,
                      seed: int = 0, nfe_curve: bool = True, device: str = "auto") -> dict:
    """Evaluate the run in `run_dir`, write `eval.json` and `eval_samples.safetensors`, return the report."""
    if solver not in SOLVERS:
        raise ConfigError(f"--solver {solver!r}: choose one of {', '.join(SOLVERS)}")
    target = resolve_device(device)
    run = load_run(run_dir, device=target)
    report, generated = evaluate(run, n, solver, steps, bootstrap, seed, device=target,
                                 nfe_solvers=("euler", "heun", "rk4", "dopri5") if nfe_curve else ())
    write_json(run_dir / "eval.json", report)
    write_safetensors(run_dir / "eval_samples.safetensors", {"generated": generated})
    return report


@user_errors
def eval_command(
    run: Path = typer.Argument(..., help="run folder written by `scaleflow train`"),
    n: int = typer.Option(0, "--n", help="samples to generate (0: as many as the test split has)"),
    solver: str = typer.Option("heun", help=f"ODE solver: {' | '.join(SOLVERS)}"),
    steps: int = typer.Option(20, help="solver steps"),
    bootstrap: int = typer.Option(200, help="bootstrap resamples for the 95% intervals"),
    seed: int = typer.Option(0, help="noise and bootstrap seed"),
    nfe_curve: bool = typer.Option(True, "--nfe-curve/--no-nfe-curve", help="also measure quality vs solver steps"),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
) -> None:
    """Sample the run and score the samples against its held-out test split, each metric next to its floor."""
    if n < 0 or bootstrap < 1 or steps < 1:
        raise ConfigError("--n must be >= 0, --bootstrap and --steps >= 1")
    report = evaluate_and_save(run, n or None, solver, steps, bootstrap, seed, nfe_curve, device)
    console = Console()
    settings = report["settings"]
    console.print(report_table(report, f"{run}: {settings['n_generated']} samples vs {settings['n_test']} test rows "
                                       f"({solver}, {settings['nfe']} NFE)"))
    fd = report["fd"]
    console.print(f"Frechet distance {fd['value']:.4g} is {fd['value'] / fd['floor']:.2f}x the real-vs-real floor "
                  f"({fd['floor']:.4g}); wrote {run / 'eval.json'}")
