"""`scaleflow eval RUN`: sample the run, score the samples against its test split, write eval.json."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from scaleflow.cli.errors import user_errors
from scaleflow.evaluation.evaluate import NFE_SOLVERS, NFE_STEPS, evaluate
from scaleflow.evaluation.ranking import ranked_ratios, worst_ratio
from scaleflow.evaluation.report import FD_NOTE, FD_ROWS, INTERVAL_NOTE, metric_entries, ratio_to_floor
from scaleflow.evaluation.scores import DEFAULT_K, min_samples
from scaleflow.reference.scoring import DEFAULT_REFERENCES, parse_references
from scaleflow.sampling.solvers import SOLVERS
from scaleflow.training.config import ConfigError
from scaleflow.files import write_json, write_safetensors
from scaleflow.training.run import load_run, resolve_device


def _interval(ci) -> str:
    return "-" if not ci else escape(f"[{ci[0]:.4g}, {ci[1]:.4g}]")  # "[nan, ...]" would parse as markup


def report_table(report: dict, title: str) -> Table:
    """Rich table, two rows per metric so it fits 80 columns: the value with its 95% CI and value/floor
    where that ratio means something (`report.RATIO_METRICS`: never MMD, whose real-vs-real value is ~0),
    then, dimmed, the real-vs-real floor with its own 95% CI, then (italic) the best reference prior's value
    on the same rows (`reference.scoring`) where the report has one. FD is followed by its excess over the floor
    and its value extrapolated to infinite samples (`fd_excess`, `fd_inf`)."""
    reference = report.get("reference") or {}
    best = reference.get("best")
    ref_values = reference["priors"][best]["metrics"] if best else {}
    table = Table(title=title)
    for column in ("metric", "value", "95% CI", "value/floor"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for name, m in metric_entries(report).items():
        ratio = ratio_to_floor(name, m)
        indent = "  " if name in FD_ROWS else ""
        table.add_row(indent + name, f"{m['value']:.4g}", _interval(m.get("ci")),
                      "-" if ratio is None else f"{ratio:.2f}x")
        if m.get("floor") is not None:
            table.add_row(f"{indent}  floor", f"{m['floor']:.4g}", _interval(m.get("floor_ci")), "", style="dim")
        if name in ref_values:  # the best reference prior on the same rows (a point estimate: no interval)
            ref_ratio = ratio_to_floor(name, {**m, "value": ref_values[name]})
            table.add_row(f"{indent}  ref {best}", f"{ref_values[name]:.4g}", "",
                          "-" if ref_ratio is None else f"{ref_ratio:.2f}x", style="italic")
    return table


def reference_summary(report: dict) -> Optional[str]:
    """One line on the reference priors (`reference.scoring`): each one's worst ratio and binding measure,
    the best one, and whether the run's samples rank above it; None when none was scored."""
    reference = report.get("reference") or {}
    if not reference.get("priors"):
        return None
    parts = []
    for name, prior in reference["priors"].items():
        parts.append(f"{name} {prior['worst_ratio']:.3g} ({prior['binding']})" if prior.get("worst_ratio") is not None
                     else f"{name}: {prior.get('error', 'not scored')}")
    line = f"reference priors on the same rows (worst ratio, binding): {', '.join(parts)}"
    worst, _ = worst_ratio(report)
    best = reference.get("best")
    if best and worst is not None:
        theirs = reference["priors"][best]["worst_ratio"]
        verdict = "above" if worst > theirs else "not above"
        line += f"; this run {worst:.3g} is {verdict} the best, {best} ({theirs:.3g}): a point comparison, one seed"
    return line


def _maybe_interval(ci) -> str:
    return f" {_interval(ci)}" if ci else ""  # older reports have no FD_inf interval: print none


def fd_summary(report: dict) -> str:
    """One line on the Frechet distance: value, floor, excess with interval, and FD_inf (with its interval and
    fit range) when present."""
    fd = report["fd"]
    line = f"Frechet distance {fd['value']:.4g} (real-vs-real floor {fd['floor']:.4g} at the same n)"
    if fd.get("excess") is not None:
        line += f": excess {fd['excess']:.4g} {_interval(fd['excess_ci'])}"
    if fd.get("fd_inf") is not None:
        line += (f"; extrapolated to infinite samples {fd['fd_inf']:.4g}{_maybe_interval(fd.get('fd_inf_ci'))} "
                 f"(floor {fd['floor_inf']:.4g}{_maybe_interval(fd.get('floor_inf_ci'))}")
        sizes = (fd.get("extrapolation") or {}).get("sizes")
        line += f", fit over n = {sizes[0]}..{sizes[-1]})" if sizes else ")"
    return line


def rank_summary(report: dict) -> Optional[str]:
    """One line on the ranking rule (`evaluation.ranking`): the worst ratio to the floors, its binding measure,
    and every term; None for a report that lacks a term."""
    worst, binding = worst_ratio(report)
    if worst is None:
        return None
    terms = ", ".join(f"{name} {ratio:.3g}" for name, ratio in ranked_ratios(report).items())
    return (f"rank: worst ratio to the floors {worst:.3g}, bound by {binding} ({terms}; 1 is real data's, "
            "novelty = (1 - memorization) / (1 - held-out rows' memorization), fd = floor / FD)")


