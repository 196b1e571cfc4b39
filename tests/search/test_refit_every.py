"""`refit_every`: the GP's hyperparameters fitted every k steps and reused between; a search so made resumes and is
asked/told exactly as one made in one go."""
import pytest
import torch

from scaleflow.search.ask_tell import Search
from scaleflow.search.gp import fit_gp, gp_hyperparameters
from scaleflow.search.loop import run_search, search_ledger

from scaleflow.search.methods import build_method

SAME = ("step", "index", "score", "embedding", "valid", "novel", "best_so_far")


def essentials(folder):
    return [{k: r[k] for k in SAME} for r in search_ledger(folder).records()]


def test_given_hyperparameters_reproduce_the_fit_on_the_same_data():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(30, 5, generator=g), torch.randn(30, generator=g, dtype=torch.float64)
    fitted = fit_gp(x, y)
    again = fit_gp(x, y, hyperparameters=gp_hyperparameters(fitted))
    probe = torch.randn(7, 5, generator=g, dtype=torch.float64)
    a, b = (s.model.posterior(probe) for s in (fitted, again))
    assert torch.allclose(a.mean, b.mean, atol=1e-10) and torch.allclose(a.variance, b.variance, atol=1e-10)
    # On more data, fixed hyperparameters condition without fitting: the noise stays the one given.
    more = fit_gp(torch.cat([x, x[:5] + 0.1]), torch.cat([y, y[:5]]), hyperparameters=gp_hyperparameters(fitted))
    assert torch.equal(more.model.likelihood.noise, fitted.model.likelihood.noise)


@pytest.mark.parametrize("method", ["guided", "prior-filtered"])
def test_a_search_refitting_every_3_steps_resumes_exactly(problem, tmp_path, method):
    once, twice = tmp_path / "once", tmp_path / "twice"
    run_search(problem, build_method(method, {"refit_every": 3}), 48, 8, 0, once)
    run_search(problem, build_method(method, {"refit_every": 3}), 24, 8, 0, twice)
    run_search(problem, build_method(method, {"refit_every": 3}), 48, 8, 0, twice)  # a new process: no cache
    assert essentials(once) == essentials(twice)
    every = tmp_path / "every"
    run_search(problem, build_method(method, {}), 48, 8, 0, every)
    later = [r for r in essentials(every) if r["step"] >= 3]  # steps 2, 3 reuse step 1's fit: other proposals
    assert [r["embedding"] for r in later] != [r["embedding"] for r in essentials(once) if r["step"] >= 3]


def test_ask_tell_with_refit_every_matches_the_loop(problem, tmp_path):
    run_search(problem, build_method("guided", {"refit_every": 2}), 32, 8, 0, tmp_path / "loop")
    objective = problem.objective(0)
    for _ in range(4):
        search = Search(problem, build_method("guided", {"refit_every": 2}), tmp_path / "asked", objective_name="t")
        batch = search.ask(8)
        scores = objective(torch.tensor([c["embedding"] for c in batch], dtype=torch.float32), None)
        search.tell({c["id"]: float(v) for c, v in zip(batch, scores)})
    assert essentials(tmp_path / "loop") == essentials(tmp_path / "asked")
