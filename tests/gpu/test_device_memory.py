"""The TensorRT backend's device memory (cuda-bindings or pycuda) on a real GPU: host -> device -> device ->
host round trips on a stream, the one part of that backend a GPU without TensorRT can check."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.gpu


def test_round_trip():
    from quamba_edge.runtime.backends.device_memory import device_memory

    try:
        mem = device_memory()
    except Exception as e:  # neither cuda-bindings nor pycuda installed
        pytest.skip(str(e))
    s = mem.stream()
    host = np.arange(1 << 20, dtype=np.int32)
    a, b = mem.alloc(host.nbytes), mem.alloc(host.nbytes)
    mem.h2d(a, host, s)
    mem.d2d(b, a, host.nbytes, s)
    back = np.empty_like(host)
    mem.d2h(back, b, s)
    mem.sync(s)
    mem.free(a)
    mem.free(b)
    assert np.array_equal(back, host), mem.name
