"""What a trained network's weight matrices look like: effective rank (Roy & Vetterli 2007), stable
rank and sparsity, per matrix and summarized per layer type (the scale study's analysis)."""
from __future__ import annotations

import re
from collections import defaultdict

import torch
from torch import nn


def _effective_rank_of(s: torch.Tensor) -> float:
    total = s.sum()
    if total <= 0:
        return 0.0
    p = s / total
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def _stable_rank_of(s: torch.Tensor) -> float:
    return float((s.square().sum() / s[0].square()) if s.numel() and s[0] > 0 else 0.0)


def effective_rank(matrix: torch.Tensor) -> float:
    """exp(entropy) of the normalized singular values of `matrix: [m, n]` (Roy & Vetterli 2007).

    n for an identity of size n (all singular values equal), 1 for a rank-one matrix; between the
    number of dominant directions and the rank otherwise. 0 for an all-zero matrix.
    """
    return _effective_rank_of(torch.linalg.svdvals(matrix.detach().double()))


def stable_rank(matrix: torch.Tensor) -> float:
    """||W||_F^2 / ||W||_2^2 of `matrix: [m, n]`: n for an identity, 1 for rank one; 0 for zeros."""
    return _stable_rank_of(torch.linalg.svdvals(matrix.detach().double()))


def sparsity(matrix: torch.Tensor, tolerance: float = 1e-3) -> float:
    """Share of entries of `matrix` below `tolerance` times its largest absolute entry."""
    a = matrix.detach().abs()
    peak = a.max()
    return float((a <= tolerance * peak).double().mean()) if peak > 0 else 1.0


def layer_type(name: str) -> str:
    """A parameter's layer type: its name without block indices and the `.weight` suffix
    (`blocks.3.attn.qkv.weight` -> `blocks.attn.qkv`), so the same layer of every block is summarized together."""
    return re.sub(r"\.\d+(?=\.|$)", "", name).removesuffix(".weight")


def weight_statistics(model: nn.Module, initial: dict[str, torch.Tensor] | None = None) -> dict[str, dict]:
    """Per 2-D weight matrix: shape, effective rank, stable rank, sparsity; and per layer type the
    mean of each over its matrices. With `initial` ({name: matrix at initialization}), the same of the
    change `W - W_0` instead: what training wrote, which a short training's `W` hides under its init.

    Returns:
        `{"matrices": {name: {...}}, "by_layer_type": {type: {"count", "effective_rank", "stable_rank",
        "sparsity", "effective_rank_ratio"}}}`, where the ratio is effective rank / min(m, n).
    """
    matrices = {}
    for name, p in model.named_parameters():
        if p.dim() != 2:
            continue
        if initial is not None:
            p = p.detach() - initial[name].to(p.device)
        singular = torch.linalg.svdvals(p.detach().double())  # once per matrix: both ranks come from it
        rank = _effective_rank_of(singular)
        matrices[name] = {"shape": list(p.shape), "effective_rank": rank, "stable_rank": _stable_rank_of(singular),
                          "sparsity": sparsity(p), "effective_rank_ratio": rank / min(p.shape)}
    groups: dict[str, list[dict]] = defaultdict(list)
    for name, stats in matrices.items():
        groups[layer_type(name)].append(stats)
    keys = ("effective_rank", "stable_rank", "sparsity", "effective_rank_ratio")
    by_type = {kind: {"count": len(rows), **{k: sum(r[k] for r in rows) / len(rows) for k in keys}}
               for kind, rows in groups.items()}
    return {"matrices": matrices, "by_layer_type": by_type}
