"""TensorRT plugins (plugins/trt) on a GPU, through TensorRT's documented call sequence without TensorRT's
libraries (plugins/trt/harness): for every plugin op at prefill and decode shapes (both state dtypes of the
scans), random inputs in the node's input order go through createPlugin(kBUILD) -> ... -> configurePlugin ->
getWorkspaceSize -> onShapeChange -> enqueue, then createPlugin(kRUNTIME) from the serialized fields ->
attachToContext -> onShapeChange -> enqueue. Both runs write into buffers poisoned with different sentinels
and must agree bit for bit (every element written, the serialized plugin equals the built one); the result is
compared with the node's reference implementation (the registry record's impl, L = 1 taking the decode
path): int8 within +-1 LSB (int8 states nearly all exact), fp16 within fp16 tolerance, fp32 within fp32
rounding -- the conventions of tests/gpu/test_kernel_*.py.

The linears run at every linear shape of the bundled models' recipes (trt_plugin_cases.BUNDLED_LINEARS) and
around the kernels' limits, and ``test_bundled_model_linear_nodes`` takes every W8A8 / W4A8 / W4A16 node of the
bundled models' fp16 exports, recipe by recipe, with its real initializers (weights, scales, bias), at a prefill
and a decode shape.

The plugin library and harness are built for this GPU's architecture against the first TensorRT headers found
($QUAMBA_TRT_HEADERS, $TENSORRT_ROOT/include, ../shared/third_party, /usr/include/...); without any the tests
are skipped.
"""

from __future__ import annotations

import pytest
import torch
from gpu_helpers import POISON, assert_fp16_close, assert_int8_close
from trt_plugin_cases import LINEAR_DECODE, LINEAR_PREFILL, SPECS, TORCH_DTYPE, Case, make, spec_id

from quamba_edge import trt_harness
from quamba_edge.trt_harness import HarnessError, Tensor

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def harness():
    if torch.version.cuda is None or not torch.cuda.is_available():  # module fixtures run before the autouse skip
        pytest.skip("needs a CUDA device")
    headers = trt_harness.header_candidates()
    if not headers:
        pytest.skip("no TensorRT headers: set QUAMBA_TRT_HEADERS to an include folder with NvInferRuntime.h")
    major, minor = torch.cuda.get_device_capability()
    b = trt_harness.build(arch=f"{major}{minor}", headers=headers[0])
    return trt_harness.Harness(b.harness, b.plugins)


def _run(harness, case):
    specs = case.output_specs()
    first = [torch.full(shape, POISON[TORCH_DTYPE[dt]][0], dtype=TORCH_DTYPE[dt], device="cuda") for dt, shape in specs]
    second = [torch.full(shape, POISON[TORCH_DTYPE[dt]][1], dtype=TORCH_DTYPE[dt], device="cuda") for dt, shape in specs]
    outs = [Tensor(dt, shape, a.data_ptr() or None, b.data_ptr() or None) for (dt, shape), a, b in zip(specs, first, second)]
    torch.cuda.synchronize()
    harness.run(case.op, case.fields(), case.input_tensors(), outs, stream=torch.cuda.current_stream().cuda_stream)
    torch.cuda.synchronize()
    return first, second


@pytest.mark.parametrize("spec", SPECS, ids=[spec_id(s) for s in SPECS])
def test_plugin_matches_reference(harness, spec):
    _check(harness, make(spec, "cuda"))


