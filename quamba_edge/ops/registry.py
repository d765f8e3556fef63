"""The custom-op registry: one :class:`OpRecord` per ONNX custom op, declared next to its reference.

A record is the single description every implementation follows:

1. the ONNX exporter (:func:`emit`): node type, domain ``quamba``, input order, attributes incl.
   ``plugin_version`` and ``plugin_namespace`` (the TensorRT ONNX parser finds a plugin creator by
   op_type + ``plugin_version`` + ``plugin_namespace``);
2. the reference implementation (``impl``: torch tensors in ONNX input order + attributes -> outputs),
   which ONNX Runtime runs as a PyOp and the kernels are tested against;
3. the TensorRT plugin creator's field list (``attrs``; INT arrives as INT32, FLOAT as FLOAT32, STRING as
   CHAR in TensorRT; onnxruntime-extensions PyOps take int64 / float / string, so lists are avoided);
4. the docs table in plugins/OPS.md (:func:`render_markdown`).

Dtypes: a port's dtype is a concrete ONNX type name (``int8``, ``float32``...) or a type variable:
``T`` is the activation dtype of the graph (float32 for ONNX Runtime, float16 for TensorRT) and the
others (``Y``, ``S``, ``W``) are listed in ``type_vars``. Optional things are never absent: a missing
bias or D is passed as zeros (adding 0.0 is exact), so every node has a fixed arity.

A record's ``version`` is never changed in place: new behaviour gets a new version (TensorRT OSS
convention). ``REGISTRY_VERSION`` is bumped when any record changes; exported models carry it and the
runtimes refuse a mismatch.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .._tracing import act_dtype, export_dtype, exporting, model_dtype  # noqa: F401  (re-exported)

DOMAIN = "quamba"
PLUGIN_NAMESPACE = "quamba"
REGISTRY_VERSION = 1
#: Attributes every node carries in addition to its own (strings: TensorRT passes them as CHAR fields).
PLUGIN_ATTRS = ("plugin_version", "plugin_namespace")

ATTR_TYPES = ("int", "float", "string")
ONNX_DTYPES = ("int8", "uint8", "int32", "int64", "float16", "float32")


@dataclass(frozen=True)
class Port:
    """One input or output: ``dtype`` is an ONNX type name or a type variable; ``shape`` a rule."""

    name: str
    dtype: str
    shape: str
    doc: str = ""


@dataclass(frozen=True)
class Attr:
    name: str
    type: str  # "int" | "float" | "string"
    default: Any = None  # None: required
    doc: str = ""


@dataclass(frozen=True)
class OpRecord:
    """One custom op (module docstring)."""

    name: str
    inputs: tuple[Port, ...]
    outputs: tuple[Port, ...]
    attrs: tuple[Attr, ...]
    reason: str  # why it is a custom op rather than standard ONNX
    reference: str  # dotted name of the reference function(s)
    impl: Callable[..., Any] | None = None  # (torch tensors in input order, **attrs) -> tuple of tensors
    type_vars: dict[str, tuple[str, ...]] = field(default_factory=dict)
    version: str = "1"
    kernel: str = ""  # plugins/kernels/<file>.cu (empty: no kernel yet)

    def __post_init__(self) -> None:
        for a in self.attrs:
            if a.type not in ATTR_TYPES:
                raise ValueError(f"{self.name}.{a.name}: attribute type {a.type!r} not in {ATTR_TYPES}")
        for p in (*self.inputs, *self.outputs):
            if p.dtype not in ONNX_DTYPES and p.dtype != "T" and p.dtype not in self.type_vars:
                raise ValueError(f"{self.name}.{p.name}: dtype {p.dtype!r} is neither an ONNX type nor a type var")

    def attr_values(self, given: dict[str, Any]) -> dict[str, Any]:
        """Defaults filled in, unknown or missing attributes rejected, bools as ints."""
        names = {a.name for a in self.attrs}
        unknown = set(given) - names
        if unknown:
            raise ValueError(f"{self.name}: unknown attribute(s) {sorted(unknown)}; known: {sorted(names)}")
        out = {}
        for a in self.attrs:
            v = given.get(a.name, a.default)
            if v is None:
                raise ValueError(f"{self.name}: attribute {a.name!r} is required")
            out[a.name] = {"int": int, "float": float, "string": str}[a.type](v)
        return out

    def variants(self, act_dtype: str = "float32") -> list[dict[str, str]]:
        """Every assignment of the type variables (``T`` fixed to ``act_dtype``)."""
        names = sorted(self.type_vars)
        out = []
        for combo in itertools.product(*(self.type_vars[n] for n in names)):
            out.append({"T": act_dtype, **{n: (act_dtype if v == "T" else v) for n, v in zip(names, combo)}})
        return out

    def resolve(self, dtype: str, binding: dict[str, str]) -> str:
        """A port dtype under ``binding`` (type var -> ONNX type name; a var bound to "T" follows T)."""
        v = binding.get(dtype, dtype)
        return binding["T"] if v == "T" else v


#: What stays standard ONNX, and why (rendered into plugins/OPS.md next to the custom ops).
STANDARD_ONNX: tuple[tuple[str, str, str], ...] = (
    ("float embedding (fp16 model, W8A8 of the quamba v1 recipe)", "Gather",
     "TensorRT and ONNX Runtime gather natively"),
    ("float linear layers (fp16 model, fp lm_head, Mamba1 W4A16 dt_proj)", "MatMul (+ Add)",
     "native fp16 GEMM/GEMV in both runtimes"),
    ("float residual add + RMSNorm (fp16 model, W4A16 blocks)", "Add, Pow, ReduceMean, Sqrt, Div, Mul",
     "TensorRT fuses the normalization pattern; no quantization to fuse"),
    ("float causal conv1d with state (fp16 model, W4A16)", "Concat(state, x) -> Conv (group = C) -> Slice",
     "a depthwise Conv over the K-1 carried inputs is exact and length-dynamic"),
    ("int8 quantize without Hadamard", "Div, Round, Clip, Cast",
     "round-half-even + clamp are native elementwise ops"),
    ("Mamba2 dt (softplus + clamp), gated norm in W4A16, reshapes/splits", "standard elementwise / shape ops",
     "cheap elementwise work the runtimes fuse"),
)

_RECORDS: dict[str, OpRecord] = {}


def register(record: OpRecord) -> OpRecord:
    if record.name in _RECORDS and _RECORDS[record.name] is not record:
        raise ValueError(f"op {record.name!r} registered twice")
    _RECORDS[record.name] = record
    return record


def records() -> dict[str, OpRecord]:
    """All records, by op name (importing ``quamba_edge.ops`` registers them)."""
    from .. import ops  # noqa: F401  (the op modules register on import)

    return dict(sorted(_RECORDS.items()))


def get(name: str) -> OpRecord:
    recs = records()
    if name not in recs:
        raise KeyError(f"no custom op {name!r} in the quamba-edge op registry (v{REGISTRY_VERSION}); "
                       f"known: {', '.join(recs)}")
    return recs[name]


# ---- export ------------------------------------------------------------------------------------

def emit(name: str, inputs: Sequence[Any], attrs: dict[str, Any] | None = None,
         shapes: Sequence[Sequence[Any]] = (), binding: dict[str, str] | None = None) -> tuple[Any, ...]:
    """Emit one custom node while exporting; returns its outputs (fake tensors during tracing).

    ``inputs`` in the record's order (python floats become fp32 constants; tensors are cast to the
    port's dtype, so e.g. an fp16 norm weight becomes an fp32 initializer); ``shapes``: one shape per
    output; ``binding``: values of the record's type variables other than ``T`` (e.g. ``{"S": "int8"}``).
    """
    import torch

    rec = get(name)
    if len(inputs) != len(rec.inputs):
        raise ValueError(f"{name}: expected {len(rec.inputs)} inputs "
                         f"({', '.join(p.name for p in rec.inputs)}), got {len(inputs)}")
    if len(shapes) != len(rec.outputs):
        raise ValueError(f"{name}: expected {len(rec.outputs)} output shapes, got {len(shapes)}")
    act = act_dtype()
    bind = {"T": _onnx_name(act), **(binding or {})}
    missing = set(rec.type_vars) - set(bind)
    if missing:
        raise ValueError(f"{name}: bind the type variable(s) {sorted(missing)}")
    args = []
    for port, x in zip(rec.inputs, inputs):
        want = _torch_dtype(rec.resolve(port.dtype, bind))
        if not isinstance(x, torch.Tensor):
            x = torch.tensor(float(x) if want.is_floating_point else int(x), dtype=want)
        args.append(x if x.dtype == want else x.to(want))
    attr_vals = rec.attr_values(attrs or {})
    attr_vals.update(plugin_version=rec.version, plugin_namespace=PLUGIN_NAMESPACE)
    dtypes = [_torch_dtype(rec.resolve(p.dtype, bind)) for p in rec.outputs]
    outs = torch.onnx.ops.symbolic_multi_out(
        f"{DOMAIN}::{name}", args, attr_vals, dtypes=dtypes, shapes=[list(s) for s in shapes], version=1)
    back = model_dtype()
    return tuple(o.to(back) if o.dtype == act and act != back else o for o in outs)


def _torch_dtype(name: str) -> Any:
    import torch

    return {"int8": torch.int8, "uint8": torch.uint8, "int32": torch.int32, "int64": torch.int64,
            "float16": torch.float16, "float32": torch.float32}[name]


def _onnx_name(dtype: Any) -> str:
    return str(dtype).replace("torch.", "")


# ---- docs --------------------------------------------------------------------------------------


def render_markdown() -> str:
    """The op table of plugins/OPS.md (a test fails when the file is stale; regenerate with
    ``python -m quamba_edge.ops > plugins/OPS.md``)."""
    lines = [f"# Custom ops (registry v{REGISTRY_VERSION})", "",
             "Generated by `python -m quamba_edge.ops > plugins/OPS.md` from the records in `quamba_edge/ops/`; "
             "a test fails when this file is stale.", "",
             f"Every node: domain `{DOMAIN}`, attributes `plugin_version` (the record's version) and "
             f"`plugin_namespace` = `{PLUGIN_NAMESPACE}` (strings). `T` is the graph's activation dtype "
             "(float32 for ONNX Runtime, float16 for TensorRT).", "",
             "| op | version | inputs | outputs | attributes | kernel |",
             "| --- | --- | --- | --- | --- | --- |"]

    def ports(ps: Sequence[Port]) -> str:
        return "<br>".join(f"`{p.name}` {p.dtype} {p.shape}" for p in ps)

    for rec in records().values():
        attrs = "<br>".join(f"`{a.name}` {a.type}" + ("" if a.default is None else f" = {a.default}")
                            for a in rec.attrs) or "—"
        lines.append(f"| {rec.name} | {rec.version} | {ports(rec.inputs)} | {ports(rec.outputs)} | {attrs} | "
                     f"{('`' + rec.kernel + '`') if rec.kernel else '—'} |")
    lines += ["", "## Type variables and why each op is custom", ""]
    for rec in records().values():
        tv = "; ".join(f"`{k}` ∈ {{{', '.join(v)}}}" for k, v in rec.type_vars.items())
        lines.append(f"- **{rec.name}** (reference `{rec.reference}`){': ' + tv if tv else ''}. {rec.reason}")
    lines += ["", "## Standard ONNX (no plugin needed)", "", "| part | ONNX ops | why |", "| --- | --- | --- |"]
    lines += [f"| {what} | {how} | {why} |" for what, how, why in STANDARD_ONNX]
    lines.append("")
    return "\n".join(lines)
