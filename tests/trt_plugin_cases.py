"""Plugin cases shared by the TensorRT plugin tests (tests/test_trt_plugins_cpu.py on CPU, build phase only;
tests/gpu/test_trt_plugins.py on a GPU, every step): random inputs of each plugin op in ONNX order, the
node's attributes, and what the harness needs (fields, tensor descriptors, expected outputs), all derived
from the op registry."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from quamba_edge.ops import registry
from quamba_edge.ops.trt_fields import TRT_ACT_DTYPE, host_scale_inputs, output_dim_sources, parse_shapes, variants
from quamba_edge.trt_harness import Tensor

RUNTIME_SYMBOLS = ("B", "L")  # the graph's dynamic dims (batch, sequence)
DTYPE_NAME = {torch.int8: "int8", torch.float16: "float16", torch.float32: "float32", torch.int32: "int32"}
TORCH_DTYPE = {v: k for k, v in DTYPE_NAME.items()}


@dataclass
class Case:
    op: str
    id: str
    inputs: list[torch.Tensor]  # ONNX input order
    attrs: dict = field(default_factory=dict)

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
        got = [DTYPE_NAME[t.dtype] for t in self.inputs]
        rows = [r for r in variants(rec) if r[:n] == got]
        assert len(rows) == 1, f"{self.op}: inputs {got} match {len(rows)} dtype variants"
        shapes = [tuple(int(self.inputs[i].shape[j]) + off for i, j, off in dims) for dims in output_dim_sources(rec)]
        return list(zip(rows[0][n:], shapes))

    def input_tensors(self) -> list[Tensor]:
        rec = self.record
        out = []
        for port, t in zip(rec.inputs, self.inputs):
            alt = parse_shapes(port.shape)[0]
            dyn = [k for k, d in enumerate(alt) if d.symbol in RUNTIME_SYMBOLS and k < t.dim()]
            out.append(Tensor(DTYPE_NAME[t.dtype], tuple(t.shape), t.data_ptr() if t.is_cuda else None, dynamic=dyn))
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


#: Prefill (L > 1) and decode (L = 1) shapes of every plugin op, both state dtypes of the scans:
#: (builder, args, kwargs), built on a device by make().
SPECS: list[tuple] = [
    (add_rms_norm, (2, 7, 64), {}), (add_rms_norm, (3, 1, 768), {}), (add_rms_norm, (1, 5, 2560), {}),
    (causal_conv1d, (2, 9, 192, 4), {}), (causal_conv1d, (4, 1, 256, 4), {}), (causal_conv1d, (1, 33, 96, 2), {}),
    (causal_conv1d, (2, 1, 64, 1), {}),
    (gated_rms_norm, (2, 7, 128, 64), {}), (gated_rms_norm, (3, 1, 256, 128, 1), {}),
    (gated_rms_norm, (1, 4, 2560, 2560), {}),
    (hadamard, (2, 5, 128), {}), (hadamard, (3, 1, 768), {}), (hadamard, (1, 3, 2560), {}), (hadamard, (2, 1, 4096), {}),
]
for _state in ("int8", "float16"):
    SPECS += [(ssd, (2, 7, 8, 32, 2, 64, _state), {}), (ssd, (3, 1, 8, 32, 2, 64, _state), {}),
              (ssd, (1, 70, 4, 16, 1, 16, _state), {"d": False}), (ssd, (2, 1, 16, 64, 8, 128, _state), {"d": False}),
              (selective_scan, (2, 9, 64, 16, _state), {}), (selective_scan, (3, 1, 96, 16, _state), {}),
              (selective_scan, (1, 40, 32, 8, _state), {}), (selective_scan, (4, 1, 48, 32, _state), {})]


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
