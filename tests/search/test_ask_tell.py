"""Ask/tell: the same records and proposals as the in-process loop for the same scores; a pending batch that
survives everything; refused tells that record nothing."""
from __future__ import annotations

import math

import pytest
import torch

from scaleflow.search.ask_tell import PENDING_FILE, Search, TellError
from scaleflow.search.loop import run_search, search_ledger
from scaleflow.search.methods import METHODS, build_method

SAME = ("method", "seed", "step", "index", "step_size", "proposed_by", "score", "valid", "novel", "nearest_cosine",
        "nearest_distance", "log_density", "nearest_texts", "pool_row", "best_so_far", "embedding", "info")


def scores_for(problem, seed):
    objective = problem.objective(seed)
    return lambda embeddings: objective(torch.tensor(embeddings, dtype=torch.float32), None)


@pytest.mark.parametrize("method", ["guided", "prior", "cmaes"])
def test_ask_tell_records_what_the_loop_records(problem, tmp_path, method):
    run_search(problem, build_method(method, {}), 24, 8, 0, tmp_path / "loop")
    search = Search(problem, build_method(method, {}), tmp_path / "asked", objective_name="t")
    score = scores_for(problem, 0)
    for _ in range(3):
        batch = search.ask(8)
        values = score([c["embedding"] for c in batch])
        search.tell({c["id"]: float(v) for c, v in zip(batch, values)})
    loop, asked = (search_ledger(tmp_path / name).records() for name in ("loop", "asked"))
    assert len(loop) == len(asked) == 24
    assert [{k: r[k] for k in SAME} for r in loop] == [{k: r[k] for k in SAME} for r in asked]
    assert {r["objective"] for r in asked} == {"t"}


def test_asking_twice_returns_the_pending_batch_even_after_a_restart(problem, tmp_path):
    first = Search(problem, build_method("prior", {}), tmp_path).ask(8)
    assert (tmp_path / PENDING_FILE).exists()
    again = Search(problem, build_method("prior", {}), tmp_path).ask(4)  # a new process: the same batch
    assert again == first
    assert [c["id"] for c in first] == [f"s0-b0-{i}" for i in range(8)]
    assert all(c["text_is"] in (None, "pool row", "nearest training text") for c in first)


def test_a_batch_recorded_before_its_pending_file_was_removed_is_not_recorded_twice(problem, tmp_path):
    search = Search(problem, build_method("prior", {}), tmp_path)
    batch = search.ask(8)
    pending = (tmp_path / PENDING_FILE).read_bytes()
    search.tell({c["id"]: 0.5 for c in batch})
    (tmp_path / PENDING_FILE).write_bytes(pending)  # as if killed between the records and the unlink
    assert search.pending() is None and not (tmp_path / PENDING_FILE).exists()
    assert [c["id"] for c in search.ask(8)] == [f"s0-b1-{i}" for i in range(8)]
    assert len(search_ledger(tmp_path).records()) == 8


@pytest.mark.parametrize("change, fragment", [
    (lambda s: {**s, "s0-b9-0": 1.0}, "not in the pending batch"),
    (lambda s: dict(list(s.items())[1:]), "no score for s0-b0-0"),
    (lambda s: {**s, "s0-b0-3": math.nan}, "s0-b0-3: nan is not a finite number"),
    (lambda s: {**s, "s0-b0-2": "high"}, "'high' is not a finite number"),
    (lambda s: {**s, "s0-b0-1": True}, "True is not a finite number"),
])
def test_bad_scores_are_refused_and_nothing_is_recorded(problem, tmp_path, change, fragment):
    search = Search(problem, build_method("prior", {}), tmp_path)
    batch = search.ask(8)
    good = {c["id"]: 0.1 * i for i, c in enumerate(batch)}
    with pytest.raises(TellError, match=fragment.replace("(", r"\(")):
        search.tell(change(good))
    assert search_ledger(tmp_path).records() == [] and search.ask(8) == batch
    search.tell(good)  # the same batch still takes its scores
    assert len(search_ledger(tmp_path).records()) == 8


def test_tell_without_a_pending_batch_is_refused(problem, tmp_path):
    with pytest.raises(TellError, match="no batch is pending"):
        Search(problem, build_method("prior", {}), tmp_path).tell({"s0-b0-0": 1.0})


def test_build_method_reads_folder_settings():
    guided = build_method("guided", {"acquisition": "logei", "oversample": 2, "steps": 7,
                                     "guidance": {"strength": 5.0, "clip": None, "cap": 2.0, "start": 0.0,
                                                  "stop": 0.1, "uncertainty": False}})
    assert (guided.acquisition, guided.oversample, guided.steps, guided.guidance.strength) == ("logei", 2, 7, 5.0)
    assert build_method("cmaes", {"cmaes_sigma": 0.3}).sigma0 == 0.3
    assert type(build_method("prior", {})) is METHODS["prior"]
    with pytest.raises(ValueError, match="unknown method"):
        build_method("annealing", {})


def test_told_constraints_give_the_records_of_measured_ones(make_problem, tmp_path):
    """A constraint measured outside and told with the scores records, counts and steers guided exactly as the
    same constraint measured in the loop."""
    from scaleflow.search.constraints import Constraint, parse_told_constraint
    from scaleflow.search.objectives import Objective

    def first_coordinate(x):
        return x[:, 0].double()

    measured = make_problem()
    measured.constraints = [Constraint(Objective(first_coordinate, "first"), "<=", float(measured.pool[:, 0].median()))]
    told = make_problem()
    told.constraints = [parse_told_constraint(f"first<={measured.constraints[0].bound}")]
    run_search(measured, build_method("guided", {}), 24, 8, 0, tmp_path / "loop")
    search = Search(told, build_method("guided", {}), tmp_path / "asked", objective_name="t")
    score = scores_for(told, 0)
    for _ in range(3):
        batch = search.ask(8)
        x = [c["embedding"] for c in batch]
        values = score(x)
        firsts = first_coordinate(torch.tensor(x))
        search.tell({c["id"]: float(v) for c, v in zip(batch, values)},
                    {c["id"]: [float(f)] for c, f in zip(batch, firsts)})
    loop, asked = (search_ledger(tmp_path / name).records() for name in ("loop", "asked"))
    keys = SAME + ("constraint_values", "constraints_ok")
    assert [{k: r[k] for k in keys} for r in loop] == [{k: r[k] for k in keys} for r in asked]
    assert 0 < sum(r["constraints_ok"] for r in asked) < 24  # the bound splits the candidates


def test_told_constraint_values_are_checked(make_problem, tmp_path):
    from scaleflow.search.constraints import parse_told_constraint

    problem = make_problem()
    problem.constraints = [parse_told_constraint("tox<=0.5")]
    search = Search(problem, build_method("prior", {}), tmp_path)
    batch = search.ask(4)
    scores = {c["id"]: 0.1 for c in batch}
    with pytest.raises(TellError, match="needs a value of each constraint"):
        search.tell(scores)
    with pytest.raises(TellError, match="tox of s0-b0-0: nan is not a finite number"):
        search.tell(scores, {c["id"]: [math.nan] for c in batch})
    assert search_ledger(tmp_path).records() == []
    plain = Search(make_problem(), build_method("prior", {}), tmp_path / "plain")
    plain_batch = plain.ask(4)
    with pytest.raises(TellError, match="no constraints"):
        plain.tell({c["id"]: 0.1 for c in plain_batch}, {c["id"]: [0.0] for c in plain_batch})
