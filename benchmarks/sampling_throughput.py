"""Sampling throughput (samples/s, NFE) and the NFE each fixed-step solver needs to match dopri5's FD.

(a) Speed: `generate` 10,000 samples (chunks of `--batch-size`, default 4096) at D=384 and D=1024
with freshly initialised mlp/dit small networks (their zero-initialised layers perturbed so the
field is non-trivial; speed does not depend on training), euler 50 steps vs dopri5
(rtol=atol=1e-5). One warm-up call per configuration on a 256-row batch, then `--repeats` rounds
interleaved over configurations; medians. dopri5's NFE on an untrained field says little about
sampling a real model: (b) reports it on a trained one.

(b) Accuracy per NFE on a model trained on the built-in data (384-D; `--run PATH`, or trained here
for `--train-steps`): Frechet distance of 2,000 samples (same noise for all) to the test split for
euler/midpoint/heun/rk4 at 1..64 steps, and the smallest NFE within 5% of dopri5's FD. Run:
    .venv/bin/python benchmarks/sampling_throughput.py [--device cpu] [--repeats 3] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import torch

from scaleflow.evaluation.distribution import frechet_distance
from scaleflow.nets import create_model
from scaleflow.sampling.sample import generate
from scaleflow.sampling.solvers import FIXED_STEP_SOLVERS
from scaleflow.training.config import make_config
from scaleflow.training.run import load_run, resolve_device, train

DIMS = (384, 1024)
ARCHS = ("mlp", "dit")
SPEED_SOLVERS = (("euler", 50), ("dopri5", 1))
STEPS = (1, 2, 4, 8, 16, 32, 64)
FD_SAMPLES = 2000
TOL = dict(rtol=1e-5, atol=1e-5)


def perturbed_model(arch: str, dim: int, device: torch.device) -> torch.nn.Module:
    """A fresh `arch`/small network whose all-zero tensors (adaLN-Zero, output layers) get N(0, 0.02^2)."""
    torch.manual_seed(0)
    model = create_model(arch, "small", input_dim=dim)
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():
                p.normal_(0.0, 0.02)
    return model.to(device).eval().requires_grad_(False)


def speed(args, device: torch.device) -> list[dict]:
    configs = [(arch, dim, solver, steps) for dim in DIMS for arch in ARCHS for solver, steps in SPEED_SOLVERS]
    models = {(arch, dim): perturbed_model(arch, dim, device) for arch in ARCHS for dim in DIMS}
    for arch, dim, solver, steps in configs:  # warm-up: allocator, kernels, torchdiffeq import
        generate(models[arch, dim], 256, dim, solver, steps, device=device, **TOL)
    runs: dict[tuple, list] = {c: [] for c in configs}
    for r in range(args.repeats):
        for c in configs:
            arch, dim, solver, steps = c
            out = generate(models[arch, dim], args.n, dim, solver, steps, seed=r, device=device,
                           batch_size=args.batch_size, **TOL)
            runs[c].append((args.n / out.seconds, out.nfe))
            print(f"round {r}: {arch:3s} D={dim:4d} {solver:6s} {args.n / out.seconds:9.1f} samples/s  NFE {out.nfe}", flush=True)
    return [{"arch": a, "scale": "small", "dim": d, "solver": s, "steps": st if s != "dopri5" else None,
             "samples_per_s": statistics.median(v[0] for v in runs[a, d, s, st]),
             "nfe": statistics.median(v[1] for v in runs[a, d, s, st])} for a, d, s, st in configs]


def trained_run(args, device: torch.device, tmp: str):
    if args.run:
        return load_run(args.run, device=device)
    config = make_config({"arch": "mlp", "scale": "small", "steps": args.train_steps,
                          "val_every": min(500, args.train_steps), "device": str(device)})
    began = time.perf_counter()
    summary = train(config, tmp, progress=False)
    print(f"trained mlp/small for {summary['steps']} steps in {time.perf_counter() - began:.0f} s "
          f"(best val loss {summary['best_val_loss']:.4f}, baseline {summary['baseline_val_loss']:.4f})", flush=True)
    return load_run(tmp, device=device)


def accuracy(args, device: torch.device, tmp: str) -> dict:
    run = trained_run(args, device, tmp)
    data = run.data()
    test, dim, field = data.test, data.dim, run.velocity

    def fd(solver: str, steps: int) -> tuple[float, int]:
        out = generate(field, FD_SAMPLES, dim, solver, steps, seed=0, device=device, batch_size=FD_SAMPLES, **TOL)
        return frechet_distance(out.x.cpu(), test), out.nfe

    ref_fd, ref_nfe = fd("dopri5", 1)
    floor = frechet_distance(data.train[:FD_SAMPLES], test)  # real rows vs test: the FD of a perfect sampler
    grid, best = [], {}
    for solver in FIXED_STEP_SOLVERS:
        for steps in STEPS:
            value, nfe = fd(solver, steps)
            ok = abs(value - ref_fd) <= 0.05 * ref_fd
            grid.append({"solver": solver, "steps": steps, "nfe": nfe, "fd": value, "within_5pct": ok})
            if ok and solver not in best:
                best[solver] = nfe
    return {"run": str(args.run or "trained here"), "train_steps": run.summary.get("steps"), "dim": dim,
            "test_rows": len(test), "samples": FD_SAMPLES, "fd_train_rows_vs_test": floor,
            "dopri5": {"fd": ref_fd, "nfe": ref_nfe}, "grid": grid,
            "min_nfe_within_5pct": {s: best.get(s) for s in FIXED_STEP_SOLVERS}}


def print_tables(args, device: torch.device, rows: list[dict], acc: dict) -> None:
    print(f"\n(a) sampling speed on {device}: {args.n} samples in chunks of {args.batch_size}, "
          f"median of {args.repeats} rounds, untrained (perturbed) small networks")
    print(f"  {'arch':4s} {'D':>5s}  {'solver':10s} {'samples/s':>10s} {'NFE':>5s}  {'vs euler-50':>11s}")
    for r in rows:
        euler = next(e for e in rows if (e["arch"], e["dim"], e["solver"]) == (r["arch"], r["dim"], "euler"))
        name = f"euler-{r['steps']}" if r["solver"] == "euler" else "dopri5"
        print(f"  {r['arch']:4s} {r['dim']:5d}  {name:10s} {r['samples_per_s']:10.1f} {r['nfe']:5.0f}  "
              f"{r['samples_per_s'] / euler['samples_per_s']:10.2f}x")
    print("  (dopri5's NFE on an untrained field says little; on the trained model below it is "
          f"{acc['dopri5']['nfe']})")
    d = acc["dopri5"]
    print(f"\n(b) FD of {acc['samples']} samples to the test split ({acc['test_rows']} rows, D={acc['dim']}), "
          f"model: {acc['run']} ({acc['train_steps']} steps)")
    print(f"  dopri5 (rtol=atol=1e-5): FD {d['fd']:.4f} with NFE {d['nfe']}; "
          f"real train rows vs test: FD {acc['fd_train_rows_vs_test']:.4f}")
    print(f"  {'steps':>6s} " + " ".join(f"{s:>14s}" for s in FIXED_STEP_SOLVERS) + "   (FD, * = within 5% of dopri5)")
    for steps in STEPS:
        cells = [next(g for g in acc["grid"] if g["solver"] == s and g["steps"] == steps) for s in FIXED_STEP_SOLVERS]
        print(f"  {steps:6d} " + " ".join(f"{c['fd']:12.4f}{'*' if c['within_5pct'] else ' '} " for c in cells))
    print("  smallest NFE within 5% of dopri5's FD: " + ", ".join(
        f"{s} {n if n is not None else 'not reached'}" for s, n in acc["min_nfe_within_5pct"].items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N | auto")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n", type=int, default=10_000, help="samples per timed call in (a)")
    parser.add_argument("--batch-size", type=int, default=4096, help="chunk size passed to generate in (a)")
    parser.add_argument("--run", default=None, help="a trained run folder for (b) (384-D built-in data)")
    parser.add_argument("--train-steps", type=int, default=1500, help="steps of the run trained for (b) without --run")
    parser.add_argument("--json", default=None, help="also write all results here")
    args = parser.parse_args()
    device = resolve_device(args.device)
    rows = speed(args, device)
    with tempfile.TemporaryDirectory() as tmp:
        acc = accuracy(args, device, tmp)
    print_tables(args, device, rows, acc)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": str(device), "torch": torch.__version__, "n": args.n, "batch_size": args.batch_size,
                       "repeats": args.repeats, "speed": rows, "accuracy": acc}, f, indent=2)


if __name__ == "__main__":
    main()
