"""`scaleflow optimize ask DIR` and `scaleflow optimize tell DIR FILE`: a search scored outside the process, one
round at a time (`search.ask_tell`). The first `ask` names the prior and the method; the folder keeps them."""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from scaleflow.cli.errors import user_errors
from scaleflow.files import write_json, write_text
from scaleflow.search.ask_tell import EXTERNAL, Search, TellError
from scaleflow.search.gp import ACQUISITIONS
from scaleflow.search.judge import JUDGE_VERSION
from scaleflow.search.loop import check_search_folder, search_folder_lock
from scaleflow.search.methods import METHODS, build_method
from scaleflow.search.constraints import parse_told_constraint
from scaleflow.search.methods.prior import (SEARCH_DIVERSITY, SEARCH_DIVERSITY_COSINE, SEARCH_GP_WARM_START,
                                           SEARCH_MAX_BATCH_COSINE, SEARCH_OVERSAMPLE)
from scaleflow.search.problem import build_problem
from scaleflow.search.report import SETTINGS_FILE, read_folder_settings
from scaleflow.search.text_hooks import load_hooks
from scaleflow.cli.optimize import DECODER_HELP, ENCODER_HELP, LOG_DENSITY_HELP, ROUNDTRIP_HELP
from scaleflow.training.config import ConfigError
from scaleflow.training.run import load_run

ASK_FORMATS = (".csv", ".jsonl")
CSV_COLUMNS = ("id", "text", "text_is", "counts", "valid", "novel", "nearest_cosine")


def _settings(folder: Path, given: dict) -> dict:
    """The folder's ask/tell settings: written by the first ask (which needs --run), then the folder's; an option
    given again must agree with them."""
    path = folder / SETTINGS_FILE
    if not path.exists():
        if given.get("run") is None:
            raise ConfigError(f"{folder}: no search here yet; the first ask needs --run RUN (the prior to search)")
        settings = {"mode": "ask-tell", "objective": EXTERNAL, "judge": JUDGE_VERSION, "method": "guided", "seed": 0,
                    "initial": None, "acquisition": "ucb", "oversample": SEARCH_OVERSAMPLE, "steps": 20,
                    "max_batch_cosine": SEARCH_MAX_BATCH_COSINE, "gp_warm_start": SEARCH_GP_WARM_START,
                    "diversity": SEARCH_DIVERSITY, "diversity_cosine": SEARCH_DIVERSITY_COSINE,
                    **{k: v for k, v in given.items() if v is not None}}
        settings["run"] = str(Path(settings["run"]).resolve())
        return settings
    saved = read_folder_settings(path)  # a folder from before the spread or the warm start existed ran without them
    if saved.get("mode") != "ask-tell":
        raise ConfigError(f"{folder}: holds a search of `scaleflow optimize` (its objective is called in process); "
                          "ask/tell needs a folder of its own")
    if given.get("run") is not None:
        given = {**given, "run": str(Path(given["run"]).resolve())}
    changed = sorted(k for k, v in given.items() if v is not None and saved.get(k) != v)
    if changed:
        raise ConfigError(f"{folder}: its search was asked with other settings ({', '.join(changed)} differ, see "
                          f"{path}); leave them out or use another folder")
    return saved


def _open(folder: Path, settings: dict) -> Search:
    run = load_run(settings["run"])
    hooks = load_hooks(settings.get("decoder"), settings.get("encoder"), settings.get("min_roundtrip"),
                       dim=run.info["input_dim"])
    problem = build_problem(run, EXTERNAL, hooks=hooks, min_log_density=settings.get("min_log_density"),
                            constraints=_told_constraints(settings))
    return Search(problem, build_method(settings["method"], settings), folder, settings["seed"], settings["initial"])


def _told_constraints(settings: dict) -> list:
    """The folder's outcome constraints, measured outside and told with the scores (`--constraint NAME>=V`)."""
    try:
        return [parse_told_constraint(text) for text in settings.get("constraints") or []]
    except ValueError as err:
        raise ConfigError(str(err)) from None


def _write_batch(batch: list[dict], out: Path) -> None:
    if out.suffix == ".jsonl":
        write_text(out, "".join(json.dumps(c) + "\n" for c in batch))
        return
    lines = [list(CSV_COLUMNS)] + [[c.get(k) for k in CSV_COLUMNS] for c in batch]
    buffer = io.StringIO()
    csv.writer(buffer).writerows(lines)
    write_text(out, buffer.getvalue())


