"""What the TensorRT plugins (plugins/trt/) take from the op registry: fields, shapes, dtype variants.

``render_fields_header()`` renders ``plugins/trt/generated/fields.h`` (a test fails when the committed file
is stale; regenerate with ``python -m quamba_edge.ops --trt-fields > plugins/trt/generated/fields.h``).
Every op whose record names a CUDA kernel (``OpRecord.kernel``) gets a plugin, and the header gives it:

* name, ``plugin_version`` and namespace (what the ONNX parser looks the creator up by);
* its **fields**: the record's attributes (INT -> kINT32, FLOAT -> kFLOAT32, STRING -> kCHAR, as the
  parser passes them) with their defaults, then one kFLOAT32 **host-scale field** per per-tensor scale
  input (``float32 []``) that the kernel takes as a host float: the graph carries those scales as
  (constant) tensors that an enqueue cannot read without a device sync. ``fold_host_scales`` copies each
  such initializer into a node attribute of the same name, so the parser hands the value to the creator;
  the plugin refuses to be created without it (see plugins/trt/README.md). Ops whose kernels read a
  per-tensor scale from device memory (:data:`DEVICE_SCALES`: the linears' ``x_scale``) get no field for
  it: the tensor goes to the kernel as it is;
* input / output names and shape rules parsed from the record (``[B, L, E]``, ``[B, C, K-1]``, ``[]``;
  ``;``-separated alternatives), which the plugins check generically, and the output shapes as copies of
  input dimensions (what ``getOutputShapes`` returns). A dimension written as an expression
  (``ceil(K/2)``, ``ceil(K/group_size)``) is a symbol of its own, bound from the tensor; the op's plugin
  relates it to the others (it may depend on attributes);
* the dtype variants with ``T`` = float16 (the TensorRT graph's activation dtype) and uint8 carried as int8
  (:data:`TRT_CARRIER`: TensorRT has no uint8 plugin tensors; the packed int4 bytes travel unchanged):
  exactly what ``supportsFormatCombination`` accepts. :func:`prepare_trt_graph` makes the graph TensorRT
  parses agree (host scales folded, uint8 weight initializers retyped to int8);
* the +-1 base matrices of the Hadamard sizes the QuantHadamard record supports (12, 40), taken from
  ``quamba_edge.quant.hadamard`` so the plugin's online transform uses the entries fused offline.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from .registry import DOMAIN, PLUGIN_NAMESPACE, REGISTRY_VERSION, OpRecord, Port, records

#: The activation dtype of the TensorRT graph (``export_model(..., dtype="fp16")``).
TRT_ACT_DTYPE = "float16"
#: Registry attribute type -> TensorRT PluginFieldType (what the ONNX parser passes).
FIELD_KIND = {"int": "kINT32", "float": "kFLOAT32", "string": "kCHAR"}
DTYPE = {"int8": "kINT8", "float16": "kFLOAT16", "float32": "kFLOAT32", "int32": "kINT32", "int64": "kINT64"}
#: ONNX dtypes a TensorRT plugin cannot take, and what carries them instead. PluginTensorDesc: "kBOOL and
#: kUINT8 are not supported" (NvInferRuntimePlugin.h, TensorRT 10.3 and 10.16), and a uint8 -> int8 cast
#: layer does not exist either; the packed int4 weights and tables (uint8 in the records, for ONNX Runtime) are the
#: same bytes as int8, so the graph handed to TensorRT retypes those initializers (prepare_trt_graph).
TRT_CARRIER = {"uint8": "int8"}
#: Per-tensor scale inputs (``float32 []``) that the op's kernel reads from device memory (its C-ABI params
#: take ``const float*``): no host-scale field, nothing to fold. tests/test_trt_plugins_cpu.py checks this
#: table against the kernels' headers.
DEVICE_SCALES: dict[str, frozenset[str]] = {
    "W8A8Linear": frozenset({"x_scale"}),
    "W4A8Linear": frozenset({"x_scale"}),
}
MAX_RANK = 8
#: Hadamard bases the QuantHadamard record supports (sizes 2^k, 12*2^k, 40*2^k; base 1 needs no table).
HADAMARD_BASES = (12, 40)


@dataclass(frozen=True)
class Dim:
    symbol: str | None  # None: a literal
    offset: int  # value = symbol + offset (or the literal)


@dataclass(frozen=True)
class Field:
    name: str
    kind: str  # kINT32 | kFLOAT32 | kCHAR
    source: str  # "attribute" | "host_scale"
    default: Any  # None: required
    input_index: int  # host_scale: the input it stands for, else -1


def plugin_ops() -> list[OpRecord]:
    """The records that get a TensorRT plugin: those with a CUDA kernel, by op name."""
    return [r for r in records().values() if r.kernel]


def is_scalar_scale(port: Port) -> bool:
    """A per-tensor fp32 scale (``float32 []``)."""
    return port.dtype == "float32" and parse_shapes(port.shape)[0] == ()


def is_host_scale(rec: OpRecord, port: Port) -> bool:
    """A per-tensor fp32 scale the op's kernel takes as a host float (every one not in DEVICE_SCALES)."""
    return is_scalar_scale(port) and port.name not in DEVICE_SCALES.get(rec.name, frozenset())


