"""A stand-in for the ``tensorrt`` Python module, just the API surface ``quamba-edge build`` uses, for machines
without TensorRT (CI). It records the calls and checks what TensorRT would refuse on our side of the API:

* the network is created strongly typed; the plugin library is loaded before the parser meets a custom node
  (else "Plugin not found", as the real parser says); the parser reads the graph it is given (onnx) and
  gives the network its real inputs (dynamic dims as -1); every plugin node carries its host-scale fields
  and no uint8 input (what our createPlugin / TensorRT refuse: the graph was prepared);
* every optimization profile sets every network input, with min <= opt <= max, the input's rank and its
  static dims;
* the timing cache round-trips as bytes.

What it cannot prove: that TensorRT accepts our plugins' capabilities, builds an engine or runs it (that is
the plugin harness on a GPU and, in the end, a Jetson)."""

from __future__ import annotations

import enum
import json
from pathlib import Path
from types import SimpleNamespace

__version__ = "10.16.0-fake"
calls: list[tuple] = []
_loaded_libraries: list[str] = []


def reset() -> None:
    calls.clear()
    _loaded_libraries.clear()


class Logger:
    WARNING = 2

    def __init__(self, severity: int = 2) -> None:
        self.severity = severity


def init_libnvinfer_plugins(logger: Logger, namespace: str) -> bool:
    calls.append(("init_libnvinfer_plugins", namespace))
    return True


class _Registry:
    def load_library(self, path: str) -> object:
        if not Path(path).is_file():
            raise RuntimeError(f"cannot load {path}")
        calls.append(("load_library", path))
        _loaded_libraries.append(path)
        return object()


def get_plugin_registry() -> _Registry:
    return _Registry()


class NetworkDefinitionCreationFlag(enum.IntEnum):
    STRONGLY_TYPED = 1


class MemoryPoolType(enum.IntEnum):
    WORKSPACE = 0


class IProgressMonitor:
    def __init__(self) -> None:
        pass


class _Network:
    def __init__(self, flags: int) -> None:
        self.flags = flags
        self.inputs: list[SimpleNamespace] = []
        self.outputs: list[SimpleNamespace] = []

    @property
    def num_inputs(self) -> int:
        return len(self.inputs)

    def get_input(self, i: int) -> SimpleNamespace:
        return self.inputs[i]


class OnnxParser:
    def __init__(self, network: _Network, logger: Logger) -> None:
        self.network, self.errors = network, []

    def parse_from_file(self, path: str) -> bool:
        import onnx

        calls.append(("parse_from_file", path))
        from quamba_edge.ops.trt_fields import host_scale_inputs, plugin_ops

        model = onnx.load(path, load_external_data=False)
        ops = {r.name: r for r in plugin_ops()}
        uint8 = {i.name for i in model.graph.initializer if i.data_type == onnx.TensorProto.UINT8}
        for node in model.graph.node:
            if node.domain in ("", "ai.onnx"):
                continue
            if not _loaded_libraries:
                self.errors.append(f"{node.op_type}: Plugin not found, are the plugin name, version, and "
                                   "namespace correct?")
            rec = ops.get(node.op_type)
            if rec is None:
                continue
            attrs = {a.name for a in node.attribute}
            missing = [rec.inputs[i].name for i in host_scale_inputs(rec)
                       if i < len(node.input) and node.input[i] and rec.inputs[i].name not in attrs]
            if missing:  # our createPlugin refuses a node without its host-scale fields
                self.errors.append(f"{node.op_type}: createPlugin: missing fields {missing}")
            if any(x in uint8 for x in node.input):
                self.errors.append(f"{node.op_type}: uint8 input (TensorRT plugins take no uint8 tensors)")
        for vis, dest in ((model.graph.input, self.network.inputs), (model.graph.output, self.network.outputs)):
            for v in vis:
                tt = v.type.tensor_type
                dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tt.shape.dim)
                dtype = onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type).str
                dest.append(SimpleNamespace(name=v.name, shape=dims, dtype=dtype))
        return not self.errors

    @property
    def num_errors(self) -> int:
        return len(self.errors)

    def get_error(self, i: int) -> str:
        return self.errors[i]


class _Profile:
    def __init__(self) -> None:
        self.shapes: dict[str, tuple] = {}

    def set_shape(self, name: str, lo, opt, hi) -> None:
        self.shapes[name] = (tuple(lo), tuple(opt), tuple(hi))


class _TimingCache:
    def __init__(self, data: bytes) -> None:
        self.data = data or b"fake-timing-cache"

    def serialize(self) -> bytes:
        return self.data


