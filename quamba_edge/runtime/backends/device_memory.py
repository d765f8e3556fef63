"""Device memory for the TensorRT backend through cuda-bindings (NVIDIA's ``cuda-python``) or pycuda,
whichever is installed: allocate, copy host <-> device on a stream, synchronise. No torch (the Jetson
runtime has none); pycuda does not build everywhere, cuda-bindings installs everywhere.

Every implementation offers the same small interface (:class:`DeviceMemory`); the tests drive the
backend with an in-process stand-in of it. cuda-bindings also offers stream capture (:class:`GraphCapture`:
the TensorRT backend's CUDA-graph decode); pycuda does not here, and decode then runs eagerly.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from .base import BackendUnavailableError

__all__ = ["DeviceMemory", "GraphCapture", "device_memory"]


class DeviceMemory(Protocol):
    name: str

    def alloc(self, nbytes: int) -> int: ...
    def free(self, ptr: int) -> None: ...
    def stream(self) -> int: ...
    def h2d(self, ptr: int, host: np.ndarray, stream: int) -> None: ...
    def d2h(self, host: np.ndarray, ptr: int, stream: int) -> None: ...
    def d2d(self, dst: int, src: int, nbytes: int, stream: int) -> None: ...
    def sync(self, stream: int) -> None: ...


class GraphCapture(Protocol):
    """Stream capture into CUDA graphs (optional part of a DeviceMemory)."""

    def capture_begin(self, stream: int) -> None: ...
    def capture_end(self, stream: int) -> Any: ...  # an instantiated graph (exec)
    def capture_abort(self, stream: int) -> None: ...  # end a capture that failed, dropping what it recorded
    def graph_launch(self, exe: Any, stream: int) -> None: ...
    def graph_destroy(self, exe: Any) -> None: ...


class _CudaBindings:
    """cuda-bindings' runtime API (``cuda.bindings.runtime``, or ``cuda.cudart`` in older releases)."""

    name = "cuda-bindings"

    def __init__(self) -> None:
        try:
            from cuda.bindings import runtime as rt
        except ImportError:
            from cuda import cudart as rt  # cuda-python < 12.6
        self.rt = rt

    def _ok(self, ret: Any) -> Any:
        err, *rest = ret if isinstance(ret, tuple) else (ret,)
        if int(err) != 0:
            _, msg = self.rt.cudaGetErrorString(err)
            raise RuntimeError(f"CUDA error {int(err)}: {msg.decode() if isinstance(msg, bytes) else msg}")
        return rest[0] if len(rest) == 1 else rest

    def alloc(self, nbytes: int) -> int:
        return int(self._ok(self.rt.cudaMalloc(max(1, nbytes))))

    def free(self, ptr: int) -> None:
        self._ok(self.rt.cudaFree(ptr))

    def stream(self) -> int:
        return int(self._ok(self.rt.cudaStreamCreate()))

    def h2d(self, ptr: int, host: np.ndarray, stream: int) -> None:
        self._ok(self.rt.cudaMemcpyAsync(ptr, host.ctypes.data, host.nbytes,
                                         self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice, stream))

    def d2h(self, host: np.ndarray, ptr: int, stream: int) -> None:
        self._ok(self.rt.cudaMemcpyAsync(host.ctypes.data, ptr, host.nbytes,
                                         self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream))

    def d2d(self, dst: int, src: int, nbytes: int, stream: int) -> None:
        self._ok(self.rt.cudaMemcpyAsync(dst, src, nbytes, self.rt.cudaMemcpyKind.cudaMemcpyDeviceToDevice, stream))

    def sync(self, stream: int) -> None:
        self._ok(self.rt.cudaStreamSynchronize(stream))

    # stream capture: thread-local mode, so other threads' CUDA calls do not break (or join) the capture
    def capture_begin(self, stream: int) -> None:
        self._ok(self.rt.cudaStreamBeginCapture(stream, self.rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal))

    def capture_end(self, stream: int) -> Any:
        graph = self._ok(self.rt.cudaStreamEndCapture(stream))
        try:
            return self._ok(self.rt.cudaGraphInstantiate(graph, 0))
        finally:
            self.rt.cudaGraphDestroy(graph)  # the exec keeps what it needs

    def capture_abort(self, stream: int) -> None:
        err, graph = self.rt.cudaStreamEndCapture(stream)
        if int(err) == 0:
            self.rt.cudaGraphDestroy(graph)

    def graph_launch(self, exe: Any, stream: int) -> None:
        self._ok(self.rt.cudaGraphLaunch(exe, stream))

    def graph_destroy(self, exe: Any) -> None:
        self._ok(self.rt.cudaGraphExecDestroy(exe))


class _PyCuda:
    name = "pycuda"

    def __init__(self) -> None:
        import pycuda.autoinit  # noqa: F401  # creates the context
        import pycuda.driver as drv

        self.drv = drv
        self._allocs: dict[int, Any] = {}
        self._streams: dict[int, Any] = {}

    def alloc(self, nbytes: int) -> int:
        buf = self.drv.mem_alloc(max(1, nbytes))
        self._allocs[int(buf)] = buf
        return int(buf)

    def free(self, ptr: int) -> None:
        self._allocs.pop(ptr).free()

    def stream(self) -> int:
        s = self.drv.Stream()
        self._streams[int(s.handle)] = s
        return int(s.handle)

    def h2d(self, ptr: int, host: np.ndarray, stream: int) -> None:
        self.drv.memcpy_htod_async(ptr, host, self._streams[stream])

    def d2h(self, host: np.ndarray, ptr: int, stream: int) -> None:
        self.drv.memcpy_dtoh_async(host, ptr, self._streams[stream])

    def d2d(self, dst: int, src: int, nbytes: int, stream: int) -> None:
        self.drv.memcpy_dtod_async(dst, src, nbytes, self._streams[stream])

    def sync(self, stream: int) -> None:
        self._streams[stream].synchronize()


def device_memory() -> DeviceMemory:
    """cuda-bindings when importable, else pycuda; a clear error naming both when neither is."""
    errors = []
    for impl in (_CudaBindings, _PyCuda):
        try:
            return impl()
        except Exception as e:  # ImportError, or a driver without a device
            errors.append(f"{impl.name}: {type(e).__name__}: {e}")
    raise BackendUnavailableError("backend 'tensorrt' needs device memory from Python: pip install cuda-python "
                                  "(or pycuda); " + "; ".join(errors))
