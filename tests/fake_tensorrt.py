"""A stand-in for the ``tensorrt`` Python module, just the API surface ``quamba-edge build`` uses, for machines
without TensorRT (CI). It records the calls and checks what TensorRT would refuse on our side of the API:

* the network is created strongly typed; the plugin library is loaded before the parser meets a custom node
  (else "Plugin not found", as the real parser says); the parser reads the real model.onnx (onnx) and gives
  the network its real inputs (dynamic dims as -1);
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
        model = onnx.load(path, load_external_data=False)
        for node in model.graph.node:
            if node.domain not in ("", "ai.onnx") and not _loaded_libraries:
                self.errors.append(f"{node.op_type}: Plugin not found, are the plugin name, version, and "
                                   "namespace correct?")
        for inp in model.graph.input:
            dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in inp.type.tensor_type.shape.dim)
            self.network.inputs.append(SimpleNamespace(name=inp.name, shape=dims))
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
        return b"FAKE-ENGINE" + json.dumps([p.shapes for p in config.profiles]).encode()