class _Config:
    def __init__(self) -> None:
        self.profiles: list[_Profile] = []
        self.pool: dict[int, int] = {}
        self.progress_monitor = None
        self.cache: _TimingCache | None = None

    def set_memory_pool_limit(self, pool: int, size: int) -> None:
        self.pool[int(pool)] = size

    def create_timing_cache(self, data: bytes) -> _TimingCache:
        return _TimingCache(bytes(data))

    def set_timing_cache(self, cache: _TimingCache, ignore_mismatch: bool) -> bool:
        self.cache = cache
        return True

    def get_timing_cache(self) -> _TimingCache:
        assert self.cache is not None
        return self.cache

    def add_optimization_profile(self, p: _Profile) -> int:
        self.profiles.append(p)
        return len(self.profiles) - 1


class Builder:
    def __init__(self, logger: Logger) -> None:
        self.logger = logger

    def create_network(self, flags: int) -> _Network:
        calls.append(("create_network", flags))
        return _Network(flags)

    def create_builder_config(self) -> _Config:
        return _Config()

    def create_optimization_profile(self) -> _Profile:
        return _Profile()

    def build_serialized_network(self, network: _Network, config: _Config) -> bytes | None:
        if not network.flags & (1 << int(NetworkDefinitionCreationFlag.STRONGLY_TYPED)):
            raise AssertionError("network is not strongly typed")
        if not config.profiles:
            raise AssertionError("no optimization profile")
        for p in config.profiles:
            for inp in network.inputs:
                if inp.name not in p.shapes:
                    raise AssertionError(f"profile misses input {inp.name}")
                lo, opt, hi = p.shapes[inp.name]
                if not len(lo) == len(opt) == len(hi) == len(inp.shape):
                    raise AssertionError(f"{inp.name}: rank {len(lo)} for a rank-{len(inp.shape)} input")
                for d, a, b, c in zip(inp.shape, lo, opt, hi):
                    if not 1 <= a <= b <= c or (d != -1 and not a == b == c == d):
                        raise AssertionError(f"{inp.name}: bad profile {p.shapes[inp.name]} for dims {inp.shape}")
        calls.append(("build_serialized_network", len(config.profiles)))
        io = [dict(name=t.name, shape=t.shape, dtype=t.dtype, input=k == 0)
              for k, ts in enumerate((network.inputs, network.outputs)) for t in ts]
        return b"FAKE-ENGINE" + json.dumps({"io": io, "profiles": [p.shapes for p in config.profiles]}).encode()


# ---- runtime: an "engine" that runs the graph with ``executor`` (tests set it: feeds -> outputs) ----------

executor = None  # callable(dict[str, np.ndarray]) -> dict[str, np.ndarray]


class TensorIOMode(enum.IntEnum):
    INPUT = 1
    OUTPUT = 2


def nptype(dtype):
    return dtype  # the fake's tensor dtypes are numpy dtypes already


class FakeDeviceMemory:
    """The backend's DeviceMemory interface over host bytes: pointers are keys of numpy byte buffers."""

    name = "fake-device-memory"

    def __init__(self) -> None:
        import numpy as np

        self.np, self.bufs, self.next = np, {}, 0x1000

    def alloc(self, nbytes: int) -> int:
        self.next += 0x1000 + nbytes
        self.bufs[self.next] = self.np.zeros(max(1, nbytes), dtype=self.np.uint8)
        return self.next

    def free(self, ptr: int) -> None:
        del self.bufs[ptr]

    def stream(self) -> int:
        return 7

    def h2d(self, ptr: int, host, stream: int) -> None:
        raw = self.np.ascontiguousarray(host).view(self.np.uint8).reshape(-1)
        self.bufs[ptr][:raw.size] = raw

    def d2h(self, host, ptr: int, stream: int) -> None:
        host.view(self.np.uint8).reshape(-1)[:] = self.bufs[ptr][:host.nbytes]

    def d2d(self, dst: int, src: int, nbytes: int, stream: int) -> None:
        self.bufs[dst][:nbytes] = self.bufs[src][:nbytes]

    def sync(self, stream: int) -> None:
        pass

    # stream capture as CUDA records it: work enqueued while capturing is recorded, not run; a launch replays
    # it (with the addresses and shapes of capture time). ``fail_capture``: the capture ends invalidated.
    capturing: list | None = None
    fail_capture = False

    def capture_begin(self, stream: int) -> None:
        assert self.capturing is None, "capture already in progress"
        self.capturing = []

    def capture_end(self, stream: int):
        work, self.capturing = self.capturing, None
        if self.fail_capture:
            raise RuntimeError("CUDA error 901: operation failed due to a previous error during capture")
        calls.append(("capture", len(work)))
        return tuple(work)

    def capture_abort(self, stream: int) -> None:
        self.capturing = None

    def graph_launch(self, exe, stream: int) -> None:
        calls.append(("graph", len(exe)))
        for fn in exe:
            fn()

    def graph_destroy(self, exe) -> None:
        calls.append(("destroy", len(exe)))


