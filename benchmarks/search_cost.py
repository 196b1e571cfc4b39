#!/usr/bin/env python3
"""Seconds per batch of 8 candidates for every search method, on one machine in one run.

Each method proposes one batch from the same history (`--scored` held-out rows scored by the built-in
`target` objective), `--repeats` times; the guided method's time is also split into its parts (GP fit,
guided sampling with the acquisition gradient, judging and ranking the oversampled draws), and the
records' log-density (Hutchinson) of a batch is timed apart, since the loop adds it to every method.

    python benchmarks/search_cost.py --run sweeps/defaults-study/runs/5037cac28e74 --threads 2
"""
from __future__ import annotations

import argparse
import json

import torch

from scaleflow.sampling.sample import generate
from scaleflow.search.gp import fit_gp, make_guide
from scaleflow.search.guidance import GuidedVelocity
from scaleflow.search.methods import METHODS
from scaleflow.search.methods.base import History, noise_seed
from scaleflow.search.methods.real_rows import random_rows
from scaleflow.search.problem import build_problem
from scaleflow.training.run import load_run
from timing import timed  # benchmarks/timing.py, next to this script


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True)
    parser.add_argument("--scored", type=int, default=104)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--methods", default=",".join(METHODS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    problem = build_problem(load_run(args.run), "target")
    objective = problem.objective(0)
    history = History.empty(problem.dim)
    rows = random_rows(problem, history, args.scored, 0, 0)
    history.extend(rows.x, objective(rows.x), torch.ones(args.scored, dtype=torch.bool), rows.pool_rows, 0, "initial")
    # The baselines that keep state (CMA-ES, TuRBO) start from the initial design, as at their first step.
    results = {}
    for name in args.methods.split(","):
        method = METHODS[name]()
        seconds, _ = timed(lambda: method.propose(problem, history, args.batch, 0, 1), args.repeats)
        results[name] = seconds
        print(f"{name:>10}: {seconds:6.2f} s per batch of {args.batch}", flush=True)

    guided = METHODS["guided"]()
    parts = {}
    parts["gp_fit"], surrogate = timed(lambda: fit_gp(history.x, history.y), args.repeats)
    draws = args.batch * guided.oversample

    def sample():
        guide = make_guide(surrogate, guided.acquisition, draws, seed=1)
        field = GuidedVelocity(problem.run.velocity, guide, guided.guidance, to_original=problem.to_original)
        return problem.to_original(generate(field, draws, problem.dim, guided.solver, guided.steps, noise_seed(0, 1),
                                            batch_size=draws).x).float()

    parts["guided_sampling"], x = timed(sample, args.repeats)
    parts["judge_and_rank"], _ = timed(lambda: guided._select(problem, surrogate, x, args.batch), args.repeats)
    parts["plain_sampling"], _ = timed(lambda: generate(problem.run.velocity, draws, problem.dim, guided.solver,
                                                        guided.steps, 1), args.repeats)
    parts["records_log_density"], _ = timed(lambda: problem.log_density(x[:args.batch]), args.repeats)
    for key, value in parts.items():
        print(f"guided part {key:>20}: {value:6.2f} s", flush=True)
    print(json.dumps({"threads": args.threads, "scored": args.scored, "batch": args.batch,
                      "seconds_per_batch": results, "guided_parts": parts}, indent=1))


if __name__ == "__main__":
    main()
