"""What a search folder says: per method, the best valid novel score with an interval over seeds, its lead
over the best other method, the best-so-far curves, the share of candidates that count, batch diversity
and cost; the best candidates.

Two rules make the numbers comparable. The budget: a method is reported only when every one of its seeds
scored exactly the search's budget of candidates (`search.json`); one with fewer or more is marked
(`budget_complete: false`, its evaluations per seed) and left out of every comparison. The pairing: all
methods of a seed share its target and its initial rows, so a lead is the paired t interval of the
per-seed differences (`stats.seed_difference`), not Welch's. A search with several objectives adds each
method's hypervolume and guided's lead in it, and the front as a figure (`search.pareto_report`)."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from scaleflow.evaluation.plots import new_figure, save_figure
from scaleflow.files import read_json, write_json
from scaleflow.search.pareto_report import add_hypervolumes, is_pareto, plot_pareto_front
from scaleflow.stats.intervals import mean_interval, seed_difference
from scaleflow.storage.ledger import Ledger

SEARCH_FILE = "search.jsonl"
SETTINGS_FILE = "search.json"
# Settings added after folders were written, with what their absence means (how those folders ran): a
# reader of a folder's settings overlays them first, so an old folder resumes as it began.
# (An ask/tell folder recorded no diversity weight before the hinge: it ran the mean-cosine term at weight 1.)
LATER_SETTINGS = {"gp_warm_start": False, "max_batch_cosine": 1.0, "diversity": 1.0, "diversity_cosine": None,
                  "restart_share": 0.0, "restart_time": 0.5}
INITIAL = "initial"


def read_folder_settings(path: Path) -> dict:
    """A search folder's settings file (`SETTINGS_FILE`) as the folder ran: `LATER_SETTINGS` under what it holds."""
    return {**LATER_SETTINGS, **read_json(path)}


def counts(record: dict) -> bool:
    """Whether a recorded candidate counts: valid, novel, and where required its text's round trip good enough
    (`--min-roundtrip`), its log-density under the prior high enough (`--min-log-density`) and its outcome
    constraints met (`--constraint`)."""
    return bool(record["valid"] and record["novel"] and record.get("roundtrip_ok", True)
                and record.get("log_density_ok", True) and record.get("constraints_ok", True))

def whole_batches(records: list[dict]) -> dict[tuple[str, int], list[dict]]:
    """(method, seed) -> its records of whole batches, in candidate order (a torn batch is dropped, a
    repeated one taken from its last whole copy)."""
    groups: dict[tuple[str, int, int, str], list[dict]] = defaultdict(list)
    for record in records:
        groups[(record["method"], record["seed"], record["step"], record["attempt"])].append(record)
    steps: dict[tuple[str, int], dict[int, list[dict]]] = defaultdict(dict)
    for (method, seed, step, _), batch in groups.items():
        if len(batch) == batch[0]["step_size"]:
            steps[(method, seed)][step] = batch
    out = {}
    for key, by_step in steps.items():
        ordered: list[dict] = []
        for step in range(len(by_step)):
            if step not in by_step:
                break
            ordered += sorted(by_step[step], key=lambda r: r["index"])
        out[key] = ordered
    return out


def best_so_far(records: list[dict]) -> list[Optional[float]]:
    """Per evaluation, the best score among candidates that count so far (None before the first)."""
    best, curve = None, []
    for r in records:
        if counts(r) and (best is None or r["score"] > best):
            best = r["score"]
        curve.append(best)
    return curve


def proposed_batches(records: list[dict]) -> list[list[dict]]:
    """The records of each proposed batch (the initial design excluded), by step."""
    by_step: dict[int, list[dict]] = defaultdict(list)
    for r in records:
        if r["proposed_by"] != INITIAL:
            by_step[r["step"]].append(r)
    return list(by_step.values())


