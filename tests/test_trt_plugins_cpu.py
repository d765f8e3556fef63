"""TensorRT plugins (plugins/trt) on a CPU: the registry-generated header is current, one plugin per
kernel-backed op, and every plugin goes through TensorRT's build-phase call sequence in the harness
(createPlugin -> capabilities -> getOutputDataTypes -> symbolic getOutputShapes -> supportsFormatCombination ->
configurePlugin -> getWorkspaceSize -> getFieldsToSerialize -> createPlugin(kRUNTIME) -> attachToContext), both
for hand-made prefill / decode shapes and for every plugin node of real fp16 exports after prepare_trt_graph
(host scales folded, packed int4 weights retyped to int8), as TensorRT's ONNX parser would hand them over.
Bad fields, dtypes and shapes fail at the documented step
with a message. The harness and plugin library are built by plugins/check_trt_compile.py (cached under
build/; CI runs it first); without nvcc or TensorRT headers these tests are skipped."""

from __future__ import annotations

import math
import re
import struct
from pathlib import Path

import pytest
import torch
from trt_plugin_cases import all_cases, find

from quamba_edge import trt_harness
from quamba_edge.ops import registry
from quamba_edge.ops.trt_fields import (
    DEVICE_SCALES,
    FoldError,
    fold_host_scales,
    host_scale_inputs,
    int8_packed_weights,
    is_scalar_scale,
    plugin_fields,
    plugin_ops,
    prepare_trt_graph,
    render_fields_header,
)
from quamba_edge.trt_harness import HarnessError, Tensor

REPO = Path(__file__).resolve().parents[1]
TRT = REPO / "plugins" / "trt"
SHARED_HEADERS = [REPO.parent / "shared" / "third_party" / s / "include" for s in ("tensorrt-10.3", "tensorrt-10.16")]


def test_fields_header_is_current():
    text = (TRT / "generated" / "fields.h").read_text()
    assert text == render_fields_header(), (
        "plugins/trt/generated/fields.h is stale: python -m quamba_edge.ops --trt-fields > plugins/trt/generated/fields.h")


def test_one_plugin_file_per_kernel_op():
    """Every record with a kernel has plugins/trt/<module>.cpp naming its creator; nothing else is a plugin."""
    ops = {r.kernel.removesuffix(".cu"): r.name for r in plugin_ops()}
    assert set(ops.values()) == {r.name for r in registry.records().values() if r.kernel}
    files = {p.stem for p in TRT.glob("*.cpp")} - {"plugin_common", "library"}
    assert files == set(ops), f"plugins/trt/*.cpp {sorted(files)} vs kernel-backed ops {sorted(ops)}"
    for module, name in ops.items():
        src = (TRT / f"{module}.cpp").read_text()
        assert f"gen::{name};" in src and "QUAMBA_TRT_PLUGIN(" in src
        assert (REPO / "plugins" / "kernels" / f"{module}.cu").is_file()


def test_host_scale_fields_are_the_scalar_scale_inputs():
    """Every per-tensor scale input is a host-scale field unless the op's kernel reads it on the device."""
    for rec in plugin_ops():
        fields = plugin_fields(rec)
        assert [f.name for f in fields[: len(rec.attrs)]] == [a.name for a in rec.attrs]
        scales = [f for f in fields if f.source == "host_scale"]
        assert [rec.inputs[f.input_index].name for f in scales] == [f.name for f in scales]
        for f in scales:
            p = rec.inputs[f.input_index]
            assert p.dtype == "float32" and p.shape.startswith("[]") and f.kind == "kFLOAT32" and f.default is None
        scalar = {p.name for p in rec.inputs if is_scalar_scale(p)}
        assert {f.name for f in scales} | DEVICE_SCALES.get(rec.name, frozenset()) == scalar, rec.name
    ssd = registry.get("QuantSSD")
    assert [ssd.inputs[i].name for i in host_scale_inputs(ssd)] == ["dt_scale", "A_log_scale", "D_scale"]
    assert set(DEVICE_SCALES) <= {r.name for r in plugin_ops()}
    for op in ("W8A8Linear", "W4A8Linear", "W4A16Linear"):
        assert host_scale_inputs(registry.get(op)) == [], op


def test_device_scales_follow_the_kernel_headers():
    """A per-tensor scale is a host field exactly where the kernel's params struct takes ``float <name>``, and
    goes to the kernel as a tensor exactly where it takes ``const float* <name>`` (DEVICE_SCALES)."""
    inc = REPO / "plugins" / "kernels" / "include" / "quamba_kernels"
    for rec in plugin_ops():
        header = (inc / rec.kernel.replace(".cu", ".h")).read_text()
        host = {rec.inputs[i].name for i in host_scale_inputs(rec)}
        for p in rec.inputs:
            if not is_scalar_scale(p):
                continue
            device_ptr = re.search(rf"const float\s*\*\s*{p.name}\s*;", header) is not None
            host_float = re.search(rf"(?<![\w*])float\s+(?:\w+\s*,\s*)*{p.name}\s*[,;]", header) is not None
            assert device_ptr != host_float, f"{rec.name}.{p.name}: not found once in {rec.kernel.replace('.cu', '.h')}"
            assert (p.name in host) == host_float, f"{rec.name}.{p.name}: host field {p.name in host}"


def test_trt_dtypes_carry_uint8_as_int8():
    """The records' uint8 ports (packed int4 weights) appear as int8 in every TensorRT dtype variant; nothing
    else changes but T -> float16."""
    from quamba_edge.ops.trt_fields import TRT_ACT_DTYPE, variants

    for rec in plugin_ops():
        for row, b in zip(variants(rec), rec.variants(TRT_ACT_DTYPE)):
            onnx_row = [rec.resolve(p.dtype, b) for p in (*rec.inputs, *rec.outputs)]
            assert row == ["int8" if d == "uint8" else d for d in onnx_row]
    w4 = registry.get("W4A16Linear")
    assert w4.inputs[1].dtype == "uint8" and variants(w4) == [["float16", "int8", "float16", "float32", "float16"]]


def test_hadamard_scale_matches_the_offline_matrix():
    """The plugin builds its base factor as H_b * fl32(1 / sqrt(n)); hadamard_matrix multiplies the +-1
    Kronecker product by the double 1 / sqrt(n) in fp32: the same value for every supported n."""
    from quamba_edge.quant.hadamard import hadamard_matrix

    for n in [2**k for k in range(16)] + [12 * 2**k for k in range(12)] + [40 * 2**k for k in range(10)]:
        s = float(torch.tensor(1.0 / math.sqrt(n), dtype=torch.float32))
        assert float(torch.ones(1) * (1.0 / math.sqrt(n))) == s
        if n <= 2560:
            assert abs(float(hadamard_matrix(n)[0, 0])) == s


# ---- the harness ------------------------------------------------------------------------------------------------


def _header_sets() -> list[Path]:
    return [h for h in SHARED_HEADERS if (h / "NvInferRuntime.h").is_file()] or trt_harness.header_candidates()[:1]


@pytest.fixture(scope="module", params=_header_sets() or [None], ids=lambda p: p.parent.name if p else "none")
def harness(request):
    if request.param is None:
        pytest.skip("no TensorRT headers (../shared/third_party or QUAMBA_TRT_HEADERS)")
    try:
        b = trt_harness.build(arch="87", headers=request.param, out=REPO / "build" / "trt-check")
    except HarnessError as e:
        if "nvcc not found" in str(e):
            pytest.skip(str(e))
        raise
    return trt_harness.Harness(b.harness, b.plugins)


