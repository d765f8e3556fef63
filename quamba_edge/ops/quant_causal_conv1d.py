"""QuantCausalConv1d: int8 depthwise causal conv1d + bias + SiLU + int8 requantization, with an explicit
int8 conv state (prefill with state and decode are the same formula).

Spec: shared/spec/quamba.md B.5 (Mamba1), C.5 / C.7 / C.9 (Mamba2 Quamba2Conv: per-segment weight and
bias scales, x outputs in sort-and-cluster group scales, B/C outputs in per-SSD-group scales), D.1, D.3
item 4; docs/CONTRACTS.md (state layout [B, C, K-1]).

Why every scale is a per-channel vector: one op (and one kernel family) then serves both generations.
Mamba1 passes vectors whose entries are all equal (per-tensor scales); Mamba2 passes the concatenation
x | B | C of its per-segment input/weight/bias scales and of its output scales (G x 4 x 4 head/channel
groups for x, G SSD groups for B and C) expanded to channels with ``quamba_edge.ops.scales``. Kernels may
specialise (e.g. a per-tensor fast path when all entries are equal, or compact group tables in
constant memory) as long as they compute the same per-channel values. The three-way split of the
Mamba2 output into x, B and C is a view the caller takes of the [B, L, E + 2GN] result.
"""

# registry record: RECORD at the end of this module

from __future__ import annotations

import torch

from ._common import Scale, check_int8, f32, quantize_int8
from ._common import silu as _silu
from .registry import Attr, OpRecord, Port, emit, exporting, register


def _per_channel(name: str, s: Scale, c: int, device: torch.device) -> torch.Tensor:
    t = f32(s).to(device)
    if t.dim() == 0:
        return t.expand(c)
    if t.shape != (c,):
        raise ValueError(f"{name} must be a scalar or [{c}], got {tuple(t.shape)}")
    return t


