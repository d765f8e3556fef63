"""Shared by the kernel-dispatch tests (CPU: tests/test_kernel_dispatch.py; GPU:
tests/gpu/test_torch_cuda_kernels.py): tiny quantized models with shapes the CUDA kernels take, for every
recipe, and ``FakeKernels``, a stand-in for ``torch.ops.quamba_kernels`` built from the bindings' own schemas
and the reference ops."""

from __future__ import annotations

import functools
import re
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import torch

from quamba_edge import ops
from quamba_edge._tracing import exporting
from quamba_edge.models import MambaConfig, MambaLM
from quamba_edge.models import ssm
from quamba_edge.quant.recipes import RECIPES, quantize_model
from runtime_helpers import scaled_random_lm

REPO = Path(__file__).resolve().parents[1]
VOCAB = 8192  # the bundled tokenizer's size, so EdgeModel can load the saved artifacts

#: (recipe, bits, arch) for every valid combination, as test ids
CASES = [(r, b, a) for r, b, a in RECIPES]
CASE_IDS = ["-".join(c) for c in CASES]


def kernel_config(arch: str) -> MambaConfig:
    """Tiny, but inside every kernel's supported set: Mamba2 d_state 64 (the quant SSD kernels take
    16/32/64/128/256, the float SSD prefill of the W4A16 models 64/128/256) and headdim 16 (the float prefill
    needs headdim % 16 == 0), Mamba1 d_state 16, d_inner 128 (a Hadamard size), Mamba2 with 2 SSD groups of 4
    heads (the G x 4 x 4 scale tables)."""
    kw = dict(d_state=64, headdim=16, ngroups=2, chunk_size=8) if arch == "mamba2" else dict(d_state=16)
    return MambaConfig(arch=arch, d_model=64, n_layer=2, vocab_size=VOCAB, **kw)


@functools.lru_cache(maxsize=None)
def tiny_fp(arch: str) -> MambaLM:
    return scaled_random_lm(kernel_config(arch))


@functools.lru_cache(maxsize=None)
def tiny_quantized(recipe: str, bits: str, arch: str):
    """``tiny_fp(arch)`` quantized on CPU (a few short calibration samples; RTN-free GPTQ on two)."""
    g = torch.Generator().manual_seed(1)
    calib = [torch.randint(0, VOCAB, (1, 48), generator=g) for _ in range(4)]
    opts = {} if bits == "w8a8" else {"group_size": 32}
    return quantize_model(tiny_fp(arch), recipe, bits, calib, gptq_calib=calib[:2], **opts).eval()


def expected_kernel_ops(model: Any, decode: bool) -> set[str]:
    """The kernel-backed ops a quantized model's forward calls (prefill, or a one-token decode step)."""
    qc, arch = model.quant_config, model.config.arch
    # W4A16: its linears and embedding (its norms have float outputs, which stay on the reference)
    names: set[str] = {"quant_embedding"} if model.embedding.bits in (4, 8) else set()
    if not qc.act8:
        names.add("w4a16_linear")
        if qc.out_proj_hadamard:
            names.add("hadamard")  # the float online Hadamard (a kernel helper: kernel_dispatch.hadamard)
        names |= float_ssm_ops(arch, decode)  # the W4A16 mixers' float SSM
        if arch == "mamba2":
            names.add("gated_rms_norm")  # and Mamba2's float gated norm
    else:
        names.add("w8a8_linear" if qc.w_bits == 8 else "w4a8_linear")
        if arch == "mamba1":
            names.add("w8a8_linear")  # dt_proj stays W8A8 under W4A8 (spec F.24)
    if qc.act8:
        names |= {"quant_add_rms_norm", "quant_causal_conv1d"}  # the block norms' int8 outputs
        if qc.out_proj_hadamard:
            names.add("quant_hadamard")
        if arch == "mamba1":
            names.add("quant_selective_state_update" if decode else "quant_selective_scan")
        else:
            names |= {"quant_ssd_state_update" if decode else "quant_ssd", "quant_gated_rms_norm"}
    return names


def float_ssm_ops(arch: str, decode: bool) -> set[str]:
    """The float SSM ops an FP / W4A16 mixer calls (kernel_dispatch.ssd ... : the reference's names): its float
    conv (kernel_dispatch.causal_conv1d, prefill and decode) and its scan / SSD."""
    if arch == "mamba1":
        return {"causal_conv1d", "selective_state_update" if decode else "selective_scan"}
    return {"causal_conv1d", "ssd_state_update" if decode else "ssd"}


