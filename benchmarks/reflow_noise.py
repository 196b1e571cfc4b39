"""How much evaluating a reflow run on the noise it was trained on flatters it.

    python benchmarks/reflow_noise.py REFLOW_RUN [--n 1000]

Before reflow drew its pairs from their own noise stream, `eval` (seed 0) started from exactly the first
rows of the pairs' noise: its samples were the training inputs. This prints the Frechet distance to the
test split of n samples from (a) the pairs' training noise, what `eval` used to measure, (b) the noise
`eval` draws now, (c) the held-out pairs' noise; how many rows of (b) occur in the training noise; and
the run's validation history (reflow validates on held-out pairs).
"""
from __future__ import annotations

import argparse
import json

import torch

from scaleflow.evaluation.distribution import frechet_distance
from scaleflow.files import read_safetensors
from scaleflow.sampling import integrate, sample_noise
from scaleflow.training import load_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--n", type=int, default=1000)
    args = parser.parse_args()
    run = load_run(args.run)
    test = run.data().test
    pairs = read_safetensors(f"{args.run}/reflow_pairs.safetensors")
    n, dim = min(args.n, len(pairs["x0"])), test.shape[1]
    starts = {"training pairs' noise (what eval used to start from)": pairs["x0"][:n],
              "eval's noise now (sample stream, seed 0)": sample_noise(n, dim, 0)}
    if "val_x0" in pairs:
        starts["held-out pairs' noise"] = pairs["val_x0"][:n]
    for name, x0 in starts.items():
        x = integrate(run.velocity, x0, solver="heun", steps=20).x
        print(f"FD {frechet_distance(x, test):8.2f}  from {name} ({len(x0)} rows)")
    shared = (torch.cdist(starts["eval's noise now (sample stream, seed 0)"], pairs["x0"]).min(1).values == 0).sum()
    print(f"rows of eval's noise found in the training pairs: {int(shared)} of {n}")
    summary = json.load(open(f"{args.run}/summary.json"))
    print(f"best_step {summary['best_step']} of {summary['steps']}, validated on {summary.get('val_on')}")
    for line in open(f"{args.run}/metrics.jsonl"):
        record = json.loads(line)
        if "val_loss" in record:
            print(f"  step {record['step']:>5}  val_loss {record['val_loss']:.4f}")


if __name__ == "__main__":
    main()
