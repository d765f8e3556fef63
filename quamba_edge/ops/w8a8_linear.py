"""W8A8Linear: int8 activations x int8 weights, exact int32 accumulation, fp32 epilogue.

Spec: shared/spec/quamba.md C.8 (W8: per-tensor weights, Mamba2 in_proj one scale per output segment),
D.1 (CUTLASS scaled_mm / GEMV), D.3 item 2, pitfall F.17.
"""

# registry record: RECORD at the end of this module

from __future__ import annotations

import torch

from ._common import Scale, acc_to_f32, check_int8, f32, int_matmul, quantize_int8
from .registry import Attr, OpRecord, Port, emit, exporting, register


def w8a8_linear(
    x_q: torch.Tensor,
    x_scale: Scale,
    w_q: torch.Tensor,
    w_scale: Scale,
    bias: torch.Tensor | None = None,
    out_scale: Scale | None = None,
) -> torch.Tensor:
    """``y = (x_scale * x_q) @ (w_scale * w_q)^T [+ bias]`` with the integer product done exactly.

    Inputs
      x_q        int8 [..., K]: the quantized activation.
      x_scale    fp32 scalar: its static per-tensor scale.
      w_q        int8 [N, K]: the weight (row n = output feature n).
      w_scale    fp32 scalar (per-tensor weight scale) or fp32 [N]: one scale per output row. Mamba2's
                 in_proj has one scale per output segment (z, x, B, C, dt); the caller expands it to rows
                 (``scales.expand_segment_scales``).
      bias       float [N] or None (used in fp32).
      out_scale  None (fp32 output), an fp32 scalar, or fp32 [N] (Mamba2 in_proj: the five segment output
                 scales expanded to rows).

    Output
      int8 [..., N] when ``out_scale`` is given, else fp32 [..., N].

    Arithmetic
      1. ``acc[n] = sum_k int32(x_q[k]) * int32(w_q[n, k])``  exact (int32 in the kernel; no overflow for
         K < 2^17).
      2. ``alpha = float32(x_scale) * float32(w_scale)``  (fp32 product, per output row when w_scale is a
         vector; kernels precompute it).
      3. ``y = float32(acc) * alpha``  (int to float: round to nearest even); then ``y = y + bias``.
      4. int8 output: ``q = clamp(round_half_even(y / out_scale), -128, 127)``.
    """
    if exporting():  # torch.onnx.export: one custom node (RECORD below)
        return _emit(x_q, x_scale, w_q, w_scale, bias, out_scale)
    check_int8("x_q", x_q)
    check_int8("w_q", w_q)
    if w_q.dim() != 2 or w_q.shape[1] != x_q.shape[-1]:
        raise ValueError(f"w_q must be [N, K={x_q.shape[-1]}], got {tuple(w_q.shape)}")
    acc = int_matmul(x_q, w_q.t())
    alpha = f32(x_scale) * f32(w_scale)
    y = acc_to_f32(acc) * alpha
    if bias is not None:
        y = y + bias.to(torch.float32)
    if out_scale is None:
        return y
    return quantize_int8(y, f32(out_scale))


# ---- registry record ---------------------------------------------------------------------------


def _node(x_q: torch.Tensor, x_scale: torch.Tensor, w_q: torch.Tensor, w_scale: torch.Tensor,
          bias: torch.Tensor, out_scale: torch.Tensor, *, out_int8: int, **_: object) -> tuple[torch.Tensor]:
    return (w8a8_linear(x_q, x_scale, w_q, w_scale, bias, out_scale if out_int8 else None),)


RECORD = register(OpRecord(
    name="W8A8Linear",
    inputs=(Port("x_q", "int8", "[B, L, K]"), Port("x_scale", "float32", "[]"),
            Port("w_q", "int8", "[N, K]"), Port("w_scale", "float32", "[N] (per row)"),
            Port("bias", "float32", "[N] (zeros when the layer has none)"),
            Port("out_scale", "float32", "[N] (per row; ignored when out_int8 = 0)")),
    outputs=(Port("y", "Y", "[B, L, N]"),),
    attrs=(Attr("out_int8", "int", None, "1: int8 output, 0: float output"),),
    type_vars={"Y": ("int8", "T")},
    reason="Mamba2's in_proj needs five per-segment int8 output scales and exact int32 accumulation; a "
           "Q/DQ MatMul quantizes activations per tensor only. (A per-tensor Q/DQ lowering for TensorRT's "
           "own int8 GEMM is a candidate for a later version.)",
    reference="quamba_edge.ops.w8a8_linear",
    impl=_node,
    kernel="w8a8_linear.cu",
))


def _emit(x_q, x_scale, w_q, w_scale, bias, out_scale):
    n = w_q.shape[0]
    row = lambda s: f32(s).expand(n)
    bias = torch.zeros(n) if bias is None else bias
    out_int8 = out_scale is not None
    (y,) = emit("W8A8Linear", [x_q, x_scale, w_q, row(w_scale), bias, row(1.0 if out_scale is None else out_scale)],
                {"out_int8": int(out_int8)}, shapes=[[*x_q.shape[:-1], n]],
                binding={"Y": "int8" if out_int8 else "T"})
    return y
