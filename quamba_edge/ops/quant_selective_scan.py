"""QuantSelectiveScan: Mamba1 prefill selective scan with int8 inputs and an int8 (or float) SSM state.

Spec: shared/spec/quamba.md A.2 steps 5-9, B.1 (which tensors are int8, which scales are shared), B.4
(the kernel: dequantize -> fp32 recurrence -> quantize the final state), C.10 (the recurrence is float
math, the "8-bit SSM" is I/O quantization), pitfalls F.19 (dt quantized before bias and softplus;
``A = -exp(s * q)``), F.20 (int8 state).
"""

# registry record: added with the export issue

from __future__ import annotations

from typing import Optional

import torch

from ..models import ssm
from ._common import Scale, dequant, dequant_A, dequant_state, requant_state, silu, softplus20


def mamba1_delta(dt_q: torch.Tensor, dt_scale: Scale, dt_bias_q: Optional[torch.Tensor],
                 dt_bias_scale: Optional[Scale]) -> torch.Tensor:
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
    D_q: Optional[torch.Tensor],
    D_scale: Optional[Scale],
    z_q: Optional[torch.Tensor],
    z_scale: Optional[Scale],
    dt_bias_q: Optional[torch.Tensor],
    dt_bias_scale: Optional[Scale],
    state_in: Optional[torch.Tensor] = None,
    state_scale: Optional[Scale] = None,
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
