#!/usr/bin/env python3
"""What real rows reach on the built-in two-category pairs: the yardstick of a pair search's 4-diverse best.

For each dev and test pair of `--objective two-category` (README, "Diverse batches"), the worst-objective score
(the smaller of the two probabilities) of the prior's held-out rows and of its training rows: the best row's, and
the 4-diverse best (the best score that 4 rows pairwise below cosine 0.7 all reach), and their ratio. The
question it answers: how close to the best does the 4th different good answer sit in the data itself?

Usage: python scripts/pairs_real_rows.py [RUN]   (default runs/default, the default prior: `scaleflow train
--config src/scaleflow/configs/demo.yaml --out runs/default`)
"""
from __future__ import annotations

import sys

import numpy as np
import torch

from scaleflow.search.problem import build_problem
from scaleflow.search.report import k_diverse_best_of
from scaleflow.training import load_run


def main(run_dir: str = "runs/default") -> None:
    torch.set_num_threads(1)
    run = load_run(run_dir)
    print("| pairs | rows | best (mean) | 4-diverse best (mean) | ratio of the means | per pair ratio (min-max) |")
    print("| --- | --- | ---: | ---: | ---: | --- |")
    for pair_set in ("dev", "test"):
        problem = build_problem(run, "two-category", targets=pair_set)
        n_pairs = len(problem.notes["pairs"])
        for name, rows in (("held-out (the pool)", problem.pool), ("training", problem.reference)):
            best, diverse = [], []
            for seed in range(n_pairs):
                with torch.no_grad():
                    score = problem.objective(seed)(rows).min(1).values
                best.append(float(score.max()))
                diverse.append(k_diverse_best_of(rows.double().numpy(), score.numpy()) or 0.0)
            ratios = np.array(diverse) / np.array(best)
            print(f"| {pair_set} ({n_pairs}) | {name}, {len(rows):,} | {np.mean(best):.3f} | {np.mean(diverse):.3f} | "
                  f"{np.mean(diverse) / np.mean(best):.2f} | {ratios.min():.2f}-{ratios.max():.2f} |")


if __name__ == "__main__":
    main(*sys.argv[1:2])
