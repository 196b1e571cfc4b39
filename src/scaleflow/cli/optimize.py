"""`scaleflow optimize RUN --objective ... --out DIR`: guided search (and its baselines) over a trained prior."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import torch
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from scaleflow.cli.errors import user_errors
from scaleflow.files import read_json, write_json
from scaleflow.search.gp import ACQUISITIONS
from scaleflow.search.guidance import GuidanceConfig
from scaleflow.search.judge import JUDGE_VERSION, best_counted
from scaleflow.search.loop import check_search_folder, run_search, search_folder_lock
from scaleflow.search.methods import METHODS, build_method
from scaleflow.search.methods.cmaes import CMAES
from scaleflow.search.methods.latent_bo import LatentBO
from scaleflow.search.methods.prior import (SEARCH_DIVERSITY, SEARCH_DIVERSITY_COSINE, SEARCH_GP_WARM_START,
                                           SEARCH_GUIDANCE, SEARCH_MAX_BATCH_COSINE, SEARCH_OVERSAMPLE,
                                           SEARCH_PARETO_RESTART_SHARE, SEARCH_RESTART_TIME)
from scaleflow.search.methods.turbo import TuRBO, TurboState
from scaleflow.search.pareto import MAX_OBJECTIVES, parse_ref_point
from scaleflow.search.pareto_gp import PARETO_ACQUISITION
from scaleflow.search.pareto_report import table_columns
from scaleflow.search.problem import BUILTIN_OBJECTIVES, DEFAULT_CATEGORY, TARGET_SETS, TWO_CATEGORY, build_problem
from scaleflow.search.report import SETTINGS_FILE, read_folder_settings, summarize_search
from scaleflow.search.constraints import parse_constraint
from scaleflow.search.text_hooks import load_hooks
from scaleflow.training.config import ConfigError
from scaleflow.training.logger import log_finished_run, require_wandb
from scaleflow.training.run import load_run

DECODER_HELP = ("decode candidates to the texts the objective gets and the records hold: sonar (extra [sonar], "
                "1024-D) or MODULE:FUNCTION, f(x: [N, D]) -> N strings (default: none; texts are nearest rows')")
ENCODER_HELP = ("re-encode the decoded texts and record each candidate's round-trip cosine: sonar or MODULE:FUNCTION, "
                "f(texts) -> [N, D]")
ROUNDTRIP_HELP = "count only candidates whose round-trip cosine reaches this (needs --decoder and --encoder)"
LOG_DENSITY_HELP = ("count only candidates whose log-density under the prior (original space, as recorded) reaches "
                    "this; problem.json gives real held-out rows' 5/50/95% quantiles (default: off)")

# Settings that later versions added: a folder whose search.json lacks one was judged, or its targets chosen, by
# other rules, so it is refused rather than extended.
VERSIONED = ("judge", "targets")
DEFAULT_SEEDS = 5  # seeds of an objective without targets (with targets: one seed per target of the set)


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
    may differ (a larger one extends every search; records are read by step); the folder's `search.json`
    then records the latest budget, which its report holds every method to."""
    path = out / SETTINGS_FILE
    if path.exists():
        saved = read_folder_settings(path)  # a folder from before a setting existed ran without it
        older = [k for k in VERSIONED if k not in saved]
        if older:
            raise ConfigError(f"{out}: holds a search written before its settings recorded {', '.join(older)} (its "
                              f"candidates were judged, or its targets chosen, by earlier rules; see {path}); use a "
                              "new --out folder")
        changed = sorted(k for k in set(saved) | set(settings)
                         if k != "budget" and saved.get(k) != settings.get(k))
        if changed:
            raise ConfigError(f"{out}: holds a search with other settings ({', '.join(changed)} differ, see "
                              f"{path}); use a new --out folder")
        if saved.get("budget") != settings["budget"]:
            write_json(path, {**read_json(path), "budget": settings["budget"]})
    else:
        out.mkdir(parents=True, exist_ok=True)
        write_json(path, settings)


