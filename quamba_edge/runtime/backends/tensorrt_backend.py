"""TensorRT backend (Jetson and any TensorRT machine): runs ``EXPORT_DIR/model.engine`` (``quamba-edge build``)
with our plugin library, through TensorRT's Python API; device memory through cuda-bindings or pycuda
(``device_memory.py``). No torch.

* Loading checks the engine's sidecar against what is installed (``engine_build.check_engine``: plugin
  library hash, TensorRT version, the ONNX file) and refuses a mismatch saying what to rebuild.
* ``forward`` (prefill, or any call with a state the caller keeps): host numpy states in and out, the
  prefill profile for ``L >= 2``, the decode profile for ``L = 1``; a batch or prompt chunk outside the
  profiles is refused (``max_prefill_len`` makes the runtime feed longer prompts in chunks).
* ``decode_step`` (the decode loop, which donates its state): the state stays on the device, double-buffered
  (step k reads buffer set k % 2 and writes the other), so a step copies only the token ids in and the logits
  out. The returned state is valid until the next step; ``detach_state`` copies it to the host.
* CUDA-graph decode (cuda-bindings; ``QUAMBA_CUDA_GRAPHS=0`` turns it off): the step's ``execute_async_v3``
  is captured once per (batch, state slot) and replayed after. As TensorRT requires, the graph's shapes and
  tensor addresses are fixed: ids and logits live in buffers of their own sized for the engine's max batch,
  the two state sets are fixed, the first step of a key runs eagerly (the enqueue TensorRT wants before a
  capture) and the context is re-bound (profile, shapes, addresses) before every replay. A capture TensorRT
  refuses (an engine with data-dependent shapes, a plugin that synchronizes) turns graphs off for the backend,
  saying why in ``graphs_note``; decode goes on eagerly.

Never run under a real TensorRT here (none can be installed on our machines): tests/test_tensorrt_backend.py
drives it with a fake ``tensorrt`` module that executes the graph with ONNX Runtime and a fake device memory.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..engine_build import ENGINE_FILE, EngineError, check_engine, find_plugin_library, import_tensorrt
from .base import Backend, BackendUnavailableError

__all__ = ["tensorrt_version", "tensorrt_status", "TensorRTBackend", "ENGINE_FILE"]


def _graphs_off_reason(mem: Any) -> str | None:
    """Why decode cannot use CUDA graphs here (None: it can)."""
    if os.environ.get("QUAMBA_CUDA_GRAPHS", "").strip().lower() in ("0", "false", "off", "no"):
        return "QUAMBA_CUDA_GRAPHS=0"
    if not callable(getattr(mem, "capture_begin", None)):
        return f"{getattr(mem, 'name', 'this device memory')} offers no stream capture (cuda-bindings does)"
    return None


def tensorrt_version() -> str | None:
    """The installed TensorRT's version, or None when the ``tensorrt`` module is absent."""
    if importlib.util.find_spec("tensorrt") is None:
        return None
    try:
        import tensorrt
    except Exception:
        return None
    return str(getattr(tensorrt, "__version__", "?"))


def tensorrt_status(export_dir: Path | None = None) -> tuple[bool, str]:
    """(usable, why) for an export directory: TensorRT installed and an engine built for it."""
    v = tensorrt_version()
    if v is None:
        return False, "tensorrt not installed (it comes with JetPack on a Jetson: python3-libnvinfer)"
    if export_dir is None or not (Path(export_dir) / ENGINE_FILE).is_file():
        return False, (f"tensorrt {v} found but no engine ({ENGINE_FILE}) for this export; build one on this "
                       "device with `quamba-edge build EXPORT_DIR`")
    return True, f"tensorrt {v} and an engine found"


