"""Outcome constraints: measured for every scored candidate, recorded, deciding what counts; guided models them."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from scaleflow.search.constraints import Constraint, FeasibilityGuide, parse_constraint
from scaleflow.search.gp import AcquisitionGuide, fit_gp
from scaleflow.search.loop import read_history, run_search, search_ledger
from scaleflow.search.methods import build_method
from scaleflow.search.objectives import Objective


def first_coordinate(x, texts=None):
    return x[:, 0]


def test_a_constraint_no_row_meets_leaves_no_counted_candidate(problem, tmp_path):
    impossible = Constraint(Objective(first_coordinate, "first"), ">=", 1e6)
    constrained = dataclasses.replace(problem, constraints=[impossible])
    outcome = run_search(constrained, build_method("guided", {}), 24, 8, 0, tmp_path)
    records = search_ledger(tmp_path).records()
    assert outcome.best is None and not outcome.history.counts.any()
    assert all(r["constraints_ok"] is False and r["constraint_values"] == [pytest.approx(r["embedding"][0])]
               for r in records)
    history = read_history(search_ledger(tmp_path), "guided", 0, problem.dim)
    assert history.constraints.shape == (24, 1) and not history.counts.any()


def test_constraints_decide_counting_exactly(problem, tmp_path):
    threshold = float(problem.pool[:, 0].median())
    constrained = dataclasses.replace(problem, constraints=[Constraint(Objective(first_coordinate, "first"), "<=",
                                                                       threshold)])
    outcome = run_search(constrained, build_method("prior", {}), 16, 8, 0, tmp_path)
    for r, counted in zip(search_ledger(tmp_path).records(), outcome.history.counts.tolist()):
        assert r["constraints_ok"] == (r["embedding"][0] <= threshold)
        assert counted == (r["valid"] and r["novel"] and r["constraints_ok"])


def test_the_feasibility_term_prefers_points_likely_to_meet_the_constraint():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 3, generator=g)
    surrogate = fit_gp(x, torch.zeros(40, dtype=torch.float64) + torch.randn(40, generator=g, dtype=torch.float64) * 0.01)
    constraint_gp = fit_gp(x, x[:, 0].double())
    constraint = Constraint(Objective(first_coordinate, "first"), ">=", 0.0)
    guide = FeasibilityGuide(AcquisitionGuide(surrogate, "ucb"), [constraint_gp], [constraint])
    probe = torch.tensor([[1.5, 0.0, 0.0], [-1.5, 0.0, 0.0]], dtype=torch.float64, requires_grad=True)
    value, _ = guide(probe)
    assert value[0] > value[1] + 3  # log P(first >= 0): ~0 at +1.5, very negative at -1.5
    value.sum().backward()
    assert probe.grad[1, 0] > 0  # the gradient points towards feasibility


@pytest.mark.parametrize("text, fragment", [("mod:f", "expected MODULE:FUNCTION>=VALUE"),
                                            ("mod:f>=high", "expected MODULE:FUNCTION>=VALUE")])
def test_bad_constraint_specs(text, fragment):
    with pytest.raises(ValueError, match=fragment):
        parse_constraint(text)