def _folder_default(saved: Optional[dict], key: str, given: Any, default: Any) -> Any:
    """An option left out takes the folder's value when resuming (`saved`: `read_folder_settings`, which says
    how a folder from before the option existed ran), else `default`; one given is checked against the folder by
    `_check_settings`."""
    if given is not None:
        return given
    return saved.get(key, default) if saved is not None else default


def _positive(flag: str, value: float, most: float = float("inf")) -> None:
    if not (0 < value <= most and value < float("inf")):
        bound = "" if most == float("inf") else f" and <= {most:g}"
        raise ConfigError(f"{flag} must be > 0{bound} and finite; got {value}")


@user_errors
def optimize(
    run: Path = typer.Argument(..., help="run folder of the prior (`scaleflow train`)"),
    objective: list[str] = typer.Option(["target"], "--objective", help="target | category | MODULE:FUNCTION | "
                                        "path/file.py:FUNCTION (f(x: [N, D], texts=None) -> [N], higher is better); "
                                        f"repeat it (2 to {MAX_OBJECTIVES}) for a Pareto search, or two-category "
                                        "(the built-in two-objective problem)"),
    ref_point: Optional[str] = typer.Option(None, "--ref-point", help="Pareto search of your objectives: the "
                                            "reference point, one value per --objective (a,b); default: each "
                                            "objective's least score over the seed's initial rows"),
    out: Path = typer.Option(..., "--out", help="folder for search.jsonl, summary.json, best.json, figures/"),
    method: str = typer.Option("guided", help=f"comma-separated methods: {', '.join(METHODS)}, or all"),
    budget: int = typer.Option(200, help="objective evaluations per search (initial rows included)"),
    batch: int = typer.Option(8, help="candidates scored per step"),
    seeds: Optional[str] = typer.Option(None, help="a count (5: seeds 0..4) or a list (0,3,7); with --objective "
                                        "target seed i has target i of the --targets set (cycling past its size). "
                                        "Default: one seed per target (10 test, 5 dev), else 5"),
    targets: Optional[str] = typer.Option(None, help="target set of --objective target: test (10 targets, the "
                                          "default: for numbers you report) or dev (5 targets: for tuning settings); "
                                          "the pair set of two-category likewise (10 test, 5 dev pairs)"),
    initial: Optional[int] = typer.Option(None, help="real rows scored first (default: --batch)"),
    category: str = typer.Option(DEFAULT_CATEGORY, help="WordNet category of --objective category"),
    acquisition: Optional[str] = typer.Option(None, help=f"guide of --method guided, and what its filter and "
                                              f"prior-filtered's rank by: {' | '.join(ACQUISITIONS)} (default: ucb; "
                                              "qlognehvi, the hypervolume gain, with several objectives)"),
    strength: float = typer.Option(SEARCH_GUIDANCE.strength, help="guidance strength lambda (gradient multiplier)"),
    clip: Optional[float] = typer.Option(SEARCH_GUIDANCE.clip, help="clip the guide's gradient to this norm"),
    cap: Optional[float] = typer.Option(SEARCH_GUIDANCE.cap, help="cap the guidance term at this share of |v| "
                                        "(0 turns the cap off)"),
    start: float = typer.Option(SEARCH_GUIDANCE.start, help="share of steps, from the start, without guidance"),
    stop: float = typer.Option(SEARCH_GUIDANCE.stop, help="share of steps, at the end, without guidance"),
    uncertainty: bool = typer.Option(SEARCH_GUIDANCE.uncertainty, "--uncertainty/--no-uncertainty",
                                     help="scale the strength by 1 / (1 + 2 sigma) (GP uncertainty)"),
    pca: Optional[int] = typer.Option(None, help="GP of guided and prior-filtered on this many principal directions"),
    oversample: int = typer.Option(SEARCH_OVERSAMPLE, help="candidates drawn per candidate scored by guided, "
                                   "prior-filtered, bo, turbo, cmaes and latent-bo (those that would not count are "
                                   "dropped before scoring, at no evaluation; 1: no filter)"),
    diversity: Optional[float] = typer.Option(None, help="guided: weight of the term that keeps the candidates of "
                                              f"a batch apart (0: none; default {SEARCH_DIVERSITY:g}; README, "
                                              "\"Diverse batches\")"),
    diversity_cosine: Optional[float] = typer.Option(None, "--diversity-cosine", help="guided: the rows of a batch "
                                                     "other than the first are kept below this cosine to each other "
                                                     "and to the first (raised to the median cosine between two of "
                                                     f"the prior's training rows; default {SEARCH_DIVERSITY_COSINE:g}; "
                                                     "a folder from before it resumes with the mean-cosine term)"),
    max_batch_cosine: Optional[float] = typer.Option(None, "--max-batch-cosine", help="guided and "
                                                     "prior-filtered: the filter takes a candidate only below this "
                                                     "cosine to the batch's better ones, topping up when too few are "
                                                     f"(1: no spread; default {SEARCH_MAX_BATCH_COSINE:g})"),
    restart_share: Optional[float] = typer.Option(None, "--restart-share", help="guided: share of the drawn rows "
                                                  "that start part-way along the flow (at --restart-time) from the "
                                                  "best different candidates found so far, not from fresh noise (0: "
                                                  f"none; default {SEARCH_PARETO_RESTART_SHARE:g} with several "
                                                  "objectives, else 0; not with thompson; README, \"Diverse "
                                                  "batches\")"),
    restart_time: Optional[float] = typer.Option(None, "--restart-time", help="guided: the flow time the rows of "
                                                 "--restart-share start at (0 < t < 1; nearer 1: nearer their "
                                                 f"candidate; default {SEARCH_RESTART_TIME:g})"),
    density_weight: float = typer.Option(0.0, "--density-weight", help="add this weight x the prior's "
                                         "log-density to the guide of --method guided (0: off)"),
    cmaes_sigma: float = typer.Option(CMAES.sigma0, "--cmaes-sigma", help="CMA-ES initial step size (normalized "
                                      "space: training rows' std per dimension)"),
    turbo_length: float = typer.Option(TuRBO.length_init, "--turbo-length", help="TuRBO's initial trust-region "
                                       f"side (unit cube; at most {TurboState.length_max:g})"),
    latent_scale: float = typer.Option(LatentBO.local_scale, "--latent-scale", help="latent-bo's perturbation "
                                       "size around its best points' noise"),
    steps: int = typer.Option(20, help="sampler steps (euler)"),
    noise_scale: float = typer.Option(1.0, "--noise-scale", help="temperature of the starting noise"),
    objective_timeout: float = typer.Option(600.0, "--objective-timeout", help="seconds one objective call may take"),
    decoder: Optional[str] = typer.Option(None, "--decoder", help=DECODER_HELP),
    encoder: Optional[str] = typer.Option(None, "--encoder", help=ENCODER_HELP),
    min_roundtrip: Optional[float] = typer.Option(None, "--min-roundtrip", help=ROUNDTRIP_HELP),
    min_log_density: Optional[float] = typer.Option(None, "--min-log-density", help=LOG_DENSITY_HELP),
    constraint: list[str] = typer.Option([], "--constraint", help="MODULE:FUNCTION>=VALUE or <=VALUE (repeatable): "
                                         "an outcome measured for every scored candidate; one that violates it does "
                                         "not count; guided models it with a GP of its own"),
    wandb: bool = typer.Option(False, "--wandb/--no-wandb", help="log each finished search (method, seed) as a W&B "
                               "run: settings as config, best so far per batch, summary; grouped by the --out "
                               "folder's name; offline unless WANDB_MODE says otherwise (extra [wandb])"),
    wandb_project: str = typer.Option("scaleflow", "--wandb-project", help="W&B project of --wandb"),
    refit_every: int = typer.Option(1, "--refit-every", help="guided and prior-filtered: fit the GP's "
                                    "hyperparameters every K steps, conditioning on new scores in between (1: every "
                                    "step)"),
    gp_warm_start: Optional[bool] = typer.Option(None, "--gp-warm-start/--no-gp-warm-start", help="guided and "
                                                 "prior-filtered: start each GP fit from the previous fit's "
                                                 "hyperparameters (default: on; a folder from before it existed "
                                                 "resumes as it began, off)"),
) -> None:
    """Search embedding space for valid, novel candidates that maximize an objective.

    Starts from a few real rows, then repeats: fit a GP to what was scored, draw candidates (guided prior
    samples, or a baseline's), score them, record them. Resumes where it stopped (kill -9 included).

    Scored outside the process (a person, an assay, an LLM, days later)? Ask and tell one round at a time:
    `scaleflow optimize ask DIR --run RUN --out batch.csv`, then `scaleflow optimize tell DIR scores.csv`."""
    if wandb:
        require_wandb()  # before anything is written
    methods = parse_methods(method)
    seed_list = parse_seeds(seeds) if seeds is not None else None
    if budget < 1 or batch < 1 or steps < 1 or oversample < 1 or refit_every < 1:
        raise ConfigError(f"--budget, --batch, --steps, --oversample and --refit-every must be >= 1; got {budget}, "
                          f"{batch}, {steps}, {oversample}, {refit_every}")
    if initial is not None and not 1 <= initial <= budget:
        raise ConfigError(f"--initial {initial}: must be between 1 and --budget ({budget})")
    initial = min(initial or batch, budget)
    for flag, value in (("--diversity", diversity), ("--density-weight", density_weight)):
        if value is not None and not (value >= 0 and value < float("inf")):
            raise ConfigError(f"{flag} must be >= 0 and finite; got {value}")
    if diversity_cosine is not None and not -1 < diversity_cosine < 1:
        raise ConfigError(f"--diversity-cosine must be in (-1, 1); got {diversity_cosine}")
    if max_batch_cosine is not None and not -1 < max_batch_cosine <= 1:
        raise ConfigError(f"--max-batch-cosine must be in (-1, 1] (1: no spread); got {max_batch_cosine}")
    if max_batch_cosine is not None and max_batch_cosine < 1 and oversample == 1:
        raise ConfigError("--max-batch-cosine: the spread chooses among the drawn candidates, and --oversample 1 draws "
                          "no more than it scores; raise --oversample or leave --max-batch-cosine out")
    saved = read_folder_settings(out / SETTINGS_FILE) if (out / SETTINGS_FILE).exists() else None
    max_batch_cosine = float(_folder_default(saved, "max_batch_cosine", max_batch_cosine, SEARCH_MAX_BATCH_COSINE))
    diversity = float(_folder_default(saved, "diversity", diversity, SEARCH_DIVERSITY))
    diversity_cosine = _folder_default(saved, "diversity_cosine", diversity_cosine, SEARCH_DIVERSITY_COSINE)
    pareto, ref_values = _check_objectives(objective, ref_point)
    acquisition = acquisition or (PARETO_ACQUISITION if pareto else "ucb")
    # Restarts: on with several objectives, except under Thompson paths (one per row of the whole batch).
    restart_share = float(_folder_default(saved, "restart_share", restart_share,
                                          SEARCH_PARETO_RESTART_SHARE if pareto and acquisition != "thompson" else 0.0))
    restart_time = float(_folder_default(saved, "restart_time", restart_time, SEARCH_RESTART_TIME))
    if not 0 <= restart_share < 1:
        raise ConfigError(f"--restart-share must be in [0, 1) (0: no restarts); got {restart_share}")
    if restart_share > 0 and acquisition == "thompson":
        raise ConfigError(f"--restart-share {restart_share:g}: --acquisition thompson draws one path per row of the "
                          "whole batch, which restarts split; use --restart-share 0 or another acquisition")
    if not 0 < restart_time < 1:
        raise ConfigError(f"--restart-time must be in (0, 1); got {restart_time}")
    if refit_every > 1 and acquisition == PARETO_ACQUISITION:
        raise ConfigError(f"--refit-every {refit_every}: the {PARETO_ACQUISITION} GPs are fitted every step; leave "
                          "--refit-every out")
    if acquisition not in ACQUISITIONS:
        raise ConfigError(f"--acquisition {acquisition!r}: choose one of {', '.join(ACQUISITIONS)}")
    if acquisition == PARETO_ACQUISITION and not pareto:
        raise ConfigError(f"--acquisition {PARETO_ACQUISITION}: the hypervolume acquisition needs several objectives "
                          "(repeat --objective, or --objective two-category)")
    objective = objective[0] if len(objective) == 1 else list(objective)  # one: as before, a string
    if pca is not None and pca < 1:
        raise ConfigError(f"--pca {pca}: must be >= 1")
    if not objective_timeout > 0:
        raise ConfigError(f"--objective-timeout must be > 0; got {objective_timeout}")
    if targets is not None and targets not in TARGET_SETS:
        raise ConfigError(f"--targets {targets!r}: choose {' or '.join(TARGET_SETS)}")
    if targets is not None and objective not in ("target", TWO_CATEGORY):
        raise ConfigError(f"--targets {targets}: only --objective target and two-category have target sets (got "
                          f"--objective {objective})")
    target_set = (targets or "test") if objective in ("target", TWO_CATEGORY) else None
    _positive("--cmaes-sigma", cmaes_sigma)
    _positive("--turbo-length", turbo_length, TurboState.length_max)
    _positive("--latent-scale", latent_scale)
    guidance = GuidanceConfig(strength=strength, clip=clip, cap=cap or None, start=start, stop=stop,
                              uncertainty=uncertainty)  # ValueError names the knob
    settings = {"run": str(run.resolve()), "objective": objective, "category": category if objective == "category"
                else None, "targets": target_set, "judge": JUDGE_VERSION, "budget": budget, "batch": batch,
                "initial": initial, "acquisition": acquisition, "guidance": guidance.as_dict(), "pca": pca,
                "oversample": oversample, "diversity": diversity, "diversity_cosine": diversity_cosine,
                **({"density_weight": density_weight} if density_weight else {}),
                "restart_share": restart_share, "restart_time": restart_time,
                **({"refit_every": refit_every} if refit_every != 1 else {}),
                "gp_warm_start": bool(_folder_default(saved, "gp_warm_start", gp_warm_start, SEARCH_GP_WARM_START)),
                "max_batch_cosine": max_batch_cosine,
                **({"constraints": list(constraint)} if constraint else {}),
                **({"ref_point": ref_values} if ref_values is not None else {}), "steps": steps,
                "noise_scale": noise_scale, "cmaes_sigma": cmaes_sigma, "turbo_length": turbo_length,
                "latent_scale": latent_scale,
                **{k: v for k, v in (("decoder", decoder), ("encoder", encoder), ("min_roundtrip", min_roundtrip),
                                     ("min_log_density", min_log_density)) if v is not None}}
    check_search_folder(out)  # refuse a busy folder before the slow loading; creates nothing
    loaded = load_run(run)
    hooks = load_hooks(decoder, encoder, min_roundtrip, dim=loaded.info["input_dim"])
    constraints = [parse_constraint(text, objective_timeout) for text in constraint]
    problem = build_problem(loaded, objective, category, objective_timeout, targets=target_set or "test", hooks=hooks,
                            min_log_density=min_log_density, constraints=constraints, ref_point=ref_values)
    # One writer per search folder: the settings, problem.json and every batch under one lock.
    with search_folder_lock(out):
        _check_settings(out, settings)
        pairs = problem.notes.get("pairs", []) if objective == TWO_CATEGORY else []
        seed_list = seed_list or list(range(len(problem.targets) or len(pairs) or DEFAULT_SEEDS))
        cycled = _target_cycle(problem, seed_list)
        write_json(out / "problem.json", {**problem.judge.describe(), **problem.notes,
                                          "target_texts": problem.target_texts,
                                          "target_of_seed": {s: problem.target_of_seed(s) for s in seed_list},
                                          "targets_cycle": cycled,
                                          **({"pair_of_seed": {s: pairs[s % len(pairs)]["pair"] for s in seed_list}}
                                             if pairs else {})})
        console = Console(stderr=True)
        targets_line = "" if target_set is None else (f" ({len(pairs)} {target_set} pairs)" if pairs else
                                                      f" ({len(problem.targets)} {target_set} targets)")
        console.print(f"searching {problem.objective_name}{targets_line} over {run}: {', '.join(methods)} x seeds "
                      f"{','.join(map(str, seed_list))}, budget {budget}, batch {batch}; judged by validity >= "
                      f"{problem.judge.validity_threshold:.3f} nearest-real cosine and novelty", highlight=False)
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("best {task.fields[best]}"),
                   TimeElapsedColumn(), TimeRemainingColumn())
        with Progress(*columns, console=console, transient=False) as bar:
            task = bar.add_task("search", total=len(methods) * len(seed_list) * budget, best="-")
            done = 0
            for name in methods:
                for seed in seed_list:
                    scored_here: list[int] = []

                    def report(m: str, s: int, scored: int, total: int, best, base=done,
                               scored_here=scored_here) -> None:
                        scored_here.append(scored)
                        bar.update(task, completed=base + scored, description=f"{m} seed {s}",
                                   best="-" if best is None else f"{best:.3f}")
                    search_method = build_method(name, settings)
                    outcome = run_search(problem, search_method, budget, batch, seed, out, initial, report)
                    if wandb and scored_here:  # a search finished before (a rerun) is logged once, not again
                        _log_search(outcome, settings, wandb_project, out)
                    done += budget
        summary = summarize_search(out)
        _print_table(console, summary.methods, summary.budget, _cycle_note(problem, target_set) if cycled else None,
                     pareto)
        _print_best(console, read_json(out / "best.json"))
        figures = "figures/best_so_far.png" + (", figures/pareto_front.png" if pareto else "")
        console.print(f"wrote {out / 'search.jsonl'}, summary.json, best.json, {figures}", highlight=False)
        console.print(f"the same command resumes a stopped search; with a larger --budget it extends this one "
                      f"({out / SETTINGS_FILE} holds its settings)", markup=False, highlight=False)