def _check(harness, case):
    built, runtime = _run(harness, case)
    names = [p.name for p in case.record.outputs]
    for name, a, b in zip(names, built, runtime):
        if a.is_floating_point():
            assert not torch.isnan(a).any(), f"{name}: {int(torch.isnan(a).sum())} elements not written (NaN sentinel)"
        assert torch.equal(a, b), (f"{name}: {int((a != b).sum())} elements differ between the build-phase and the "
                                   "runtime-phase plugin (or were not written)")
    refs = case.reference()
    for name, out, ref in zip(names, built, refs):
        assert out.shape == ref.shape, f"{name}: {tuple(out.shape)} vs reference {tuple(ref.shape)}"
        if out.dtype == torch.int8:
            assert_int8_close(out, ref, name)
            if "state" in name:  # only fp32 rounding right at a .5 boundary may flip a state element
                assert int((out != ref).sum()) <= max(2, out.numel() // 200), f"{name}: too many 1-LSB differences"
        elif out.dtype == torch.float16:
            assert_fp16_close(out, ref.float(), name)
        else:
            torch.testing.assert_close(out, ref.float(), rtol=1e-6, atol=1e-6 * float(ref.abs().max()), msg=name)


def test_enqueue_refuses_mismatched_shapes_on_the_device(harness):
    """enqueue itself re-checks the descriptors it is given and returns an error, leaving the outputs alone."""
    case = make(SPECS[0], "cuda")  # QuantAddRMSNorm
    specs = case.output_specs()
    outs_t = [torch.full(shape, POISON[TORCH_DTYPE[dt]][1], dtype=TORCH_DTYPE[dt], device="cuda") for dt, shape in specs]
    ins = case.input_tensors()
    ins[2].dims = (ins[2].dims[0] + 1,)  # weight [d + 1]
    outs = [Tensor(dt, shape, t.data_ptr()) for (dt, shape), t in zip(specs, outs_t)]
    with pytest.raises(HarnessError, match=r"enqueue: input 'weight' has shape"):
        harness.run(case.op, case.fields(), ins, outs, raw_enqueue=True,
                    stream=torch.cuda.current_stream().cuda_stream)
    torch.cuda.synchronize()
    assert torch.equal(outs_t[0], torch.full_like(outs_t[0], POISON[torch.int8][1]))


# ---- the linear nodes of the bundled models' exports, recipe by recipe ----------------------------------------

LINEAR_OPS = ("W8A8Linear", "W4A8Linear", "W4A16Linear")


def _recipes():
    from quamba_edge.quant.recipes import RECIPES

    return list(RECIPES)


@pytest.fixture(scope="module")
def bundled_exports(tmp_path_factory):
    """(recipe, bits, arch) -> the fp16 ONNX export of the bundled ``<arch>-ref`` model quantized with that
    recipe (a few random-token calibration samples: the weights and scale layouts are the real ones); recipe
    None: the unquantized model."""
    onnx = pytest.importorskip("onnx")
    from quamba_edge.export import export_model
    from quamba_edge.models.loading import load_model
    from quamba_edge.quant.recipes import quantize_model
    from quamba_edge.tokenizer import bundled_assets_dir

    root, cache = tmp_path_factory.mktemp("trt-bundled"), {}

    def get(key):
        if key not in cache:
            recipe, bits, arch = key
            fp = load_model(bundled_assets_dir() / f"{arch}-ref").eval()
            g = torch.Generator().manual_seed(0)
            calib = [torch.randint(0, fp.config.vocab_size, (1, 64), generator=g) for _ in range(2)]
            # recipe None: the unquantized model's fp16 export (its SSD / SelectiveScan nodes)
            model = fp if recipe is None else quantize_model(fp, recipe, bits, calib)
            d = export_model(model, root / "-".join(map(str, key)), dtype="fp16")
            cache[key] = onnx.load(str(d / "model.onnx"))
        return cache[key]

    return get


def _linear_cases(model, batch: int, length: int, seed: int, device: str = "cuda") -> list[Case]:
    """One case per linear node: its initializers (the ONNX dtypes: packed weights stay uint8 for the reference;
    the harness hands the same bytes to the plugin as int8), random activations [batch, length, K]."""
    import onnx
    from onnx import numpy_helper

    from quamba_edge.ops import registry

    inits = {i.name: i for i in model.graph.initializer}
    g = torch.Generator(device=device).manual_seed(seed)
    cases = []
    for n in model.graph.node:
        if n.domain != registry.DOMAIN or n.op_type not in LINEAR_OPS:
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute
                 if a.name not in registry.PLUGIN_ATTRS}
        ins = []
        for i, name in enumerate(n.input):
            if i == 0:  # the activation
                k = int(attrs.get("in_features") or numpy_helper.to_array(inits[n.input[2]]).shape[1])
                x = torch.randn(batch, length, k, device=device, generator=g)
                # int8 activations spread like calibrated ones (most well inside the range, a few clamped)
                ins.append(torch.clamp(torch.round(x * 32), -128, 127).to(torch.int8) if n.op_type != "W4A16Linear"
                           else x.half())
            else:
                ins.append(torch.from_numpy(numpy_helper.to_array(inits[name]).copy()).to(device))
        binding = {"Y": "int8" if attrs["out_int8"] else "T"} if "out_int8" in attrs else {}
        cases.append(Case(n.op_type, f"{n.name}-B{batch}-L{length}", ins, attrs, binding))
    return cases


@pytest.mark.parametrize("recipe", _recipes(), ids=["-".join(r) for r in _recipes()])
def test_bundled_model_linear_nodes(harness, bundled_exports, recipe):
    """Every linear node of the recipe's export, prefill (M = 74: the kernels' GEMM) and decode (M = 3: GEMV)."""
    model = bundled_exports(recipe)
    seen = set()
    for (b, l), seed in ((LINEAR_PREFILL, 1), (LINEAR_DECODE, 2)):
        cases = _linear_cases(model, b, l, seed)
        assert cases, f"no linear node in the {recipe} export"
        for case in cases:
            _check(harness, case)
            seen.add(case.op)
    bits = recipe[1]
    assert seen >= {"W8A8Linear" if bits == "w8a8" else "W4A8Linear" if bits == "w4a8" else "W4A16Linear"}


