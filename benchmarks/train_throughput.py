"""Training steps/s: scaleflow's trainer vs a reference loop written like common flow-matching examples.

Reference: a DataLoader over a TensorDataset (shuffle, batch 256), the flow's sample call, Adam,
loss.backward(), no EMA, no validation. Ours: `Trainer.train_step` with EMA every step and
validation every `val_every` steps, at the default precision (bf16 autocast where the CPU has it),
forced to fp32, and with `compile=True` (its compile happens in the warmup steps, from an empty
inductor cache, and is reported as `warmup_s`, outside the timed window).

Each (loop, arch) runs in its own subprocess, interleaved over rounds, so timings share the
machine's state and peak memory (max RSS) is per configuration. Run:
    .venv/bin/python benchmarks/train_throughput.py [--steps 200] [--rounds 3] [--archs mlp,dit]
The timed window (steps 5..205 by default) includes two validations of both EMA and raw weights.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time


def worker(kind: str, arch: str, steps: int, warmup: int) -> dict:
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from scaleflow.data.prepare import prepare_data
    from scaleflow.flows import ICFM
    from scaleflow.nets import create_model
    from scaleflow.training.config import make_config
    from scaleflow.training.trainer import Trainer

    torch.manual_seed(0)
    data = prepare_data("builtin")
    model = create_model(arch, "small", input_dim=data.dim)
    flow = ICFM()
    if kind == "reference":
        loader = DataLoader(TensorDataset(data.train), batch_size=256, shuffle=True, drop_last=True)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

        def batches():
            while True:
                yield from loader

        stream = batches()

        def step(_: int) -> None:
            (x1,) = next(stream)
            t, x_t, u_t = flow.sample_location_and_conditional_flow(torch.randn_like(x1), x1)
            loss = (model(x_t, t) - u_t).square().mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    else:
        precision = "fp32" if kind == "scaleflow-fp32" else "auto"
        config = make_config({"arch": arch, "steps": 10**6, "val_every": 100, "precision": precision,
                              "compile": kind == "scaleflow-compile"})
        trainer = Trainer(config, model, flow, data.train, data.val, "/tmp/scaleflow-bench", progress=False)

        def step(s: int) -> None:
            trainer.train_step(s)
            if (s + 1) % config.val_every == 0:
                trainer.validate(trainer.ema.shadow)
                trainer.validate(trainer.model)

    began = time.perf_counter()
    for s in range(warmup):
        step(s)
    warmup_seconds = time.perf_counter() - began
    began = time.perf_counter()
    for s in range(warmup, warmup + steps):
        step(s)
    seconds = time.perf_counter() - began
    return {"kind": kind, "arch": arch, "steps_per_s": steps / seconds, "warmup_s": warmup_seconds,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--archs", default="mlp,dit")
    parser.add_argument("--kinds", default="reference,scaleflow,scaleflow-fp32,scaleflow-compile")
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--worker", nargs=2, metavar=("KIND", "ARCH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker, args.steps, args.warmup)))
        return
    results: dict[tuple[str, str], list[dict]] = {}
    for r in range(args.rounds):
        for arch in args.archs.split(","):
            for kind in args.kinds.split(","):
                cmd = [sys.executable, __file__, "--worker", kind, arch, "--steps", str(args.steps), "--warmup", str(args.warmup)]
                with tempfile.TemporaryDirectory() as cache:  # a cold compile every time
                    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache}
                    done = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
                out = json.loads(done.stdout.strip().splitlines()[-1])
                results.setdefault((arch, kind), []).append(out)
                print(f"round {r}: {arch:4s} {kind:17s} {out['steps_per_s']:7.2f} steps/s  peak {out['peak_rss_mb']:.0f} MB"
                      f"  warmup {out['warmup_s']:.1f} s", flush=True)
    print("\nmedian over rounds (ratio = steps/s over the reference loop's):")
    summary = []
    for arch in args.archs.split(","):
        ref = statistics.median(o["steps_per_s"] for o in results[(arch, "reference")])
        for kind in args.kinds.split(","):
            runs = results[(arch, kind)]
            rate = statistics.median(o["steps_per_s"] for o in runs)
            row = {"arch": arch, "kind": kind, "steps_per_s": rate, "ratio": rate / ref,
                   "ratios": [o["steps_per_s"] / r["steps_per_s"] for o, r in zip(runs, results[(arch, "reference")])],
                   "peak_rss_mb": max(o["peak_rss_mb"] for o in runs),
                   "warmup_s": statistics.median(o["warmup_s"] for o in runs)}
            summary.append(row)
            each = " ".join(f"{x:.2f}" for x in row["ratios"])
            print(f"  {arch:4s} small  {kind:17s} {rate:7.2f} steps/s  {rate / ref:5.2f}x (rounds: {each})"
                  f"  peak {row['peak_rss_mb']:.0f} MB  warmup {row['warmup_s']:.1f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=2)


if __name__ == "__main__":
    main()
