"""QuantSSDStateUpdate: one decode token of the Mamba2 recurrence with an int8 SSM state, requantized
with the static (grouped) state scales every step.

Spec: shared/spec/quamba.md C.6 (state scales), D.2 (``quamba2_sscan_update_triton``), pitfalls F.20
(y from the fp32 state before requantization), F.21 (one layout: int8 [B, H, P, N]), F.22 (the decode
reuses exactly the prefill scales).
"""

# no registry record: not an ONNX node of its own. The QuantSSD node (and its plugin) runs this op for L = 1.

from __future__ import annotations

import torch

from ..models import ssm
from ._common import Scale, dequant, dequant_A, dequant_state, one_token, requant_state
from .quant_ssd import group_scale, mamba2_delta


def quant_ssd_state_update(
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
    dt_limit: tuple[float, float],
    state: torch.Tensor,
    state_scale: Scale | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One token: ``S = exp(delta A) S_prev + (delta x) (outer) B``; ``y = S . C + D x``; requantize S.

    Inputs: the same order, meaning and scales as ``quant_ssd`` (no chunk size, the state required)
      x_q    int8 [B, H, P] or [B, 1, H, P];  dt_q int8 [B, H] or [B, 1, H];
      B_q, C_q int8 [B, G, N] or [B, 1, G, N];
      state  int8 [B, H, P, N] with ``state_scale`` [H, P, N] (or scalar), or fp32 with None.

    Outputs
      y          fp32 shaped like ``x_q`` ([B, H, P] or [B, 1, H, P]), from the fp32 updated state.
      new_state  int8 [B, H, P, N] ``clamp(round_half_even(S / state_scale), -128, 127)`` (fp32 when
                 ``state_scale`` is None).

    Arithmetic: step 1 of ``quant_ssd``, then ``S = S_prev * exp(delta * A) + ((delta * x) outer B)``,
    ``y = sum_n S * C + D * x``. One step equals a one-token prefill with the same state.
    """
    squeeze = x_q.dim() == 3
    x = dequant(one_token(x_q, 3), x_scale)
    delta = mamba2_delta(one_token(dt_q, 2), dt_scale, dt_bias, dt_limit)
    A = dequant_A(A_log_q, A_log_scale)
    B = dequant(one_token(B_q, 3), group_scale(B_scale, 2))
    C = dequant(one_token(C_q, 3), group_scale(C_scale, 2))
    D = dequant(D_q, D_scale)
    s_prev = dequant_state(state, state_scale)
    y, s = ssm.ssd_state_update(s_prev, x, delta, A, B, C, D=D)
    y = y.to(torch.float32)
    if not squeeze:
        y = y.unsqueeze(1)
    return y, requant_state(s, state_scale)
