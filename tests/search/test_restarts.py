"""Restarts (`search.restarts`): the anchors they start from, the two-phase solve on one grid, and guided searches
with restarts that resume as uninterrupted ones."""
from __future__ import annotations

import pytest
import torch

from scaleflow.flows.registry import create_flow
from scaleflow.sampling.solvers import integrate
from scaleflow.search.loop import run_search, search_ledger
from scaleflow.search.methods import build_method
from scaleflow.search.methods.common import counted_apart
from scaleflow.search.restarts import restart_count, sample_with_restarts


def test_anchors_are_the_best_counted_candidates_pairwise_apart():
    eye = torch.eye(5)
    x = torch.stack([eye[0], eye[0] + 0.1 * eye[1], eye[2], eye[3], eye[4]])
    score = torch.tensor([0.9, 0.8, 0.7, 0.95, 0.1])
    counts = torch.tensor([True, True, True, False, True])
    anchors = x[counted_apart(counts, score, x, 3, 0.7)]
    # 0.95 does not count; 0.8 is a near copy of 0.9 (cosine 0.995); so 0.9, 0.7, then 0.1.
    assert torch.equal(anchors, torch.stack([eye[0], eye[2], eye[4]]))
    assert counted_apart(torch.zeros(5, dtype=torch.bool), score, x, 3, 0.7) == []


def test_restarts_refuse_thompson_paths():
    with pytest.raises(ValueError, match="thompson"):
        build_method("guided", {"restart_share": 0.5, "acquisition": "thompson"})


def test_restart_count_leaves_fresh_rows():
    assert restart_count(32, 0.5) == 16 and restart_count(32, 0.0) == 0
    assert restart_count(2, 0.9) == 1
    with pytest.raises(ValueError, match="restart share"):
        restart_count(32, 1.0)


class LinearField:
    """v(x, t) = A x + b: rows independent; records the steps it is told."""

    def __init__(self, dim: int) -> None:
        g = torch.Generator().manual_seed(0)
        self.a = 0.3 * torch.randn(dim, dim, generator=g)
        self.b = torch.randn(dim, generator=g)
        self.told: list[tuple[int, int]] = []

    def begin_step(self, step: int, n_steps: int) -> None:
        self.told.append((step, n_steps))

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return x @ self.a.T + self.b


def test_the_two_phase_solve_follows_one_grid():
    dim, steps, t0 = 4, 20, 0.3
    field, flow = LinearField(dim), create_flow("icfm")
    noise = torch.randn(6, dim, generator=torch.Generator().manual_seed(1))
    anchors = torch.randn(2, dim, generator=torch.Generator().manual_seed(2))
    end = sample_with_restarts(field, flow, noise, anchors, 3, t0, "euler", steps)
    # Fresh rows: as if integrated from 0 to 1 in one go; restarted rows: from the flow's point at t = 0.3.
    whole = integrate(LinearField(dim), noise[:3], 0.0, 1.0, "euler", steps).x
    assert torch.allclose(end[:3], whole, atol=1e-5)
    start = flow.compute_xt(noise[3:], anchors[[0, 1, 0]], 0.3)
    assert torch.allclose(end[3:], integrate(LinearField(dim), start, 0.3, 1.0, "euler", 14).x, atol=1e-5)
    # Guidance is told the steps of the whole grid: 0..5 then 6..19, of 20.
    assert field.told == [(s, steps) for s in range(steps)]
    with pytest.raises(ValueError, match="fresh row"):
        sample_with_restarts(field, flow, noise, anchors, 6, t0, "euler", steps)


def test_a_guided_search_with_restarts_resumes_as_an_uninterrupted_one(problem, tmp_path):
    settings = {"restart_share": 0.5, "restart_time": 0.4}
    method = build_method("guided", settings)
    assert (method.restart_share, method.restart_time) == (0.5, 0.4)
    once, twice = tmp_path / "once", tmp_path / "twice"
    run_search(problem, build_method("guided", settings), 16, 4, 0, once)
    run_search(problem, build_method("guided", settings), 8, 4, 0, twice)
    run_search(problem, build_method("guided", settings), 16, 4, 0, twice)
    same = ("step", "score", "valid", "novel", "embedding")
    a, b = search_ledger(once).records(), search_ledger(twice).records()
    assert [{k: r[k] for k in same} for r in a] == [{k: r[k] for k in same} for r in b]
    # Restarts change what is proposed once something counts.
    plain = tmp_path / "plain"
    run_search(problem, build_method("guided", {}), 16, 4, 0, plain)
    assert [r["embedding"] for r in search_ledger(plain).records()] != [r["embedding"] for r in a]
