"""The optimizer scale study's answers (design note 004's four questions), drawn from a `vit` sweep's rows.

Each answer compares optimizers at every scale with Welch's 95% interval of the difference over seeds
(training time on a log scale, so its interval is one of the ratio), and says in a plain sentence what
the interval shows, or that the data cannot tell (one seed, no spread over seeds, or an interval that
includes 0). Rank scaling is a least-squares slope against log10(parameters) with its t interval over all
(scale, seed) points of an optimizer. Diverged trials are counted and left out of every comparison.
When options other than scale and optimizer vary, each of their settings is answered on its own:
seeds are the only replicates pooled.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Optional, Sequence

import numpy as np
from scipy import stats

from scaleflow.sweeps.summary import _difference_interval

OPTIMIZER_ORDER = ("sgd", "adamw", "muon")
# Pairs compared, (challenger, reference): the note asks whether the second-order method keeps its edge.
PAIRS = (("muon", "adamw"), ("muon", "sgd"), ("adamw", "sgd"))
QUESTIONS = ("scale_robustness", "rank_scaling", "cost", "generalization")
RANK_COLUMN = "effective_rank_ratio.hidden"


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _usable(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r.get("status") == "ok" and not r.get("diverged")]


def _values(rows, optimizer: str, params: int, column: str) -> list[float]:
    return [float(r[column]) for r in rows if r.get("optimizer") == optimizer and r.get("params") == params
            and _finite(r.get(column))]


def _fmt(x: Optional[float], digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def compare_at_scales(rows: Sequence[dict[str, Any]], column: str, a: str, b: str,
                      transform: Callable[[float], float] = lambda v: v) -> list[dict[str, Any]]:
    """Per model size where both `a` and `b` ran (smallest first): their means of `column`, the
    difference a - b of the (transformed) values, its Welch interval and a verdict: "{a} higher",
    "{b} higher", or "cannot tell (...)" (one seed, no spread over seeds, or the interval includes 0)."""
    ok = _usable(rows)
    out = []
    for params in sorted({r["params"] for r in ok if r.get("params")}):
        va, vb = _values(ok, a, params, column), _values(ok, b, params, column)
        if not va or not vb:
            continue
        ta, tb = [transform(v) for v in va], [transform(v) for v in vb]
        diff = float(np.mean(ta) - np.mean(tb))
        ci = _difference_interval(ta, tb)
        if ci is None:
            verdict = "cannot tell (one seed)"
        elif ci[0] == ci[1]:  # every seed gave the same value on both sides: no spread to judge a difference by
            verdict = "cannot tell (no spread over seeds)" if diff else "cannot tell (identical)"
        elif ci[0] > 0:
            verdict = f"{a} higher"
        elif ci[1] < 0:
            verdict = f"{b} higher"
        else:
            verdict = "cannot tell (interval includes 0)"
        scale = next(r.get("scale") for r in ok if r["params"] == params)
        out.append({"scale": scale, "params": params, a: float(np.mean(va)), b: float(np.mean(vb)),
                    "n": [len(va), len(vb)], "difference": diff, "ci": ci, "verdict": verdict})
    return out


def slope_vs_log_params(rows: Sequence[dict[str, Any]], column: str, optimizer: str) -> Optional[dict[str, Any]]:
    """Least-squares slope of `column` against log10(params) over every run of `optimizer`, with its 95%
    t interval (None with fewer than 3 runs or fewer than 2 sizes)."""
    points = [(math.log10(r["params"]), float(r[column])) for r in _usable(rows)
              if r.get("optimizer") == optimizer and r.get("params") and _finite(r.get(column))]
    if len(points) < 3 or len({x for x, _ in points}) < 2:
        return None
    fit = stats.linregress(*zip(*points))
    half = float(stats.t.ppf(0.975, len(points) - 2) * fit.stderr)
    return {"slope": float(fit.slope), "ci": [fit.slope - half, fit.slope + half], "n": len(points)}


def diverged_counts(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (optimizer, scale) with diverged trials: how many of how many."""
    out = []
    for optimizer in OPTIMIZER_ORDER:
        for scale in dict.fromkeys(r.get("scale") for r in rows if r.get("optimizer") == optimizer):
            trials = [r for r in rows if r.get("optimizer") == optimizer and r.get("scale") == scale
                      and r.get("status") == "ok"]
            n = sum(bool(r.get("diverged")) for r in trials)
            if n:
                out.append({"optimizer": optimizer, "scale": scale, "diverged": n, "of": len(trials)})
    return out


