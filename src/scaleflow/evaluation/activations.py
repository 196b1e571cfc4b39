"""How sparse a network's hidden activations are: the share of near-zero outputs and Hoyer's sparsity,
measured on the MLP hidden layers of a classifier (the scale study's activation analysis)."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

# |GELU(x)| < 0.01 where x < -2.67 or |x| < 0.02: the unit is (nearly) off. GELU's outputs reach down to
# -0.17, so a sign test would miss the off state; the threshold is stated with every result.
NEAR_ZERO = 0.01


def hoyer_sparsity(x: Tensor) -> Tensor:
    """Hoyer's sparsity of each row of `x: [..., n]` -> `[...]`: (sqrt(n) - |x|_1 / |x|_2) / (sqrt(n) - 1).

    1 for a one-hot row, 0 for a row of equal magnitudes; an all-zero row counts as 1 (nothing active).
    """
    n = x.shape[-1]
    if n < 2:
        raise ValueError(f"Hoyer sparsity needs rows of 2 or more values; got {n}")
    l1, l2 = x.abs().sum(-1), x.norm(dim=-1)
    ratio = torch.where(l2 > 0, l1 / l2.clamp_min(torch.finfo(x.dtype).tiny), torch.ones_like(l1))
    return (math.sqrt(n) - ratio) / (math.sqrt(n) - 1)


def near_zero_share(x: Tensor, threshold: float = NEAR_ZERO) -> float:
    """Share of the entries of `x` with |value| < `threshold`."""
    return float((x.abs() < threshold).double().mean())


@torch.no_grad()
def mlp_activation_sparsity(model: nn.Module, images: Tensor, threshold: float = NEAR_ZERO,
                            batch_size: int = 256) -> dict:
    """Sparsity of every MLP hidden layer (modules named `...mlp.act`) on `images: [N, C, H, W]`.

    Each token's hidden vector is one row for Hoyer's measure. Returns `{"threshold", "near_zero",
    "hoyer", "by_layer": {name: {"near_zero", "hoyer"}}}`, the top-level values the mean over layers.

    Raises:
        ValueError: the model has no `mlp.act` module.
    """
    layers = {name: module for name, module in model.named_modules() if name.endswith("mlp.act")}
    if not layers:
        raise ValueError(f"{type(model).__name__} has no MLP activation (a module named '...mlp.act')")
    sums = {name: [0.0, 0.0, 0] for name in layers}  # near-zero count, Hoyer sum, rows

    def hook(name):
        def record(_module, _inputs, output):
            out = output.float()
            sums[name][0] += float((out.abs() < threshold).sum()) / out.shape[-1]
            sums[name][1] += float(hoyer_sparsity(out).sum())
            sums[name][2] += out.numel() // out.shape[-1]
        return record

    handles = [module.register_forward_hook(hook(name)) for name, module in layers.items()]
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(images), batch_size):
            model(images[start:start + batch_size])
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    by_layer = {name: {"near_zero": s[0] / s[2], "hoyer": s[1] / s[2]} for name, s in sums.items()}
    mean = lambda key: sum(v[key] for v in by_layer.values()) / len(by_layer)  # noqa: E731
    return {"threshold": threshold, "near_zero": mean("near_zero"), "hoyer": mean("hoyer"), "by_layer": by_layer}
