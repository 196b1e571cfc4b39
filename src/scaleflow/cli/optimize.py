"""`scaleflow optimize RUN --objective ... --out DIR`: guided search (and its baselines) over a trained prior."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from scaleflow.cli.errors import user_errors
from scaleflow.files import read_json, write_json
from scaleflow.search.gp import ACQUISITIONS
from scaleflow.search.guidance import GuidanceConfig
from scaleflow.search.loop import run_search
from scaleflow.search.methods import METHODS
from scaleflow.search.methods.prior import SEARCH_DIVERSITY, SEARCH_GUIDANCE, SEARCH_OVERSAMPLE
from scaleflow.search.problem import DEFAULT_CATEGORY, build_problem
from scaleflow.search.report import summarize_search
from scaleflow.training.config import ConfigError
from scaleflow.training.run import load_run

SETTINGS_FILE = "search.json"


def parse_seeds(text: str) -> list[int]:
    """`5` -> seeds 0..4; `0,3,7` -> those."""
    try:
        if "," in text:
            seeds = [int(s) for s in text.split(",") if s.strip()]
        else:
            seeds = list(range(int(text)))
    except ValueError:
        raise ConfigError(f"--seeds {text!r}: give a count (5: seeds 0..4) or a list (0,3,7)") from None
    if not seeds or any(s < 0 for s in seeds):
        raise ConfigError(f"--seeds {text!r}: needs at least one seed, none negative")
    return seeds


def parse_methods(text: str) -> list[str]:
    names = list(METHODS) if text == "all" else [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in names if m not in METHODS]
    if unknown or not names:
        raise ConfigError(f"--method {text!r}: unknown {', '.join(unknown) or 'empty'}; choose from "
                          f"{', '.join(METHODS)} (comma-separated) or all")
    return names


def _check_settings(out: Path, settings: dict) -> None:
    """A folder holds one search setting: resuming with other settings would mix two searches. The budget
    may differ (a larger one extends every search; records are read by step)."""
    path = out / SETTINGS_FILE
    if path.exists():
        saved = read_json(path)
        changed = sorted(k for k in set(saved) | set(settings)
                         if k != "budget" and saved.get(k) != settings.get(k))
        if changed:
            raise ConfigError(f"{out}: holds a search with other settings ({', '.join(changed)} differ, see "
                              f"{path}); use a new --out folder")
    else:
        out.mkdir(parents=True, exist_ok=True)
        write_json(path, settings)


@user_errors
def optimize(
    run: Path = typer.Argument(..., help="run folder of the prior (`scaleflow train`)"),
    objective: str = typer.Option("target", help="target | category | MODULE:FUNCTION | path/file.py:FUNCTION "
                                  "(f(x: [N, D], texts=None) -> [N], higher is better)"),
    out: Path = typer.Option(..., "--out", help="folder for search.jsonl, summary.json, best.json, figures/"),
    method: str = typer.Option("guided", help=f"comma-separated methods: {', '.join(METHODS)}, or all"),
    budget: int = typer.Option(200, help="objective evaluations per search (initial rows included)"),
    batch: int = typer.Option(8, help="candidates scored per step"),
    seeds: str = typer.Option("5", help="a count (5: seeds 0..4) or a list (0,3,7); with --objective target each "
                              "seed has its own target"),
    initial: Optional[int] = typer.Option(None, help="real rows scored first (default: --batch)"),
    category: str = typer.Option(DEFAULT_CATEGORY, help="WordNet category of --objective category"),
    acquisition: str = typer.Option("ucb", help=f"guide of --method guided: {' | '.join(ACQUISITIONS)}"),
    strength: float = typer.Option(SEARCH_GUIDANCE.strength, help="guidance strength lambda (gradient multiplier)"),
    clip: Optional[float] = typer.Option(SEARCH_GUIDANCE.clip, help="clip the guide's gradient to this norm"),
    cap: Optional[float] = typer.Option(SEARCH_GUIDANCE.cap, help="cap the guidance term at this share of |v| "
                                        "(0 turns the cap off)"),
    start: float = typer.Option(SEARCH_GUIDANCE.start, help="share of steps, from the start, without guidance"),
    stop: float = typer.Option(SEARCH_GUIDANCE.stop, help="share of steps, at the end, without guidance"),
    uncertainty: bool = typer.Option(SEARCH_GUIDANCE.uncertainty, "--uncertainty/--no-uncertainty",
                                     help="scale the strength by 1 / (1 + 2 sigma) (GP uncertainty)"),
    pca: Optional[int] = typer.Option(None, help="GP of --method guided on this many principal directions"),
    oversample: int = typer.Option(SEARCH_OVERSAMPLE, help="guided samples drawn per candidate scored (those that "
                                   "would not count are dropped before scoring)"),
    diversity: float = typer.Option(SEARCH_DIVERSITY, help="weight of the term that pushes the candidates of a "
                                    "guided batch apart (0: none; see README)"),
    density_weight: float = typer.Option(0.0, "--density-weight", help="add this weight x the prior's "
                                         "log-density to the guide of --method guided (0: off)"),
    steps: int = typer.Option(20, help="sampler steps (euler)"),
    noise_scale: float = typer.Option(1.0, "--noise-scale", help="temperature of the starting noise"),
    objective_timeout: float = typer.Option(600.0, "--objective-timeout", help="seconds one objective call may take"),
) -> None:
    """Search embedding space for valid, novel candidates that maximize an objective.

    Starts from a few real rows, then repeats: fit a GP to what was scored, draw candidates (guided prior
    samples, or a baseline's), score them, record them. Resumes where it stopped (kill -9 included)."""
    methods = parse_methods(method)
    seed_list = parse_seeds(seeds)
    if budget < 1 or batch < 1 or steps < 1 or oversample < 1:
        raise ConfigError(f"--budget, --batch, --steps and --oversample must be >= 1; got {budget}, {batch}, "
                          f"{steps}, {oversample}")
    if initial is not None and not 1 <= initial <= budget:
        raise ConfigError(f"--initial {initial}: must be between 1 and --budget ({budget})")
    initial = min(initial or batch, budget)
    for flag, value in (("--diversity", diversity), ("--density-weight", density_weight)):
        if not (value >= 0 and value < float("inf")):
            raise ConfigError(f"{flag} must be >= 0 and finite; got {value}")
    if acquisition not in ACQUISITIONS:
        raise ConfigError(f"--acquisition {acquisition!r}: choose one of {', '.join(ACQUISITIONS)}")
    if pca is not None and pca < 1:
        raise ConfigError(f"--pca {pca}: must be >= 1")
    if not objective_timeout > 0:
        raise ConfigError(f"--objective-timeout must be > 0; got {objective_timeout}")
    guidance = GuidanceConfig(strength=strength, clip=clip, cap=cap or None, start=start, stop=stop,
                              uncertainty=uncertainty)  # ValueError names the knob
    settings = {"run": str(run.resolve()), "objective": objective, "category": category if objective == "category"
                else None, "budget": budget, "batch": batch, "initial": initial, "acquisition": acquisition,
                "guidance": guidance.as_dict(), "pca": pca, "oversample": oversample, "diversity": diversity,
                **({"density_weight": density_weight} if density_weight else {}), "steps": steps,
                "noise_scale": noise_scale}
    loaded = load_run(run)
    problem = build_problem(loaded, objective, category, objective_timeout)
    _check_settings(out, settings)
    write_json(out / "problem.json", {**problem.judge.describe(), **problem.notes,
                                      "target_texts": problem.target_texts})
    options = {"guided": dict(acquisition=acquisition, guidance=guidance, pca=pca, oversample=oversample,
                              diversity=diversity, density_weight=density_weight, steps=steps,
                              noise_scale=noise_scale),
               "prior": dict(steps=steps, noise_scale=noise_scale)}
    console = Console(stderr=True)
    console.print(f"searching {problem.objective_name} over {run}: {', '.join(methods)} x seeds "
                  f"{','.join(map(str, seed_list))}, budget {budget}, batch {batch}; judged by validity >= "
                  f"{problem.judge.validity_threshold:.3f} nearest-real cosine and novelty", highlight=False)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("best {task.fields[best]}"),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("search", total=len(methods) * len(seed_list) * budget, best="-")
        done = 0
        for name in methods:
            for seed in seed_list:
                def report(m: str, s: int, scored: int, total: int, best, base=done) -> None:
                    bar.update(task, completed=base + scored, description=f"{m} seed {s}",
                               best="-" if best is None else f"{best:.3f}")
                search_method = METHODS[name](**options.get(name, {}))
                run_search(problem, search_method, budget, batch, seed, out, initial, report)
                done += budget
    summary = summarize_search(out)
    _print_table(console, summary.methods)
    _print_best(console, read_json(out / "best.json"))
    console.print(f"wrote {out / 'search.jsonl'}, summary.json, best.json, figures/best_so_far.png", highlight=False)
    console.print(f"the same command resumes a stopped search; with a larger --budget it extends this one "
                  f"({out / SETTINGS_FILE} holds its settings)", markup=False, highlight=False)


def _print_best(console: Console, best: dict[str, list[dict]]) -> None:
    """Each method's best valid, novel candidate and the training texts nearest to it."""
    for method, candidates in sorted(best.items()):
        if not candidates:
            console.print(f"{method}: no valid, novel candidate", highlight=False)
            continue
        top = candidates[0]
        near = "; ".join(f"{cosine:.2f} {text}" for cosine, text in top["nearest_texts"][:2])
        console.print(f"{method} best {top['score']:.3f} (seed {top['seed']}), nearest: {near}", highlight=False,
                      markup=False)


def _fmt(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _print_table(console: Console, rows: list[dict]) -> None:
    table = Table(title="best score of a valid, novel candidate (mean, 95% interval over seeds)",
                  caption="any: best score of any candidate, invalid ones included; counted: share of generated "
                  "candidates that are valid and novel; cosine: mean pairwise cosine within a batch")
    for column in ("method", "seeds", "best", "interval", "any", "counted", "cosine", "s/batch"):
        table.add_column(column, justify="left" if column == "method" else "right")
    for row in sorted(rows, key=lambda r: -(r["best"] if r["best"] is not None else -1e30)):
        interval = row["best_interval"]
        table.add_row(row["method"], str(len(row["seeds"])), _fmt(row["best"]),
                      "-" if interval is None else f"[{interval[0]:.3f}, {interval[1]:.3f}]",
                      _fmt(row["best_any"]), _fmt(row["counted_share"], 2), _fmt(row["batch_cosine"], 2),
                      _fmt(row["seconds_per_batch"], 2))
    console.print(table)