class FakeDeviceMemoryNoCapture(FakeDeviceMemory):
    """A device memory without stream capture (as pycuda here)."""

    name = "fake-device-memory-without-capture"
    capture_begin = None  # type: ignore[assignment]


memory: FakeDeviceMemory | None = None  # the memory the context reads and writes (tests set it)


class _Engine:
    def __init__(self, spec: dict) -> None:
        import numpy as np

        self.io = {t["name"]: t for t in spec["io"]}
        self.names = [t["name"] for t in spec["io"]]
        self.profiles = spec["profiles"]
        self.np = np

    @property
    def num_io_tensors(self) -> int:
        return len(self.names)

    @property
    def num_optimization_profiles(self) -> int:
        return len(self.profiles)

    def get_tensor_name(self, i: int) -> str:
        return self.names[i]

    def get_tensor_mode(self, name: str) -> TensorIOMode:
        return TensorIOMode.INPUT if self.io[name]["input"] else TensorIOMode.OUTPUT

    def get_tensor_dtype(self, name: str):
        return self.np.dtype(self.io[name]["dtype"])

    def create_execution_context(self) -> "_Context":
        return _Context(self)


class _Context:
    def __init__(self, engine: _Engine) -> None:
        self.engine, self.profile, self.shapes, self.addr = engine, None, {}, {}

    def set_optimization_profile_async(self, index: int, stream: int) -> bool:
        if not 0 <= index < len(self.engine.profiles):
            return False
        self.profile = index
        calls.append(("profile", index))
        return True

    def set_input_shape(self, name: str, shape) -> bool:
        lo, _, hi = self.engine.profiles[self.profile][name]
        shape = tuple(shape)
        if len(shape) != len(lo) or any(not a <= d <= b for a, d, b in zip(lo, shape, hi)):
            return False  # outside the active profile, as TensorRT refuses it
        self.shapes[name] = shape
        return True

    def set_tensor_address(self, name: str, ptr: int) -> bool:
        self.addr[name] = ptr
        return True

    def get_tensor_shape(self, name: str) -> tuple:
        io = self.engine.io[name]
        if io["input"]:
            return self.shapes[name]
        b, length = self.shapes["input_ids"]
        dims = list(io["shape"])
        dims[0] = b
        if name == "logits":
            dims[1] = length
        return tuple(dims)

    def execute_async_v3(self, stream: int) -> bool:
        if memory.capturing is not None:  # recorded with this moment's addresses and shapes, run at launch
            shapes, addr = dict(self.shapes), dict(self.addr)
            memory.capturing.append(lambda: self._execute(shapes, addr, stream))
            return True
        return self._execute(self.shapes, self.addr, stream)

    def _execute(self, shapes: dict, addr: dict, stream: int) -> bool:
        saved, self.shapes, self.addr = (self.shapes, self.addr), shapes, addr
        try:
            return self._execute_bound(stream)
        finally:
            self.shapes, self.addr = saved

    def _execute_bound(self, stream: int) -> bool:
        np = self.engine.np
        feeds = {}
        for name, t in self.engine.io.items():
            if t["input"]:
                arr = np.empty(self.shapes[name], dtype=np.dtype(t["dtype"]))
                memory.d2h(arr, self.addr[name], stream)
                feeds[name] = arr
        outs = executor(feeds)
        for name, t in self.engine.io.items():
            if not t["input"]:
                arr = np.ascontiguousarray(outs[name], dtype=np.dtype(t["dtype"]))
                assert arr.shape == self.get_tensor_shape(name), (name, arr.shape)
                memory.h2d(self.addr[name], arr, stream)
        calls.append(("execute", tuple(self.shapes["input_ids"])))
        return True


class Runtime:
    def __init__(self, logger: Logger) -> None:
        self.logger = logger

    def deserialize_cuda_engine(self, data: bytes) -> _Engine | None:
        if not data.startswith(b"FAKE-ENGINE"):
            return None
        return _Engine(json.loads(data[len(b"FAKE-ENGINE"):]))
