"""Weight analysis: effective and stable rank of matrices with known spectra, sparsity, per-layer summary."""
from __future__ import annotations

import math

import pytest
import torch

from scaleflow.evaluation.weights import effective_rank, layer_type, sparsity, stable_rank, weight_statistics
from scaleflow.nets import create_model


@pytest.mark.parametrize("n", [1, 4, 17])
def test_identity_has_full_rank(n):
    assert effective_rank(torch.eye(n)) == pytest.approx(n)
    assert stable_rank(torch.eye(n)) == pytest.approx(n)


def test_rank_one_has_rank_one():
    u, v = torch.randn(12, 1), torch.randn(1, 7)
    assert effective_rank(u @ v) == pytest.approx(1.0, abs=1e-6)
    assert stable_rank(u @ v) == pytest.approx(1.0, abs=1e-6)


def test_known_spectrum():
    # singular values 3, 1: p = (0.75, 0.25); effective rank exp(H); stable rank (9 + 1) / 9
    m = torch.diag(torch.tensor([3.0, 1.0]))
    h = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert effective_rank(m) == pytest.approx(math.exp(h))
    assert stable_rank(m) == pytest.approx(10 / 9)
    assert effective_rank(torch.zeros(3, 3)) == 0.0 and stable_rank(torch.zeros(3, 3)) == 0.0


def test_sparsity():
    m = torch.tensor([[1.0, 0.0], [0.0, 1e-5]])
    assert sparsity(m) == 0.75
    assert sparsity(torch.zeros(2, 2)) == 1.0


def test_layer_types_and_summary():
    assert layer_type("blocks.3.attn.qkv.weight") == "blocks.attn.qkv"
    assert layer_type("net.5.weight") == "net"
    model = create_model("dit", "tiny", input_dim=16)
    stats = weight_statistics(model)
    assert set(stats["matrices"]) == {n for n, p in model.named_parameters() if p.dim() == 2}
    qkv = stats["by_layer_type"]["blocks.attn.qkv"]
    assert qkv["count"] == 2 and 0 < qkv["effective_rank_ratio"] <= 1


def test_statistics_of_the_change_from_init():
    model = torch.nn.Linear(6, 4, bias=False)
    initial = {"weight": model.weight.detach().clone()}
    with torch.no_grad():
        model.weight += torch.outer(torch.ones(4), torch.arange(6.0))  # a rank-one update
    update = weight_statistics(model, initial)["matrices"]["weight"]
    assert update["effective_rank"] == pytest.approx(1.0, abs=1e-6) and update["stable_rank"] == pytest.approx(1.0)
    assert weight_statistics(model)["matrices"]["weight"]["effective_rank"] > 1.1  # the weights themselves: not rank one
