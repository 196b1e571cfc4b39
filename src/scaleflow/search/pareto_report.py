"""What a Pareto search folder says: per method the hypervolume of its counted candidates, guided's paired lead
over each other method, and the front as a figure.

A seed's hypervolume is that of its counted (valid and novel) candidates' score vectors (`scores`) above the
reference point its records hold (`ref_point`: every method of a seed shares it, as it shares the initial
rows), by `pareto.hypervolume`; a seed with no counted candidate above the reference has hypervolume 0. As for
best scores (`search.report`), a method is compared only when every seed scored the budget's candidates, and
leads are paired over seeds (`stats.seed_difference`)."""
from __future__ import annotations

from itertools import combinations
from pathlib import Path
from typing import Optional

import torch

from scaleflow.evaluation.plots import new_figure, save_figure
from scaleflow.search.pareto import hypervolume, non_dominated
from scaleflow.stats.intervals import mean_interval, seed_difference

LEADER = "guided"  # the method whose hypervolume lead over every other method is reported


def is_pareto(records: list[dict]) -> bool:
    """Whether records come from a search with several objectives (they hold score vectors)."""
    return bool(records) and "scores" in records[0]


def seed_hypervolume(records: list[dict], counts) -> float:
    """The hypervolume of one (method, seed)'s counted candidates (`counts(record) -> bool`) above its reference
    point."""
    ref_point = torch.tensor(records[0]["ref_point"], dtype=torch.float64)
    counted = [r["scores"] for r in records if counts(r)]
    points = torch.tensor(counted, dtype=torch.float64).reshape(-1, len(ref_point))
    return hypervolume(points, ref_point)


def add_hypervolumes(rows: list[dict], by_method: dict[str, dict[int, list[dict]]], counts) -> dict:
    """Add to each summary row (`report.summarize_search`'s, one per method) its hypervolume per seed, their mean
    and 95% interval (methods held to the budget only), and, for every method but `guided`, guided's paired lead
    over it (`guided_hypervolume_lead`, interval, p-value). Returns the folder-wide facts: the objectives and the
    reference point of each seed."""
    for row in rows:
        per_seed = {s: seed_hypervolume(r, counts) for s, r in sorted(by_method[row["method"]].items())}
        mean, interval = mean_interval(list(per_seed.values())) if row["budget_complete"] else (None, None)
        row.update(hypervolume=mean, hypervolume_interval=interval, hypervolume_per_seed=per_seed)
    leader = next((r for r in rows if r["method"] == LEADER and r["budget_complete"]), None)
    for row in rows:
        if leader is None or row is leader or not row["budget_complete"]:
            continue
        difference = seed_difference(leader["hypervolume_per_seed"], row["hypervolume_per_seed"])
        row.update(guided_hypervolume_lead=difference.estimate, guided_hypervolume_lead_interval=difference.ci,
                   guided_hypervolume_lead_method=difference.method, guided_hypervolume_lead_p_value=difference.p_value)
    first = {s: r[0] for seeds in by_method.values() for s, r in seeds.items() if r}
    return {"objectives": next(iter(first.values()))["objective"] if first else None,
            "ref_point_of_seed": {s: r["ref_point"] for s, r in sorted(first.items())},
            "hypervolume_rule": "hypervolume of the counted (valid, novel) candidates' score vectors above the seed's "
                                "reference point (BoTorch); guided's lead over each method: paired over seeds"}


def plot_pareto_front(by_method: dict[str, dict[int, list[dict]]], counts, path: str | Path) -> Path:
    """The counted candidates of each method in every pair of objectives, for the first seed (the smallest seed
    number any method has), the non-dominated ones of the pair joined, and the seed's reference point."""
    seed = min(s for seeds in by_method.values() for s in seeds)
    runs = {m: seeds[seed] for m, seeds in sorted(by_method.items()) if seed in seeds}
    any_records = next(iter(runs.values()))
    names = any_records[0]["objective"].split(" & ")
    n = len(any_records[0]["ref_point"])
    pairs = list(combinations(range(n), 2))
    fig = new_figure(5.0 * min(len(pairs), 3), 4.5 * ((len(pairs) + 2) // 3))
    for k, (i, j) in enumerate(pairs):
        ax = fig.add_subplot((len(pairs) + 2) // 3, min(len(pairs), 3), k + 1)
        for method, records in runs.items():
            points = torch.tensor([r["scores"] for r in records if counts(r)], dtype=torch.float64).reshape(-1, n)
            if not len(points):
                continue
            shown = points[:, [i, j]]
            dots = ax.scatter(shown[:, 0], shown[:, 1], s=10, alpha=0.35)
            front = shown[non_dominated(shown)]
            front = front[front[:, 0].argsort()]
            ax.plot(front[:, 0], front[:, 1], marker="o", markersize=4, color=dots.get_facecolor()[0][:3],
                    label=f"{method} ({len(points)} counted)")
        ref = any_records[0]["ref_point"]
        ax.scatter([ref[i]], [ref[j]], marker="x", color="black", label="reference point")
        ax.set_xlabel(_name(names, i))
        ax.set_ylabel(_name(names, j))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"Pareto front, seed {seed} only\n(counted candidates; the non-dominated ones joined)", fontsize=10)
    return save_figure(fig, path)


def _name(names: list[str], i: int) -> str:
    return names[i] if len(names) > i else f"objective {i + 1}"


def table_columns(row: dict) -> tuple[str, str]:
    """The hypervolume (mean [interval]) and guided's lead over this method, as the summary table prints them."""
    if row.get("hypervolume") is None:
        hv = "-"
    else:
        interval = row["hypervolume_interval"]
        hv = f"{row['hypervolume']:.4g}" + ("" if interval is None else f" [{interval[0]:.4g}, {interval[1]:.4g}]")
    lead: Optional[float] = row.get("guided_hypervolume_lead")
    if lead is None:
        return hv, "-"
    interval = row["guided_hypervolume_lead_interval"]
    return hv, f"{lead:+.4g}" + ("" if interval is None else f" [{interval[0]:+.4g}, {interval[1]:+.4g}]")
