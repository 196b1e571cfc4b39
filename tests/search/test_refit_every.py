"""`refit_every`: the GP's hyperparameters fitted every k steps and reused between; `gp_warm_start`: each fit
starting from the one before. A search so made resumes and is asked/told exactly as one made in one go."""
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


def test_a_warm_start_reaches_the_cold_fit():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(40, 6, generator=g)
    y = (x[:, 0] - 0.5 * x[:, 1] ** 2).double()
    cold = fit_gp(x, y)
    earlier = gp_hyperparameters(fit_gp(x[:32], y[:32]))
    warm = fit_gp(x, y, start=earlier)
    probe = torch.randn(9, 6, generator=g, dtype=torch.float64)
    a, b = (s.model.posterior(probe).mean.squeeze() for s in (cold, warm))
    assert torch.allclose(a, b, atol=0.05 * float(y.std()))
    # Started at its own optimum, a fit stays there.
    again = fit_gp(x, y, start=gp_hyperparameters(cold))
    lengths = [s.model.covar_module.base_kernel.lengthscale if hasattr(s.model.covar_module, "base_kernel")
               else s.model.covar_module.lengthscale for s in (cold, again)]
    assert torch.allclose(lengths[0], lengths[1], rtol=0.02)


def test_a_warm_fit_starts_where_it_is_told(monkeypatch):
    """With the optimizer stubbed out, the model holds exactly the start values (else the priors' defaults)."""
    import botorch.fit

    g = torch.Generator().manual_seed(2)
    x = torch.randn(20, 3, generator=g)
    y = x[:, 0].double()
    start = gp_hyperparameters(fit_gp(x, y))
    monkeypatch.setattr(botorch.fit, "fit_gpytorch_mll", lambda mll, **kwargs: mll)
    held, unfit = gp_hyperparameters(fit_gp(x, y, start=start)), gp_hyperparameters(fit_gp(x, y))
    for part, state in start.items():
        for name, value in state.items():
            assert torch.equal(held[part][name], value), name
    assert any(not torch.equal(unfit[p][n], v) for p, st in start.items() for n, v in st.items())


@pytest.mark.parametrize("method, settings, budget", [("guided", {"refit_every": 3, "gp_warm_start": False}, 48),
                                                      ("prior-filtered", {"refit_every": 2, "gp_warm_start": True}, 48),
                                                      ("guided", {"gp_warm_start": True}, 32)])
def test_a_search_refitting_on_its_schedule_resumes_exactly(problem, tmp_path, method, settings, budget):
    once, twice = tmp_path / "once", tmp_path / "twice"
    run_search(problem, build_method(method, settings), budget, 8, 0, once)
    run_search(problem, build_method(method, settings), budget // 2, 8, 0, twice)
    run_search(problem, build_method(method, settings), budget, 8, 0, twice)  # a new process: no cache
    assert essentials(once) == essentials(twice)
    # The setting under test changes the proposals: a warm search's from its cold twin (from step 2 on), a cold
    # refit_every 3's from fits at every step (from step 3 on: steps 2 and 3 reuse step 1's fit).
    warm = settings.get("gp_warm_start", True)
    other = {**settings, "gp_warm_start": False} if warm else {"gp_warm_start": False}
    every = tmp_path / "every"
    run_search(problem, build_method(method, other), budget, 8, 0, every)
    first = 2 if warm else 3
    later = [r for r in essentials(every) if r["step"] >= first]
    assert [r["embedding"] for r in later] != [r["embedding"] for r in essentials(once) if r["step"] >= first]


@pytest.mark.parametrize("settings", [{"refit_every": 2, "gp_warm_start": False}, {"refit_every": 2, "gp_warm_start": True}])
def test_ask_tell_with_refit_every_matches_the_loop(problem, tmp_path, settings):
    run_search(problem, build_method("guided", settings), 32, 8, 0, tmp_path / "loop")
    objective = problem.objective(0)
    for _ in range(4):
        search = Search(problem, build_method("guided", settings), tmp_path / "asked", objective_name="t")
        batch = search.ask(8)
        scores = objective(torch.tensor([c["embedding"] for c in batch], dtype=torch.float32), None)
        search.tell({c["id"]: float(v) for c, v in zip(batch, scores)})
    assert essentials(tmp_path / "loop") == essentials(tmp_path / "asked")
