"""The optimizer scale study's answers (design note 004's four questions), drawn from a `vit` sweep's rows.

Each answer compares optimizers at every scale with Welch's 95% interval of the difference over seeds,
and says in a plain sentence what the interval shows, or that the data cannot tell (one seed, or an
interval that includes 0). Rank scaling is a least-squares slope against log10(parameters) with its
t interval over all (scale, seed) points of an optimizer.
"""
from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import numpy as np
from scipy import stats

from scaleflow.sweeps.summary import _difference_interval, mean_interval

OPTIMIZER_ORDER = ("sgd", "adamw", "muon")
# Pairs compared, (challenger, reference): the note asks whether the second-order method keeps its edge.
PAIRS = (("muon", "adamw"), ("muon", "sgd"), ("adamw", "sgd"))


def _ok(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r.get("status") == "ok" and not r.get("diverged")]


def _values(rows, optimizer: str, params: int, column: str) -> list[float]:
    return [float(r[column]) for r in rows if r.get("optimizer") == optimizer and r.get("params") == params
            and isinstance(r.get(column), (int, float)) and math.isfinite(r[column])]


def _fmt(x: Optional[float], digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def compare_at_scales(rows: Sequence[dict[str, Any]], column: str, a: str, b: str) -> list[dict[str, Any]]:
    """Per model size (smallest first): mean of `column` for optimizers `a` and `b`, the difference a - b,
    its Welch interval (None with fewer than 2 seeds each) and a verdict."""
    ok = _ok(rows)
    sizes = sorted({r["params"] for r in ok if r.get("params")})
    out = []
    for params in sizes:
        va, vb = _values(ok, a, params, column), _values(ok, b, params, column)
        if not va or not vb:
            continue
        scale = next(r.get("scale") for r in ok if r["params"] == params)
        diff = float(np.mean(va) - np.mean(vb))
        ci = _difference_interval(va, vb)
        if ci is None:
            verdict = "cannot tell (one seed)"
        elif ci[0] > 0:
            verdict = f"{a} higher"
        elif ci[1] < 0:
            verdict = f"{b} higher"
        else:
            verdict = "cannot tell (interval includes 0)"
        out.append({"scale": scale, "params": params, a: float(np.mean(va)), b: float(np.mean(vb)), "n": [len(va), len(vb)],
                    "difference": diff, "ci": ci, "verdict": verdict})
    return out


def slope_vs_log_params(rows: Sequence[dict[str, Any]], column: str, optimizer: str) -> Optional[dict[str, Any]]:
    """Least-squares slope of `column` against log10(params) over every run of `optimizer`, with its 95%
    t interval (None with fewer than 3 runs or fewer than 2 sizes)."""
    points = [(math.log10(r["params"]), float(r[column])) for r in _ok(rows)
              if r.get("optimizer") == optimizer and r.get("params") and isinstance(r.get(column), (int, float))
              and math.isfinite(r[column])]
    if len(points) < 3 or len({x for x, _ in points}) < 2:
        return None
    fit = stats.linregress(*zip(*points))
    half = float(stats.t.ppf(0.975, len(points) - 2) * fit.stderr)
    return {"slope": float(fit.slope), "ci": [fit.slope - half, fit.slope + half], "n": len(points)}


def _pair_sentence(comparisons: list[dict], column: str, a: str, b: str) -> str:
    if not comparisons:
        return f"no scale has both {a} and {b}"
    parts = []
    for c in comparisons:
        ci = f" [{_fmt(c['ci'][0])}, {_fmt(c['ci'][1])}]" if c["ci"] else ""
        parts.append(f"{c['scale']}: {c['difference']:+.3f}{ci} ({c['verdict']})")
    return f"{column} {a} - {b}: " + "; ".join(parts)


def _difference_text(c: dict, a: str, b: str) -> str:
    ci = f" [{_fmt(c['ci'][0])}, {_fmt(c['ci'][1])}]" if c["ci"] else " (no interval: one seed)"
    return f"{a} - {b} = {c['difference']:+.3f}{ci}"


def _largest_verdict(comparisons: list[dict], a: str, b: str, what: str) -> str:
    """A sentence on the largest scale: who has `what` ("the higher test accuracy"), with the difference."""
    if not comparisons:
        return f"The data cannot tell: no scale has both {a} and {b}."
    last = comparisons[-1]
    diff = _difference_text(last, a, b)
    if last["verdict"].startswith("cannot tell"):
        return f"At the largest scale run ({last['scale']}) the data cannot tell whether {a} or {b} has {what} ({diff})."
    winner = a if last["verdict"] == f"{a} higher" else b
    held = [c for c in comparisons if c["verdict"] == last["verdict"]]
    return (f"At the largest scale run ({last['scale']}) {winner} has {what} ({diff}); the same holds at "
            f"{len(held)} of {len(comparisons)} scales.")


def answer_questions(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The note's four questions answered from the records: for each, the numbers (differences with
    intervals per scale, slopes with intervals) and a plain sentence, `answer`."""
    present = [o for o in OPTIMIZER_ORDER if any(r.get("optimizer") == o for r in _ok(rows))]
    pairs = [(a, b) for a, b in PAIRS if a in present and b in present]
    sizes = sorted({r["params"] for r in _ok(rows) if r.get("params")})
    out: dict[str, Any] = {"optimizers": present, "params": sizes, "n_diverged": sum(bool(r.get("diverged")) for r in rows)}
    if not pairs:
        note = "the data cannot tell: the sweep needs at least two optimizers (and two seeds for intervals)"
        return {**out, **{q: {"answer": note} for q in ("scale_robustness", "rank_scaling", "cost", "generalization")}}

    robustness = {f"{a}-{b}": compare_at_scales(rows, "test_acc", a, b) for a, b in pairs}
    a, b = pairs[0]
    out["scale_robustness"] = {
        "column": "test_acc", "by_pair": robustness,
        "details": [_pair_sentence(robustness[f"{x}-{y}"], "test_acc", x, y) for x, y in pairs],
        "answer": _largest_verdict(robustness[f"{a}-{b}"], a, b, "the higher test accuracy"),
    }

    rank_column = "effective_rank_ratio.hidden"
    slopes = {o: slope_vs_log_params(rows, rank_column, o) for o in present}
    update_slopes = {o: slope_vs_log_params(rows, "update_effective_rank_ratio.hidden", o) for o in present}
    rank_pairs = {f"{x}-{y}": compare_at_scales(rows, rank_column, x, y) for x, y in pairs}
    slope_text = "; ".join(f"{o}: {_fmt(s['slope'])} [{_fmt(s['ci'][0])}, {_fmt(s['ci'][1])}] per decade"
                           if s else f"{o}: too few runs for a slope" for o, s in slopes.items())
    update_pairs = {f"{x}-{y}": compare_at_scales(rows, "update_" + rank_column, x, y) for x, y in pairs}
    rank_answer = (_largest_verdict(rank_pairs[f"{a}-{b}"], a, b, "the higher effective rank (ratio to full rank) of "
                                    "the hidden weight matrices") + " Of what training changed (W - W0): " +
                   _largest_verdict(update_pairs[f"{a}-{b}"], a, b, "the higher effective rank")[0].lower() +
                   _largest_verdict(update_pairs[f"{a}-{b}"], a, b, "the higher effective rank")[1:])
    out["rank_scaling"] = {"column": rank_column, "slopes": slopes, "update_slopes": update_slopes, "by_pair": rank_pairs,
                           "update_by_pair": update_pairs,
                           "details": [f"slope of {rank_column} against log10(params): {slope_text}",
                                       *(_pair_sentence(rank_pairs[f"{x}-{y}"], rank_column, x, y) for x, y in pairs)],
                           "answer": rank_answer}

    time_pairs = {f"{x}-{y}": compare_at_scales(rows, "train_seconds", x, y) for x, y in pairs}
    ratios = {key: [{"scale": c["scale"], "params": c["params"], "ratio": c[key.split("-")[0]] / c[key.split("-")[1]],
                     "difference_seconds": c["difference"], "ci": c["ci"]} for c in comparisons]
              for key, comparisons in time_pairs.items()}
    main = ratios[f"{a}-{b}"]
    if main:
        cost_answer = f"{a}'s training time is {main[0]['ratio']:.2f}x {b}'s at {main[0]['scale']}"
        if len(main) > 1:
            trend = "falls" if main[-1]["ratio"] < main[0]["ratio"] else "rises"
            cost_answer += f" and {main[-1]['ratio']:.2f}x at {main[-1]['scale']} (the ratio {trend} with scale)"
        cost_answer += "."
    else:
        cost_answer = f"The data cannot tell: no scale has both {a} and {b}."
    out["cost"] = {"column": "train_seconds", "time_ratios": ratios,
                   "details": [f"train_seconds {key.replace('-', ' / ')}: " + "; ".join(
                       f"{r['scale']}: {r['ratio']:.2f}x" for r in rs) for key, rs in ratios.items()],
                   "answer": cost_answer}

    gap = {f"{x}-{y}": compare_at_scales(rows, "gap_acc", x, y) for x, y in pairs}
    comparisons = gap[f"{a}-{b}"]
    if not comparisons or comparisons[-1]["verdict"].startswith("cannot tell"):
        where = comparisons[-1]["scale"] if comparisons else "any scale"
        diff = f" ({_difference_text(comparisons[-1], a, b)})" if comparisons else ""
        gen_answer = f"At the largest scale run ({where}) the data cannot tell whether {a} or {b} has the smaller gap{diff}."
    else:
        smaller = b if comparisons[-1]["verdict"] == f"{a} higher" else a
        gen_answer = (f"At the largest scale run ({comparisons[-1]['scale']}) {smaller} has the smaller train-test "
                      f"accuracy gap ({_difference_text(comparisons[-1], a, b)}).")
    out["generalization"] = {"column": "gap_acc", "by_pair": gap,
                             "details": [_pair_sentence(gap[f"{x}-{y}"], "gap_acc", x, y) for x, y in pairs],
                             "answer": gen_answer}
    return out


def question_lines(answers: dict[str, Any]) -> list[str]:
    """The answers as lines for a terminal or a README."""
    titles = {"scale_robustness": "1. Scale robustness", "rank_scaling": "2. Rank scaling", "cost": "3. Cost",
              "generalization": "4. Generalization"}
    lines = []
    for key, title in titles.items():
        entry = answers.get(key, {})
        lines.append(f"{title}: {entry.get('answer', '-')}")
        lines += [f"   {d}" for d in entry.get("details", [])]
    if answers.get("n_diverged"):
        lines.append(f"({answers['n_diverged']} trial(s) diverged and are left out of the comparisons)")
    return lines