def test_creators_follow_the_registry(harness):
    got = harness.creators()
    assert sorted(got) == sorted(r.name for r in plugin_ops())
    for rec in plugin_ops():
        c = got[rec.name]
        assert c["version"] == rec.version and c["namespace"] == registry.PLUGIN_NAMESPACE
        assert c["fields"] == [(f.name, trt_harness.FIELD_TYPE[f.kind]) for f in plugin_fields(rec)]


CASES = all_cases("cpu")


@pytest.mark.parametrize("case", CASES, ids=[f"{c.op}-{c.id}" for c in CASES])
def test_build_phase_call_sequence(harness, case):
    outs = [Tensor(dt, shape) for dt, shape in case.output_specs()]
    harness.run(case.op, case.fields(), case.input_tensors(), outs, build_only=True)


@pytest.mark.parametrize("case", CASES, ids=[f"{c.op}-{c.id}" for c in CASES])
def test_reference_outputs_fit_the_plugin_outputs(case):
    """What the GPU test compares: the node's reference outputs have the plugin's output shapes, and dtypes
    that differ only where the plugin writes fp16 for the reference's fp32 (T outputs)."""
    from trt_plugin_cases import TORCH_DTYPE

    refs = case.reference()
    for (dt, shape), ref in zip(case.output_specs(), refs):
        assert tuple(ref.shape) == shape
        assert ref.dtype == TORCH_DTYPE[dt] or (dt == "float16" and ref.dtype == torch.float32)
        assert torch.isfinite(ref.float()).all()


def _outs(case):
    return [Tensor(dt, shape) for dt, shape in case.output_specs()]


def _expect_failure(harness, case, pattern, *, fields=None, inputs=None, outputs=None, **kw):
    with pytest.raises(HarnessError) as ei:
        harness.run(case.op, case.fields() if fields is None else fields,
                    case.input_tensors() if inputs is None else inputs,
                    _outs(case) if outputs is None else outputs, build_only=not kw.get("raw_enqueue"), **kw)
    assert re.search(pattern, str(ei.value), re.S), str(ei.value)
    return str(ei.value)


def test_missing_host_scale_field_is_refused_with_the_fix(harness):
    case = find(CASES, "QuantSelectiveScan", "int8")
    fields = case.fields()
    del fields["u_scale"]
    _expect_failure(harness, case, r"createPlugin\(kBUILD\) returned null.*'u_scale' is missing.*fold_host_scales",
                    fields=fields)


def test_bad_fields_are_refused(harness):
    case = find(CASES, "QuantGatedRMSNorm")
    _expect_failure(harness, case, r"unknown field 'bogus'", fields={**case.fields(), "bogus": 1})
    _expect_failure(harness, case, r"group_size .* does not divide E", fields={**case.fields(), "group_size": 48})
    _expect_failure(harness, case, r"required field 'eps' is missing",
                    fields={k: v for k, v in case.fields().items() if k != "eps"})
    _expect_failure(harness, find(CASES, "QuantHadamard"), r"size = 100 is not a supported Hadamard size",
                    fields={"size": 100, "out_scale": 0.1})
    ssd = find(CASES, "QuantSSD")
    _expect_failure(harness, ssd, r"chunk_size must be >= 1", fields={**ssd.fields(), "chunk_size": 0})


def test_wrong_field_type_is_refused(harness):
    case = find(CASES, "QuantHadamard")
    with pytest.raises(HarnessError, match=r"field 'size' must be one INT32 value"):
        harness.run(case.op, case.fields(), case.input_tensors(), _outs(case), build_only=True,
                    kinds={"size": "kFLOAT32", "out_scale": "kFLOAT32"})


def test_unsupported_dtypes_are_refused(harness):
    case = find(CASES, "QuantAddRMSNorm")
    ins = case.input_tensors()
    ins[0].dtype = "float32"  # the fp32 (ONNX Runtime) graph: T = float16 only in TensorRT
    _expect_failure(harness, case, r"getOutputDataTypes failed.*unsupported dtypes \(hidden float32", inputs=ins)
    scan = find(CASES, "QuantSelectiveScan", "int8")
    ins = scan.input_tensors()
    ins[16].dtype = "float32"  # a float32 state: S is int8 or float16
    _expect_failure(harness, scan, r"unsupported dtypes", inputs=ins)


def test_linear_output_dtype_follows_out_int8(harness):
    """Y is fixed by out_int8 alone: getOutputDataTypes gives int8 for 1 and float16 for 0, and a node whose
    graph expects the other dtype fails there (the harness compares with the expected outputs)."""
    for op in ("W8A8Linear", "W4A8Linear"):
        for want in ("i8", "f16"):
            case = find(CASES, op, want)
            outs = _outs(case)
            assert outs[0].dtype == ("int8" if want == "i8" else "float16")
            outs[0].dtype = "float16" if want == "i8" else "int8"
            _expect_failure(harness, case, r"getOutputDataTypes: output 0 has dtype", outputs=outs)
            _expect_failure(harness, case, r"out_int8 must be 0 .* or 1 .* got 2", fields={**case.fields(), "out_int8": 2})


def test_linear_fields_and_shapes_are_checked(harness):
    w4 = find(CASES, "W4A8Linear", "g128-i8")
    k = w4.attrs["in_features"]
    _expect_failure(harness, w4, r"createPlugin\(kBUILD\) returned null.*in_features K = 24 is not supported.*K % 32",
                    fields={**w4.fields(), "in_features": 24})
    _expect_failure(harness, w4, r"group_size = 48 is not supported", fields={**w4.fields(), "group_size": 48})
    _expect_failure(harness, w4, rf"configurePlugin failed.*'x_q' has K = {k} features, but the node's in_features is "
                    rf"{k + 32}", fields={**w4.fields(), "in_features": k + 32})
    ins = w4.input_tensors()
    ins[2].dims = (ins[2].dims[0], ins[2].dims[1] + 1)  # qweight one byte per row too wide
    _expect_failure(harness, w4, rf"configurePlugin failed.*'qweight' has {k // 2 + 1} bytes per row; K = {k} packs "
                    rf"into {k // 2}", inputs=ins)
    ins = w4.input_tensors()
    ins[3].dims = (ins[3].dims[0], 1)  # s_group: one group where K / 128 are
    _expect_failure(harness, w4, rf"'s_group' has 1 scales per row; K = {k} with group_size = 128 has {k // 128} groups",
                    inputs=ins)
    ins = w4.input_tensors()
    ins[4].dims = (ins[4].dims[0] + 1,)  # s_channel [N + 1]
    _expect_failure(harness, w4, r"input 's_channel' has shape .*\[N\]", inputs=ins)
    w16 = find(CASES, "W4A16Linear", "g0")
    ins = w16.input_tensors()
    ins[2].dims = (ins[2].dims[0], 2)  # group_size 0: one scale per row
    _expect_failure(harness, w16, r"'scale' has 2 scales per row; K = 32 with group_size = 0 has 1 groups", inputs=ins)
    ins = w16.input_tensors()
    ins[0].dtype = "float32"
    _expect_failure(harness, w16, r"unsupported dtypes \(x float32", inputs=ins)
    w8 = find(CASES, "W8A8Linear", "K100")
    ins = w8.input_tensors()
    ins[3].dims = ()  # a per-tensor w_scale: the exporter expands it to [N]
    _expect_failure(harness, w8, r"input 'w_scale' has (shape \[\]|rank 0)", inputs=ins)


def test_uint8_weights_are_refused_with_the_fix(harness):
    """An export that skipped prepare_trt_graph hands the packed weights over as uint8, which no plugin takes."""
    case = find(CASES, "W4A16Linear")
    ins = case.input_tensors()
    ins[1].dtype = "uint8"
    _expect_failure(harness, case, r"unsupported dtypes \(x float16, qweight uint8.*no uint8 tensors.*prepare_trt_graph",
                    inputs=ins)


