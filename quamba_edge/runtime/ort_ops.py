"""Run exported graphs in ONNX Runtime: every quamba custom op as an onnxruntime-extensions PyOp.

Each registry record's ``impl`` (the reference op, torch on CPU) is registered once per dtype variant
of its type variables (onnxruntime-extensions types every PyOp input and output, and PyOps live in
the ``ai.onnx.contrib`` domain). Before a session is created, a copy of the graph has each ``quamba``
node renamed to its variant (``QuantSSD`` with an int8 state -> ``QuantSSD__S_int8`` in
``ai.onnx.contrib``). All variants are registered before the first InferenceSession of the process
(a late registration was seen to crash onnxruntime-extensions). PyOps cannot return float16, so this
path runs the fp32 export (``quamba-edge export --dtype fp32``).

This module needs torch (the reference ops); the TensorRT runtime does not use it.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from ..export.info import ExportError, ExportInfo, read_export_info

PYOP_DOMAIN = "ai.onnx.contrib"
_LOCK = threading.Lock()
_REGISTERED: dict[str, Any] = {}  # variant op_type -> Opdef


def _variant_name(op: str, binding: dict[str, str]) -> str:
    extra = sorted((k, v) for k, v in binding.items() if k != "T")
    return op + "".join(f"__{k}_{v}" for k, v in extra)


def _np_to_torch(a: np.ndarray):
    import torch

    return torch.from_numpy(np.ascontiguousarray(a))


def _make_pyop(rec, binding: dict[str, str]):
    from onnxruntime_extensions import PyCustomOpDef, onnx_op

    dt = {"int8": PyCustomOpDef.dt_int8, "uint8": PyCustomOpDef.dt_uint8, "int32": PyCustomOpDef.dt_int32,
          "int64": PyCustomOpDef.dt_int64, "float16": PyCustomOpDef.dt_float16,
          "float32": PyCustomOpDef.dt_float}
    at = {"int": PyCustomOpDef.dt_int64, "float": PyCustomOpDef.dt_float, "string": PyCustomOpDef.dt_string}
    attrs = {a.name: at[a.type] for a in rec.attrs}
    attrs.update(plugin_version=PyCustomOpDef.dt_string, plugin_namespace=PyCustomOpDef.dt_string)
    out_dtypes = [np.dtype(rec.resolve(p.dtype, binding)) for p in rec.outputs]
    in_dtypes = [np.dtype(rec.resolve(p.dtype, binding)) for p in rec.inputs]

    def run(*arrays: np.ndarray, **kw: Any):
        import torch

        kw = {k: v for k, v in kw.items() if k not in ("plugin_version", "plugin_namespace")}
        # float16 inputs arrive as float32 (a Cast inserted by prepare_model): back to float16, exactly
        args = [_np_to_torch(a.astype(d, copy=False)) for a, d in zip(arrays, in_dtypes)]
        with torch.no_grad():
            outs = rec.impl(*args, **kw)
        res = tuple(o.detach().cpu().numpy().astype(d, copy=False) for o, d in zip(outs, out_dtypes))
        return res if len(res) > 1 else res[0]

    if any(d == np.float16 for d in out_dtypes):
        raise ValueError(f"{rec.name}: onnxruntime-extensions PyOps cannot return float16")
    return onnx_op(op_type=_variant_name(rec.name, binding),
                   inputs=[dt[_pyop_input_type(str(d))] for d in in_dtypes],
                   outputs=[dt[str(d)] for d in out_dtypes], attrs=attrs)(run)


def _pyop_input_type(dtype: str) -> str:
    """PyOps take no float16 (the process aborts): such inputs travel as float32 through a Cast."""
    return "float32" if dtype == "float16" else dtype


def register_all() -> None:
    """Register every record's fp32 variants as PyOps (idempotent; call before the first session)."""
    from ..ops import registry

    with _LOCK:
        for rec in registry.records().values():
            if rec.impl is None:
                continue
            for binding in rec.variants("float32"):
                name = _variant_name(rec.name, binding)
                if name not in _REGISTERED:
                    _REGISTERED[name] = _make_pyop(rec, binding)


def _elem_types(model) -> dict[str, str]:
    import onnx

    out = {}
    vals = [*model.graph.input, *model.graph.output, *model.graph.value_info]
    for v in vals:
        if v.type.HasField("tensor_type"):
            out[v.name] = onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type).name
    for t in model.graph.initializer:
        out[t.name] = onnx.helper.tensor_dtype_to_np_dtype(t.data_type).name
    for n in model.graph.node:  # Constant nodes
        if n.op_type == "Constant" and n.attribute and n.attribute[0].type == onnx.AttributeProto.TENSOR:
            out[n.output[0]] = onnx.helper.tensor_dtype_to_np_dtype(n.attribute[0].t.data_type).name
    return out


