"""GPU tests: every test in this folder is skipped where torch sees no CUDA device.

Run on a CUDA machine: ``python -m pytest -m gpu tests/gpu -q``. The session fixture ``kernels`` JIT-builds
the extension (``quamba_edge.kernels.load()``) once and returns ``torch.ops.quamba_kernels``.
"""

import pytest
import torch


def _cuda() -> bool:
    return torch.version.cuda is not None and torch.cuda.is_available()


@pytest.fixture(autouse=True)
def _needs_cuda():
    if not _cuda():
        pytest.skip("needs a CUDA device")


@pytest.fixture(autouse=True)
def _no_tf32():
    """The fp32 references (matmuls inside the SSD reference) must stay fp32, not TF32."""
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32 = old


@pytest.fixture(scope="session")
def kernels():
    if not _cuda():
        pytest.skip("needs a CUDA device")
    from quamba_edge import kernels as k

    return k.load()
