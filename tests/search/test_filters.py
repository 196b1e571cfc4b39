"""The free filter (judge before scoring, keep what counts) wherever it is: the `prior-filtered` control, the
guided method's ranking by the chosen acquisition, and the raw-space baselines' redraws (bo, turbo, cmaes,
latent-bo), each deterministic per (seed, step) and exact on resume."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from scaleflow.sampling.sample import generate
from scaleflow.search.gp import acquisition_values, fit_gp
from scaleflow.search.loop import run_search
from scaleflow.search.methods import METHODS
from scaleflow.search.methods import prior as prior_module
from scaleflow.search.methods.base import History, noise_seed
from scaleflow.search.methods.common import counted_first, diverse_counted_first, greedy_counted
from scaleflow.search.methods.prior import FilteredPrior, GuidedPrior, filter_by_acquisition
from scaleflow.search.methods.real_rows import random_rows
from scaleflow.search.loop import search_ledger

DIM = 12  # the tiny problem's (tests/search/conftest.py)


class CoinJudge:
    """The tiny problem's judge, except that a candidate counts on a fixed coin: a hash of its coordinates
    counts 40% of all points, wherever a method searches (the real judge rejects nearly
    everything an untrained prior or a box optimizer proposes here, which would test nothing)."""

    def __init__(self, judge) -> None:
        self.judge = judge
        self.weights = torch.randn(DIM, generator=torch.Generator().manual_seed(7), dtype=torch.float64)

    def __getattr__(self, name):
        return getattr(self.judge, name)

    def __call__(self, x: torch.Tensor):
        verdicts = self.judge(x)
        coin = torch.frac((x.double() @ self.weights).abs() * 1e4) < 0.4
        return dataclasses.replace(verdicts, valid=coin, novel=torch.ones_like(coin))


@pytest.fixture(scope="module")
def coin_problem(problem):
    return dataclasses.replace(problem, judge=CoinJudge(problem.judge))


def initial_history(problem, n: int = 8, seed: int = 0) -> History:
    history = History.empty(DIM)
    proposal = random_rows(problem, history, n, seed, 0)
    history.extend(proposal.x, problem.objective(seed)(proposal.x), problem.judge(proposal.x).counts,
                   proposal.pool_rows, 0, "initial")
    return history


# Small settings where the defaults are sized for D = 384.
RAW = {
    "bo": dict(raw_samples=64, num_restarts=2, maxiter=50),
    "turbo": dict(n_candidates=256),
    "cmaes": {},
    "latent-bo": dict(n_fresh=128, n_local=128),
}


# ================================================================ the pieces


def test_counted_first():
    counts = torch.tensor([False, True, True, False, True])
    values = torch.tensor([9.0, 1.0, 3.0, 8.0, 3.0], dtype=torch.float64)
    assert counted_first(counts, values, 3).tolist() == [2, 4, 1]  # counted by value; a tie keeps the order
    assert counted_first(counts, values, 5).tolist() == [2, 4, 1, 0, 3]  # then the others, by value
    inf = torch.tensor([float("-inf"), 0.0], dtype=torch.float64)
    assert counted_first(torch.tensor([True, False]), inf, 1).tolist() == [0]  # -inf that counts beats 0 that does not


def test_diverse_counted_first_spreads_the_batch_over_counted_candidates():
    # Candidates 0-2 point the same way, 3 is orthogonal to them, 4 opposite; 5 does not count.
    x = torch.tensor([[1.0, 0.0], [1.0, 0.05], [0.99, -0.05], [0.0, 1.0], [-1.0, 0.0], [0.7, 0.7]])
    counts = torch.tensor([True, True, True, True, True, False])
    values = torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0, 9.0], dtype=torch.float64)
    # Without a spread: best first (the uncounted 5 last).
    assert diverse_counted_first(counts, values, x, 3, 1.0).tolist() == [0, 1, 2]
    # With one: 1 and 2 are near copies of 0, so 3 and 4 come next; the top-up follows counted_first's order.
    assert diverse_counted_first(counts, values, x, 3, 0.5).tolist() == [0, 3, 4]
    assert diverse_counted_first(counts, values, x, 5, 0.5).tolist() == [0, 3, 4, 1, 2]
    # A counted near copy still goes before a diverse candidate that does not count.
    assert diverse_counted_first(counts, values, x, 6, 0.5).tolist() == [0, 3, 4, 1, 2, 5]
    # The chosen ones are pairwise below the threshold where that is possible.
    chosen = diverse_counted_first(counts, values, x, 3, 0.5)
    unit = torch.nn.functional.normalize(x[chosen], dim=1)
    similarity = unit @ unit.T
    assert float((similarity - torch.eye(3)).max()) < 0.5


def test_the_free_filter_knows_every_rule_set_before_scoring(coin_problem):
    """With --min-log-density (or --min-roundtrip) set, what the filters keep counts by those rules too: the
    filter scores only candidates the batch's records will count."""
    x = coin_problem.pool[:40]
    density = coin_problem.log_density(x)
    bound = float(density.median())
    strict = dataclasses.replace(coin_problem, min_log_density=bound)
    assert torch.equal(strict.free_counts(x), coin_problem.judge(x).counts & (density >= bound))
    assert torch.equal(coin_problem.free_counts(x), coin_problem.judge(x).counts)  # no rule set: the judge's
    # The draws prior-filtered makes at step 1 (the same noise): a bound that 5 of the judge's counted ones meet.
    draws = coin_problem.to_original(generate(coin_problem.run.velocity, 32, DIM, "euler", 4, noise_seed(0, 1),
                                              batch_size=32).x).float()
    counted_density = coin_problem.log_density(draws)[coin_problem.judge(draws).counts]
    assert len(counted_density) > 5
    strict = dataclasses.replace(coin_problem, min_log_density=float(counted_density.sort(descending=True).values[4]))
    history = initial_history(strict)
    proposal = FilteredPrior(steps=4, oversample=8).propose(strict, history, 4, 0, 1)
    assert proposal.info["drawn_counted"] == 5
    assert bool(strict.free_counts(proposal.x).all())
    loose = FilteredPrior(steps=4, oversample=8).propose(coin_problem, history, 4, 0, 1)
    assert loose.info["drawn_counted"] == len(counted_density)


