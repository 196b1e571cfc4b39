"""The optimizer scale study's answers (design note 004's four questions), drawn from a `vit` sweep's rows.

Each answer compares optimizers at every scale with the 95% interval of the difference, paired over the
seeds both ran (a seed fixes the split, the initialization and the batch order for every optimizer; Welch
only where they share fewer than two seeds), training time on a log scale so its interval is one of the
ratio. A question asks many comparisons at once (3 pairs x the scales), so its verdicts are decided by
Holm-adjusted p-values over all of them, and its answer says how many; the intervals shown stay
unadjusted. A verdict is a side, "no difference at this precision" (with the interval and its width), or
"cannot tell" (one seed, or no spread over seeds to judge a difference by). Rank scaling is a
least-squares slope against log10(parameters) with its t interval over all (scale, seed) points of an
optimizer. Diverged trials are counted and left out of every comparison. When options other than scale
and optimizer vary, each of their settings is answered on its own: seeds are the only replicates pooled.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Optional, Sequence

import numpy as np
from scipy import stats

from scaleflow.stats import Difference, decide, holm, verdict
from scaleflow.sweeps.summary import group_difference, keyed_by_seed

OPTIMIZER_ORDER = ("sgd", "adamw", "muon")
# Pairs compared, (challenger, reference): the note asks whether the second-order method keeps its edge.
PAIRS = (("muon", "adamw"), ("muon", "sgd"), ("adamw", "sgd"))
QUESTIONS = ("scale_robustness", "rank_scaling", "cost", "generalization")
RANK_COLUMN = "effective_rank_ratio.hidden"


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _usable(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r.get("status") == "ok" and not r.get("diverged")]


def _values(rows, optimizer: str, params: int, column: str,
            transform: Callable[[float], float]) -> dict[str, Any]:
    """One optimizer's values at one size: {"values": [S] transformed, "by_seed": {seed: value} or None,
    "mean": of the untransformed values}."""
    trials = [r for r in rows if r.get("optimizer") == optimizer and r.get("params") == params
              and _finite(r.get(column))]
    values = [transform(float(r[column])) for r in trials]
    return {"values": values, "by_seed": keyed_by_seed([r.get("seed") for r in trials], values),
            "mean": float(np.mean([float(r[column]) for r in trials])) if trials else None}


_VERDICTS = {"no difference": "no difference at this precision", "no interval": "cannot tell (one seed)",
             "no spread": "cannot tell (no spread over seeds)", "identical": "cannot tell (identical)"}


def _as_difference(c: dict[str, Any]) -> Difference:
    return Difference(c["difference"], c["ci"], c["p_value"], c["method"], tuple(c["n_compared"]))


def _decide(c: dict[str, Any], adjusted_p: Optional[float] = None) -> None:
    """Set a comparison's `verdict` (short: "{a} higher", "no difference at this precision", "cannot tell
    (...)") and `statement` (the sentence with the interval, its width, the method and any Holm p)."""
    a, b = c["pair"]
    diff = _as_difference(c)
    code = decide(diff, adjusted_p)
    c["verdict"] = {"a": f"{a} higher", "b": f"{b} higher"}.get(code) or _VERDICTS[code]
    c["statement"] = verdict(diff, adjusted_p, names=(a, b))


def compare_at_scales(rows: Sequence[dict[str, Any]], column: str, a: str, b: str,
                      transform: Callable[[float], float] = lambda v: v) -> list[dict[str, Any]]:
    """Per model size where both `a` and `b` ran (smallest first): their means of `column`, the
    difference a - b of the (transformed) values, paired over the seeds both ran (Welch where they share
    fewer than two), its interval, width and p-value, and a verdict on this comparison alone ("{a} higher",
    "{b} higher", "no difference at this precision", or "cannot tell (...)": one seed, no spread over seeds).
    Many such comparisons at once need `holm_adjust`, which decides them again together."""
    ok = _usable(rows)
    out = []
    for params in sorted({r["params"] for r in ok if r.get("params")}):
        ga, gb = _values(ok, a, params, column, transform), _values(ok, b, params, column, transform)
        if not ga["values"] or not gb["values"]:
            continue
        diff = group_difference(ga, gb)
        scale = next(r.get("scale") for r in ok if r["params"] == params)
        c = {"scale": scale, "params": params, "pair": [a, b], a: ga["mean"], b: gb["mean"],
             "n": [len(ga["values"]), len(gb["values"])], "difference": diff.estimate, "ci": diff.ci,
             "width": diff.width, "method": diff.method, "n_compared": list(diff.n), "p_value": diff.p_value,
             "p_holm": None, "family": None}
        _decide(c)
        out.append(c)
    return out


