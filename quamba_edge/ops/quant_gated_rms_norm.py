"""QuantGatedRMSNorm: Mamba2's gated, group-wise RMSNorm with an int8 gate z and a float output.

Spec: shared/spec/quamba.md A.3 step 7, C.7 (z int8 with ``z_act:output``; output fp16; the norm weight
is not fused), C.9 (``QRMSNormGated``), D.2 (``quant_normgated``), D.3 item 7.
"""

# registry record: RECORD at the end of this module

from __future__ import annotations

import torch

from ._common import Scale, check_int8, f32, silu
from .registry import Attr, OpRecord, Port, emit, exporting, register


def quant_gated_rms_norm(
    y: torch.Tensor,
    z_q: torch.Tensor,
    z_scale: Scale,
    weight: torch.Tensor,
    eps: float,
    group_size: int,
    norm_before_gate: bool = False,
) -> torch.Tensor:
    """``out = RMSNorm_groupwise(y * SiLU(z)) * weight`` (or ``RMSNorm(y) * weight * SiLU(z)``).

    Inputs
      y           float [B, L, E]: the SSD output (fp16 from the kernel, any float here).
      z_q         int8 [B, L, E]: the gate, quantized with the per-tensor static ``z_scale``.
      z_scale     fp32 scalar.
      weight      float [E]: the gated-norm weight (permuted with the sort-and-cluster channel order).
      eps         epsilon (fp32).
      group_size  channels per RMS group, E / G (the SSD groups); must divide E.
      norm_before_gate  False for every Mamba2 checkpoint we know (gate, then norm).

    Output
      fp32 [B, L, E] (the kernel writes fp16; it feeds QuantHadamard).

    Arithmetic (fp32)
      1. ``z = float32(z_q) * z_scale``; ``g = z / (1 + exp(-z))``.
      2. norm_before_gate False: ``v = float32(y) * g``; True: ``v = float32(y)``.
      3. per group of ``group_size`` consecutive channels: ``ms = sum(v*v) / group_size`` (order free),
         ``rstd = 1 / sqrt(ms + eps)``.
      4. ``out = (v * rstd) * float32(weight)``; when norm_before_gate: ``out = out * g``.
    """
    if exporting():  # torch.onnx.export: one custom node (RECORD below)
        return _emit(y, z_q, z_scale, weight, eps, group_size, norm_before_gate)
    check_int8("z_q", z_q)
    e = y.shape[-1]
    if z_q.shape != y.shape:
        raise ValueError(f"z_q {tuple(z_q.shape)} must have y's shape {tuple(y.shape)}")
    if group_size <= 0 or e % group_size != 0:
        raise ValueError(f"group_size {group_size} must divide E={e}")
    z = z_q.to(torch.float32) * f32(z_scale)
    g = silu(z)
    yf = y.to(torch.float32)
    v = yf if norm_before_gate else yf * g
    vg = v.reshape(*v.shape[:-1], e // group_size, group_size)
    ms = torch.sum(vg * vg, dim=-1, keepdim=True) / group_size
    rstd = torch.rsqrt(ms + float(eps))
    out = (vg * rstd).reshape(v.shape) * weight.to(torch.float32)
    if norm_before_gate:
        out = out * g
    return out


# ---- registry record ---------------------------------------------------------------------------


def _node(y: torch.Tensor, z_q: torch.Tensor, z_scale: torch.Tensor, weight: torch.Tensor, *, eps: float,
          group_size: int, norm_before_gate: int, **_: object) -> tuple[torch.Tensor]:
    return (quant_gated_rms_norm(y, z_q, z_scale, weight, eps, group_size, bool(norm_before_gate)),)


RECORD = register(OpRecord(
    name="QuantGatedRMSNorm",
    inputs=(Port("y", "T", "[B, L, E]"), Port("z_q", "int8", "[B, L, E]"), Port("z_scale", "float32", "[]"),
            Port("weight", "float32", "[E]")),
    outputs=(Port("out", "T", "[B, L, E]"),),
    attrs=(Attr("eps", "float", None), Attr("group_size", "int", None, "channels per norm group"),
           Attr("norm_before_gate", "int", 0)),
    reason="Mamba2's gate (dequantize z, SiLU, multiply) and group-wise RMSNorm in one pass.",
    reference="quamba_edge.ops.quant_gated_rms_norm",
    impl=_node,
    kernel="quant_gated_rms_norm.cu",
))


def _emit(y, z_q, z_scale, weight, eps, group_size, norm_before_gate):
    (out,) = emit("QuantGatedRMSNorm", [y, z_q, z_scale, weight],
                  {"eps": float(eps), "group_size": int(group_size), "norm_before_gate": int(norm_before_gate)},
                  shapes=[y.shape])
    return out