def _difference_text(c: dict, a: str, b: str) -> str:
    ci = f" [{_fmt(c['ci'][0])}, {_fmt(c['ci'][1])}]" if c["ci"] else " (no interval: one seed)"
    return f"{a} - {b} = {c['difference']:+.3f}{ci}"


def _pair_sentence(comparisons: list[dict], column: str, a: str, b: str) -> str:
    if not comparisons:
        return f"{column}: no scale where both {a} and {b} ran"
    parts = [f"{c['scale']}: {c['difference']:+.3f}" + (f" [{_fmt(c['ci'][0])}, {_fmt(c['ci'][1])}]" if c["ci"] else "")
             + f" ({c['verdict']})" for c in comparisons]
    return f"{column} {a} - {b}: " + "; ".join(parts)


def _largest_verdict(comparisons: list[dict], a: str, b: str, what: str, lower_wins: bool = False) -> str:
    """A sentence on the largest scale where both ran: who has `what`, with the difference and interval.
    `lower_wins`: `what` belongs to the lower value ("the smaller gap")."""
    if not comparisons:
        return f"The data cannot tell: no scale where both {a} and {b} ran."
    last = comparisons[-1]
    where = f"At the largest scale where both ran ({last['scale']})"
    diff = _difference_text(last, a, b)
    if last["verdict"].startswith("cannot tell"):
        return f"{where} the data cannot tell whether {a} or {b} has {what} ({diff}; {last['verdict']})."
    higher = a if last["verdict"] == f"{a} higher" else b
    winner = (b if higher == a else a) if lower_wins else higher
    held = sum(c["verdict"] == last["verdict"] for c in comparisons)
    return f"{where} {winner} has {what} ({diff}); the same holds at {held} of {len(comparisons)} scales."


def _slope_text(optimizer: str, slope: Optional[dict]) -> str:
    if slope is None:
        return f"{optimizer}: too few runs for a slope"
    lo, hi = slope["ci"]
    trend = "rises" if lo > 0 else "falls" if hi < 0 else "cannot tell"
    return f"{optimizer} {slope['slope']:+.4f} [{lo:+.4f}, {hi:+.4f}] ({trend})"


def _cost(rows, pairs) -> dict[str, Any]:
    """Training time ratios per pair and scale, with intervals (Welch on log seconds)."""
    ratios = {}
    for x, y in pairs:
        comparisons = compare_at_scales(rows, "train_seconds", x, y, transform=math.log)
        ratios[f"{x}-{y}"] = [{"scale": c["scale"], "params": c["params"], "ratio": math.exp(c["difference"]),
                               "ci": [math.exp(v) for v in c["ci"]] if c["ci"] else None,
                               "verdict": c["verdict"].replace(f"{x} higher", f"{x} slower").replace(f"{y} higher", f"{y} slower")}
                              for c in comparisons]
    a, b = pairs[0]
    main = ratios[f"{a}-{b}"]

    def text(r):
        ci = f" [{r['ci'][0]:.2f}, {r['ci'][1]:.2f}]" if r["ci"] else " (one seed)"
        return f"{r['ratio']:.2f}x{ci} at {r['scale']}"

    if not main:
        answer = f"The data cannot tell: no scale where both {a} and {b} ran."
    else:
        answer = f"{a}'s training time over {b}'s: {text(main[0])}" + (f", {text(main[-1])}" if len(main) > 1 else "")
        if len(main) > 1:
            first, last = main[0]["ratio"], main[-1]["ratio"]
            answer += "; the ratio " + ("rises" if last > first * 1.02 else "falls" if last < first / 1.02
                                        else "stays within 2%") + " with scale"
        undecided = [r["scale"] for r in main if r["verdict"].startswith("cannot tell")]
        answer += "." + (f" The data cannot tell the two apart at {', '.join(map(str, undecided))}." if undecided else "")
    details = [f"train_seconds {key.replace('-', ' / ')}: " + "; ".join(text(r) for r in rs) for key, rs in ratios.items()]
    return {"column": "train_seconds", "time_ratios": ratios, "details": details, "answer": answer}


