"""Shared fixtures of the guided-search tests: a tiny search problem built by hand.

The data are low-rank rows (rank 3 in D = 12, offset to mean ~5, a little isotropic noise), so that
real rows all point roughly the same way and a random direction is far from them. The prior is an
untrained tiny MLP: its samples are junk, which is all the loop needs (it only has to be a pure
function of the noise seed).
"""
from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Callable, Optional

import numpy as np
import pytest
import torch
from torch import Tensor

from scaleflow.data.normalization import Standardizer
from scaleflow.flows.registry import create_flow
from scaleflow.nets.registry import create_model
from scaleflow.sampling.velocity import VelocityField
from scaleflow.search.judge import CandidateJudge
from scaleflow.search.objectives import Objective, cosine_to
from scaleflow.search.problem import SearchProblem

DIM, RANK, MEAN, NOISE = 12, 3, 5.0, 0.05
N_REFERENCE, N_POOL, N_TARGETS = 300, 100, 4


def low_rank_rows(n: int, seed: int) -> Tensor:
    """`[n, DIM]` float32 rows of one fixed low-rank distribution (the basis never changes; `seed` draws rows)."""
    basis = torch.randn(RANK, DIM, generator=torch.Generator().manual_seed(12345))
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, RANK, generator=g)
    return (z @ basis + MEAN + NOISE * torch.randn(n, DIM, generator=g)).float()


@dataclass
class TinyData:
    reference: Tensor  # [300, D] the prior's "training rows"
    pool: Tensor  # [100, D] held-out rows the search may pick
    targets: Tensor  # [4, D] rows of neither: the objectives' targets


@pytest.fixture(scope="session")
def rows_of() -> Callable[[int, int], Tensor]:
    """`rows_of(n, seed)`: n more rows of the tiny data's distribution (`low_rank_rows`)."""
    return low_rank_rows


@pytest.fixture(scope="session")
def tiny_data() -> TinyData:
    rows = low_rank_rows(N_REFERENCE + N_POOL + N_TARGETS, seed=0)
    return TinyData(rows[:N_REFERENCE], rows[N_REFERENCE:N_REFERENCE + N_POOL], rows[N_REFERENCE + N_POOL:])


def _fake_run(reference: Tensor) -> SimpleNamespace:
    torch.manual_seed(0)
    model = create_model("mlp", input_dim=DIM, hidden_dim=16, num_layers=2, time_embed_dim=16)
    model = model.eval().requires_grad_(False)
    return SimpleNamespace(velocity=VelocityField(model, create_flow("icfm"), "velocity"),
                           standardizer=Standardizer.fit(reference))


@pytest.fixture(scope="session")
def make_problem(tiny_data) -> Callable[..., SearchProblem]:
    """`make_problem(make_objective=None, texts=False)`: the tiny problem; by default seed s maximizes the
    cosine to target s % 4 (objective name "t"); with `texts`, reference and pool rows have texts
    ("ref i", "pool i")."""
    run = _fake_run(tiny_data.reference)
    judge = CandidateJudge(tiny_data.reference, tiny_data.pool)

    def default_objective(seed: int) -> Objective:
        return Objective(cosine_to(tiny_data.targets[seed % len(tiny_data.targets)]), "t", optimum=1.0)

    def make(make_objective: Optional[Callable[[int], Objective]] = None, texts: bool = False) -> SearchProblem:
        reference_texts = [f"ref {i}" for i in range(len(tiny_data.reference))] if texts else None
        pool_texts = [f"pool {i}" for i in range(len(tiny_data.pool))] if texts else None
        return SearchProblem(run, tiny_data.reference, tiny_data.pool, reference_texts, pool_texts, judge, "t",
                             make_objective or default_objective)

    return make


@pytest.fixture(scope="session")
def problem(make_problem) -> SearchProblem:
    """The tiny problem with the default (target cosine) objectives and no texts."""
    return make_problem()


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A tiny run trained in-process (mlp, hidden 16, 20 steps; ~2 s): 200 train, 50 val, 50 test rows of
    a low-rank 8-dim set with texts "text number i"."""
    from scaleflow.training.config import make_config
    from scaleflow.training.run import load_run, train

    folder = tmp_path_factory.mktemp("search_run")
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((300, 3)) @ rng.standard_normal((3, 8)) + 5.0).astype(np.float32)
    np.save(folder / "data.npy", x)
    (folder / "data.txt").write_text("".join(f"text number {i}\n" for i in range(300)), encoding="utf-8")
    config = make_config({"data": str(folder / "data.npy"), "texts": str(folder / "data.txt"), "arch": "mlp",
                          "scale": None, "model": {"hidden_dim": 16, "num_layers": 2, "time_embed_dim": 16},
                          "prediction": "velocity", "steps": 20, "val_every": 10, "n_val": 50, "n_test": 50,
                          "batch_size": 32, "device": "cpu"})
    train(config, folder / "run", progress=False)
    return load_run(folder / "run"), torch.from_numpy(x)
