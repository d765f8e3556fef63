"""W4A8Linear: int4 weights (two-level scales, Marlin-QQQ) x int8 activations.

Spec: shared/spec/quamba.md C.8 ("W4A8 kernel format"), D.1 (``w4a8o8_gemm`` / ``w4a8o16_gemm``),
pitfalls F.15, F.16 (W4A8 is a double quantization: int4 -> int8 inside the kernel).
"""

# registry record: RECORD at the end of this module

from __future__ import annotations

import torch

from ._common import (
    Scale,
    acc_to_f32,
    check_codes4,
    check_int8,
    f32,
    int_matmul,
    quantize_int8,
)
from .registry import Attr, OpRecord, Port, emit, register


def expand_group_scales(s_group: torch.Tensor, k: int, group_size: int) -> torch.Tensor:
    """[N, ceil(K/g)] group scales -> [N, K] (column k uses group ``k // g``). ``group_size <= 0`` or
    ``>= K`` means one group per row (per-channel)."""
    g = k if group_size <= 0 or group_size >= k else group_size
    n_groups = -(-k // g)
    if s_group.dim() != 2 or s_group.shape[1] != n_groups:
        raise ValueError(f"s_group must be [N, {n_groups}] for K={k}, group_size={group_size}; "
                         f"got {tuple(s_group.shape)}")
    return s_group.repeat_interleave(g, dim=1)[:, :k]


def w4a8_int8_weight(w_q4: torch.Tensor, s_group: torch.Tensor, group_size: int = 128) -> torch.Tensor:
    """The int8 weight the W4A8 kernel multiplies with (the second quantization of spec F.16).

    ``w8 = clamp(round_half_even(float16(float16(q - 8) * float16(s_group))), -128, 127)``: the product
    is one IEEE fp16 multiply (round to nearest even to fp16), then fp16 -> int8 rounds half to even
    (CUDA ``__half2int_rn``) and saturates.
    """
    check_codes4("w_q4", w_q4)
    sg = expand_group_scales(s_group.to(torch.float16), w_q4.shape[1], group_size)
    w16 = (w_q4.to(torch.float16) - 8.0) * sg  # fp16 x fp16 -> fp16 (single rounding)
    return torch.clamp(torch.round(w16.to(torch.float32)), -128, 127).to(torch.int8)


def w4a8_linear(
    x_q: torch.Tensor,
    x_scale: Scale,
    w_q4: torch.Tensor,
    s_group: torch.Tensor,
    s_channel: torch.Tensor,
    group_size: int = 128,
    out_scale: Scale | None = None,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """int8 activation x int4 weight, int8 tensor-core semantics (Marlin-QQQ).

    Inputs
      x_q        int8 [..., K]: quantized activation.
      x_scale    fp32 scalar: its static per-tensor scale.
      w_q4       uint8 [N, K]: unpacked int4 codes 0..15, offset binary (value = code - 8). Packing and
                 tile permutation are the packing module's business.
      s_group    fp16 [N, ceil(K / group_size)]: group scales relative to the channel scale
                 (``group_scale / s_channel``), so that ``(q - 8) * s_group`` lands on an int8 grid.
      s_channel  fp32 [N]: per-output-channel scale of that int8 grid (``max|W_row| / 127``).
      group_size 128 (GPTQ groups along K); ``<= 0`` = one group per row.
      out_scale  None (fp32 output), fp32 scalar, or fp32 [N] (per-segment output scales expanded to rows).
      bias       float [N] or None (Mamba layers have none; kept for symmetry with W8A8Linear).

    Output
      int8 [..., N] when ``out_scale`` is given, else fp32 [..., N].

    Arithmetic
      1. ``w8[n,k] = clamp(round_half_even(fp16(fp16(w_q4[n,k] - 8) * s_group[n, k // g])), -128, 127)``
         (see ``w4a8_int8_weight``).
      2. ``acc[n] = sum_k int32(x_q[k]) * int32(w8[n,k])``  exact.
      3. ``alpha = float32(x_scale) * s_channel``  (fp32, per output channel; kernels precompute it).
      4. ``y = float32(acc) * alpha``; ``y = y + bias``.
      5. int8 output: ``q = clamp(round_half_even(y / out_scale), -128, 127)``.
    """
    check_int8("x_q", x_q)
    if w_q4.dim() != 2 or w_q4.shape[1] != x_q.shape[-1]:
        raise ValueError(f"w_q4 must be [N, K={x_q.shape[-1]}], got {tuple(w_q4.shape)}")
    w8 = w4a8_int8_weight(w_q4, s_group, group_size)
    acc = int_matmul(x_q, w8.t())
    alpha = f32(x_scale) * s_channel.to(torch.float32)
    y = acc_to_f32(acc) * alpha
    if bias is not None:
        y = y + bias.to(torch.float32)
    if out_scale is None:
        return y
    return quantize_int8(y, f32(out_scale))


# ---- registry record ---------------------------------------------------------------------------


def _node(x_q: torch.Tensor, x_scale: torch.Tensor, qweight: torch.Tensor, s_group: torch.Tensor,
          s_channel: torch.Tensor, bias: torch.Tensor, out_scale: torch.Tensor, *, in_features: int,
          group_size: int, out_int8: int, **_: object) -> tuple[torch.Tensor]:
    from ..quant.packing import unpack_int4

    codes = unpack_int4(qweight, in_features)
    return (w4a8_linear(x_q, x_scale, codes, s_group, s_channel, group_size,
                        out_scale if out_int8 else None, bias),)


RECORD = register(OpRecord(
    name="W4A8Linear",
    inputs=(Port("x_q", "int8", "[B, L, K]"), Port("x_scale", "float32", "[]"),
            Port("qweight", "uint8", "[N, ceil(K/2)] int4 codes, offset binary, low nibble first"),
            Port("s_group", "float16", "[N, ceil(K/group_size)]"), Port("s_channel", "float32", "[N]"),
            Port("bias", "float32", "[N] (zeros when the layer has none)"),
            Port("out_scale", "float32", "[N] (per row; ignored when out_int8 = 0)")),
    outputs=(Port("y", "Y", "[B, L, N]"),),
    attrs=(Attr("in_features", "int", None, "K"), Attr("group_size", "int", 128),
           Attr("out_int8", "int", None, "1: int8 output, 0: float output")),
    type_vars={"Y": ("int8", "T")},
    reason="int4 weights x int8 activations (two-level Marlin-QQQ scales) has no ONNX or TensorRT form.",
    reference="quamba_edge.ops.w4a8_linear",
    impl=_node,
    kernel="w4a8_linear.cu",
))


def emit_w4a8_linear(x_q, x_scale, qweight, s_group, s_channel, group_size, out_scale, bias, in_features):
    """Export form taking the *packed* weight (``quant.packing.pack_int4``); see ``w4a8_linear``."""
    n = qweight.shape[0]
    bias = torch.zeros(n) if bias is None else bias
    out_int8 = out_scale is not None
    (y,) = emit("W4A8Linear", [x_q, x_scale, qweight, s_group, s_channel, bias,
                               f32(1.0 if out_scale is None else out_scale).expand(n)],
                {"in_features": int(in_features), "group_size": int(group_size), "out_int8": int(out_int8)},
                shapes=[[*x_q.shape[:-1], n]], binding={"Y": "int8" if out_int8 else "T"})
    return y
