"""Shared test settings."""

import os

import pytest
import torch

# the kernels that have not had a GPU run yet (kernel_dispatch.UNVERIFIED_OPS) are on in the tests: the GPU tests
# are what verifies them; tests/test_kernel_dispatch.py checks the default (off) separately
os.environ.setdefault("QUAMBA_KERNELS_UNVERIFIED", "1")


@pytest.fixture(scope="session", autouse=True)
def _one_intra_op_thread():
    """The tests use tiny tensors: extra intra-op threads only add contention, which made tests up to
    10x slower on a busy 2-core CI machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
