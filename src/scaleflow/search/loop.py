"""The search loop: start from a few real rows, then repeat: propose a batch, judge it, score it, record it.

Every scored candidate is one line of `search.jsonl` (method, seed, step, its embedding in the original
space, score, valid, novel, nearest reference texts, ...; a `storage.Ledger`). A batch is written in one
fsync'd write and read back only when whole, and every method proposes as a pure function of what was
recorded, so a search killed at any moment (kill -9 included) resumes where it stopped and ends with the
candidates, scores and verdicts an uninterrupted run would have recorded (only `attempt` and `seconds`
differ). A failing objective stops the loop with one line (`ObjectiveError`) after everything scored
before it has been recorded.

The objective (possibly a paid service) is called last: everything else its batch's records hold (the
judge's verdicts, the log-density, the nearest texts) is computed before, and the batch is written
as soon as it returns. A kill between the objective's return and the end of that write (building the
records and one fsync'd write: milliseconds) loses that one batch, whose objective is paid again, once,
when the search resumes; a kill at any other moment re-evaluates nothing.

One search process per folder: `run_search` holds the folder's lock (`search_folder_lock`, re-entrant,
so a command may hold it around many searches), and a second writer is refused (`SearchFolderBusy`).
"""
from __future__ import annotations

import secrets
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ContextManager, Optional

import torch

from scaleflow.search.constraints import all_hold, measure_constraints
from scaleflow.search.judge import best_counted
from scaleflow.search.methods.base import History, Proposal, SearchMethod, noise_seed
from scaleflow.search.methods.real_rows import random_rows
from scaleflow.search.pareto import ParetoObjective, chebyshev, initial_scores
from scaleflow.search.problem import SearchProblem
from scaleflow.search.report import INITIAL, SEARCH_FILE, whole_batches
from scaleflow.search.report import counts as record_counts
from scaleflow.storage.folder_lock import FolderBusy, check_not_busy, folder_lock
from scaleflow.storage.ledger import Ledger
from scaleflow.training.config import ConfigError

NEAREST_TEXTS = 3


class SearchFolderBusy(FolderBusy, ConfigError):
    """Another process is running a search into the folder (it holds `OUT/.lock`)."""

    doing = "another search is writing this folder"
    advice = "wait for it to finish or stop it, or choose another --out"


def search_folder_lock(out: str | Path) -> ContextManager[None]:
    """Hold the search folder `out` (created if needed) for this process until the block ends; re-entrant,
    so `scaleflow optimize` holds it around all its searches and each `run_search` takes it again.

    Raises:
        SearchFolderBusy: another process holds it (one line: the folder, the holder, what to do).
    """
    return folder_lock(out, SearchFolderBusy)


def check_search_folder(out: str | Path) -> None:
    """Refuse at once when another process is writing the search folder `out`; creates nothing.

    Raises:
        SearchFolderBusy: one line naming the folder and the holder.
    """
    check_not_busy(out, SearchFolderBusy)


def search_ledger(out: str | Path) -> Ledger:
    """The search records of folder `out` (`out/search.jsonl`)."""
    return Ledger(out, SEARCH_FILE, SearchFolderBusy)


@dataclass
class SearchOutcome:
    """One finished (or resumed-and-finished) search.

    Attributes:
        method, seed: which search.
        history: everything it scored.
        best: the best score among its valid novel candidates (None if none counts).
        seconds: per proposing step (after the initial design), seconds to propose its batch.
    """

    method: str
    seed: int
    history: History
    best: Optional[float]
    seconds: list[float]


def read_history(store: Ledger, method: str, seed: int, dim: int) -> History:
    """The whole recorded batches of (method, seed), in step order (`report.whole_batches`)."""
    history = History.empty(dim)
    records = whole_batches([r for r in store.records() if r.get("method") == method and r.get("seed") == seed])
    by_step: dict[int, list[dict]] = defaultdict(list)
    for record in records.get((method, seed), []):
        by_step[record["step"]].append(record)
    for step, batch in sorted(by_step.items()):
        history.extend(torch.tensor([r["embedding"] for r in batch], dtype=torch.float32),
                       torch.tensor([r["score"] for r in batch], dtype=torch.float64),
                       torch.tensor([record_counts(r) for r in batch]),
                       [r.get("pool_row") for r in batch], step, batch[0]["proposed_by"],
                       torch.tensor([r.get("constraint_values", []) for r in batch], dtype=torch.float64),
                       torch.tensor([r.get("scores", []) for r in batch], dtype=torch.float64))
    return history


