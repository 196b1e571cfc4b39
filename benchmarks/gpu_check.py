"""One-call check of scaleflow on a CUDA machine: every network, the selective scan, training and sampling.

For every arch (mlp, dit, unet, mamba) x scale (tiny, small, base) at input_dim 1024: forward +
backward on CUDA at batch 7 and 256 (finite outputs and gradients), and the CUDA forward against
the CPU forward of the same weights (zero-initialised layers perturbed so every branch counts).
Reports mamba's selective-scan backend and, when mamba_ssm is installed, checks its kernel against
the pure-PyTorch scan (outputs and gradients to 1e-3). Then trains tiny runs on the built-in data
for 200 steps with precision auto (bf16 autocast) and fp32, and samples 1,000 points with heun 20:
steps/s and samples/s. Last, one `vit` trial of the optimizer scale study per AdamW and Muon (tiny ViT on
digits, 2 epochs, with its whole analysis and peak GPU memory). fp32 here means true fp32: TF32 matmuls stay off (PyTorch's default).

Exits 1 if any check fails; prints a PASS/FAIL table and writes it to $OUT/gpu_check.json (or
./gpu_check.json). Without CUDA it prints "no CUDA device: nothing to check" and exits 0;
`--cpu-dry-run` runs the same checks on the CPU at reduced sizes (to test this script). Run:
    python benchmarks/gpu_check.py [--cpu-dry-run]
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import tempfile
from pathlib import Path

import torch

try:
    import scaleflow  # noqa: F401
except ImportError:  # a bare checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from scaleflow.nets import ARCHITECTURES, SCALES, create_model
from scaleflow.nets.selective_scan import mamba_ssm_available, selective_scan, selective_scan_backend, selective_scan_torch
from scaleflow.sampling.sample import generate
from scaleflow.sampling.velocity import VelocityField
from scaleflow.training.config import make_config
from scaleflow.training.precision import autocast_dtype
from scaleflow.training.run import load_run, train

FULL = dict(scales=SCALES, dim=1024, batches=(7, 256), train_steps=200, samples=1000, train_archs=("mlp", "dit"))
DRY = dict(scales=("tiny",), dim=256, batches=(7, 32), train_steps=60, samples=200, train_archs=("mlp",))
TOL = 1e-3


class Checks:
    """Runs named checks, catching errors so that one failure does not hide the others."""

    def __init__(self) -> None:
        self.rows: list[dict] = []

    def run(self, name: str, fn) -> dict:
        try:
            ok, detail = fn()
        except Exception as err:  # a crash is a failed check, reported with its message
            ok, detail = False, f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        self.rows.append({"check": name, "ok": bool(ok), "detail": detail})
        print(f"{'PASS' if ok else 'FAIL'}  {name:28s} {detail}", flush=True)
        return self.rows[-1]


def perturbed(model: torch.nn.Module) -> torch.nn.Module:
    """Give every all-zero tensor (adaLN-Zero gates, output layers) N(0, 0.02^2) so no branch is dead."""
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():
                p.normal_(0.0, 0.02)
    return model


def check_network(arch: str, scale: str, dim: int, batches, device: torch.device) -> tuple[bool, str]:
    torch.manual_seed(0)
    cpu_model = perturbed(create_model(arch, scale, input_dim=dim))
    model = copy.deepcopy(cpu_model).to(device)
    details, ok = [], True
    for b in batches:
        x, t = torch.randn(b, dim), torch.rand(b)
        with torch.no_grad():
            ref = cpu_model(x, t)
        model.zero_grad(set_to_none=True)
        out = model(x.to(device), t.to(device))
        out.square().mean().backward()
        grads = [p.grad for p in model.parameters()]
        missing = sum(g is None for g in grads)
        finite = bool(out.isfinite().all()) and all(bool(g.isfinite().all()) for g in grads if g is not None)
        diff = (out.detach().cpu() - ref).abs().max().item()
        scale_ = max(1.0, ref.abs().max().item())
        ok &= finite and missing == 0 and diff <= TOL * scale_
        details.append(f"B={b}: diff {diff:.1e}" + ("" if finite else " NON-FINITE") + (f" {missing} no-grad" if missing else ""))
    backend = f" scan={selective_scan_backend(device)}" if arch == "mamba" else ""
    return ok, "; ".join(details) + backend


def scan_inputs(batch: int, d: int, L: int, N: int, device: torch.device) -> dict:
    """Inputs shaped and scaled like a Mamba block's: A = -(1..N), dt bias = softplus^-1 of dt in [1e-3, 1e-1]."""
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    dt = torch.exp(torch.rand(d, generator=g) * (math.log(1e-1) - math.log(1e-3)) + math.log(1e-3))
    kw = dict(u=r(batch, d, L), delta=0.5 * r(batch, d, L), A=-torch.arange(1, N + 1.0).repeat(d, 1),
              B=r(batch, N, L), C=r(batch, N, L), D=torch.ones(d), z=r(batch, d, L),
              delta_bias=dt + torch.log(-torch.expm1(-dt)))
    return {k: v.to(device).requires_grad_(k in ("u", "delta", "B", "C")) for k, v in kw.items()}


