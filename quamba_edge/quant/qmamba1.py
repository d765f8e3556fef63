"""Quantized Mamba1 mixer (spec shared/spec/quamba.md B.1, B.4, B.5, C.8, pitfalls F.18-F.24).

A8 path (W8A8 / W4A8), every arrow an op of ``quamba_edge.ops``::

    h_q (int8, in_proj:input) -> in_proj (W8A8/W4A8, int8 out, ONE scale for x and z: in_proj:output)
    x_q -> QuantCausalConv1d (per-tensor int8 weight/bias, SiLU) -> u_q (x_proj:input, percentile)
    u_q -> x_proj (W8A8, or RTN W4A8 under W4A8; int8 out: ONE scale for delta|B|C = x_proj:output)
    delta_q -> dt_proj (W8A8 always, input scale = x_proj:output, no bias) -> dt_q (dt_proj:output)
    QuantSelectiveScan / QuantSelectiveStateUpdate (A_log, D, dt_bias int8 per-tensor; z gate inside;
        SSM state int8 with ssm_state_act scale, or fp16 for the paper-faithful ``quamba`` recipe)
    y (fp32) -> QuantHadamard (out_proj:input, Hadamard domain) -> out_proj (W8A8/W4A8, fp out)

W4A16 path: fp activations, W4A16 in_proj / x_proj (RTN) / out_proj, fp dt_proj, FP conv and selective
scan (models.ssm), fp16 conv and SSM states, float online Hadamard before out_proj.

The FP tap points (``x_conv_out``, ``ssm_out``, ``ssm_state_act``: nn.Identity) are kept and fed the
dequantized values, so hooks written for the FP model (per-layer SQNR) work unchanged.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._tracing import exporting

from .. import ops
from ..ops import kernel_dispatch  # the kernel-backed ops: CUDA kernels when on
from ..models.config import MambaConfig
from .gptq import GPTQResult
from .qconfig import QuantConfig
from .qlinear import (FPLinear, W4A8Linear, W4A16Linear, W8A8Linear, _segment_rows, as_scale,
                      online_hadamard_matrix)
from .quantize import quantize_per_segment, quantize_per_tensor, segments_from_sizes

__all__ = ["QMamba1Mixer", "QuantCausalConv1d", "FPConv1d", "ScaleLookup", "split_out_proj"]


# ------------------------------------------------------------------------------------------------
# shared helpers (also used by qmamba2 / qlm / fakequant)
# ------------------------------------------------------------------------------------------------


class ScaleLookup:
    """Reads ``scales[prefix + name]`` trying several spellings (``x_conv_out`` / ``x_proj:input`` ...)."""

    def __init__(self, scales: Mapping[str, Any], prefix: str = "") -> None:
        self.scales = scales
        self.prefix = prefix

    def has(self, *names: str) -> bool:
        return any(self.prefix + n in self.scales for n in names)

    def get(self, *names: str) -> Tensor:
        for n in names:
            key = self.prefix + n
            if key in self.scales:
                v = self.scales[key]
                t = torch.as_tensor(v).detach().to(torch.float32).cpu()
                if not bool(torch.isfinite(t).all()) or bool((t <= 0).any()):
                    raise ValueError(f"scale {key!r} must be finite and positive, got {t}")
                return t
        near = sorted(k for k in self.scales if k.startswith(self.prefix))[:30]
        raise KeyError(f"missing calibration scale: tried {[self.prefix + n for n in names]}; "
                       f"keys under {self.prefix!r}: {near}")


def tap_observed(module: nn.Module) -> bool:
    """Whether feeding tap ``module`` can have an effect: a forward (pre-)hook on it or on every module, or a
    module other than the plain nn.Identity."""
    from torch.nn.modules import module as _mod

    return (type(module) is not nn.Identity or bool(module._forward_hooks) or bool(module._forward_pre_hooks)
            or bool(getattr(_mod, "_global_forward_hooks", None))
            or bool(getattr(_mod, "_global_forward_pre_hooks", None)))


def tap(module: nn.Module, value: Tensor | Callable[[], Tensor]) -> None:
    """Feed an FP tap point (nn.Identity) with a dequantized value (hooks observe it; result unused).

    A callable is evaluated only when something observes the tap (or while exporting, so the traced graph
    stays as it was): otherwise every forward would spend a few elementwise kernels per tap and layer (a
    [B, H, P, N] fp32 state among them) on values nobody reads."""
    if callable(value) and not isinstance(value, Tensor):
        if not (exporting() or tap_observed(module)):
            return
        value = value()
    module(value)


def split_out_proj(out_proj: nn.Module, want_hadamard: bool, n: int) -> tuple[Tensor, Tensor | None]:
    """(weight [d, E], bias) of the FP model's out_proj.

    With ``want_hadamard`` the FP out_proj must be the rotation's ``HadamardLinear`` (``.linear`` holds
    the fused weight ``W·Mᵀ``, ``.hadamard_matrix`` the online matrix M); M must equal
    ``quant.hadamard.hadamard_matrix(E)``, which the quantized model regenerates instead of storing.
    """
    lin = getattr(out_proj, "linear", None)
    mat = getattr(out_proj, "hadamard_matrix", None)
    if want_hadamard:
        if lin is None or mat is None:
            raise ValueError("out_proj_hadamard=True needs an FP model whose mixer.out_proj is the rotation's "
                             "HadamardLinear (run rotation.rotate_out_proj_input first), got "
                             f"{type(out_proj).__name__}")
        ref = online_hadamard_matrix(n, device=mat.device)
        if mat.shape != ref.shape or not torch.allclose(mat.float(), ref, atol=1e-6, rtol=0):
            raise ValueError("the out_proj Hadamard matrix is not quant.hadamard.hadamard_matrix(E); the "
                             "quantized model cannot reproduce it")
        return lin.weight.detach(), (None if lin.bias is None else lin.bias.detach())
    if lin is not None or mat is not None:
        raise ValueError("out_proj_hadamard=False but the FP out_proj carries a Hadamard transform")
    return out_proj.weight.detach(), (None if out_proj.bias is None else out_proj.bias.detach())


def quantize_scalar_param(t: Tensor) -> tuple[Tensor, Tensor]:
    """int8 per-tensor absmax of a parameter (A_log, D, Mamba1 dt_bias, conv weight/bias)."""
    q, s = quantize_per_tensor(t.detach().float(), 8)
    return q, s.reshape(())


# ------------------------------------------------------------------------------------------------
# conv modules
# ------------------------------------------------------------------------------------------------


class QuantCausalConv1d(nn.Module):
    """int8 depthwise causal conv (+bias, SiLU) through ``ops.quant_causal_conv1d``.

    Buffers: ``weight`` int8 ``[C, K]``; ``bias`` int8 ``[C]`` (if any); ``weight_scale``, ``bias_scale``,
    ``input_scale`` fp32 ``[S]`` (one per channel segment: S = 1 for Mamba1, x|B|C for Mamba2). The
    output scales belong to the mixer (per-tensor for Mamba1, grouped for Mamba2) and are passed in
    expanded to channels.
    """

    def __init__(self, channels: int, kernel: int, segments: tuple[int, ...] | None = None, bias: bool = True,
                 device: torch.device | str | None = None) -> None:
        super().__init__()
        self.channels, self.kernel = int(channels), int(kernel)
        self.segments = tuple(segments or (channels,))
        s = len(self.segments)
        self.register_buffer("weight", torch.zeros(channels, kernel, dtype=torch.int8, device=device))
        self.register_buffer("weight_scale", torch.ones(s, dtype=torch.float32, device=device))
        self.register_buffer("input_scale", torch.ones(s, dtype=torch.float32, device=device))
        if bias:
            self.register_buffer("bias", torch.zeros(channels, dtype=torch.int8, device=device))
            self.register_buffer("bias_scale", torch.ones(s, dtype=torch.float32, device=device))
        else:
            self.bias = None
            self.bias_scale = None

    def per_channel(self, t: Tensor) -> Tensor:
        if len(self.segments) == 1:
            return t.reshape(())
        return _segment_rows(self, t, self.segments)

    def forward(self, x_q: Tensor, out_scale: Tensor, conv_state: Tensor | None) -> tuple[Tensor, Tensor]:
        bs = None if self.bias is None else self.per_channel(self.bias_scale)
        return kernel_dispatch.quant_causal_conv1d(x_q, self.per_channel(self.input_scale), self.weight,
                                                   self.per_channel(self.weight_scale), self.bias, bs, out_scale,
                                                   conv_state, silu=True)

    def dequantized(self) -> tuple[Tensor, Tensor | None]:
        w = self.weight.float() * self.per_channel(self.weight_scale).reshape(-1, 1)
        b = None if self.bias is None else self.bias.float() * self.per_channel(self.bias_scale)
        return w, b

    @classmethod
    def from_float(cls, weight: Tensor, bias: Tensor | None, in_scale, segments: tuple[int, ...] | None = None
                   ) -> "QuantCausalConv1d":
        w = weight.detach().reshape(weight.shape[0], -1).float()
        c, k = w.shape
        segs = tuple(segments or (c,))
        m = cls(c, k, segs, bias is not None, device=w.device)
        ranges = segments_from_sizes(segs)
        q, s = quantize_per_segment(w, ranges, 8)
        m.weight.copy_(q)
        m.weight_scale.copy_(s)
        m.input_scale.copy_(as_scale(in_scale, (len(segs),)))
        if bias is not None:
            qb, sb = quantize_per_segment(bias.detach().float().reshape(-1, 1), ranges, 8)
            m.bias.copy_(qb.reshape(-1))
            m.bias_scale.copy_(sb)
        return m

    def extra_repr(self) -> str:
        return f"{self.channels}, kernel={self.kernel}, segments={self.segments}"


class FPConv1d(nn.Module):
    """Float depthwise causal conv (W4A16): ``weight`` ``[C, K]``, ``bias`` ``[C]`` in the fp dtype."""

    def __init__(self, channels: int, kernel: int, bias: bool = True, dtype: torch.dtype = torch.float16,
                 device: torch.device | str | None = None) -> None:
        super().__init__()
        self.channels, self.kernel = int(channels), int(kernel)
        self.register_buffer("weight", torch.zeros(channels, kernel, dtype=dtype, device=device))
        if bias:
            self.register_buffer("bias", torch.zeros(channels, dtype=dtype, device=device))
        else:
            self.bias = None

    def forward(self, x: Tensor, conv_state: Tensor | None) -> tuple[Tensor, Tensor]:
        # ssm.causal_conv1d in fp32, or the float conv kernel (fp32 x as it is). The reference widens weight and
        # bias to x's fp32 itself (bit-identical to .float()), so they go as stored: no cast kernels per call;
        # the export keeps its explicit casts (the same graph as before)
        w, b = self.weight, self.bias
        if exporting():
            w, b = w.float(), None if b is None else b.float()
        return kernel_dispatch.causal_conv1d(x.float(), w, b, conv_state, "silu")

    def dequantized(self) -> tuple[Tensor, Tensor | None]:
        return self.weight.float(), None if self.bias is None else self.bias.float()

    @classmethod
    def from_float(cls, weight: Tensor, bias: Tensor | None, dtype: torch.dtype) -> "FPConv1d":
        w = weight.detach().reshape(weight.shape[0], -1)
        m = cls(w.shape[0], w.shape[1], bias is not None, dtype=dtype, device=w.device)
        m.weight.copy_(w)
        if bias is not None:
            m.bias.copy_(bias.detach())
        return m


_HAD_CACHE: dict[tuple[int, str], Tensor] = {}


def _hadamard_for(n: int, device: torch.device) -> Tensor:
    """The online matrix on ``device``, copied there once (a per-call host-to-device copy of an E x E
    matrix would dominate GPU evaluation)."""
    key = (n, str(device))
    m = _HAD_CACHE.get(key)
    if m is None:
        m = online_hadamard_matrix(n, device=device)
        if len(_HAD_CACHE) > 8:
            _HAD_CACHE.clear()
        _HAD_CACHE[key] = m
    return m


def _online_hadamard(y: Tensor, n: int, out_proj: nn.Module | None = None) -> Tensor:
    """The float online transform of the W4A16 out_proj input: the matrix op when exporting (the ONNX
    graph takes M), else ``kernel_dispatch.hadamard`` (the kernel on torch-cuda, else the two-factor form
    ``quant.hadamard.hadamard_kron``; same values up to fp32 summation order). When ``out_proj`` is a W4A16
    linear whose kernel will round its input to fp16 anyway, the Hadamard kernel writes that fp16 itself (the
    same values, one conversion kernel fewer per layer and step)."""
    if exporting():
        return ops.hadamard(y, _hadamard_for(n, y.device))
    fp16 = isinstance(out_proj, W4A16Linear) and out_proj.takes_fp16(y)
    return kernel_dispatch.hadamard(y, fp16_out=fp16)


# ------------------------------------------------------------------------------------------------
# the mixer
# ------------------------------------------------------------------------------------------------


class QMamba1Mixer(nn.Module):
    """Quantized Mamba1 mixer. ``forward(h, conv_state, ssm_state) -> (out fp32, conv, ssm)`` where ``h``
    is the int8 block-norm output (A8) or fp32 (W4A16). States are not modified in place."""

    def __init__(self, config: MambaConfig, quant_config: QuantConfig, layer_idx: int | None = None,
                 device: torch.device | str | None = None) -> None:
        super().__init__()
        if config.arch != "mamba1":
            raise ValueError(f"QMamba1Mixer needs arch='mamba1', got {config.arch!r}")
        self.config, self.qcfg, self.layer_idx = config, quant_config, layer_idx
        qc = quant_config
        d, e, n, r, k = config.d_model, config.d_inner, config.d_state, config.dt_rank, config.d_conv
        self.d_inner, self.d_state, self.dt_rank, self.d_conv = e, n, r, k
        self.act8 = qc.act8
        self.int8_state = qc.int8_ssm_state
        self.hadamard = qc.out_proj_hadamard
        fpd = qc.torch_fp_dtype
        self.fp_state_dtype = fpd
        fk = {"device": device}
        gs = qc.group_size
        if self.act8:
            if qc.w_bits == 8:
                self.in_proj = W8A8Linear(d, 2 * e, out_int8=True, bias=config.bias, **fk)
                self.x_proj = W8A8Linear(e, r + 2 * n, out_int8=True, **fk)
                self.out_proj = W8A8Linear(e, d, out_int8=False, bias=config.bias, **fk)
            else:
                self.in_proj = W4A8Linear(d, 2 * e, gs, out_int8=True, bias=config.bias, **fk)
                self.x_proj = W4A8Linear(e, r + 2 * n, gs, out_int8=True, **fk)  # RTN (spec F.24)
                self.out_proj = W4A8Linear(e, d, gs, out_int8=False, bias=config.bias, **fk)
            self.dt_proj = W8A8Linear(r, e, out_int8=True, **fk)  # W8A8 even under W4A8 (F.24)
            self.conv1d = QuantCausalConv1d(e, k, bias=config.conv_bias, **fk)
            self.register_buffer("conv_out_scale", torch.ones((), **fk))  # = x_proj:input
            self.register_buffer("A_log", torch.zeros(e, n, dtype=torch.int8, **fk))
            self.register_buffer("A_log_scale", torch.ones((), **fk))
            self.register_buffer("D", torch.zeros(e, dtype=torch.int8, **fk))
            self.register_buffer("D_scale", torch.ones((), **fk))
            self.register_buffer("dt_bias", torch.zeros(e, dtype=torch.int8, **fk))
            self.register_buffer("dt_bias_scale", torch.ones((), **fk))
            if self.int8_state:
                self.register_buffer("ssm_state_scale", torch.ones((), **fk))
            else:
                self.ssm_state_scale = None
        else:
            self.in_proj = W4A16Linear(d, 2 * e, gs, bias=config.bias, **fk)
            self.x_proj = W4A16Linear(e, r + 2 * n, gs, **fk)  # RTN
            self.dt_proj = FPLinear(r, e, bias=True, dtype=fpd, **fk)  # fp under W4A16 (F.24)
            self.out_proj = W4A16Linear(e, d, gs, bias=config.bias, **fk)
            self.conv1d = FPConv1d(e, k, bias=config.conv_bias, dtype=fpd, **fk)
            self.register_buffer("A_log", torch.zeros(e, n, dtype=torch.float32, **fk))
            self.register_buffer("D", torch.zeros(e, dtype=torch.float32, **fk))
            self.ssm_state_scale = None
        self.x_conv_out = nn.Identity()
        self.ssm_out = nn.Identity()
        self.ssm_state_act = nn.Identity()

    # ---- state dtypes ------------------------------------------------------------------------------

    @property
    def conv_state_dtype(self) -> torch.dtype:
        return torch.int8 if self.act8 else self.fp_state_dtype

    @property
    def ssm_state_dtype(self) -> torch.dtype:
        return torch.int8 if self.int8_state else self.fp_state_dtype

    def _dequant_state(self, s: Tensor) -> Tensor:
        return s.float() * self.ssm_state_scale if self.int8_state else s.float()

    # ---- forward -------------------------------------------------------------------------------------

    def forward(self, h: Tensor, conv_state: Tensor | None = None,
                ssm_state: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        # export: one graph for every L (the custom node handles L = 1), so no branch on the length
        decode = (not exporting() and h.shape[1] == 1 and conv_state is not None
                  and ssm_state is not None)
        if self.act8:
            y, new_conv, new_ssm = self._forward_a8(h, conv_state, ssm_state, decode)
        else:
            y, new_conv, new_ssm = self._forward_a16(h, conv_state, ssm_state, decode)
        tap(self.ssm_out, lambda: y.float())  # y may be the scan kernel's fp16 (A8 + Hadamard: fp16_y)
        tap(self.ssm_state_act, lambda: self._dequant_state(new_ssm))
        out = self._out_proj(y)
        return out, new_conv, new_ssm

    def _out_proj(self, y: Tensor) -> Tensor:
        if self.act8:
            if self.hadamard:
                y_q = kernel_dispatch.quant_hadamard(y, _hadamard_for(self.d_inner, y.device),
                                                     self.out_proj.input_scale)
            else:
                y_q = _quantize_int8(y, self.out_proj.input_scale)
            return self.out_proj(y_q)
        if self.hadamard:
            y = _online_hadamard(y, self.d_inner, self.out_proj)
        return self.out_proj(y)

    def _forward_a8(self, h_q: Tensor, conv_state, ssm_state, decode: bool):
        r, n = self.dt_rank, self.d_state
        xz_q = self.in_proj(h_q)  # int8 [B, L, 2E]
        x_q, z_q = xz_q.chunk(2, dim=-1)
        s_xz = self.in_proj.output_scale.reshape(())
        u_q, new_conv = self.conv1d(x_q, self.conv_out_scale, conv_state)
        tap(self.x_conv_out, lambda: u_q.float() * self.conv_out_scale)
        dbc_q = self.x_proj(u_q)
        s_dbc = self.x_proj.output_scale.reshape(())
        d_q, B_q, C_q = dbc_q.split([r, n, n], dim=-1)
        dt_q = self.dt_proj(d_q.contiguous())
        s_dt = self.dt_proj.output_scale.reshape(())
        args = (self.A_log, self.A_log_scale)
        if decode:
            y, new_ssm = kernel_dispatch.quant_selective_state_update(
                u_q[:, 0], self.conv_out_scale, dt_q[:, 0], s_dt, *args, B_q[:, 0], s_dbc, C_q[:, 0], s_dbc,
                self.D, self.D_scale, z_q[:, 0], s_xz, self.dt_bias, self.dt_bias_scale,
                ssm_state, self.ssm_state_scale, fp16_y=self.hadamard)
            y = y.unsqueeze(1)
        else:
            # with the Hadamard next, the kernel's fp16 y goes on as it is (the Hadamard reads it as fp32); the
            # plain int8 quantization (torch ops) needs the fp32 y
            y, new_ssm = kernel_dispatch.quant_selective_scan(
                u_q, self.conv_out_scale, dt_q, s_dt, *args, B_q, s_dbc, C_q, s_dbc, self.D, self.D_scale,
                z_q, s_xz, self.dt_bias, self.dt_bias_scale, ssm_state, self.ssm_state_scale, fp16_y=self.hadamard)
        if not self.int8_state:
            new_ssm = new_ssm.to(self.fp_state_dtype)
        return y, new_conv, new_ssm

    def _forward_a16(self, h: Tensor, conv_state, ssm_state, decode: bool):
        r, n = self.dt_rank, self.d_state
        x, z = self.in_proj(h).chunk(2, dim=-1)
        x, new_conv = self.conv1d(x, conv_state)
        tap(self.x_conv_out, x)
        d, B, C = self.x_proj(x).split([r, n, n], dim=-1)
        dt = F.linear(d, self.dt_proj.weight.float())
        dt_bias = self.dt_proj.bias.float()
        A = -torch.exp(self.A_log.float())
        if decode:
            y, new_ssm = kernel_dispatch.selective_state_update(ssm_state.float(), x[:, 0], dt[:, 0], A, B[:, 0],
                                                                C[:, 0], self.D.float(), z[:, 0], dt_bias, True)
            y = y.unsqueeze(1)
        else:
            y, new_ssm = kernel_dispatch.selective_scan(x, dt, A, B, C, self.D.float(), z, delta_bias=dt_bias,
                                                        delta_softplus=True,
                                                        initial_state=None if ssm_state is None else ssm_state.float())
        return y.float(), new_conv.to(self.fp_state_dtype), new_ssm.to(self.fp_state_dtype)

    # ---- construction from the transformed FP mixer ------------------------------------------------

    @classmethod
    def from_fp(cls, fp_mixer: nn.Module, config: MambaConfig, quant_config: QuantConfig, layer_idx: int,
                scales: Mapping[str, Any], gptq_results: Mapping[str, GPTQResult] | None = None,
                prefix: str | None = None) -> "QMamba1Mixer":
        """Quantize one (rotated, norm-fused, Hadamard-wrapped) FP Mamba1 mixer with calibrated scales
        (keys ``{prefix}<point>``, prefix default ``layers.{i}.mixer.``) and optional GPTQ results
        (keys ``{prefix}in_proj`` / ``{prefix}out_proj``; RTN where absent)."""
        qc = quant_config
        prefix = f"layers.{layer_idx}.mixer." if prefix is None else prefix
        sl = ScaleLookup(scales, prefix)
        gptq = gptq_results or {}
        dev = fp_mixer.A_log.device
        m = cls(config, qc, layer_idx, device=dev)
        e = config.d_inner
        w_out, b_out = split_out_proj(fp_mixer.out_proj, qc.out_proj_hadamard, e)
        fpd = qc.torch_fp_dtype
        conv_w = fp_mixer.conv1d.weight.detach().reshape(e, -1)
        conv_b = None if fp_mixer.conv1d.bias is None else fp_mixer.conv1d.bias.detach()
        if qc.act8:
            s_in = sl.get("in_proj:input")
            s_xz = sl.get("in_proj:output")
            s_u = sl.get("x_proj:input", "x_conv_out")
            s_dbc = sl.get("x_proj:output")
            s_dt = sl.get("dt_proj:output")
            s_y = sl.get("out_proj:input")
            if qc.w_bits == 8:
                m.in_proj = W8A8Linear.from_float(fp_mixer.in_proj, s_in, s_xz)
                m.x_proj = W8A8Linear.from_float(fp_mixer.x_proj, s_u, s_dbc)
                m.out_proj = W8A8Linear.from_float(w_out, s_y, None, bias=b_out)
            else:
                m.in_proj = W4A8Linear.from_float(fp_mixer.in_proj, s_in, s_xz, gptq.get(prefix + "in_proj"),
                                                  qc.group_size)
                m.x_proj = W4A8Linear.from_float(fp_mixer.x_proj, s_u, s_dbc, None, qc.group_size)
                m.out_proj = W4A8Linear.from_float(w_out, s_y, None, gptq.get(prefix + "out_proj"),
                                                   qc.group_size, bias=b_out)
            m.dt_proj = W8A8Linear.from_float(fp_mixer.dt_proj.weight, s_dbc, s_dt)
            m.conv1d = QuantCausalConv1d.from_float(conv_w, conv_b, s_xz)
            m.conv_out_scale.copy_(as_scale(s_u))
            for name, t in (("A_log", fp_mixer.A_log), ("D", fp_mixer.D), ("dt_bias", fp_mixer.dt_proj.bias)):
                q, s = quantize_scalar_param(t)
                getattr(m, name).copy_(q)
                getattr(m, name + "_scale").copy_(s)
            if m.int8_state:
                m.ssm_state_scale.copy_(as_scale(sl.get("ssm_state_act")))
        else:
            m.in_proj = W4A16Linear.from_float(fp_mixer.in_proj, gptq.get(prefix + "in_proj"), qc.group_size)
            m.x_proj = W4A16Linear.from_float(fp_mixer.x_proj, None, qc.group_size)
            m.dt_proj = FPLinear.from_float(fp_mixer.dt_proj, dtype=fpd)
            m.out_proj = W4A16Linear.from_float(w_out, gptq.get(prefix + "out_proj"), qc.group_size, bias=b_out)
            m.conv1d = FPConv1d.from_float(conv_w, conv_b, fpd)
            m.A_log.copy_(fp_mixer.A_log.detach().float())
            m.D.copy_(fp_mixer.D.detach().float())
        return m


def _quantize_int8(y: Tensor, scale: Tensor) -> Tensor:
    """``clamp(round_half_even(y / s), -128, 127)`` (the ops' quantizer)."""
    from ..ops._common import quantize_int8

    return quantize_int8(y, scale)