def holm_adjust(comparisons: Sequence[dict[str, Any]]) -> int:
    """Decide `comparisons` (from `compare_at_scales`: one question's pairs x scales) again, together, by
    Holm-adjusted p-values, so that the chance of any false "higher" among them stays at 5%. Each tested
    one gets `p_holm` and `family` (how many were adjusted together) and a new verdict and statement; those
    without a test (one seed, no spread over seeds) keep their "cannot tell" and are not counted.
    Returns the number adjusted together."""
    tested = [c for c in comparisons if c["ci"] is not None and c["ci"][0] != c["ci"][1]]
    for c, p in zip(tested, holm([c["p_value"] for c in tested])):
        c["p_holm"], c["family"] = p, len(tested)
        _decide(c, p)
    return len(tested)


def _adjust_question(*by_pair: dict[str, list[dict[str, Any]]]) -> tuple[int, str]:
    """Holm over every comparison of one question (each `by_pair` a measure's {pair: comparisons}): the
    count adjusted together and a sentence saying it."""
    comparisons = [c for each in by_pair for cs in each.values() for c in cs]
    count = holm_adjust(comparisons)
    shape = f"{len(by_pair[0])} pair(s) x {len({c['params'] for c in comparisons})} scale(s)" \
            + (f" x {len(by_pair)} measures" if len(by_pair) > 1 else "")
    if not count:
        return 0, f"No comparison had an interval to test ({shape})."
    untested = len(comparisons) - count
    shape += f"; {untested} more without an interval to test" if untested else ""
    plural = "comparison" if count == 1 else "comparisons"
    return count, f"Verdicts: {count} {plural} ({shape}), Holm-adjusted; intervals shown unadjusted."


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
    """`a - b = +0.050 [+0.045, +0.055], width 0.010, paired over 3 seeds, Holm-adjusted p 0.004`."""
    text = f"{a} - {b} = {c['difference']:+.3f}"
    if not c["ci"]:
        return text + " (no interval: one seed)"
    text += f" [{c['ci'][0]:+.3f}, {c['ci'][1]:+.3f}], width {c['width']:.3g}, {c['method']} over {c['n_compared'][0]}" \
            + (f" and {c['n_compared'][1]}" if c["n_compared"][0] != c["n_compared"][1] else "") + " seeds"
    return text + (f", Holm-adjusted p {c['p_holm']:.3g}" if c["p_holm"] is not None else "")


def _pair_sentence(comparisons: list[dict], column: str, a: str, b: str) -> str:
    if not comparisons:
        return f"{column}: no scale where both {a} and {b} ran"
    parts = [f"{c['scale']}: {c['difference']:+.3f}, {c['statement']}" for c in comparisons]
    return f"{column} {a} - {b}: " + "; ".join(parts)


