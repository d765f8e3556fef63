"""W8A8Linear: int8 activations x int8 weights, exact int32 accumulation, fp32 epilogue.

Spec: shared/spec/quamba.md C.8 (W8: per-tensor weights, Mamba2 in_proj one scale per output segment),
D.1 (CUTLASS scaled_mm / GEMV), D.3 item 2, pitfall F.17.
"""

# registry record: added with the export issue

from __future__ import annotations

from typing import Optional

import torch

from ._common import Scale, acc_to_f32, check_int8, f32, int_matmul, quantize_int8


def w8a8_linear(
    x_q: torch.Tensor,
    x_scale: Scale,
    w_q: torch.Tensor,
    w_scale: Scale,
    bias: Optional[torch.Tensor] = None,
    out_scale: Optional[Scale] = None,
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
