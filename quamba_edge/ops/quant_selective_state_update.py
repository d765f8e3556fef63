"""QuantSelectiveStateUpdate: one decode token of the Mamba1 scan with an int8 SSM state that is
dequantized, updated in fp32 and requantized with the same static scale every step.

Spec: shared/spec/quamba.md B.4 ("Decode"), D.2 (``quant_sscan_update_triton``), pitfalls F.20 (y from
the fp32 state before requantization), F.21 (one state dtype: int8 [B, E, N]), F.22 (decode reuses the
prefill scales).
"""

# no registry record: not an ONNX node of its own. The QuantSelectiveScan node (and its plugin) runs this
# op for L = 1.

from __future__ import annotations

import torch

from ..models import ssm
from ._common import (
    Scale,
    dequant,
    dequant_A,
    dequant_state,
    one_token,
    requant_state,
    silu,
)
from .quant_selective_scan import mamba1_delta


def quant_selective_state_update(
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
    state: torch.Tensor,
    state_scale: Scale | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One token: ``h = exp(delta A) * h_prev + (delta u) B``; ``y = h . C + D u``; gate; requantize h.

    Inputs: the same order, scales and parameters as ``quant_selective_scan`` (the same static values),
    with the state required and no chunk size.
      state      int8 [B, E, N] with ``state_scale`` (fp32 scalar or broadcastable to [E, N]), or fp32
                 [B, E, N] with ``state_scale`` None.
      u_q, dt_q  int8 [B, E] or [B, 1, E].
      B_q, C_q   int8 [B, N] or [B, 1, N].
      z_q        int8 [B, E] / [B, 1, E] or None.
      A_log_q [E, N], D_q [E] | None, dt_bias_q [E] | None: int8.

    Outputs
      y          fp32, shaped like ``u_q`` ([B, E] or [B, 1, E]), computed from the fp32 updated state
                 (before requantization).
      new_state  int8 [B, E, N] ``clamp(round_half_even(h / state_scale), -128, 127)`` (fp32 when
                 ``state_scale`` is None).

    Arithmetic: step 1 of ``quant_selective_scan`` with ``h_prev = float32(state) * state_scale``, then
    ``h = h_prev * exp(delta * A) + (delta * u) * B`` per (e, n), ``y = sum_n h * C + D * u``,
    ``y = y * (z / (1 + exp(-z)))``. One step equals a one-token prefill with the same state.
    """
    squeeze = u_q.dim() == 2
    u = dequant(one_token(u_q, 2), u_scale)
    delta = mamba1_delta(one_token(dt_q, 2), dt_scale, dt_bias_q, dt_bias_scale)
    A = dequant_A(A_log_q, A_log_scale)
    B = dequant(one_token(B_q, 2), B_scale)
    C = dequant(one_token(C_q, 2), C_scale)
    D = dequant(D_q, D_scale)
    h_prev = dequant_state(state, state_scale)
    y, h = ssm.selective_state_update(h_prev, u, delta, A, B, C, D=D, z=None, dt_bias=None,
                                      dt_softplus=False)
    y = y.to(torch.float32)
    if z_q is not None:
        y = y * silu(dequant(one_token(z_q, 2), z_scale))
    if not squeeze:
        y = y.unsqueeze(1)
    return y, requant_state(h, state_scale)
