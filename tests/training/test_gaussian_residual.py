"""`residual: gaussian`: the network's x1-prediction is added to the exact one of a Ledoit-Wolf Gaussian fitted to
the training rows. A network that outputs zero is then exactly the Gaussian reference prior; a run keeps its
Gaussian with its weights, loads back, resumes bit for bit, and transfers only between runs that share it."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from scaleflow.nets.gaussian_residual import GaussianResidual, fit_gaussian_residual
from scaleflow.nets.registry import create_model
from scaleflow.reference.fit import fit_gaussian
from scaleflow.sampling.sample import generate
from scaleflow.sampling.velocity import VelocityField
from scaleflow.flows.registry import create_flow
from scaleflow.training.config import ConfigError, make_config
from scaleflow.training.run import load_run, train

from crash_helpers import crash_resume_and_compare

OPTIONS = dict(arch="mlp", scale="tiny", model={"hidden_dim": 32}, steps=30, batch_size=32, val_every=10,
               checkpoint_every=10, n_val=40, n_test=40, lr=1e-2, device="cpu", residual="gaussian", recipe="none")


def _correlated_rows(n: int, dim: int = 6, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mixing = torch.randn(dim, dim, generator=g) / dim ** 0.5 + torch.eye(dim)
    return torch.randn(n, dim, generator=g) @ mixing.T + 0.5


def test_a_zero_network_makes_the_gaussian_reference_prior_and_samples_its_covariance():
    rows = _correlated_rows(3000)
    net = create_model("dit", "tiny", input_dim=6, hidden_dim=32, num_heads=2, time_embed_dim=32)  # AdaLN-Zero: outputs 0
    model = GaussianResidual(net, fit_gaussian_residual(rows)).eval()
    reference = fit_gaussian(rows, rows[:100], covariance="ledoit-wolf").model
    x, t = torch.randn(64, 6), torch.rand(64)
    with torch.no_grad():
        assert torch.allclose(model(x, t), reference(x, t), atol=1e-5)
    # The exact flow of N(mu, S) from N(0, I): its samples have the fitted Gaussian's mean and covariance.
    velocity = VelocityField(model, create_flow("icfm"), "x1")
    with torch.no_grad():
        samples = generate(velocity, 20000, 6, "heun", 40, seed=3).x.double()
    from sklearn.covariance import LedoitWolf

    fitted = LedoitWolf().fit(rows.double().numpy())
    assert np.allclose(samples.mean(0).numpy(), fitted.location_, atol=0.05)
    assert np.allclose(np.cov(samples.numpy(), rowvar=False), fitted.covariance_, atol=0.06)


def test_a_residual_run_keeps_its_gaussian_and_loads_back(data, tmp_path):
    summary = train(make_config({**OPTIONS, "data": data}), tmp_path / "run", progress=False)
    info = json.loads((tmp_path / "run" / "model.json").read_text())
    assert info["residual"] == "gaussian" and info["params"] == summary["params"]  # the Gaussian adds no weights
    run = load_run(tmp_path / "run")
    assert isinstance(run.model, GaussianResidual)
    # The saved Gaussian is the Ledoit-Wolf fit of the run's normalized training rows.
    expected = fit_gaussian_residual(run.data().train)
    assert torch.allclose(run.model.gaussian.means, expected.means, atol=1e-6)
    assert torch.allclose(run.model.gaussian.eigenvalues, expected.eigenvalues, atol=1e-6)
    weights = load_file(str(tmp_path / "run" / "ema.safetensors"))
    assert {"gaussian.means", "gaussian.eigenvectors"} <= set(weights) and any(k.startswith("net.") for k in weights)
    assert run.sample(50, steps=5).shape == (50, 8)


def test_a_residual_run_resumes_bit_for_bit(data, tmp_path):
    crash_resume_and_compare(make_config({**OPTIONS, "data": data}), tmp_path, 13)


def test_transfer_keeps_the_network_and_fits_the_gaussian_to_the_new_rows(data, tmp_path):
    train(make_config({**OPTIONS, "data": data}), tmp_path / "source", progress=False)
    rng = np.random.default_rng(1)
    other = tmp_path / "other.npy"
    np.save(other, (rng.standard_normal((300, 3)) @ rng.standard_normal((3, 8)) + 2.0).astype(np.float32))
    config = make_config({**OPTIONS, "data": str(other), "init_from": str(tmp_path / "source"), "lr": 1e-12,
                          "steps": 1, "val_every": 1, "ema_decay": 0.0, "weight_decay": 0.0,
                          "init_normalization": "refit"})
    train(config, tmp_path / "ft", progress=False)
    mine, theirs = (load_file(str(tmp_path / f / name)) for f, name in (("ft", "model.safetensors"),
                                                                       ("source", "ema.safetensors")))
    assert all(torch.allclose(mine[k], theirs[k], atol=1e-6) for k in theirs if k.startswith("net."))
    run = load_run(tmp_path / "ft")
    refit = fit_gaussian_residual(run.data().train)
    assert torch.allclose(run.model.gaussian.eigenvalues, refit.eigenvalues, atol=1e-6)
    assert not torch.allclose(run.model.gaussian.eigenvalues, load_run(tmp_path / "source").model.gaussian.eigenvalues,
                              atol=1e-3)  # not the source's Gaussian
    # A source without the Gaussian is another network: refused before anything is written.
    train(make_config({**OPTIONS, "data": data, "residual": "none"}), tmp_path / "plain", progress=False)
    with pytest.raises(ConfigError, match="init_from: .* has residual none, this run gaussian"):
        train(make_config({**OPTIONS, "data": str(other), "init_from": str(tmp_path / "plain")}), tmp_path / "ft2",
              progress=False)
    assert not (tmp_path / "ft2").exists()


@pytest.mark.parametrize("options, fragment", [
    ({"prediction": "velocity"}, "residual: gaussian adds the network's output to a Gaussian's x1-prediction"),
    ({"flow": "si-gvp"}, "residual: gaussian is the closed-form x1-prediction of the straight path"),
    ({"sigma": 0.1}, "not of flow icfm with sigma 0.1"),
    ({"arch": "gmm"}, "residual: reference prior gmm is itself fitted"),
])
def test_combinations_without_meaning_are_refused_in_one_line(options, fragment):
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(")) as err:
        make_config({"residual": "gaussian", **options})
    assert "\n" not in str(err.value)


def test_the_builtin_source_of_a_residual_run_is_a_residual_prior_chosen_by_its_samples():
    from scaleflow.training.pretrained import builtin_prior_folder, pretrain_config

    residual = make_config({"residual": "gaussian", "init_from": "builtin", "recipe": "none", "categories": "noun.animal"})
    plain = make_config({"init_from": "builtin", "recipe": "none", "categories": "noun.animal"})
    pretrain = pretrain_config(residual)
    assert (pretrain.residual, pretrain.select_by) == ("gaussian", "samples")
    assert (pretrain_config(plain).residual, pretrain_config(plain).select_by) == ("none", "val_loss")
    # Two different priors, cached apart; the plain one's folder is the one it had before `residual` and `min_steps`
    # existed (the name scaleflow gave it at commit 6919108), so priors cached then are found again.
    assert builtin_prior_folder(residual) != builtin_prior_folder(plain)
    assert builtin_prior_folder(plain).name == "builtin-dit-small-4732e5b3979c"