class PointValue:
    """A stand-in acquisition: the value of a point is `x[0]`, minus 10 for each pending point within 0.5."""

    def __init__(self) -> None:
        self.X_pending = None

    def set_X_pending(self, pending) -> None:
        self.X_pending = pending

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, 0, :]
        value = x[:, 0].clone()
        if self.X_pending is not None:
            near = (torch.cdist(x, self.X_pending) < 0.5).sum(1)
            value -= 10 * near
        return value


def test_greedy_counted_by_hand():
    choices = torch.tensor([[5.0, 0.0], [4.9, 0.0], [4.0, 3.0], [3.0, 6.0], [2.0, 9.0]], dtype=torch.float64)
    counted = torch.tensor([False, True, True, True, True])
    seen = []

    def counts_of(rows):
        seen.append(rows.tolist())
        return counted[rows]

    acquisition = PointValue()
    rows, info = greedy_counted(acquisition, choices, 2, counts_of, look=2)
    # Round 1: top 2 are rows 0 (does not count) and 1: take 1. Round 2: row 0 is within 0.5 of the pending row
    # 1 (value 5 - 10), so the top 2 are rows 2 and 3: take 2.
    assert rows.tolist() == [1, 2]
    assert seen == [[0, 1], [2, 3]]  # each choice judged once at most
    assert info == {"drawn": 4, "drawn_counted": 3, "chosen_counted": 2, "acquisition": 4.9}
    assert acquisition.X_pending is None  # restored
    # look = 1 is plain greedy: the best each round, counted or not.
    rows, _ = greedy_counted(PointValue(), choices, 2, counts_of, look=1)
    assert rows.tolist() == [0, 2]


# ================================================================ prior-filtered and guided


