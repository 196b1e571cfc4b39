"""The search loop: exactly `budget` records, a shared initial design per seed, a shortened last batch,
a monotone best-so-far; the objective called last, after the judge and the log-density; resuming (after a
finished run, a kill mid-write, or a failing objective) ends with the records an uninterrupted run writes;
and the problem built from a real (tiny, trained) run."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from scaleflow.search.loop import read_history, run_search, search_ledger
from scaleflow.search.methods import METHODS, Proposal
from scaleflow.search.objectives import Objective, ObjectiveError, cosine_to
from scaleflow.search.problem import build_problem
from scaleflow.search.report import INITIAL, SEARCH_FILE, whole_batches

BATCH = 4
# What must agree between a resumed and an uninterrupted search (not `attempt` tokens nor `seconds`).
SAME = ("method", "seed", "step", "index", "step_size", "proposed_by", "objective", "score", "valid", "novel",
        "nearest_cosine", "nearest_distance", "nearest_texts", "pool_row", "best_so_far", "embedding")


def search(problem, method: str, budget: int, folder, seed: int = 0, batch: int = BATCH, **kwargs):
    return run_search(problem, METHODS[method](), budget, batch, seed, folder, **kwargs)


def records_of(folder, method=None, seed=None) -> list[dict]:
    records = search_ledger(folder).records()
    return [r for r in records if (method is None or r["method"] == method) and (seed is None or r["seed"] == seed)]


def whole(folder, method: str, seed: int = 0) -> list[dict]:
    return whole_batches(records_of(folder, method, seed)).get((method, seed), [])


def essentials(records: list[dict]) -> list[dict]:
    return [{k: r[k] for k in SAME} for r in records]


def line(record: dict) -> bytes:
    return (json.dumps(record) + "\n").encode()  # as Ledger.append_many writes it


# ---------------------------------------------------------------- one search


def test_writes_exactly_budget_records(problem, tmp_path):
    outcome = search(problem, "random", 10, tmp_path)
    records = records_of(tmp_path)
    assert [r["index"] for r in records] == list(range(10))
    assert [r["step"] for r in records] == [0] * 4 + [1] * 4 + [2] * 2  # the last batch shortened to fit
    assert [r["step_size"] for r in records] == [4] * 8 + [2] * 2
    assert [r["proposed_by"] for r in records] == [INITIAL] * 4 + ["random"] * 6
    assert {r["objective"] for r in records} == {"t"} and {r["method"] for r in records} == {"random"}
    assert len({r["attempt"] for r in records}) == 3
    assert all(len({r["attempt"] for r in records if r["step"] == s}) == 1 for s in range(3))
    # Pool rows: real rows, each at most once, recorded as they are.
    rows = [r["pool_row"] for r in records]
    assert len(set(rows)) == 10
    for r in records:
        assert r["embedding"] == problem.pool[r["pool_row"]].tolist()
    # Scores are the objective's values; verdicts the judge's.
    x = torch.tensor([r["embedding"] for r in records])
    assert [r["score"] for r in records] == problem.objective(0)(x).tolist()
    verdicts = problem.judge(x)
    assert [r["valid"] for r in records] == verdicts.valid.tolist()
    assert [r["novel"] for r in records] == verdicts.novel.tolist()
    nearest = records[0]["nearest_texts"]
    assert len(nearest) == 3 and nearest[0][1] == int(verdicts.nearest_rows[0, 0])  # no texts: row numbers
    # The outcome.
    assert len(outcome.history) == 10 and outcome.history.pool_rows == rows
    assert outcome.history.steps == [r["step"] for r in records]
    assert len(outcome.seconds) == 2  # proposing steps only
    counted = [r["score"] for r in records if r["valid"] and r["novel"]]
    assert outcome.best == max(counted)


def test_initial_design_size_and_later_batches(problem, tmp_path):
    search(problem, "random", 11, tmp_path, n_initial=3)
    records = records_of(tmp_path)
    assert [r["step_size"] for r in records] == [3] * 3 + [4] * 8
    assert [r["index"] for r in records] == list(range(11))
    # Budget equal to the initial design: no method step at all.
    outcome = search(problem, "prior", 5, tmp_path / "only_initial", n_initial=5)
    assert [r["proposed_by"] for r in records_of(tmp_path / "only_initial")] == [INITIAL] * 5
    assert outcome.seconds == []


def test_initial_rows_are_shared_by_methods_of_a_seed(problem, tmp_path):
    folder = tmp_path / "one_folder"
    for method in ("random", "prior"):
        for seed in (0, 1):
            search(problem, method, 8, folder, seed=seed)
    first = {(m, s): records_of(folder, m, s)[:BATCH] for m in ("random", "prior") for s in (0, 1)}
    for seed in (0, 1):
        a, b = first[("random", seed)], first[("prior", seed)]
        assert [r["pool_row"] for r in a] == [r["pool_row"] for r in b]
        assert [r["embedding"] for r in a] == [r["embedding"] for r in b]
        assert [r["score"] for r in a] == [r["score"] for r in b]
        assert all(r["proposed_by"] == INITIAL for r in a + b)
    assert {r["pool_row"] for r in first[("random", 0)]} != {r["pool_row"] for r in first[("random", 1)]}
    # The prior proposes generated points: no pool rows after the initial design; the two methods differ there.
    prior = records_of(folder, "prior", 0)
    assert [r["pool_row"] for r in prior[BATCH:]] == [None] * 4
    assert [r["embedding"] for r in prior[BATCH:]] != [r["embedding"] for r in records_of(folder, "random", 0)[BATCH:]]
    # Each (method, seed) in the shared folder is what it would be alone.
    search(problem, "prior", 8, tmp_path / "alone", seed=1)
    assert essentials(records_of(tmp_path / "alone")) == essentials(records_of(folder, "prior", 1))


@pytest.mark.parametrize("method", ["random", "prior"])
def test_best_so_far_is_the_running_max_of_counted_scores(problem, tmp_path, method):
    outcome = search(problem, method, 16, tmp_path, seed=2)
    records = records_of(tmp_path)
    best = None
    for step in range(4):
        batch = [r for r in records if r["step"] == step]
        counted = [r["score"] for r in batch if r["valid"] and r["novel"]]
        if counted:
            best = max(counted) if best is None else max(best, max(counted))
        # Every record of a batch carries the best after the whole batch was scored.
        assert {r["best_so_far"] for r in batch} == {best}
    curve = [r["best_so_far"] for r in records if r["best_so_far"] is not None]
    assert curve == sorted(curve)
    assert outcome.best == best


def test_progress_is_reported_after_each_batch(problem, tmp_path):
    calls = []
    outcome = search(problem, "random", 10, tmp_path, seed=3, progress=lambda *args: calls.append(args))
    assert [c[2] for c in calls] == [4, 8, 10]
    assert all(c[:2] == ("random", 3) and c[3] == 10 for c in calls)
    assert calls[-1][4] == outcome.best


def test_texts_reach_the_objective_and_the_records(make_problem, tmp_path):
    seen: list = []

    def with_texts(x, texts=None):
        seen.append(list(texts))
        return x[:, 0]

    problem = make_problem(lambda seed: Objective(with_texts, "first"), texts=True)
    search(problem, "prior", 8, tmp_path)
    records = records_of(tmp_path)
    assert seen[0] == [f"pool {r['pool_row']}" for r in records[:BATCH]]
    assert seen[1] == [None] * BATCH  # generated points have no text
    assert all(isinstance(t, str) and t.startswith("ref ") for r in records for _, t in r["nearest_texts"])


def _watched(make_problem, tiny_data, calls: list, density_fails_at: int = 0):
    """The tiny problem, noting in `calls` each call of the judge, the log-density and the objective; the
    log-density raises on its call number `density_fails_at` (1-based; 0: never)."""
    cosine = cosine_to(tiny_data.targets[0])
    problem = make_problem(lambda seed: Objective(lambda x: calls.append("objective") or cosine(x), "t"))
    judge, density = problem.judge, problem.log_density
    problem = dataclasses.replace(problem, judge=lambda x: calls.append("judge") or judge(x))

    def log_density(x):
        calls.append("log_density")
        if calls.count("log_density") == density_fails_at:
            raise RuntimeError("the ODE blew up")
        return density(x)

    problem.log_density = log_density  # the instance's, over the method
    return problem


def test_the_objective_is_called_last(make_problem, tiny_data, tmp_path):
    calls: list = []
    search(_watched(make_problem, tiny_data, calls), "random", 8, tmp_path)
    assert calls == ["judge", "log_density", "objective"] * 2  # what a record needs besides the score, first
    assert len(records_of(tmp_path)) == 8


def test_a_failing_log_density_costs_no_objective_call(make_problem, tiny_data, tmp_path):
    calls: list = []
    with pytest.raises(RuntimeError, match="the ODE blew up"):
        search(_watched(make_problem, tiny_data, calls, density_fails_at=2), "random", 8, tmp_path)
    assert calls.count("objective") == 1  # the first batch's; the second batch was not scored
    assert [r["step"] for r in records_of(tmp_path)] == [0] * BATCH


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(budget=0), "budget and batch must be >= 1"),
    (dict(batch=0), "budget and batch must be >= 1"),
    (dict(n_initial=0), "initial design"),
    (dict(budget=4, n_initial=5), "initial design (5 rows)"),
])
def test_bad_sizes(problem, tmp_path, kwargs, fragment):
    options = {"budget": 8, "batch": BATCH, "n_initial": None, **kwargs}
    with pytest.raises(ValueError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        run_search(problem, METHODS["random"](), options["budget"], options["batch"], 0, tmp_path,
                   n_initial=options["n_initial"])
    assert not (tmp_path / SEARCH_FILE).exists()


def test_a_method_proposing_the_wrong_shape_stops_the_loop(problem, tmp_path):
    @dataclasses.dataclass
    class TooMany:
        name: str = "too_many"

        def propose(self, problem, history, n, seed, step):
            return Proposal(problem.pool[: n + 1], list(range(n + 1)))

    with pytest.raises(RuntimeError, match=r"too_many proposed shape \(5, 12\); expected \(4, 12\)"):
        run_search(problem, TooMany(), 12, BATCH, 0, tmp_path)
    assert len(records_of(tmp_path)) == BATCH  # the initial design was recorded


def test_running_out_of_pool_rows(problem, tmp_path):
    with pytest.raises(ValueError, match="the pool has 0 unscored rows left; 1 were asked for"):
        search(problem, "random", 101, tmp_path, batch=50)
    records = records_of(tmp_path)
    assert len(records) == 100 and sorted(r["pool_row"] for r in records) == list(range(100))


# ---------------------------------------------------------------- resuming


RESUME_CASES = [
    ("random", 0),
    ("prior", 0),
    ("retrieval", 0),
    ("retrieval", 1),  # when read_history gave float32 scores, this resumed search differed from index 15 on
]


@pytest.mark.parametrize("method, seed", RESUME_CASES)
def test_resuming_equals_an_uninterrupted_search(problem, tmp_path, method, seed):
    once, twice = tmp_path / "once", tmp_path / "twice"
    search(problem, method, 24, once, seed=seed)
    search(problem, method, 12, twice, seed=seed)
    assert len(records_of(twice)) == 12
    outcome = search(problem, method, 24, twice, seed=seed)
    assert len(outcome.seconds) == 3  # only the steps this call proposed
    a, b = records_of(once), records_of(twice)
    assert len(a) == len(b) == 24
    assert essentials(a) == essentials(b)
    assert torch.equal(outcome.history.x, torch.tensor([r["embedding"] for r in a]))
    # The tokens differ between the runs' batches; seconds are whatever they took.
    assert {r["attempt"] for r in a}.isdisjoint({r["attempt"] for r in b})


def test_resumed_best_is_the_exact_score(problem, tmp_path):
    # With float32 scores read back, a resumed best was the rounded score (0.966878354549408, not 0.9668783330074028).
    once, twice = tmp_path / "once", tmp_path / "twice"
    a = search(problem, "prior", 24, once)
    search(problem, "prior", 12, twice)
    b = search(problem, "prior", 24, twice)
    assert b.best == a.best
    assert [r["best_so_far"] for r in records_of(twice)] == [r["best_so_far"] for r in records_of(once)]


def test_read_history_keeps_the_recorded_scores(problem, tmp_path):
    outcome = search(problem, "random", 8, tmp_path)
    history = read_history(search_ledger(tmp_path), "random", 0, problem.dim)
    assert history.y.tolist() == [r["score"] for r in records_of(tmp_path)]
    assert torch.equal(history.y, outcome.history.y)


def test_read_history_matches_the_outcome(problem, tmp_path):
    outcome = search(problem, "prior", 10, tmp_path)
    store = search_ledger(tmp_path)
    history = read_history(store, "prior", 0, problem.dim)
    assert torch.equal(history.x, outcome.history.x)
    assert history.y.dtype == torch.float64 and torch.equal(history.y, outcome.history.y)
    assert torch.equal(history.counts, outcome.history.counts)
    assert (history.pool_rows, history.steps, history.methods) == (
        outcome.history.pool_rows, outcome.history.steps, outcome.history.methods)
    assert history.methods == [INITIAL] * 4 + ["prior"] * 6
    assert len(read_history(store, "prior", 1, problem.dim)) == 0
    assert len(read_history(store, "random", 0, problem.dim)) == 0


def test_a_finished_search_is_left_alone(problem, tmp_path):
    first = search(problem, "random", 12, tmp_path)
    before = (tmp_path / SEARCH_FILE).read_bytes()
    again = search(problem, "random", 12, tmp_path)
    assert (tmp_path / SEARCH_FILE).read_bytes() == before
    assert again.seconds == [] and again.best == first.best
    assert len(again.history) == 12
    # A smaller budget than what is recorded writes nothing either.
    search(problem, "random", 8, tmp_path)
    assert (tmp_path / SEARCH_FILE).read_bytes() == before


@pytest.mark.parametrize("method, whole_lines, half_line", [
    ("random", 0, True),  # killed while writing the first line of step 3
    ("random", 2, True),  # 2 of its 4 lines out, the 3rd torn
    ("random", 3, False),  # 3 whole lines out, nothing torn
    ("prior", 2, True),
])
def test_a_kill_mid_write_resumes_exactly(problem, tmp_path, method, whole_lines, half_line):
    uninterrupted, killed = tmp_path / "uninterrupted", tmp_path / "killed"
    search(problem, method, 20, uninterrupted)
    search(problem, method, 12, killed)
    step3 = [r for r in records_of(uninterrupted) if r["step"] == 3]
    assert len(step3) == BATCH
    tail = b"".join(line(r) for r in step3[:whole_lines])
    if half_line:
        text = line(step3[whole_lines])
        tail += text[: len(text) // 2]
    with open(killed / SEARCH_FILE, "ab") as f:
        f.write(tail)
    store = search_ledger(killed)
    assert len(store.records()) == 12 + whole_lines  # the torn line is not read
    assert len(read_history(store, method, 0, problem.dim)) == 12  # nor the torn batch

    outcome = search(problem, method, 20, killed)
    assert len(outcome.history) == 20
    records = store.records()  # every line whole again (the torn tail was cut before the next write)
    assert len(records) == 12 + whole_lines + 8
    assert (killed / SEARCH_FILE).read_bytes().endswith(b"\n")
    assert essentials(whole(killed, method)) == essentials(records_of(uninterrupted))


class FailsOnCall:
    """Cosine to a target, raising on call number `fail_at` (1-based)."""

    def __init__(self, target, fail_at: int):
        self.cosine, self.fail_at, self.calls = cosine_to(target), fail_at, 0

    def __call__(self, x):
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError("the scoring service is down\ntraceback follows")
        return self.cosine(x)


def test_a_failing_objective_keeps_what_was_scored(make_problem, tiny_data, tmp_path):
    target = tiny_data.targets[0]  # the default objective of seed 0
    failing = FailsOnCall(target, fail_at=3)
    problem = make_problem(lambda seed: Objective(failing, "t"))
    with pytest.raises(ObjectiveError) as err:
        search(problem, "random", 24, tmp_path)
    assert str(err.value) == "objective t raised RuntimeError: the scoring service is down"
    assert failing.calls == 3
    kept = records_of(tmp_path)
    assert [r["index"] for r in kept] == list(range(8)) and [r["step"] for r in kept] == [0] * 4 + [1] * 4
    history = read_history(search_ledger(tmp_path), "random", 0, problem.dim)
    assert len(history) == 8 and history.n_steps == 2
    assert history.x.tolist() == [r["embedding"] for r in kept]

    # Fixed, the search continues from there and ends as an uninterrupted one.
    fixed = make_problem()
    search(fixed, "random", 24, tmp_path)
    records = records_of(tmp_path)
    assert records[:8] == kept
    search(fixed, "random", 24, tmp_path / "uninterrupted")
    assert essentials(records) == essentials(records_of(tmp_path / "uninterrupted"))


def test_an_objective_failing_at_once_writes_nothing(make_problem, tiny_data, tmp_path):
    problem = make_problem(lambda seed: Objective(FailsOnCall(tiny_data.targets[0], fail_at=1), "t"))
    with pytest.raises(ObjectiveError):
        search(problem, "random", 8, tmp_path)
    assert records_of(tmp_path) == []


def test_an_objective_timing_out_keeps_what_was_scored(make_problem, tiny_data, tmp_path):
    import time

    calls = []

    def slow_on_second(x):
        calls.append(1)
        if len(calls) == 2:
            time.sleep(3)
        return cosine_to(tiny_data.targets[0])(x)

    problem = make_problem(lambda seed: Objective(slow_on_second, "t", timeout=0.3))
    began = time.perf_counter()
    with pytest.raises(ObjectiveError, match="no answer within 0.3 s"):
        search(problem, "random", 12, tmp_path)
    assert time.perf_counter() - began < 2.5
    assert [r["step"] for r in records_of(tmp_path)] == [0] * 4


# ---------------------------------------------------------------- the problem of a real (tiny) run


def row_number(text: str) -> int:
    assert text.startswith("text number ")
    return int(text.removeprefix("text number "))


def test_a_target_search_on_a_run(trained_run, tmp_path):
    run, _ = trained_run
    problem = build_problem(run, "target")
    outcome = search(problem, "prior", 10, tmp_path, seed=1)
    records = records_of(tmp_path)
    assert len(records) == 10 and {r["objective"] for r in records} == {"target[1]"}
    x = torch.tensor([r["embedding"] for r in records])
    assert [r["score"] for r in records] == pytest.approx(cosine_to(problem.targets[1])(x).tolist(), abs=1e-12)
    assert all(isinstance(t, str) for r in records for _, t in r["nearest_texts"])
    assert outcome.best is None or outcome.best < 1.0


def test_a_custom_objective_on_a_run(trained_run, tmp_path):
    run, data = trained_run
    module = tmp_path / "objective.py"
    module.write_text("SEEN = []\n\ndef first(x, texts=None):\n    SEEN.append(texts)\n    return x[:, 0]\n")
    spec = f"{module}:first"
    problem = build_problem(run, spec, timeout=10.0)
    assert problem.objective_name == spec and problem.targets.numel() == 0
    assert problem.pool.shape == (100, 8) and len(problem.pool_texts) == 100  # every held-out row
    objective = problem.objective(0)
    assert objective.name == spec and objective.timeout == 10.0 and objective.takes_texts

    # The objective sees the texts of the pool rows it scores.
    fn = objective.fn
    search(problem, "random", 8, tmp_path / "out")
    texts = fn.__globals__["SEEN"]
    records = records_of(tmp_path / "out")
    assert texts[0] == [problem.pool_texts[r["pool_row"]] for r in records[:4]]
    for r, text in zip(records, texts[0] + texts[1]):
        assert r["embedding"] == pytest.approx(data[row_number(text)].tolist(), abs=1e-4)
        assert r["score"] == r["embedding"][0]


def test_a_bad_objective_spec_on_a_run(trained_run):
    run, _ = trained_run
    with pytest.raises(ObjectiveError, match="'no_colon'"):
        build_problem(run, "no_colon")
