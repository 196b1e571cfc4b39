"""`scaleflow demo`: the whole product on the built-in data: train, evaluate, figures, next steps."""
from __future__ import annotations

import shlex
from importlib import resources
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from scaleflow.cli.compare import compare
from scaleflow.cli.errors import user_errors
from scaleflow.cli.evaluate import evaluate_and_save, fd_summary, parse_nfe_solvers, reference_summary, report_table
from scaleflow.reference.scoring import DEFAULT_REFERENCES, parse_references
from scaleflow.training.config import ConfigError, make_config
from scaleflow.training.run import train

DEMO_CONFIG = resources.files("scaleflow").joinpath("configs", "demo.yaml")
# rk4 and dopri5 cost 70% of the full curve's network evaluations (252 + 206 of 650 at n = 1,000), about 50 s of
# the demo on 2 cores; the two solvers a user picks between keep the figure.
DEMO_NFE_SOLVERS = ("euler", "heun")
# Up to 16 steps: at 32 the curve is flat on the default prior (FD within its interval of 16 steps' for both
# solvers) and its two points cost 95 of the evaluation's ~340 network evaluations.
DEMO_NFE_STEPS = (1, 2, 4, 8, 16)


@user_errors
def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", help="run folder of the demo"),
    steps: Optional[int] = typer.Option(None, help="training steps (default: configs/demo.yaml)"),
    arch: Optional[str] = typer.Option(None, help="velocity network (default: configs/demo.yaml)"),
    scale: Optional[str] = typer.Option(None, help="tiny | small | base"),
    bootstrap: int = typer.Option(200, help="bootstrap resamples of the evaluation"),
    reference: str = typer.Option(",".join(DEFAULT_REFERENCES), "--reference",
                                  help="reference priors scored beside the prior (comma-separated; none skips)"),
    nfe_solvers: str = typer.Option(",".join(DEMO_NFE_SOLVERS), "--nfe-solvers",
                                    help="solvers of the quality-vs-steps figure (scaleflow eval draws all four)"),
) -> None:
    """Train the default prior on the built-in data, evaluate it against held-out data, draw figures.

    Re-running continues an interrupted demo, or re-evaluates a finished one.
    """
    console = Console(stderr=True, soft_wrap=True)  # paths are never broken across lines
    try:  # options are checked before the training they would otherwise follow
        references = parse_references(reference)
    except ValueError as err:
        raise ConfigError(f"--reference: {err}") from None
    curve_solvers = parse_nfe_solvers(nfe_solvers)
    with resources.as_file(DEMO_CONFIG) as path:
        config = make_config({"steps": steps, "arch": arch, "scale": scale, "out": str(out)}, yaml_path=path)
    if (out / "summary.json").exists():
        console.print(f"[bold]1/3[/] {out} is already trained; evaluating it again")
    else:
        resume = (out / "config.yaml").exists()  # also a demo killed before its first checkpoint: from step 0
        console.print(f"[bold]1/3[/] {'resuming' if resume else 'training'} {config.arch}/{config.scale} with "
                      f"{config.flow} on the built-in data ({config.steps} steps) -> {out}")
        summary = train(config, out, resume=resume)
        console.print(f"    best val loss {summary['best_val_loss']:.4f} vs {summary['baseline_val_loss']:.4f} for "
                      f"the best constant predictor, in {summary['wall_seconds']:.0f}s")
    console.print("[bold]2/3[/] sampling and evaluating against the held-out test split")
    report = evaluate_and_save(out, bootstrap=bootstrap, references=references,
                               nfe_solvers=curve_solvers, nfe_steps=DEMO_NFE_STEPS)
    Console().print(report_table(report, f"{out} vs the test split (floor = real training rows vs the same test rows)"))
    console.print("[bold]3/3[/] figures")
    compare([out], out=str(out / "figures"), draw_map=True, quiet=True)
    validity, run = report["validity"], shlex.quote(str(out))
    console.print(
        f"\n{fd_summary(report)}.\n{reference_summary(report) or 'no reference prior scored'}.\nValidity {validity['value']:.3f} (real rows: {validity['floor']:.3f}): the share of "
        f"samples as close to a real test row as 95% of real rows are.\n"
        f"run folder: {out}   evaluation: {out / 'eval.json'}   figures: {out / 'figures'}\n"
        f"next: scaleflow sample {run} --n 1000 --neighbors 3 --out samples.npy\n"
        f"      scaleflow train --arch mlp --scale small --out runs/mlp && scaleflow eval runs/mlp "
        f"&& scaleflow compare {run} runs/mlp", soft_wrap=True, highlight=False, markup=False,
    )