def judge_batch(problem: SearchProblem, proposal: Proposal) -> tuple[list[dict], torch.Tensor]:
    """What a batch's records hold that does not depend on its scores, for candidates `proposal.x: [N, D]`:
    one dict of fields per candidate, and `[N]` bool whether each counts (valid and novel)."""
    verdicts = problem.judge(proposal.x)
    log_density = problem.log_density(proposal.x)
    texts = problem.reference_texts
    hooks = problem.hooks
    decoded = hooks.decode(proposal.x)
    roundtrip = hooks.roundtrip(proposal.x, decoded) if decoded is not None else None
    counts = problem.counts_by_rules(verdicts.counts, log_density, roundtrip)
    fields = []
    for i in range(len(proposal.x)):
        nearest = [[round(float(c), 4), texts[int(r)] if texts is not None else int(r)]
                   for c, r in zip(verdicts.nearest_cosines[i][:NEAREST_TEXTS], verdicts.nearest_rows[i][:NEAREST_TEXTS])]
        fields.append({
            "valid": bool(verdicts.valid[i]), "novel": bool(verdicts.novel[i]),
            "nearest_cosine": round(float(verdicts.nearest_cosine[i]), 6),
            "nearest_distance": round(float(verdicts.nearest_distance[i]), 6),
            "log_density": round(float(log_density[i]), 3),
            "nearest_texts": nearest,
        })
        if decoded is not None:  # the text the objective is given: a pool row's own, else the decoding
            own = proposal.pool_rows[i] is not None and problem.pool_texts is not None
            fields[-1].update(text=problem.pool_texts[proposal.pool_rows[i]] if own else decoded[i],
                              text_is="pool row" if own else "decoded")
        if problem.min_log_density is not None:
            fields[-1]["log_density_ok"] = bool(log_density[i] >= problem.min_log_density)
        if roundtrip is not None:
            fields[-1]["roundtrip_cosine"] = round(float(roundtrip[i]), 6)
            if hooks.min_roundtrip is not None:
                fields[-1]["roundtrip_ok"] = bool(roundtrip[i] >= hooks.min_roundtrip)
    return fields, counts


def batch_records(fields: list[dict], counts: torch.Tensor, objective: str, method: str, seed: int, step: int, start: int,
             proposal: Proposal, scores: torch.Tensor, seconds: float, proposed_by: str,
             best_before: Optional[float]) -> list[dict]:
    """A scored batch's records: `judge_batch`'s fields with the scores `[N]` and the best so far."""
    best = best_counted(scores, counts)
    best = best_before if best is None else (best if best_before is None else max(best, best_before))
    attempt = secrets.token_hex(4)
    return [{
        "method": method, "seed": seed, "step": step, "index": start + i, "step_size": len(scores),
        "attempt": attempt, "proposed_by": proposed_by, "objective": objective, "score": float(scores[i]),
        **fields[i], "pool_row": proposal.pool_rows[i], "best_so_far": best, "seconds": round(seconds, 3),
        "info": proposal.info, "embedding": [float(v) for v in proposal.x[i].tolist()],
    } for i in range(len(scores))]


def run_search(problem: SearchProblem, method: SearchMethod, budget: int, batch: int, seed: int, out: str | Path,
               n_initial: Optional[int] = None,
               progress: Optional[Callable[[str, int, int, int, Optional[float]], None]] = None) -> SearchOutcome:
    """Run (or resume) one search of `method` with `seed` until `budget` candidates are scored.

    The first `n_initial` (default `batch`) candidates are random pool rows drawn from `seed` alone, so
    every method of a seed starts from the same rows; then each step proposes `batch` candidates (the last
    one fewer when the budget says so). `progress(method, seed, scored, budget, best)` is called after
    each batch. Records go to `out/search.jsonl`, under the folder's lock.

    Raises:
        SearchFolderBusy: another process is writing `out` (one line).
        ObjectiveError: the objective failed; every batch scored before is recorded.
    """
    if budget < 1 or batch < 1:
        raise ValueError(f"budget and batch must be >= 1; got {budget} and {batch}")
    n_initial = batch if n_initial is None else n_initial
    if not 1 <= n_initial <= budget:
        raise ValueError(f"the initial design ({n_initial} rows) must be between 1 and the budget ({budget})")
    with search_folder_lock(out):  # held while we read what is recorded and until our last write
        return _search(problem, method, budget, batch, seed, search_ledger(out), n_initial, progress)


