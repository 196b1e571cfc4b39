"""Ask/tell: the search loop for objectives scored outside the process (an LLM judge, an assay, a person),
one round at a time, possibly days apart.

`ask(n)` proposes the next batch exactly as `run_search` would (`loop.next_proposal`), judges it, and keeps it
as the folder's pending batch (`pending.json`, written atomically, under the folder's lock); asking again
before telling returns the same batch. `tell(scores)` takes one score per pending candidate, by id, checks
them all (every id of the batch, once, finite scores) before writing anything, then records the batch in
`search.jsonl` as the loop records a scored batch and clears the pending one. So the records, and every later
proposal, are those `scaleflow optimize` makes for the same scores; a kill between ask and tell loses
nothing (the pending batch is on disk); a refused tell records nothing and keeps the batch pending.

Candidate ids are `s{seed}-b{step}-{i}`. Texts: a pool row's own text; for a generated point, the nearest
training rows' texts, which are neighbours, not decodings (`text_is` says which).
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Mapping, Optional, Sequence

import torch

from scaleflow.files import read_json, write_json
from scaleflow.search.judge import best_counted
from scaleflow.search.loop import (batch_records, judge_batch, next_proposal, read_history, record_constraints,
                                   search_folder_lock, search_ledger)
from scaleflow.search.methods.base import History, Proposal, SearchMethod
from scaleflow.search.problem import SearchProblem
from scaleflow.training.config import ConfigError

PENDING_FILE = "pending.json"
EXTERNAL = "external"  # the objective's name in the records: scores came from `tell`


class TellError(ConfigError):
    """Scores that cannot be recorded (an unknown, missing or repeated id, a score that is not a finite number,
    nothing pending); the message says which, and nothing was recorded."""


def candidate_id(seed: int, step: int, i: int) -> str:
    return f"s{seed}-b{step}-{i}"


class Search:
    """Ask/tell over a search problem and a folder (module docstring).

    Args:
        problem: the prior, its judge and pool (`search.problem.build_problem(run, "external")`).
        method: the proposing method (`search.methods.build_method`).
        folder: where `search.jsonl` and the pending batch live (one writer at a time: its lock).
        seed: the search's seed (its initial rows and every draw).
        n_initial: real pool rows in the first batch (default: the first `ask`'s n).
        objective_name: the objective's name in the records.

    Example (scores computed in Python here; usually they come back days later):
        search = Search(problem, build_method("guided", {}), "searches/by-hand")
        batch = search.ask(8)                     # [{"id", "embedding", "text", "text_is", "valid", ...}]
        search.tell({c["id"]: my_score(c["text"]) for c in batch})
    """

    def __init__(self, problem: SearchProblem, method: SearchMethod, folder: str | Path, seed: int = 0,
                 n_initial: Optional[int] = None, objective_name: str = EXTERNAL):
        self.problem, self.method, self.folder, self.seed = problem, method, Path(folder), seed
        self.n_initial, self.objective_name = n_initial, objective_name

    @property
    def pending_path(self) -> Path:
        return self.folder / PENDING_FILE

    def history(self, method: Optional[str] = None, seed: Optional[int] = None) -> History:
        """What this search (or `method`, `seed` in the same folder) has recorded."""
        return read_history(search_ledger(self.folder), method or self.method.name,
                            self.seed if seed is None else seed, self.problem.dim)

    def pending(self, history: Optional[History] = None) -> Optional[dict]:
        """The batch asked and not yet told (as written to `pending.json`), or None. A pending file whose batch is
        already in `search.jsonl` (a kill between recording it and removing the file) is removed here.
        `history`: this search's, when the caller has read it already."""
        if not self.pending_path.exists():
            return None
        pending = read_json(self.pending_path)
        mine = (pending.get("method"), pending.get("seed")) == (self.method.name, self.seed)
        if not mine:
            history = self.history(pending.get("method"), pending.get("seed"))
        elif history is None:
            history = self.history()
        if history.n_steps > pending.get("step", -1):
            self.pending_path.unlink()
            return None
        if not mine:
            raise ConfigError(f"{self.pending_path}: the pending batch is {pending.get('method')} seed "
                              f"{pending.get('seed')}, not {self.method.name} seed {self.seed}; tell its scores first")
        return pending

    def ask(self, n: int) -> list[dict]:
        """The next `n` candidates (the pending ones if a batch is pending): one dict each with `id`,
        `embedding` (original space), `text`, `text_is` ("pool row", "nearest training text" or None),
        `valid`, `novel`, `counts`, `nearest_cosine`, `nearest_texts`, `step`."""
        if n < 1:
            raise ValueError(f"n must be >= 1; got {n}")
        with search_folder_lock(self.folder):
            history = self.history()  # read once: for the pending batch's check and the proposal
            pending = self.pending(history)
            if pending is None:
                pending = self._propose(n, history)
                write_json(self.pending_path, pending)  # atomic: a kill leaves the batch whole or absent
            return pending["candidates"]

    def _propose(self, n: int, history: History) -> dict:
        began = time.perf_counter()
        cache = getattr(self.method, "gp_cache", None)  # guided / prior-filtered: the latest GP fit
        if cache is not None and not cache:
            cache.update(_read_gp_cache(self.folder / GP_CACHE_FILE))
        proposal, proposed_by = next_proposal(self.problem, self.method, history, self.seed, n, self.n_initial or n)
        if cache:  # each ask is often a new process: without it a warm-started search would replay every fit
            _write_gp_cache(self.folder / GP_CACHE_FILE, cache)
        took = time.perf_counter() - began
        fields, counts = judge_batch(self.problem, proposal)
        step = history.n_steps
        candidates = []
        for i, f in enumerate(fields):
            row = proposal.pool_rows[i]
            text, text_is = f.get("text"), f.get("text_is")
            pool_texts = self.problem.pool_texts
            if text is None and row is not None and pool_texts is not None:  # no decoder: a pool row's own text
                text, text_is = pool_texts[row], "pool row"
            elif text is None:  # else its nearest training row's (a neighbour, not a decoding)
                text = f["nearest_texts"][0][1] if f["nearest_texts"] else None
                text_is = "nearest training text" if text is not None else None
            candidates.append({**f, "id": candidate_id(self.seed, step, i), "step": step, "text": text,
                               "text_is": text_is, "counts": bool(counts[i]), "pool_row": row,
                               "embedding": [float(v) for v in proposal.x[i].tolist()]})
        return {"method": self.method.name, "seed": self.seed, "step": step, "start": len(history),
                "proposed_by": proposed_by, "seconds": took, "info": proposal.info, "fields": fields,
                "candidates": candidates, "best_before": best_counted(history.y, history.counts)}

    def tell(self, scores: Mapping[str, float],
             constraint_values: Optional[Mapping[str, Sequence[float]]] = None) -> list[dict]:
        """Record the pending batch with `scores` (id -> score, one per pending candidate); returns its records.

        A problem with outcome constraints measured outside (`constraints.parse_told_constraint`) needs
        `constraint_values`: id -> one value per constraint, in the problem's order; a candidate that violates one
        does not count, and guided models them as the loop does (the records are the loop's for the same values).

        Raises:
            TellError: nothing pending, an id not in the batch, a candidate without a score, or a score or
                constraint value that is not a finite number; nothing is recorded and the batch stays pending.
        """
        with search_folder_lock(self.folder):
            pending = self.pending()
            if pending is None:
                raise TellError(f"{self.folder}: no batch is pending (ask for one first)")
            ids = [c["id"] for c in pending["candidates"]]
            unknown = [i for i in scores if i not in ids]
            if unknown:
                raise TellError(f"{len(unknown)} id(s) not in the pending batch {ids[0]}..{ids[-1]}: "
                                f"{', '.join(map(str, unknown[:5]))} (already scored, or from another batch)")
            missing = [i for i in ids if i not in scores]
            if missing:
                raise TellError(f"the pending batch has {len(ids)} candidates; no score for {', '.join(missing[:5])}"
                                f"{' ...' if len(missing) > 5 else ''} (tell every score of the batch at once)")
            values = [_finite(scores[i], f"score of {i}") for i in ids]
            measured = self._constraint_values(ids, constraint_values)
            candidates = pending["candidates"]
            x = torch.tensor([c["embedding"] for c in candidates], dtype=torch.float32)
            proposal = Proposal(x, [c["pool_row"] for c in candidates], pending["info"])
            fields = pending["fields"]
            counts = torch.tensor([c["counts"] for c in candidates])
            if measured is not None:
                counts = record_constraints(self.problem.constraints, measured, fields, counts)
            records = batch_records(fields, counts, self.objective_name, self.method.name, self.seed, pending["step"],
                               pending["start"], proposal, torch.tensor(values, dtype=torch.float64),
                               pending["seconds"], pending["proposed_by"], pending["best_before"])
            search_ledger(self.folder).append_many(records)
            self.pending_path.unlink()  # after the records: a kill in between is noticed by `pending` (never twice)
            return records

    def _constraint_values(self, ids: list[str],
                           told: Optional[Mapping[str, Sequence[float]]]) -> Optional[torch.Tensor]:
        """`[N, C]` the told constraint values of the batch `ids` (None without constraints); TellError otherwise."""
        constraints = self.problem.constraints
        if not constraints:
            if told:
                raise TellError("this search has no constraints; tell only scores")
            return None
        names = ", ".join(c.name for c in constraints)
        rows = []
        for i in ids:
            row = (told or {}).get(i)
            if row is None or len(row) != len(constraints):
                raise TellError(f"{i}: needs a value of each constraint ({names})")
            rows.append([_finite(v, f"{c.name} of {i}") for v, c in zip(row, constraints)])
        return torch.tensor(rows, dtype=torch.float64)


def _finite(value: object, what: str) -> float:
    """`value` as a float; TellError naming `what` when it is not a finite number (a bool is not one)."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number):
        raise TellError(f"{what}: {value!r} is not a finite number")
    return number


GP_CACHE_FILE = "gp_fits.pt"  # the latest anchor's GP hyperparameters, keyed by a digest of the rows it saw


def _read_gp_cache(path: Path) -> dict:
    """What `_write_gp_cache` wrote, or {} (no file, or one that cannot be read: the fits are then replayed;
    a key names the exact rows a fit saw, so a stale entry is never used)."""
    try:
        loaded = torch.load(path, weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _write_gp_cache(path: Path, cache: dict) -> None:
    partial = path.with_name(path.name + ".partial")
    torch.save(dict(cache), partial)
    partial.replace(path)  # atomic: a kill leaves the old cache or the new one
