"""QuantSelectiveScan: Mamba1 prefill selective scan with int8 inputs and an int8 (or float) SSM state.

Spec: shared/spec/quamba.md A.2 steps 5-9, B.1 (which tensors are int8, which scales are shared), B.4
(the kernel: dequantize -> fp32 recurrence -> quantize the final state), C.10 (the recurrence is float
math, the "8-bit SSM" is I/O quantization), pitfalls F.19 (dt quantized before bias and softplus;
``A = -exp(s * q)``), F.20 (int8 state).
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
    requant_state,
    silu,
    softplus20,
)
from .registry import OpRecord, Port, emit, exporting, register


def mamba1_delta(dt_q: torch.Tensor, dt_scale: Scale, dt_bias_q: torch.Tensor | None,
                 dt_bias_scale: Scale | None) -> torch.Tensor:
    """``softplus20(float32(dt_q) * dt_scale + float32(dt_bias_q) * dt_bias_scale)`` (fp32)."""
    dt = dequant(dt_q, dt_scale)
    if dt_bias_q is not None:
        dt = dt + dequant(dt_bias_q, dt_bias_scale)
    return softplus20(dt)


def quant_selective_scan(
    u_q: torch.Tensor,
    u_scale: Scale,
    dt_q: torch.Tensor,
    dt_scale: Scale,
    A_log_q: torch.Tensor,
    A_log_scale: Scale,
    B_q: torch.Tensor,
    B_scale: Scale,
    C_q: torch.Tensor,
    C_scale: Scale,
    D_q: torch.Tensor | None,
    D_scale: Scale | None,
    z_q: torch.Tensor | None,
    z_scale: Scale | None,
    dt_bias_q: torch.Tensor | None,
    dt_bias_scale: Scale | None,
    state_in: torch.Tensor | None = None,
    state_scale: Scale | None = None,
    chunk_size: int = 16,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mamba1 selective scan over L tokens, continuing from ``state_in``.

    Inputs (every ``*_scale`` is an fp32 per-tensor scalar: Mamba1 quantizes everything per tensor)
      u_q        int8 [B, L, E]: SSM input x (conv + SiLU output), scale ``x_proj:input``.
      dt_q       int8 [B, L, E]: dt_proj output *without* its bias (spec F.19).
      A_log_q    int8 [E, N]: A_log quantized per tensor (absmax of A_log, not of A).
      B_q, C_q   int8 [B, L, N]: input-dependent B and C (one scale shared with dt_proj's input).
      D_q        int8 [E] or None.
      z_q        int8 [B, L, E] or None (no gate).
      dt_bias_q  int8 [E] or None (Mamba1 keeps dt_bias in int8).
      state_in   int8 [B, E, N] (with ``state_scale``), fp32 [B, E, N] (``state_scale`` None: the fp16
                 state cache of the paper-faithful v1 recipe), or None = zeros (start of a sequence).
      state_scale  fp32 scalar (or anything broadcastable to [E, N]), or None.
      chunk_size tokens per chunk of the reference's two-level scan: a speed knob, the result does not
                 depend on it beyond fp32 rounding (the kernel's own tile length is its business; it must
                 not requantize the state between tiles, spec B.4).

    Outputs
      y          fp32 [B, L, E] (the kernel writes fp16).
      state_out  int8 [B, E, N] = ``clamp(round_half_even(h_L / state_scale), -128, 127)``, or fp32
                 [B, E, N] when ``state_scale`` is None.

    Arithmetic (fp32)
      1. Dequantize: ``v = float32(v_q) * v_scale`` for u, B, C, D, z, dt_bias and the state;
         ``dt = dt_q * dt_scale + dt_bias_q * dt_bias_scale``; ``delta = dt if dt > 20 else
         log1p(exp(dt))``; ``A = -exp(A_log_q * A_log_scale)``.
      2. Recurrence per (e, n): ``h_t = exp(delta_t * A) * h_{t-1} + (delta_t * u_t) * B_t`` with
         ``h_0 = state_in`` (association order free: a parallel scan is fine, the state is never
         requantized inside the sequence).
      3. ``y_t = sum_n h_t[n] * C_t[n] + D * u_t``; with a gate ``y_t = y_t * (z_t / (1 + exp(-z_t)))``.
      4. ``state_out = quantize(h_L)`` as above.
    Implemented by dequantizing and calling the FP reference ``quamba_edge.models.ssm.selective_scan``
    (softplus done here, D applied there, the z gate applied here).
    """
    if exporting():  # torch.onnx.export: one custom node (RECORD below)
        return _emit(u_q, u_scale, dt_q, dt_scale, A_log_q, A_log_scale, B_q, B_scale, C_q, C_scale, D_q,
                     D_scale, z_q, z_scale, dt_bias_q, dt_bias_scale, state_in, state_scale)
    u = dequant(u_q, u_scale)
    delta = mamba1_delta(dt_q, dt_scale, dt_bias_q, dt_bias_scale)
    A = dequant_A(A_log_q, A_log_scale)
    B = dequant(B_q, B_scale)
    C = dequant(C_q, C_scale)
    D = dequant(D_q, D_scale)
    h0 = dequant_state(state_in, state_scale)
    y, h_last = ssm.selective_scan(u, delta, A, B, C, D=D, z=None, delta_bias=None,
                                   delta_softplus=False, initial_state=h0, chunk_size=chunk_size)
    y = y.to(torch.float32)
    if z_q is not None:
        y = y * silu(dequant(z_q, z_scale))
    return y, requant_state(h_last, state_scale)