def evaluate_and_save(run_dir: Path, n: int | None = None, solver: str = "heun", steps: int = 20, bootstrap: int = 200,
                      seed: int = 0, nfe_solvers: Sequence[str] = NFE_SOLVERS, device: str = "auto",
                      noise_scale: float = 1.0, references: Sequence[str] = DEFAULT_REFERENCES,
                      project_sphere: bool = False, nfe_steps: Sequence[int] = NFE_STEPS) -> dict:
    """Evaluate the run in `run_dir`, write `eval.json` and `eval_samples.safetensors`, return the report.

    `nfe_solvers`, `nfe_steps`: the solvers and step counts of the quality-vs-steps curve (no solvers: no curve).
    """
    if solver not in SOLVERS:
        raise ConfigError(f"--solver {solver!r}: choose one of {', '.join(SOLVERS)}")
    target = resolve_device(device)
    run = load_run(run_dir, device=target)
    report, generated = evaluate(run, n, solver, steps, bootstrap, seed, device=target,
                                 nfe_solvers=tuple(nfe_solvers), nfe_steps=tuple(nfe_steps),
                                 noise_scale=noise_scale, references=references, project_sphere=project_sphere)
    write_json(run_dir / "eval.json", report)
    write_safetensors(run_dir / "eval_samples.safetensors", {"generated": generated})
    return report


def parse_nfe_solvers(text: str) -> tuple[str, ...]:
    """`--nfe-solvers euler,heun` -> ("euler", "heun"); an unknown or empty list is a ConfigError."""
    names = tuple(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))  # each once, in order
    unknown = [name for name in names if name not in SOLVERS]
    if unknown or not names:
        raise ConfigError(f"--nfe-solvers {text!r}: give one or more of {', '.join(SOLVERS)}, comma-separated")
    return names


@user_errors
def eval_command(
    run: Path = typer.Argument(..., help="run folder written by `scaleflow train`"),
    n: int = typer.Option(0, "--n", help="samples to generate (0: as many as the test split has)"),
    solver: str = typer.Option("heun", help=f"ODE solver: {' | '.join(SOLVERS)}"),
    steps: int = typer.Option(20, help="solver steps"),
    bootstrap: int = typer.Option(200, help="bootstrap resamples for the 95% intervals"),
    seed: int = typer.Option(0, help="noise and bootstrap seed"),
    nfe_curve: bool = typer.Option(True, "--nfe-curve/--no-nfe-curve", help="also measure quality vs solver steps"),
    nfe_solvers: str = typer.Option(",".join(NFE_SOLVERS), "--nfe-solvers",
                                    help="solvers of the quality-vs-steps curve (comma-separated)"),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    noise_scale: float = typer.Option(1.0, "--noise-scale", help="temperature of the starting noise (< 1: more "
                                      "precise, less diverse samples)"),
    reference: str = typer.Option(",".join(DEFAULT_REFERENCES), "--reference",
                                  help="reference priors fitted to the same training rows and scored beside the run "
                                       "(cached per data and split): comma-separated of gaussian, gmm, kde, "
                                       "closed-form, or none"),
    project_sphere: bool = typer.Option(False, "--project-sphere", help="put the samples on the training rows' "
                                        "sphere (rows of one norm: a normalized encoder's) before scoring"),
) -> None:
    """Sample the run and score the samples against its held-out test split, each metric next to its floor."""
    if n < 0 or bootstrap < 1 or steps < 1:
        raise ConfigError("--n must be >= 0, --bootstrap and --steps >= 1")
    if not 0 < noise_scale < float("inf"):
        raise ConfigError(f"--noise-scale must be > 0 and finite; got {noise_scale}")
    if 0 < n < min_samples():
        raise ConfigError(f"--n {n}: too few samples; evaluation needs --n >= {min_samples()} (PRDC compares each "
                          f"sample with its {DEFAULT_K} nearest neighbours, the Frechet distance needs a covariance), "
                          "or --n 0 for as many as the test split has")
    try:
        references = parse_references(reference)
    except ValueError as err:
        raise ConfigError(f"--reference: {err}") from None
    curve_solvers = parse_nfe_solvers(nfe_solvers)  # checked with --no-nfe-curve too
    try:
        report = evaluate_and_save(run, n or None, solver, steps, bootstrap, seed,
                                   curve_solvers if nfe_curve else (), device, noise_scale,
                                   references, project_sphere)
    except ValueError as err:
        if "--project-sphere" not in str(err):
            raise
        raise ConfigError(f"{run}: {err}") from None
    console = Console()
    settings = report["settings"]
    console.print(report_table(report, f"{run}: {settings['n_generated']} samples vs {settings['n_test']} test rows "
                                       f"({solver}, {settings['nfe']} NFE)"))
    if settings.get("rows_on_sphere") is not None and not project_sphere:
        Console(stderr=True).print(f"note: every training row has norm {settings['rows_on_sphere']:.4g} (a normalized "
                                   "encoder's); --project-sphere puts the samples on that sphere too",
                                   highlight=False, soft_wrap=True)
    if settings.get("n_requested", settings["n_generated"]) > settings["n_generated"]:
        Console(stderr=True).print(f"note: --n {settings['n_requested']} is more than the run's {settings['n_train']} "
                                   "training rows (the floor's draw); value and floor both use "
                                   f"{settings['n_generated']}", highlight=False, soft_wrap=True)
    # fd_summary escapes its intervals; the note and the rank line hold no markup.
    for line in (FD_NOTE, INTERVAL_NOTE, fd_summary(report), rank_summary(report), reference_summary(report),
                 f"wrote {escape(str(run / 'eval.json'))}"):
        if line:
            console.print(line, highlight=False, soft_wrap=True)