def test_embedding_fields_and_shapes_are_checked(harness):
    """QuantEmbedding: bits / embedding_dim refused at createPlugin; the table's row width (d int8 bytes for bits
    8, ceil(d/2) packed bytes for bits 4) and out's d must agree with embedding_dim; ids int64, table int8 (the
    packed uint8 table only after prepare_trt_graph)."""
    w8, w4 = find(CASES, "QuantEmbedding", "d37-w8"), find(CASES, "QuantEmbedding", "d37-w4")
    _expect_failure(harness, w8, r"createPlugin\(kBUILD\) returned null.*bits must be 8 or 4, got 2",
                    fields={**w8.fields(), "bits": 2})
    _expect_failure(harness, w8, r"embedding_dim must be >= 1, got 0", fields={**w8.fields(), "embedding_dim": 0})
    # out's d is embedding_dim (getOutputShapes); the table's rows must agree
    _expect_failure(harness, w8, r"configurePlugin failed.*output 'out' has shape \[2, 7, 38\].*gives d = 38 but "
                    r"another tensor gave 37", fields={**w8.fields(), "embedding_dim": 38},
                    outputs=[Tensor("float16", (2, 7, 38))])
    _expect_failure(harness, w4, r"configurePlugin failed.*'table' has 19 bytes per row; embedding_dim = 39 packs "
                    r"into 20", fields={**w4.fields(), "embedding_dim": 39}, outputs=[Tensor("float16", (2, 7, 39))])
    _expect_failure(harness, w4, r"getOutputShapes: output 0 is \[2, 7, 37\], expected \[2, 7, 19\]",
                    outputs=[Tensor("float16", (2, 7, 19))])  # not the packed width
    ins = w4.input_tensors()
    ins[2].dims = (ins[2].dims[0] + 1,)  # row_scale [V + 1]
    _expect_failure(harness, w4, r"input 'row_scale' has shape \[51\].*\[V\]", inputs=ins)
    ins = w4.input_tensors()
    ins[1].dtype = "uint8"
    _expect_failure(harness, w4, r"unsupported dtypes \(ids int64, table uint8.*prepare_trt_graph", inputs=ins)
    ins = w8.input_tensors()
    ins[0].dtype = "int32"  # the record's ids are int64
    _expect_failure(harness, w8, r"unsupported dtypes \(ids int32", inputs=ins)
    _expect_failure(harness, w8, r"getOutputDataTypes: output 0 has dtype", outputs=[Tensor("float32", (2, 7, 37))])


