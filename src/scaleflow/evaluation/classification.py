"""A classifier's loss and accuracy on a labelled split."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@torch.no_grad()
def classification_scores(model: nn.Module, images: Tensor, labels: Tensor, batch_size: int = 1024) -> dict[str, float]:
    """Mean cross-entropy (no label smoothing) and accuracy of `model` on `images: [N, C, H, W]`, `labels: [N]`."""
    was_training = model.training
    model.eval()
    loss, correct = 0.0, 0
    try:
        for start in range(0, len(images), batch_size):
            logits = model(images[start:start + batch_size]).float()
            target = labels[start:start + batch_size]
            loss += float(F.cross_entropy(logits, target, reduction="sum"))
            correct += int((logits.argmax(-1) == target).sum())
    finally:
        model.train(was_training)
    return {"loss": loss / len(labels), "accuracy": correct / len(labels)}