# ---- registry record ---------------------------------------------------------------------------


def _node(u_q, u_scale, dt_q, dt_scale, A_log_q, A_log_scale, B_q, B_scale, C_q, C_scale, D_q, D_scale, z_q,
          z_scale, dt_bias_q, dt_bias_scale, state_in, state_scale, **_: object):
    """L = 1 takes the decode update (as the plugin does); a float state ignores ``state_scale``."""
    sc = state_scale if state_in.dtype == torch.int8 else None
    if u_q.shape[1] == 1:
        from .quant_selective_state_update import quant_selective_state_update

        y, s = quant_selective_state_update(u_q[:, 0], u_scale, dt_q[:, 0], dt_scale, A_log_q, A_log_scale,
                                            B_q[:, 0], B_scale, C_q[:, 0], C_scale, D_q, D_scale, z_q[:, 0],
                                            z_scale, dt_bias_q, dt_bias_scale, state_in, sc)
        y = y.unsqueeze(1)
    else:
        y, s = quant_selective_scan(u_q, u_scale, dt_q, dt_scale, A_log_q, A_log_scale, B_q, B_scale, C_q,
                                    C_scale, D_q, D_scale, z_q, z_scale, dt_bias_q, dt_bias_scale, state_in, sc)
    return y, s.to(state_in.dtype)


_S = "float32"
RECORD = register(OpRecord(
    name="QuantSelectiveScan",
    inputs=(Port("u_q", "int8", "[B, L, E]"), Port("u_scale", _S, "[]"),
            Port("dt_q", "int8", "[B, L, E]"), Port("dt_scale", _S, "[]"),
            Port("A_log_q", "int8", "[E, N]"), Port("A_log_scale", _S, "[]"),
            Port("B_q", "int8", "[B, L, N]"), Port("B_scale", _S, "[]"),
            Port("C_q", "int8", "[B, L, N]"), Port("C_scale", _S, "[]"),
            Port("D_q", "int8", "[E] (zeros when absent)"), Port("D_scale", _S, "[]"),
            Port("z_q", "int8", "[B, L, E]"), Port("z_scale", _S, "[]"),
            Port("dt_bias_q", "int8", "[E] (zeros when absent)"), Port("dt_bias_scale", _S, "[]"),
            Port("state_in", "S", "[B, E, N]"), Port("state_scale", _S, "[] (ignored for a float state)")),
    outputs=(Port("y", "T", "[B, L, E]"), Port("state_out", "S", "[B, E, N]")),
    attrs=(),
    type_vars={"S": ("int8", "T")},
    reason="The selective scan is a recurrence over time: no ONNX op expresses it without unrolling the "
           "time loop (which fixes the length). One node serves prefill and L = 1 decode (the plugin runs "
           "the state-update kernel, quant_selective_state_update.cu, for L = 1).",
    reference="quamba_edge.ops.quant_selective_scan (+ quant_selective_state_update for L = 1)",
    impl=_node,
    kernel="quant_selective_scan.cu",
))


def _emit(u_q, u_scale, dt_q, dt_scale, A_log_q, A_log_scale, B_q, B_scale, C_q, C_scale, D_q, D_scale, z_q,
          z_scale, dt_bias_q, dt_bias_scale, state_in, state_scale):
    bsz, _, e = u_q.shape
    n = A_log_q.shape[1]
    if z_q is None:
        raise ValueError("export needs the Mamba1 gate z (every Mamba1 layer has one)")
    zeros = torch.zeros(e, dtype=torch.int8)
    D_q, D_scale = (zeros, 0.0) if D_q is None else (D_q, D_scale)
    dt_bias_q, dt_bias_scale = (zeros, 0.0) if dt_bias_q is None else (dt_bias_q, dt_bias_scale)
    int8_state = state_scale is not None
    if state_in is None:
        state_in = torch.zeros(bsz, e, n, dtype=torch.int8 if int8_state else torch.float32, device=u_q.device)
    return emit("QuantSelectiveScan",
                [u_q, u_scale, dt_q, dt_scale, A_log_q, A_log_scale, B_q, B_scale, C_q, C_scale, D_q, D_scale,
                 z_q, z_scale, dt_bias_q, dt_bias_scale, state_in, 1.0 if state_scale is None else state_scale],
                {}, shapes=[u_q.shape, [bsz, e, n]], binding={"S": "int8" if int8_state else "T"})
