"""Sweep throughput on this machine: trials per hour for each jobs x threads split of the cores.

Runs the same small sweep (dit tiny, x1, 300 steps, 1,000 training rows, heun 20, 50 resamples;
4 trials: 2 learning rates x 2 seeds) with every split that fills the cores (1 job x all cores,
2 jobs x half, ..., one job per core) and, as a check of what oversubscription costs, 2 jobs x all
cores. Each in a fresh folder, so every trial trains. Run it on an otherwise idle machine:
    python benchmarks/sweep_throughput.py [--trials-steps 300] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

try:
    import scaleflow  # noqa: F401
except ImportError:  # a bare checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from scaleflow.sweeps import SweepSpec, run_sweep
from scaleflow.sweeps.tasks import TrainTask


def measure(jobs: int, threads: int, steps: int) -> dict:
    spec = SweepSpec(name="throughput", axes={"lr": [1e-3, 2e-3]}, seeds=[0, 1],
                     fixed={"data": "builtin", "arch": "dit", "scale": "tiny", "prediction": "x1", "steps": steps,
                            "val_every": 100, "n_train": 1000, "bootstrap": 50})
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        records = run_sweep(spec, folder, TrainTask(str(Path(folder) / "runs")), jobs=jobs, threads=threads)
        seconds = time.perf_counter() - start
    failed = [r["error"] for r in records if r["status"] != "ok"]
    if failed:
        raise SystemExit(f"a trial failed: {failed[0]}")
    return {"jobs": jobs, "threads": threads, "trials": len(records), "seconds": round(seconds, 1),
            "trials_per_hour": round(len(records) * 3600 / seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials-steps", type=int, default=300)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    splits = [(jobs, cores // jobs) for jobs in range(1, cores + 1) if cores % jobs == 0]
    splits.append((2, cores))  # oversubscribed: what the split avoids
    results = []
    for jobs, threads in splits:
        results.append(measure(jobs, threads, args.trials_steps))
        print(json.dumps(results[-1]), flush=True)
    best = max(results, key=lambda r: r["trials_per_hour"])
    print(f"{cores} cores: best {best['jobs']} job(s) x {best['threads']} thread(s), "
          f"{best['trials_per_hour']} trials/hour")
    if args.json:
        args.json.write_text(json.dumps({"cores": cores, "results": results}, indent=1))


if __name__ == "__main__":
    main()
