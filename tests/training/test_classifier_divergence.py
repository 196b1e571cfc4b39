"""The classifier loop reports divergence also when the very last step makes the weights non-finite
(no later loss is computed to show it)."""
from __future__ import annotations

import math

import torch

from scaleflow.data.images import load_digits_splits
from scaleflow.nets import create_model
from scaleflow.training.classifier import ClassifierSettings, train_classifier


def _one_step(lr: float) -> tuple[dict, torch.nn.Module]:
    data = load_digits_splits(seed=0)
    torch.manual_seed(0)
    model = create_model("vit", "tiny", image_size=8, patch_size=4, channels=1, num_classes=10)
    rows = len(data.train[1])  # one batch of every row, one epoch: the first step is the last
    settings = ClassifierSettings("sgd", epochs=1, batch_size=rows, lr=lr, aux_lr=lr, weight_decay=0.0,
                                  warmup_fraction=0.0, grad_clip=0.0)
    return train_classifier(model, data, settings, torch.device("cpu")), model


def test_a_last_step_that_breaks_the_weights_is_diverged():
    history, model = _one_step(lr=math.inf)  # the loss before the step is finite; the weights after are not
    assert not all(p.isfinite().all() for p in model.parameters())
    assert history["steps"] == 1 and history["diverged"] and history["diverged_at_step"] == 1


def test_a_sound_last_step_is_not():
    history, model = _one_step(lr=1e-3)
    assert all(p.isfinite().all() for p in model.parameters())
    assert history["steps"] == 1 and not history["diverged"] and history["diverged_at_step"] is None
