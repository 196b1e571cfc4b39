"""The four black-box baselines (raw BO, TuRBO, CMA-ES, latent BO) on a tiny hand-built problem: shapes,
determinism, resume equivalence through the search loop, progress on an easy objective, and TuRBO's
and CMA-ES's state rebuilt from the history."""
from __future__ import annotations

import json
import math
import types
from dataclasses import asdict

import pytest
import torch

from scaleflow.data.normalization import Standardizer
from scaleflow.flows.registry import create_flow
from scaleflow.nets.registry import create_model
from scaleflow.sampling.velocity import VelocityField
from scaleflow.search.judge import CandidateJudge
from scaleflow.search.loop import run_search
from scaleflow.search.methods.base import METHODS, History
from scaleflow.search.methods.cmaes import CMAES
from scaleflow.search.methods.latent_bo import LatentBO
from scaleflow.search.methods.raw_bo import RawBO
from scaleflow.search.methods.real_rows import random_rows
from scaleflow.search.methods.turbo import TuRBO, TurboState, replay_state
from scaleflow.search.objectives import Objective, cosine_to
from scaleflow.search.problem import SearchProblem
from scaleflow.search.loop import search_ledger

DIM = 16


@pytest.fixture(scope="module")
def problem() -> SearchProblem:
    """D = 16: 300 reference and 100 pool rows on the unit sphere, an untrained prior, a cosine objective."""
    g = torch.Generator().manual_seed(0)
    rows = torch.nn.functional.normalize(torch.randn(401, DIM, generator=g), dim=1)
    reference, pool, target = rows[:300], rows[300:400], rows[400]
    torch.manual_seed(0)
    net = create_model("mlp", input_dim=DIM, hidden_dim=32, num_layers=2, time_embed_dim=16).eval()
    torch.nn.init.normal_(net.net[-1].weight, std=0.2)  # a field that moves points (the untrained one barely does)
    run = types.SimpleNamespace(velocity=VelocityField(net, create_flow("icfm")),
                                standardizer=Standardizer.fit(reference))
    return SearchProblem(run, reference, pool, None, None, CandidateJudge(reference, pool), "t",
                         lambda seed: Objective(cosine_to(target), "t"))


# Small settings where the defaults are sized for D = 384 (the tests check behaviour, not the defaults' cost).
FACTORIES = {
    "bo": lambda: RawBO(raw_samples=64, num_restarts=2, maxiter=50),
    "turbo": lambda: TuRBO(n_candidates=256),
    "cmaes": lambda: CMAES(),
    "latent-bo": lambda: LatentBO(n_fresh=128, n_local=128),
}


def initial_history(problem: SearchProblem, n: int = 8, seed: int = 0) -> History:
    history = History.empty(DIM)
    proposal = random_rows(problem, history, n, seed, 0)
    history.extend(proposal.x, problem.objective(seed)(proposal.x), torch.ones(n, dtype=torch.bool),
                   proposal.pool_rows, 0, "initial")
    return history


def score(problem: SearchProblem, history: History, proposal, step: int, method: str, seed: int = 0) -> None:
    history.extend(proposal.x, problem.objective(seed)(proposal.x), problem.judge(proposal.x).counts,
                   proposal.pool_rows, step, method)


def test_registered():
    assert {"bo", "turbo", "cmaes", "latent-bo"} <= set(METHODS)
    for name, factory in FACTORIES.items():
        assert factory().name == name


@pytest.mark.parametrize("name", list(FACTORIES))
def test_shape_dtype_and_determinism(problem, name):
    history = initial_history(problem)
    if name == "cmaes":  # (cheap) a batch of its own to replay
        score(problem, history, FACTORIES[name]().propose(problem, history, 4, seed=0, step=1), 1, name)
    step = history.n_steps
    first = FACTORIES[name]().propose(problem, history, 4, seed=0, step=step)
    again = FACTORIES[name]().propose(problem, history, 4, seed=0, step=step)
    assert first.x.shape == (4, DIM) and first.x.dtype == torch.float32
    assert bool(torch.isfinite(first.x).all())
    assert first.pool_rows == [None] * 4
    json.dumps(first.info)
    assert torch.equal(first.x, again.x)
    assert first.info == again.info


def _batches(folder) -> list[dict]:
    records = search_ledger(folder).records()
    return sorted(records, key=lambda r: r["index"])


@pytest.mark.parametrize("name", list(FACTORIES))
def test_resume_equals_uninterrupted(problem, name, tmp_path):
    # Initial design (4), step 1; stop; a new method object resumes: step 2 replays step 1's batch.
    budget, batch = 12, 4
    whole = run_search(problem, FACTORIES[name](), budget, batch, seed=3, out=tmp_path / "whole")
    run_search(problem, FACTORIES[name](), 8, batch, seed=3, out=tmp_path / "resumed")
    resumed = run_search(problem, FACTORIES[name](), budget, batch, seed=3, out=tmp_path / "resumed")
    assert len(whole.seconds) == 2 and len(resumed.seconds) == 1  # the resumed call proposed only step 2
    a, b = _batches(tmp_path / "whole"), _batches(tmp_path / "resumed")
    assert [r["index"] for r in a] == [r["index"] for r in b] == list(range(budget))
    for ra, rb in zip(a, b):
        assert (ra["step"], ra["proposed_by"]) == (rb["step"], rb["proposed_by"])
        assert ra["score"] == rb["score"]
        assert ra["embedding"] == rb["embedding"]
    assert torch.equal(whole.history.y, resumed.history.y)