@dataclass(eq=False)
class _DeviceState:
    """A decode state in the backend's device buffer set ``slot`` after step ``generation``."""

    owner: "TensorRTBackend"
    generation: int
    slot: int
    batch: int

    @property
    def valid(self) -> bool:
        return self.generation == self.owner._generation

    @property
    def batch_size(self) -> int:
        return self.batch


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(self, path: str | Path, *, plugins: str | Path | None = None, trt: Any = None,
                 memory: Any = None, **_: object) -> None:
        from quamba_edge.export.info import read_export_info

        from .device_memory import device_memory

        if trt is None:
            try:
                trt = import_tensorrt()
            except BackendUnavailableError as e:
                raise BackendUnavailableError(f"backend 'tensorrt' is not available: {e}; use backend='onnxruntime' "
                                              "(or 'auto')") from e
        info = read_export_info(path)
        side = check_engine(info.path, plugins=plugins, trt_version=str(getattr(trt, "__version__", "?")))
        logger = trt.Logger(trt.Logger.WARNING)
        if side.get("plugin_library"):
            trt.init_libnvinfer_plugins(logger, "")
            trt.get_plugin_registry().load_library(str(find_plugin_library(plugins)))
        self._trt, self.info = trt, info
        self._mem = memory if memory is not None else device_memory()
        self._stream = self._mem.stream()
        engine = trt.Runtime(logger).deserialize_cuda_engine((info.path / ENGINE_FILE).read_bytes())
        if engine is None:
            raise EngineError(f"TensorRT could not load {info.path / ENGINE_FILE} (its log says why); rebuild it: "
                              f"`quamba-edge build {info.path}`")
        self._engine, self._ctx = engine, engine.create_execution_context()
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self._dtype = {n: np.dtype(trt.nptype(engine.get_tensor_dtype(n))) for n in names}
        self._specs = list(info.states)
        missing = [n for n in ["input_ids", "logits", *(s.input_name for s in self._specs),
                               *(s.output_name for s in self._specs)] if n not in self._dtype]
        if missing:
            raise EngineError(f"{info.path / ENGINE_FILE} lacks the tensors {missing}; rebuild it")
        self.max_batch, self.max_prefill_len = int(side["max_batch"]), int(side["max_seq"])
        n_prof = len(side["profiles"])
        self._prefill_profile = 0 if self.max_prefill_len >= 2 else None
        self._decode_profile = n_prof - 1
        self.path = Path(info.path)
        self.precision, self.compute_dtype = str(info.precision), str(info.act_dtype)
        self.vocab_size, self.eos_token_id = int(info.vocab_size), info.eos_token_id
        self.tokenizer_dir = Path(info.tokenizer_dir)
        self.device = f"cuda (TensorRT {getattr(trt, '__version__', '?')}, {self._mem.name})"
        self.memory_kind = "process peak RSS"
        self.description = (f"TensorRT engine ({info.arch}, {info.precision}" + (f", {info.recipe}" if info.recipe
                            else "") + f", batch <= {self.max_batch}, prefill chunks <= {self.max_prefill_len})")
        self._bufs: dict[tuple[str, str], tuple[int, int]] = {}  # (role, tensor) -> (ptr, bytes)
        self._generation = 0
        self._slot = 0
        # (batch, slot) -> (the addresses it was captured with, graph exec)
        self._graphs: dict[tuple[int, int], tuple[tuple[int, ...], Any]] = {}
        self._graphs_off = _graphs_off_reason(self._mem)

    # ---- device buffers -------------------------------------------------------------------------------

    def _buf(self, role: str, name: str, nbytes: int) -> int:
        """A device buffer of at least ``nbytes`` for ``name`` in ``role`` (grown, never shrunk)."""
        key = (role, name)
        have = self._bufs.get(key)
        if have is None or have[1] < nbytes:
            if have is not None:
                self._mem.free(have[0])
            self._bufs[key] = have = (self._mem.alloc(nbytes), nbytes)
        return have[0]

    def _state_rows(self, spec: Any, batch: int) -> tuple[tuple[int, ...], np.dtype]:
        return (batch, *(int(d) for d in spec.shape[1:])), self._dtype[spec.input_name]

    def _check_shape(self, batch: int, length: int) -> None:
        if batch > self.max_batch:
            raise EngineError(f"batch {batch} is larger than the engine's profile (max batch {self.max_batch}); "
                              f"rebuild it: `quamba-edge build {self.path} --max-batch {batch}`")
        if length > self.max_prefill_len:
            raise EngineError(f"{length} tokens in one call, the engine's profile takes {self.max_prefill_len}; "
                              "feed them in chunks (prefill_chunk=) or rebuild with a larger --max-seq")

    def _bind(self, ids: np.ndarray, state_in: list[int], state_out: list[int],
              host_states: Sequence[np.ndarray] | None, role: str = "io") -> tuple[np.ndarray, int]:
        """Profile, shapes and addresses of one execution, ids (host) and host states copied in. ``role`` "g":
        ids and logits in the graph's buffers, sized for the max batch (their addresses never change). Returns
        (the host logits array to fill, the device logits pointer)."""
        b, length = ids.shape
        ctx, mem, s = self._ctx, self._mem, self._stream
        prof = self._decode_profile if length == 1 or self._prefill_profile is None else self._prefill_profile
        if not ctx.set_optimization_profile_async(prof, s):
            raise EngineError(f"{self.path / ENGINE_FILE} has no optimization profile {prof}; rebuild it")
        ids = np.ascontiguousarray(ids, dtype=self._dtype["input_ids"])
        rows = self.max_batch if role == "g" else b
        p = self._buf(role, "input_ids", ids.nbytes // b * rows)
        mem.h2d(p, ids, s)
        self._shape(ctx, "input_ids", ids.shape)
        ctx.set_tensor_address("input_ids", p)
        for i, spec in enumerate(self._specs):
            shape, dt = self._state_rows(spec, b)
            if host_states is not None:
                arr = np.ascontiguousarray(host_states[i], dtype=dt)
                if arr.shape != shape:
                    raise ValueError(f"state {spec.input_name} has shape {arr.shape}, the engine wants {shape}")
                mem.h2d(state_in[i], arr, s)
            self._shape(ctx, spec.input_name, shape)
            ctx.set_tensor_address(spec.input_name, state_in[i])
            ctx.set_tensor_address(spec.output_name, state_out[i])
        lshape = tuple(int(d) for d in ctx.get_tensor_shape("logits"))
        logits = np.empty(lshape, dtype=self._dtype["logits"])
        lp = self._buf(role, "logits", logits.nbytes // b * rows)
        ctx.set_tensor_address("logits", lp)
        return logits, lp

    def _execute(self) -> None:
        if not self._ctx.execute_async_v3(self._stream):
            raise RuntimeError(f"TensorRT failed to run {self.path / ENGINE_FILE} (its log says why)")

    def _run(self, ids: np.ndarray, state_in: list[int], state_out: list[int], host_states: Sequence[np.ndarray] | None,
             want_states: bool) -> tuple[np.ndarray, list[np.ndarray] | None]:
        """One execution: ids (host) and the states (host arrays, or already at ``state_in``) in; logits and,
        when ``want_states``, the states out on the host."""
        b = ids.shape[0]
        mem, s = self._mem, self._stream
        logits, lp = self._bind(ids, state_in, state_out, host_states)
        self._execute()
        mem.d2h(logits, lp, s)
        outs = None
        if want_states:
            outs = []
            for i, spec in enumerate(self._specs):
                shape, dt = self._state_rows(spec, b)
                host = np.empty(shape, dtype=dt)
                mem.d2h(host, state_out[i], s)
                outs.append(host)
        mem.sync(s)
        return logits.astype(np.float32, copy=False), outs

    def _graph_step(self, ids: np.ndarray, state_in: list[int], state_out: list[int],
                    host_states: Sequence[np.ndarray] | None, slot: int) -> np.ndarray:
        """A decode step through the (batch, slot) graph: replayed when captured with these addresses, else
        run eagerly and captured for the next time (module docstring)."""
        mem, s = self._mem, self._stream
        logits, lp = self._bind(ids, state_in, state_out, host_states, role="g")
        key = (ids.shape[0], slot)
        addrs = (self._bufs[("g", "input_ids")][0], lp, *state_in, *state_out)
        have = self._graphs.get(key)
        if have is not None and have[0] == addrs:
            mem.graph_launch(have[1], s)
        else:
            if have is not None:  # buffers moved (not expected: they are sized for the max batch)
                mem.graph_destroy(self._graphs.pop(key)[1])
            self._execute()
            mem.sync(s)
            try:
                self._graphs[key] = (addrs, self._capture())
            except Exception as e:  # TensorRT or the driver refused the capture: eager from now on
                self._graphs_off = f"capture failed ({type(e).__name__}: {e}); decode runs eagerly"
                self._drop_graphs()
        mem.d2h(logits, lp, s)
        mem.sync(s)
        return logits.astype(np.float32, copy=False)

    def _capture(self) -> Any:
        """The bound execution as a graph exec (nothing runs: stream capture records the work)."""
        mem, s = self._mem, self._stream
        mem.capture_begin(s)
        try:
            ok = self._ctx.execute_async_v3(s)
        except BaseException:
            mem.capture_abort(s)
            raise
        exe = mem.capture_end(s)
        if not ok:
            mem.graph_destroy(exe)
            raise RuntimeError("execute_async_v3 returned False while capturing")
        return exe

    def _drop_graphs(self) -> None:
        for _, exe in self._graphs.values():
            self._mem.graph_destroy(exe)
        self._graphs.clear()

    @property
    def graphs_note(self) -> str:
        """Decode execution in one line: CUDA graphs (keys captured) or eager and why."""
        if self._graphs_off:
            return f"eager decode: {self._graphs_off}"
        keys = ", ".join(f"B={b}/slot {k}" for b, k in sorted(self._graphs))
        return f"CUDA-graph decode ({len(self._graphs)} captured: {keys or 'none yet'})"

    def _shape(self, ctx: Any, name: str, shape: tuple[int, ...]) -> None:
        if not ctx.set_input_shape(name, tuple(shape)):
            raise EngineError(f"TensorRT refused shape {tuple(shape)} for {name!r} (outside the engine's profiles); "
                              f"rebuild it: `quamba-edge build {self.path} --max-batch B --max-seq L`")

    def _state_bytes(self, spec: Any, batch: int) -> int:
        shape, dt = self._state_rows(spec, batch)
        return int(np.prod(shape)) * dt.itemsize

    # ---- Backend --------------------------------------------------------------------------------------

    def forward(self, input_ids: np.ndarray, state: Any | None, last_only: bool = False) -> tuple[np.ndarray, Any]:
        b, length = input_ids.shape
        self._check_shape(b, length)
        host = self._host(state) if state is not None else self.new_state(b)
        ins = [self._buf("in", s.input_name, self._state_bytes(s, b)) for s in self._specs]
        outs = [self._buf("out", s.output_name, self._state_bytes(s, b)) for s in self._specs]
        logits, new = self._run(input_ids, ins, outs, host, want_states=True)
        return (logits[:, -1:] if last_only else logits), tuple(new or ())

    def decode_step(self, input_ids: np.ndarray, state: Any) -> tuple[np.ndarray, Any]:
        """A donated decode step with the state kept on the device (module docstring)."""
        b, length = input_ids.shape
        if state is None or length != 1:
            return self.forward(input_ids, state, last_only=True)
        self._check_shape(b, 1)
        cap = self.max_batch
        sets = [[self._buf(f"s{k}", s.input_name, self._state_bytes(s, cap)) for s in self._specs] for k in (0, 1)]
        if isinstance(state, _DeviceState) and state.owner is self and state.valid and state.batch == b:
            cur, host = state.slot, None  # already on the device
        else:
            cur, host = self._slot, self._host(state)
        if self._graphs_off:
            logits, _ = self._run(input_ids, sets[cur], sets[1 - cur], host, want_states=False)
        else:
            logits = self._graph_step(input_ids, sets[cur], sets[1 - cur], host, cur)
        self._generation += 1
        self._slot = 1 - cur
        return logits, _DeviceState(self, self._generation, self._slot, b)

    def _host(self, state: Any) -> tuple[np.ndarray, ...]:
        """Host arrays of a state (a device state copied out; refused when a later step overwrote it)."""
        if not isinstance(state, _DeviceState):
            return tuple(state)
        if not state.valid:
            raise RuntimeError("this decode state lived in the engine's device buffers and was overwritten by a "
                               "later step; keep a state with backend.detach_state(state) before stepping on")
        out = []
        for spec in self._specs:
            shape, dt = self._state_rows(spec, state.batch)
            host = np.empty(shape, dtype=dt)
            self._mem.d2h(host, self._bufs[(f"s{state.slot}", spec.input_name)][0], self._stream)
            out.append(host)
        self._mem.sync(self._stream)
        return tuple(out)

    def detach_state(self, state: Any) -> Any:
        return self._host(state) if isinstance(state, _DeviceState) else state

    def new_state(self, batch_size: int) -> Any:
        return tuple(np.zeros(*self._state_rows(s, batch_size)) for s in self._specs)

    def concat_states(self, states: Sequence[Any]) -> Any:
        if len(states) == 1:
            return states[0]
        return tuple(np.concatenate(parts, axis=0) for parts in zip(*(self._host(s) for s in states)))

    def select_state(self, state: Any, rows: Sequence[int]) -> Any:
        idx = np.asarray(list(rows), dtype=np.int64)
        return tuple(np.ascontiguousarray(a[idx]) for a in self._host(state))

    def state_batch_size(self, state: Any) -> int:
        return state.batch if isinstance(state, _DeviceState) else (int(state[0].shape[0]) if state else 0)

    def state_nbytes(self, state: Any) -> int:
        if isinstance(state, _DeviceState):
            return sum(self._state_bytes(s, state.batch) for s in self._specs)
        return int(sum(a.nbytes for a in state))

    def close(self) -> None:
        self._drop_graphs()
        for ptr, _ in self._bufs.values():
            self._mem.free(ptr)
        self._bufs.clear()
        self._ctx = self._engine = None