def float_norm_ops(arch: str) -> set[str]:
    """The float norms an FP model calls (prefill and decode): the block norms and norm_f
    (kernel_dispatch.add_rms_norm), Mamba2's gated norm (kernel_dispatch.gated_rms_norm)."""
    return {"add_rms_norm", "gated_rms_norm"} if arch == "mamba2" else {"add_rms_norm"}


def expected_row_ops(model: Any, decode: bool) -> set[str]:
    """The SSD ops that get the compact Quamba2 state-scale table (``RowScales``: ``state_scale_row``):
    Mamba2 with an int8 SSM state."""
    qc = model.quant_config
    if model.config.arch != "mamba2" or not (qc.act8 and qc.int8_ssm_state):
        return set()
    return {"quant_ssd_state_update" if decode else "quant_ssd"}


# ---- the bindings' schemas -----------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def binding_schemas() -> dict[str, Any]:
    """op name -> ``torch.FunctionSchema`` parsed from every ``m.def`` of plugins/torch/<op>.cpp (an op's file may
    define a helper beside it, as w4a16_linear.cpp's w4a16_dequantize)."""
    out = {}
    for cpp in sorted((REPO / "plugins" / "torch").glob("*.cpp")):
        defs = re.findall(r'm\.def\(\s*((?:"(?:[^"\\]|\\.)*"\s*)+)\)', cpp.read_text())
        assert defs, f"no m.def schema in {cpp}"
        for d in defs:
            schema = torch._C.parse_schema("".join(re.findall(r'"((?:[^"\\]|\\.)*)"', d)))
            out[schema.name.split("::")[-1]] = schema
    return out


def _kind_ok(t: Any, v: Any) -> bool:
    kind = t.kind()
    if kind == "OptionalType":
        return v is None or _kind_ok(t.getElementType(), v)
    if kind == "TensorType":
        return isinstance(v, torch.Tensor)
    if kind == "FloatType":
        return isinstance(v, (float, int)) and not isinstance(v, bool)
    if kind == "IntType":
        return isinstance(v, int) and not isinstance(v, bool)
    if kind == "BoolType":
        return isinstance(v, bool)
    raise AssertionError(f"schema type {t} not handled by the fake")


def split_call(schema: Any, args: tuple) -> tuple[list, list, dict]:
    """Check positional ``args`` against ``schema`` (count and kind of every argument, as the dispatcher
    would) and return (inputs, outputs, options): the arguments before, the ``Tensor(a!)`` ones, and the
    defaulted ones after the outputs by name (their defaults where not passed, e.g. ``state_scale_row``)."""
    params = schema.arguments
    required = sum(not a.has_default_value() for a in params)
    assert required <= len(args) <= len(params), f"{schema.name}: {len(args)} arguments, schema {schema}"
    ins, outs, opts = [], [], {}
    for i, a in enumerate(params):
        v = args[i] if i < len(args) else a.default_value
        assert _kind_ok(a.type, v), f"{schema.name}: argument {a.name} is {type(v).__name__}, schema says {a.type}"
        if a.alias_info is not None and a.alias_info.is_write:
            outs.append(v)
        elif not outs:
            ins.append(v)
        else:
            opts[a.name] = v
    return ins, outs, opts


# ---- the fake kernels: the reference ops behind the bindings' argument lists ------------------------------


def _state_dtype(scale: Any, st: torch.Tensor) -> None:
    want = (torch.int8,) if scale is not None else (torch.float32, torch.float16)
    assert st.dtype in want, f"state dtype {st.dtype}, the binding wants {want}"


def _add_rms_norm(i, o, opts):
    hidden, residual, weight, eps, out_scale = i
    y, res = o
    assert y.dtype == (torch.int8 if out_scale is not None else torch.float16)
    ry, rres = ops.quant_add_rms_norm(hidden, residual, weight, eps, out_scale, res.dtype == torch.float32)
    y.copy_(ry)
    res.copy_(rres)