def test_cmaes_improves_on_an_easy_objective(problem, tmp_path):
    # Measured (seeds 0-2, 10 batches of 8 after 8 initial rows): 0.42 -> 0.86, 0.26 -> 0.84, 0.57 -> 0.94.
    for seed in (0, 1):
        outcome = run_search(problem, CMAES(), 88, 8, seed=seed, out=tmp_path)
        initial = float(outcome.history.y[:8].max())
        assert outcome.best is not None and outcome.best > initial + 0.15, (seed, initial, outcome.best)
        assert outcome.best > 0.75


def test_turbo_improves_and_its_replayed_state_is_the_tracked_one(problem):
    # The state tracked batch by batch, as a stateful implementation would, equals the one each call
    # rebuilds from the history. Measured (seed 0, 10 batches of 8): 0.42 -> 0.87.
    method, n, seed = TuRBO(n_candidates=256), 8, 0
    history = initial_history(problem, n, seed)
    tracked = TurboState(DIM, n)
    tracked.observe(history.y)
    for step in range(1, 11):
        assert method.state(problem, history, n) == tracked
        proposal = method.propose(problem, history, n, seed, step)
        assert proposal.info["length"] == tracked.length
        score(problem, history, proposal, step, method.name, seed)
        tracked.update(history.y[-n:])
    assert method.state(problem, history, n) == tracked
    initial = float(history.y[:n].max())
    assert float(history.y.max()) > initial + 0.15 and float(history.y.max()) > 0.75


def test_turbo_state_rule_and_restarts():
    """Replaying a long synthetic score sequence: the tutorial's rule step by step, shrinking to a restart."""
    dim, n = DIM, 8
    state = TurboState(dim, n)
    assert state.failure_tolerance == math.ceil(max(4 / n, dim / n)) == 2
    history, tracked = History.empty(dim), TurboState(dim, n)
    history.extend(torch.zeros(n, dim), torch.linspace(0, 1, n, dtype=torch.float64), torch.ones(n, dtype=torch.bool),
                   [None] * n, 0, "initial")
    tracked.observe(history.y[-n:])
    lengths = []
    # 3 successes (length doubles), then only failures (halves every 2): 0.8 -> 1.6 -> ... < 0.5**7 -> restart.
    values = [1.5, 2.0, 3.0] + [0.0] * 20
    for step, top in enumerate(values, 1):
        y = torch.full((n,), top - 1.0, dtype=torch.float64)
        y[0] = top
        history.extend(torch.zeros(n, dim), y, torch.ones(n, dtype=torch.bool), [None] * n, step, "turbo")
        tracked.update(y)
        lengths.append(tracked.length)
        assert replay_state(history, "turbo", dim, n) == tracked
    assert lengths[2] == 1.6  # three successes: doubled (capped at 1.6)
    assert lengths[4] == 0.8 and lengths[6] == 0.4  # two failures: halved
    assert tracked.restarts == 1 and tracked.best_value == 3.0
    # 1.6 halves 8 times in 16 failures (1.6 / 2**8 < 0.5**7): restart at 0.8, then 4 more failures: 0.2.
    assert tracked.length == 0.2 and asdict(tracked) == asdict(replay_state(history, "turbo", dim, n))
    # A near tie (within 1e-3 |best|) is a failure.
    state = TurboState(dim, n, best_value=10.0)
    state.update(torch.tensor([10.005], dtype=torch.float64))
    assert state.failure_counter == 1 and state.success_counter == 0


def test_cmaes_replays_short_batches_and_catches_divergence(problem):
    method, seed = CMAES(), 0
    history = initial_history(problem, 8, seed)
    score(problem, history, method.propose(problem, history, 8, seed, 1), 1, "cmaes", seed)
    full = method.propose(problem, history, 8, seed, 2)
    short = method.propose(problem, history, 3, seed, 2)
    assert torch.equal(short.x, full.x[:3])  # a batch cut by the budget is the head of a full ask
    # A budget raised later replays that short batch (3 < mu = 4: not told) and asks again.
    with_short = History(history.x.clone(), history.y.clone(), history.counts.clone(), list(history.pool_rows),
                         list(history.steps), list(history.methods))
    score(problem, with_short, short, 2, "cmaes", seed)
    after = method.propose(problem, with_short, 8, seed, 3)
    assert after.x.shape == (8, DIM) and not torch.equal(after.x, full.x)
    # A short batch of mu or more is told.
    score(problem, history, method.propose(problem, history, 5, seed, 2), 2, "cmaes", seed)
    assert method.propose(problem, history, 8, seed, 3).info["generation"] == 2
    # Records that are not what cma asks (another sigma0 here) stop the replay with a clear error.
    with pytest.raises(RuntimeError, match="replay diverged"):
        CMAES(sigma0=0.3).propose(problem, history, 8, seed, 3)


def test_latent_bo_candidates_live_near_the_noise_shell(problem):
    method = LatentBO(n_fresh=64, n_local=64, top_k=4)
    history = initial_history(problem)
    z = method.encode(problem, history.x)
    choices = method.candidates(z, history.y, torch.Generator().manual_seed(0))
    assert choices.shape == (128, DIM)
    top = z[history.y.argsort(descending=True)[:4]]
    # Every local candidate is within a few local_scale * sqrt(D) of one of the top-4 noises.
    assert float(torch.cdist(choices[64:], top).min(1).values.max()) < 3 * 0.3 * math.sqrt(DIM)
    # The decoder inverts the encoder up to the solver's error (an untrained, smooth field).
    assert torch.allclose(method.decode(problem, z), history.x, atol=0.05)
