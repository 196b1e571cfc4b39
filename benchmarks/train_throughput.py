"""Training steps/s: scaleflow's trainer vs a reference loop written like common flow-matching examples.

Reference: a DataLoader over a TensorDataset (shuffle, batch 256), the flow's sample call, Adam,
loss.backward(), no EMA, no validation. Ours: `Trainer.train_step` with EMA every step and
validation of EMA and raw weights every `val_every` (100) steps, at the default precision (bf16
autocast where the CPU has it) and forced to fp32. `bare`: the least a loop at our precision can
do, for scale: batches by index, the flow, bf16 autocast, fused AdamW, and nothing else (no EMA,
validation, clipping, schedule or seeded per-step draws); the gap between it and ours is what
those features cost.

Speed: all loops of one architecture live in one process and take turns in blocks of `--block`
steps (the order rotating every block), so slow drifts of a shared machine hit them alike;
steps/s = steps / time summed over the blocks, and each block gives one ratio (their spread is
printed). Memory: each loop again alone in a fresh process for `--memory-steps` steps (past the
first validation); its peak RSS (data, model, optimizer, interpreter). Run:
    .venv/bin/python benchmarks/train_throughput.py [--blocks 10] [--block 20] [--archs mlp,dit]
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from typing import Callable

KINDS = ("reference", "scaleflow", "scaleflow-fp32", "bare")


def make_loop(kind: str, arch: str, data) -> Callable[[int], None]:
    """One training loop of `kind` on a fresh `arch`/small network: `step(s)` runs step s."""
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader, TensorDataset

    from scaleflow.flows import ICFM
    from scaleflow.nets import create_model
    from scaleflow.training.config import make_config
    from scaleflow.training.optim import make_adamw
    from scaleflow.training.precision import autocast_dtype
    from scaleflow.training.trainer import Trainer

    torch.manual_seed(0)
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

        return step
    if kind == "bare":
        optimizer = make_adamw(model, lr=1e-3, weight_decay=0.01)
        dtype = autocast_dtype("auto", torch.device("cpu"))

        def step(_: int) -> None:
            x1 = data.train.index_select(0, torch.randint(len(data.train), (256,)))
            t, x_t, u_t = flow.sample_location_and_conditional_flow(torch.randn_like(x1), x1)
            with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
                out = model(x_t, t)
            loss = F.mse_loss(out.float(), u_t)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        return step
    precision = "fp32" if kind == "scaleflow-fp32" else "auto"
    config = make_config({"arch": arch, "steps": 10**6, "val_every": 100, "precision": precision})
    trainer = Trainer(config, model, flow, data.train, data.val, "/tmp/scaleflow-bench", progress=False)

    def step(s: int) -> None:
        trainer.train_step(s)
        if (s + 1) % config.val_every == 0:
            trainer.validate(trainer.ema.shadow)
            trainer.validate(trainer.model)

    return step


def speed_worker(arch: str, kinds: list[str], blocks: int, block: int, warmup: int) -> dict:
    from scaleflow.data.prepare import prepare_data

    data = prepare_data("builtin")
    loops = {kind: make_loop(kind, arch, data) for kind in kinds}
    for step in loops.values():
        for s in range(warmup):
            step(s)
    next_step = dict.fromkeys(kinds, warmup)
    seconds = {kind: [] for kind in kinds}
    for b in range(blocks):
        order = kinds[b % len(kinds):] + kinds[:b % len(kinds)]
        for kind in order:
            began = time.perf_counter()
            for s in range(next_step[kind], next_step[kind] + block):
                loops[kind](s)
            seconds[kind].append(time.perf_counter() - began)
            next_step[kind] += block
    return seconds


def memory_worker(kind: str, arch: str, steps: int) -> dict:
    from scaleflow.data.prepare import prepare_data

    step = make_loop(kind, arch, prepare_data("builtin"))
    for s in range(steps):
        step(s)
    return {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run_worker(args: list[str]) -> dict:
    """Run this script's worker mode in a fresh process; its last output line is JSON."""
    done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"worker {' '.join(args)} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=10, help="turns each loop takes")
    parser.add_argument("--block", type=int, default=20, help="steps per turn")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--memory-steps", type=int, default=110, help="past the first validation (step 100)")
    parser.add_argument("--archs", default="mlp,dit")
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--speed-worker", metavar="ARCH", help=argparse.SUPPRESS)
    parser.add_argument("--memory-worker", nargs=2, metavar=("KIND", "ARCH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    kinds = args.kinds.split(",")
    if args.speed_worker:
        print(json.dumps(speed_worker(args.speed_worker, kinds, args.blocks, args.block, args.warmup)))
        return
    if args.memory_worker:
        print(json.dumps(memory_worker(*args.memory_worker, args.memory_steps)))
        return
    if kinds[0] != "reference":
        parser.error("--kinds must start with reference (ratios are relative to it)")
    summary = []
    print(f"{args.blocks} turns of {args.block} steps per loop, interleaved; ratio = steps/s over the reference's")
    for arch in args.archs.split(","):
        seconds = run_worker(["--speed-worker", arch, "--kinds", args.kinds, "--blocks", str(args.blocks),
                            "--block", str(args.block), "--warmup", str(args.warmup)])
        ref = seconds["reference"]
        for kind in kinds:
            secs = seconds[kind]
            rate = len(secs) * args.block / sum(secs)
            per_block = [r / s for r, s in zip(ref, secs)]
            memory = run_worker(["--memory-worker", kind, arch, "--memory-steps", str(args.memory_steps)])
            row = {"arch": arch, "kind": kind, "steps_per_s": rate, "ratio": sum(ref) / sum(secs),
                   "block_ratio_min": min(per_block), "block_ratio_median": statistics.median(per_block),
                   "block_ratio_max": max(per_block), "peak_rss_mb": memory["peak_rss_mb"]}
            summary.append(row)
            print(f"  {arch:4s} small  {kind:15s} {rate:7.2f} steps/s  {row['ratio']:5.2f}x "
                  f"(blocks {row['block_ratio_min']:.2f}-{row['block_ratio_max']:.2f})  "
                  f"peak {row['peak_rss_mb']:.0f} MB", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=2)


if __name__ == "__main__":
    main()
