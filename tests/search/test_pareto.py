"""Several objectives: hypervolume against hand-computed cases, the worst-objective score, the records and the
reference point, the hypervolume guide, and resuming a Pareto search."""
from __future__ import annotations

import pytest
import torch

from scaleflow.search.gp import AcquisitionGuide, acquisition_values
from scaleflow.search.loop import read_history, run_search, search_ledger
from scaleflow.search.methods import build_method
from scaleflow.search.objectives import Objective, ObjectiveError, cosine_to
from scaleflow.search.pareto import ParetoObjective, chebyshev, hypervolume, non_dominated, parse_ref_point
from scaleflow.search.pareto_gp import fit_pareto_gp

BUDGET, BATCH = 16, 4


def test_hypervolume_of_a_hand_computed_staircase():
    # (1,3), (2,2), (3,1) above (0,0): the union of boxes 1x3, 2x2, 3x1 is 3 + 2 + 1 = 6.
    points = torch.tensor([[1.0, 3.0], [2.0, 2.0], [3.0, 1.0]])
    assert hypervolume(points, torch.zeros(2)) == pytest.approx(6.0)
    # A dominated point, a point below the reference and a repeated one change nothing.
    more = torch.cat([points, torch.tensor([[1.0, 1.0], [-1.0, 5.0], [2.0, 2.0]])])
    assert hypervolume(more, torch.zeros(2)) == pytest.approx(6.0)
    # Against (1, 1): boxes 0x2, 1x1, 2x0 -> 1.
    assert hypervolume(points, torch.ones(2)) == pytest.approx(1.0)
    assert hypervolume(torch.empty(0, 2), torch.zeros(2)) == 0.0


def test_hypervolume_in_three_dimensions():
    # Two boxes from the origin: [0,2]x[0,1]x[0,1] (2) and [0,1]x[0,2]x[0,1] (2) overlapping in the unit cube: 3.
    points = torch.tensor([[2.0, 1.0, 1.0], [1.0, 2.0, 1.0]])
    assert hypervolume(points, torch.zeros(3)) == pytest.approx(3.0)
    assert hypervolume(torch.tensor([[1.0, 2.0, 3.0]]), torch.zeros(3)) == pytest.approx(6.0)


def test_chebyshev_is_the_worst_objective_above_the_reference():
    scores = torch.tensor([[0.5, 0.2], [0.1, 0.9], [0.3, 0.3]], dtype=torch.float64)
    assert chebyshev(scores, torch.tensor([0.0, 0.1])).tolist() == pytest.approx([0.1, 0.1, 0.2])
    assert non_dominated(scores).tolist() == [True, True, True]
    assert non_dominated(torch.tensor([[1.0, 1.0], [0.5, 0.5]])).tolist() == [True, False]


def test_ref_point_parsing():
    assert parse_ref_point("0.1, -2", 2) == [0.1, -2.0]
    for bad in ("0.1", "a,b", "1,nan"):
        with pytest.raises(ValueError, match="--ref-point"):
            parse_ref_point(bad, 2)


def pair(tiny_data, ref_point=None):
    """Seed s: the cosines to targets s % 4 and (s + 1) % 4."""
    def make(seed: int) -> ParetoObjective:
        return ParetoObjective([Objective(cosine_to(tiny_data.targets[(seed + k) % 4]), f"t{(seed + k) % 4}")
                                for k in range(2)], ref_point)
    return make


def test_records_hold_the_scores_and_the_reference_point(make_problem, tiny_data, tmp_path):
    problem = make_problem(pair(tiny_data))
    outcome = run_search(problem, build_method("random", {}), BUDGET, BATCH, 0, tmp_path)
    records = search_ledger(tmp_path).records()
    vectors = torch.tensor([r["scores"] for r in records], dtype=torch.float64)
    initial = vectors[[r["step"] == 0 for r in records]]
    ref = initial.min(0).values  # no --ref-point: the initial design's least score per objective
    assert all(r["ref_point"] == ref.tolist() and r["objective"] == "t0 & t1" for r in records)
    assert [r["score"] for r in records] == pytest.approx(chebyshev(vectors, ref).tolist())
    assert torch.allclose(outcome.history.objectives, vectors)
    history = read_history(search_ledger(tmp_path), "random", 0, problem.dim)
    assert torch.equal(history.objectives, vectors) and torch.equal(history.y, outcome.history.y)