def prepare_model(model, info: ExportInfo | None = None):
    """Rewrite a loaded ModelProto (in place) for the PyOps; returns it. Raises ExportError when the
    graph needs an op or variant this installation does not implement, or was exported with another
    op-registry version."""
    from ..ops import registry

    if info is not None and info.op_registry_version != registry.REGISTRY_VERSION:
        raise ExportError(
            f"{info.path} was exported with op registry v{info.op_registry_version}, but this quamba-edge "
            f"implements v{registry.REGISTRY_VERSION}; re-export the artifact with this version "
            "(`quamba-edge export ARTIFACT --out DIR`)")
    import onnx

    recs = registry.records()
    types = _elem_types(model)
    casts = []
    for node in model.graph.node:
        if node.domain != registry.DOMAIN:
            continue
        rec = recs.get(node.op_type)
        if rec is None or rec.impl is None:
            raise ExportError(f"the graph uses custom op {registry.DOMAIN}::{node.op_type}, which has no "
                              f"implementation in this quamba-edge (registry v{registry.REGISTRY_VERSION}: "
                              f"{', '.join(recs)}); upgrade quamba-edge or re-export")
        version = next((a.s.decode() for a in node.attribute if a.name == "plugin_version"), None)
        if version != rec.version:
            raise ExportError(f"{node.op_type} node {node.name!r} has plugin_version {version!r}; this "
                              f"quamba-edge implements version {rec.version!r}")
        binding = {"T": "float32"}
        for port, name in [*zip(rec.inputs, node.input), *zip(rec.outputs, node.output)]:
            if port.dtype in rec.type_vars:
                got = types.get(name)
                if got is None:
                    raise ExportError(f"cannot tell the dtype of {node.op_type} port {port.name} ({name!r})")
                binding[port.dtype] = got
            elif port.dtype == "T" and types.get(name, "float32") != "float32":
                raise ExportError(f"{node.op_type} has {types[name]} activations: ONNX Runtime runs the fp32 "
                                  "export only (`quamba-edge export ... --dtype fp32`)")
        node.op_type = _variant_name(rec.name, binding)
        node.domain = PYOP_DOMAIN
        for i, port in enumerate(rec.inputs):
            if rec.resolve(port.dtype, binding) == "float16":
                cast_out = f"{node.input[i]}__as_f32_for_{node.name or node.output[0]}"
                casts.append(onnx.helper.make_node("Cast", [node.input[i]], [cast_out], to=onnx.TensorProto.FLOAT))
                node.input[i] = cast_out
    if casts:  # graph nodes must stay topologically sorted: the casts read only initializers/inputs,
        # so putting them first is valid unless an fp16 input is computed inside the graph
        computed = {o for n in model.graph.node for o in n.output}
        if any(c.input[0] in computed for c in casts):
            raise ExportError("a float16 input of a custom op is computed in the graph; export with --dtype fp32")
        nodes = casts + list(model.graph.node)
        del model.graph.node[:]
        model.graph.node.extend(nodes)
    if not any(o.domain == PYOP_DOMAIN for o in model.opset_import):
        model.opset_import.add(domain=PYOP_DOMAIN, version=1)
    return model


def make_session(info: ExportInfo | str | Path, threads: int | None = None):
    """An ``onnxruntime.InferenceSession`` (CPU) for an export dir (its fp32 graph)."""
    import onnx
    import onnxruntime as ort
    from onnxruntime_extensions import get_library_path

    if not isinstance(info, ExportInfo):
        info = read_export_info(info)
    register_all()
    model = onnx.load(str(info.onnx_path))
    prepare_model(model, info)
    missing = sorted({n.op_type for n in model.graph.node if n.domain == PYOP_DOMAIN} - set(_REGISTERED))
    if missing:
        raise ExportError(f"no ONNX Runtime implementation for {', '.join(missing)}")
    so = ort.SessionOptions()
    so.register_custom_ops_library(get_library_path())
    if threads:
        so.intra_op_num_threads = int(threads)
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def torch_feeds(input_ids, state) -> dict[str, np.ndarray]:
    """Session inputs from torch ``input_ids [B, L]`` and a ``ModelState`` (graph layout in export/info.py);
    for comparing a session with the torch model."""
    feeds = {"input_ids": input_ids.numpy()}
    for i, (conv, ssm) in enumerate(zip(state.conv, state.ssm)):
        feeds[f"conv_state.{i}"], feeds[f"ssm_state.{i}"] = conv.numpy(), ssm.numpy()
    return feeds


def torch_state(outputs: list):
    """The ``ModelState`` in a session's outputs (``logits`` first, then conv/ssm per layer)."""
    import torch

    from ..models.state import ModelState

    states = [torch.from_numpy(o) for o in outputs[1:]]
    return ModelState(states[0::2], states[1::2])