def _search(problem: SearchProblem, method: SearchMethod, budget: int, batch: int, seed: int, store: Ledger,
            n_initial: int, progress: Optional[Callable[[str, int, int, int, Optional[float]], None]]) -> SearchOutcome:
    """`run_search`'s loop, inside the folder's lock."""
    history = read_history(store, method.name, seed, problem.dim)
    objective = problem.objective(seed)
    seconds: list[float] = []
    best = best_counted(history.y, history.counts)
    while len(history) < budget:
        step = history.n_steps
        began = time.perf_counter()
        proposal, proposed_by = next_proposal(problem, method, history, seed, min(batch, budget - len(history)),
                                              min(n_initial, budget))
        took = time.perf_counter() - began
        if step > 0:
            seconds.append(took)
        fields, counts = judge_batch(problem, proposal)  # before the objective: a failure here costs no call of it
        # ObjectiveError: every earlier batch is on disk.
        texts = candidate_texts(problem, proposal, fields)
        scores, vectors = score_batch(objective, history, proposal.x, texts, fields)
        constraint_values, counts = apply_constraints(problem, proposal, texts, fields, counts)
        records = batch_records(fields, counts, objective.name, method.name, seed, step, len(history), proposal, scores,
                                took, proposed_by, best)
        store.append_many(records)  # at once: a kill before this line ends pays this batch's objective again
        history.extend(proposal.x, scores, counts, proposal.pool_rows, step, proposed_by, constraint_values, vectors)
        best = records[-1]["best_so_far"]
        if progress is not None:
            progress(method.name, seed, len(history), budget, best)
    return SearchOutcome(method.name, seed, history, best_counted(history.y, history.counts), seconds)


def score_batch(objective, history: History, x: torch.Tensor, texts: Optional[list],
                fields: list[dict]) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Score a batch `x: [N, D]`: the scores `[N]`, and with several objectives (a `pareto.ParetoObjective`) their
    vectors `[N, M]`, whose worst objective above the reference point is the score (`pareto.chebyshev`); the
    vectors and the reference point go into the records' fields (`scores`, `ref_point`)."""
    if not isinstance(objective, ParetoObjective):
        return objective(x, texts), None
    vectors = objective(x, texts)
    ref_point = objective.reference_point(initial_scores(history, vectors))
    for i, f in enumerate(fields):
        f["scores"] = [float(v) for v in vectors[i]]
        f["ref_point"] = [float(v) for v in ref_point]
    return chebyshev(vectors, ref_point), vectors


def apply_constraints(problem: SearchProblem, proposal: Proposal, texts: Optional[list], fields: list[dict],
                      counts: torch.Tensor) -> tuple[Optional[torch.Tensor], torch.Tensor]:
    """Measure the problem's outcome constraints (`search.constraints`) at a scored batch: their values go into
    the records' fields (`constraint_values`, `constraints_ok`), and a candidate that violates one does not
    count. Returns the values `[N, C]` (None without constraints) and the counts."""
    if not problem.constraints:
        return None, counts
    values, _ = measure_constraints(problem.constraints, proposal.x, texts)
    return values, record_constraints(problem.constraints, values, fields, counts)


def record_constraints(constraints: list, values: torch.Tensor, fields: list[dict], counts: torch.Tensor) -> torch.Tensor:
    """Put measured constraint values `values: [N, C]` into a batch's record fields (`constraint_values`,
    `constraints_ok`) and return the counts `[N]` without the candidates that violate one (the loop measures
    them; ask/tell is told them)."""
    ok = all_hold(constraints, values)
    for i, f in enumerate(fields):
        f["constraint_values"] = [float(v) for v in values[i]]
        f["constraints_ok"] = bool(ok[i])
    return counts & ok


def next_proposal(problem: SearchProblem, method: SearchMethod, history: History, seed: int, n: int,
                  n_initial: int) -> tuple[Proposal, str]:
    """The next batch of (method, seed) given what it has scored: at step 0 `n_initial` random pool rows drawn
    from `seed` alone (every method of a seed starts from them), later `n` candidates of `method`; and who
    proposed it. A pure function of its arguments: the loop and ask/tell (`search.ask_tell`) propose alike."""
    step = history.n_steps
    if step == 0:
        return random_rows(problem, history, n_initial, seed, 0), INITIAL
    # Any draw from torch's global generator (an MC acquisition's base samples, a GP fit's retry)
    # comes from (seed, step): a resumed search proposes what an uninterrupted one did.
    with torch.random.fork_rng():
        torch.manual_seed(noise_seed(seed, step))
        proposal = method.propose(problem, history, n, seed, step)
    if proposal.x.shape != (n, problem.dim):
        raise RuntimeError(f"method {method.name} proposed shape {tuple(proposal.x.shape)}; expected ({n}, {problem.dim})")
    return proposal, method.name


def candidate_texts(problem: SearchProblem, proposal: Proposal, fields: list[dict]) -> Optional[list]:
    """The texts the objective is given: with a decoder, each candidate's (`judge_batch`'s "text": a pool row's
    own, else its decoding); without, pool rows' texts (None for generated points); None when there are none."""
    if fields and "text" in fields[0]:
        return [f["text"] for f in fields]
    if problem.pool_texts is None:
        return None
    return [problem.pool_texts[row] if row is not None else None for row in proposal.pool_rows]
