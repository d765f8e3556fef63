"""QuantAddRMSNorm: fused residual add + RMSNorm (+ static int8 quantization).

Spec: shared/spec/quamba.md B.1 (FusedRMSNorm), C.9 (QRMSNorm), D.3 item 1, pitfall F.11 (the final
norm before an A8 lm_head is this op with an int8 output).
"""

# registry record: RECORD at the end of this module

from __future__ import annotations

import torch

from ._common import Scale, f32, quantize_int8
from .registry import Attr, OpRecord, Port, emit, exporting, register


def quant_add_rms_norm(
    hidden: torch.Tensor,
    residual: torch.Tensor | None,
    weight: torch.Tensor | None,
    eps: float,
    out_scale: Scale | None,
    residual_in_fp32: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Residual add, RMSNorm over the last dimension, optional int8 quantization.

    Inputs
      hidden     float (fp16/bf16/fp32) [B, L, d] (any leading shape): the previous mixer's output, or
                 the embedding output for the first block.
      residual   float [B, L, d] or None (first block: the residual is ``hidden`` itself).
      weight     float [d] or None (None = unit weight: Quamba fuses the block-norm weight into in_proj
                 and norm_f's weight into lm_head, spec F.10).
      eps        RMSNorm epsilon (python float, used in fp32).
      out_scale  fp32 scalar (per-tensor static scale of the consumer's input, e.g. ``in_proj:input`` or
                 ``lm_head:input``), or None for a float output (W4A16 blocks, fp16 final norm).
      residual_in_fp32  dtype of ``residual_out``: fp32 when True, ``hidden.dtype`` when False.

    Outputs
      y             int8 [B, L, d] when ``out_scale`` is given, else fp32 [B, L, d].
      residual_out  fp32 (or ``hidden.dtype``) [B, L, d]: the new residual stream.

    Arithmetic (all fp32; kernels reproduce this order)
      1. ``s = float32(hidden) + float32(residual)`` (``s = float32(hidden)`` when residual is None).
         ``residual_out = s`` (cast to ``hidden.dtype`` when not residual_in_fp32). The norm below always
         uses the fp32 ``s``, not the possibly rounded ``residual_out``.
      2. ``ms = sum_i(s_i * s_i) / d``  (the reduction order is free; kernels tree-reduce, which is why
         int8 outputs are compared within +-1 LSB).
      3. ``rstd = 1 / sqrt(ms + eps)``  (CUDA ``rsqrtf``).
      4. ``y = (s * rstd) * float32(weight)``  (no multiply when weight is None).
      5. int8 output: ``q = clamp(round_half_even(y / out_scale), -128, 127)``.
    """
    if out_scale is not None and exporting():  # torch.onnx.export: one custom node (RECORD below)
        return _emit(hidden, residual, weight, eps, out_scale)
    s = hidden.to(torch.float32)
    if residual is not None:
        s = s + residual.to(torch.float32)
    residual_out = s if residual_in_fp32 else s.to(hidden.dtype)
    d = s.shape[-1]
    ms = torch.sum(s * s, dim=-1, keepdim=True) / d
    rstd = torch.rsqrt(ms + float(eps))
    y = s * rstd
    if weight is not None:
        y = y * weight.to(torch.float32)
    if out_scale is None:
        return y, residual_out
    return quantize_int8(y, f32(out_scale)), residual_out


# ---- registry record ---------------------------------------------------------------------------


def _node(hidden: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, out_scale: torch.Tensor, *,
          eps: float, **_: object) -> tuple[torch.Tensor, torch.Tensor]:
    return quant_add_rms_norm(hidden, residual, weight, eps, out_scale, residual_in_fp32=True)


RECORD = register(OpRecord(
    name="QuantAddRMSNorm",
    inputs=(Port("hidden", "T", "[B, L, d]"),
            Port("residual", "float32", "[B, L, d]", "zeros for the first block"),
            Port("weight", "float32", "[d]"), Port("out_scale", "float32", "[]")),
    outputs=(Port("y", "int8", "[B, L, d]"), Port("residual_out", "float32", "[B, L, d]")),
    attrs=(Attr("eps", "float", None),),
    reason="Residual add + RMSNorm + static int8 quantization fused in one pass (the residual stream stays "
           "fp32); ONNX has no fused form and TensorRT would not fuse the quantize into its norm. The "
           "float-output norm (W4A16, fp16) is exported as standard ONNX ops.",
    reference="quamba_edge.ops.quant_add_rms_norm",
    impl=_node,
    kernel="quant_add_rms_norm.cu",
))


def _emit(hidden, residual, weight, eps, out_scale):
    if out_scale is None:
        raise ValueError("QuantAddRMSNorm exports with an int8 output only (a float norm is standard ONNX)")
    d = hidden.shape[-1]
    residual = torch.zeros_like(hidden, dtype=torch.float32) if residual is None else residual
    weight = torch.ones(d) if weight is None else weight
    return emit("QuantAddRMSNorm", [hidden, residual, weight, out_scale], {"eps": float(eps)},
                shapes=[hidden.shape, hidden.shape])