@user_errors
def optimize_ask(
    folder: Path = typer.Argument(..., help="search folder (created by the first ask)"),
    n: int = typer.Option(8, "--n", help="candidates to propose (the pending batch, if one is pending)"),
    out: Optional[Path] = typer.Option(None, "--out", help=f"write the batch here ({' or '.join(ASK_FORMATS)}; "
                                       ".jsonl holds the embeddings too)"),
    run: Optional[Path] = typer.Option(None, "--run", help="the prior's run folder (first ask only)"),
    method: Optional[str] = typer.Option(None, help=f"proposing method (first ask; default guided): "
                                         f"{', '.join(m for m in METHODS if m not in ('random', 'retrieval'))}"),
    seed: Optional[int] = typer.Option(None, help="the search's seed (first ask; default 0)"),
    initial: Optional[int] = typer.Option(None, help="real rows in the first batch (default: the first --n)"),
    acquisition: Optional[str] = typer.Option(None, help=f"guided's acquisition: {' | '.join(ACQUISITIONS)}"),
    oversample: Optional[int] = typer.Option(None, help="candidates drawn per candidate proposed (the free filter)"),
    max_batch_cosine: Optional[float] = typer.Option(None, "--max-batch-cosine", help="the filter's spread: a "
                                                     "candidate only below this cosine to the batch's better ones "
                                                     f"(first ask; default {SEARCH_MAX_BATCH_COSINE:g}; 1: none)"),
    constraint: list[str] = typer.Option([], "--constraint", help="NAME>=VALUE or NAME<=VALUE (repeatable; first "
                                         "ask): an outcome you measure with the score and tell as a column NAME of "
                                         "the scores file; a candidate that violates one does not count, and guided "
                                         "models it with a GP of its own"),
    decoder: Optional[str] = typer.Option(None, "--decoder", help=DECODER_HELP),
    encoder: Optional[str] = typer.Option(None, "--encoder", help=ENCODER_HELP),
    min_roundtrip: Optional[float] = typer.Option(None, "--min-roundtrip", help=ROUNDTRIP_HELP),
    min_log_density: Optional[float] = typer.Option(None, "--min-log-density", help=LOG_DENSITY_HELP),
    gp_warm_start: Optional[bool] = typer.Option(None, "--gp-warm-start/--no-gp-warm-start", help="guided and "
                                                 "prior-filtered: start each GP fit from the previous fit's (first "
                                                 "ask; default on)"),
) -> None:
    """Propose the next batch of a search scored outside the process; asking again before `tell` gives the same batch."""
    if n < 1:
        raise ConfigError(f"--n must be >= 1; got {n}")
    if out is not None and out.suffix not in ASK_FORMATS:
        raise ConfigError(f"--out {out}: write the batch as {' or '.join(ASK_FORMATS)}")
    if method is not None and method not in METHODS:
        raise ConfigError(f"--method {method!r}: choose one of {', '.join(METHODS)}")
    if acquisition is not None and acquisition not in ACQUISITIONS:
        raise ConfigError(f"--acquisition {acquisition!r}: choose one of {', '.join(ACQUISITIONS)}")
    if acquisition == "qlognehvi":
        raise ConfigError("--acquisition qlognehvi: ask/tell takes one score per candidate; the hypervolume "
                          "acquisition is for `scaleflow optimize` with several --objective")
    if max_batch_cosine is not None and not -1 < max_batch_cosine <= 1:
        raise ConfigError(f"--max-batch-cosine must be in (-1, 1] (1: no spread); got {max_batch_cosine}")
    try:
        for text in constraint:  # checked before anything is written
            parse_told_constraint(text)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    check_search_folder(folder)
    settings = _settings(folder, {"run": str(run) if run else None, "method": method, "seed": seed,
                                  "constraints": [text.strip() for text in constraint] or None,  # as given
                                  "initial": initial, "acquisition": acquisition, "oversample": oversample,
                                  "max_batch_cosine": max_batch_cosine,
                                  "decoder": decoder, "encoder": encoder, "min_roundtrip": min_roundtrip,
                                  "min_log_density": min_log_density, "gp_warm_start": gp_warm_start})
    search = _open(folder, settings)
    with search_folder_lock(folder):
        if not (folder / SETTINGS_FILE).exists():
            write_json(folder / SETTINGS_FILE, settings)
        batch = search.ask(n)
    if out is not None:
        _write_batch(batch, out)
    table = Table(title=f"{folder}: batch {batch[0]['step']} ({len(batch)} candidates)")
    for column in ("id", "counts", "text"):
        table.add_column(column)
    for c in batch:
        kind = {"pool row": "", "nearest training text": "(nearest training text) "}.get(c["text_is"] or "", "")
        table.add_row(c["id"], "yes" if c["counts"] else "no", f"{kind}{c['text'] or '-'}")
    console = Console(stderr=True)
    Console().print(table)
    columns = ["id", "score"] + [c.name for c in _told_constraints(settings)]
    console.print(f"{'wrote ' + str(out) + '; ' if out else ''}score them, then: scaleflow optimize tell {folder} "
                  f"SCORES.csv (columns {', '.join(columns)}; or .jsonl lines with those keys)",
                  markup=False, highlight=False, soft_wrap=True)