def batch_diversity(records: list[dict]) -> Optional[float]:
    """Mean pairwise cosine similarity of the candidates within each proposed batch (initial design
    excluded), averaged over batches: near 1 means a batch collapsed onto one point."""
    values = []
    for batch in proposed_batches(records):
        if len(batch) < 2:
            continue
        x = np.asarray([r["embedding"] for r in batch], dtype=np.float64)
        x /= np.linalg.norm(x, axis=1, keepdims=True).clip(1e-30)
        sims = x @ x.T
        values.append(float((sims.sum() - np.trace(sims)) / (len(x) * (len(x) - 1))))
    return float(np.mean(values)) if values else None


DIVERSE_K, DIVERSE_MAX_COSINE = 4, 0.7  # "k-diverse best": k candidates, pairwise below this cosine


def k_diverse_best(records: list[dict], k: int = DIVERSE_K, max_cosine: float = DIVERSE_MAX_COSINE) -> Optional[float]:
    """The best score that `k` counted candidates, pairwise below cosine `max_cosine`, all reach: the largest
    s such that k candidates scoring >= s are pairwise that different (None if no k such candidates exist)."""
    rows = [r for r in records if counts(r)]
    if len(rows) < k:
        return None
    return k_diverse_best_of(np.asarray([r["embedding"] for r in rows], dtype=np.float64),
                             np.asarray([r["score"] for r in rows], dtype=np.float64), k, max_cosine)


def k_diverse_best_of(x: np.ndarray, scores: np.ndarray, k: int = DIVERSE_K,
                      max_cosine: float = DIVERSE_MAX_COSINE) -> Optional[float]:
    """`k_diverse_best` of candidates `x: [N, D]` with `scores: [N]`, all counted.

    Exact: candidates are added best first, and after each one a depth-first search looks for k pairwise
    different candidates that include it (the first time such a set exists, its worst score is the answer)."""
    if len(scores) < k:
        return None
    order = np.argsort(-np.asarray(scores), kind="stable")
    scores = np.asarray(scores)[order]
    x = np.asarray(x, dtype=np.float64)[order]
    x = x / np.linalg.norm(x, axis=1, keepdims=True).clip(1e-30)
    apart = (x @ x.T) < max_cosine  # [N, N]: pairs different enough

    def extend(chosen: list[int], options: list[int]) -> bool:
        if len(chosen) == k:
            return True
        for position, j in enumerate(options):
            if len(chosen) + len(options) - position < k:
                return False
            if extend(chosen + [j], [o for o in options[position + 1:] if apart[j, o]]):
                return True
        return False

    for newest in range(k - 1, len(scores)):
        if extend([newest], [j for j in range(newest) if apart[newest, j]]):
            return float(scores[newest])
    return None


def batch_k_diverse_best(records: list[dict], k: int = DIVERSE_K,
                         max_cosine: float = DIVERSE_MAX_COSINE) -> tuple[Optional[float], Optional[float]]:
    """Per proposed batch (initial design excluded), the k-diverse best of its own candidates (`k_diverse_best`:
    what a user who takes k different candidates from one round gets). Returns (its mean over the batches that
    hold k such candidates, or None where none does; the share of batches that hold k, or None without proposed
    batches)."""
    values = [k_diverse_best(batch, k, max_cosine) for batch in proposed_batches(records)]
    if not values:
        return None, None
    held = [v for v in values if v is not None]
    return (float(np.mean(held)) if held else None), float(len(held) / len(values))


@dataclass
class SearchSummary:
    """Per method (rows of `methods`), the budget they were held to, and the paths written."""

    methods: list[dict[str, Any]]
    written: list[Path]
    budget: Optional[int] = None
    budget_source: Optional[str] = None


