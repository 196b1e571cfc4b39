#!/usr/bin/env python3
"""Seconds per batch of 8 candidates for every search method, on one machine in one run.

Each method proposes one batch from the same history (`--scored` held-out rows scored by the built-in
`target` objective, or with `--from-search DIR` the first `--scored` records of a guided search's seed 0:
what the GP sees late in a real search), `--repeats` times; the guided method's time is also split into
its parts (the GP fit from the priors' defaults, the fit warm-started from the fit before the last batch,
conditioning on fixed hyperparameters, guided sampling with the acquisition gradient (with the default
diversity hinge, and without it), judging and ranking
the oversampled draws), and the records' log-density (Hutchinson) of a batch is timed apart, since the
loop adds it to every method. The parts give a guided batch's time under each GP schedule.

    python benchmarks/search_cost.py --run runs/default --threads 2
    python benchmarks/search_cost.py --run runs/default --threads 2 --methods guided --scored 200 \
        --from-search searches/target-test
"""
from __future__ import annotations

import argparse
import json

import torch

from scaleflow.sampling.sample import generate
from scaleflow.search.gp import fit_gp, gp_hyperparameters, make_guide
from scaleflow.search.guidance import DiversityGuide, GuidedVelocity
from scaleflow.search.methods import METHODS
from scaleflow.search.methods.base import History, noise_seed
from scaleflow.search.methods.prior import diversity_hinge_cosine, filter_by_acquisition
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
    parser.add_argument("--from-search", default=None, help="take the scored rows from this search folder's records")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    problem = build_problem(load_run(args.run), "target")
    objective = problem.objective(0)
    history = History.empty(problem.dim)
    if args.from_search:
        records = [r for r in (json.loads(line) for line in open(f"{args.from_search}/search.jsonl"))
                   if r["method"] == "guided" and r["seed"] == 0][:args.scored]
        x = torch.tensor([r["embedding"] for r in records])
        history.extend(x, torch.tensor([r["score"] for r in records]), torch.ones(len(x), dtype=torch.bool),
                       [None] * len(x), 0, "initial")
    else:
        rows = random_rows(problem, history, args.scored, 0, 0)
        history.extend(rows.x, objective(rows.x), torch.ones(args.scored, dtype=torch.bool), rows.pool_rows, 0,
                       "initial")
    # The baselines that keep state (CMA-ES, TuRBO) start from the initial design, as at their first step.
    results = {}
    for name in args.methods.split(","):
        # A fresh method per call: nothing cached from the call before (for guided, a cold GP fit).
        seconds, _ = timed(lambda: METHODS[name]().propose(problem, history, args.batch, 0, 1), args.repeats)
        results[name] = seconds
        print(f"{name:>10}: {seconds:6.2f} s per batch of {args.batch}", flush=True)

    guided = METHODS["guided"]()
    parts = {}
    parts["gp_fit_cold"], surrogate = timed(lambda: fit_gp(history.x, history.y), args.repeats)
    before = len(history.y) - args.batch  # the fit one batch earlier: where a warm start starts
    earlier = gp_hyperparameters(fit_gp(history.x[:before], history.y[:before]))
    parts["gp_fit_warm"], _ = timed(lambda: fit_gp(history.x, history.y, start=earlier), args.repeats)
    parts["gp_condition"], _ = timed(lambda: fit_gp(history.x, history.y, hyperparameters=earlier), args.repeats)
    draws = args.batch * guided.oversample

    def sample(diversity: bool = True):
        guide = make_guide(surrogate, guided.acquisition, draws, seed=1)
        if diversity and guided.diversity > 0:  # the default's hinge, as `GuidedPrior.propose` adds it
            guide = DiversityGuide(guide, guided.diversity, diversity_hinge_cosine(problem, guided.diversity_cosine))
        field = GuidedVelocity(problem.run.velocity, guide, guided.guidance, to_original=problem.to_original)
        return problem.to_original(generate(field, draws, problem.dim, guided.solver, guided.steps, noise_seed(0, 1),
                                            batch_size=draws).x).float()

    parts["guided_sampling"], x = timed(sample, args.repeats)
    parts["guided_sampling_without_diversity"], _ = timed(lambda: sample(diversity=False), args.repeats)
    parts["judge_and_rank"], _ = timed(lambda: filter_by_acquisition(problem, surrogate, guided.acquisition, x,
                                                                     args.batch, 1, guided.max_batch_cosine),
                                       args.repeats)
    parts["plain_sampling"], _ = timed(lambda: generate(problem.run.velocity, draws, problem.dim, guided.solver,
                                                        guided.steps, 1), args.repeats)
    parts["records_log_density"], _ = timed(lambda: problem.log_density(x[:args.batch]), args.repeats)
    for key, value in parts.items():
        print(f"guided part {key:>20}: {value:6.2f} s", flush=True)
    rest = parts["guided_sampling"] + parts["judge_and_rank"] + parts["records_log_density"]
    schedules = {"cold fit every step": parts["gp_fit_cold"] + rest,
                 "warm fit every step": parts["gp_fit_warm"] + rest,
                 "warm fit every 3rd step": (parts["gp_fit_warm"] + 2 * parts["gp_condition"]) / 3 + rest}
    for key, value in schedules.items():
        print(f"guided batch, {key:>24}: {value:6.2f} s", flush=True)
    print(json.dumps({"threads": args.threads, "scored": args.scored, "batch": args.batch,
                      "seconds_per_batch": results, "guided_parts": parts,
                      "guided_schedules": schedules}, indent=1))


if __name__ == "__main__":
    main()
