"""Shared numerics of the reference ops (private).

Everything here is written out explicitly so that each op's docstring can name the exact float
operations a CUDA kernel must reproduce:

* ``quantize_int8(y, s)``  ``clamp(round_half_even(y / s), -128, 127)`` in fp32, then int8. The division
  is a true fp32 division (CUDA: ``__fdiv_rn`` / ``/`` without fast-math); rounding is half to even
  (``rintf`` / ``__float2int_rn``); the clamp is always applied (spec pitfall F.12).
* ``int_matmul(a_q, b_q)``  exact integer dot products of int8 (or small integer) operands, computed in
  float64 (exact while |sum| < 2^53) and returned as int64. Never fp32: fp32 is inexact past 2^24.
* ``silu(y)``  ``y / (1 + exp(-y))`` in fp32.
* ``softplus20(x)``  ``x if x > 20 else log1p(exp(x))`` in fp32 (the threshold of the selective-scan and
  SSD kernels).
"""

from __future__ import annotations

from typing import Optional, Union

import torch

Scale = Union[float, torch.Tensor]

INT8_MIN = -128
INT8_MAX = 127


def f32(x: Scale) -> torch.Tensor:
    """``x`` as an fp32 tensor (python floats become 0-d tensors)."""
    if isinstance(x, torch.Tensor):
        return x.to(torch.float32)
    return torch.tensor(float(x), dtype=torch.float32)


def quantize_int8(y: torch.Tensor, scale: Scale) -> torch.Tensor:
    """``clamp(round_half_even(y / scale), -128, 127)`` as int8; ``y`` and ``scale`` in fp32."""
    q = torch.round(y.to(torch.float32) / f32(scale).to(y.device))
    return torch.clamp(q, INT8_MIN, INT8_MAX).to(torch.int8)


def int_matmul(a_q: torch.Tensor, b_q: torch.Tensor) -> torch.Tensor:
    """Exact ``a_q @ b_q`` for integer-valued operands ([..., K] @ [K, N]) as int64.

    float64 holds every partial sum exactly while |sum| < 2^53 (int8 x int8 needs K < 2^39).
    """
    return torch.matmul(a_q.to(torch.float64), b_q.to(torch.float64)).to(torch.int64)


def acc_to_f32(acc: torch.Tensor) -> torch.Tensor:
    """int32/int64 accumulator to fp32, round to nearest even (CUDA ``__int2float_rn``)."""
    return acc.to(torch.float64).to(torch.float32)


def silu(y: torch.Tensor) -> torch.Tensor:
    """``y / (1 + exp(-y))`` in fp32."""
    y = y.to(torch.float32)
    return y / (1.0 + torch.exp(-y))


def softplus20(x: torch.Tensor) -> torch.Tensor:
    """``x`` where ``x > 20`` else ``log1p(exp(x))``, fp32."""
    x = x.to(torch.float32)
    return torch.where(x > 20.0, x, torch.log1p(torch.exp(torch.clamp(x, max=20.0))))


def check_int8(name: str, t: torch.Tensor) -> None:
    if t.dtype != torch.int8:
        raise TypeError(f"{name} must be int8, got {t.dtype}")


def check_codes4(name: str, t: torch.Tensor) -> None:
    if t.dtype != torch.uint8:
        raise TypeError(f"{name} must hold unpacked int4 codes as uint8 (0..15), got {t.dtype}")


def dequant(q: Optional[torch.Tensor], scale: Optional[Scale]) -> Optional[torch.Tensor]:
    """``float32(q) * float32(scale)`` (None stays None; scale broadcasts over q's trailing dims)."""
    if q is None:
        return None
    return q.to(torch.float32) * f32(scale).to(q.device)


def dequant_state(state: Optional[torch.Tensor], state_scale: Optional[Scale]) -> Optional[torch.Tensor]:
    """int8 state x scale, or a float state as fp32 when ``state_scale`` is None."""
    if state is None:
        return None
    if state_scale is None:
        if not state.is_floating_point():
            raise TypeError("an integer state needs a state_scale")
        return state.to(torch.float32)
    if state.dtype != torch.int8:
        raise TypeError(f"with a state_scale the state must be int8, got {state.dtype}")
    return dequant(state, state_scale)


def requant_state(state: torch.Tensor, state_scale: Optional[Scale]) -> torch.Tensor:
    """fp32 state -> ``clamp(round_half_even(h / state_scale), -128, 127)`` int8 (fp32 when no scale)."""
    if state_scale is None:
        return state.to(torch.float32)
    return quantize_int8(state, f32(state_scale).to(state.device))


def dequant_A(A_log_q: torch.Tensor, A_log_scale: Scale) -> torch.Tensor:
    """``A = -exp(float32(A_log_q) * A_log_scale)`` (fp32)."""
    return -torch.exp(dequant(A_log_q, A_log_scale))


def one_token(t: Optional[torch.Tensor], rank: int) -> Optional[torch.Tensor]:
    """Accept one token as [B, C] or [B, 1, C]; return [B, C]."""
    if t is None or t.dim() == rank:
        return t
    if t.dim() == rank + 1 and t.shape[1] == 1:
        return t[:, 0]
    raise ValueError(f"expected one token ([B, ...] or [B, 1, ...]), got shape {tuple(t.shape)}")
