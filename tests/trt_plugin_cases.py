"""Plugin cases shared by the TensorRT plugin tests (tests/test_trt_plugins_cpu.py on CPU, build phase only;
tests/gpu/test_trt_plugins.py on a GPU, every step): random inputs of each plugin op in ONNX order, the
node's attributes, and what the harness needs (fields, tensor descriptors, expected outputs), all derived
from the op registry. Inputs keep the record's ONNX dtypes (the reference takes them); the harness sees the
TensorRT dtypes (uint8 packed weights as int8, the same bytes: trt_fields.TRT_CARRIER)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from quamba_edge.ops import registry
from quamba_edge.ops.trt_fields import (
    TRT_ACT_DTYPE,
    host_scale_inputs,
    output_dim_sources,
    parse_shapes,
    trt_dtype,
    variants,
)
from quamba_edge.trt_harness import Tensor

RUNTIME_SYMBOLS = ("B", "L")  # the graph's dynamic dims (batch, sequence)
DTYPE_NAME = {torch.int8: "int8", torch.float16: "float16", torch.float32: "float32", torch.int32: "int32",
              torch.int64: "int64"}
TORCH_DTYPE = {v: k for k, v in DTYPE_NAME.items()}
ONNX_DTYPE_NAME = {**DTYPE_NAME, torch.uint8: "uint8"}  # the inputs' record dtypes (uint8: packed int4)


@dataclass
class Case:
    op: str
    id: str
    inputs: list[torch.Tensor]  # ONNX input order
    attrs: dict = field(default_factory=dict)
    binding: dict = field(default_factory=dict)  # type variables the inputs do not fix (the linears' Y)
    # output shapes where an attribute, not an input dim, gives a dim (QuantEmbedding's d = embedding_dim)
    shapes: list | None = None

    @property
    def record(self) -> registry.OpRecord:
        return registry.get(self.op)

    def fields(self) -> dict:
        """The plugin fields: the attributes plus each per-tensor scale input (what fold_host_scales adds)."""
        rec = self.record
        out = dict(rec.attr_values(self.attrs))
        for i in host_scale_inputs(rec):
            out[rec.inputs[i].name] = float(self.inputs[i])
        return out

    def output_specs(self) -> list[tuple[str, tuple[int, ...]]]:
        """(dtype, shape) of every output: the dtype variant the inputs select, dims from the shape rules."""
        rec = self.record
        n = len(rec.inputs)
        got = [trt_dtype(ONNX_DTYPE_NAME[t.dtype]) for t in self.inputs]
        rows = [r for r in variants(rec) if r[:n] == got]
        if self.binding:
            bind = {"T": TRT_ACT_DTYPE, **self.binding}
            want = [trt_dtype(rec.resolve(p.dtype, bind)) for p in rec.outputs]
            rows = [r for r in rows if r[n:] == want]
        assert len(rows) == 1, f"{self.op}: inputs {got} match {len(rows)} dtype variants"
        shapes = self.shapes or [tuple(int(self.inputs[i].shape[j]) + off for i, j, off in dims)
                                 for dims in output_dim_sources(rec)]
        return list(zip(rows[0][n:], shapes))

    def input_tensors(self) -> list[Tensor]:
        rec = self.record
        out = []
        for port, t in zip(rec.inputs, self.inputs):
            alt = parse_shapes(port.shape)[0]
            dyn = [k for k, d in enumerate(alt) if d.symbol in RUNTIME_SYMBOLS and k < t.dim()]
            out.append(Tensor(trt_dtype(ONNX_DTYPE_NAME[t.dtype]), tuple(t.shape), t.data_ptr() if t.is_cuda else None,
                              dynamic=dyn))
        return out

    def reference(self) -> tuple[torch.Tensor, ...]:
        """The node's own implementation (what ONNX Runtime runs; the L = 1 path for decode)."""
        return tuple(self.record.impl(*self.inputs, **self.record.attr_values(self.attrs)))


def _i8(gen, *shape, device):
    return torch.randint(-128, 128, shape, dtype=torch.int8, device=device, generator=gen)


