import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Tiny networks run far faster on one intra-op thread (two threads on a busy 2-core machine
    spin-wait: the 800 steps of the overfitting test took 75 s instead of 5 s). It also gives the
    subprocesses of test_resume (OMP_NUM_THREADS=1) the same kernels, hence the same bits. Restored
    after each module."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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
