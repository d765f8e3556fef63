"""QuantSSD: Mamba2 chunked SSD prefill with int8 inputs (grouped Quamba2 scales) and an int8 (or float)
SSM state.

Spec: shared/spec/quamba.md A.3 steps 3-6, C.3 (x scales per (SSD group, head group, channel group)),
C.5 (B/C per SSD group), C.6 (state scales G x 4 x 4 x N), C.7 (dt_bias stays float), C.10 (SSD math
is float after in-kernel dequantization), D.2 (``quant_ssd_combined``), pitfalls F.19, F.20, F.26.
"""

# registry record: RECORD at the end of this module

from __future__ import annotations

import torch

from ..models import ssm
from ._common import (
    Scale,
    dequant,
    dequant_A,
    dequant_state,
    f32,
    requant_state,
    softplus20,
)
from .registry import Attr, OpRecord, Port, emit, exporting, register

_INF = float("inf")


def mamba2_delta(dt_q: torch.Tensor, dt_scale: Scale, dt_bias: torch.Tensor,
                 dt_limit: tuple[float, float]) -> torch.Tensor:
    """``clamp(softplus20(float32(dt_q) * dt_scale + float32(dt_bias)), lo, hi)`` (fp32, [..., H])."""
    dt = dequant(dt_q, dt_scale) + dt_bias.to(torch.float32)
    lo, hi = float(dt_limit[0]), float(dt_limit[1])
    return torch.clamp(softplus20(dt), min=lo, max=hi)


def group_scale(scale: Scale, ndim_tail: int) -> torch.Tensor:
    """A per-SSD-group scale [G] (or scalar) shaped to broadcast over [..., G, N] (``ndim_tail`` = 2)."""
    s = f32(scale)
    return s if s.dim() == 0 else s.reshape(*s.shape, *([1] * (ndim_tail - 1)))