def _u(gen, *shape, lo, hi, device):
    return lo + (hi - lo) * torch.rand(*shape, device=device, generator=gen)


def _s(x: float, device) -> torch.Tensor:
    return torch.tensor(float(x), dtype=torch.float32, device=device)


def _q(x: torch.Tensor, scale) -> torch.Tensor:
    return torch.clamp(torch.round(x / scale), -128, 127).to(torch.int8)


def add_rms_norm(b, l, d, *, device="cpu", seed=0) -> Case:
    g = torch.Generator(device=device).manual_seed(seed)
    hidden = torch.randn(b, l, d, generator=g, device=device).half()
    residual = torch.randn(b, l, d, generator=g, device=device) * 2
    weight = _u(g, d, lo=0.5, hi=1.5, device=device)
    return Case("QuantAddRMSNorm", f"B{b}-L{l}-d{d}", [hidden, residual, weight, _s(0.02, device)], {"eps": 1e-5})


def causal_conv1d(b, l, c, k, *, device="cpu", seed=0) -> Case:
    g = torch.Generator(device=device).manual_seed(seed)
    ins = [_i8(g, b, l, c, device=device), _u(g, c, lo=0.01, hi=0.03, device=device), _i8(g, c, k, device=device),
           _u(g, c, lo=0.002, hi=0.01, device=device), _i8(g, c, device=device),
           _u(g, c, lo=0.001, hi=0.005, device=device), _u(g, c, lo=0.005, hi=0.02, device=device),
           _i8(g, b, c, k - 1, device=device)]
    return Case("QuantCausalConv1d", f"B{b}-L{l}-C{c}-K{k}", ins, {"silu": 1})


def embedding(b, l, v, d, bits, *, device="cpu", seed=0) -> Case:
    """QuantEmbedding inputs: ids with the first and last rows and a duplicate, random codes (bits 4: the
    packed table uint8 [V, ceil(d/2)], as stored) and signed fp16 row scales (the signed row max, F.14)."""
    from quamba_edge.quant.packing import pack_int4

    g = torch.Generator(device=device).manual_seed(seed)
    ids = torch.randint(0, v, (b, l), dtype=torch.int64, device=device, generator=g)
    flat = ids.view(-1)
    flat[0] = v - 1
    if flat.numel() > 2:
        flat[1], flat[-1] = 0, v - 1
    # an odd d's pad nibble is 15, not the quantizer's 8 (zero): the plugin must not read it
    table = _i8(g, v, d, device=device) if bits == 8 else pack_int4(_w4_codes(g, v, d, device), pad_code=15)
    scale = _u(g, v, lo=-0.05, hi=0.05, device=device).half()
    return Case("QuantEmbedding", f"B{b}-L{l}-V{v}-d{d}-w{bits}", [ids, table, scale],
                {"bits": bits, "embedding_dim": d}, shapes=[(b, l, d)])


def gated_rms_norm(b, l, e, group_size, norm_before_gate=0, *, device="cpu", seed=0) -> Case:
    g = torch.Generator(device=device).manual_seed(seed)
    ins = [torch.randn(b, l, e, generator=g, device=device).half(), _i8(g, b, l, e, device=device), _s(0.03, device),
           _u(g, e, lo=0.5, hi=1.5, device=device)]
    return Case("QuantGatedRMSNorm", f"B{b}-L{l}-E{e}-g{group_size}-nbg{norm_before_gate}", ins,
                {"eps": 1e-5, "group_size": group_size, "norm_before_gate": norm_before_gate})


def hadamard(b, l, n, *, device="cpu", seed=0) -> Case:
    g = torch.Generator(device=device).manual_seed(seed)
    x = torch.randn(b, l, n, generator=g, device=device).half()
    return Case("QuantHadamard", f"B{b}-L{l}-n{n}", [x, _s(0.02, device)], {"size": n})