# ---- the float SSD / SelectiveScan nodes of the bundled models' fp16 and W4A16 exports --------------------------

FLOAT_SCAN_OPS = ("SSD", "SelectiveScan")
FLOAT_SCAN_MODELS = [(None, "fp16", "mamba1"), (None, "fp16", "mamba2"), ("quamba2", "w4a16", "mamba1"),
                     ("quamba2", "w4a16", "mamba2")]


def _constant(model, name: str):
    """The value of a tensor the graph computes from initializers alone (A = Neg(Exp(A_log)) where the exporter
    did not fold it), by ONNX's reference evaluator on that subgraph; None when it depends on a graph input."""
    import onnx
    from onnx import helper, numpy_helper
    from onnx.reference import ReferenceEvaluator

    inits = {i.name: i for i in model.graph.initializer}
    if name in inits:
        return numpy_helper.to_array(inits[name])
    producer = {o: n for n in model.graph.node for o in n.output}
    need, stack = set(), [name]
    while stack:
        x = stack.pop()
        if not x or x in inits or x in need:
            continue
        n = producer.get(x)
        if n is None or n.domain not in ("", "ai.onnx"):
            return None  # a graph input or a custom node
        need.add(x)
        stack.extend(n.input)
    nodes = [n for n in model.graph.node if any(o in need for o in n.output)]  # graph order is topological
    used = sorted({i for n in nodes for i in n.input if i in inits})
    g = helper.make_graph(nodes, "const", [], [helper.make_tensor_value_info(name, onnx.TensorProto.UNDEFINED, None)],
                          [inits[i] for i in used])
    return ReferenceEvaluator(helper.make_model(g, opset_imports=model.opset_import)).run(None, {})[0]


def _float_scan_cases(model, batch: int, length: int, seed: int, device: str = "cuda") -> list[Case]:
    """One case per SSD / SelectiveScan node: its constants (A = -exp(A_log), D, delta_bias: fp32; initializers or
    computed from them), random activations and state of the graph's dtypes and shapes (batch / seq substituted):
    dt already softplus'ed (0.001 .. 0.1), delta around dt_proj's output, the rest unit normal."""
    import numpy as np
    import onnx

    from quamba_edge.ops import registry

    info = {v.name: v.type.tensor_type for v in [*model.graph.value_info, *model.graph.input, *model.graph.output]}
    dtypes = {onnx.TensorProto.FLOAT16: torch.float16, onnx.TensorProto.FLOAT: torch.float32}
    sizes = {"batch": batch, "seq": length}
    g = torch.Generator(device=device).manual_seed(seed)
    cases = []
    for n in model.graph.node:
        if n.domain != registry.DOMAIN or n.op_type not in FLOAT_SCAN_OPS:
            continue
        rec = registry.get(n.op_type)
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute
                 if a.name not in registry.PLUGIN_ATTRS}
        ins = []
        for port, name in zip(rec.inputs, n.input):
            const = _constant(model, name) if port.dtype == "float32" else None
            if const is not None:
                ins.append(torch.from_numpy(np.array(const, copy=True)).to(device))
                continue
            shape = [sizes[d.dim_param] if d.dim_param else d.dim_value for d in info[name].shape.dim]
            if port.name == "dt":
                x = 0.001 + 0.099 * torch.rand(*shape, device=device, generator=g)
            elif port.name == "delta":
                x = 0.5 * torch.randn(*shape, device=device, generator=g)
            else:
                x = torch.randn(*shape, device=device, generator=g) * (2.0 if port.name == "state_in" else 1.0)
            ins.append(x.to(dtypes[info[name].elem_type]))
        cases.append(Case(n.op_type, f"{n.name}-B{batch}-L{length}", ins, attrs))
    return cases


@pytest.mark.parametrize("model_key", FLOAT_SCAN_MODELS, ids=["-".join(map(str, k)) for k in FLOAT_SCAN_MODELS])
def test_bundled_model_float_scan_nodes(harness, bundled_exports, model_key):
    """Every SSD / SelectiveScan node of the unquantized fp16 and the W4A16 exports (real A, D, delta_bias), at a
    prefill (L = 37: quamba_ssd / quamba_selective_scan) and a decode shape (L = 1: the state-update kernels)."""
    model = bundled_exports(model_key)
    want = "SSD" if model_key[2] == "mamba2" else "SelectiveScan"
    for (b, l), seed in ((LINEAR_PREFILL, 1), (LINEAR_DECODE, 2)):
        cases = _float_scan_cases(model, b, l, seed)
        assert cases and {c.op for c in cases} == {want}, f"no {want} node in the {model_key} export"
        for case in cases:
            _check(harness, case)