def test_prior_filtered_scores_counted_draws_ranked_by_the_acquisition(coin_problem):
    history = initial_history(coin_problem)
    n, seed, step = 4, 0, 1
    surrogate = fit_gp(history.x, history.y)
    # Its draws: the same noise guided starts from, unguided.
    noise = noise_seed(seed, step)
    draws = coin_problem.to_original(generate(coin_problem.run.velocity, 4 * n, DIM, "euler", 20, noise,
                                              batch_size=4 * n).x).float()
    counts = coin_problem.judge(draws).counts
    assert 4 <= int(counts.sum()) <= 12
    chosen_by_acquisition = {}
    for acquisition in ("ucb", "mean", "logei", "thompson"):
        proposal = FilteredPrior(acquisition=acquisition).propose(coin_problem, history, n, seed, step)
        values = acquisition_values(surrogate, acquisition, draws, noise_seed(seed, step))
        by_hand = counted_first(counts, values, n)
        assert torch.equal(proposal.x, draws[by_hand]), acquisition
        assert coin_problem.judge(proposal.x).counts.all()
        assert proposal.info["drawn"] == 4 * n and proposal.info["chosen_counted"] == n
        chosen_by_acquisition[acquisition] = tuple(by_hand.tolist())
    assert len(set(chosen_by_acquisition.values())) > 1  # the acquisition decides which counted draws are scored
    # Without oversampling it is the unguided prior's first n draws (the same noise), in acquisition order.
    plain = FilteredPrior(oversample=1).propose(coin_problem, history, n, seed, step)
    prior = METHODS["prior"]().propose(coin_problem, history, n, seed, step)
    assert sorted(map(tuple, plain.x.tolist())) == sorted(map(tuple, prior.x.tolist()))


def test_prior_filtered_is_registered_and_in_method_all():
    assert "prior-filtered" in METHODS and METHODS["prior-filtered"]().name == "prior-filtered"


@pytest.mark.parametrize("acquisition", ["mean", "logei"])
def test_guided_filter_ranks_by_the_chosen_acquisition(coin_problem, monkeypatch, acquisition):
    history = initial_history(coin_problem)
    calls = []
    original = prior_module.filter_by_acquisition

    def spy(problem, surrogate, name, x, n, seed, max_cosine):
        calls.append(name)
        out = original(problem, surrogate, name, x, n, seed, max_cosine)
        values = acquisition_values(surrogate, name, x, seed)
        assert torch.equal(out[0], x[diverse_counted_first(problem.judge(x).counts, values, x, n, max_cosine)])
        return out

    monkeypatch.setattr(prior_module, "filter_by_acquisition", spy)
    method = GuidedPrior(acquisition=acquisition, guidance=dataclasses.replace(GuidedPrior().guidance, strength=50.0),
                         steps=4)
    proposal = method.propose(coin_problem, history, 4, 0, 1)
    assert calls == [acquisition]
    assert coin_problem.judge(proposal.x).counts.all()


def test_filter_by_acquisition_reports_what_it_did(coin_problem):
    history = initial_history(coin_problem)
    surrogate = fit_gp(history.x, history.y)
    x = coin_problem.pool[:20]
    counts = coin_problem.judge(x).counts
    chosen, info = filter_by_acquisition(coin_problem, surrogate, "ucb", x, 30, 0)  # more asked than drawn: all
    assert len(chosen) == 20 and info["drawn"] == 20 and info["drawn_counted"] == int(counts.sum())
    assert coin_problem.judge(chosen[:int(counts.sum())]).counts.all()
    assert not coin_problem.judge(chosen[int(counts.sum()):]).counts.any()


# ================================================================ raw-space redraws


@pytest.mark.parametrize("name", list(RAW))
def test_raw_space_redraws_score_only_counted_candidates(coin_problem, name):
    # cmaes redraws each rejected solution alone (up to oversample - 1 times): with 40% counting, 8 draws a
    # slot leave one rejected in ~60 slots; the others choose among oversample * n draws at once.
    oversample = 8 if name == "cmaes" else 4
    history = initial_history(coin_problem)
    filtered = METHODS[name](oversample=oversample, **RAW[name]).propose(coin_problem, history, 4, 0, 1)
    again = METHODS[name](oversample=oversample, **RAW[name]).propose(coin_problem, history, 4, 0, 1)
    plain = METHODS[name](oversample=1, **RAW[name]).propose(coin_problem, history, 4, 0, 1)
    assert torch.equal(filtered.x, again.x) and filtered.info == again.info  # deterministic per (seed, step)
    assert coin_problem.judge(filtered.x).counts.all(), filtered.info
    assert filtered.info["chosen_counted"] == 4 and 4 < filtered.info["drawn"] <= oversample * 4
    assert int(coin_problem.judge(plain.x).counts.sum()) < 4  # unfiltered, the coin rejects some
    assert "drawn" not in plain.info


