"""The entry points most people need, at the top level: `scaleflow.train`, `scaleflow.load_run`,
`scaleflow.generate`. Each is a thin layer over the library (`training`, `sampling`); the examples below are
run by the test suite (`tests/test_api.py`), so they stay true.

    >>> import tempfile, scaleflow
    >>> folder = tempfile.mkdtemp()
    >>> run = scaleflow.train(arch="mlp", scale="tiny", n_train=500, steps=20, out=f"{folder}/run", quiet=True)
    >>> samples = scaleflow.generate(run, 8, seed=0)        # original embedding space
    >>> tuple(samples.shape)
    (8, 384)
    >>> bool(torch.equal(samples, run.sample(8, seed=0)))  # the same thing, as a method
    True
    >>> again = scaleflow.load_run(f"{folder}/run")
    >>> tuple(again.log_density(samples[:2]).shape)
    (2,)
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


def train(out: str | Path, quiet: bool = False, **options: Any):
    """Train a prior with `scaleflow train`'s options (`TrainConfig` fields: arch, scale, data, n_train, steps,
    lr, ...; defaults <- the data-size recipe <- these) into folder `out`, and return it loaded (`Run`).

    Raises:
        ConfigError: an option or value that cannot run (one line naming it).
    """
    from scaleflow.training.config import make_config
    from scaleflow.training.run import load_run
    from scaleflow.training.run import train as train_run

    train_run(make_config({**options, "out": str(out)}), out, progress=not quiet)
    return load_run(out)


def load_run(path: str | Path, weights: str = "ema", device: str | torch.device = "cpu"):
    """The run in folder `path` (`training.run.load_run`): `run.sample(n)`, `run.log_density(x)`, `run.model`,
    `run.config`, `run.summary`, ..."""
    from scaleflow.training.run import load_run as load

    return load(path, weights, device)


def generate(run, n: int, solver: str = "heun", steps: int = 20, seed: int = 0,
             noise_scale: float = 1.0) -> torch.Tensor:
    """`[n, D]` samples of `run`'s prior in the original embedding space (`Run.sample`)."""
    return run.sample(n, solver=solver, steps=steps, seed=seed, noise_scale=noise_scale)
