#!/usr/bin/env python3
"""Responsiveness of guidance: as the strength grows, do the acquisition and the objective of guided samples
rise, and how far can it grow before validity and log-density leave the band of unguided samples?

For each of a few `target` objectives (one per seed) on a trained prior: score `--scored` random held-out
rows, fit the GP, then draw `--n` guided samples (the same noise at every strength) for each strength and
measure the GP's acquisition (UCB, in units of the scores' spread) and the objective at the samples, the
share that is valid and novel, their log-density (as the search records it) and the batch's mean pairwise
cosine. Strength 0 is plain sampling: its validity share and log-density are the band.

    python benchmarks/guidance_responsiveness.py --run sweeps/defaults-study/runs/5037cac28e74 \\
        --out docs/figures/guidance_responsiveness.png --json benchmarks/results/guidance_responsiveness.json
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from scaleflow.evaluation.plots import new_figure, save_figure
from scaleflow.sampling.sample import generate
from scaleflow.search.gp import AcquisitionGuide, fit_gp
from scaleflow.search.guidance import GuidanceConfig, GuidedVelocity
from scaleflow.search.methods.base import History
from scaleflow.search.methods.real_rows import random_rows
from scaleflow.search.problem import build_problem
from scaleflow.sweeps.summary import mean_interval
from scaleflow.training.run import load_run

STRENGTHS = (0.0, 30.0, 100.0, 300.0, 1000.0, 3000.0, 10000.0)


def pairwise_cosine(x: torch.Tensor) -> float:
    u = torch.nn.functional.normalize(x.double(), dim=1)
    s = u @ u.T
    n = len(u)
    return float((s.sum() - s.diagonal().sum()) / (n * (n - 1)))


def measure(run_path: str, seeds: list[int], scored: int, n: int, cap: float, steps: int) -> dict:
    run = load_run(run_path)
    problem = build_problem(run, "target")
    rows = []
    for seed in seeds:
        objective = problem.objective(seed)
        history = History.empty(problem.dim)
        initial = random_rows(problem, history, scored, seed, 0)
        history.extend(initial.x, objective(initial.x), torch.ones(scored, dtype=torch.bool), initial.pool_rows, 0,
                       "initial")
        surrogate = fit_gp(history.x, history.y)
        guide = AcquisitionGuide(surrogate, "ucb")
        for strength in STRENGTHS:
            began = time.perf_counter()
            config = GuidanceConfig(strength=strength, cap=cap)
            field = GuidedVelocity(run.velocity, guide, config, to_original=problem.to_original)
            x = problem.to_original(generate(field, n, problem.dim, "euler", steps, seed=1000 + seed).x).float()
            seconds = time.perf_counter() - began
            verdicts = problem.judge(x)
            with torch.no_grad():
                acquisition = guide(x.double())[0]
            score = objective(x)
            rows.append({"seed": seed, "strength": strength, "acquisition": float(acquisition.mean()),
                         "objective": float(score.mean()), "objective_max": float(score.max()),
                         "valid": float(verdicts.valid.double().mean()), "novel": float(verdicts.novel.double().mean()),
                         "log_density": float(problem.log_density(x).mean()), "pairwise_cosine": pairwise_cosine(x),
                         "guidance_to_velocity": float(np.mean(field.trace.term_to_velocity)) if field.trace.term_to_velocity else 0.0,
                         "seconds": seconds})
            print(json.dumps(rows[-1]), flush=True)
    return {"run": run_path, "seeds": seeds, "scored": scored, "n": n, "cap": cap, "steps": steps,
            "real_log_density_q05_q50_q95": problem.notes["real_log_density_q05_q50_q95"],
            "validity_threshold": problem.judge.validity_threshold, "rows": rows}


def summarize(result: dict) -> list[dict]:
    out = []
    for strength in STRENGTHS:
        rows = [r for r in result["rows"] if r["strength"] == strength]
        entry = {"strength": strength}
        for key in ("acquisition", "objective", "objective_max", "valid", "novel", "log_density", "pairwise_cosine",
                    "guidance_to_velocity", "seconds"):
            mean, interval = mean_interval([r[key] for r in rows])
            entry[key] = mean
            entry[f"{key}_interval"] = interval
        out.append(entry)
    return out


def plot(result: dict, table: list[dict], path: Path) -> Path:
    fig = new_figure(10.0, 7.0)
    x = [max(r["strength"], 10.0) for r in table]  # strength 0 drawn at the left edge of the log axis
    panels = [("objective", "objective (cosine to target): mean and max", ("objective", "objective_max")),
              ("acquisition", "acquisition (UCB / score std) at the samples", ("acquisition",)),
              ("validity", "share valid / novel", ("valid", "novel")),
              ("log_density", "log-density (real rows: 5-95% band)", ("log_density",))]
    for i, (_, title, keys) in enumerate(panels, 1):
        ax = fig.add_subplot(2, 2, i)
        for key in keys:
            means = [r[key] for r in table]
            lows = [(r[f"{key}_interval"] or [r[key]])[0] for r in table]
            highs = [(r[f"{key}_interval"] or [r[key]])[-1] for r in table]
            line, = ax.plot(x, means, marker="o", label=key)
            ax.fill_between(x, lows, highs, color=line.get_color(), alpha=0.15, linewidth=0)
        if title.startswith("log-density"):
            q05, _, q95 = result["real_log_density_q05_q50_q95"]
            ax.axhspan(q05, q95, color="grey", alpha=0.15, label="real rows 5-95%")
        ax.set_xscale("log")
        ax.set_xlabel("guidance strength (leftmost point: unguided)")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"guidance responsiveness: default prior, cap {result['cap']} |v|, {len(result['seeds'])} targets, "
                 f"GP on {result['scored']} scored rows, {result['n']} samples each", fontsize=10)
    return save_figure(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--scored", type=int, default=64)
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--cap", type=float, default=1.0)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("docs/figures/guidance_responsiveness.png"))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    result = measure(args.run, [int(s) for s in args.seeds.split(",")], args.scored, args.n, args.cap, args.steps)
    table = summarize(result)
    result["summary"] = table
    print(f"{'strength':>9} {'objective':>9} {'max':>6} {'acq':>7} {'valid':>6} {'novel':>6} {'log p':>8} {'cos':>6} {'|g|/|v|':>7}")
    for r in table:
        print(f"{r['strength']:>9g} {r['objective']:>9.3f} {r['objective_max']:>6.3f} {r['acquisition']:>7.3f} "
              f"{r['valid']:>6.3f} {r['novel']:>6.3f} {r['log_density']:>8.1f} {r['pairwise_cosine']:>6.3f} "
              f"{r['guidance_to_velocity']:>7.3f}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {plot(result, table, args.out)}")


if __name__ == "__main__":
    main()