def search_budget(folder: Path, searches: dict[tuple[str, int], list[dict]]) -> tuple[Optional[int], Optional[str]]:
    """The budget the folder's searches are held to and where it came from: `search.json` (what
    `scaleflow optimize` last ran it with), else the most evaluations any seed has ("largest seen")."""
    settings = folder / SETTINGS_FILE
    if settings.exists():
        budget = read_json(settings).get("budget")
        if isinstance(budget, int):
            return budget, SETTINGS_FILE
    if searches:
        return max(len(r) for r in searches.values()), "largest seen"
    return None, None


def summarize_search(folder: str | Path, budget: Optional[int] = None) -> SearchSummary:
    """Read `folder/search.jsonl`; write `summary.json`, `best.json` and `figures/best_so_far.png` (with several
    objectives also `figures/pareto_front.png`, and hypervolumes in `summary.json`).

    `budget`: evaluations every seed of a reported method must have (default: `search_budget`)."""
    folder = Path(folder)
    searches = whole_batches(Ledger(folder, SEARCH_FILE).records())
    source = "argument"
    if budget is None:
        budget, source = search_budget(folder, searches)
    by_method: dict[str, dict[int, list[dict]]] = defaultdict(dict)
    for (method, seed), records in searches.items():
        by_method[method][seed] = records
    rows, best_candidates = [], {}
    for method, seeds in sorted(by_method.items()):
        # A seed whose candidates never count scores nothing; its best is left out and counted apart.
        bests = {s: best_so_far(r)[-1] for s, r in sorted(seeds.items())}
        evaluations = {s: len(r) for s, r in sorted(seeds.items())}
        complete = budget is not None and all(n == budget for n in evaluations.values())
        scored = [b for b in bests.values() if b is not None]
        mean, interval = mean_interval(scored) if scored and complete else (None, None)
        generated = [r for records in seeds.values() for r in records if r["proposed_by"] != INITIAL]
        diverse = {s: k_diverse_best(r) for s, r in sorted(seeds.items())}
        per_batch = [batch_k_diverse_best(r) for r in seeds.values()]
        rows.append({
            "method": method, "seeds": sorted(seeds), "evaluations": evaluations, "budget_complete": complete,
            "best": mean, "best_interval": interval, "best_per_seed": bests,
            "seeds_without_valid_novel": sum(b is None for b in bests.values()),
            "best_any": float(np.mean([max(x["score"] for x in r) for r in seeds.values()])),
            "valid_share": _share(generated, "valid"), "novel_share": _share(generated, "novel"),
            "counted_share": _share(generated, "counts"),
            "batch_cosine": _mean_or_none([batch_diversity(r) for r in seeds.values()]),
            # k candidates a user can take, pairwise below cosine 0.7, all at least this good (mean over seeds)
            "k_diverse_best": _mean_or_none(list(diverse.values())),
            "k_diverse_best_per_seed": diverse,
            # the same within each batch: k different good candidates from one round (over the batches that hold k)
            "batch_k_diverse_best": _mean_or_none([best for best, _ in per_batch]),
            "batches_with_k_diverse": _mean_or_none([share for _, share in per_batch]),
            "seconds_per_batch": _seconds_per_batch(seeds),
        })
        counted = sorted((r for records in seeds.values() for r in records if counts(r)),
                         key=lambda r: -r["score"])[:5]
        best_candidates[method] = [{k: r[k] for k in ("seed", "index", "score", "scores", "nearest_cosine",
                                                      "nearest_texts", "pool_row", "text", "text_is",
                                                      "roundtrip_cosine") if k in r}
                                   for r in counted]
    _leads(rows)
    pareto = is_pareto(next(iter(searches.values()), []))
    facts = add_hypervolumes(rows, by_method, counts) if pareto else {}
    write_json(folder / "summary.json", {
        "budget": budget, "budget_source": source,
        "rules": "a method is reported only when every seed scored exactly the budget's candidates; leads are "
                 "over the best other reported method, t intervals of per-seed differences (paired: every method "
                 "of a seed shares its target and initial rows), Welch where fewer than 2 seeds are shared",
        **({"pareto": facts} if pareto else {}), "methods": rows})
    write_json(folder / "best.json", best_candidates)
    written = [folder / "summary.json", folder / "best.json"]
    if searches:
        written.append(plot_best_so_far(by_method, folder / "figures" / "best_so_far.png"))
    if pareto:
        written.append(plot_pareto_front(by_method, counts, folder / "figures" / "pareto_front.png"))
    return SearchSummary(rows, written, budget, source)


