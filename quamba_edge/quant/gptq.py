"""GPTQ for one linear layer, and RTN with the same grids (spec C.8 "GPTQ", pitfalls 4, 5, 15, 28).

Recipe (spec C.8):

* Hessian ``H = (2/n)·Σ_t x_t x_tᵀ`` over all calibration tokens ``n`` (:meth:`GPTQ.add_batch`,
  accumulated as a running mean so batches of any size can be added).
* Dead input columns (``H[j, j] == 0``): ``H[j, j] ← 1`` and ``W[:, j] ← 0``.
* Damping: ``H += damp · mean(diag H) · I`` with ``damp = 0.01`` (mean taken after the dead-column fix).
* ``Hinv`` = upper Cholesky factor of ``H⁻¹``. Natural column order (no act-order), no static groups.
* Blocks of ``block_size`` (default = ``group_size`` = 128) columns; column-wise: quantize, error
  ``e = (w − ŵ) / Hinv[j, j]``, update the remaining columns of the block with ``e · Hinv[j, j:]``;
  after the block, propagate the block's errors to all later columns.
* Grids (same as :mod:`.quantize`, used by :func:`rtn_quantize` too):

  - 4 bits, group mode: each group's scale is computed when the first column of the group is reached,
    from the ERROR-COMPENSATED weights of that group: ``s = max|W_row,group| · 2/15``, offset-binary
    codes ``clamp(round(w/s) + 8, 0, 15)``.
  - 4 bits, per-channel mode (``in_features <= group_size`` or ``group_size == -1``, spec C.8): the
    per-channel branch ``s = max|W_row| / 7`` computed once, before the sweep, from the (dead-column
    zeroed) weights; codes ``clamp(round(w/s) + 8, 0, 15)``. Choice: we use the per-channel grid (not the
    /7.5 group grid) here so that GPTQ's output is exactly representable in the per-channel kernel
    format (no second rounding at packing time).
  - 8 bits: symmetric ``s = absmax/127``, signed int8 codes ``clamp(round(w/s), −128, 127)``; per group
    (scale at group start, as above) or per channel.

* ``in_features`` need not be a multiple of ``group_size``: the last group is shorter.

Outputs (:class:`GPTQResult`): fake-quantized fp32 weight ``[out, in]``, fp32 scales ``[out, n_groups]``
(``n_groups == 1`` in per-channel mode; the effective ``group_size`` is then ``in_features``), and the
integer codes (uint8 offset-binary for 4 bits, int8 signed for 8 bits) such that
``weight == dequantize(codes)`` exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .quantize import (
    W4_OFFSET,
    expand_group_scales,
    num_groups,
    qrange,
    resolve_group_size,
    round_half_even,
    scale_from_amax,
)

__all__ = ["GPTQResult", "GPTQ", "rtn_quantize", "gptq_quantize"]


@dataclass(frozen=True)
class GPTQResult:
    """``weight`` fp32 ``[out, in]`` (fake-quantized); ``scales`` fp32 ``[out, n_groups]``; ``codes``
    (uint8 offset-binary for 4 bits, int8 for 8 bits); ``bits``; effective ``group_size``."""

    weight: Tensor
    scales: Tensor
    codes: Tensor
    bits: int
    group_size: int

    @property
    def offset(self) -> int:
        return W4_OFFSET if self.bits == 4 else 0

    def dequantize(self) -> Tensor:
        """``(codes − offset) · scale`` in fp32 (equals ``weight``)."""
        s = expand_group_scales(self.scales, self.group_size, self.codes.shape[1])
        return (self.codes.to(torch.float32) - self.offset) * s


class _Grid:
    """Scale rule + encode/decode for one (bits, per-channel?) combination."""

    def __init__(self, bits: int, per_channel: bool) -> None:
        if bits not in (4, 8):
            raise ValueError(f"bits must be 4 or 8, got {bits}")
        self.bits = bits
        if bits == 4:
            self.qmax = 7.0 if per_channel else 7.5
            self.lo, self.hi, self.offset = 0, 15, W4_OFFSET
            self.code_dtype = torch.uint8
        else:
            self.qmax = 127.0
            self.lo, self.hi = qrange(8)
            self.offset = 0
            self.code_dtype = torch.int8

    def scale(self, w: Tensor) -> Tensor:
        """Per-row scale ``[out]`` (fp32) of the columns in ``w``."""
        return scale_from_amax(w.abs().amax(dim=1), qmax=self.qmax)

    def encode(self, w: Tensor, s: Tensor) -> Tensor:
        """Codes as float (same dtype as ``w``)."""
        return round_half_even(w / s).add_(self.offset).clamp_(self.lo, self.hi)

    def decode(self, c: Tensor, s: Tensor) -> Tensor:
        return (c - self.offset) * s


def rtn_quantize(weight: Tensor, bits: int = 4, group_size: int = 128) -> GPTQResult:
    """Round-to-nearest with exactly the grids GPTQ uses (module docstring). fp32 computation."""
    if weight.dim() != 2:
        raise ValueError(f"weight must be [out, in], got {tuple(weight.shape)}")
    w = weight.detach().to(torch.float32)
    in_f = w.shape[1]
    gs = resolve_group_size(in_f, group_size)
    grid = _Grid(bits, per_channel=gs == in_f)
    scales = torch.stack([grid.scale(w[:, a:a + gs]) for a in range(0, in_f, gs)], dim=1)
    s_full = expand_group_scales(scales, gs, in_f)
    codes = grid.encode(w.clone(), s_full)
    return GPTQResult(grid.decode(codes, s_full), scales, codes.to(grid.code_dtype), bits, gs)


class GPTQ:
    """Accumulates the Hessian of one linear layer and runs GPTQ on its weight ``[out, in]``.

    ``hessian_dtype`` (default fp32) is the dtype of ``H`` and of the whole solve.
    """

    def __init__(self, weight: Tensor, hessian_dtype: torch.dtype = torch.float32) -> None:
        if weight.dim() != 2:
            raise ValueError(f"weight must be [out, in], got {tuple(weight.shape)}")
        self.weight = weight.detach()
        self.in_features = int(weight.shape[1])
        self.dtype = hessian_dtype
        self.H = torch.zeros(self.in_features, self.in_features, dtype=hessian_dtype,
                             device=weight.device)
        self.nsamples = 0  # number of tokens seen

    def add_batch(self, x: Tensor) -> None:
        """Add calibration inputs ``x [..., in_features]`` (every leading index is one token)."""
        if x.shape[-1] != self.in_features:
            raise ValueError(f"input last dim {x.shape[-1]} != in_features {self.in_features}")
        xt = x.detach().reshape(-1, self.in_features).to(self.H.device, self.dtype)
        t = xt.shape[0]
        if t == 0:
            return
        self.H *= self.nsamples / (self.nsamples + t)
        self.nsamples += t
        xt = xt * math.sqrt(2.0 / self.nsamples)
        self.H += xt.T @ xt

    def quantize(self, bits: int = 4, group_size: int = 128, damp: float = 0.01,
                 block_size: int | None = None) -> GPTQResult:
        """Run GPTQ (module docstring). ``block_size`` defaults to the effective group size."""
        if self.nsamples == 0:
            raise RuntimeError("GPTQ.quantize: no calibration data (call add_batch first)")
        W = self.weight.to(self.dtype).clone()
        out_f, in_f = W.shape
        gs = resolve_group_size(in_f, group_size)
        per_channel = gs == in_f
        grid = _Grid(bits, per_channel)
        bs = int(block_size or gs)
        if bs <= 0:
            raise ValueError("block_size must be positive")

        H = self.H.clone()
        dead = torch.diag(H) == 0
        H[dead, dead] = 1
        W[:, dead] = 0
        H += damp * torch.mean(torch.diag(H)) * torch.eye(in_f, dtype=H.dtype, device=H.device)
        try:
            L = torch.linalg.cholesky(H)
            Hinv = torch.linalg.cholesky(torch.cholesky_inverse(L), upper=True)
        except RuntimeError as e:  # torch raises torch.linalg.LinAlgError (a RuntimeError)
            raise RuntimeError(f"GPTQ: Hessian is not positive definite even with damp={damp}; "
                               f"increase damp or add calibration data") from e

        ng = num_groups(in_f, gs)
        scales = torch.zeros(out_f, ng, dtype=torch.float32, device=W.device)
        codes = torch.zeros(out_f, in_f, dtype=self.dtype, device=W.device)
        Q = torch.zeros_like(W)
        if per_channel:
            scales[:, 0] = grid.scale(W)
        cur_s = scales[:, 0].to(self.dtype)

        for i1 in range(0, in_f, bs):
            i2 = min(i1 + bs, in_f)
            W1 = W[:, i1:i2].clone()
            Err1 = torch.zeros_like(W1)
            Hinv1 = Hinv[i1:i2, i1:i2]
            for i in range(i2 - i1):
                col = i1 + i
                if not per_channel and col % gs == 0:
                    stop = min(col + gs, in_f)
                    group_w = torch.cat([W1[:, i:], W[:, i2:]], dim=1)[:, :stop - col]
                    scales[:, col // gs] = grid.scale(group_w)
                    cur_s = scales[:, col // gs].to(self.dtype)
                w = W1[:, i]
                c = grid.encode(w.clone(), cur_s)
                q = grid.decode(c, cur_s)
                codes[:, col] = c
                Q[:, col] = q
                err = (w - q) / Hinv1[i, i]
                W1[:, i:] -= err[:, None] * Hinv1[i, i:][None, :]
                Err1[:, i] = err
            W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:]

        codes_t = codes.to(grid.code_dtype)
        s_full = expand_group_scales(scales, gs, in_f)
        weight_fq = grid.decode(codes_t.to(torch.float32), s_full)
        return GPTQResult(weight_fq, scales, codes_t, bits, gs)


def gptq_quantize(weight: Tensor, inputs: Tensor, bits: int = 4, group_size: int = 128,
                  damp: float = 0.01) -> GPTQResult:
    """Convenience: one-shot GPTQ of ``weight`` on calibration ``inputs [..., in_features]``."""
    g = GPTQ(weight)
    g.add_batch(inputs)
    return g.quantize(bits=bits, group_size=group_size, damp=damp)
