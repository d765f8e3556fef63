"""Shared test settings."""

import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def _one_intra_op_thread():
    """The tests use tiny tensors: extra intra-op threads only add contention, which made tests up to
    10x slower on a busy 2-core CI machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