def _leads(rows: list[dict]) -> None:
    """Each reported method's lead over the best other reported method: the mean of per-seed differences of
    the best scores, with its paired t interval (`stats.seed_difference`, over the seeds where both have a
    valid novel candidate). A method with a seed that found none is not compared: its mean over the other
    seeds would leave out exactly its hardest targets."""
    reported = [r for r in rows if r["budget_complete"] and r["best"] is not None
                and not r["seeds_without_valid_novel"]]
    for row in rows:
        if row["best"] is not None and row["seeds_without_valid_novel"]:
            row["lead_note"] = (f"{row['seeds_without_valid_novel']} of {len(row['seeds'])} seeds found no valid "
                                "novel candidate: its mean leaves them out, so it is not compared")
    for row in reported:
        others = [r for r in reported if r["method"] != row["method"]]
        if not others:
            continue
        rival = max(others, key=lambda r: r["best"])
        mine = {s: b for s, b in row["best_per_seed"].items() if b is not None}
        theirs = {s: b for s, b in rival["best_per_seed"].items() if b is not None}
        difference = seed_difference(mine, theirs)
        row.update({"lead_over": rival["method"], "lead": difference.estimate, "lead_interval": difference.ci,
                    "lead_interval_method": difference.method, "lead_interval_width": difference.width,
                    "lead_p_value": difference.p_value, "lead_seeds": list(difference.n)})


def _mean_or_none(values: list[Optional[float]]) -> Optional[float]:
    """The mean of the values that exist (None when none does: JSON has no NaN)."""
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None


def _share(records: list[dict], key: str) -> Optional[float]:
    if not records:
        return None
    if key == "counts":
        return float(np.mean([counts(r) for r in records]))
    return float(np.mean([r[key] for r in records]))


def _seconds_per_batch(seeds: dict[int, list[dict]]) -> Optional[float]:
    per_batch = {(s, r["step"]): r["seconds"] for s, records in seeds.items() for r in records
                 if r["proposed_by"] != INITIAL}
    return float(np.mean(list(per_batch.values()))) if per_batch else None


def plot_best_so_far(by_method: dict[str, dict[int, list[dict]]], path: str | Path) -> Path:
    """Best valid novel score against objective evaluations, per method: mean over seeds, with a 95% t
    band where there are seeds to make one (a seed counts from its first valid novel candidate)."""
    fig = new_figure(7.0, 4.5)
    ax = fig.add_subplot(1, 1, 1)
    for method, seeds in sorted(by_method.items()):
        curves = [best_so_far(r) for r in seeds.values()]
        length = max(len(c) for c in curves)
        xs, means, lows, highs = [], [], [], []
        for i in range(length):
            values = [c[i] for c in curves if i < len(c) and c[i] is not None]
            if not values:
                continue
            mean, interval = mean_interval(values)
            xs.append(i + 1)
            means.append(mean)
            lows.append(interval[0] if interval else mean)
            highs.append(interval[1] if interval else mean)
        if not xs:
            continue
        line, = ax.plot(xs, means, label=f"{method} ({len(seeds)} seed{'s' if len(seeds) > 1 else ''})")
        ax.fill_between(xs, lows, highs, color=line.get_color(), alpha=0.15, linewidth=0)
    ax.set_xlabel("objective evaluations")
    ax.set_ylabel("best score of a valid, novel candidate")
    ax.set_title("search: best so far (mean, 95% interval over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)