def read_scores(path: Path, columns: tuple[str, ...] = ()) -> tuple[dict[str, object], dict[str, list]]:
    """id -> score from a .csv (header with id and score) or .jsonl file, and id -> the values of `columns` (the
    told constraints' columns, in order; empty without); ConfigError naming the file."""
    if not path.is_file():
        raise ConfigError(f"{path}: no such scores file")
    scores: dict[str, object] = {}
    extra: dict[str, list] = {}

    def add(where: str, key, value, row: dict) -> None:
        if key is None or str(key).strip() == "":
            raise ConfigError(f"{path}: {where} has no id")
        key = str(key).strip()
        if key in scores:
            raise ConfigError(f"{path}: {where}: id {key} appears twice")
        missing = [c for c in columns if c not in row]
        if missing:
            raise ConfigError(f"{path}: {where} has no value of the constraint {missing[0]} (a column or key "
                              f"{missing[0]} for each candidate)")
        scores[key] = value
        if columns:
            extra[key] = [row[c] for c in columns]

    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file (expected .csv or .jsonl of id and score)") from None
    if path.suffix == ".jsonl":
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError:
                raise ConfigError(f"{path}: line {number} is not JSON") from None
            if not isinstance(item, dict) or "score" not in item:
                raise ConfigError(f"{path}: line {number} needs an object with id and score")
            add(f"line {number}", item.get("id"), item["score"], item)
    elif path.suffix == ".csv":
        rows = list(csv.DictReader(text.splitlines()))
        fields = {f.strip().lower() for f in (rows[0].keys() if rows else []) if isinstance(f, str)}
        if not {"id", "score"} <= fields:
            raise ConfigError(f"{path}: needs a header with the columns id and score")
        for number, row in enumerate(rows, 2):
            lowered = {k.strip().lower(): v for k, v in row.items() if isinstance(k, str)}
            # Constraint columns keep their case (they are the names given to --constraint).
            # A row longer than the header (a trailing comma) puts its extra cells under None: they name nothing.
            cells = {**{k.strip(): _number(v) for k, v in row.items() if isinstance(k, str) and isinstance(v, str)},
                     "id": lowered.get("id")}
            add(f"line {number}", lowered.get("id"), _number(lowered.get("score")), cells)
    else:
        raise ConfigError(f"{path}: give the scores as .csv (columns id, score) or .jsonl")
    if not scores:
        raise ConfigError(f"{path}: holds no scores")
    return scores, extra


def _number(text: Optional[str]) -> object:
    """A csv cell as a float where it is one, else the stripped text (refused later, naming the candidate)."""
    value = (text or "").strip()
    try:
        return float(value)
    except ValueError:
        return value


@user_errors
def optimize_tell(
    folder: Path = typer.Argument(..., help="search folder of `scaleflow optimize ask`"),
    scores: Path = typer.Argument(..., help="the pending batch's scores: .csv (columns id, score) or .jsonl"),
) -> None:
    """Record the scores of the pending batch (every candidate of it, once); the next `ask` proposes from them."""
    if not (folder / SETTINGS_FILE).exists():
        raise ConfigError(f"{folder}: no ask/tell search here (start one with scaleflow optimize ask {folder} --run RUN)")
    check_search_folder(folder)
    settings = _settings(folder, {})
    names = tuple(c.name for c in _told_constraints(settings))
    values, measured = read_scores(scores, names)
    search = _open(folder, settings)
    try:
        records = search.tell(values, measured or None)
    except TellError as err:
        raise ConfigError(f"{scores}: {err}; nothing was recorded") from None
    best, scored = records[-1]["best_so_far"], records[-1]["index"] + 1  # the records carry both
    Console(stderr=True).print(
        f"recorded {len(records)} scores (batch {records[0]['step']}); {scored} scored so far, best counted "
        f"{'-' if best is None or not math.isfinite(best) else f'{best:.4g}'}; next: scaleflow optimize ask {folder}",
        markup=False, highlight=False, soft_wrap=True)
