"""Reference priors against closed-form cases: fitted moments, log-densities against scipy, the exact
denoiser against a direct computation, bandwidth selection on a known case, and their samples."""
import math

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal

from scaleflow.reference import (ClosedFormPrior, GaussianMixturePrior, KernelDensityPrior, ReferenceFitError,
                                 fit_reference, sample_reference)
from scaleflow.reference.fit import fit_kde


def gaussian_data(n, dim=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    mean = torch.linspace(-1, 2, dim, dtype=torch.float64)
    root = torch.randn(dim, dim, generator=g, dtype=torch.float64) / math.sqrt(dim) + torch.eye(dim, dtype=torch.float64)
    covariance = root @ root.T
    rows = mean + torch.randn(n, dim, generator=g, dtype=torch.float64) @ root.T
    return rows, mean, covariance


def mixture(dim=4, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    weights = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)[:k]
    means = 3 * torch.randn(k, dim, generator=g, dtype=torch.float64)
    roots = torch.randn(k, dim, dim, generator=g, dtype=torch.float64) / 2 + torch.eye(dim, dtype=torch.float64)
    covariances = roots @ roots.transpose(1, 2)
    model = GaussianMixturePrior(dim, k)
    model.set_components(weights, means, covariances)
    return model, weights, means, covariances


def test_gaussian_fit_recovers_the_moments_and_samples_them():
    rows, mean, covariance = gaussian_data(20_000)
    fitted = fit_reference("gaussian", rows[:16_000], rows[16_000:])
    model = fitted.model
    assert fitted.chosen["covariance"] in ("ledoit-wolf", "oas") and fitted.chosen["shrinkage"] < 0.01
    assert torch.allclose(model.means[0], mean, atol=0.05)
    fitted_covariance = model.eigenvectors[0] @ torch.diag(model.eigenvalues[0]) @ model.eigenvectors[0].T
    assert torch.allclose(fitted_covariance, covariance, atol=0.1)
    draws = model.sample(20_000, torch.Generator().manual_seed(1)).double()
    assert torch.allclose(draws.mean(0), mean, atol=0.06)
    assert torch.allclose(torch.cov(draws.T), covariance, atol=0.15)
    # The same prior sampled through the ODE, as `scaleflow sample` does: the exact linear field, 20 Heun steps.
    ode = sample_reference(model, 5_000, seed=2).double()
    assert torch.allclose(ode.mean(0), mean, atol=0.1)
    assert torch.allclose(torch.cov(ode.T), covariance, atol=0.25)
    # Two candidate estimators, each recorded with its validation log-likelihood; the better one chosen.
    assert len(fitted.records) == 2
    assert fitted.val_log_likelihood == max(r["val_log_likelihood"] for r in fitted.records)


def test_mixture_log_density_matches_scipy():
    model, weights, means, covariances = mixture()
    x = torch.randn(50, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(3)) * 3
    expected = np.log(sum(w * multivariate_normal(m.numpy(), c.numpy()).pdf(x.numpy())
                          for w, m, c in zip(weights.numpy(), means, covariances)))
    assert np.allclose(model.log_prob(x).numpy(), expected, atol=1e-8)


@pytest.mark.parametrize("t", [0.0, 0.3, 0.8, 0.999])
def test_mixture_denoiser_is_the_posterior_mean(t):
    """E[x1 | x_t] computed directly: component weights from N(t mu, (1-t)^2 I + t^2 S) by scipy, and
    mu + t S C^-1 (x - t mu) by a linear solve."""
    model, weights, means, covariances = mixture()
    x = torch.randn(20, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(4)) * 2
    eye = torch.eye(4, dtype=torch.float64)
    parts, logs = [], []
    for w, m, s in zip(weights, means, covariances):
        c = (1 - t) ** 2 * eye + t ** 2 * s
        logs.append(math.log(w) + multivariate_normal((t * m).numpy(), c.numpy()).logpdf(x.numpy()))
        parts.append(m + (t * s @ torch.linalg.solve(c, (x - t * m).T)).T)
    posterior = torch.softmax(torch.tensor(np.stack(logs, 1)), dim=1)
    expected = (posterior.unsqueeze(-1) * torch.stack(parts, 1)).sum(1)
    got = model(x, torch.full((20,), t, dtype=torch.float64))
    assert torch.allclose(got, expected, atol=1e-6)


def test_gmm_fit_chooses_on_validation_and_separates_clusters():
    model, *_ = mixture(dim=3)
    rows = model.sample(3_000, torch.Generator().manual_seed(5)).double()
    fitted = fit_reference("gmm", rows[:2_500], rows[2_500:], seed=0)
    # Components first (at the starting regularization), then the regularization at the chosen count.
    assert [r["n_components"] for r in fitted.records[:4]] == [2, 4, 8, 16]
    _assert_regularization_line_search(fitted.records)
    assert fitted.val_log_likelihood == max(r["val_log_likelihood"] for r in fitted.records)
    # Three true clusters: the chosen mixture explains held-out rows about as well as the truth does.
    truth = float(model.log_prob(rows[2_500:]).mean())
    assert fitted.val_log_likelihood > truth - 0.1
    with pytest.raises(ReferenceFitError, match="reg_covar"):
        fit_reference("gmm", rows, rows, {"reg_covar": 0.0})


def _assert_regularization_line_search(records):
    """The regularization is searched from 0.1 at the chosen count: 0.01 first; 0.5 only when 0.01 scored worse."""
    start = max((r for r in records if r["reg_covar"] == 0.1), key=lambda r: r["val_log_likelihood"])
    searched = [r for r in records if r["reg_covar"] != 0.1]
    assert {r["n_components"] for r in searched} == {start["n_components"]}
    assert searched[0]["reg_covar"] == 0.01
    lower_helped = searched[0]["val_log_likelihood"] > start["val_log_likelihood"]
    assert [r["reg_covar"] for r in searched] == ([0.01] if lower_helped else [0.01, 0.5])


def test_gmm_regularization_line_search_goes_up_when_down_does_not_help():
    # 60 rows in 20-D: a covariance needs strong regularization, so 0.01 scores below 0.1 and 0.5 is tried.
    rows = torch.randn(120, 20, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    fitted = fit_reference("gmm", rows[:60], rows[60:], {"n_components": 2}, seed=0)
    assert [r["reg_covar"] for r in fitted.records] == [0.1, 0.01, 0.5]
    _assert_regularization_line_search(fitted.records)
    assert fitted.chosen["reg_covar"] == max(fitted.records, key=lambda r: r["val_log_likelihood"])["reg_covar"]
    # Where 0.01 helps (3-D rows from three clusters, plenty of them), 0.5 is never fitted.
    model, *_ = mixture(dim=3)
    many = model.sample(3_000, torch.Generator().manual_seed(5)).double()
    dense = fit_reference("gmm", many[:2_500], many[2_500:], {"n_components": 4}, seed=0)
    assert [r["reg_covar"] for r in dense.records] == [0.1, 0.01]


def test_gmm_fit_at_a_tiny_regularization_falls_back_to_float64():
    # A constant coordinate and a copied one: in float32, EM's covariances at reg 1e-8 are singular.
    rows = torch.randn(240, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    rows[:, 3], rows[:, 5] = 5.0, 2 * rows[:, 0]
    fitted = fit_reference("gmm", rows[:200], rows[200:], {"n_components": 2, "reg_covar": 1e-8}, seed=0)
    assert fitted.chosen == {"n_components": 2, "reg_covar": 1e-8} and math.isfinite(fitted.val_log_likelihood)


def test_kde_log_density_matches_scipy_and_its_denoiser_ends_where_it_should():
    rows = torch.randn(30, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    model = KernelDensityPrior(3, 30, bandwidth=0.4)
    model.rows.copy_(rows)
    x = torch.randn(10, 3, dtype=torch.float64)
    expected = np.log(np.mean([multivariate_normal(r.numpy(), 0.16 * np.eye(3)).pdf(x.numpy()) for r in rows], 0))
    assert np.allclose(model.log_prob(x).numpy(), expected, atol=1e-8)
    assert torch.allclose(model(x, torch.zeros(10)), rows.mean(0).expand(10, 3), atol=1e-9)  # t = 0: the mean
    assert torch.allclose(model(x, torch.ones(10)), x, atol=1e-9)  # t = 1: x is already data


def test_kde_bandwidth_selection_finds_the_known_bandwidth():
    """Validation rows drawn from a KDE of bandwidth 0.7 around far-apart rows: the likelihood's choice is 0.7
    to within the grid's step (~12%)."""
    g = torch.Generator().manual_seed(7)
    rows = 100 * torch.randn(5, 4, generator=g, dtype=torch.float64)
    val = rows[torch.randint(5, (4_000,), generator=g)] + 0.7 * torch.randn(4_000, 4, generator=g, dtype=torch.float64)
    fitted = fit_kde(rows, val)
    assert fitted.chosen["bandwidth"] == pytest.approx(0.7, rel=0.12)
    assert len(fitted.records) == 41
    assert fit_kde(rows, val, bandwidth=0.5).chosen == {"bandwidth": 0.5}


def test_closed_form_copies_without_smoothing_and_is_deterministic_with_it():
    rows = torch.randn(40, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(8)) * 3
    plain = ClosedFormPrior(6, 40, smoothing=0.0)
    plain.rows.copy_(rows)
    near = 0.99 * rows[:5] + 0.01 * torch.randn(5, 6, dtype=torch.float64)
    assert torch.allclose(plain(near, torch.full((5,), 0.99)), rows[:5], atol=1e-6)  # the rows themselves
    smooth = ClosedFormPrior(6, 40, smoothing=2.0, n_noise=4)
    smooth.rows.copy_(rows)
    x, t = torch.randn(8, 6, dtype=torch.float64), torch.full((8,), 0.9)
    first, again = smooth(x, t), smooth(x, t)
    assert torch.equal(first, again)  # perturbations seeded by the inputs
    assert not torch.allclose(first, plain(x, t), atol=1e-3)  # the smoothing moves the prediction
    samples = sample_reference(smooth, 64, seed=0)
    assert torch.equal(samples, sample_reference(smooth, 64, seed=0))
    # Barycenters of the rows: inside their bounding box, and not copies of any of them.
    assert (samples >= rows.min(0).values.float() - 1e-4).all() and (samples <= rows.max(0).values.float() + 1e-4).all()


def test_fit_reference_refuses_unknown_priors_and_options():
    rows = torch.randn(50, 3)
    with pytest.raises(ReferenceFitError, match="unknown reference prior 'vae'"):
        fit_reference("vae", rows, rows)
    with pytest.raises(ReferenceFitError, match="unknown option.*bandwidth.*for gaussian"):
        fit_reference("gaussian", rows, rows, {"bandwidth": 1.0})


def test_mixture_sampler_draws_each_component_by_its_weight():
    model, weights, means, covariances = mixture()
    draws = model.sample(30_000, torch.Generator().manual_seed(9)).double()
    densities = torch.stack([torch.as_tensor(multivariate_normal(m.numpy(), c.numpy()).logpdf(draws.numpy()))
                             for m, c in zip(means, covariances)], 1) + weights.log()
    component = densities.argmax(1)  # far-apart components: the most likely one is the one drawn from
    shares = torch.bincount(component, minlength=3).double() / len(draws)
    assert torch.allclose(shares, weights, atol=0.02)
    for k in range(3):
        assert torch.allclose(draws[component == k].mean(0), means[k], atol=0.1)


@pytest.mark.parametrize("t", [0.2, 0.6, 0.95])
def test_kde_denoiser_equals_the_isotropic_mixture_it_is(t):
    rows = torch.randn(12, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(10))
    kde = KernelDensityPrior(3, 12, bandwidth=0.3)
    kde.rows.copy_(rows)
    as_mixture = GaussianMixturePrior(3, 12)
    as_mixture.set_components(torch.ones(12), rows, 0.09 * torch.eye(3, dtype=torch.float64).expand(12, 3, 3))
    x = torch.randn(9, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(11))
    tt = torch.full((9,), t, dtype=torch.float64)
    assert torch.allclose(kde(x, tt), as_mixture(x, tt), atol=1e-9)
    assert torch.allclose(kde.log_prob(x), as_mixture.log_prob(x), atol=1e-9)