def host_scale_inputs(rec: OpRecord) -> list[int]:
    return [i for i, p in enumerate(rec.inputs) if is_host_scale(rec, p)]


def trt_dtype(onnx_dtype: str) -> str:
    """The dtype a plugin tensor has in TensorRT for an ONNX dtype of the record (TRT_CARRIER)."""
    return TRT_CARRIER.get(onnx_dtype, onnx_dtype)


def plugin_fields(rec: OpRecord) -> list[Field]:
    """The creator's fields: the attributes, then one host-scale field per scalar scale input."""
    out = [Field(a.name, FIELD_KIND[a.type], "attribute", a.default, -1) for a in rec.attrs]
    for i in host_scale_inputs(rec):
        out.append(Field(rec.inputs[i].name, "kFLOAT32", "host_scale", None, i))
    names = [f.name for f in out]
    if len(set(names)) != len(names):
        raise ValueError(f"{rec.name}: an attribute and a scale input share a name: {names}")
    return out


_TOKEN = re.compile(r"^(?:(?P<sym>[A-Za-z_]\w*)\s*(?:(?P<sign>[-+])\s*(?P<off>\d+))?|(?P<lit>\d+)"
                    r"|(?P<expr>ceil\(\s*[A-Za-z_]\w*\s*/\s*\w+\s*\)))$")


def _split_alternatives(shape: str) -> list[str]:
    """Split at the ``;`` outside parentheses (``"[N] (per row; ignored when ...)"`` is one rule)."""
    parts, depth, cur = [], 0, ""
    for ch in shape:
        depth += (ch == "(") - (ch == ")")
        if ch == ";" and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    return [*parts, cur]


def parse_shapes(shape: str) -> list[tuple[Dim, ...]]:
    """``"[B, C, K-1]"`` -> one tuple of Dims; ``"[H, P, N] (int8 state); [] ignored"`` -> alternatives.

    Text after each bracket group is documentation. Every alternative must start with a bracket group. An
    expression dimension (``ceil(K/2)``) becomes a symbol named by its text, with whitespace removed."""
    alts = []
    for part in _split_alternatives(shape):
        m = re.match(r"\s*[^\[]*?\[([^\]]*)\]", part)
        if m is None:
            raise ValueError(f"shape rule {shape!r}: no [..] group in {part!r}")
        body = m.group(1).strip()
        dims = []
        for tok in ([t.strip() for t in body.split(",")] if body else []):
            t = _TOKEN.match(tok)
            if t is None:
                raise ValueError(f"shape rule {shape!r}: cannot parse dimension {tok!r}")
            if t.group("lit") is not None:
                dims.append(Dim(None, int(t.group("lit"))))
            elif t.group("expr") is not None:
                dims.append(Dim(re.sub(r"\s+", "", t.group("expr")), 0))
            else:
                off = int(t.group("off") or 0) * (-1 if t.group("sign") == "-" else 1)
                dims.append(Dim(t.group("sym"), off))
        if len(dims) > MAX_RANK:
            raise ValueError(f"shape rule {shape!r}: rank > {MAX_RANK}")
        alts.append(tuple(dims))
    return alts


def symbols(rec: OpRecord) -> list[str]:
    seen: list[str] = []
    for p in (*rec.inputs, *rec.outputs):
        for alt in parse_shapes(p.shape):
            for d in alt:
                if d.symbol is not None and d.symbol not in seen:
                    seen.append(d.symbol)
    return seen