def ssd(b, l, h, p, gr, n, state="int8", *, d=True, device="cpu", seed=0) -> Case:
    """QuantSSD inputs (Quamba2-style scales); the int8 state's per-(h, p, n) scales are calibrated on a float
    run of the same inputs so the state uses the int8 range."""
    from quamba_edge.ops.quant_ssd import quant_ssd

    g = torch.Generator(device=device).manual_seed(seed)
    ins = [_i8(g, b, l, h, p, device=device), _u(g, h, p, lo=0.005, hi=0.03, device=device),
           _i8(g, b, l, h, device=device), _s(0.03, device), _u(g, h, lo=-4.0, hi=0.5, device=device),
           _i8(g, h, device=device), _s(0.02, device),
           _i8(g, b, l, gr, n, device=device), _u(g, gr, lo=0.01, hi=0.04, device=device),
           _i8(g, b, l, gr, n, device=device), _u(g, gr, lo=0.01, hi=0.04, device=device),
           _i8(g, h, device=device) if d else torch.zeros(h, dtype=torch.int8, device=device),
           _s(0.01 if d else 0.0, device)]
    s0 = torch.randn(b, h, p, n, generator=g, device=device) * 4.0
    if state == "int8":
        _, s_f = quant_ssd(*ins[:13], 256, (0.0, float("inf")), s0, None)
        amax = torch.cat([s_f, s0]).abs().amax(dim=0).clamp_min(1e-3)
        scale = (amax / 110.0 * _u(g, h, p, n, lo=0.6, hi=1.4, device=device)).contiguous()
        ins += [_q(s0, scale), scale]
    else:
        ins += [s0.half(), _s(1.0, device)]
    return Case("QuantSSD", f"B{b}-L{l}-H{h}-P{p}-G{gr}-N{n}-{state}" + ("" if d else "-noD"), ins,
                {"chunk_size": 64, "dt_limit_lo": 0.0, "dt_limit_hi": float("inf")})


def selective_scan(b, l, e, n, state="int8", *, device="cpu", seed=0) -> Case:
    """QuantSelectiveScan inputs (Mamba1 per-tensor scales, A_log ~ log(1..N)); the int8 state's scale is
    calibrated on a float run of the same inputs."""
    from quamba_edge.ops.quant_selective_scan import quant_selective_scan

    g = torch.Generator(device=device).manual_seed(seed)
    ar = torch.arange(1, n + 1, dtype=torch.float32, device=device)
    a_log = torch.log(ar).repeat(e, 1) + 0.2 * torch.rand(e, n, device=device, generator=g)
    a_scale = float(a_log.abs().max()) / 127
    bias = _u(g, e, lo=-3.0, hi=1.0, device=device)
    bias_scale = float(bias.abs().max()) / 127
    ins = [_i8(g, b, l, e, device=device), _s(0.02, device), _i8(g, b, l, e, device=device), _s(0.012, device),
           _q(a_log, a_scale), _s(a_scale, device), _i8(g, b, l, n, device=device), _s(0.018, device),
           _i8(g, b, l, n, device=device), _s(0.016, device), _i8(g, e, device=device), _s(0.01, device),
           _i8(g, b, l, e, device=device), _s(0.03, device), _q(bias, bias_scale), _s(bias_scale, device)]
    s0 = torch.randn(b, e, n, generator=g, device=device) * 2.0
    if state == "int8":
        _, s_f = quant_selective_scan(*ins, s0, None)
        scale = float(torch.cat([s_f, s0]).abs().max()) / 110.0
        ins += [_q(s0, scale), _s(scale, device)]
    else:
        ins += [s0.half(), _s(1.0, device)]
    return Case("QuantSelectiveScan", f"B{b}-L{l}-E{e}-N{n}-{state}", ins)


def float_state_dtypes(op: str) -> list[str]:
    """The state dtypes the TensorRT variants of a float scan op (SSD, SelectiveScan) take: the record's state is
    T, so float16 alone with T = float16 (the kernels could also keep a float32 state, QUAMBA_SSD_STATE_F32; a
    record that gave the state such a variant would add those cases here)."""
    rec = registry.get(op)
    k = [p.name for p in rec.inputs].index("state_in")
    return sorted({row[k] for row in variants(rec)})