def _embedding(i, o, opts):
    """As the kernel: the stored table (bits 4 packed), fp16 row scales, zero rows for ids outside [0, V)."""
    from quamba_edge.ops.quant_embedding import quant_embedding_packed4

    ids, table, row_scale, bits = i
    (out,) = o
    assert out.dtype in (torch.float32, torch.float16, torch.bfloat16) and row_scale.dtype == torch.float16
    assert table.dtype == (torch.int8 if bits == 8 else torch.uint8) and ids.dtype in (torch.int32, torch.int64)
    valid = (ids >= 0) & (ids < table.shape[0])
    safe = torch.where(valid, ids, 0)
    d = out.shape[-1]
    ref = ops.quant_embedding(safe, table, row_scale, 8) if bits == 8 else \
        quant_embedding_packed4(safe, table, row_scale, d)
    out.copy_(torch.where(valid[..., None], ref, 0.0))


def _gated_rms_norm(i, o, opts):
    (out,) = o
    assert out.dtype == torch.float16
    out.copy_(ops.quant_gated_rms_norm(*i))


def _hadamard(i, o, opts):
    (y,) = o
    assert y.dtype == torch.int8
    x, matrix, out_scale = i
    n = x.shape[-1]
    if tuple(matrix.shape) != (n, n):  # the base factor (kernel_dispatch._hadamard_base), as the binding takes it
        from quamba_edge.quant.hadamard import hadamard_matrix

        full = hadamard_matrix(n, device=x.device)
        pw = n // matrix.shape[0]
        assert torch.equal(full[::pw, ::pw], matrix), "not the base factor of the size-n Hadamard matrix"
        matrix = full
    y.copy_(ops.quant_hadamard(x, matrix, out_scale))


def _float_hadamard(i, o, opts):
    """As the binding: y float of x's shape, matrix the size-n Hadamard matrix or its b x b base factor (here checked
    against quant.hadamard.hadamard_matrix(n)); y = the fp32 x @ M^T rounded once to y's dtype."""
    from quamba_edge.quant.hadamard import hadamard_matrix

    x, matrix = i
    (y,) = o
    n = x.shape[-1]
    assert x.dtype in _NORM_DTYPES and y.dtype in _NORM_DTYPES and y.shape == x.shape, (x.dtype, y.dtype, y.shape)
    assert matrix.dtype == torch.float32 and matrix.device == x.device
    full = hadamard_matrix(n, device=x.device)
    pw = n // matrix.shape[0]
    assert torch.equal(matrix, full if tuple(matrix.shape) == (n, n) else full[::pw, ::pw]), "not the Hadamard base"
    y.copy_(ops.hadamard(x, full))


def _causal_conv1d(i, o, opts):
    y, st = o
    assert y.dtype == st.dtype == torch.int8 and st.is_contiguous()
    for s in (i[1], i[3], i[5], i[6]):  # the binding: fp32, contiguous, one value or [C]
        assert s is None or (s.dtype == torch.float32 and s.is_contiguous() and s.dim() <= 1)
    ry, rst = ops.quant_causal_conv1d(*i)
    y.copy_(ry)
    st.copy_(rst)


def _scan(ref: Callable) -> Callable:
    def run(i, o, opts):
        y, st = o
        state_in, state_scale = i[16], i[17]
        assert y.dtype == torch.float16
        _state_dtype(state_scale, st)
        assert state_in is None or (state_in.dtype == st.dtype and state_in.is_contiguous())
        ry, rst = ref(*i[:18])
        y.copy_(ry)
        st.copy_(rst)
    return run


def _row_scales(state_scale: torch.Tensor, rows: torch.Tensor, h: int, p: int, n: int) -> torch.Tensor:
    """The binding's checks of a compact table with ``state_scale_row`` (quamba_m2::state_scales), then the
    table expanded to the [H, P, N] scales the reference takes."""
    assert rows.dtype == torch.int32 and tuple(rows.shape) == (h, p), (rows.dtype, tuple(rows.shape))
    assert state_scale.dim() == 2 and state_scale.shape[1] == n and state_scale.shape[0] >= 1, state_scale.shape
    assert state_scale.dtype == torch.float32 and state_scale.device == rows.device
    assert int(rows.min()) >= 0 and int(rows.max()) < state_scale.shape[0]  # the kernel trusts the rows
    return state_scale[rows.long()]


