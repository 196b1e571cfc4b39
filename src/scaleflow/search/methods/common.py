"""Helpers the black-box baselines (`raw_bo`, `turbo`, `cmaes`, `latent_bo`) share."""
from __future__ import annotations

import torch


def reference_box(problem) -> torch.Tensor:
    """`[2, D]` float64: the per-dimension min and max of the prior's training rows (original space)."""
    reference = problem.reference.detach().to(torch.float64)
    return torch.stack([reference.min(0).values, reference.max(0).values])