def output_dim_sources(rec: OpRecord) -> list[list[tuple[int, int, int]]]:
    """Per output, per dim: (input index, input dim, offset) -- the output dim is that input dim plus the
    offset (getOutputShapes copies input dimension expressions). Inputs with alternative shapes are not
    used as sources."""
    out = []
    for o in rec.outputs:
        alts = parse_shapes(o.shape)
        if len(alts) != 1:
            raise ValueError(f"{rec.name}.{o.name}: an output needs exactly one shape rule")
        dims = []
        for d in alts[0]:
            if d.symbol is None:
                raise ValueError(f"{rec.name}.{o.name}: literal output dims are not supported")
            src = None
            for i, p in enumerate(rec.inputs):
                ins = parse_shapes(p.shape)
                if len(ins) != 1:
                    continue
                for j, di in enumerate(ins[0]):
                    if di.symbol == d.symbol and src is None:
                        src = (i, j, d.offset - di.offset)
            if src is None:
                raise ValueError(f"{rec.name}.{o.name}: dimension {d.symbol} appears in no input shape")
            dims.append(src)
        out.append(dims)
    return out


def variants(rec: OpRecord) -> list[list[str]]:
    """Each dtype variant (T = float16, uint8 carried as int8) as the dtypes of inputs then outputs, in
    order, de-duplicated."""
    rows: list[list[str]] = []
    for b in rec.variants(TRT_ACT_DTYPE):
        row = [trt_dtype(rec.resolve(p.dtype, b)) for p in (*rec.inputs, *rec.outputs)]
        if row not in rows:
            rows.append(row)
    return rows


# ---- rendering ---------------------------------------------------------------------------------------------


def _ident(name: str) -> str:
    if not re.match(r"^[A-Za-z_]\w*$", name):
        raise ValueError(f"{name!r} is not a C++ identifier")
    return name


def symbol_ident(symbol: str) -> str:
    """The C++ enumerator of a shape symbol: the symbol itself, or an expression's text with every run of
    other characters as one ``_`` (``ceil(K/2)`` -> ``ceil_K_2``)."""
    return _ident(re.sub(r"\W+", "_", symbol).strip("_"))