def _log_search(outcome, settings: dict, project: str, out: Path) -> None:
    """One finished search (method, seed) as a W&B run: the folder's settings with the method and seed as config,
    the best counted score after each batch as history (step: evaluations), the best and the share that counts
    as summary."""
    history, best, rows = outcome.history, None, []
    for step in sorted(set(history.steps)):
        mask = torch.tensor([s <= step for s in history.steps])
        scored = int(mask.sum())
        best = best_counted(history.y[mask], history.counts[mask])
        rows.append({"step": scored, "best_so_far": best, "evaluations": scored})
    counted = float(history.counts.double().mean()) if len(history) else None
    log_finished_run(project, out.name, f"{outcome.method}-seed{outcome.seed}",
                     {**settings, "method": outcome.method, "seed": outcome.seed},
                     {"best": outcome.best, "counted_share": counted, "evaluations": len(history)}, rows, folder=out,
                     key=str(out.resolve()))


def _check_objectives(objectives: list[str], ref_point: Optional[str]) -> tuple[bool, Optional[list[float]]]:
    """Whether `--objective` (repeatable) asks for a Pareto search, and the `--ref-point` values; refuses in one line
    what does not make sense."""
    pareto = len(objectives) > 1 or objectives == [TWO_CATEGORY]
    if len(objectives) > MAX_OBJECTIVES:
        raise ConfigError(f"--objective given {len(objectives)} times: a Pareto search takes at most {MAX_OBJECTIVES}")
    if len(objectives) > 1:
        builtin = [o for o in objectives if o in BUILTIN_OBJECTIVES]
        if builtin:
            raise ConfigError(f"--objective {builtin[0]}: a built-in objective cannot be combined with others (give "
                              "MODULE:FUNCTION objectives, or --objective two-category alone)")
        repeated = sorted({o for o in objectives if objectives.count(o) > 1})
        if repeated:
            raise ConfigError(f"--objective {repeated[0]} given twice")
    if ref_point is None:
        return pareto, None
    if not len(objectives) > 1:
        raise ConfigError("--ref-point: only a Pareto search of your own objectives (--objective given 2 or more "
                          "times) takes a reference point (two-category's is (0, 0))")
    try:
        return pareto, parse_ref_point(ref_point, len(objectives))
    except ValueError as err:
        raise ConfigError(str(err)) from None


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