def check_scan(device: torch.device) -> tuple[bool, str]:
    details, ok = [], True
    for shape in ((8, 512, 16, 16), (4, 256, 64, 16)):
        outs = []
        for fn in (selective_scan, selective_scan_torch):  # dispatcher (kernel on CUDA) vs reference
            kw = scan_inputs(*shape, device)
            y = fn(**kw, delta_softplus=True)
            y.square().sum().backward()
            outs.append((y.detach(), [kw[k].grad for k in ("u", "delta", "B", "C")]))
        (y, gs), (y_ref, gs_ref) = outs
        diff = (y - y_ref).abs().max().item()
        gdiff = max(((g - r).abs().max() / r.abs().max().clamp_min(1e-12)).item() for g, r in zip(gs, gs_ref))
        ok &= diff <= TOL and gdiff <= TOL
        details.append(f"{shape}: out {diff:.1e}, grad rel {gdiff:.1e}")
    return ok, "; ".join(details)


def check_training(arch: str, precision: str, sizes: dict, device: torch.device, tmp: str, results: list) -> tuple[bool, str]:
    config = make_config({"arch": arch, "scale": "tiny", "steps": sizes["train_steps"], "val_every": 50,
                          "precision": precision, "device": str(device), "seed": 0})
    summary = train(config, Path(tmp) / f"{arch}-{precision}", progress=False)
    run = load_run(Path(tmp) / f"{arch}-{precision}", device=device)
    field = VelocityField(run.model, run.flow, run.config.prediction, autocast_dtype(precision, device))
    generate(field, 100, summary["dim"], "heun", 20, device=device)  # warm-up
    out = generate(field, sizes["samples"], summary["dim"], "heun", 20, device=device)
    learned = summary["best_val_loss"] < summary["baseline_val_loss"]
    finite = bool(out.x.isfinite().all())
    results.append({"arch": arch, "scale": "tiny", "precision": precision, "autocast": summary["autocast"],
                    "steps_per_s": summary["steps_per_second"], "samples_per_s": sizes["samples"] / out.seconds,
                    "best_val_loss": summary["best_val_loss"], "baseline_val_loss": summary["baseline_val_loss"]})
    return learned and finite, (f"{summary['autocast']}: {summary['steps_per_second']:.1f} steps/s, "
                                f"{sizes['samples'] / out.seconds:.0f} samples/s, val {summary['best_val_loss']:.3f} "
                                f"(baseline {summary['baseline_val_loss']:.3f})" + ("" if finite else ", NON-FINITE samples"))


