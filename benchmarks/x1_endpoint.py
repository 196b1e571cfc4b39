"""Frechet distance of an x1-predicting run's samples, per solver, with the endpoint rule (current)
and without it (the old rule: velocity (x1_hat - x) / max(1 - t, 1e-3) evaluated at t = 1).

    python benchmarks/x1_endpoint.py RUN [--n 1000] [--gaps 0.005,0.01,0.02,0.05]

Prints one table row per solver/steps; the last block measures dopri5's gap (DOPRI5_ENDPOINT_GAP).
"""
from __future__ import annotations

import argparse

import torch

import scaleflow.sampling.solvers as solvers
from scaleflow.evaluation.distribution import frechet_distance
from scaleflow.sampling import generate, reconstruction_errors
from scaleflow.training import load_run


class WithoutEndpointRule:
    """The same field, hiding `singular_at_one`: the solvers evaluate it at t = 1 as they used to."""

    def __init__(self, field):
        self.field = field

    def __call__(self, x, t):
        return self.field(x, t)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--gaps", default="0.005,0.01,0.02,0.05")
    args = parser.parse_args()
    torch.set_num_threads(2)
    run = load_run(args.run)
    assert run.config.prediction == "x1", "an x1-prediction run is needed"
    test = run.data().test[: args.n]
    dim, field = test.shape[1], run.velocity
    print(f"{args.run}: {args.n} samples vs {len(test)} test rows, dim {dim}")
    print(f"{'solver':<9}{'steps':>6}{'nfe':>6}{'FD (rule)':>12}{'FD (old)':>12}{'recon (rule)':>14}{'recon (old)':>13}")
    for solver, steps in [("euler", 20), ("euler", 50), ("midpoint", 10), ("midpoint", 20), ("heun", 10), ("heun", 20),
                          ("rk4", 5), ("rk4", 10), ("dopri5", 20)]:
        new = generate(field, args.n, dim, solver, steps)
        old = generate(WithoutEndpointRule(field), args.n, dim, solver, steps)
        rec_new = reconstruction_errors(field, test[:200], solver, steps).mean()
        rec_old = reconstruction_errors(WithoutEndpointRule(field), test[:200], solver, steps).mean()
        print(f"{solver:<9}{steps:>6}{new.nfe:>6}{frechet_distance(new.x, test):>12.2f}{frechet_distance(old.x, test):>12.2f}"
              f"{float(rec_new):>14.3g}{float(rec_old):>13.3g}")
    print("dopri5 gap (1 - t where the adaptive part stops and the endpoint rule takes over):")
    for gap in [float(g) for g in args.gaps.split(",")]:
        solvers.DOPRI5_ENDPOINT_GAP = gap
        batch = generate(field, args.n, dim, "dopri5", 20)
        print(f"  gap {gap:<6} nfe {batch.nfe:>4}  FD {frechet_distance(batch.x, test):.2f}")


if __name__ == "__main__":
    main()
