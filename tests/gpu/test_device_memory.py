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


def test_stream_capture_replays_and_aborts():
    """The CUDA-graph decode's capture calls on real CUDA: a captured device copy does nothing until launched,
    then repeats with what the source holds at launch; an aborted capture leaves the stream usable."""
    from quamba_edge.runtime.backends.device_memory import device_memory

    try:
        mem = device_memory()
    except Exception as e:
        pytest.skip(str(e))
    if not callable(getattr(mem, "capture_begin", None)):
        pytest.skip(f"{mem.name}: no stream capture")
    s = mem.stream()
    n = 1 << 16
    a, b = mem.alloc(4 * n), mem.alloc(4 * n)
    mem.h2d(a, np.arange(n, dtype=np.int32), s)
    mem.h2d(b, np.zeros(n, dtype=np.int32), s)
    mem.sync(s)
    mem.capture_begin(s)
    mem.d2d(b, a, 4 * n, s)
    exe = mem.capture_end(s)
    got = np.empty(n, dtype=np.int32)
    mem.d2h(got, b, s)
    mem.sync(s)
    assert not got.any()  # captured, not run
    for k in (1, 2):
        mem.h2d(a, np.full(n, k, dtype=np.int32), s)
        mem.graph_launch(exe, s)
        mem.d2h(got, b, s)
        mem.sync(s)
        assert (got == k).all()
    mem.graph_destroy(exe)
    mem.capture_begin(s)
    mem.capture_abort(s)
    mem.d2d(b, a, 4 * n, s)  # the stream works eagerly again
    mem.sync(s)
    mem.free(a)
    mem.free(b)