def _ssd(ref: Callable, decode: bool) -> Callable:
    def run(i, o, opts):
        y, st = o
        head, rest = i[:13], i[13:]
        if decode:
            lo, hi, state_in, state_scale = rest
        else:
            chunk, lo, hi, state_in, state_scale = rest
        rows = opts.get("state_scale_row")
        if rows is not None:
            assert state_scale is not None, "state_scale_row without a state_scale"
            h, p = head[0].shape[-2:]
            state_scale = _row_scales(state_scale, rows, h, p, head[7].shape[-1])
        args = (*head, (lo, hi), state_in, state_scale) if decode else (*head, chunk, (lo, hi), state_in, state_scale)
        assert y.dtype == torch.float16
        _state_dtype(state_scale, st)
        assert state_in is None or (state_in.dtype == st.dtype and state_in.is_contiguous())
        ry, rst = ref(*args)
        y.copy_(ry)
        st.copy_(rst)
    return run


def _f16_act(t: Any, name: str, dense: int = 1) -> None:
    """An activation as the float SSM bindings take it: fp16, its trailing ``dense`` dims packed."""
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float16, f"{name}: {None if t is None else t.dtype}"
    expect = 1
    for i in range(t.dim() - 1, t.dim() - 1 - dense, -1):
        assert t.shape[i] == 1 or t.stride(i) == expect, f"{name}: strides {t.stride()}"
        expect *= t.shape[i]


def _fp32_param(t: Any, name: str) -> None:
    assert t is None or (t.dtype == torch.float32 and t.is_contiguous()), f"{name}: {t.dtype}"


def _float_states(st_in: Any, st_out: torch.Tensor) -> None:
    assert st_out.dtype in (torch.float32, torch.float16) and st_out.is_contiguous()
    assert st_in is None or (st_in.dtype == st_out.dtype and st_in.is_contiguous() and st_in.shape == st_out.shape)


def _up(t: Any) -> Any:
    return None if t is None else t.float()


def _aligned16(t: torch.Tensor) -> bool:
    return t.data_ptr() % 16 == 0 and all((t.stride(i) * t.element_size()) % 16 == 0 for i in range(t.dim() - 1))


def _float_ssd(i, o, opts) -> bool:
    """As quamba_ssd: False (nothing written: cudaErrorNotSupported) outside ssd.h's set, else the reference."""
    x, dt, A, B, C, chunk, D, state_in = i
    y, st = o
    for t, name in ((x, "x"), (B, "B"), (C, "C")):
        _f16_act(t, name, 2)
    assert dt.dtype in (torch.float16, torch.float32) and dt.stride(-1) == 1 and y.dtype == torch.float16
    _fp32_param(A, "A")
    _fp32_param(D, "D")
    _float_states(state_in, st)
    if B.shape[-1] not in (64, 128, 256) or x.shape[-1] % 16 or not all(_aligned16(t) for t in (x, B, C)):
        return False
    ry, rst = ssm.ssd_chunked(x.float(), dt.float(), A, B.float(), C.float(), chunk, D, _up(state_in))
    y.copy_(ry)
    st.copy_(rst)
    return True


def _float_ssd_state_update(i, o, opts):
    state, x, dt, A, B, C, D = i
    y, st = o
    for t, name in ((x, "x"), (B, "B"), (C, "C")):
        _f16_act(t, name, 2)
    assert dt.dtype in (torch.float16, torch.float32) and y.dtype == torch.float16
    _fp32_param(A, "A")
    _fp32_param(D, "D")
    _float_states(state, st)
    ry, rst = ssm.ssd_state_update(state.float(), x.float(), dt.float(), A, B.float(), C.float(), D)
    y.copy_(ry)
    st.copy_(rst)


def _float_selective_scan(i, o, opts):
    u, delta, A, B, C, D, z, bias, softplus, state_in = i
    y, st = o
    for t, name in ((u, "u"), (delta, "delta"), (B, "B"), (C, "C")):
        _f16_act(t, name)
    assert z is None or _f16_act(z, "z") is None
    assert y.dtype == torch.float16
    for t, name in ((A, "A"), (D, "D"), (bias, "delta_bias")):
        _fp32_param(t, name)
    _float_states(state_in, st)
    ry, rst = ssm.selective_scan(u.float(), delta.float(), A, B.float(), C.float(), D, _up(z), bias, softplus,
                                 _up(state_in))
    y.copy_(ry)
    st.copy_(rst)


