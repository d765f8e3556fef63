"""Quantized Mamba2 mixer (spec shared/spec/quamba.md C.3-C.7, C.9, C.12; pitfalls F.18-F.22).

A8 path (W8A8 / W4A8), every arrow an op of ``quamba_edge.ops``::

    h_q (int8) -> in_proj (W8A8 per-segment weight scales | W4A8; int8 out with FIVE per-segment output
                  scales: z_act, x_conv_in, B_conv_in, C_conv_in, dt_act)
    [x|B|C]_q -> QuantCausalConv1d (per-segment input/weight/bias scales; output scales: x per
                  (SSD group, head group, channel group) [G, m, n], B and C per SSD group [G])
    QuantSSD / QuantSSDStateUpdate (x scales expanded to [H, P] with quamba_edge.ops.scales, dt int8
                  raw with the dt_act scale, dt_bias fp, A_log / D int8 per-tensor, SSM state int8 with
                  [G, m, n, N] scales: expanded to [H, P, N] for the reference ops and the export, read by
                  the CUDA kernels as the compact table plus a per-channel row index (``RowScales``), or
                  fp16 for the ``quamba`` recipe)
    y (fp32) + z_q -> QuantGatedRMSNorm (fp weight, fp out) -> QuantHadamard (out_proj:input) -> out_proj

Without sort-and-cluster (``group_heads=False``, the "Quamba on Mamba2" baseline, or the ``quamba``
recipe) the group tables are the trivial m = n = 1 ones, so the same buffers hold per-tensor scales
(G equal entries). Likewise ``B_out_scale`` / ``C_out_scale`` ``[G]`` hold per-SSD-group scales
(``QuantConfig.bc_per_group``) or one per-tensor scale repeated G times.

W4A16 path: fp activations; W4A16 in_proj / out_proj; FP conv, SSD and gated norm; fp16 states.

Tap points of the FP mixer (``z_act`` ... ``ssm_state_act``) are kept and fed dequantized values. With
sort-and-cluster, ``channel_index`` [E] / ``head_index`` [H] buffers record the permutation (quantized
channel j is FP channel ``channel_index[j]``) so a report can align taps with the unpermuted FP model.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import Tensor, nn

from .._tracing import exporting

from .. import ops
from ..ops import kernel_dispatch  # the kernel-backed ops: CUDA kernels when on
from ..models import ssm as fp_ssm
from ..models.config import MambaConfig
from ..ops.scales import head_channel_index
from .gptq import GPTQResult
from .qconfig import QuantConfig
from .qlinear import W4A8Linear, W4A16Linear, W8A8Linear, W8A8SegmentLinear, as_scale, memo
from .qmamba1 import (
    FPConv1d,
    QuantCausalConv1d,
    ScaleLookup,
    _hadamard_for,
    _online_hadamard,
    _quantize_int8,
    quantize_scalar_param,
    split_out_proj,
    tap,
)

__all__ = ["QMamba2Mixer", "sanitize_groups"]


def sanitize_groups(head_groups, channel_groups, headdim: int) -> tuple[list, list]:
    """Group tables with every EMPTY head group's channel row set to ``[P, 0, ...]`` (sort_cluster writes
    zeros there; ``ops.scales`` wants each row to sum to P; empty head groups own no channel, so the row
    is never used)."""
    hg = [[int(v) for v in row] for row in head_groups]
    cg = [[[int(v) for v in r] for r in g] for g in channel_groups]
    for g, row in enumerate(hg):
        for i, size in enumerate(row):
            if size == 0 and sum(cg[g][i]) != headdim:
                cg[g][i] = [headdim] + [0] * (len(cg[g][i]) - 1)
    return hg, cg


class _GatedNormWeight(nn.Module):
    """Holds the gated RMSNorm weight under the FP name ``mixer.norm.weight`` (fp storage dtype)."""

    def __init__(self, d: int, dtype: torch.dtype, device=None) -> None:
        super().__init__()
        self.register_buffer("weight", torch.ones(d, dtype=dtype, device=device))


class QMamba2Mixer(nn.Module):
    """Quantized Mamba2 mixer. ``forward(h, conv_state, ssm_state) -> (out fp32, conv, ssm)`` with ``h``
    int8 (A8) or fp32 (W4A16). States are not modified in place."""

    def __init__(self, config: MambaConfig, quant_config: QuantConfig, layer_idx: int = 0,
                 device: torch.device | str | None = None) -> None:
        super().__init__()
        if config.arch != "mamba2":
            raise ValueError(f"QMamba2Mixer needs arch='mamba2', got {config.arch!r}")
        self.config, self.qcfg, self.layer_idx = config, quant_config, layer_idx
        qc = quant_config
        d, e, n, k = config.d_model, config.d_inner, config.d_state, config.d_conv
        self.d_inner, self.d_state, self.d_conv = e, n, k
        self.nheads, self.headdim, self.ngroups = config.nheads, config.headdim, config.ngroups
        self.chunk_size, self.dt_limit = config.chunk_size, config.dt_limit
        self.eps, self.group_size_norm = config.rms_norm_eps, config.group_size
        self.norm_before_gate = config.norm_before_gate
        self.conv_dim = config.conv_dim
        gn = self.ngroups * n
        self.in_segments = (e, e, gn, gn, self.nheads)
        self.act8, self.int8_state, self.hadamard = qc.act8, qc.int8_ssm_state, qc.out_proj_hadamard
        fpd = qc.torch_fp_dtype
        self.fp_state_dtype = fpd
        fk = {"device": device}
        gs = qc.group_size
        self.register_buffer("dt_bias", torch.zeros(self.nheads, dtype=fpd, **fk))  # fp (spec C.7)
        self.norm = _GatedNormWeight(e, fpd, device)  # gated-norm weight: kept, not fused (spec C.7)
        if self.act8:
            hg, cg = qc.layer_groups(layer_idx, self.nheads, self.headdim, self.ngroups)
            hg, cg = sanitize_groups(hg, cg, self.headdim)
            self.head_groups, self.channel_groups = hg, cg
            with torch.device("cpu"):  # index tables are data even when the skeleton is built on "meta"
                gi, ii, ji = head_channel_index(hg, cg, self.nheads, self.headdim)
            self.register_buffer("_g_idx", gi.to(device), persistent=False)
            self.register_buffer("_i_idx", ii.to(device), persistent=False)
            self.register_buffer("_j_idx", ji.to(device), persistent=False)
            m, nn_ = len(hg[0]), len(cg[0][0])
            if qc.w_bits == 8:
                self.in_proj = W8A8SegmentLinear(d, config.in_proj_dim, self.in_segments, out_int8=True,
                                                 bias=config.bias, **fk)
                self.out_proj = W8A8Linear(e, d, out_int8=False, bias=config.bias, **fk)
            else:
                self.in_proj = W4A8Linear(d, config.in_proj_dim, gs, out_int8=True, segments=self.in_segments,
                                          bias=config.bias, **fk)
                self.out_proj = W4A8Linear(e, d, gs, out_int8=False, bias=config.bias, **fk)
            self.conv1d = QuantCausalConv1d(self.conv_dim, k, (e, gn, gn), bias=config.conv_bias, **fk)
            self.register_buffer("x_out_scale", torch.ones(self.ngroups, m, nn_, **fk))
            self.register_buffer("B_out_scale", torch.ones(self.ngroups, **fk))
            self.register_buffer("C_out_scale", torch.ones(self.ngroups, **fk))
            self.register_buffer("A_log", torch.zeros(self.nheads, dtype=torch.int8, **fk))
            self.register_buffer("A_log_scale", torch.ones((), **fk))
            self.register_buffer("D", torch.zeros(self.nheads, dtype=torch.int8, **fk))
            self.register_buffer("D_scale", torch.ones((), **fk))
            if self.int8_state:
                self.register_buffer("ssm_state_scale", torch.ones(self.ngroups, m, nn_, n, **fk))
            else:
                self.ssm_state_scale = None
            if qc.group_heads:
                self.register_buffer("channel_index", torch.arange(e, **fk))
                self.register_buffer("head_index", torch.arange(self.nheads, **fk))
        else:
            self.in_proj = W4A16Linear(d, config.in_proj_dim, gs, bias=config.bias, **fk)
            self.out_proj = W4A16Linear(e, d, gs, bias=config.bias, **fk)
            self.conv1d = FPConv1d(self.conv_dim, k, bias=config.conv_bias, dtype=fpd, **fk)
            self.register_buffer("A_log", torch.zeros(self.nheads, dtype=torch.float32, **fk))
            self.register_buffer("D", torch.zeros(self.nheads, dtype=torch.float32, **fk))
            self.ssm_state_scale = None
        for name in ("z_act", "x_conv_in", "B_conv_in", "C_conv_in", "dt_act", "x_conv_out",
                     "B_conv_out", "C_conv_out", "ssd_out", "ssm_state_act"):
            self.add_module(name, nn.Identity())
        # device -> int32 [H, P] row of ssm_state_scale (as [G*m*n, N]) per channel; a plain attribute, not a
        # buffer, so state_dict / artifacts / exports do not change
        self._state_rows: dict[torch.device, Tensor] = {}

    # ---- scales ------------------------------------------------------------------------------------

    def x_channel_scales(self) -> Tensor:
        """x (conv output / SSD input) scales per channel ``[H, P]`` (``ops.scales`` layout)."""
        idx = (self._g_idx, self._i_idx, self._j_idx)
        return memo(self, "x_channel_scales", (self.x_out_scale, *idx), lambda: self.x_out_scale[idx])

    def state_channel_scales(self) -> Tensor | None:
        """SSM state scales ``[H, P, N]``, or None for an fp state."""
        if self.ssm_state_scale is None:
            return None
        return self.ssm_state_scale[self._g_idx, self._i_idx, self._j_idx]

    def state_row_index(self) -> Tensor:
        """int32 ``[H, P]``: channel (h, p)'s row ``(g * m + i) * n + j`` of ``ssm_state_scale`` viewed as
        ``[G * m * n, N]``. Built once per device (the index buffers are fixed at construction)."""
        dev = self.ssm_state_scale.device
        rows = self._state_rows.get(dev)
        if rows is None:
            _, m, n, _ = self.ssm_state_scale.shape
            # a normal tensor even under inference_mode: the kernel dispatch caches its range check by version
            with torch.inference_mode(False):
                g, i, j = (t.to(dev) for t in (self._g_idx, self._i_idx, self._j_idx))
                rows = self._state_rows[dev] = ((g * m + i) * n + j).to(torch.int32).contiguous()
        return rows

    def state_row_scales(self) -> kernel_dispatch.RowScales | None:
        """The SSM state scales in the compact form the SSD kernels read (``expand()`` is exactly
        :meth:`state_channel_scales`), or None for an fp state."""
        if self.ssm_state_scale is None:
            return None
        table = self.ssm_state_scale.reshape(-1, self.ssm_state_scale.shape[-1])
        return kernel_dispatch.RowScales(table, self.state_row_index())

    def conv_out_channel_scales(self) -> Tensor:
        """Conv output scales ``[E + 2GN]`` (x | B | C)."""
        n = self.d_state
        srcs = (self.x_out_scale, self._g_idx, self._i_idx, self._j_idx, self.B_out_scale, self.C_out_scale)
        return memo(self, "conv_out_channel_scales", srcs,
                    lambda: ops.conv_channel_scales(self.x_channel_scales(), self.B_out_scale.repeat_interleave(n),
                                                    self.C_out_scale.repeat_interleave(n)))

    @property
    def conv_state_dtype(self) -> torch.dtype:
        return torch.int8 if self.act8 else self.fp_state_dtype

    @property
    def ssm_state_dtype(self) -> torch.dtype:
        return torch.int8 if self.int8_state else self.fp_state_dtype

    def _dequant_state(self, s: Tensor) -> Tensor:
        sc = self.state_channel_scales()
        return s.float() * sc if sc is not None else s.float()

    # ---- forward -------------------------------------------------------------------------------------

    def forward(self, h: Tensor, conv_state: Tensor | None = None,
                ssm_state: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        # export: one graph for every L (the custom node handles L = 1), so no branch on the length
        decode = (not exporting() and h.shape[1] == 1 and conv_state is not None
                  and ssm_state is not None)
        if self.act8:
            return self._forward_a8(h, conv_state, ssm_state, decode)
        return self._forward_a16(h, conv_state, ssm_state, decode)

    def _forward_a8(self, h_q: Tensor, conv_state, ssm_state, decode: bool):
        bsz, seqlen, _ = h_q.shape
        e, gn, H, P, G, N = (self.d_inner, self.ngroups * self.d_state, self.nheads, self.headdim,
                             self.ngroups, self.d_state)
        zxbcdt = self.in_proj(h_q)  # int8, per-segment scales
        z_q, x_q, B_q, C_q, dt_q = zxbcdt.split(list(self.in_segments), dim=-1)
        s_z, s_xin, s_Bin, s_Cin, s_dt = self.in_proj.output_scale.unbind(0)
        tap(self.z_act, lambda: z_q.float() * s_z)
        tap(self.x_conv_in, lambda: x_q.float() * s_xin)
        tap(self.B_conv_in, lambda: B_q.float() * s_Bin)
        tap(self.C_conv_in, lambda: C_q.float() * s_Cin)
        tap(self.dt_act, lambda: dt_q.float() * s_dt)
        # x, B, C lie side by side in in_proj's output (z | x | B | C | dt): a view, not a copy (the conv
        # kernel takes strided rows)
        xBC_q = zxbcdt.narrow(-1, self.in_segments[0], e + 2 * gn)
        out_ch = self.conv_out_channel_scales()
        y_q, new_conv = self.conv1d(xBC_q, out_ch, conv_state)
        x_q, B_q, C_q = y_q.split([e, gn, gn], dim=-1)
        x_sc = self.x_channel_scales()  # [H, P]
        tap(self.x_conv_out, lambda: x_q.float() * x_sc.reshape(-1))
        tap(self.B_conv_out, lambda: B_q.float() * self.B_out_scale.repeat_interleave(N))
        tap(self.C_conv_out, lambda: C_q.float() * self.C_out_scale.repeat_interleave(N))
        x4 = x_q.reshape(bsz, seqlen, H, P)
        B4, C4 = B_q.reshape(bsz, seqlen, G, N), C_q.reshape(bsz, seqlen, G, N)
        # export traces today's [H, P, N] gather (the graph's nodes stay the same); otherwise the compact
        # table: the kernels index it, the reference path expands it
        st_sc = self.state_channel_scales() if exporting() else self.state_row_scales()
        if decode:
            y, new_ssm = kernel_dispatch.quant_ssd_state_update(
                x4[:, 0], x_sc, dt_q[:, 0], s_dt, self.dt_bias, self.A_log, self.A_log_scale,
                B4[:, 0], self.B_out_scale, C4[:, 0], self.C_out_scale, self.D, self.D_scale,
                self.dt_limit, ssm_state, st_sc, fp16_y=True)
            y = y.unsqueeze(1)
        else:
            y, new_ssm = kernel_dispatch.quant_ssd(
                x4, x_sc, dt_q, s_dt, self.dt_bias, self.A_log, self.A_log_scale, B4, self.B_out_scale,
                C4, self.C_out_scale, self.D, self.D_scale, self.chunk_size, self.dt_limit,
                ssm_state, st_sc, fp16_y=True)
        if not self.int8_state:
            new_ssm = new_ssm.to(self.fp_state_dtype)
        # y: the kernel's fp16 as it is (fp16_y), fp32 from the reference; the gated norm reads either as fp32
        y = y.reshape(bsz, seqlen, e)
        tap(self.ssd_out, lambda: y.float())
        tap(self.ssm_state_act, lambda: self._dequant_state(new_ssm))
        yn = kernel_dispatch.quant_gated_rms_norm(y, z_q.contiguous(), s_z, self.norm.weight, self.eps,
                                                  self.group_size_norm, self.norm_before_gate,
                                                  fp16_out=self.hadamard)  # the Hadamard reads it as fp32
        if self.hadamard:
            y_q8 = kernel_dispatch.quant_hadamard(yn, _hadamard_for(e, yn.device), self.out_proj.input_scale)
        else:
            y_q8 = _quantize_int8(yn, self.out_proj.input_scale)
        return self.out_proj(y_q8), new_conv, new_ssm

    def _forward_a16(self, h: Tensor, conv_state, ssm_state, decode: bool):
        bsz, seqlen, _ = h.shape
        e, gn, H, P, G, N = (self.d_inner, self.ngroups * self.d_state, self.nheads, self.headdim,
                             self.ngroups, self.d_state)
        z, x, B, C, dt = self.in_proj(h).split(list(self.in_segments), dim=-1)
        for mod, v in ((self.z_act, z), (self.x_conv_in, x), (self.B_conv_in, B), (self.C_conv_in, C),
                       (self.dt_act, dt)):
            tap(mod, v)
        xBC, new_conv = self.conv1d(torch.cat([x, B, C], dim=-1), conv_state)
        x, B, C = xBC.split([e, gn, gn], dim=-1)
        tap(self.x_conv_out, x)
        tap(self.B_conv_out, B)
        tap(self.C_conv_out, C)
        A = -torch.exp(self.A_log.float())
        dtv = fp_ssm.mamba2_dt(dt, self.dt_bias.float(), self.dt_limit)
        if decode:
            y, new_ssm = kernel_dispatch.ssd_state_update(ssm_state.float(), x.reshape(bsz, H, P), dtv[:, 0], A,
                                                          B.reshape(bsz, G, N), C.reshape(bsz, G, N), self.D.float())
        else:
            y, new_ssm = kernel_dispatch.ssd(x.reshape(bsz, seqlen, H, P), dtv, A,
                                             B.reshape(bsz, seqlen, G, N), C.reshape(bsz, seqlen, G, N),
                                             self.chunk_size, self.D.float(),
                                             None if ssm_state is None else ssm_state.float())
        y = y.reshape(bsz, seqlen, e).float()
        new_ssm = new_ssm.to(self.fp_state_dtype)
        tap(self.ssd_out, y)
        tap(self.ssm_state_act, lambda: new_ssm.float())
        yn = kernel_dispatch.gated_rms_norm(y, z, self.norm.weight, self.eps, self.group_size_norm,
                                            self.norm_before_gate)  # ssm.gated_rms_norm / the float kernel
        if self.hadamard:
            yn = _online_hadamard(yn, e, self.out_proj)
        return self.out_proj(yn), new_conv.to(self.fp_state_dtype), new_ssm

    # ---- construction ------------------------------------------------------------------------------

    @classmethod
    def from_fp(cls, fp_mixer: nn.Module, config: MambaConfig, quant_config: QuantConfig, layer_idx: int,
                scales: Mapping[str, Any], gptq_results: Mapping[str, GPTQResult] | None = None,
                prefix: str | None = None, reorder_info: Any = None) -> "QMamba2Mixer":
        """Quantize one (rotated, reordered, Hadamard-wrapped) FP Mamba2 mixer. Scales under
        ``{prefix}`` (default ``layers.{i}.mixer.``): ``in_proj:input``, ``z_act``, ``x_conv_in``,
        ``B_conv_in``, ``C_conv_in``, ``dt_act``, ``x_conv_out`` ([G, m, n] or per-tensor), ``B_conv_out`` /
        ``C_conv_out`` ([G] or per-tensor), ``ssm_state_act`` ([G, m, n, N] or per-tensor; int8 state
        only), ``out_proj:input``. GPTQ results under ``{prefix}in_proj`` / ``{prefix}out_proj``."""
        qc = quant_config
        prefix = f"layers.{layer_idx}.mixer." if prefix is None else prefix
        sl = ScaleLookup(scales, prefix)
        gptq = gptq_results or {}
        m = cls(config, qc, layer_idx, device=fp_mixer.A_log.device)
        e, n, G = config.d_inner, config.d_state, config.ngroups
        gn = G * n
        w_out, b_out = split_out_proj(fp_mixer.out_proj, qc.out_proj_hadamard, e)
        m.dt_bias.copy_(fp_mixer.dt_bias.detach())
        m.norm.weight.copy_(fp_mixer.norm.weight.detach())
        conv_w = fp_mixer.conv1d.weight.detach().reshape(m.conv_dim, -1)
        conv_b = None if fp_mixer.conv1d.bias is None else fp_mixer.conv1d.bias.detach()
        if not qc.act8:
            m.in_proj = W4A16Linear.from_float(fp_mixer.in_proj, gptq.get(prefix + "in_proj"), qc.group_size)
            m.out_proj = W4A16Linear.from_float(w_out, gptq.get(prefix + "out_proj"), qc.group_size, bias=b_out)
            m.conv1d = FPConv1d.from_float(conv_w, conv_b, qc.torch_fp_dtype)
            m.A_log.copy_(fp_mixer.A_log.detach().float())
            m.D.copy_(fp_mixer.D.detach().float())
            return m
        s_in = sl.get("in_proj:input")
        seg_out = torch.stack([sl.get("z_act", "z_act:input").reshape(()),
                               sl.get("x_conv_in", "x_conv_in:input").reshape(()),
                               sl.get("B_conv_in", "B_conv_in:input").reshape(()),
                               sl.get("C_conv_in", "C_conv_in:input").reshape(()),
                               sl.get("dt_act", "dt_act:input").reshape(())])
        s_y = sl.get("out_proj:input")
        if qc.w_bits == 8:
            m.in_proj = W8A8SegmentLinear.from_float(fp_mixer.in_proj, s_in, seg_out, segments=m.in_segments)
            m.out_proj = W8A8Linear.from_float(w_out, s_y, None, bias=b_out)
        else:
            m.in_proj = W4A8Linear.from_float(fp_mixer.in_proj, s_in, seg_out, gptq.get(prefix + "in_proj"),
                                              qc.group_size, segments=m.in_segments)
            m.out_proj = W4A8Linear.from_float(w_out, s_y, None, gptq.get(prefix + "out_proj"), qc.group_size,
                                               bias=b_out)
        m.conv1d = QuantCausalConv1d.from_float(conv_w, conv_b, seg_out[1:4], segments=(e, gn, gn))
        m.x_out_scale.copy_(as_scale(sl.get("x_conv_out", "x_conv_out:output"), tuple(m.x_out_scale.shape)))
        m.B_out_scale.copy_(as_scale(sl.get("B_conv_out", "B_conv_out:output"), (G,)))
        m.C_out_scale.copy_(as_scale(sl.get("C_conv_out", "C_conv_out:output"), (G,)))
        for name, t in (("A_log", fp_mixer.A_log), ("D", fp_mixer.D)):
            q, s = quantize_scalar_param(t)
            getattr(m, name).copy_(q)
            getattr(m, name + "_scale").copy_(s)
        if m.int8_state:
            m.ssm_state_scale.copy_(as_scale(sl.get("ssm_state_act"), tuple(m.ssm_state_scale.shape)))
        if qc.group_heads and reorder_info is not None:
            m.channel_index.copy_(torch.as_tensor(reorder_info.channel_index).long())
            m.head_index.copy_(torch.as_tensor(reorder_info.head_index).long())
        return m