def _target_cycle(problem, seeds: list[int]) -> bool:
    """Whether some seeds share a target (more seeds, or larger seed numbers, than the set has targets)."""
    return len(problem.targets) > 0 and any(s >= len(problem.targets) for s in seeds)


def _cycle_note(problem, target_set: Optional[str]) -> str:
    n = len(problem.targets)
    return (f"seeds {n} and up reuse the {n} {target_set} targets (seed i: target i % {n}): such seeds are not "
            "independent")


def _evaluations(row: dict, budget: Optional[int]) -> str:
    """The evaluations per seed, and the mark of a method held to no comparison: short or over the budget."""
    counts = sorted(set(row["evaluations"].values()))
    text = str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    if row["budget_complete"]:
        return text
    if budget is None:
        kind = "no budget"
    else:
        kind = "short" if counts[-1] <= budget else "over" if counts[0] >= budget else "short and over"
    return f"{text} of {budget}: {kind}"


def _lead(row: dict) -> str:
    if "lead_note" in row:
        return f"not compared: {row['seeds_without_valid_novel']} seed(s) without a valid novel candidate"
    if "lead" not in row:
        return "-"
    interval = row["lead_interval"]
    kind = "" if row["lead_interval_method"] == "paired" else f" {row['lead_interval_method']}"
    ci = "" if interval is None else f" [{interval[0]:+.3f}, {interval[1]:+.3f}]"
    return f"{row['lead']:+.3f}{ci}{kind} vs {row['lead_over']}"