def _float_selective_state_update(i, o, opts):
    state, x, dt, A, B, C, D, z, bias, softplus = i
    y, st = o
    for t, name in ((x, "x"), (dt, "dt"), (B, "B"), (C, "C")):
        _f16_act(t, name)
    assert z is None or _f16_act(z, "z") is None
    assert y.dtype == torch.float16
    for t, name in ((A, "A"), (D, "D"), (bias, "dt_bias")):
        _fp32_param(t, name)
    _float_states(state, st)
    ry, rst = ssm.selective_state_update(state.float(), x.float(), dt.float(), A, B.float(), C.float(), D, _up(z),
                                         bias, softplus)
    y.copy_(ry)
    st.copy_(rst)


def _float_causal_conv1d(i, o, opts):
    """As the binding: x fp16 / fp32 with unit channel stride, weight [C, K] (K <= 4), bias / state fp16 / fp32
    (used as they are: fp32 math), y and the new state in x's dtype; the reference in fp32, rounded once."""
    x, weight, bias, state, silu = i
    y, st = o
    assert x.dtype in (torch.float16, torch.float32) and x.dim() == 3 and x.stride(2) == 1, (x.dtype, x.stride())
    b, L, c = x.shape
    assert weight.dtype in (torch.float16, torch.float32) and weight.dim() == 2 and weight.shape[0] == c
    kw = weight.shape[1]
    assert 1 <= kw <= 4
    assert bias is None or (bias.dtype in (torch.float16, torch.float32) and tuple(bias.shape) == (c,))
    assert state is None or (state.dtype in (torch.float16, torch.float32) and tuple(state.shape) == (b, c, kw - 1))
    assert y.dtype == st.dtype == x.dtype and tuple(y.shape) == (b, L, c) and y.stride(2) == 1
    assert tuple(st.shape) == (b, c, kw - 1) and st.is_contiguous()
    ry, rst = ssm.causal_conv1d(x.float(), weight.float(), _up(bias), _up(state), "silu" if silu else None)
    y.copy_(ry)
    st.copy_(rst)


_NORM_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _norm_rows(t: Any, name: str, n: int) -> None:
    """A float [rows, n] tensor with unit element stride, as the dispatch hands the norm bindings their rows."""
    assert isinstance(t, torch.Tensor) and t.dtype in _NORM_DTYPES, f"{name}: {None if t is None else t.dtype}"
    assert t.dim() == 2 and t.shape[1] == n and t.stride(1) == 1, f"{name}: {tuple(t.shape)} {t.stride()}"


def _float_add_rms_norm(i, o, opts):
    """As the binding: the stream's dtype from residual_in_fp32 / promotion, residual_out (or None) in it."""
    from quamba_edge.ops import kernel_dispatch as kd

    hidden, residual, weight, eps, res_fp32 = i
    y, res = o
    d = hidden.shape[-1]
    _norm_rows(hidden, "hidden", d)
    if residual is not None:
        _norm_rows(residual, "residual", d)
    assert weight.dtype in _NORM_DTYPES and tuple(weight.shape) == (d,) and y.dtype in _NORM_DTYPES
    ry, rres = kd._float_add_rms_norm(hidden, residual, weight, eps, res_fp32)
    assert res is None or res.dtype == rres.dtype, (res.dtype, rres.dtype)
    assert y.numel() == ry.numel() and (res is None or res.numel() == rres.numel())
    y.copy_(ry.reshape(y.shape))  # rms_norm(stream) in the weight's dtype: exact in the y the dispatch asked for
    if res is not None:
        res.copy_(rres.reshape(res.shape))


def _float_gated_rms_norm(i, o, opts):
    x, z, weight, eps, gs, nbg = i
    (out,) = o
    e = x.shape[-1]
    _norm_rows(x, "x", e)
    if z is not None:
        _norm_rows(z, "z", e)
    assert weight.dtype in _NORM_DTYPES and tuple(weight.shape) == (e,) and out.dtype in _NORM_DTYPES
    assert gs >= 1 and e % gs == 0 and out.numel() == x.numel()
    out.copy_(ssm.gated_rms_norm(x, z, weight, eps, gs, nbg).reshape(out.shape))


def _linear_y(y: torch.Tensor, out_scale: Any) -> None:
    assert y.dtype == (torch.int8 if out_scale is not None else torch.float32), y.dtype


def _one(s: torch.Tensor) -> torch.Tensor:
    """A device scale as the bindings take it (one value or per row) in the reference's form."""
    assert isinstance(s, torch.Tensor) and s.dtype == torch.float32, s
    return s.reshape(()) if s.numel() == 1 else s


