"""Activation sparsity (near-zero share with its threshold, Hoyer) of known patterns, and classifier scores."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from scaleflow.evaluation.activations import NEAR_ZERO, hoyer_sparsity, mlp_activation_sparsity, near_zero_share
from scaleflow.evaluation.classification import classification_scores


def test_hoyer_of_known_rows():
    rows = torch.tensor([[0.0, 0.0, 5.0, 0.0], [1.0, -1.0, 1.0, -1.0], [0.0, 0.0, 0.0, 0.0], [3.0, 4.0, 0.0, 0.0]])
    expected_last = (2 - 7 / 5) / (2 - 1)  # sqrt(4) = 2, |x|_1 / |x|_2 = 7 / 5
    assert hoyer_sparsity(rows).tolist() == pytest.approx([1.0, 0.0, 1.0, expected_last])
    with pytest.raises(ValueError, match="2 or more"):
        hoyer_sparsity(torch.ones(3, 1))


def test_near_zero_share_uses_the_threshold():
    x = torch.tensor([0.0, 0.009, -0.009, 0.011, -0.5, 2.0, 1e-4, -0.17])
    assert near_zero_share(x) == 4 / 8 and NEAR_ZERO == 0.01
    assert near_zero_share(x, threshold=1.0) == 7 / 8


class _KnownMLP(nn.Module):
    """Hidden pre-activations set by hand: 3 of 4 units at -10 (GELU ~ 0), one at +2."""

    def __init__(self):
        super().__init__()
        self.mlp = nn.Sequential()
        self.mlp.add_module("act", nn.GELU())

    def forward(self, x):
        pre = torch.tensor([-10.0, -10.0, -10.0, 2.0]).expand(x.shape[0], 3, 4)
        return self.mlp(pre).sum((1, 2))


def test_mlp_activation_sparsity_of_a_known_pattern():
    out = mlp_activation_sparsity(_KnownMLP(), torch.zeros(10, 1, 2, 2), batch_size=4)
    assert out["near_zero"] == pytest.approx(0.75) and out["threshold"] == NEAR_ZERO
    gelu2 = float(nn.GELU()(torch.tensor(2.0)))
    row = torch.tensor([0.0, 0.0, 0.0, gelu2])  # GELU(-10) is 0 in float32
    assert out["hoyer"] == pytest.approx(float(hoyer_sparsity(row)), abs=1e-6) == pytest.approx(1.0)
    assert list(out["by_layer"]) == ["mlp.act"]
    with pytest.raises(ValueError, match="no MLP activation"):
        mlp_activation_sparsity(nn.Linear(2, 2), torch.zeros(1, 2))


def test_classification_scores_of_a_fixed_classifier():
    class Fixed(nn.Module):
        def forward(self, x):  # logits: class 0 for every image
            return torch.tensor([[2.0, 0.0]]).expand(x.shape[0], 2)

    labels = torch.tensor([0, 0, 0, 1])
    scores = classification_scores(Fixed(), torch.zeros(4, 1, 2, 2), labels, batch_size=3)
    p0 = math.exp(2) / (math.exp(2) + 1)
    assert scores["accuracy"] == 0.75
    assert scores["loss"] == pytest.approx((-3 * math.log(p0) - math.log(1 - p0)) / 4, rel=1e-6)
