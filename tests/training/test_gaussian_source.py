"""`source: gaussian`: the flow starts from a Gaussian fitted to the training rows (the rows are whitened); the run
folder keeps the whitening, samples come back in the original space, and evaluation scores them in the same
per-dimension space as any other run."""
from __future__ import annotations

import numpy as np
import torch

from scaleflow.data.normalization import Whitener
from scaleflow.evaluation.evaluate import evaluate
from scaleflow.sampling.sample import generate
from scaleflow.training.config import ConfigError, make_config
from scaleflow.training.run import load_run, train

from crash_helpers import crash_resume_and_compare

OPTIONS = dict(arch="mlp", scale="tiny", model={"hidden_dim": 32}, steps=30, batch_size=32, val_every=10,
               checkpoint_every=10, n_val=40, n_test=40, lr=1e-2, device="cpu", source="gaussian")


def test_a_gaussian_source_run_trains_in_whitened_rows_and_samples_the_original_space(data, tmp_path):
    train(make_config({**OPTIONS, "data": data}), tmp_path / "run", progress=False)
    run = load_run(tmp_path / "run")
    assert isinstance(run.standardizer, Whitener)
    rows = run.data()
    # The training rows in the run's space are the original rows whitened by the saved Ledoit-Wolf fit: the
    # fitted Gaussian's covariance maps to the identity, and the rows' own covariance to W S W.
    from sklearn.covariance import LedoitWolf

    original_rows = torch.as_tensor(np.load(data))[run.splits.train].double()
    shrunk = torch.as_tensor(LedoitWolf().fit(original_rows.numpy()).covariance_)
    w = run.standardizer.whitening
    assert torch.allclose(w @ shrunk @ w, torch.eye(8, dtype=torch.float64), atol=1e-6)
    assert torch.allclose(rows.train.double(), (original_rows - original_rows.mean(0)) @ w, atol=1e-3)
    samples = run.standardizer.inverse_transform(generate(run.velocity, 200, 8, "heun", 10).x)
    original = torch.as_tensor(np.load(data))
    assert samples.shape == (200, 8) and (samples.mean(0) - original.mean(0)).abs().max() < 1.0
    report, _ = evaluate(run, 40, n_boot=5, nfe_solvers=(), extrapolate=False, references=("gaussian",))
    assert report["settings"]["scored_in"] == "per-dimension standardization of the training rows"
    # The same rows' real-vs-real floor as a standard run's evaluation of them: one space for every run.
    train(make_config({**OPTIONS, "data": data, "source": "standard"}), tmp_path / "plain", progress=False)
    plain, _ = evaluate(load_run(tmp_path / "plain"), 40, n_boot=5, nfe_solvers=(), extrapolate=False, references=())
    assert report["fd"]["floor"] == plain["fd"]["floor"] or abs(report["fd"]["floor"] / plain["fd"]["floor"] - 1) < 1e-3


def test_a_gaussian_source_run_resumes_bit_for_bit(data, tmp_path):
    crash_resume_and_compare(make_config({**OPTIONS, "data": data}), tmp_path, 13)


def test_reference_priors_refuse_a_gaussian_source():
    try:
        make_config({"arch": "gaussian", "source": "gaussian"})
    except ConfigError as err:
        assert "starts from N(0, I)" in str(err)
    else:
        raise AssertionError("accepted")