def _w8a8(i, o, opts):
    x, xs, w, ws, bias, os = i
    (y,) = o
    _linear_y(y, os)
    y.copy_(ops.w8a8_linear(x, _one(xs), w, _one(ws), bias, None if os is None else _one(os)))


def _w4a8(i, o, opts):
    from quamba_edge.quant.packing import unpack_int4

    x, xs, qweight, s_group, s_channel, gs, bias, os = i
    (y,) = o
    _linear_y(y, os)
    assert qweight.dtype == torch.uint8 and s_group.dtype == torch.float16
    codes = unpack_int4(qweight, x.shape[-1])
    y.copy_(ops.w4a8_linear(x, _one(xs), codes, s_group, s_channel, gs, None if os is None else _one(os), bias))


def _w4a16(i, o, opts):
    from quamba_edge.quant.packing import unpack_int4

    x, qweight, scale, gs, bias = i
    (y,) = o
    assert x.dtype == torch.float16 and y.dtype == torch.float32 and qweight.dtype == torch.uint8
    y.copy_(ops.w4a16_linear(x, unpack_int4(qweight, x.shape[-1]), scale, gs, bias))


def _w4a16_dequantize(i, o, opts):
    from quamba_edge.quant.packing import unpack_int4

    qweight, scale, k, gs = i
    (out,) = o
    assert out.dtype == torch.float16 and tuple(out.shape) == (qweight.shape[0], k) and qweight.dtype == torch.uint8
    out.copy_(ops.w4a16_dequantize(unpack_int4(qweight, k), scale, gs).half())


_IMPLS: dict[str, Callable] = {
    "w8a8_linear": _w8a8,
    "w4a8_linear": _w4a8,
    "w4a16_linear": _w4a16,
    "w4a16_dequantize": _w4a16_dequantize,
    "quant_add_rms_norm": _add_rms_norm,
    "quant_embedding": _embedding,
    "quant_gated_rms_norm": _gated_rms_norm,
    "quant_hadamard": _hadamard,
    "hadamard": _float_hadamard,
    "quant_causal_conv1d": _causal_conv1d,
    "quant_selective_scan": _scan(ops.quant_selective_scan),
    "quant_selective_state_update": _scan(ops.quant_selective_state_update),
    "quant_ssd": _ssd(ops.quant_ssd, decode=False),
    "quant_ssd_state_update": _ssd(ops.quant_ssd_state_update, decode=True),
    "ssd": _float_ssd,
    "ssd_state_update": _float_ssd_state_update,
    "selective_scan": _float_selective_scan,
    "selective_state_update": _float_selective_state_update,
    "causal_conv1d": _float_causal_conv1d,
    "add_rms_norm": _float_add_rms_norm,
    "gated_rms_norm": _float_gated_rms_norm,
}


class FakeKernels:
    """Stands in for ``torch.ops.quamba_kernels`` (on any device): each call is checked against the
    binding's schema (argument count and kinds; output and state dtypes), then the reference op computes
    the result, written into the outputs as the kernel writes them (``y`` in fp16). The float ``ssd`` answers
    False (counted in ``unsupported``, nothing written) for what quamba_ssd does not take (ssd.h). ``calls`` counts the
    calls per op, ``row_calls`` the SSD calls given a compact state-scale table with ``state_scale_row``
    (expanded for the reference as the kernel indexes it); a call while exporting fails the test."""

    def __init__(self) -> None:
        self.schemas = binding_schemas()
        self.calls: Counter[str] = Counter()
        self.row_calls: Counter[str] = Counter()
        self.unsupported: Counter[str] = Counter()
        assert set(self.schemas) == set(_IMPLS), sorted(self.schemas)

    def __getattr__(self, name: str) -> Callable:
        if name.startswith("_") or name in ("schemas", "calls", "row_calls", "unsupported") or name not in self.schemas:
            raise AttributeError(name)
        return functools.partial(self._call, name)

    def _call(self, name: str, *args: Any) -> Any:
        assert not exporting(), f"{name} called while exporting"
        ins, outs, opts = split_call(self.schemas[name], args)
        ret = _IMPLS[name](ins, outs, opts)
        if ret is False:  # the float SSD prefill: "not supported", nothing written
            self.unsupported[name] += 1
            return False
        self.calls[name] += 1
        if opts.get("state_scale_row") is not None:
            self.row_calls[name] += 1
        return ret