def _print_table(console: Console, rows: list[dict], budget: Optional[int] = None, note: Optional[str] = None,
                 pareto: bool = False) -> None:
    """The summary table: methods held to the budget first, by best score; the others marked, not compared. A
    Pareto search adds each method's hypervolume and guided's lead in it."""
    caption = ("evals: per seed; a method whose seeds do not all have the budget's evaluations is marked and not "
               "compared. lead: over the best other method, mean of per-seed differences with its paired 95% "
               "interval (every method of a seed shares its target and initial rows). any: best score of any "
               "candidate, invalid ones included; counted: share of generated candidates that are valid and novel; "
               "cosine: mean pairwise cosine within a batch; 4-diverse: the best score 4 counted candidates pairwise "
               "below cosine 0.7 all reach (mean over the seeds that have 4); batch 4-div: the same within each "
               "batch, mean over the batches that have 4"
               + (". Several objectives: best is the worst objective above the reference point; hypervolume: of the "
                  "counted candidates above it (mean, 95% interval over seeds); guided HV lead: guided minus this "
                  "method, paired over seeds" if pareto else "") + (f". {note}" if note else ""))
    table = Table(title=f"best score of a valid, novel candidate (mean, 95% interval over seeds; budget {budget})",
                  caption=caption)
    columns = ("method", "seeds", "evals", "best", "interval", "lead", "any", "counted", "cosine", "4-diverse",
               "batch 4-div", "s/batch") + (("hypervolume", "guided HV lead") if pareto else ())
    for column in columns:
        table.add_column(column, justify="left" if column in ("method", "lead") else "right")

    def order(row: dict) -> tuple:
        return (not row["budget_complete"], -(row["best"] if row["best"] is not None else -1e30), row["method"])

    for row in sorted(rows, key=order):
        interval = row["best_interval"]
        if row["budget_complete"]:
            best = _fmt(row["best"])
            shown = "-" if interval is None else f"[{interval[0]:.3f}, {interval[1]:.3f}]"
        else:
            best, shown = "not compared", "budget not met"
        table.add_row(row["method"], str(len(row["seeds"])), _evaluations(row, budget), best, shown, _lead(row),
                      _fmt(row["best_any"]), _fmt(row["counted_share"], 2), _fmt(row["batch_cosine"], 2),
                      _fmt(row.get("k_diverse_best")), _fmt(row.get("batch_k_diverse_best")),
                      _fmt(row["seconds_per_batch"], 2),
                      *(table_columns(row) if pareto else ()))
    console.print(table)
