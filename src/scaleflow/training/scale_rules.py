"""The optimizer scale study's training rules (design note 004): batch size by parameter count, and
learning rates scaled linearly with the batch from each optimizer's base rate. Every rule is a default:
a trial may set any of them, and records what it used."""
from __future__ import annotations

import math

# (parameters below, batch size): < 10M -> 4096, < 50M -> 2048, else 1024
BATCH_BY_PARAMS: tuple[tuple[float, int], ...] = ((10e6, 4096), (50e6, 2048), (math.inf, 1024))
# Base rates at the reference batch (the note's 4096): the linear scaling rule moves them with the batch.
BASE_LR: dict[str, float] = {"sgd": 0.1, "adamw": 1e-3, "muon": 1e-2}
REFERENCE_BATCH = 4096
# Decoupled decay for AdamW and Muon (DeiT's 0.05), L2 for SGD (the ResNet recipe's 5e-4): the note gives none.
WEIGHT_DECAY: dict[str, float] = {"sgd": 5e-4, "adamw": 0.05, "muon": 0.05}


def batch_size_for(params: int, train_rows: int) -> int:
    """The note's batch size for a model of `params` parameters, capped by the training set's size."""
    rule = next(batch for below, batch in BATCH_BY_PARAMS if params < below)
    return max(1, min(rule, train_rows))


def scaled_lr(optimizer: str, batch_size: int, reference_batch: int = REFERENCE_BATCH) -> float:
    """`BASE_LR[optimizer] * batch_size / reference_batch` (the linear scaling rule)."""
    if optimizer not in BASE_LR:
        raise ValueError(f"optimizer: {optimizer!r} is not one of {', '.join(BASE_LR)}")
    return BASE_LR[optimizer] * batch_size / reference_batch