def quant_ssd(
    x_q: torch.Tensor,
    x_scale: Scale,
    dt_q: torch.Tensor,
    dt_scale: Scale,
    dt_bias: torch.Tensor,
    A_log_q: torch.Tensor,
    A_log_scale: Scale,
    B_q: torch.Tensor,
    B_scale: Scale,
    C_q: torch.Tensor,
    C_scale: Scale,
    D_q: torch.Tensor | None,
    D_scale: Scale | None,
    chunk_size: int,
    dt_limit: tuple[float, float] = (0.0, _INF),
    state_in: torch.Tensor | None = None,
    state_scale: Scale | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mamba2 SSD over L tokens, continuing from ``state_in``.

    Inputs
      x_q         int8 [B, L, H, P]: SSM input (conv + SiLU output, x segment).
      x_scale     fp32 [H, P]: per channel, expanded from the G x 4 x 4 sort-and-cluster table
                  (``scales.expand_head_channel_scales``); a scalar for per-tensor recipes.
      dt_q        int8 [B, L, H]: raw dt (in_proj's dt segment, before bias and softplus).
      dt_scale    fp32 scalar (``dt_act``).
      dt_bias     float [H]: NOT quantized in Mamba2 (spec C.7); used in fp32.
      A_log_q     int8 [H], A_log_scale fp32 scalar: ``A = -exp(s * q)``.
      B_q, C_q    int8 [B, L, G, N]; B_scale, C_scale fp32 [G] (one per SSD group) or scalar.
      D_q         int8 [H] or None; D_scale fp32 scalar.
      chunk_size  SSD chunk length (256; 128 for Mamba2-8B): affects fp32 rounding only.
      dt_limit    (lo, hi) clamp of delta after the softplus; default (0, inf).
      state_in    int8 [B, H, P, N] with ``state_scale``, fp32 [B, H, P, N] with ``state_scale`` None, or
                  None = zeros.
      state_scale fp32 [H, P, N] (expanded from G x 4 x 4 x N with
                  ``scales.expand_head_channel_state_scales``) or a scalar, or None (float state).

    Outputs
      y          fp32 [B, L, H, P] (kernel: fp16). It includes ``D * x`` and no z gate (Mamba2's gate is
                 in QuantGatedRMSNorm).
      state_out  int8 [B, H, P, N] ``clamp(round_half_even(S_L / state_scale), -128, 127)``, or fp32
                 when ``state_scale`` is None.

    Arithmetic (fp32), head h uses SSD group ``g = h // (H / G)``
      1. ``x = float32(x_q) * x_scale[h, p]``; ``B = float32(B_q) * B_scale[g]``, C likewise;
         ``dt = float32(dt_q) * dt_scale + dt_bias[h]``; ``delta = dt if dt > 20 else log1p(exp(dt))``,
         then ``clamp(delta, lo, hi)``; ``A = -exp(float32(A_log_q) * A_log_scale)``;
         ``D = float32(D_q) * D_scale``; ``S_0 = float32(state_in) * state_scale``.
      2. ``S_t[h] = exp(delta_t[h] * A[h]) * S_{t-1}[h] + (delta_t[h] * x_t[h]) (outer) B_t[g]`` (P x N);
         ``y_t[h] = S_t[h] . C_t[g] + D[h] * x_t[h]``. Any chunked evaluation (chunk_size) is allowed;
         the state is not requantized inside the sequence.
      3. ``state_out = quantize(S_L)`` with the per-(h, p, n) scale.
    Implemented by dequantizing and calling the FP reference ``quamba_edge.models.ssm.ssd_chunked``
    (which adds D).
    """
    if exporting():  # torch.onnx.export: one custom node (RECORD below)
        return _emit(x_q, x_scale, dt_q, dt_scale, dt_bias, A_log_q, A_log_scale, B_q, B_scale, C_q, C_scale,
                     D_q, D_scale, chunk_size, dt_limit, state_in, state_scale)
    if x_q.dim() != 4:
        raise ValueError(f"x_q must be [B, L, H, P], got {tuple(x_q.shape)}")
    x = dequant(x_q, x_scale)
    delta = mamba2_delta(dt_q, dt_scale, dt_bias, dt_limit)
    A = dequant_A(A_log_q, A_log_scale)
    B = dequant(B_q, group_scale(B_scale, 2))
    C = dequant(C_q, group_scale(C_scale, 2))
    D = dequant(D_q, D_scale)
    s0 = dequant_state(state_in, state_scale)
    y, s_last = ssm.ssd_chunked(x, delta, A, B, C, chunk_size, D=D, initial_state=s0)
    return y.to(torch.float32), requant_state(s_last, state_scale)


# ---- registry record ---------------------------------------------------------------------------


def _node(x_q, x_scale, dt_q, dt_scale, dt_bias, A_log_q, A_log_scale, B_q, B_scale, C_q, C_scale, D_q, D_scale,
          state_in, state_scale, *, chunk_size: int, dt_limit_lo: float, dt_limit_hi: float, **_: object):
    """L = 1 takes the decode update (as the plugin does); a float state ignores ``state_scale``."""
    sc = state_scale if state_in.dtype == torch.int8 else None
    lim = (dt_limit_lo, dt_limit_hi)
    if x_q.shape[1] == 1:
        from .quant_ssd_state_update import quant_ssd_state_update

        y, s = quant_ssd_state_update(x_q[:, 0], x_scale, dt_q[:, 0], dt_scale, dt_bias, A_log_q, A_log_scale,
                                      B_q[:, 0], B_scale, C_q[:, 0], C_scale, D_q, D_scale, lim, state_in, sc)
        y = y.unsqueeze(1)
    else:
        y, s = quant_ssd(x_q, x_scale, dt_q, dt_scale, dt_bias, A_log_q, A_log_scale, B_q, B_scale, C_q, C_scale,
                         D_q, D_scale, chunk_size, lim, state_in, sc)
    return y, s.to(state_in.dtype)


_S = "float32"
RECORD = register(OpRecord(
    name="QuantSSD",
    inputs=(Port("x_q", "int8", "[B, L, H, P]"), Port("x_scale", _S, "[H, P]"),
            Port("dt_q", "int8", "[B, L, H]"), Port("dt_scale", _S, "[]"), Port("dt_bias", _S, "[H]"),
            Port("A_log_q", "int8", "[H]"), Port("A_log_scale", _S, "[]"),
            Port("B_q", "int8", "[B, L, G, N]"), Port("B_scale", _S, "[G]"),
            Port("C_q", "int8", "[B, L, G, N]"), Port("C_scale", _S, "[G]"),
            Port("D_q", "int8", "[H] (zeros when absent)"), Port("D_scale", _S, "[]"),
            Port("state_in", "S", "[B, H, P, N]"),
            Port("state_scale", _S, "[H, P, N] (int8 state); [] ignored (float state)")),
    outputs=(Port("y", "T", "[B, L, H, P]"), Port("state_out", "S", "[B, H, P, N]")),
    attrs=(Attr("chunk_size", "int", 256), Attr("dt_limit_lo", "float", 0.0),
           Attr("dt_limit_hi", "float", float("inf"))),
    type_vars={"S": ("int8", "T")},
    reason="Mamba2's SSD is a chunked scan with state passing between chunks: not expressible in ONNX "
           "without a length-dependent loop. One node serves prefill and L = 1 decode (the plugin runs "
           "quant_ssd_state_update.cu for L = 1).",
    reference="quamba_edge.ops.quant_ssd (+ quant_ssd_state_update for L = 1)",
    impl=_node,
    kernel="quant_ssd.cu",
))


def _emit(x_q, x_scale, dt_q, dt_scale, dt_bias, A_log_q, A_log_scale, B_q, B_scale, C_q, C_scale, D_q, D_scale,
          chunk_size, dt_limit, state_in, state_scale):
    bsz, _, h, p = x_q.shape
    g, n = B_q.shape[-2], B_q.shape[-1]
    if D_q is None:
        D_q, D_scale = torch.zeros(h, dtype=torch.int8), 0.0
    int8_state = state_scale is not None
    if state_in is None:
        state_in = torch.zeros(bsz, h, p, n, dtype=torch.int8 if int8_state else torch.float32, device=x_q.device)
    per_group = lambda s: f32(s).expand(g)
    state_scale = f32(state_scale).expand(h, p, n) if int8_state else 1.0
    return emit("QuantSSD",
                [x_q, f32(x_scale).expand(h, p), dt_q, dt_scale, dt_bias, A_log_q, A_log_scale, B_q,
                 per_group(B_scale), C_q, per_group(C_scale), D_q, D_scale, state_in, state_scale],
                {"chunk_size": int(chunk_size), "dt_limit_lo": float(dt_limit[0]),
                 "dt_limit_hi": float(dt_limit[1])},
                shapes=[x_q.shape, [bsz, h, p, n]], binding={"S": "int8" if int8_state else "T"})
