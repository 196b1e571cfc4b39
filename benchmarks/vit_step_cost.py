"""What one optimizer step costs at each ViT scale, at the CIFAR-10 setting (32x32x3, patch 4): the scale
study's third question (when does Muon's Newton-Schulz orthogonalization become expensive?) measured
directly, beyond the scales the digits study reaches on a CPU.

For each scale and optimizer (SGD, AdamW, Muon + AdamW, as `training/classifier.py` builds them): the
seconds of the forward + backward pass and of the optimizer step alone, the step's share of the whole,
and Muon's step time over AdamW's, all in one run on one device. Random images stand in for CIFAR
(the cost does not depend on the pixels). Defaults fit a 2-core CPU in a few minutes:
    python benchmarks/vit_step_cost.py [--scales tiny small medium] [--batch 32] [--device cpu] [--json out.json]
On a GPU: --scales tiny small medium large xl --batch 1024 --device cuda.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

try:
    import scaleflow  # noqa: F401
except ImportError:  # a bare checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch
import torch.nn.functional as F

from scaleflow.nets import count_parameters, create_model
from scaleflow.training.classifier import ClassifierSettings, make_classifier_optimizer

LR = {"sgd": 0.1, "adamw": 1e-3, "muon": 1e-2}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(scale: str, optimizer: str, batch: int, device: torch.device, repeats: int) -> dict:
    torch.manual_seed(0)
    model = create_model("vit", scale, image_size=32, patch_size=4, channels=3, num_classes=10).to(device)
    settings = ClassifierSettings(optimizer, 1, batch, LR[optimizer], 1e-3, 0.05)
    opt, _ = make_classifier_optimizer(model, settings)
    x = torch.randn(batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    backward, step = [], []
    for i in range(repeats + 1):  # the first is a warm-up (allocations, kernel choice)
        _sync(device)
        t0 = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        _sync(device)
        t1 = time.perf_counter()
        opt.step()
        _sync(device)
        t2 = time.perf_counter()
        if i:
            backward.append(t1 - t0)
            step.append(t2 - t1)
    fb, st = sum(backward) / repeats, sum(step) / repeats
    return {"scale": scale, "optimizer": optimizer, "params": count_parameters(model), "batch": batch,
            "forward_backward_s": fb, "optimizer_step_s": st, "step_share": st / (fb + st)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", nargs="+", default=["tiny", "small", "medium"])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    device = torch.device(args.device)
    rows = [measure(s, o, args.batch, device, args.repeats) for s in args.scales for o in ("sgd", "adamw", "muon")]
    by = {(r["scale"], r["optimizer"]): r for r in rows}
    print(f"device {device} ({torch.get_num_threads()} threads), batch {args.batch}, CIFAR setting 32x32x3 patch 4")
    print(f"{'scale':7} {'params':>12} {'opt':6} {'fwd+bwd s':>10} {'step s':>8} {'step share':>10} {'step / adamw':>12}")
    for r in rows:  # ratios from the unrounded times
        ratio = r["optimizer_step_s"] / by[(r["scale"], "adamw")]["optimizer_step_s"]
        r["step_over_adamw"] = ratio
        print(f"{r['scale']:7} {r['params']:>12,} {r['optimizer']:6} {r['forward_backward_s']:>10.4f} "
              f"{r['optimizer_step_s']:>8.4f} {r['step_share']:>10.3f} {ratio:>12.2f}")
    if args.json:
        args.json.write_text(json.dumps({"device": str(device), "threads": torch.get_num_threads(), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