def quant_causal_conv1d(
    x_q: torch.Tensor,
    x_scale: Scale,
    w_q: torch.Tensor,
    w_scale: Scale,
    b_q: torch.Tensor | None,
    b_scale: Scale | None,
    out_scale: Scale,
    conv_state: torch.Tensor | None = None,
    silu: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Depthwise causal conv over time, channel by channel.

    Inputs
      x_q         int8 [B, L, C]: the quantized conv input (in_proj's x, or Mamba2's x|B|C), L >= 1.
      x_scale     fp32 [C] (or scalar): input scale of each channel.
      w_q         int8 [C, K]: conv taps, ``w_q[c, K-1]`` multiplies the newest input.
      w_scale     fp32 [C] (or scalar).
      b_q         int8 [C] or None (no bias).
      b_scale     fp32 [C] (or scalar); ignored when b_q is None.
      out_scale   fp32 [C] (or scalar): scale of the int8 output.
      conv_state  int8 [B, C, K-1] or None (= zeros): the last K-1 *inputs* before this call, oldest
                  first (docs/CONTRACTS.md).
      silu        apply SiLU (True for every Mamba layer).

    Outputs
      y_q             int8 [B, L, C].
      new_conv_state  int8 [B, C, K-1]: the last K-1 columns of ``concat(conv_state, x_q^T)`` along time
                      (a copy of the inputs; no arithmetic).

    Arithmetic, per channel c and time t, with ``xx = concat(conv_state, x_q^T)`` ([B, C, K-1+L])
      1. ``acc = sum_{k<K} int32(w_q[c,k]) * int32(xx[c, t+k])``  exact (|acc| <= K*2^14).
      2. ``y = float32(acc) * (x_scale[c] * w_scale[c])``  (the fp32 product in parentheses first).
      3. with bias: ``y = y + float32(b_q[c]) * b_scale[c]``.
      4. SiLU: ``y = y / (1 + exp(-y))``.
      5. ``q = clamp(round_half_even(y / out_scale[c]), -128, 127)``.
    """
    if exporting():  # torch.onnx.export: one custom node (RECORD below)
        return _emit(x_q, x_scale, w_q, w_scale, b_q, b_scale, out_scale, conv_state, silu)
    check_int8("x_q", x_q)
    check_int8("w_q", w_q)
    if x_q.dim() != 3:
        raise ValueError(f"x_q must be [B, L, C], got {tuple(x_q.shape)}")
    bsz, seqlen, c = x_q.shape
    if w_q.dim() != 2 or w_q.shape[0] != c:
        raise ValueError(f"w_q must be [C={c}, K], got {tuple(w_q.shape)}")
    k = w_q.shape[1]
    if conv_state is None:
        conv_state = torch.zeros(bsz, c, k - 1, dtype=torch.int8, device=x_q.device)
    check_int8("conv_state", conv_state)
    if conv_state.shape != (bsz, c, k - 1):
        raise ValueError(f"conv_state must be [{bsz}, {c}, {k - 1}], got {tuple(conv_state.shape)}")

    xx = torch.cat([conv_state, x_q.transpose(1, 2)], dim=2)  # [B, C, K-1+L] int8
    xf = xx.to(torch.float32)
    wf = w_q.to(torch.float32)
    # Exact in fp32: every partial sum is an integer below K * 2^14 << 2^24.
    acc = torch.zeros(bsz, c, seqlen, dtype=torch.float32, device=x_q.device)
    for j in range(k):
        acc = acc + wf[:, j : j + 1] * xf[:, :, j : j + seqlen]
    alpha = _per_channel("x_scale", x_scale, c, x_q.device) * _per_channel("w_scale", w_scale, c, x_q.device)
    y = acc * alpha[:, None]
    if b_q is not None:
        check_int8("b_q", b_q)
        y = y + (b_q.to(torch.float32) * _per_channel("b_scale", b_scale, c, x_q.device))[:, None]
    if silu:
        y = _silu(y)
    y_q = quantize_int8(y, _per_channel("out_scale", out_scale, c, x_q.device)[:, None])
    new_state = xx[:, :, xx.shape[2] - (k - 1):].contiguous()
    return y_q.transpose(1, 2).contiguous(), new_state


# ---- registry record ---------------------------------------------------------------------------


def _node(x_q: torch.Tensor, x_scale: torch.Tensor, w_q: torch.Tensor, w_scale: torch.Tensor, b_q: torch.Tensor,
          b_scale: torch.Tensor, out_scale: torch.Tensor, conv_state: torch.Tensor, *, silu: int,
          **_: object) -> tuple[torch.Tensor, torch.Tensor]:
    return quant_causal_conv1d(x_q, x_scale, w_q, w_scale, b_q, b_scale, out_scale, conv_state, bool(silu))


RECORD = register(OpRecord(
    name="QuantCausalConv1d",
    inputs=(Port("x_q", "int8", "[B, L, C]"), Port("x_scale", "float32", "[C]"),
            Port("w_q", "int8", "[C, K]"), Port("w_scale", "float32", "[C]"),
            Port("b_q", "int8", "[C] (zeros when the conv has no bias)"), Port("b_scale", "float32", "[C]"),
            Port("out_scale", "float32", "[C]"), Port("conv_state", "int8", "[B, C, K-1]")),
    outputs=(Port("y_q", "int8", "[B, L, C]"), Port("conv_state_out", "int8", "[B, C, K-1]")),
    attrs=(Attr("silu", "int", 1),),
    reason="int8 depthwise causal conv with an explicit conv state (prefill and L = 1 decode are one formula), "
           "per-channel requantization and SiLU fused; ONNX Conv has no state and TensorRT's int8 conv "
           "cannot carry per-segment output scales.",
    reference="quamba_edge.ops.quant_causal_conv1d",
    impl=_node,
    kernel="quant_causal_conv1d.cu",
))


def _emit(x_q, x_scale, w_q, w_scale, b_q, b_scale, out_scale, conv_state, silu):
    bsz, _, c = x_q.shape
    k = w_q.shape[1]
    dev = x_q.device
    if b_q is None:
        b_q, b_scale = torch.zeros(c, dtype=torch.int8), torch.zeros(c)
    if conv_state is None:
        conv_state = torch.zeros(bsz, c, k - 1, dtype=torch.int8, device=dev)
    per = [_per_channel(n, s, c, dev) for n, s in (("x_scale", x_scale), ("w_scale", w_scale),
                                                     ("b_scale", b_scale), ("out_scale", out_scale))]
    return emit("QuantCausalConv1d", [x_q, per[0], w_q, per[1], b_q, per[2], per[3], conv_state],
                {"silu": int(silu)}, shapes=[x_q.shape, [bsz, c, k - 1]])
