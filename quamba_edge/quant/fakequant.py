"""Fake-quant (simulation) model: the FP (transformed) MambaLM with every weight replaced by the value the
quantized model applies, and quantize -> dequantize at the same activation points with the same scales.

It is built from a :class:`~quamba_edge.quant.qlm.QuantMambaLM` (so both share one set of weights and
scales) and computes with the FP reference math of ``quamba_edge.models`` (float matmuls with dequantized
weights, ``models.ssm`` scans) instead of the integer ops. The two therefore differ only by float
operation order: an int8 activation can land one step away when a value sits within fp32 rounding of a
quantization boundary (and that difference propagates). Use it to validate the integer path (spec G #8:
"the simulation path is easy to misconfigure, so validate with real kernels" — here each checks the
other) and to study quantization error without the ops.

Fake-quant points (A8): block-norm output (``in_proj:input``), in_proj output (Mamba1: one x|z scale;
Mamba2: per segment), conv output (Mamba1 per-tensor; Mamba2 x per channel group, B/C per SSD group),
Mamba1 x_proj output and dt_proj output, SSM state handed back (int8-state recipes), out_proj input after
the online Hadamard, final norm output (A8 lm_head). W4A16: weights only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..models.config import MambaConfig
from ..models.lm import MambaLM
from ..models.mamba1 import Mamba1Mixer
from ..models.mamba2 import Mamba2Mixer
from ..models.ssm import rms_norm
from .qlinear import online_hadamard_matrix
from .qlm import QuantMambaLM
from .quantize import fake_quant

__all__ = ["fake_quant_model", "FakeQuantLinear", "FakeQuantRMSNorm"]


def _fq(x: Tensor, scale: Tensor | None) -> Tensor:
    return x if scale is None else fake_quant(x.float(), scale.to(x.device).float(), 8)


class FakeQuantRMSNorm(nn.Module):
    """RMSNorm (fp32) followed by fake int8 quantization with ``output_scale`` (None: float output)."""

    def __init__(self, weight: Tensor, eps: float, output_scale: Tensor | None) -> None:
        super().__init__()
        self.register_buffer("weight", weight.detach().float().clone())
        self.eps = eps
        self.output_scale = None if output_scale is None else output_scale.detach().float().clone()

    def forward(self, x: Tensor) -> Tensor:
        return _fq(rms_norm(x.float(), self.weight, self.eps), self.output_scale)


class FakeQuantLinear(nn.Module):
    """``y = fq_out(fq_in(x · Mᵀ) · Ŵᵀ + b)``: optional online transform M (out_proj Hadamard), optional
    input / output fake quantization (scalar or per-output-row scales), dequantized weight Ŵ."""

    def __init__(self, weight: Tensor, bias: Tensor | None = None, in_scale: Tensor | None = None,
                 out_scale: Tensor | None = None, matrix: Tensor | None = None) -> None:
        super().__init__()
        self.register_buffer("weight", weight.detach().float().clone())
        self.bias = None if bias is None else bias.detach().float().clone()
        self.in_scale = None if in_scale is None else in_scale.detach().float().clone()
        self.out_scale = None if out_scale is None else out_scale.detach().float().clone()
        self.matrix = matrix

    def forward(self, x: Tensor) -> Tensor:
        x = x.float()
        if self.matrix is not None:
            x = torch.matmul(x, self.matrix.to(x.device).t())
        x = _fq(x, self.in_scale)
        return _fq(F.linear(x, self.weight, self.bias), self.out_scale)


def _copy_(param: Tensor, value: Tensor) -> None:
    with torch.no_grad():
        param.data = value.detach().float().clone().to(param.device)


def _out_proj(qmixer: nn.Module, e: int) -> FakeQuantLinear:
    op = qmixer.out_proj
    matrix = online_hadamard_matrix(e) if qmixer.hadamard else None
    in_scale = op.input_scale.reshape(()) if qmixer.act8 else None
    return FakeQuantLinear(op.dequantized_weight(), op.bias, in_scale, None, matrix)


class _FQMamba1Mixer(Mamba1Mixer):
    """FP Mamba1 mixer with fake quantization (built by :func:`fake_quant_model`)."""

    def setup(self, q) -> None:
        self.act8 = q.act8
        row = lambda lin: lin.output_scale.reshape(()) if q.act8 else None  # noqa: E731
        self.in_proj = FakeQuantLinear(q.in_proj.dequantized_weight(), q.in_proj.bias, None, row(q.in_proj))
        self.x_proj = FakeQuantLinear(q.x_proj.dequantized_weight(), None, None, row(q.x_proj))
        self.out_proj = _out_proj(q, self.d_inner)
        w, b = q.conv1d.dequantized()
        _copy_(self.conv1d.weight, w.unsqueeze(1))
        if b is not None:
            _copy_(self.conv1d.bias, b)
        if q.act8:
            _copy_(self.dt_proj.weight, q.dt_proj.dequantized_weight())
            _copy_(self.dt_proj.bias, q.dt_bias.float() * q.dt_bias_scale)
            _copy_(self.A_log, q.A_log.float() * q.A_log_scale)
            _copy_(self.D, q.D.float() * q.D_scale)
            self.u_scale = q.conv_out_scale.detach().clone()
            self.dt_scale = q.dt_proj.output_scale.reshape(()).detach().clone()
            self.state_scale = None if q.ssm_state_scale is None else q.ssm_state_scale.detach().clone()
        else:
            _copy_(self.dt_proj.weight, q.dt_proj.weight)
            _copy_(self.dt_proj.bias, q.dt_proj.bias)
            _copy_(self.A_log, q.A_log)
            _copy_(self.D, q.D)
            self.u_scale = self.dt_scale = self.state_scale = None

    def _conv(self, x, conv_state):
        y, st = super()._conv(x.float(), None if conv_state is None else conv_state.float())
        return _fq(y, self.u_scale), st

    def _ssm(self, x, dt, B, C, z, ssm_state):
        y, s = super()._ssm(x, _fq(dt, self.dt_scale), B, C, z, ssm_state)
        return y, _fq(s, self.state_scale)

    def _ssm_step(self, x, dt, B, C, z, ssm_state):
        y, s = super()._ssm_step(x, _fq(dt, self.dt_scale), B, C, z, ssm_state)
        return y, _fq(s, self.state_scale)


class _FQMamba2Mixer(Mamba2Mixer):
    """FP Mamba2 mixer with fake quantization (built by :func:`fake_quant_model`)."""

    def setup(self, q) -> None:
        self.act8 = q.act8
        out_rows = None
        if q.act8:
            from ..ops.scales import expand_segment_scales

            out_rows = expand_segment_scales(q.in_proj.output_scale, q.in_segments)
        self.in_proj = FakeQuantLinear(q.in_proj.dequantized_weight(), q.in_proj.bias, None, out_rows)
        self.out_proj = _out_proj(q, self.d_inner)
        w, b = q.conv1d.dequantized()
        _copy_(self.conv1d.weight, w.unsqueeze(1))
        if b is not None:
            _copy_(self.conv1d.bias, b)
        _copy_(self.dt_bias, q.dt_bias)
        _copy_(self.norm.weight, q.norm.weight)
        if q.act8:
            _copy_(self.A_log, q.A_log.float() * q.A_log_scale)
            _copy_(self.D, q.D.float() * q.D_scale)
            self.conv_scale = q.conv_out_channel_scales().detach().clone()
            st = q.state_channel_scales()
            self.state_scale = None if st is None else st.detach().clone()
        else:
            _copy_(self.A_log, q.A_log)
            _copy_(self.D, q.D)
            self.conv_scale = self.state_scale = None

    def _conv(self, xBC, conv_state):
        y, st = super()._conv(xBC.float(), None if conv_state is None else conv_state.float())
        return _fq(y, self.conv_scale), st

    def _ssm(self, x, dt_raw, B, C, ssm_state):
        y, s = super()._ssm(x, dt_raw, B, C, ssm_state)
        return y, _fq(s, self.state_scale)

    def _ssm_step(self, x, dt_raw, B, C, ssm_state):
        y, s = super()._ssm_step(x, dt_raw, B, C, ssm_state)
        return y, _fq(s, self.state_scale)


@torch.no_grad()
def fake_quant_model(qmodel: QuantMambaLM) -> MambaLM:
    """The simulation model of ``qmodel`` (module docstring): a :class:`MambaLM` (fp32) whose modules are
    replaced by fake-quant versions holding ``qmodel``'s dequantized weights and scales."""
    cfg: MambaConfig = qmodel.config
    fm = MambaLM(cfg)
    fm.embedding.weight = nn.Parameter(qmodel.embedding.dequantized_weight().float().clone())
    mixer_cls = _FQMamba1Mixer if cfg.arch == "mamba1" else _FQMamba2Mixer
    for i, (fl, ql) in enumerate(zip(fm.layers, qmodel.layers)):
        norm = ql.norm
        fl.norm = FakeQuantRMSNorm(norm.weight, norm.eps, norm.output_scale)
        mixer = mixer_cls(cfg, i)
        mixer.setup(ql.mixer)
        fl.mixer = mixer
    nf = qmodel.norm_f
    fm.norm_f = FakeQuantRMSNorm(nf.weight, nf.eps, nf.output_scale)
    head = qmodel.lm_head
    fm.lm_head = FakeQuantLinear(head.dequantized_weight(), getattr(head, "bias", None))  # input: norm_f fq
    return fm.eval()
