"""The top-level entry points (`scaleflow.train`, `load_run`, `generate`) and `Run.sample` / `Run.log_density`:
their docstring examples run, and they agree with the library they wrap."""
from __future__ import annotations

import doctest

import torch

import scaleflow
import scaleflow.api


def test_the_docstring_examples_run():
    result = doctest.testmod(scaleflow.api, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 6 and result.failed == 0


def test_run_sample_is_what_scaleflow_sample_draws_and_log_density_is_exact_for_a_reference(tmp_path):
    from scaleflow.sampling.sample import generate

    run = scaleflow.train(arch="gaussian", n_train=500, out=tmp_path / "gauss", quiet=True)
    samples = run.sample(16, seed=3)
    batch = generate(run.velocity, 16, run.info["input_dim"], "heun", 20, 3)
    assert torch.allclose(samples, run.standardizer.inverse_transform(batch.x).float())
    # A Gaussian reference prior's log-density is its closed form: higher at its mean than far away.
    mean = run.standardizer.inverse_transform(torch.zeros(1, run.info["input_dim"], dtype=torch.float64))
    far = mean + 10.0
    density = run.log_density(torch.cat([mean, far]).float())
    assert density.shape == (2,) and density[0] > density[1]


def test_samples_go_onto_the_rows_sphere_on_request(tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    rows = rng.standard_normal((400, 6)) @ rng.standard_normal((6, 6))
    np.save(tmp_path / "unit.npy", (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32))
    run = scaleflow.train(arch="gaussian", data=str(tmp_path / "unit.npy"), out=tmp_path / "g", quiet=True)
    plain, projected = run.sample(32, seed=1), run.sample(32, seed=1, project_sphere=True)
    assert not torch.allclose(plain.norm(dim=1), torch.ones(32), atol=1e-3)  # a Gaussian's samples are off it
    assert torch.allclose(projected.norm(dim=1), torch.ones(32), atol=1e-5)
    assert torch.allclose(torch.nn.functional.normalize(plain, dim=1), projected, atol=1e-5)  # directions kept