def test_int8_packed_weights_retypes_only_uint8_tables():
    """QuantEmbedding's table is a type variable (int8 for bits 8, packed uint8 for bits 4): prepare_trt_graph
    retypes the uint8 one, keeps the int8 one, and leaves a table that is not an initializer to the plugin."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    ids = helper.make_tensor_value_info("ids", onnx.TensorProto.INT64, [1, 2])
    t4 = helper.make_tensor_value_info("t4", onnx.TensorProto.UINT8, [4, 3])
    inits = [numpy_helper.from_array(np.arange(4 * 5, dtype=np.int8).reshape(4, 5), "t8"),
             numpy_helper.from_array(np.arange(4 * 3, dtype=np.uint8).reshape(4, 3), "p4"),
             numpy_helper.from_array(np.ones(4, np.float16), "s")]
    nodes = [helper.make_node("QuantEmbedding", ["ids", t, "s"], [f"y{k}"], domain=registry.DOMAIN, bits=bits,
                              embedding_dim=5, plugin_version="1", plugin_namespace="quamba")
             for k, (t, bits) in enumerate((("t8", 8), ("p4", 4), ("t4", 4)))]
    outs = [helper.make_tensor_value_info(f"y{k}", onnx.TensorProto.FLOAT16, [1, 2, 5]) for k in range(3)]
    m = int8_packed_weights(helper.make_model(helper.make_graph(nodes, "g", [ids, t4], outs, inits)))
    got = {i.name: i.data_type for i in m.graph.initializer}
    assert got == {"t8": onnx.TensorProto.INT8, "p4": onnx.TensorProto.INT8, "s": onnx.TensorProto.FLOAT16}
    assert [n.input[1] for n in m.graph.node] == ["t8", "p4", "t4"]


def test_inconsistent_shapes_fail_in_configure(harness):
    conv = find(CASES, "QuantCausalConv1d")
    ins = conv.input_tensors()
    ins[2].dims = (ins[2].dims[0] + 1, ins[2].dims[1])  # w_q [C+1, K]
    _expect_failure(harness, conv, r"configurePlugin failed.*input 'w_q' has shape \[193, 4\].*\[C, K\].*C = 193",
                    inputs=ins)
    ins = conv.input_tensors()
    ins[2].dims = (ins[2].dims[0], 9)  # K = 9: the kernel supports 1..8
    b, c = ins[7].dims[0], ins[7].dims[1]
    ins[7].dims = (b, c, 8)
    outs = _outs(conv)
    outs[1].dims = (b, c, 8)
    _expect_failure(harness, conv, r"kernel width K = 9", inputs=ins, outputs=outs)
    ssd = find(CASES, "QuantSSD", "int8")
    ins = ssd.input_tensors()
    ins[14].dims = ()  # a scalar state scale with an int8 state
    _expect_failure(harness, ssd, r"int8 state needs state_scale of shape \[H, P, N\]", inputs=ins)
    ins = ssd.input_tensors()
    ins[13].dims = (*ins[13].dims[:3], 48)  # state_in with d_state 48 where B_q / C_q have 64
    _expect_failure(harness, ssd, r"configurePlugin failed.*input 'state_in' has shape \[-1, 8, 32, 48\].*gives N = 48 "
                    r"but another tensor gave 64", inputs=ins)
    had = find(CASES, "QuantHadamard")
    ins = had.input_tensors()
    ins[0].dims = (2, 5)
    _expect_failure(harness, had, r"getOutputShapes failed|configurePlugin failed", inputs=ins)


def test_wrong_expected_output_is_detected(harness):
    """The harness itself checks dtypes and symbolic shapes against what the caller expects."""
    case = find(CASES, "QuantSSD", "float16")
    outs = _outs(case)
    outs[1].dtype = "int8"
    with pytest.raises(HarnessError, match=r"getOutputDataTypes: output 1 has dtype 1, expected 2"):
        harness.run(case.op, case.fields(), case.input_tensors(), outs, build_only=True)
    outs = _outs(case)
    outs[0].dims = (*outs[0].dims[:-1], outs[0].dims[-1] + 1)
    with pytest.raises(HarnessError, match=r"getOutputShapes: output 0 is"):
        harness.run(case.op, case.fields(), case.input_tensors(), outs, build_only=True)


def test_enqueue_refuses_bad_shapes_itself(harness):
    """enqueue re-checks its descriptors (no configure before it here) and fails before any CUDA call."""
    scan = find(CASES, "QuantSelectiveScan", "int8")
    ins = scan.input_tensors()
    ins[4].dims = (ins[4].dims[0], 300)  # A_log [E, 300]: N = 300 > 256
    ins[6].dims = (*ins[6].dims[:2], 300)
    ins[8].dims = ins[6].dims
    ins[16].dims = (*ins[16].dims[:2], 300)
    outs = _outs(scan)
    outs[1].dims = ins[16].dims
    _expect_failure(harness, scan, r"enqueue returned nonzero.*enqueue: d_state N = 300", inputs=ins, outputs=outs,
                    raw_enqueue=True)
    ins = scan.input_tensors()
    ins[0].dims = (ins[0].dims[0], ins[0].dims[1] + 1, ins[0].dims[2])  # u_q longer than dt_q
    _expect_failure(harness, scan, r"enqueue: input 'dt_q' has shape .* L = ", inputs=ins, raw_enqueue=True)


def test_float_ssd_shape_limits_fail_at_build(harness):
    """SSD: a node that may run prefill (L > 1) with shapes quamba_ssd does not take (d_state N outside {64, 128,
    256}, headdim P not a multiple of 16; the kernel would return cudaErrorNotSupported and TensorRT has no
    reference to fall back on) is refused at configurePlugin, naming the limit; decode (L = 1) takes N = 16 .. 256
    in steps of 16 and any P; nheads must be a multiple of ngroups."""
    from trt_plugin_cases import float_ssd

    def case_outs(c):
        return c, [Tensor(dt, shape) for dt, shape in c.output_specs()]

    c, outs = case_outs(float_ssd(2, 7, 8, 32, 2, 16))
    _expect_failure(harness, c, r"configurePlugin failed.*prefill \(L = 7 > 1\) runs quamba_ssd, which takes d_state N "
                    r"in \{64, 128, 256\}; this node has N = 16", outputs=outs)
    c, outs = case_outs(float_ssd(1, 5, 4, 24, 1, 64))
    _expect_failure(harness, c, r"configurePlugin failed.*prefill \(L = 5 > 1\) runs quamba_ssd, which takes headdim P "
                    r"a multiple of 16; this node has P = 24", outputs=outs)
    for c in (float_ssd(3, 1, 8, 24, 2, 16), float_ssd(3, 1, 4, 8, 1, 48)):  # decode: the state-update kernel
        harness.run(c.op, c.fields(), c.input_tensors(), _outs(c), build_only=True)
    c = float_ssd(3, 1, 4, 16, 1, 8)
    _expect_failure(harness, c, r"configurePlugin failed.*d_state N = 8 is not supported: the SSD kernels take a "
                    r"multiple of 16 in 16\.\.256")
    c = float_ssd(2, 6, 6, 16, 4, 64)
    _expect_failure(harness, c, r"configurePlugin failed.*nheads H = 6 is not a multiple of ngroups G = 4")
    ssd = find(CASES, "SSD")
    _expect_failure(harness, ssd, r"createPlugin\(kBUILD\) returned null.*chunk_size must be >= 1, got 0",
                    fields={**ssd.fields(), "chunk_size": 0})


def test_float_selective_scan_limits(harness):
    scan = find(CASES, "SelectiveScan")
    _expect_failure(harness, scan, r"createPlugin\(kBUILD\) returned null.*delta_softplus must be 0 or 1, got 2",
                    fields={**scan.fields(), "delta_softplus": 2})
    ins = scan.input_tensors()
    for i in (2, 3, 4):  # A [E, 300], B / C [B, L, 300]
        ins[i].dims = (*ins[i].dims[:-1], 300)
    ins[8].dims = (*ins[8].dims[:-1], 300)
    outs = _outs(scan)
    outs[1].dims = ins[8].dims
    _expect_failure(harness, scan, r"configurePlugin failed.*d_state N = 300 is outside the kernels' 1\.\.256",
                    inputs=ins, outputs=outs)


@pytest.mark.parametrize("op", ["SSD", "SelectiveScan"])
def test_float_scans_take_float16_only(harness, op):
    """T is float16 in TensorRT and the kernels take fp16 activations only: a float32 activation (the ONNX
    Runtime graph's T) is refused; so is a float32 state, which the record (state T) does not give."""
    from trt_plugin_cases import float_state_dtypes

    case = find(CASES, op)
    ins = case.input_tensors()
    ins[0].dtype = "float32"
    _expect_failure(harness, case, rf"getOutputDataTypes failed.*unsupported dtypes \({case.record.inputs[0].name} "
                    r"float32", inputs=ins)
    assert float_state_dtypes(op) == ["float16"]
    ins = case.input_tensors()
    ins[-1].dtype = "float32"
    _expect_failure(harness, case, r"unsupported dtypes", inputs=ins)
    ins = case.input_tensors()
    ins[2].dtype = "float16"  # A is float32 in every variant
    _expect_failure(harness, case, r"unsupported dtypes", inputs=ins)


# ---- real exports, as the ONNX parser hands their nodes over -------------------------------------------------


@pytest.fixture(scope="module")
def fp16_exports(tmp_path_factory):
    onnx = pytest.importorskip("onnx")
    from quamba_edge.export import export_model
    from quamba_edge.models import MambaConfig, MambaLM
    from quamba_edge.quant.recipes import quantize_model

    root = tmp_path_factory.mktemp("trt-onnx")
    out = {}
    # the W8A8 recipes, plus W4A8 (Mamba1: W4A8 linears and the W8A8 dt_proj), W4A16 (both: the float SSD /
    # SelectiveScan nodes) and the unquantized fp16 models (recipe None). Mamba2's d_state 64: the float SSD's
    # prefill kernel takes N in {64, 128, 256} only (test_float_ssd_shape_limits_fail_at_build)
    for arch, recipe, bits in (("mamba1", "quamba", "w8a8"), ("mamba1", "quamba2", "w8a8"),
                               ("mamba2", "quamba2", "w8a8"), ("mamba1", "quamba2", "w4a8"),
                               ("mamba2", "quamba2", "w4a16"), ("mamba1", "quamba2", "w4a16"),
                               ("mamba1", None, "fp16"), ("mamba2", None, "fp16")):
        kw = dict(d_state=64, headdim=16, ngroups=2, chunk_size=8) if arch == "mamba2" else dict(d_state=8)
        torch.manual_seed(0)
        fp = MambaLM(MambaConfig(arch=arch, d_model=64, n_layer=1, vocab_size=256, **kw)).eval()
        calib = [torch.randint(0, 256, (1, 32)) for _ in range(2)]
        model = fp if recipe is None else quantize_model(fp, recipe, bits, calib)
        key = f"{arch}-fp16" if recipe is None else f"{arch}-{recipe}" + ("" if bits == "w8a8" else f"-{bits}")
        d = export_model(model, root / key, dtype="fp16")
        out[key] = onnx.load(str(d / "model.onnx"))
    return out


def _plugin_calls(model, batch: int, length: int):
    """(op, fields, inputs, outputs) of every plugin node: fields = the node attributes whose names are
    creator fields (what the parser passes), dims from the graph with batch / seq substituted (runtime dims)."""
    import onnx
    from onnx import numpy_helper

    elem = {onnx.TensorProto.INT8: "int8", onnx.TensorProto.FLOAT16: "float16", onnx.TensorProto.FLOAT: "float32",
            onnx.TensorProto.UINT8: "uint8", onnx.TensorProto.INT64: "int64"}
    info = {v.name: v.type.tensor_type for v in [*model.graph.value_info, *model.graph.input, *model.graph.output]}
    inits = {i.name: i for i in model.graph.initializer}
    sizes = {"batch": batch, "seq": length}

    def tensor(name):
        if name in inits:
            return Tensor(elem[inits[name].data_type], tuple(inits[name].dims))
        tt = info[name]
        dims, dyn = [], []
        for k, d in enumerate(tt.shape.dim):
            if d.dim_param:
                dims.append(sizes[d.dim_param])
                dyn.append(k)
            else:
                dims.append(d.dim_value)
        return Tensor(elem[tt.elem_type], tuple(dims), dynamic=dyn)

    ops = {r.name: r for r in plugin_ops()}
    calls = []
    for n in model.graph.node:
        if n.domain != registry.DOMAIN or n.op_type not in ops:
            continue
        names = {f.name for f in plugin_fields(ops[n.op_type])}
        fields = {}
        for a in n.attribute:
            if a.name in names:
                v = onnx.helper.get_attribute_value(a)
                fields[a.name] = v.decode() if isinstance(v, bytes) else v
        calls.append((n.op_type, fields, [tensor(x) for x in n.input], [tensor(x) for x in n.output]))
    assert calls
    del numpy_helper
    return calls


def test_fold_host_scales_copies_every_scalar_scale(fp16_exports):
    import copy

    import numpy as np
    import onnx
    from onnx import numpy_helper

    for key, model in fp16_exports.items():
        folded = fold_host_scales(copy.deepcopy(model))
        onnx.checker.check_model(folded)
        inits = {i.name: numpy_helper.to_array(i) for i in folded.graph.initializer}
        n_checked = 0
        for n in folded.graph.node:
            rec = next((r for r in plugin_ops() if r.name == n.op_type and n.domain == registry.DOMAIN), None)
            if rec is None:
                continue
            attrs = {a.name: a for a in n.attribute}
            for i in host_scale_inputs(rec):
                a = attrs[rec.inputs[i].name]
                assert a.type == onnx.AttributeProto.FLOAT
                assert np.float32(a.f) == inits[n.input[i]].reshape(())
                n_checked += 1
        assert n_checked >= (0 if key.endswith(("w4a16", "fp16")) else 5), key  # W4A16 / fp16: no A8 op
        again = fold_host_scales(copy.deepcopy(folded))  # idempotent
        assert again == folded


def test_prepare_trt_graph_retypes_the_packed_weights(fp16_exports):
    """Every uint8 input of a plugin node becomes an int8 initializer with the same bytes; host scales are
    folded as before, device scales (the linears' x_scale) are not; the graph stays valid; idempotent."""
    import copy

    import numpy as np
    import onnx
    from onnx import numpy_helper

    for key in ("mamba1-quamba2-w4a8", "mamba2-quamba2-w4a16"):
        model = fp16_exports[key]
        before = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
        prepared = prepare_trt_graph(copy.deepcopy(model))
        onnx.checker.check_model(prepared)
        after = {i.name: numpy_helper.to_array(i) for i in prepared.graph.initializer}
        n_w4 = 0
        for n in prepared.graph.node:
            if n.op_type not in ("W4A8Linear", "W4A16Linear"):
                continue
            w = n.input[2 if n.op_type == "W4A8Linear" else 1]
            assert after[w].dtype == np.int8 and before[w].dtype == np.uint8
            assert after[w].tobytes() == before[w].tobytes() and after[w].shape == before[w].shape
            if n.op_type == "W4A8Linear":
                assert "x_scale" not in {a.name for a in n.attribute}  # read on the device
            n_w4 += 1
        assert n_w4 >= 3, key
        (emb,) = [n for n in prepared.graph.node if n.op_type == "QuantEmbedding"]  # bits 4: the packed table
        t = emb.input[1]
        assert after[t].dtype == np.int8 and before[t].dtype == np.uint8 and after[t].tobytes() == before[t].tobytes()
        plugin_inputs = {x for n in prepared.graph.node if n.op_type in {r.name for r in plugin_ops()} for x in n.input}
        assert all(a.dtype != np.uint8 for name, a in after.items() if name in plugin_inputs)
        assert prepare_trt_graph(copy.deepcopy(prepared)) == prepared


def test_packed_weights_shared_or_not_constant():
    """A uint8 weight another node also reads keeps its uint8 original for that node; one that is no initializer
    cannot become int8 bytes in TensorRT and is refused."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    def graph(extra_reader: bool, weight_is_input: bool = False):
        w = numpy_helper.from_array(np.arange(8 * 16, dtype=np.uint8).reshape(8, 16), "w")
        x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT16, [1, 1, 32])
        ins = [x] + ([helper.make_tensor_value_info("w", onnx.TensorProto.UINT8, [8, 16])] if weight_is_input else [])
        consts = [numpy_helper.from_array(np.ones((8, 1), np.float16), "s"),
                  numpy_helper.from_array(np.zeros(8, np.float32), "b")]
        nodes = [helper.make_node("W4A16Linear", ["x", "w", "s", "b"], ["y"], domain=registry.DOMAIN, in_features=32,
                                  group_size=128, plugin_version="1", plugin_namespace="quamba")]
        outs = [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT16, [1, 1, 8])]
        if extra_reader:
            nodes.append(helper.make_node("Cast", ["w"], ["wf"], to=onnx.TensorProto.FLOAT))
            outs.append(helper.make_tensor_value_info("wf", onnx.TensorProto.FLOAT, [8, 16]))
        return helper.make_model(helper.make_graph(nodes, "g", ins, outs, consts + ([] if weight_is_input else [w])))

    m = int8_packed_weights(graph(False))
    (w,) = [i for i in m.graph.initializer if i.name == "w"]
    assert w.data_type == onnx.TensorProto.INT8
    m = int8_packed_weights(graph(True))
    inits = {i.name: i for i in m.graph.initializer}
    assert inits["w"].data_type == onnx.TensorProto.UINT8 and inits["w__int8"].data_type == onnx.TensorProto.INT8
    assert m.graph.node[0].input[1] == "w__int8" and m.graph.node[1].input[0] == "w"
    assert numpy_helper.to_array(inits["w__int8"]).tobytes() == numpy_helper.to_array(inits["w"]).tobytes()
    with pytest.raises(FoldError, match=r"W4A16Linear node .*'qweight' \('w'\) is uint8 and not an initializer"):
        int8_packed_weights(graph(False, weight_is_input=True))


def test_fold_refuses_a_scale_that_is_not_constant(fp16_exports):
    import copy

    model = copy.deepcopy(fp16_exports["mamba2-quamba2"])
    node = next(n for n in model.graph.node if n.op_type == "QuantHadamard")
    node.input[1] = model.graph.input[0].name
    with pytest.raises(FoldError, match=r"QuantHadamard node .*'out_scale'.*not a constant"):
        fold_host_scales(model)


@pytest.mark.parametrize("length", [5, 1], ids=["prefill", "decode"])
def test_every_exported_plugin_node_builds(harness, fp16_exports, length):
    """Each plugin node of the fp16 exports (Mamba1 fp16-state and int8-state scans, Mamba2 SSD, conv,
    norms, Hadamard, the linears and embeddings, the float SSD / SelectiveScan of the W4A16 and unquantized fp16
    models), with its folded attributes and the graph's dtypes and shapes, passes the build phase."""
    import copy

    seen = set()
    for key, model in fp16_exports.items():
        for op, fields, ins, outs in _plugin_calls(prepare_trt_graph(copy.deepcopy(model)), 2, length):
            harness.run(op, fields, ins, outs, build_only=True)
            if op in ("QuantSSD", "QuantSelectiveScan"):
                seen.add((op, ins[-2].dtype))
            elif op in ("SSD", "SelectiveScan"):  # the state (the record's T)
                seen.add((op, ins[-1].dtype))
            elif op in ("W8A8Linear", "W4A8Linear"):
                seen.add((op, outs[0].dtype))
            elif op == "QuantEmbedding":
                seen.add((op, fields["bits"]))
            else:
                seen.add((op, ""))
    assert {op for op, _ in seen} == {r.name for r in plugin_ops()}
    assert ("QuantSelectiveScan", "float16") in seen and ("QuantSelectiveScan", "int8") in seen
    assert ("SSD", "float16") in seen and ("SelectiveScan", "float16") in seen  # fp16 and W4A16 exports
    for op in ("W8A8Linear", "W4A8Linear"):  # in_proj / x_proj (int8 out) and out_proj / lm_head (float16 out)
        assert (op, "int8") in seen and (op, "float16") in seen
    assert ("QuantEmbedding", 8) in seen and ("QuantEmbedding", 4) in seen  # quamba2 W8A8 / W4A8 and W4A16


def test_unfolded_export_names_the_fix(harness, fp16_exports):
    op, fields, ins, outs = next(c for c in _plugin_calls(fp16_exports["mamba2-quamba2"], 1, 3) if c[0] == "QuantSSD")
    with pytest.raises(HarnessError, match=r"'dt_scale' is missing.*fold_host_scales"):
        harness.run(op, fields, ins, outs, build_only=True)
    op, fields, ins, outs = next(c for c in _plugin_calls(fp16_exports["mamba2-quamba2-w4a16"], 1, 3)
                                 if c[0] == "W4A16Linear")
    assert ins[1].dtype == "uint8"
    with pytest.raises(HarnessError, match=r"qweight uint8.*no uint8 tensors.*prepare_trt_graph"):
        harness.run(op, fields, ins, outs, build_only=True)


# ---- enqueue over recording kernels: what each kernel is handed -------------------------------------------------


@pytest.fixture(scope="module")
def fake():
    """(harness over libquamba_trt_plugins_fake.so, its call log): the real plugins, kernels that only record."""
    import ctypes

    hs = _header_sets()
    if not hs:
        pytest.skip("no TensorRT headers (../shared/third_party or QUAMBA_TRT_HEADERS)")
    try:
        b = trt_harness.build(arch="87", headers=hs[-1], out=REPO / "build" / "trt-check")
    except HarnessError as e:
        if "nvcc not found" in str(e):
            pytest.skip(str(e))
        raise
    lib = ctypes.CDLL(str(b.fake))
    lib.qfake_log.restype = ctypes.c_char_p

    def calls():
        out = []
        for line in lib.qfake_log().decode().splitlines():
            name, *kv = line.split(" ")
            out.append((name, dict(x.split("=", 1) for x in kv)))
        lib.qfake_clear()
        return out

    lib.qfake_clear()
    return trt_harness.Harness(b.harness, b.fake), calls


IN_BASE, OUT_BASE, OUT2_BASE = 0x100000, 0x10000000, 0x20000000


def _fake_run(fake, case):
    """Full call sequence on the fake library with distinct fake pointers; returns (kernel calls of the
    build-phase enqueue, of the runtime-phase enqueue, every call)."""
    h, calls = fake
    ins = case.input_tensors()
    for i, t in enumerate(ins):
        t.data = IN_BASE * (i + 1) if math.prod(t.dims) else None
    outs = []
    for i, (dt, shape) in enumerate(case.output_specs()):
        n = math.prod(shape)
        outs.append(Tensor(dt, shape, OUT_BASE + IN_BASE * i if n else None, OUT2_BASE + IN_BASE * i if n else None))
    calls()
    h.run(case.op, case.fields(), ins, outs, host_memory=True)
    got = calls()
    work = [(n, kv) for n, kv in got if not n.startswith("cuda")]
    half = len(work) // 2
    return work[:half], work[half:], got


def _p(x) -> str:
    return hex(x) if x else "0x0"


def _f(kv, key) -> float:
    return float.fromhex(kv[key])


def _check_ptrs(kv, expected: dict):
    for k, v in expected.items():
        assert kv[k] == _p(v), f"{k}: {kv[k]} != {_p(v)}"


def _check_ints(kv, expected: dict):
    for k, v in expected.items():
        assert int(kv[k]) == v, f"{k}: {kv[k]} != {v}"


def _check_scales(kv, case, names):
    f = case.fields()
    for k in names:
        assert _f(kv, k) == float(torch.tensor(f[k], dtype=torch.float32)), k


@pytest.mark.parametrize("case", CASES, ids=[f"{c.op}-{c.id}" for c in CASES])
def test_enqueue_hands_each_kernel_its_tensors(fake, case):
    """Both enqueues (build phase into the outputs' data, runtime phase into data2) call the expected kernel
    (decode kernel for L = 1) with every pointer, shape, stride, scale and attribute in place."""
    built, runtime, everything = _fake_run(fake, case)
    assert [n for n, _ in built] == [n for n, _ in runtime]
    inp = [IN_BASE * (i + 1) for i in range(len(case.inputs))]
    sh = [tuple(t.shape) for t in case.inputs]
    f = case.fields()
    for phase, work in (("build", built), ("runtime", runtime)):
        out = [(OUT_BASE if phase == "build" else OUT2_BASE) + IN_BASE * i for i in range(len(case.record.outputs))]
        names = [n for n, _ in work]
        if case.op == "QuantAddRMSNorm":
            (_, kv), = work
            b, l, d = sh[0]
            _check_ints(kv, dict(rows=b * l, dim=d, hidden_dtype=1, residual_dtype=0, out_int8=1, residual_out_dtype=0,
                                 hidden_row_stride=d, residual_row_stride=d, y_row_stride=d, residual_out_row_stride=d))
            _check_ptrs(kv, dict(hidden=inp[0], residual=inp[1], weight=inp[2], y=out[0], residual_out=out[1]))
            _check_scales(kv, case, ["eps", "out_scale"])
        elif case.op == "QuantCausalConv1d":
            (_, kv), = work
            b, l, c = sh[0]
            k = sh[2][1]
            _check_ints(kv, dict(batch=b, seqlen=l, channels=c, width=k, x_stride_b=l * c, x_stride_l=c, y_stride_b=l * c,
                                 y_stride_l=c, silu=f["silu"], x_scale_stride=1, w_scale_stride=1, b_scale_stride=1,
                                 out_scale_stride=1))
            _check_ptrs(kv, dict(x=inp[0], x_scale=inp[1], w=inp[2], w_scale=inp[3], bias=inp[4], b_scale=inp[5],
                                 out_scale=inp[6], conv_state=inp[7] if k > 1 else 0, y=out[0],
                                 new_conv_state=out[1] if k > 1 else 0))
        elif case.op == "QuantEmbedding":
            (name, kv), = work
            b, l = sh[0]
            d, bits = f["embedding_dim"], f["bits"]
            assert name == "quant_embedding"
            _check_ints(kv, dict(tokens=b * l, vocab=sh[1][0], dim=d, bits=bits, ids_int64=1, out_dtype=1,
                                 table_row_stride=d if bits == 8 else (d + 1) // 2, out_row_stride=d))
            _check_ptrs(kv, dict(ids=inp[0], table=inp[1], row_scale=inp[2], out=out[0]))
        elif case.op == "QuantGatedRMSNorm":
            (_, kv), = work
            b, l, e = sh[0]
            _check_ints(kv, dict(rows=b * l, dim=e, group_size=f["group_size"], y_dtype=1, y_row_stride=e, z_row_stride=e,
                                 out_row_stride=e, norm_before_gate=f["norm_before_gate"]))
            _check_ptrs(kv, dict(y=inp[0], z=inp[1], weight=inp[3], out=out[0]))
            _check_scales(kv, case, ["eps", "z_scale"])
        elif case.op == "QuantHadamard":
            from quamba_edge.quant.hadamard import hadamard_factors, hadamard_matrix

            (_, kv), = work
            b, l, n = sh[0]
            base, p2 = hadamard_factors(n)
            _check_ints(kv, dict(rows=b * l, n=n, base=base, x_dtype=1, x_row_stride=n, y_row_stride=n))
            _check_ptrs(kv, dict(x=inp[0], y=out[0]))
            _check_scales(kv, case, ["out_scale"])
            want = hadamard_matrix(n)[::p2, ::p2].reshape(-1).tolist()  # the offline matrix's own entries
            assert [float.fromhex(v) for v in kv["base_matrix"].split(",")] == want
        elif case.op == "QuantSSD":
            (name, kv), = work
            b, l, h, p = sh[0]
            g, n = sh[7][2], sh[7][3]
            int8 = case.inputs[13].dtype == torch.int8
            assert name == ("quant_ssd_state_update" if l == 1 else "quant_ssd")
            _check_ints(kv, dict(batch=b, nheads=h, headdim=p, ngroups=g, dstate=n, state_type=1 if int8 else 3,
                                 x_batch_stride=l * h * p, dt_batch_stride=l * h, B_batch_stride=l * g * n,
                                 C_batch_stride=l * g * n, y_batch_stride=l * h * p))
            if l > 1:
                _check_ints(kv, dict(seqlen=l, chunk_size=f["chunk_size"], x_seq_stride=h * p, dt_seq_stride=h,
                                     B_seq_stride=g * n, C_seq_stride=g * n, y_seq_stride=h * p, p_tile=0, staging=0))
            _check_ptrs(kv, dict(x=inp[0], x_scale=inp[1], dt=inp[2], dt_bias=inp[4], A_log=inp[5], B=inp[7],
                                 B_scale=inp[8], C=inp[9], C_scale=inp[10], D=inp[11], state_in=inp[13],
                                 state_scale=inp[14] if int8 else 0, state_scale_row=0, y=out[0], state_out=out[1]))
            _check_scales(kv, case, ["dt_scale", "A_log_scale", "D_scale", "dt_limit_lo", "dt_limit_hi"])
        elif case.op == "QuantSelectiveScan":
            b, l, e = sh[0]
            n = sh[4][1]
            int8 = case.inputs[16].dtype == torch.int8
            kname = "quant_selective_state_update" if l == 1 else "quant_selective_scan"
            assert names == ([kname] if int8 else ["half_to_float", kname, "float_to_half"]), names
            kv = dict(work)[kname]
            strides = dict(u_stride_b=l * e, dt_stride_b=l * e, B_stride_b=l * n, C_stride_b=l * n, z_stride_b=l * e,
                           y_stride_b=l * e)
            if l > 1:
                strides.update(u_stride_l=e, dt_stride_l=e, B_stride_l=n, C_stride_l=n, z_stride_l=e, y_stride_l=e,
                               seqlen=l)
            _check_ints(kv, dict(batch=b, dim=e, dstate=n, state_is_int8=int(int8), **strides))
            _check_ptrs(kv, dict(u=inp[0], dt=inp[2], A_log=inp[4], Bm=inp[6], Cm=inp[8], D=inp[10], z=inp[12],
                                 dt_bias=inp[14], y=out[0]))
            _check_scales(kv, case, ["u_scale", "dt_scale", "A_log_scale", "B_scale", "C_scale", "D_scale", "z_scale",
                                     "dt_bias_scale"] + (["state_scale"] if int8 else []))
            if int8:
                _check_ptrs(kv, dict(state_in=inp[16], state_out=out[1]))
            else:  # widened into the workspace, updated in place there, narrowed into state_out
                w = dict(work)
                ws = w["half_to_float"]["out"]
                assert ws != "0x0" and kv["state_in"] == ws and kv["state_out"] == ws and w["float_to_half"]["in"] == ws
                assert w["half_to_float"]["in"] == _p(inp[16]) and w["float_to_half"]["out"] == _p(out[1])
                assert int(w["half_to_float"]["n"]) == int(w["float_to_half"]["n"]) == b * e * n
        elif case.op == "SSD":
            (name, kv), = work
            b, l, h, p = sh[0]
            g, n = sh[3][2], sh[3][3]
            assert name == ("ssd_state_update" if l == 1 else "ssd")
            _check_ints(kv, dict(batch=b, nheads=h, headdim=p, ngroups=g, dstate=n, dt_type=1,
                                 state_type=3 if case.inputs[6].dtype == torch.float16 else 2,
                                 x_batch_stride=l * h * p, dt_batch_stride=l * h, B_batch_stride=l * g * n,
                                 C_batch_stride=l * g * n, y_batch_stride=l * h * p))
            if l > 1:
                _check_ints(kv, dict(seqlen=l, chunk_size=f["chunk_size"], x_seq_stride=h * p, dt_seq_stride=h,
                                     B_seq_stride=g * n, C_seq_stride=g * n, y_seq_stride=h * p))
            _check_ptrs(kv, dict(x=inp[0], dt=inp[1], A=inp[2], B=inp[3], C=inp[4], D=inp[5], state_in=inp[6],
                                 y=out[0], state_out=out[1]))
        elif case.op == "SelectiveScan":
            (name, kv), = work
            b, l, e = sh[0]
            n = sh[2][1]
            assert name == ("selective_state_update" if l == 1 else "selective_scan"), names
            strides = dict(u_stride_b=l * e, delta_stride_b=l * e, B_stride_b=l * n, C_stride_b=l * n,
                           z_stride_b=l * e, y_stride_b=l * e)
            if l > 1:
                strides.update(u_stride_l=e, delta_stride_l=e, B_stride_l=n, C_stride_l=n, z_stride_l=e, y_stride_l=e,
                               seqlen=l)
            _check_ints(kv, dict(batch=b, dim=e, dstate=n, delta_softplus=f["delta_softplus"],
                                 state_type=3 if case.inputs[8].dtype == torch.float16 else 2, **strides))
            # the fp16 state goes to the kernels as it is (no conversion passes, unlike QuantSelectiveScan)
            _check_ptrs(kv, dict(u=inp[0], delta=inp[1], A=inp[2], Bm=inp[3], Cm=inp[4], D=inp[5], z=inp[6],
                                 delta_bias=inp[7], state_in=inp[8], y=out[0], state_out=out[1]))
        elif case.op in ("W8A8Linear", "W4A8Linear", "W4A16Linear"):
            (name, kv), = work
            b, l, k = sh[0]
            n = sh[1 if case.op == "W4A16Linear" else 2][0]
            assert name == case.op.lower().replace("linear", "_linear")
            _check_ints(kv, dict(m=b * l, n=n, k=k, x_row_stride=k, y_row_stride=n))
            if case.op == "W8A8Linear":
                out_int8 = f["out_int8"]
                _check_ints(kv, dict(w_row_stride=k, w_scale_stride=1, out_scale_stride=out_int8,
                                     y_dtype=3 if out_int8 else 1))
                _check_ptrs(kv, dict(x=inp[0], x_scale=inp[1], w=inp[2], w_scale=inp[3], bias=inp[4],
                                     out_scale=inp[5] if out_int8 else 0, y=out[0]))
            else:
                gs = f["group_size"]
                g = k if gs <= 0 or gs >= k else gs
                _check_ints(kv, dict(w_row_stride=k // 2, group_size=g))
                if case.op == "W4A8Linear":
                    out_int8 = f["out_int8"]
                    _check_ints(kv, dict(s_group_row_stride=-(-k // g), out_scale_stride=out_int8,
                                         y_dtype=3 if out_int8 else 1))
                    _check_ptrs(kv, dict(x=inp[0], x_scale=inp[1], qweight=inp[2], s_group=inp[3], s_channel=inp[4],
                                         bias=inp[5], out_scale=inp[6] if out_int8 else 0, y=out[0]))
                else:
                    _check_ints(kv, dict(scale_row_stride=-(-k // g), y_dtype=1))
                    _check_ptrs(kv, dict(x=inp[0], qweight=inp[1], scale=inp[2], bias=inp[3], y=out[0]))
        else:
            raise AssertionError(f"no expectations for {case.op}")
    if case.op == "QuantHadamard":  # the base factor goes up in onShapeChange, once per plugin object
        assert [n for n, _ in everything].count("cudaMemcpy") == 2 and "cudaMemcpyAsync" not in [n for n, _ in everything]


def test_int4_linears_refuse_misaligned_inputs(fake):
    """The int4 kernels read x and qweight in 16-byte chunks: enqueue refuses a start that is not 16-byte
    aligned (and calls no kernel) rather than handing it over; W8A8 takes any alignment (byte-wise path)."""
    h, calls = fake
    for op, x_name in (("W4A8Linear", "x_q"), ("W4A16Linear", "x")):
        case = find(CASES, op)
        for pos, name in ((0, x_name), (2 if op == "W4A8Linear" else 1, "qweight")):
            ins = case.input_tensors()
            for i, t in enumerate(ins):
                t.data = IN_BASE * (i + 1) + (8 if i == pos else 0)
            outs = [Tensor(dt, shape, OUT_BASE) for dt, shape in case.output_specs()]
            calls()
            with pytest.raises(HarnessError, match=rf"enqueue: input '{name}' at 0x[0-9a-f]+ is not 16-byte aligned"):
                h.run(case.op, case.fields(), ins, outs, raw_enqueue=True)
            assert [n for n, _ in calls() if not n.startswith("cuda")] == []
    case = find(CASES, "W8A8Linear")
    ins = case.input_tensors()
    for i, t in enumerate(ins):
        t.data = IN_BASE * (i + 1) + 1
    calls()
    h.run(case.op, case.fields(), ins, [Tensor(dt, shape, OUT_BASE) for dt, shape in case.output_specs()],
          raw_enqueue=True)
    ((name, kv),) = calls()
    assert name == "w8a8_linear" and kv["x"] == hex(IN_BASE + 1)


@pytest.mark.parametrize("op", ["W8A8Linear", "W4A8Linear", "W4A16Linear", "QuantEmbedding"])
def test_linears_write_nothing_for_no_tokens(fake, op):
    """B * L = 0 (an empty batch or prompt): enqueue succeeds and calls no kernel (the linears take M >= 1; the
    embedding has nothing to write)."""
    h, calls = fake
    case = find(CASES, op)
    ins = case.input_tensors()
    for i, t in enumerate(ins):
        t.data = IN_BASE * (i + 1)
    ins[0].dims = (ins[0].dims[0], 0, *ins[0].dims[2:])
    outs = [Tensor(dt, (shape[0], 0, shape[2]), OUT_BASE) for dt, shape in case.output_specs()]
    calls()
    h.run(case.op, case.fields(), ins, outs, raw_enqueue=True)
    assert calls() == []


def test_float_ssd_prefill_refuses_misaligned_rows(fake):
    """quamba_ssd reads x / B / C rows in 16-byte chunks and writes y in pairs: enqueue refuses a start off those
    alignments (and calls no kernel) instead of handing the kernel a call it answers with cudaErrorNotSupported;
    decode (quamba_ssd_state_update) takes any alignment."""
    h, calls = fake
    case = next(c for c in CASES if c.op == "SSD" and "-L7-" in c.id)
    for pos, name, off in ((0, "input 'x'", 8), (3, "input 'B'", 2), (4, "input 'C'", 4), (None, "output 'y'", 2)):
        ins = case.input_tensors()
        for i, t in enumerate(ins):
            t.data = IN_BASE * (i + 1) + (off if i == pos else 0)
        outs = [Tensor(dt, shape, OUT_BASE + IN_BASE * i + (off if pos is None and i == 0 else 0))
                for i, (dt, shape) in enumerate(case.output_specs())]
        calls()
        with pytest.raises(HarnessError, match=rf"enqueue: {name} at 0x[0-9a-f]+ is not (16|4)-byte aligned, which "
                           r"quamba_ssd \(prefill\) needs"):
            h.run(case.op, case.fields(), ins, outs, raw_enqueue=True)
        assert [n for n, _ in calls() if not n.startswith("cuda")] == []
    case = next(c for c in CASES if c.op == "SSD" and "-L1-" in c.id)
    ins = case.input_tensors()
    for i, t in enumerate(ins):
        t.data = IN_BASE * (i + 1) + 2
    calls()
    h.run(case.op, case.fields(), ins, [Tensor(dt, shape, OUT_BASE + IN_BASE * i)
                                        for i, (dt, shape) in enumerate(case.output_specs())], raw_enqueue=True)
    ((name, kv),) = calls()
    assert name == "ssd_state_update" and kv["x"] == hex(IN_BASE + 2)


@pytest.mark.parametrize("op", ["SSD", "SelectiveScan", "QuantSSD", "QuantSelectiveScan"])
def test_scans_copy_the_state_for_no_tokens(fake, op):
    """L = 0 (an empty prompt): the state passes through (one device copy of the whole state), no kernel runs."""
    h, calls = fake
    case = find(CASES, op)
    ins = case.input_tensors()
    for i, t in enumerate(ins):
        t.data = IN_BASE * (i + 1)
        if case.record.inputs[i].shape.startswith("[B, L"):
            t.dims = (t.dims[0], 0, *t.dims[2:])
    specs = case.output_specs()
    outs = [Tensor(specs[0][0], (specs[0][1][0], 0, *specs[0][1][2:]), OUT_BASE),
            Tensor(specs[1][0], specs[1][1], OUT_BASE + IN_BASE)]
    calls()
    h.run(case.op, case.fields(), ins, outs, raw_enqueue=True)
    k = [p.name for p in case.record.inputs].index("state_in")
    state = case.inputs[k]
    ((name, kv),) = calls()
    assert name == "cudaMemcpyAsync" and kv["src"] == hex(IN_BASE * (k + 1)) and kv["dst"] == hex(OUT_BASE + IN_BASE)
    assert int(kv["bytes"]) == state.numel() * state.element_size()


def test_field_log_records_what_each_creator_received(harness, tmp_path, monkeypatch):
    """QUAMBA_TRT_FIELD_LOG (what plugins/check_trt_rtx.py reads under TensorRT-RTX's parser): one JSON line per
    createPlugin -- op, version, namespace, phase and each field as received -- in both phases."""
    import json

    log = tmp_path / "fields.jsonl"
    monkeypatch.setenv("QUAMBA_TRT_FIELD_LOG", str(log))
    case = find(CASES, "QuantSSD")
    outs = [Tensor(dt, shape) for dt, shape in case.output_specs()]
    harness.run(case.op, case.fields(), case.input_tensors(), outs, build_only=True)
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert lines and all(x["op"] == "QuantSSD" and x["namespace"] == "quamba" for x in lines)
    assert lines[0]["phase"] == "build" and lines[0]["version"] == case.record.version
    kinds = {f.name: f.kind for f in plugin_fields(case.record)}
    got = {f["name"]: f for f in lines[0]["fields"]}
    assert set(got) == set(case.fields())
    for name, value in case.fields().items():
        f = got[name]
        assert f["type"] == kinds[name] and f["length"] == 1
        if kinds[name] == "kINT32":
            assert f["value"] == [int(value)]
        else:
            # printed with 9 significant digits: enough to round-trip an fp32 exactly
            fp32 = lambda v: struct.pack("<f", float(v))  # noqa: E731
            assert len(f["value"]) == 1 and fp32(f["value"][0]) == fp32(value), (name, f["value"], value)
    monkeypatch.delenv("QUAMBA_TRT_FIELD_LOG")
    harness.run(case.op, case.fields(), case.input_tensors(), outs, build_only=True)
    assert len(log.read_text().splitlines()) == len(lines)  # off without the variable
