"""Helpers the black-box baselines (`raw_bo`, `turbo`, `cmaes`, `latent_bo`) and the prior's samplers share:
the box of the training rows, and the free filter (judge candidates before scoring, keep those that count)."""
from __future__ import annotations

import math
from typing import Callable

import torch

# Candidates drawn per candidate scored by the methods that filter (guided, prior-filtered, and the raw-space
# baselines' redraws): those the judge would not count are dropped before scoring, which costs no evaluation.
OVERSAMPLE = 4


def reference_box(problem) -> torch.Tensor:
    """`[2, D]` float64: the per-dimension min and max of the prior's training rows (original space)."""
    reference = problem.reference.detach().to(torch.float64)
    return torch.stack([reference.min(0).values, reference.max(0).values])


def counted_first(counts: torch.Tensor, values: torch.Tensor, n: int) -> torch.Tensor:
    """Indices `[min(n, N)]` of the candidates to score: those that count (`counts: [N]` bool) first, each
    group by `values: [N]` (higher first; ties keep the candidates' order), so uncounted candidates are
    scored only when fewer than `n` count."""
    order = torch.argsort(values, descending=True, stable=True)
    order = order[torch.argsort((~counts[order]).to(torch.uint8), stable=True)]
    return order[:n]


def diverse_counted_first(counts: torch.Tensor, values: torch.Tensor, x: torch.Tensor, n: int,
                          max_cosine: float) -> torch.Tensor:
    """`counted_first` with a spread: indices `[min(n, N)]` of candidates `x: [N, D]` chosen greedily, best
    `values` first among those that count, each taken only if its cosine to every one already taken is below
    `max_cosine`; when too few are that far apart, the rest of `counted_first`'s order tops the batch up (so
    a counted candidate still goes before an uncounted one). `max_cosine >= 1`: plain `counted_first`.

    Scored candidates of one batch are then several different answers, not one answer several times; the
    oversampled pool the filter chooses from is what makes the spread cheap."""
    order = counted_first(counts, values, len(values))
    if max_cosine >= 1:
        return order[:n]
    chosen = counted_apart(counts, values, x, n, max_cosine)
    taken = set(chosen)
    chosen += [i for i in order.tolist() if i not in taken][:n - len(chosen)]
    return torch.tensor(chosen, dtype=torch.long)


def counted_apart(counts: torch.Tensor, values: torch.Tensor, x: torch.Tensor, n: int,
                  max_cosine: float) -> list[int]:
    """Indices (at most `n`) of counted candidates (`counts: [N]`) of `x: [N, D]` taken greedily, best `values: [N]`
    first (ties keep the candidates' order), each only if its cosine to every one taken before is below
    `max_cosine`."""
    unit = torch.nn.functional.normalize(x.to(torch.float64), dim=1)
    chosen: list[int] = []
    for i in counted_first(counts, values, len(values)).tolist():
        if len(chosen) == n or not counts[i]:
            break
        if not chosen or float((unit[chosen] @ unit[i]).max()) < max_cosine:
            chosen.append(i)
    return chosen


def filter_info(counts: torch.Tensor, chosen: torch.Tensor) -> dict:
    """What the filter did, for the records: candidates drawn, how many of them count, and how many of the
    chosen do."""
    return {"drawn": int(counts.numel()), "drawn_counted": int(counts.sum()),
            "chosen_counted": int(counts[chosen].sum())}


def greedy_counted(acquisition, choices: torch.Tensor, n: int, counts_of: Callable[[torch.Tensor], torch.Tensor],
                   look: int, max_batch_size: int = 512) -> tuple[torch.Tensor, dict]:
    """Greedy batch selection with the free filter: BoTorch's `optimize_acqf_discrete` (q = `n`, sequential
    conditioning, each choice once) where each round takes the best choice *that counts* among the `look`
    best by the acquisition, or the best one when none of them counts.

    Args:
        acquisition: a BoTorch acquisition taking `[b, 1, d]` that accepts `X_pending` (qLogNEI).
        choices: `[N, d]` the candidates in the acquisition's input space.
        counts_of: indices `[k]` into `choices` -> `[k]` bool, whether the judge counts them (called once per
            choice at most: decoding and judging happen only for choices that reach the top `look`).
        look: choices judged per round (1: plain greedy, no filter).

    Returns:
        indices `[n]` into `choices` in the order chosen, and what the filter did (`filter_info`'s keys, and
        `acquisition`: the largest value a chosen candidate had when chosen).
    """
    if not 1 <= n <= len(choices):
        raise ValueError(f"cannot choose {n} of {len(choices)} candidates")
    base = acquisition.X_pending
    available = torch.ones(len(choices), dtype=torch.bool)
    known: dict[int, bool] = {}
    chosen: list[int] = []
    best = float("-inf")
    try:
        for _ in range(n):
            with torch.no_grad():
                values = torch.cat([acquisition(block.unsqueeze(-2)).reshape(-1)
                                    for block in choices.split(max_batch_size)])
            values = values.masked_fill(~available, float("-inf"))
            top = [int(i) for i in values.topk(min(look, int(available.sum()))).indices]
            unknown = [i for i in top if i not in known]
            if unknown:
                known.update(zip(unknown, counts_of(torch.tensor(unknown)).tolist()))
            pick = next((i for i in top if known[i]), top[0])
            best = max(best, float(values[pick]))
            chosen.append(pick)
            available[pick] = False
            pending = choices[chosen]
            acquisition.set_X_pending(pending if base is None else torch.cat([base, pending], dim=-2))
    finally:
        acquisition.set_X_pending(base)
    info = {"drawn": len(known), "drawn_counted": sum(known.values()),
            "chosen_counted": sum(known.get(i, False) for i in chosen),
            "acquisition": best if math.isfinite(best) else None}
    return torch.tensor(chosen, dtype=torch.long), info
