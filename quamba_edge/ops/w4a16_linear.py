"""W4A16Linear: float activations x int4 weights with fp16 group scales (Marlin semantics).

Spec: shared/spec/quamba.md C.8 ("W4: symmetric 4-bit, group size 128", "W4A16"), D.1
(``w4a16o16_gemm``), pitfall F.15.
"""

# registry record: RECORD at the end of this module

from __future__ import annotations

import torch

from ._common import check_codes4
from .registry import Attr, OpRecord, Port, emit, register
from .w4a8_linear import expand_group_scales


def w4a16_dequantize(w_q4: torch.Tensor, s_group: torch.Tensor, group_size: int = 128) -> torch.Tensor:
    """fp32 [N, K] weight ``(q - 8) * float32(s_group[n, k // g])`` (exact in fp32)."""
    check_codes4("w_q4", w_q4)
    sg = expand_group_scales(s_group, w_q4.shape[1], group_size).to(torch.float32)
    return (w_q4.to(torch.float32) - 8.0) * sg


def w4a16_linear(
    x: torch.Tensor,
    w_q4: torch.Tensor,
    s_group: torch.Tensor,
    group_size: int = 128,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """``y = x @ W^T [+ bias]`` with ``W = (w_q4 - 8) * s_group``.

    Inputs
      x          float (fp16/bf16/fp32) [..., K].
      w_q4       uint8 [N, K]: unpacked int4 codes 0..15, offset binary (value = code - 8).
      s_group    fp16 [N, ceil(K / group_size)]: absmax / 7.5 of each group of ``group_size`` inputs.
      group_size 128; ``<= 0`` = one group per row (layers with K <= 128, spec C.8).
      bias       float [N] or None.

    Output
      fp32 [..., N] (the fp16 kernel's output is compared with a float tolerance).

    Arithmetic
      ``W[n,k] = float32(w_q4[n,k] - 8) * float32(s_group[n, k // g])`` (exact in fp32);
      ``y = float32(x) @ W^T`` in fp32 (summation order free); ``y = y + bias``.
    """
    if w_q4.dim() != 2 or w_q4.shape[1] != x.shape[-1]:
        raise ValueError(f"w_q4 must be [N, K={x.shape[-1]}], got {tuple(w_q4.shape)}")
    w = w4a16_dequantize(w_q4, s_group, group_size)
    y = torch.matmul(x.to(torch.float32), w.t())
    if bias is not None:
        y = y + bias.to(torch.float32)
    return y


# ---- registry record ---------------------------------------------------------------------------


def _node(x: torch.Tensor, qweight: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor, *,
          in_features: int, group_size: int, **_: object) -> tuple[torch.Tensor]:
    from ..quant.packing import unpack_int4

    return (w4a16_linear(x, unpack_int4(qweight, in_features), scale, group_size, bias),)


RECORD = register(OpRecord(
    name="W4A16Linear",
    inputs=(Port("x", "T", "[B, L, K]"),
            Port("qweight", "uint8", "[N, ceil(K/2)] int4 codes, offset binary, low nibble first"),
            Port("scale", "float16", "[N, ceil(K/group_size)]"),
            Port("bias", "float32", "[N] (zeros when the layer has none)")),
    outputs=(Port("y", "T", "[B, L, N]"),),
    attrs=(Attr("in_features", "int", None, "K"), Attr("group_size", "int", 128)),
    reason="Kept custom in v1 so one fused int4 GEMV serves decode on every TensorRT version. The packing "
           "equals ONNX UINT4 with zero point 8, so a standard blocked DequantizeLinear + MatMul lowering "
           "is possible where TensorRT supports int4 weight-only DQ.",
    reference="quamba_edge.ops.w4a16_linear",
    impl=_node,
    kernel="w4a16_linear.cu",
))


def emit_w4a16_linear(x, qweight, scale, group_size, bias, in_features):
    """Export form taking the *packed* weight; see ``w4a16_linear``."""
    n = qweight.shape[0]
    bias = torch.zeros(n) if bias is None else bias
    (y,) = emit("W4A16Linear", [x, qweight, scale, bias],
                {"in_features": int(in_features), "group_size": int(group_size)}, shapes=[[*x.shape[:-1], n]])
    return y