def _cstr(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _num(v: Any) -> str:
    v = float(v)
    if math.isinf(v):
        return "kInf" if v > 0 else "-kInf"
    return repr(v)


def _shape_spec(alts: list[tuple[Dim, ...]], syms: list[str]) -> str:
    def one(alt: tuple[Dim, ...]) -> str:
        dims = ", ".join(f"{{{syms.index(d.symbol) if d.symbol else -1}, {d.offset}}}" for d in alt)
        return f"{{{len(alt)}, {{{dims}}}}}"

    return f"{len(alts)}, {{{', '.join(one(a) for a in alts)}}}"


def _hadamard_section() -> list[str]:
    import torch

    from ..quant.hadamard import base_hadamard

    lines = ["// +-1 base matrices H_b of the QuantHadamard sizes b * 2^k (quamba_edge.quant.hadamard.base_hadamard);",
             "// the orthonormal matrix is M = kron(H_b, H_{2^k}) * fl32(1 / sqrt(n)), the kernel's base factor",
             "// M[i * 2^k, j * 2^k] = H_b[i][j] * fl32(1 / sqrt(n)).",
             f"inline constexpr int32_t kHadamardBases[] = {{{', '.join(str(b) for b in HADAMARD_BASES)}}};"]
    for b in HADAMARD_BASES:
        h = base_hadamard(b, torch.int8).tolist()
        rows = ",\n    ".join(", ".join(f"{v:2d}" for v in row) for row in h)
        lines.append(f"inline constexpr int8_t kHadamardBase{b}[{b} * {b}] = {{\n    {rows}}};")
    lines.append("")
    return lines


def render_fields_header() -> str:
    ops = plugin_ops()
    L = [
        "// GENERATED from the op registry (quamba_edge/ops/, registry "
        f"v{REGISTRY_VERSION}) by",
        "//   python -m quamba_edge.ops --trt-fields > plugins/trt/generated/fields.h",
        "// Do not edit: a test fails when this file is stale. quamba_edge/ops/trt_fields.py says what each part is.",
        "#pragma once",
        "",
        "#include <cstdint>",
        "#include <limits>",
        "",
        "namespace quamba_trt {",
        "namespace gen {",
        "",
        f"inline constexpr int32_t kRegistryVersion = {REGISTRY_VERSION};",
        f"inline constexpr char kNamespace[] = {_cstr(PLUGIN_NAMESPACE)};  // ONNX domain {_cstr(DOMAIN)}",
        f"inline constexpr int32_t kMaxRank = {MAX_RANK};",
        "inline constexpr float kInf = std::numeric_limits<float>::infinity();",
        "",
        "// Plugin tensor dtypes: the record's T is float16, its uint8 (packed int4 weights) travels as kINT8",
        "// (TensorRT plugins take no uint8 tensors; prepare_trt_graph retypes those initializers, same bytes).",
        "enum class DType : int32_t { kINT8, kFLOAT16, kFLOAT32, kINT32, kINT64 };",
        "enum class FieldKind : int32_t { kINT32, kFLOAT32, kCHAR };",
        "// kAttribute: a node attribute of the record; kHostScale: a per-tensor scale input folded into an",
        "// attribute of the same name (quamba_edge.ops.trt_fields.fold_host_scales), read on the host.",
        "enum class FieldSource : int32_t { kAttribute, kHostScale };",
        "",
        "struct FieldSpec {",
        "  const char* name;",
        "  FieldKind kind;",
        "  FieldSource source;",
        "  bool required;",
        "  double default_number;       // numeric default (when not required)",
        "  const char* default_string;  // kCHAR default (when not required)",
        "  int32_t input;               // kHostScale: the input index it stands for; else -1",
        "};",
        "struct DimSpec {",
        "  int32_t symbol;  // index into the op's symbols (ceil(K/2) etc.: a symbol the op checks); -1: a literal",
        "  int32_t offset;  // dim = value(symbol) + offset (the literal when symbol is -1)",
        "};",
        "struct ShapeSpec {",
        "  int32_t rank;",
        "  DimSpec dims[kMaxRank];",
        "};",
        "struct PortSpec {",
        "  const char* name;",
        "  const char* rule;     // the record's shape rule, for messages",
        "  int32_t nb_shapes;    // alternatives (e.g. [H, P, N] for an int8 state, [] for a float state)",
        "  ShapeSpec shapes[2];",
        "};",
        "struct DimSource {",
        "  int32_t input, dim, offset;  // output dim = input's dim + offset",
        "};",
        "struct OpSpec {",
        "  const char* name;",
        "  const char* version;",
        "  const char* module;  // quamba_edge/ops/<module>.py, plugins/trt/<module>.cpp",
        "  int32_t nb_inputs, nb_outputs, nb_fields, nb_symbols, nb_variants;",
        "  const PortSpec* inputs;",
        "  const PortSpec* outputs;",
        "  const FieldSpec* fields;",
        "  const char* const* symbols;",
        "  const DType* variants;       // nb_variants rows of nb_inputs + nb_outputs dtypes (T = float16)",
        "  const DimSource* out_dims;   // nb_outputs rows of kMaxRank",
        "};",
        "",
    ]
    names = []
    for rec in ops:
        syms = symbols(rec)
        if len({symbol_ident(x) for x in syms}) != len(syms):
            raise ValueError(f"{rec.name}: shape symbols {syms} map to clashing C++ names")
        fields = plugin_fields(rec)
        module = rec.kernel.removesuffix(".cu")
        n_io = len(rec.inputs) + len(rec.outputs)
        var = variants(rec)
        dsrc = output_dim_sources(rec)
        ns = _ident(rec.name)
        names.append(ns)
        L += [f"// ---- {rec.name} (quamba_edge/ops/{module}.py, kernel plugins/kernels/{rec.kernel}) ----",
              f"namespace {ns} {{",
              f"inline constexpr char kName[] = {_cstr(rec.name)};",
              f"inline constexpr char kVersion[] = {_cstr(rec.version)};",
              f"inline constexpr char kModule[] = {_cstr(module)};",
              "namespace inputs {",
              f"enum : int32_t {{ {', '.join(_ident(p.name) for p in rec.inputs)}, kCount }};",
              "}",
              "namespace outputs {",
              f"enum : int32_t {{ {', '.join(_ident(p.name) for p in rec.outputs)}, kCount }};",
              "}",
              "namespace syms {",
              f"enum : int32_t {{ {', '.join(symbol_ident(s) for s in syms)}, kCount }};",
              "}",
              "namespace fields {",
              f"enum : int32_t {{ {', '.join(_ident(f.name) for f in fields)}, kCount }};" if fields
              else "enum : int32_t { kCount };",
              "}",
              f"inline constexpr const char* kSymbols[] = {{{', '.join(_cstr(s) for s in syms)}}};"]
        frows = []
        for f in fields:
            req = f.default is None
            dnum = "0.0" if req or f.kind == "kCHAR" else _num(f.default)
            dstr = _cstr(str(f.default)) if (f.kind == "kCHAR" and not req) else "nullptr"
            src = "kAttribute" if f.source == "attribute" else "kHostScale"
            frows.append(f"    {{{_cstr(f.name)}, FieldKind::{f.kind}, FieldSource::{src}, {str(req).lower()}, "
                         f"{dnum}, {dstr}, {f.input_index}}},")
        L.append("inline constexpr FieldSpec kFields[] = {" + ("\n" + "\n".join(frows) + "\n" if frows else
                                                               "{nullptr, FieldKind::kINT32, FieldSource::kAttribute, false, 0.0, nullptr, -1}") + "};")
        for what, ports in (("kInputs", rec.inputs), ("kOutputs", rec.outputs)):
            rows = [f"    {{{_cstr(p.name)}, {_cstr(p.shape)}, {_shape_spec(parse_shapes(p.shape), syms)}}},"
                    for p in ports]
            L.append(f"inline constexpr PortSpec {what}[] = {{\n" + "\n".join(rows) + "\n};")
        vrows = ["    " + ", ".join(f"DType::{DTYPE[d]}" for d in row) + "," for row in var]
        L.append(f"inline constexpr DType kVariants[{len(var)} * {n_io}] = {{\n" + "\n".join(vrows) + "\n};")
        drows = []
        for dims in dsrc:
            cells = [f"{{{i}, {j}, {o}}}" for i, j, o in dims] + ["{-1, -1, 0}"] * (MAX_RANK - len(dims))
            drows.append("    " + ", ".join(cells) + ",")
        L.append(f"inline constexpr DimSource kOutputDims[{len(dsrc)} * kMaxRank] = {{\n" + "\n".join(drows) + "\n};")
        L += [f"inline constexpr OpSpec kSpec = {{kName, kVersion, kModule, inputs::kCount, outputs::kCount, "
              f"{'fields::kCount' if fields else '0'}, syms::kCount, {len(var)}, kInputs, kOutputs, kFields, kSymbols, "
              "kVariants, kOutputDims};",
              f"}}  // namespace {ns}", ""]
    L += ["// Every op with a plugin, by name.",
          f"inline constexpr const OpSpec* kOps[] = {{{', '.join(f'&{n}::kSpec' for n in names)}}};",
          f"inline constexpr int32_t kNbOps = {len(names)};", ""]
    L += _hadamard_section()
    L += ["}  // namespace gen", "}  // namespace quamba_trt", ""]
    return "\n".join(L)


# ---- folding the host scales into attributes (the engine builder runs this on its copy of the graph) --------


class FoldError(ValueError):
    pass


def fold_host_scales(model: Any) -> Any:
    """Copy each plugin node's per-tensor scale inputs (``float32 []`` initializers or Constant outputs)
    into FLOAT attributes of the same name, in place; returns ``model``. Only for the graph handed to the
    TensorRT parser (ONNX Runtime's PyOps refuse unknown attributes). Nodes of ops without a plugin are
    left alone. A scale that is not a constant of the graph is an error (the kernels take it as a host
    float: it must be known when the engine is built)."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    consts: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "Constant" and n.domain in ("", "ai.onnx"):
            for a in n.attribute:
                if a.name == "value":
                    consts[n.output[0]] = numpy_helper.to_array(a.t)
                elif a.name == "value_float":
                    consts[n.output[0]] = np.array(a.f, dtype=np.float32)
    ops = {r.name: r for r in plugin_ops()}
    for n in model.graph.node:
        rec = ops.get(n.op_type)
        if n.domain != DOMAIN or rec is None:
            continue
        have = {a.name for a in n.attribute}
        for i in host_scale_inputs(rec):
            port = rec.inputs[i]
            src = n.input[i] if i < len(n.input) else ""
            if src not in consts:
                raise FoldError(f"{n.op_type} node {n.name!r}: input {port.name!r} ({src!r}) is not a constant of "
                                "the graph; the plugin needs its value when the engine is built")
            v = consts[src]
            if v.size != 1 or v.dtype != np.float32:
                raise FoldError(f"{n.op_type} node {n.name!r}: {port.name!r} must be one float32, got "
                                f"{v.dtype} {tuple(v.shape)}")
            if port.name in have:  # folded before: must agree
                old = next(a for a in n.attribute if a.name == port.name)
                if old.type != onnx.AttributeProto.FLOAT or np.float32(old.f) != v.reshape(()):
                    raise FoldError(f"{n.op_type} node {n.name!r}: attribute {port.name!r} disagrees with its input")
                continue
            n.attribute.append(onnx.helper.make_attribute(port.name, float(v.reshape(()))))
    return model


def int8_packed_weights(model: Any) -> Any:
    """Retype every uint8 input of a plugin node (the packed int4 weights of W4A8Linear / W4A16Linear, the
    packed table of a bits-4 QuantEmbedding) to an int8 initializer holding the same bytes, in place; returns
    ``model``. TensorRT plugins take no uint8 tensors (:data:`TRT_CARRIER`) and their kernels read the bytes as
    they are. An initializer that another node also reads keeps its uint8 original for that node (the plugin
    inputs get an int8 copy). A uint8 input that is not an initializer is an error: nothing in TensorRT turns
    uint8 into int8 bytes (a port whose type variable may be uint8 is retyped where it is a uint8 initializer
    and otherwise left to the plugin, which refuses uint8)."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    ops = {r.name: r for r in plugin_ops()}
    retype: dict[str, list[tuple[Any, int]]] = {}  # initializer name -> the plugin inputs (node, index) reading it
    for n in model.graph.node:
        rec = ops.get(n.op_type)
        if n.domain != DOMAIN or rec is None:
            continue
        for i, port in enumerate(rec.inputs):
            # uint8 ports, and those whose type variable may be uint8 (QuantEmbedding's table W: int8 or uint8)
            concrete = port.dtype in TRT_CARRIER
            if i >= len(n.input) or not (concrete or "uint8" in rec.type_vars.get(port.dtype, ())):
                continue
            src = n.input[i]
            init = inits.get(src)
            if init is None and not concrete:  # dtype unknown here; the plugin refuses it should it be uint8
                continue
            if init is None:
                raise FoldError(f"{n.op_type} node {n.name!r}: input {port.name!r} ({src!r}) is {port.dtype} and "
                                "not an initializer; TensorRT plugins take no uint8 tensors, so it must be a constant "
                                "that can be stored as int8")
            if init.data_type == onnx.TensorProto.INT8:  # retyped before
                continue
            if init.data_type != onnx.TensorProto.UINT8:
                raise FoldError(f"{n.op_type} node {n.name!r}: {port.name!r} must be uint8, got "
                                f"{onnx.TensorProto.DataType.Name(init.data_type)}")
            retype.setdefault(src, []).append((n, i))
    for src, uses in retype.items():
        plugin_uses = {(id(n), i) for n, i in uses}
        shared = any(x == src and (id(n), i) not in plugin_uses
                     for n in model.graph.node for i, x in enumerate(n.input)) or \
            any(o.name == src for o in model.graph.output)
        arr = numpy_helper.to_array(inits[src]).view(np.int8)
        if shared:  # keep the uint8 tensor for its other readers
            name = f"{src}__int8"
            model.graph.initializer.append(numpy_helper.from_array(arr, name))
            for n, i in uses:
                n.input[i] = name
        else:
            inits[src].CopyFrom(numpy_helper.from_array(arr, src))
            for vi in model.graph.value_info:
                if vi.name == src:
                    vi.type.tensor_type.elem_type = onnx.TensorProto.INT8
            for gi in model.graph.input:  # an initializer may also be listed as a graph input (IR < 4)
                if gi.name == src:
                    gi.type.tensor_type.elem_type = onnx.TensorProto.INT8
    return model


def prepare_trt_graph(model: Any) -> Any:
    """The graph handed to TensorRT's ONNX parser, from an fp16 export (in place; returns ``model``): the host
    scales folded into attributes (:func:`fold_host_scales`) and the uint8 packed weights retyped to int8
    (:func:`int8_packed_weights`). Idempotent. ONNX Runtime keeps the exported graph as it is."""
    return int8_packed_weights(fold_host_scales(model))