def float_ssd(b, l, h, p, gr, n, state="float16", *, d=True, chunk_size=256, device="cpu", seed=0) -> Case:
    """SSD inputs as the fp16 graph hands them over: x, B, C fp16; dt fp16 already softplus'ed and clamped
    (0.001 .. 0.1, Mamba2's dt range); A = -exp(A_log) fp32 with A_log ~ log(1 .. 16); D fp32 (zeros when the
    layer has none); the state in ``state`` (the record's T)."""
    g = torch.Generator(device=device).manual_seed(seed)
    ins = [torch.randn(b, l, h, p, generator=g, device=device).half(),
           _u(g, b, l, h, lo=0.001, hi=0.1, device=device).half(),
           -torch.exp(_u(g, h, lo=0.0, hi=math.log(16.0), device=device)),
           torch.randn(b, l, gr, n, generator=g, device=device).half(),
           torch.randn(b, l, gr, n, generator=g, device=device).half(),
           _u(g, h, lo=0.5, hi=1.5, device=device) if d else torch.zeros(h, device=device),
           (torch.randn(b, h, p, n, generator=g, device=device) * 2.0).to(TORCH_DTYPE[state])]
    return Case("SSD", f"B{b}-L{l}-H{h}-P{p}-G{gr}-N{n}-{state}" + ("" if d else "-noD"), ins,
                {"chunk_size": chunk_size})


def float_selective_scan(b, l, e, n, state="float16", *, delta_softplus=1, device="cpu", seed=0) -> Case:
    """SelectiveScan inputs as the fp16 graph hands them over: u, delta (dt_proj output without its bias), B, C,
    z fp16; A = -exp(A_log) fp32 with A_log ~ log(1 .. N); D, delta_bias fp32 (softplus(delta + bias) around
    Mamba1's 0.001 .. 0.1; with delta_softplus = 0, delta + bias is that range directly); the state in ``state``."""
    g = torch.Generator(device=device).manual_seed(seed)
    ar = torch.arange(1, n + 1, dtype=torch.float32, device=device)
    a = -torch.exp(torch.log(ar).repeat(e, 1) + 0.2 * torch.rand(e, n, device=device, generator=g))
    if delta_softplus:
        delta = (0.5 * torch.randn(b, l, e, generator=g, device=device)).half()
        bias = _u(g, e, lo=-6.0, hi=-2.3, device=device)  # softplus^-1 of ~0.0025 .. 0.1
    else:
        delta = _u(g, b, l, e, lo=0.001, hi=0.08, device=device).half()
        bias = _u(g, e, lo=0.0, hi=0.02, device=device)
    ins = [torch.randn(b, l, e, generator=g, device=device).half(), delta, a,
           torch.randn(b, l, n, generator=g, device=device).half(), torch.randn(b, l, n, generator=g, device=device).half(),
           _u(g, e, lo=0.5, hi=1.5, device=device), torch.randn(b, l, e, generator=g, device=device).half(), bias,
           (torch.randn(b, e, n, generator=g, device=device) * 2.0).to(TORCH_DTYPE[state])]
    return Case("SelectiveScan", f"B{b}-L{l}-E{e}-N{n}-{state}" + ("" if delta_softplus else "-nosoftplus"), ins,
                {"delta_softplus": delta_softplus})


# ---- linears ----------------------------------------------------------------------------------------------

_I8_STD = 73.9  # std of int8 codes uniform on [-128, 127]


def _out_scale(k: int, x_std: float, w_std: float, n: int, g, device) -> torch.Tensor:
    """Per-row int8 output scales around std(y) / 60 (x0.5 .. x1.5), so y uses the int8 range and a few
    percent clamp (the kernel tests' choice), from the expected std of a K-term sum of independent products."""
    return (k**0.5 * x_std * w_std / 60) * _u(g, n, lo=0.5, hi=1.5, device=device)