def test_bo_keeps_its_best_batch_where_it_counts(coin_problem):
    history = initial_history(coin_problem)
    options = dict(RAW["bo"], num_restarts=4)  # as many restarts as the filter pools: the same optimization
    filtered = METHODS["bo"](**options).propose(coin_problem, history, 4, 0, 1)
    plain = METHODS["bo"](oversample=1, **options).propose(coin_problem, history, 4, 0, 1)
    kept = plain.x[coin_problem.judge(plain.x).counts]
    assert 0 < len(kept) == filtered.info["best_batch_counted"]
    assert torch.allclose(filtered.x[:len(kept)], kept)  # the joint batch's counted points stay, in front


def test_cmaes_redraws_resume_exactly(coin_problem, tmp_path):
    """Redrawn solutions are told, rejected ones are not: the replay of a resumed search redraws exactly what
    the first run redrew (and records made with another `oversample` would not replay)."""
    method = METHODS["cmaes"]
    whole = run_search(coin_problem, method(), 28, 4, seed=2, out=tmp_path / "whole")
    run_search(coin_problem, method(), 12, 4, seed=2, out=tmp_path / "resumed")
    resumed = run_search(coin_problem, method(), 28, 4, seed=2, out=tmp_path / "resumed")
    assert torch.equal(whole.history.x, resumed.history.x) and torch.equal(whole.history.y, resumed.history.y)
    records = search_ledger(tmp_path / "whole").records()
    generated = [r for r in records if r["proposed_by"] == "cmaes"]
    batches = generated[::4]
    assert sum(r["info"]["drawn"] for r in batches) > len(generated)  # some draws were rejected and redrawn
    assert sum(r["valid"] and r["novel"] for r in generated) == sum(r["info"]["chosen_counted"] for r in batches)
    assert sum(r["valid"] and r["novel"] for r in generated) >= 0.8 * len(generated)
    with pytest.raises(RuntimeError, match="replay diverged"):
        method(oversample=1).propose(coin_problem, whole.history, 4, 2, whole.history.n_steps)


class _WideProblem:
    """A 384-D stand-in (identity normalization, a coin judge counting ~40%): the dimension where cma's
    default step-size rule (TPA) would refuse the redraws' second `ask` of a generation."""

    dim = 384
    run = type("Run", (), {"standardizer": type("S", (), {"unscaled": []})()})()

    def __init__(self) -> None:
        self.weights = torch.randn(self.dim, generator=torch.Generator().manual_seed(3), dtype=torch.float64)

    def to_normalized(self, x):
        return x.double()

    def to_original(self, z):
        return z.double()

    def judge(self, x):
        coin = torch.frac((x.double() @ self.weights).abs() * 1e4) < 0.4
        return type("V", (), {"counts": coin})()

    def free_counts(self, x):  # no log-density or round-trip rule: the judge's verdict
        return self.judge(x).counts


def test_cmaes_redraws_in_high_dimension_after_a_tell():
    problem, n = _WideProblem(), 8
    history = History.empty(problem.dim)
    x0 = torch.randn(n, problem.dim, generator=torch.Generator().manual_seed(0))
    history.extend(x0, -x0.square().sum(1).double(), torch.ones(n, dtype=torch.bool), [None] * n, 0, "initial")
    method = METHODS["cmaes"](oversample=4)
    for step in (1, 2, 3):  # each call replays the earlier generations (ask, tell), then redraws in a new one
        proposal = method.propose(problem, history, n, 0, step)
        assert proposal.info["chosen_counted"] >= 6 and proposal.info["drawn"] > n
        history.extend(proposal.x, -proposal.x.square().sum(1).double(), problem.judge(proposal.x).counts,
                       [None] * n, step, "cmaes")
