"""Drive the TensorRT plugins (plugins/trt) through TensorRT's call sequence without TensorRT's libraries.

    from quamba_edge import trt_harness
    built = trt_harness.build(arch="90")               # libquamba_trt_plugins.so + libquamba_trt_harness.so
    h = trt_harness.Harness(built.harness, built.plugins)
    h.run("QuantHadamard", {"size": 128, "out_scale": 0.05},
          inputs=[trt_harness.Tensor("float16", (2, 5, 128), x_ptr, dynamic=(0, 1)),
                  trt_harness.Tensor("float32", (), s_ptr)],
          outputs=[trt_harness.Tensor("int8", (2, 5, 128), y_ptr, data2=y2_ptr)])

``Harness.run`` calls ``qth_run`` of plugins/trt/harness/harness.h: the plugin library is dlopen'ed and its
creator driven from createPlugin(kBUILD) to enqueue, then re-created from its serialized fields in the runtime
phase and enqueued again (into ``data2``); with ``build_only=True`` nothing touches a GPU. It raises
:class:`HarnessError` with the harness's and the plugins' log when a step fails. Tensors are raw device
pointers (ints), so this module needs neither torch nor numpy; the tests pass torch tensors' ``data_ptr()``.

``build`` compiles both libraries from a source checkout with plugins/check_trt_compile.py (nvcc, g++ and
TensorRT's public headers needed; objects cached under ``build/``).
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import struct
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = ROOT / "plugins"

#: nvinfer1::DataType values (uint8: only to see the plugins refuse it; TensorRT plugins take no uint8 tensors)
DATA_TYPE = {"float32": 0, "float16": 1, "int8": 2, "int32": 3, "uint8": 5, "int64": 8}
#: nvinfer1::PluginFieldType values of the field kinds in plugins/trt/generated/fields.h
FIELD_TYPE = {"kFLOAT32": 1, "kINT32": 5, "kCHAR": 6}
BUILD_ONLY = 1
RAW_ENQUEUE = 2
HOST_MEMORY = 4
MAX_RANK = 8


class HarnessError(RuntimeError):
    """A step of the plugin call sequence failed; the message holds the harness's and the plugins' log."""


class _Field(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("type", ctypes.c_int32), ("length", ctypes.c_int32),
                ("data", ctypes.c_void_p)]


class _Tensor(ctypes.Structure):
    _fields_ = [("dtype", ctypes.c_int32), ("rank", ctypes.c_int32), ("dims", ctypes.c_int64 * MAX_RANK),
                ("dynamic_mask", ctypes.c_uint32), ("reserved", ctypes.c_int32), ("data", ctypes.c_void_p),
                ("data2", ctypes.c_void_p)]


@dataclass
class Tensor:
    """One plugin input or output: dtype name, dims, device pointer(s); ``dynamic`` lists the dims that are
    runtime dimensions (non-constant in getOutputShapes, -1 in configurePlugin)."""

    dtype: str
    dims: Sequence[int]
    data: int | None = None
    data2: int | None = None  # outputs: where the runtime-phase plugin writes
    dynamic: Iterable[int] = ()

    def _c(self) -> _Tensor:
        if len(self.dims) > MAX_RANK:
            raise ValueError(f"rank {len(self.dims)} > {MAX_RANK}")
        t = _Tensor()
        t.dtype = DATA_TYPE[self.dtype]
        t.rank = len(self.dims)
        for i, d in enumerate(self.dims):
            t.dims[i] = int(d)
        t.dynamic_mask = sum(1 << int(k) for k in self.dynamic)
        t.data = self.data or None
        t.data2 = self.data2 or None
        return t


def field_kinds(op: str) -> dict[str, str]:
    """Field name -> kind (kINT32 / kFLOAT32 / kCHAR) of a plugin op, from the op registry."""
    from .ops import registry
    from .ops.trt_fields import plugin_fields

    return {f.name: f.kind for f in plugin_fields(registry.get(op))}


class Harness:
    """ctypes front of libquamba_trt_harness.so driving one plugin library."""

    def __init__(self, harness: str | os.PathLike, plugins: str | os.PathLike):
        self.plugins = str(plugins)
        self._lib = ctypes.CDLL(str(harness))
        self._lib.qth_run.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.POINTER(_Field), ctypes.c_int32,
                                      ctypes.POINTER(_Tensor), ctypes.c_int32, ctypes.POINTER(_Tensor),
                                      ctypes.c_int32, ctypes.c_int32, ctypes.c_void_p, ctypes.c_char_p,
                                      ctypes.c_int32]
        self._lib.qth_run.restype = ctypes.c_int32
        self._lib.qth_list.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int32]
        self._lib.qth_list.restype = ctypes.c_int32

    def creators(self) -> dict[str, dict[str, Any]]:
        """name -> {version, namespace, fields: [(name, PluginFieldType value)]} as getCreators reports them."""
        buf = ctypes.create_string_buffer(1 << 16)
        if self._lib.qth_list(self.plugins.encode(), buf, len(buf)) != 0:
            raise HarnessError(buf.value.decode())
        out = {}
        for line in buf.value.decode().splitlines():
            name, ver, ns, fields = line.split(" ")
            out[name] = {"version": ver, "namespace": ns,
                         "fields": [(f.split(":")[0], int(f.split(":")[1])) for f in fields.split(",") if f]}
        return out

    def run(self, op: str, fields: dict[str, Any], inputs: Sequence[Tensor], outputs: Sequence[Tensor], *,
            build_only: bool = False, raw_enqueue: bool = False, host_memory: bool = False,
            stream: int | None = None, kinds: dict[str, str] | None = None) -> str:
        """Run the call sequence; returns the plugins' log, raises HarnessError when a step fails.

        ``fields`` are typed by the op's registry-derived kinds (``kinds`` overrides, e.g. to send a wrong type);
        a value given as ``(PluginFieldType, bytes, length)`` is passed as is. ``host_memory``: the full sequence
        with a host workspace and no stream synchronization, for libquamba_trt_plugins_fake.so."""
        kinds = kinds if kinds is not None else field_kinds(op)
        keep: list[Any] = []
        cf = (_Field * max(1, len(fields)))()
        for i, (name, value) in enumerate(fields.items()):
            if isinstance(value, tuple):
                ftype, raw, length = value
            else:
                kind = kinds.get(name, "kFLOAT32" if isinstance(value, float) else "kINT32")
                if kind == "kINT32":
                    raw, length = struct.pack("<i", int(value)), 1
                elif kind == "kFLOAT32":
                    raw, length = struct.pack("<f", float(value)), 1
                else:
                    raw = str(value).encode() + b"\0"  # strings arrive with their NUL from the ONNX parser
                    length = len(raw)
                ftype = FIELD_TYPE[kind]
            buf = ctypes.create_string_buffer(raw, len(raw))
            nm = name.encode()
            keep += [buf, nm]
            cf[i].name = nm
            cf[i].type = ftype
            cf[i].length = length
            cf[i].data = ctypes.cast(buf, ctypes.c_void_p)
        ci = (_Tensor * max(1, len(inputs)))(*[t._c() for t in inputs])
        co = (_Tensor * max(1, len(outputs)))(*[t._c() for t in outputs])
        log = ctypes.create_string_buffer(1 << 16)
        flags = (BUILD_ONLY if build_only else 0) | (RAW_ENQUEUE if raw_enqueue else 0) | (HOST_MEMORY if host_memory else 0)
        rc = self._lib.qth_run(self.plugins.encode(), op.encode(), cf, len(fields), ci, len(inputs), co, len(outputs),
                               flags, stream or None, log, len(log))
        text = log.value.decode(errors="replace")
        if rc != 0:
            raise HarnessError(f"{op}: {text}")
        return text


# ---- building the libraries ---------------------------------------------------------------------------------


def header_candidates() -> list[Path]:
    """TensorRT include folders to build against, most specific first: $QUAMBA_TRT_HEADERS (':'-separated),
    $TENSORRT_ROOT/include, ../shared/third_party/tensorrt-{10.16,10.3}/include next to the checkout, the
    JetPack / Debian system folders. Only those holding NvInferRuntime.h."""
    cands = [Path(p) for p in os.environ.get("QUAMBA_TRT_HEADERS", "").split(os.pathsep) if p]
    if os.environ.get("TENSORRT_ROOT"):
        cands.append(Path(os.environ["TENSORRT_ROOT"]) / "include")
    cands += [ROOT.parent / "shared" / "third_party" / s / "include" for s in ("tensorrt-10.16", "tensorrt-10.3")]
    cands += [Path("/usr/include/aarch64-linux-gnu"), Path("/usr/include/x86_64-linux-gnu"), Path("/usr/include")]
    return [c for c in cands if (c / "NvInferRuntime.h").is_file()]


def _check_module():
    spec = importlib.util.spec_from_file_location("quamba_check_trt_compile", PLUGINS / "check_trt_compile.py")
    if spec is None or spec.loader is None or not (PLUGINS / "check_trt_compile.py").is_file():
        raise HarnessError(f"no source checkout of the plugins at {PLUGINS}")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def build(arch: str = "87", headers: str | os.PathLike | None = None, out: str | os.PathLike | None = None,
          quiet: bool = True):
    """Build (or reuse) the plugin library and the harness for ``arch`` against one TensorRT header set (the
    first of :func:`header_candidates` unless given). Returns check_trt_compile's ``Built`` (``.plugins``,
    ``.harness``, ``.fake``, ``.label``)."""
    mod = _check_module()
    inc = Path(headers) if headers else next(iter(header_candidates()), None)
    if inc is None:
        raise HarnessError("no TensorRT headers found (set QUAMBA_TRT_HEADERS to an include folder with NvInferRuntime.h)")
    out = Path(out) if out else ROOT / "build" / f"trt-sm{arch}"
    lines: list[str] = []
    try:
        (b,) = mod.build([inc], out, arch=arch, jobs=max(1, min(4, os.cpu_count() or 1)),
                         say=(lambda s: lines.append(s)) if quiet else print)
    except mod.CheckError as e:
        raise HarnessError(str(e)) from None
    return b