def w8a8_linear(b, l, n, k, out_int8=1, *, segments=1, device="cpu", seed=0) -> Case:
    """W8A8Linear inputs; ``segments`` > 1: Mamba2 in_proj's scales, one value per output segment expanded
    to rows (as the exporter does)."""
    g = torch.Generator(device=device).manual_seed(seed)

    def per_segment(lo, hi):
        vals = _u(g, segments, lo=lo, hi=hi, device=device)
        return vals.repeat_interleave(-(-n // segments))[:n].contiguous()

    x_scale = 0.02
    w_scale = per_segment(0.002, 0.01)
    bias = 0.1 * torch.randn(n, generator=g, device=device)
    ys = float(w_scale.mean()) * x_scale * _I8_STD * _I8_STD
    out = _out_scale(k, 1.0, ys, n, g, device) if out_int8 else torch.ones(n, device=device)
    ins = [_i8(g, b, l, k, device=device), _s(x_scale, device), _i8(g, n, k, device=device), w_scale, bias, out]
    seg = f"-seg{segments}" if segments > 1 else ""
    return Case("W8A8Linear", f"B{b}-L{l}-N{n}-K{k}-{'i8' if out_int8 else 'f16'}{seg}", ins, {"out_int8": out_int8},
                {"Y": "int8" if out_int8 else "T"})


def _w4_codes(g, n, k, device) -> torch.Tensor:
    return torch.randint(0, 16, (n, k), dtype=torch.uint8, device=device, generator=g)


def w4a8_linear(b, l, n, k, group_size=128, out_int8=1, *, device="cpu", seed=0) -> Case:
    """W4A8Linear inputs with the quantizer's two-level scales (quant.packing.w4a8_two_level_scales)."""
    from quamba_edge.ops.w4a8_linear import w4a8_int8_weight
    from quamba_edge.quant.packing import pack_int4, w4a8_two_level_scales

    g = torch.Generator(device=device).manual_seed(seed)
    gs = k if group_size <= 0 or group_size >= k else group_size
    codes = _w4_codes(g, n, k, device)
    gscale = _u(g, n, -(-k // gs), lo=0.002, hi=0.022, device=device)
    s_channel, s_group = w4a8_two_level_scales(codes.cpu(), gscale.cpu(), gs)
    s_channel, s_group = s_channel.to(device), s_group.to(device)
    x_scale = 0.02
    w_std = float(w4a8_int8_weight(codes, s_group, group_size).float().std()) * float(s_channel.mean())
    out = _out_scale(k, _I8_STD * x_scale, w_std, n, g, device) if out_int8 else torch.ones(n, device=device)
    ins = [_i8(g, b, l, k, device=device), _s(x_scale, device), pack_int4(codes), s_group, s_channel,
           0.1 * torch.randn(n, generator=g, device=device), out]
    return Case("W4A8Linear", f"B{b}-L{l}-N{n}-K{k}-g{group_size}-{'i8' if out_int8 else 'f16'}", ins,
                {"in_features": k, "group_size": group_size, "out_int8": out_int8}, {"Y": "int8" if out_int8 else "T"})


def w4a16_linear(b, l, n, k, group_size=128, *, device="cpu", seed=0) -> Case:
    from quamba_edge.quant.packing import pack_int4

    g = torch.Generator(device=device).manual_seed(seed)
    gs = k if group_size <= 0 or group_size >= k else group_size
    codes = _w4_codes(g, n, k, device)
    scale = _u(g, n, -(-k // gs), lo=0.002, hi=0.022, device=device).half()
    ins = [torch.randn(b, l, k, generator=g, device=device).half(), pack_int4(codes), scale,
           0.1 * torch.randn(n, generator=g, device=device)]
    return Case("W4A16Linear", f"B{b}-L{l}-N{n}-K{k}-g{group_size}", ins, {"in_features": k, "group_size": group_size})


#: (N, K, out_int8) of every linear node of the bundled models' fp16 exports (quamba_edge/assets/mamba1-ref:
#: d_model 384, d_inner 768, dt_rank 24, d_state 16; mamba2-ref: d_model 256, d_inner 512, in_proj 1296 rows;
#: vocabulary 8192), by format, over every recipe (quant.recipes.RECIPES): in_proj, x_proj, dt_proj (W8A8 in
#: every A8 recipe), out_proj, lm_head (quamba2). W4 group size 128 throughout.
BUNDLED_LINEARS = {
    "W8A8Linear": [(1536, 384, 1), (56, 768, 1), (768, 24, 1), (384, 768, 0), (8192, 384, 0),
                   (1296, 256, 1), (256, 512, 0), (8192, 256, 0)],
    "W4A8Linear": [(1536, 384, 1), (56, 768, 1), (384, 768, 0), (8192, 384, 0),
                   (1296, 256, 1), (256, 512, 0), (8192, 256, 0)],
    "W4A16Linear": [(1536, 384, 0), (56, 768, 0), (384, 768, 0), (8192, 384, 0),
                    (1296, 256, 0), (256, 512, 0), (8192, 256, 0)],
}
#: Prefill (M = B * L = 74 > 16: the kernels' tiled GEMM) and decode (M = 3: the GEMV) token shapes.
LINEAR_PREFILL, LINEAR_DECODE = (2, 37), (3, 1)


#: Prefill (L > 1) and decode (L = 1) shapes of every plugin op, both state dtypes of the scans:
#: (builder, args, kwargs), built on a device by make().
SPECS: list[tuple] = [
    (add_rms_norm, (2, 7, 64), {}), (add_rms_norm, (3, 1, 768), {}), (add_rms_norm, (1, 5, 2560), {}),
    (causal_conv1d, (2, 9, 192, 4), {}), (causal_conv1d, (4, 1, 256, 4), {}), (causal_conv1d, (1, 33, 96, 2), {}),
    (causal_conv1d, (2, 1, 64, 1), {}),
    # odd d (bits 4: a pad nibble), rows wider than one block (512 bytes) and not 4-byte aligned, d = 1
    (embedding, (2, 7, 50, 37, 8), {}), (embedding, (2, 7, 50, 37, 4), {}), (embedding, (3, 1, 1000, 768, 8), {}),
    (embedding, (3, 1, 1000, 768, 4), {}), (embedding, (1, 9, 300, 1101, 8), {}), (embedding, (1, 9, 300, 1101, 4), {}),
    (embedding, (2, 3, 5, 1, 4), {}),
    (gated_rms_norm, (2, 7, 128, 64), {}), (gated_rms_norm, (3, 1, 256, 128, 1), {}),
    (gated_rms_norm, (1, 4, 2560, 2560), {}),
    (hadamard, (2, 5, 128), {}), (hadamard, (3, 1, 768), {}), (hadamard, (1, 3, 2560), {}), (hadamard, (2, 1, 4096), {}),
]
for _state in ("int8", "float16"):
    SPECS += [(ssd, (2, 7, 8, 32, 2, 64, _state), {}), (ssd, (3, 1, 8, 32, 2, 64, _state), {}),
              (ssd, (1, 70, 4, 16, 1, 16, _state), {"d": False}), (ssd, (2, 1, 16, 64, 8, 128, _state), {"d": False}),
              (ssd, (2, 100, 4, 64, 1, 128, _state), {}),  # L >= 32, P % 16 == 0, N 128: the chunked kernel
              (selective_scan, (2, 9, 64, 16, _state), {}), (selective_scan, (3, 1, 96, 16, _state), {}),
              (selective_scan, (1, 40, 32, 8, _state), {}), (selective_scan, (4, 1, 48, 32, _state), {})]


# the float scans (fp16 baseline and W4A16 models): prefill shapes inside quamba_ssd's limits (N in {64, 128, 256},
# P % 16 == 0; the bundled mamba2-ref's H 16, P 32, G 2, N 64; several chunks), decode shapes down to N = 16 and
# an odd headdim (quamba_ssd_state_update takes those); Mamba1's d_state 16 and 8, the bundled mamba1-ref's E 768
for _state in float_state_dtypes("SSD"):
    SPECS += [(float_ssd, (2, 7, 8, 32, 2, 64, _state), {}), (float_ssd, (3, 1, 8, 32, 2, 64, _state), {}),
              (float_ssd, (1, 70, 4, 16, 1, 128, _state), {"d": False, "chunk_size": 32}),
              (float_ssd, (2, 1, 16, 24, 8, 16, _state), {"d": False}),
              (float_ssd, (2, 100, 16, 32, 2, 64, _state), {}), (float_ssd, (1, 1, 16, 32, 2, 64, _state), {}),
              (float_ssd, (2, 40, 4, 16, 1, 128, _state), {"chunk_size": 16}),
              (float_ssd, (1, 300, 4, 64, 2, 256, _state), {})]
for _state in float_state_dtypes("SelectiveScan"):
    SPECS += [(float_selective_scan, (2, 9, 64, 16, _state), {}), (float_selective_scan, (3, 1, 96, 16, _state), {}),
              (float_selective_scan, (1, 40, 32, 8, _state), {}), (float_selective_scan, (4, 1, 48, 32, _state), {}),
              (float_selective_scan, (2, 33, 768, 16, _state), {}),
              (float_selective_scan, (2, 5, 64, 16, _state), {"delta_softplus": 0}),
              (float_selective_scan, (2, 1, 64, 16, _state), {"delta_softplus": 0})]


for _bl in (LINEAR_PREFILL, LINEAR_DECODE):
    SPECS += [(w8a8_linear, (*_bl, n, k, o), {}) for n, k, o in BUNDLED_LINEARS["W8A8Linear"]]
    SPECS += [(w4a8_linear, (*_bl, n, k, 128, o), {}) for n, k, o in BUNDLED_LINEARS["W4A8Linear"]]
    SPECS += [(w4a16_linear, (*_bl, n, k, 128), {}) for n, k, _ in BUNDLED_LINEARS["W4A16Linear"]]
# around the kernels' limits: M = 16 / 17 (GEMV / GEMM), odd N, K not a multiple of 16 (W8A8's byte-wise path),
# one group per row (group_size >= K or <= 0: the tiny models' layers), groups of 32 / 64 (not 128), K = 32,
# Mamba2's per-segment scales
SPECS += [
    (w8a8_linear, (1, 16, 57, 100, 1), {}), (w8a8_linear, (1, 17, 57, 100, 0), {}),
    (w8a8_linear, (2, 9, 200, 4, 1), {}),
    (w8a8_linear, (2, 5, 328, 64, 1), {"segments": 5}),
    (w4a8_linear, (1, 16, 57, 64, 64, 1), {}), (w4a8_linear, (1, 17, 57, 64, 0, 0), {}),
    (w4a8_linear, (2, 20, 200, 288, 32, 1), {}), (w4a8_linear, (3, 1, 96, 32, 128, 0), {}),
    (w4a16_linear, (1, 16, 57, 128, 128), {}), (w4a16_linear, (1, 17, 57, 192, 64), {}),
    (w4a16_linear, (2, 20, 200, 288, 32), {}), (w4a16_linear, (3, 1, 96, 32, 0), {}),
]


def make(spec: tuple, device: str) -> Case:
    fn, args, kw = spec
    return fn(*args, device=device, **kw)


def spec_id(spec: tuple) -> str:
    fn, args, kw = spec
    return "-".join([fn.__name__, *map(str, args), *(f"{k}{v}" for k, v in kw.items())])


def all_cases(device: str = "cpu") -> list[Case]:
    return [make(s, device) for s in SPECS]


def find(cases: list[Case], op: str, id_part: str = "") -> Case:
    return next(c for c in cases if c.op == op and id_part in c.id)


__all__ = ["Case", "SPECS", "all_cases", "find", "make", "spec_id", "TORCH_DTYPE", "DTYPE_NAME", "TRT_ACT_DTYPE"]
