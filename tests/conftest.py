"""Fixtures every test module shares."""
import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Tests run on one intra-op thread: small networks and matrices are far faster that way (on a busy
    2-core machine two threads spin-wait: 800 tiny training steps took 75 s instead of 5 s, a 100-resample
    FD bootstrap 8 s instead of 0.1 s, a CLI training step 0.2 s instead of 1 ms), and subprocesses
    started with OMP_NUM_THREADS=1 (test_resume) get the same kernels, hence the same bits. Restored
    after each module."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Reference priors' scores are cached (`reference.scoring`): tests write theirs to a folder of their own,
    never to the user's ~/.cache."""
    import os

    before = os.environ.get("SCALEFLOW_CACHE")
    os.environ["SCALEFLOW_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if before is None:
        os.environ.pop("SCALEFLOW_CACHE", None)
    else:
        os.environ["SCALEFLOW_CACHE"] = before
