"""``quamba-edge build``: an fp16 export directory -> a TensorRT engine with our plugins (on the device).

The network is strongly typed (TensorRT 11 requires it; the INT8 tensors between our plugins are declared by
the plugins themselves), parsed from ``model.onnx`` prepared for TensorRT (host scales folded into plugin
fields, packed int4 weights as int8: ``ops.trt_fields.prepare_trt_graph``, on a temporary copy) with
``libquamba_trt_plugins.so`` loaded into the plugin registry (the parser maps each custom node to our creator
by op type + ``plugin_version`` + namespace). Two
optimization profiles: prefill (``L`` 2 ... ``max_seq``) and decode (``L`` = 1), batch 1 ... ``max_batch``.
A timing cache is read and written when given. The engine is written atomically as ``model.engine`` beside a
sidecar ``model.engine.json`` recording what it was built from (TensorRT, plugin library hash, op registry
and ONNX hashes, profiles): :func:`check_engine` refuses an engine whose sidecar does not match what is
installed, and a prompt or batch outside its profiles, saying what to rebuild.

TensorRT cannot be installed on our CI machines: the tests drive this module with a fake ``tensorrt`` module
(tests/fake_tensorrt.py) that checks the call sequence and the profiles; only a Jetson run proves the rest.
Preparing the graph imports the op registry (torch); nothing else here does.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from quamba_edge._fs import file_sha256
from quamba_edge.export.info import ExportInfo, read_export_info

from .backends.base import BackendUnavailableError

__all__ = ["ENGINE_FILE", "SIDECAR_FILE", "PLUGIN_LIB", "EngineError", "build_engine", "check_engine",
           "find_plugin_library", "import_tensorrt"]

ENGINE_FILE = "model.engine"
SIDECAR_FILE = "model.engine.json"
PLUGIN_LIB = "libquamba_trt_plugins.so"
PLUGIN_ENV = "QUAMBA_TRT_PLUGINS"


class EngineError(ValueError):
    """An engine that does not fit: built for another plugin library / TensorRT / export, or asked for a
    batch or prompt longer than its profiles. The message says what to rebuild."""


def import_tensorrt() -> Any:
    try:
        import tensorrt
    except ImportError as e:
        raise BackendUnavailableError(
            "TensorRT is not installed here: on a Jetson it comes with JetPack (`sudo apt install "
            "python3-libnvinfer`; see jetson/README.md), on an x86 GPU machine `pip install tensorrt`") from e
    return tensorrt


def find_plugin_library(explicit: str | os.PathLike | None = None) -> Path:
    """``explicit``, else ``$QUAMBA_TRT_PLUGINS``, else the CMake build folder of this checkout
    (``build/plugins/trt``, where the README's and jetson/setup.sh's cmake commands put it). Raises
    FileNotFoundError saying how to build it."""
    root = Path(__file__).resolve().parents[2]
    cands = [Path(explicit).expanduser()] if explicit else []
    if not explicit and os.environ.get(PLUGIN_ENV):
        cands.append(Path(os.environ[PLUGIN_ENV]).expanduser())
    if not cands:
        cands += [root / "build" / "plugins" / "trt" / PLUGIN_LIB, root / "build" / "plugins" / PLUGIN_LIB]
    for c in cands:
        if c.is_file():
            return c.absolute()
    raise FileNotFoundError(
        f"no TensorRT plugin library ({', '.join(str(c) for c in cands)}); build it on this machine: "
        "`cmake -S plugins -B build/plugins -DQUAMBA_BUILD_TRT=ON && cmake --build build/plugins` "
        f"(jetson/setup.sh does this on a Jetson), or pass --plugins / set {PLUGIN_ENV}")


def _profiles(info: ExportInfo, max_batch: int, max_seq: int) -> list[dict[str, tuple[tuple[int, ...], ...]]]:
    """(min, opt, max) shapes of every input for the prefill and the decode profile."""
    def states(b_min: int, b_opt: int, b_max: int) -> dict[str, tuple[tuple[int, ...], ...]]:
        out = {}
        for s in info.states:
            tail = tuple(int(d) for d in s.shape[1:])
            out[s.input_name] = ((b_min, *tail), (b_opt, *tail), (b_max, *tail))
        return out

    seq_opt = min(max_seq, 512)
    prefill = {"input_ids": ((1, 2), (1, max(2, seq_opt)), (max_batch, max_seq)), **states(1, 1, max_batch)}
    decode = {"input_ids": ((1, 1), (max_batch, 1), (max_batch, 1)), **states(1, max_batch, max_batch)}
    return [prefill, decode] if max_seq >= 2 else [decode]


def _prepared_graph(info: ExportInfo, folder: Path) -> Path:
    """The exported graph as TensorRT's parser must see it, written under ``folder``: per-tensor scales folded
    into plugin fields and packed int4 weights retyped to int8 (``ops.trt_fields.prepare_trt_graph``; the
    export itself stays as ONNX Runtime runs it). The registry it reads needs torch."""
    try:
        import onnx

        from quamba_edge.ops.trt_fields import prepare_trt_graph
    except ImportError as e:
        raise BackendUnavailableError(
            f"preparing the graph for TensorRT needs onnx and torch (the op registry): {e}; install them "
            "(JetPack's torch on a Jetson) or build on a machine that has them") from e
    model = prepare_trt_graph(onnx.load(str(info.onnx_path)))
    out = folder / info.onnx_path.name
    # weights as external data: the graph may pass protobuf's 2 GB limit; the parser finds them beside it
    onnx.save(model, str(out), save_as_external_data=True, location=out.name + ".data")
    return out


def _progress_monitor(trt: Any, enabled: bool) -> Any:
    """A TensorRT IProgressMonitor drawing tqdm bars per build phase (None where unavailable)."""
    base = getattr(trt, "IProgressMonitor", None)
    if not enabled or base is None:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None

    class _Bars(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            base.__init__(self)
            self._bars: dict[str, Any] = {}

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            self._bars[phase_name] = tqdm(total=num_steps, desc=phase_name, leave=False)

        def step_complete(self, phase_name: str, step: int) -> bool:
            bar = self._bars.get(phase_name)
            if bar is not None:
                bar.update(1)
            return True  # False would cancel the build

        def phase_finish(self, phase_name: str) -> None:
            bar = self._bars.pop(phase_name, None)
            if bar is not None:
                bar.close()

    return _Bars()


def _write_atomically(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def build_engine(export_dir: str | os.PathLike, *, max_batch: int = 1, max_seq: int = 2048,
                 plugins: str | os.PathLike | None = None, workspace_mb: int | None = None,
                 timing_cache: str | os.PathLike | None = None, progress: bool = True,
                 trt: Any = None) -> Path:
    """Build ``EXPORT_DIR/model.engine`` (+ sidecar) from an fp16 export; returns the engine path.

    ``trt``: the tensorrt module (tests pass a fake); default ``import tensorrt``."""
    if max_batch < 1 or max_seq < 1:
        raise ValueError(f"max_batch and max_seq must be >= 1, got {max_batch}, {max_seq}")
    if workspace_mb is not None and workspace_mb < 1:
        raise ValueError(f"workspace must be >= 1 MB, got {workspace_mb}")
    info = read_export_info(export_dir)
    if info.act_dtype != "float16":
        raise ValueError(f"{info.path} was exported for ONNX Runtime ({info.act_dtype} activations); TensorRT "
                         "takes the fp16 export: `quamba-edge export ARTIFACT --dtype fp16 --out DIR`")
    trt = trt if trt is not None else import_tensorrt()
    lib = find_plugin_library(plugins) if info.custom_ops else None
    logger = trt.Logger(trt.Logger.WARNING)
    if lib is not None:
        trt.init_libnvinfer_plugins(logger, "")
        trt.get_plugin_registry().load_library(str(lib))
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    with tempfile.TemporaryDirectory(prefix=".trt-graph-", dir=info.path) as tmp:
        graph = _prepared_graph(info, Path(tmp)) if info.custom_ops else info.onnx_path
        ok = parser.parse_from_file(str(graph))
    if not ok:
        errs = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        hint = ("; is the plugin library the one built from this checkout?" if lib is not None else "")
        raise EngineError(f"TensorRT's ONNX parser rejected {info.onnx_path}: " + " | ".join(errs) + hint)
    config = builder.create_builder_config()
    if workspace_mb is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    monitor = _progress_monitor(trt, progress)
    if monitor is not None:
        config.progress_monitor = monitor
    cache_path = Path(timing_cache).expanduser() if timing_cache else None
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path and cache_path.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    profiles = _profiles(info, max_batch, max_seq)
    names = {network.get_input(i).name for i in range(network.num_inputs)}
    for shapes in profiles:
        prof = builder.create_optimization_profile()
        for name, (lo, opt, hi) in shapes.items():
            if name not in names:
                raise EngineError(f"the parsed network has no input {name!r} that {info.path}/export.json "
                                  "declares; re-export the model")
            prof.set_shape(name, lo, opt, hi)
        config.add_optimization_profile(prof)
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise EngineError("TensorRT could not build the engine (its log above says why); try a larger "
                          "--workspace or smaller --max-batch / --max-seq")
    out = info.path / ENGINE_FILE
    sidecar = {
        "engine": ENGINE_FILE, "built": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "tensorrt": str(getattr(trt, "__version__", "?")),
        "plugin_library": None if lib is None else {"path": str(lib), "sha256": file_sha256(lib)},
        "op_registry_version": info.op_registry_version, "onnx_sha256": file_sha256(info.onnx_path),
        "precision": info.precision, "max_batch": max_batch, "max_seq": max_seq,
        "profiles": [{k: [list(s) for s in v] for k, v in p.items()} for p in profiles],
    }
    _write_atomically(out, bytes(engine))
    _write_atomically(info.path / SIDECAR_FILE, (json.dumps(sidecar, indent=1) + "\n").encode())
    if cache_path is not None:
        _write_atomically(cache_path, bytes(config.get_timing_cache().serialize()))
    return out


def check_engine(export_dir: str | os.PathLike, *, batch: int = 1, seq_len: int = 1,
                 plugins: str | os.PathLike | None = None, trt_version: str | None = None) -> dict[str, Any]:
    """The sidecar of ``EXPORT_DIR/model.engine`` after checking it against what is installed (plugin library
    hash, TensorRT version, the ONNX file) and that ``batch`` x ``seq_len`` fits its profiles. Raises
    :class:`EngineError` naming what to rebuild."""
    info = read_export_info(export_dir)
    side_path = info.path / SIDECAR_FILE
    if not (info.path / ENGINE_FILE).is_file() or not side_path.is_file():
        raise EngineError(f"{info.path} has no engine; build it on this device: `quamba-edge build {info.path}`")
    side = json.loads(side_path.read_text())
    rebuild = f"rebuild it: `quamba-edge build {info.path} --max-batch B --max-seq L`"
    if trt_version is not None and side.get("tensorrt") != trt_version:
        raise EngineError(f"the engine was built with TensorRT {side.get('tensorrt')}, TensorRT {trt_version} is "
                          f"installed; {rebuild}")
    if side.get("onnx_sha256") != file_sha256(info.onnx_path):
        raise EngineError(f"{info.onnx_path} changed since the engine was built; {rebuild}")
    if side.get("plugin_library"):
        lib = find_plugin_library(plugins)
        if file_sha256(lib) != side["plugin_library"]["sha256"]:
            raise EngineError(f"the engine was built against another plugin library than {lib}; {rebuild}")
    if batch > side["max_batch"]:
        raise EngineError(f"batch {batch} is larger than the engine's profile (max batch {side['max_batch']}); "
                          f"{rebuild}")
    if seq_len > side["max_seq"]:
        raise EngineError(f"a prompt chunk of {seq_len} tokens is longer than the engine's profile (max "
                          f"{side['max_seq']}); feed it in chunks (prefill_chunk=) or {rebuild}")
    return side