def _largest_verdict(comparisons: list[dict], a: str, b: str, what: str, lower_wins: bool = False) -> str:
    """A sentence on the largest scale where both ran: who has `what`, with the difference, its interval and
    width. `lower_wins`: `what` belongs to the lower value ("the smaller gap")."""
    if not comparisons:
        return f"The data cannot tell: no scale where both {a} and {b} ran."
    last = comparisons[-1]
    where = f"At the largest scale where both ran ({last['scale']})"
    diff = _difference_text(last, a, b)
    if not last["verdict"].endswith(" higher"):
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
    """Training time ratios per pair and scale, with intervals (paired on log seconds), Holm-adjusted over
    all pairs and scales."""
    compared = {f"{x}-{y}": compare_at_scales(rows, "train_seconds", x, y, transform=math.log) for x, y in pairs}
    count, note = _adjust_question(compared)
    ratios = {}
    for (x, y), comparisons in zip(pairs, compared.values()):
        ratios[f"{x}-{y}"] = [{"scale": c["scale"], "params": c["params"], "ratio": math.exp(c["difference"]),
                               "ci": [math.exp(v) for v in c["ci"]] if c["ci"] else None, "method": c["method"],
                               "n_compared": c["n_compared"], "p_value": c["p_value"], "p_holm": c["p_holm"],
                               "verdict": c["verdict"].replace(f"{x} higher", f"{x} slower")
                                                      .replace(f"{y} higher", f"{y} slower")}
                              for c in comparisons]
    a, b = pairs[0]
    main = ratios[f"{a}-{b}"]

    def text(r):
        if not r["ci"]:
            return f"{r['ratio']:.2f}x (one seed) at {r['scale']}"
        lo, hi = r["ci"]
        holm_p = f", Holm-adjusted p {r['p_holm']:.3g}" if r["p_holm"] is not None else ""
        return f"{r['ratio']:.2f}x [{lo:.2f}, {hi:.2f}] (width {hi - lo:.2f}, {r['method']}{holm_p}) at {r['scale']}"

    if not main:
        answer = f"The data cannot tell: no scale where both {a} and {b} ran."
    else:
        answer = f"{a}'s training time over {b}'s: {text(main[0])}" + (f", {text(main[-1])}" if len(main) > 1 else "")
        if len(main) > 1:
            first, last = main[0]["ratio"], main[-1]["ratio"]
            answer += "; the ratio " + ("rises" if last > first * 1.02 else "falls" if last < first / 1.02
                                        else "stays within 2%") + " with scale"
        undecided = [f"{r['scale']} ({r['verdict']})" for r in main if not r["verdict"].endswith(" slower")]
        answer += "." + (f" The data cannot tell the two apart at {', '.join(undecided)}." if undecided else "")
        answer += " " + note
    details = [f"train_seconds {key.replace('-', ' / ')}: " + "; ".join(f"{text(r)}: {r['verdict']}" for r in rs)
               for key, rs in ratios.items()]
    return {"column": "train_seconds", "time_ratios": ratios, "comparisons": count, "details": details,
            "answer": answer}


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
    count, note = _adjust_question(robustness)
    out["scale_robustness"] = {
        "column": "test_acc", "by_pair": robustness, "comparisons": count,
        "details": [_pair_sentence(robustness[f"{x}-{y}"], "test_acc", x, y) for x, y in pairs],
        "answer": f"{_largest_verdict(robustness[f'{a}-{b}'], a, b, 'the higher test accuracy')} {note} "
                  f"{diverged_text}".strip(),
    }

    slopes = {o: slope_vs_log_params(rows, RANK_COLUMN, o) for o in present}
    update_slopes = {o: slope_vs_log_params(rows, "update_" + RANK_COLUMN, o) for o in present}
    rank_pairs = {f"{x}-{y}": compare_at_scales(rows, RANK_COLUMN, x, y) for x, y in pairs}
    update_pairs = {f"{x}-{y}": compare_at_scales(rows, "update_" + RANK_COLUMN, x, y) for x, y in pairs}
    count, note = _adjust_question(rank_pairs, update_pairs)
    weights_sentence = _largest_verdict(rank_pairs[f"{a}-{b}"], a, b, "the higher effective rank of the weights")
    update_sentence = _largest_verdict(update_pairs[f"{a}-{b}"], a, b, "the higher effective rank of what training "
                                       "changed (W - W0)")
    out["rank_scaling"] = {
        "column": RANK_COLUMN, "slopes": slopes, "update_slopes": update_slopes, "by_pair": rank_pairs,
        "update_by_pair": update_pairs, "comparisons": count,
        "details": ["slope of the update's ratio per decade: " + "; ".join(_slope_text(o, s) for o, s in update_slopes.items()),
                    *(_pair_sentence(rank_pairs[f"{x}-{y}"], RANK_COLUMN, x, y) for x, y in pairs),
                    *(_pair_sentence(update_pairs[f"{x}-{y}"], "update_" + RANK_COLUMN, x, y) for x, y in pairs)],
        "answer": ("Effective rank / full rank of the hidden matrices per decade of parameters: "
                   + "; ".join(_slope_text(o, s) for o, s in slopes.items()) + f". {weights_sentence} {update_sentence} {note}"),
    }

    out["cost"] = _cost(rows, pairs)

    gap = {f"{x}-{y}": compare_at_scales(rows, "gap_acc", x, y) for x, y in pairs}
    count, note = _adjust_question(gap)
    out["generalization"] = {
        "column": "gap_acc", "by_pair": gap, "comparisons": count,
        "details": [_pair_sentence(gap[f"{x}-{y}"], "gap_acc", x, y) for x, y in pairs],
        "answer": f"{_largest_verdict(gap[f'{a}-{b}'], a, b, 'the smaller train-test accuracy gap', lower_wins=True)} "
                  f"{note}",
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
