"""Shared setup of the evaluation tests."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Small matrices (64-D covariances, a few hundred rows) run far faster on one intra-op thread: on a busy
    2-core machine two threads spin-wait (a 100-resample FD bootstrap took 8 s instead of 0.1 s). Restored
    after each module."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
