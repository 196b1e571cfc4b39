"""`scaleflow reflow RUN --out NEW`: straighten a trained flow by training on its own ODE pairs."""
from __future__ import annotations

import shlex
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from scaleflow.cli.errors import user_errors
from scaleflow.sampling.solvers import SOLVERS
from scaleflow.training.reflow import reflow as run_reflow


@user_errors
def reflow(
    run: Path = typer.Argument(..., help="trained run folder whose ODE makes the pairs"),
    out: str = typer.Option(..., "--out", help="folder of the new (reflowed) run"),
    n_pairs: Optional[int] = typer.Option(None, help="pairs to train on (default: the run's training rows)"),
    n_val_pairs: Optional[int] = typer.Option(None, help="held-out pairs to validate on (default: the run's validation rows)"),
    solver: str = typer.Option("dopri5", help=f"ODE solver for the pairs: {' | '.join(SOLVERS)}"),
    solver_steps: int = typer.Option(50, help="steps of a fixed-step solver"),
    steps: Optional[int] = typer.Option(None, help="training steps (default: the source run's)"),
    lr: Optional[float] = typer.Option(None, help="peak learning rate (default: the source run's)"),
    seed: int = typer.Option(0, help="noise seed of the pairs (their own stream: never the noise of sample/eval)"),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    quiet: bool = typer.Option(False, "--quiet", help="no progress bar"),
) -> None:
    """Rectified flow: generate (noise, sample) pairs with RUN's ODE, then train on them from RUN's weights."""
    overrides = {k: v for k, v in {"steps": steps, "lr": lr, "device": device}.items() if v is not None}
    console = Console(stderr=True)
    announce = lambda: console.print(f"reflowing {run} -> {out}", markup=False, highlight=False, soft_wrap=True)  # noqa: E731
    summary = run_reflow(run, out, n_pairs, solver, solver_steps, seed, progress=not quiet,
                         n_val_pairs=n_val_pairs, on_start=announce, **overrides)
    console.print(f"reflowed run: {out} (best val loss {summary['best_val_loss']:.4f} on held-out pairs); "
                  f"next: scaleflow eval {shlex.quote(str(out))}", markup=False, highlight=False, soft_wrap=True)
