import numpy as np
import pytest


@pytest.fixture
def small_data(tmp_path):
    """A 400 x 8 low-rank Gaussian dataset saved as .npy; returns its path."""
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((400, 3)) @ rng.standard_normal((3, 8))).astype(np.float32)
    path = tmp_path / "small.npy"
    np.save(path, x)
    return str(path)



@pytest.fixture(scope="module")
def data(tmp_path_factory) -> str:
    """A 300 x 8 low-rank Gaussian dataset saved as .npy, shared by a module's runs; returns its path."""
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((300, 3)) @ rng.standard_normal((3, 8))).astype(np.float32)
    path = tmp_path_factory.mktemp("data") / "small.npy"
    np.save(path, x)
    return str(path)