def check_vit(optimizer: str, device: torch.device) -> tuple[bool, str]:
    """One `vit` sweep trial (the scale study's) on the device: tiny on digits, 2 epochs, every analysis."""
    from scaleflow.sweeps.vit_task import run_vit_trial

    result = run_vit_trial({"scale": "tiny", "optimizer": optimizer, "epochs": 2, "batch_size": 256,
                            "lr_reference_batch": 256, "analysis_rows": 64, "checkpoints": 2, "device": str(device)})
    c = result["columns"]
    ok = result["device"].startswith(device.type) and not c["diverged"] and c["test_acc"] > 0.3 and \
        math.isfinite(c["effective_rank_ratio.hidden"])
    memory = f", peak {c['peak_cuda_mb']:.0f} MB on the GPU" if "peak_cuda_mb" in c else ""
    return ok, f"test acc {c['test_acc']:.3f}, {c['steps_per_second']:.1f} steps/s{memory}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-dry-run", action="store_true", help="run the same checks on the CPU at reduced sizes")
    args = parser.parse_args()
    if not args.cpu_dry_run and not torch.cuda.is_available():
        print("no CUDA device: nothing to check")
        return 0
    device, sizes = (torch.device("cpu"), DRY) if args.cpu_dry_run else (torch.device("cuda"), FULL)
    torch.backends.cuda.matmul.allow_tf32 = False  # compare true fp32 with the CPU
    torch.backends.cudnn.allow_tf32 = False
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (dry run)"
    print(f"device: {name}; torch {torch.__version__}, CUDA {torch.version.cuda}, "
          f"mamba_ssm {'installed' if mamba_ssm_available() else 'not installed'}, "
          f"scan backend on {device.type}: {selective_scan_backend(device)}", flush=True)
    checks, training = Checks(), []
    for arch in ARCHITECTURES:
        for scale in sizes["scales"]:
            checks.run(f"{arch}/{scale} D={sizes['dim']}",
                       lambda: check_network(arch, scale, sizes["dim"], sizes["batches"], device))
    if selective_scan_backend(device) == "mamba_ssm" or args.cpu_dry_run:
        checks.run(f"scan {selective_scan_backend(device)} vs torch", lambda: check_scan(device))
    else:
        print("SKIP  scan kernel vs torch         mamba_ssm not installed: mamba uses the pure-PyTorch scan")
    with tempfile.TemporaryDirectory() as tmp:
        for arch in sizes["train_archs"]:  # warm-up (CUDA context, kernels, data) so the first timed run is fair
            for precision in ("auto", "fp32"):
                try:
                    train(make_config({"arch": arch, "scale": "tiny", "steps": 10, "precision": precision,
                                       "device": str(device)}), Path(tmp) / f"warmup-{arch}-{precision}", progress=False)
                except Exception:
                    pass  # the timed run below fails the same way and reports it
        for arch in sizes["train_archs"]:
            for precision in ("auto", "fp32"):
                checks.run(f"train+sample {arch} {precision}",
                           lambda: check_training(arch, precision, sizes, device, tmp, training))

    for optimizer in ("adamw", "muon"):
        checks.run(f"vit trial {optimizer}", lambda: check_vit(optimizer, device))

    passed = all(r["ok"] for r in checks.rows)
    print(f"\n{'check':30s} result  detail")
    for r in checks.rows:
        print(f"{r['check']:30s} {'PASS' if r['ok'] else 'FAIL':6s}  {r['detail']}")
    for arch in sizes["train_archs"]:
        by = {r["precision"]: r for r in training if r["arch"] == arch}
        if len(by) == 2:
            print(f"{arch}/tiny {by['auto']['autocast']} vs fp32: train {by['auto']['steps_per_s'] / by['fp32']['steps_per_s']:.2f}x, "
                  f"sample {by['auto']['samples_per_s'] / by['fp32']['samples_per_s']:.2f}x")
    print(f"\n{'PASS' if passed else 'FAIL'}: {sum(r['ok'] for r in checks.rows)}/{len(checks.rows)} checks passed")
    path = Path(os.environ.get("OUT") or ".") / "gpu_check.json"
    path.write_text(json.dumps({
        "device": name, "torch": torch.__version__, "cuda": torch.version.cuda, "mamba_ssm": mamba_ssm_available(),
        "scan_backend": selective_scan_backend(device), "dry_run": args.cpu_dry_run, "passed": passed,
        "checks": checks.rows, "training": training}, indent=2))
    print(f"wrote {path}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