def _answer(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The four answers for rows that differ only in scale, optimizer and seed."""
    usable = _usable(rows)
    present = [o for o in OPTIMIZER_ORDER if any(r.get("optimizer") == o for r in usable)]
    pairs = [(a, b) for a, b in PAIRS if a in present and b in present]
    diverged = diverged_counts(rows)
    out: dict[str, Any] = {"optimizers": present, "params": sorted({r["params"] for r in usable if r.get("params")}),
                           "diverged": diverged}
    diverged_text = ("Diverged, left out: " + "; ".join(f"{d['optimizer']} at {d['scale']} ({d['diverged']} of {d['of']})"
                                                        for d in diverged) + ".") if diverged else ""
    if not pairs:
        if rows and not usable:
            note = "The data cannot tell: every trial failed or diverged."
        else:
            note = "The data cannot tell: the sweep needs at least two optimizers that trained (and two seeds for intervals)."
        return {**out, **{q: {"answer": f"{note} {diverged_text}".strip()} for q in QUESTIONS}}
    a, b = pairs[0]

    robustness = {f"{x}-{y}": compare_at_scales(rows, "test_acc", x, y) for x, y in pairs}
    out["scale_robustness"] = {
        "column": "test_acc", "by_pair": robustness,
        "details": [_pair_sentence(robustness[f"{x}-{y}"], "test_acc", x, y) for x, y in pairs],
        "answer": f"{_largest_verdict(robustness[f'{a}-{b}'], a, b, 'the higher test accuracy')} {diverged_text}".strip(),
    }

    slopes = {o: slope_vs_log_params(rows, RANK_COLUMN, o) for o in present}
    update_slopes = {o: slope_vs_log_params(rows, "update_" + RANK_COLUMN, o) for o in present}
    rank_pairs = {f"{x}-{y}": compare_at_scales(rows, RANK_COLUMN, x, y) for x, y in pairs}
    update_pairs = {f"{x}-{y}": compare_at_scales(rows, "update_" + RANK_COLUMN, x, y) for x, y in pairs}
    weights_sentence = _largest_verdict(rank_pairs[f"{a}-{b}"], a, b, "the higher effective rank of the weights")
    update_sentence = _largest_verdict(update_pairs[f"{a}-{b}"], a, b, "the higher effective rank of what training "
                                       "changed (W - W0)")
    out["rank_scaling"] = {
        "column": RANK_COLUMN, "slopes": slopes, "update_slopes": update_slopes, "by_pair": rank_pairs,
        "update_by_pair": update_pairs,
        "details": ["slope of the update's ratio per decade: " + "; ".join(_slope_text(o, s) for o, s in update_slopes.items()),
                    *(_pair_sentence(rank_pairs[f"{x}-{y}"], RANK_COLUMN, x, y) for x, y in pairs),
                    *(_pair_sentence(update_pairs[f"{x}-{y}"], "update_" + RANK_COLUMN, x, y) for x, y in pairs)],
        "answer": ("Effective rank / full rank of the hidden matrices per decade of parameters: "
                   + "; ".join(_slope_text(o, s) for o, s in slopes.items()) + f". {weights_sentence} {update_sentence}"),
    }

    out["cost"] = _cost(rows, pairs)

    gap = {f"{x}-{y}": compare_at_scales(rows, "gap_acc", x, y) for x, y in pairs}
    out["generalization"] = {
        "column": "gap_acc", "by_pair": gap,
        "details": [_pair_sentence(gap[f"{x}-{y}"], "gap_acc", x, y) for x, y in pairs],
        "answer": _largest_verdict(gap[f"{a}-{b}"], a, b, "the smaller train-test accuracy gap", lower_wins=True),
    }
    return out


def answer_questions(rows: Sequence[dict[str, Any]], context: Sequence[str] = ()) -> dict[str, Any]:
    """The note's four questions answered from the records: for each, the numbers (differences with
    intervals per scale, slopes with intervals) and a plain sentence, `answer`.

    `context`: other options that vary in the sweep (epochs, lr, data, ...): each of their settings is
    answered on its own (`{"context": [...], "settings": {label: answers}}`), never pooled as if seeds.
    """
    if not context:
        return _answer(rows)
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(" ".join(f"{k}={row.get(k)}" for k in context), []).append(row)
    return {"context": list(context), "settings": {label: _answer(members) for label, members in groups.items()}}


def question_lines(answers: dict[str, Any]) -> list[str]:
    """The answers as lines for a terminal or a README."""
    if "settings" in answers:
        lines = []
        for label, each in answers["settings"].items():
            lines.append(f"[{label}]")
            lines += question_lines(each)
        return lines
    titles = {"scale_robustness": "1. Scale robustness", "rank_scaling": "2. Rank scaling", "cost": "3. Cost",
              "generalization": "4. Generalization"}
    lines = []
    for key, title in titles.items():
        entry = answers.get(key, {})
        lines.append(f"{title}: {entry.get('answer', '-')}")
        lines += [f"   {d}" for d in entry.get("details", [])]
    return lines