def test_a_fixed_reference_point_is_kept(make_problem, tiny_data, tmp_path):
    problem = make_problem(pair(tiny_data, ref_point=[0.0, 0.5]))
    run_search(problem, build_method("random", {}), 8, BATCH, 0, tmp_path)
    assert {tuple(r["ref_point"]) for r in search_ledger(tmp_path).records()} == {(0.0, 0.5)}


def test_a_failing_objective_is_named(make_problem, tiny_data, tmp_path):
    def broken(x):
        raise RuntimeError("no lab today")

    problem = make_problem(lambda seed: ParetoObjective([Objective(cosine_to(tiny_data.targets[0]), "t0"),
                                                         Objective(broken, "lab")]))
    with pytest.raises(ObjectiveError, match="objective lab raised RuntimeError: no lab today"):
        run_search(problem, build_method("random", {}), 8, BATCH, 0, tmp_path)


def test_the_hypervolume_guide_is_differentiable_and_ranks():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(24, 5, generator=g, dtype=torch.float64)
    y = torch.stack([x[:, 0], -x[:, 0]], 1) + 0.01 * torch.randn(24, 2, generator=g, dtype=torch.float64)
    surrogate = fit_pareto_gp(x[:20], y[:20], y.min(0).values)
    guide = AcquisitionGuide(surrogate, "qlognehvi")
    probe = x[20:].clone().requires_grad_(True)
    value, sigma = guide(probe)
    assert value.shape == sigma.shape == (4,) and torch.isfinite(value).all() and (sigma > 0).all()
    value.sum().backward()
    assert torch.isfinite(probe.grad).all() and probe.grad.abs().sum() > 0
    ranked = acquisition_values(surrogate, "qlognehvi", probe.detach(), seed=3)
    assert torch.equal(ranked, acquisition_values(surrogate, "qlognehvi", probe.detach(), seed=3))


@pytest.mark.parametrize("method", ["guided", "prior-filtered"])
def test_resuming_a_pareto_search_equals_an_uninterrupted_one(make_problem, tiny_data, tmp_path, method):
    problem = make_problem(pair(tiny_data))
    once, twice = tmp_path / "once", tmp_path / "twice"
    settings = {"acquisition": "qlognehvi"}
    run_search(problem, build_method(method, settings), BUDGET, BATCH, 1, once)
    run_search(problem, build_method(method, settings), 8, BATCH, 1, twice)
    outcome = run_search(problem, build_method(method, settings), BUDGET, BATCH, 1, twice)
    same = ("step", "score", "scores", "ref_point", "valid", "novel", "embedding", "best_so_far")
    a, b = search_ledger(once).records(), search_ledger(twice).records()
    assert len(a) == len(b) == BUDGET
    assert [{k: r[k] for k in same} for r in a] == [{k: r[k] for k in same} for r in b]
    assert outcome.history.objectives.shape == (BUDGET, 2)


def test_qlognehvi_needs_several_objectives(problem, tmp_path):
    with pytest.raises(ValueError, match="several objectives"):
        run_search(problem, build_method("guided", {"acquisition": "qlognehvi"}), 8, BATCH, 0, tmp_path)


def test_the_report_gives_hypervolumes_and_the_front(make_problem, tiny_data, tmp_path):
    from scaleflow.search.report import counts, summarize_search, whole_batches
    from scaleflow.search.pareto_report import seed_hypervolume

    problem = make_problem(pair(tiny_data, ref_point=[0.0, 0.0]))
    for method in ("random", "prior"):
        for seed in (0, 1):
            run_search(problem, build_method(method, {}), 8, BATCH, seed, tmp_path)
    summary = summarize_search(tmp_path, budget=8)
    searches = whole_batches(search_ledger(tmp_path).records())
    for row in summary.methods:
        expected = {s: hypervolume(torch.tensor([r["scores"] for r in searches[(row["method"], s)] if counts(r)]),
                                   torch.zeros(2)) for s in (0, 1)}
        assert row["hypervolume_per_seed"] == pytest.approx(expected)
        assert row["hypervolume"] == pytest.approx(sum(expected.values()) / 2)
        assert seed_hypervolume(searches[(row["method"], 0)], counts) == pytest.approx(expected[0])
    assert (tmp_path / "figures" / "pareto_front.png").stat().st_size > 1000
    assert "guided_hypervolume_lead" not in summary.methods[0]  # no guided here: no lead
