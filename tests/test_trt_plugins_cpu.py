"""TensorRT plugins (plugins/trt) on a CPU: the registry-generated header is current, one plugin per
kernel-backed op, and every plugin goes through TensorRT's build-phase call sequence in the harness
(createPlugin -> capabilities -> getOutputDataTypes -> symbolic getOutputShapes -> supportsFormatCombination ->
configurePlugin -> getWorkspaceSize -> getFieldsToSerialize -> createPlugin(kRUNTIME) -> attachToContext), both
for hand-made prefill / decode shapes and for every plugin node of real fp16 exports after fold_host_scales,
as TensorRT's ONNX parser would hand them over. Bad fields, dtypes and shapes fail at the documented step
with a message. The harness and plugin library are built by plugins/check_trt_compile.py (cached under
build/; CI runs it first); without nvcc or TensorRT headers these tests are skipped."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch
from trt_plugin_cases import all_cases, find

from quamba_edge import trt_harness
from quamba_edge.ops import registry
from quamba_edge.ops.trt_fields import (
    FoldError,
    fold_host_scales,
    host_scale_inputs,
    plugin_fields,
    plugin_ops,
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
    for rec in plugin_ops():
        fields = plugin_fields(rec)
        assert [f.name for f in fields[: len(rec.attrs)]] == [a.name for a in rec.attrs]
        scales = [f for f in fields if f.source == "host_scale"]
        assert [rec.inputs[f.input_index].name for f in scales] == [f.name for f in scales]
        for f in scales:
            p = rec.inputs[f.input_index]
            assert p.dtype == "float32" and p.shape.startswith("[]") and f.kind == "kFLOAT32" and f.default is None
    ssd = registry.get("QuantSSD")
    assert [ssd.inputs[i].name for i in host_scale_inputs(ssd)] == ["dt_scale", "A_log_scale", "D_scale"]


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


# ---- real exports, as the ONNX parser hands their nodes over -------------------------------------------------


@pytest.fixture(scope="module")
def fp16_exports(tmp_path_factory):
    onnx = pytest.importorskip("onnx")
    from quamba_edge.export import export_model
    from quamba_edge.models import MambaConfig, MambaLM
    from quamba_edge.quant.recipes import quantize_model

    root = tmp_path_factory.mktemp("trt-onnx")
    out = {}
    for arch, recipe in (("mamba1", "quamba"), ("mamba1", "quamba2"), ("mamba2", "quamba2")):
        kw = dict(d_state=16, headdim=16, ngroups=2, chunk_size=8) if arch == "mamba2" else dict(d_state=8)
        torch.manual_seed(0)
        fp = MambaLM(MambaConfig(arch=arch, d_model=64, n_layer=1, vocab_size=256, **kw)).eval()
        calib = [torch.randint(0, 256, (1, 32)) for _ in range(2)]
        model = quantize_model(fp, recipe, "w8a8", calib)
        d = export_model(model, root / f"{arch}-{recipe}", dtype="fp16")
        out[f"{arch}-{recipe}"] = onnx.load(str(d / "model.onnx"))
    return out


def _plugin_calls(model, batch: int, length: int):
    """(op, fields, inputs, outputs) of every plugin node: fields = the node attributes whose names are
    creator fields (what the parser passes), dims from the graph with batch / seq substituted (runtime dims)."""
    import onnx
    from onnx import numpy_helper

    elem = {onnx.TensorProto.INT8: "int8", onnx.TensorProto.FLOAT16: "float16", onnx.TensorProto.FLOAT: "float32"}
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
        assert n_checked >= 5, key
        again = fold_host_scales(copy.deepcopy(folded))  # idempotent
        assert again == folded


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
    norms, Hadamard), with its folded attributes and the graph's dtypes and shapes, passes the build phase."""
    import copy

    seen = set()
    for key, model in fp16_exports.items():
        for op, fields, ins, outs in _plugin_calls(fold_host_scales(copy.deepcopy(model)), 2, length):
            harness.run(op, fields, ins, outs, build_only=True)
            seen.add((op, ins[-2].dtype if op in ("QuantSSD", "QuantSelectiveScan") else ""))
    assert {op for op, _ in seen} == {r.name for r in plugin_ops()}
    assert ("QuantSelectiveScan", "float16") in seen and ("QuantSelectiveScan", "int8") in seen


def test_unfolded_export_names_the_fix(harness, fp16_exports):
    op, fields, ins, outs = next(c for c in _plugin_calls(fp16_exports["mamba2-quamba2"], 1, 3) if c[0] == "QuantSSD")
    with pytest.raises(HarnessError, match=r"'dt_scale' is missing.*fold_host_scales"):
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
        else:
            raise AssertionError(f"no expectations for {case.op}")
    if case.op == "QuantHadamard":  # the base factor goes up in onShapeChange, once per plugin object
        assert [n for n, _ in everything].count("cudaMemcpy") == 2 and "cudaMemcpyAsync" not in [n for n, _ in everything]
