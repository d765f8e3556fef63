"""Symmetric integer quantization primitives (the numeric oracle for kernels and ONNX ops).

Contract (docs/CONTRACTS.md, spec §0 "Conventions", §C.8, §C.9, pitfalls 12/14/15/17):

* Symmetric, no zero points: ``q = clamp(round_half_even(x / s), qmin, qmax)``, ``x̂ = s·q``.
* Round half to even everywhere (``torch.round``); every quantizer clamps (pitfall 12).
* Scales are fp32. The division ``x / s`` is done in fp32 (float64 inputs stay float64, which tests use
  to build exact references).
* A scale is derived from an amax with :func:`scale_from_amax`: ``max(amax, MIN_AMAX) / qmax``. An
  all-zero tensor therefore gets the positive scale ``MIN_AMAX / qmax`` (never 0, never negative, never
  NaN); its codes are all 0, so the dequantized tensor is exactly 0. Non-finite amax raises ``ValueError``.

Grids implemented here:

* "sym" (W8, A8, and signed b-bit in general): ``s = absmax / (2^(b-1) - 1)``, ``q ∈ [-2^(b-1), 2^(b-1)-1]``.
* "W4" (spec C.8, group size 128 along the input dimension): ``s = absmax · 2 / 15`` (= absmax/7.5),
  codes are OFFSET BINARY ``c = clamp(round(w/s) + 8, 0, 15)`` (uint8), decode ``(c - 8)·s``.
  The effective levels are −8…7, so +absmax clips to 7s ≈ 0.93·absmax.
* "W4 per-channel" (spec C.8 / pitfall 15: layers with ``in_features <= 128``): ``s = absmax / 7``,
  ``c = clamp(round(w/s) + 8, 0, 15)`` (so round-to-nearest values lie in ±7 and −8 is only reached by
  clamping), decode ``(c - 8)·s``. The upstream QQQ path additionally divides that scale by 16 to
  compensate a nibble shift in its unpacking; our kernel format decodes ``nibble - 8`` directly, so we
  do NOT apply the /16. The dequantized values are the same as upstream's.
* Embedding (pitfall 14, C.9): per row, using the SIGNED row max ``m = max_j w[r, j]``:
  W8 ``s = m / 127`` (int8 codes, clamp ±128/127), W4 ``s = m / 8`` (offset-binary codes, grid
  [−8s, 7s] = [−m, 0.875m]). Guard: a row whose signed max is ``<= 0`` (all entries ≤ 0) would get a
  zero or negative scale upstream; we use the row's absmax instead for that row (then the ``MIN_AMAX``
  floor for an all-zero row). Rows with a positive max follow the upstream rule exactly, including the
  clipping of negative values below ``-128·s`` / ``-8·s``.

Layouts: weights are ``[out_features, in_features]`` (nn.Linear). Per-group scales are
``[out_features, n_groups]`` with ``n_groups = ceil(in_features / group_size)``; the last group may be
shorter. (Upstream GPTQ stores ``[n_groups, out]``; we do not.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

__all__ = [
    "MIN_AMAX",
    "W4_OFFSET",
    "QuantResult",
    "qrange",
    "round_half_even",
    "scale_from_amax",
    "absmax_scale",
    "quantize_sym",
    "dequantize",
    "fake_quant",
    "quantize_per_tensor",
    "quantize_per_channel",
    "quantize_per_group",
    "quantize_per_segment",
    "segments_from_sizes",
    "expand_group_scales",
    "num_groups",
    "resolve_group_size",
    "w4_scale_from_amax",
    "w4_quantize_with_scale",
    "w4_quantize_group",
    "w4_quantize_per_channel",
    "w4_quantize",
    "w4_dequantize",
    "embedding_quantize_w8",
    "embedding_quantize_w4",
    "embedding_dequantize_w8",
    "embedding_dequantize_w4",
]

#: Floor applied to every amax before it becomes a scale (zero-tensor guard).
MIN_AMAX: float = 1e-8
#: Offset of the 4-bit offset-binary code: value = code − 8.
W4_OFFSET: int = 8


class QuantResult(NamedTuple):
    """Integer codes and their fp32 scale(s). Unpacks as ``q, scale = result``."""

    q: Tensor
    scale: Tensor


# ----------------------------------------------------------------------------------------------------
# basic helpers
# ----------------------------------------------------------------------------------------------------


def qrange(bits: int) -> tuple[int, int]:
    """Signed symmetric integer range ``(-2^(bits-1), 2^(bits-1) - 1)``; e.g. 8 → (-128, 127)."""
    if not isinstance(bits, int) or bits < 2 or bits > 32:
        raise ValueError(f"bits must be an int in [2, 32], got {bits!r}")
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def _int_dtype(bits: int) -> torch.dtype:
    if bits <= 8:
        return torch.int8
    if bits <= 16:
        return torch.int16
    return torch.int32


def _compute_dtype(x: Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def round_half_even(x: Tensor) -> Tensor:
    """Round to nearest, ties to even (IEEE default; CUDA ``rintf``). ``torch.round`` does exactly this."""
    return torch.round(x)


def scale_from_amax(amax: Tensor | float, bits: int = 8, *, qmax: float | None = None,
                    eps: float = MIN_AMAX) -> Tensor:
    """fp32 scale ``max(amax, eps) / qmax`` (``qmax`` defaults to ``2^(bits-1) - 1``, i.e. 127 for 8 bits).

    Raises ``ValueError`` if ``amax`` has a non-finite entry. Negative entries are treated like 0.
    """
    a = torch.as_tensor(amax).detach().to(torch.float32)
    if not bool(torch.isfinite(a).all()):
        raise ValueError("scale_from_amax: amax contains inf/nan")
    if qmax is None:
        qmax = float(qrange(bits)[1])
    return a.clamp_min(eps) / qmax


def absmax_scale(x: Tensor, bits: int = 8, dim: int | Sequence[int] | None = None,
                 keepdim: bool = False) -> Tensor:
    """Symmetric absmax scale ``max|x| / (2^(bits-1)-1)`` over ``dim`` (all elements if None), fp32."""
    ax = x.detach().abs()
    amax = ax.amax() if dim is None else ax.amax(dim=dim, keepdim=keepdim)
    return scale_from_amax(amax, bits)


def quantize_sym(x: Tensor, scale: Tensor | float, bits: int = 8) -> Tensor:
    """``clamp(round_half_even(x / scale), -2^(b-1), 2^(b-1)-1)`` as int8 (b≤8), int16 (b≤16) or int32.

    ``scale`` broadcasts against ``x`` (scalar, per-channel with a trailing singleton, ...). It must be
    positive (use :func:`scale_from_amax`). The division happens in fp32 (float64 for float64 input).
    """
    lo, hi = qrange(bits)
    cd = _compute_dtype(x)
    s = torch.as_tensor(scale, device=x.device).to(cd)
    q = round_half_even(x.to(cd) / s).clamp_(lo, hi)
    return q.to(_int_dtype(bits))


def dequantize(q: Tensor, scale: Tensor | float) -> Tensor:
    """``q · scale`` in fp32 (float64 if ``scale`` is float64)."""
    s = torch.as_tensor(scale, device=q.device)
    cd = torch.float64 if s.dtype == torch.float64 else torch.float32
    return q.to(cd) * s.to(cd)


def fake_quant(x: Tensor, scale: Tensor | float, bits: int = 8) -> Tensor:
    """``dequantize(quantize_sym(x, scale, bits), scale)`` returned in ``x.dtype``."""
    s = torch.as_tensor(scale, device=x.device)
    if x.dtype == torch.float64:
        s = s.double()
    return dequantize(quantize_sym(x, s, bits), s).to(x.dtype)


# ----------------------------------------------------------------------------------------------------
# weight quantizers, symmetric grid
# ----------------------------------------------------------------------------------------------------


def _check_2d(w: Tensor, name: str = "weight") -> None:
    if w.dim() != 2:
        raise ValueError(f"{name} must be 2-D [out_features, in_features], got shape {tuple(w.shape)}")


def quantize_per_tensor(w: Tensor, bits: int = 8) -> QuantResult:
    """One absmax scale for the whole tensor (spec C.8 W8, pitfall 17). Scale shape ``[]``."""
    s = absmax_scale(w, bits)
    return QuantResult(quantize_sym(w, s, bits), s)


def quantize_per_channel(w: Tensor, bits: int = 8, axis: int = 0) -> QuantResult:
    """One absmax scale per index of ``axis`` (default: per output row). Scale shape ``[w.shape[axis]]``."""
    axis = axis % w.dim()
    red = [d for d in range(w.dim()) if d != axis]
    s = absmax_scale(w, bits, dim=red, keepdim=True)
    q = quantize_sym(w, s, bits)
    return QuantResult(q, s.reshape(w.shape[axis]))


def num_groups(in_features: int, group_size: int) -> int:
    """``ceil(in_features / group_size)``."""
    return -(-in_features // group_size)


def resolve_group_size(in_features: int, group_size: int = 128) -> int:
    """Effective group size: ``in_features`` (one group = per-channel) when ``group_size == -1`` or
    ``in_features <= group_size`` (spec C.8: "layers with in_features ≤ 128 use per-channel"), else
    ``group_size``."""
    if group_size == -1 or in_features <= group_size:
        return in_features
    if group_size <= 0:
        raise ValueError(f"group_size must be positive or -1, got {group_size}")
    return group_size


def expand_group_scales(scale: Tensor, group_size: int, in_features: int) -> Tensor:
    """``[out, n_groups]`` → ``[out, in_features]`` (column c uses group ``c // group_size``)."""
    return scale.repeat_interleave(group_size, dim=-1)[..., :in_features]


def _group_amax(w: Tensor, group_size: int) -> Tensor:
    out_f, in_f = w.shape
    ng = num_groups(in_f, group_size)
    pad = ng * group_size - in_f
    a = w.detach().abs()
    if pad:
        a = torch.nn.functional.pad(a, (0, pad))
    return a.reshape(out_f, ng, group_size).amax(dim=-1)


def quantize_per_group(w: Tensor, group_size: int = 128, bits: int = 8) -> QuantResult:
    """Symmetric absmax per (row, group of ``group_size`` input columns). Scale ``[out, n_groups]``."""
    _check_2d(w)
    s = scale_from_amax(_group_amax(w, group_size), bits)
    q = quantize_sym(w, expand_group_scales(s, group_size, w.shape[1]), bits)
    return QuantResult(q, s)


def segments_from_sizes(sizes: Sequence[int]) -> list[tuple[int, int]]:
    """``[a, b, c]`` → ``[(0, a), (a, a+b), (a+b, a+b+c)]`` (e.g. Mamba2 in_proj z|x|B|C|dt)."""
    out, start = [], 0
    for n in sizes:
        out.append((start, start + int(n)))
        start += int(n)
    return out


def _check_segments(segments: Sequence[tuple[int, int]], nrows: int) -> None:
    pos = 0
    for a, b in segments:
        if a != pos or b < a:
            raise ValueError(f"segments must be contiguous, ordered row ranges covering [0, {nrows}); "
                             f"got {list(segments)}")
        pos = b
    if pos != nrows:
        raise ValueError(f"segments cover [0, {pos}) but the tensor has {nrows} rows")


def quantize_per_segment(w: Tensor, segments: Sequence[tuple[int, int]], bits: int = 8) -> QuantResult:
    """One absmax scale per row range (spec C.8: Mamba2 in_proj, one scale per output segment).

    ``segments`` are ``(start, stop)`` ranges along dim 0 that must tile ``[0, w.shape[0])`` in order
    (use :func:`segments_from_sizes`). Scale shape ``[len(segments)]``.
    """
    _check_segments(segments, w.shape[0])
    scales = torch.stack([absmax_scale(w[a:b], bits) for a, b in segments])
    row_s = torch.cat([scales[i].expand(b - a) for i, (a, b) in enumerate(segments)])
    row_s = row_s.reshape((-1,) + (1,) * (w.dim() - 1))
    return QuantResult(quantize_sym(w, row_s, bits), scales)


# ----------------------------------------------------------------------------------------------------
# W4 grid (spec C.8)
# ----------------------------------------------------------------------------------------------------


def w4_scale_from_amax(amax: Tensor) -> Tensor:
    """W4 group scale ``max(amax, MIN_AMAX) · 2 / 15`` (= absmax / 7.5), fp32."""
    return scale_from_amax(amax, qmax=7.5)


def w4_quantize_with_scale(w: Tensor, scale: Tensor) -> Tensor:
    """Offset-binary codes ``clamp(round(w / scale) + 8, 0, 15)`` as uint8 (``scale`` broadcasts)."""
    cd = _compute_dtype(w)
    c = round_half_even(w.to(cd) / scale.to(cd)).add_(W4_OFFSET).clamp_(0, 15)
    return c.to(torch.uint8)


def w4_quantize_group(w: Tensor, group_size: int = 128) -> QuantResult:
    """W4 grid per (row, group): scale ``[out, n_groups]`` = absmax·2/15, offset-binary uint8 codes."""
    _check_2d(w)
    s = w4_scale_from_amax(_group_amax(w, group_size))
    c = w4_quantize_with_scale(w, expand_group_scales(s, group_size, w.shape[1]))
    return QuantResult(c, s)


def w4_quantize_per_channel(w: Tensor) -> QuantResult:
    """W4 per-channel branch: ``s = absmax_row / 7`` (shape ``[out, 1]``), offset-binary uint8 codes."""
    _check_2d(w)
    s = scale_from_amax(w.detach().abs().amax(dim=1, keepdim=True), qmax=7.0)
    return QuantResult(w4_quantize_with_scale(w, s), s)


def w4_quantize(w: Tensor, group_size: int = 128) -> tuple[Tensor, Tensor, int]:
    """Dispatch of spec C.8: per-channel branch if ``in_features <= group_size`` (or ``group_size == -1``),
    otherwise the group grid. Returns ``(codes uint8 [out,in], scale fp32 [out, n_groups], group_size)``
    where the effective ``group_size`` equals ``in_features`` in the per-channel case (``n_groups == 1``).
    """
    _check_2d(w)
    gs = resolve_group_size(w.shape[1], group_size)
    if gs == w.shape[1]:
        c, s = w4_quantize_per_channel(w)
    else:
        c, s = w4_quantize_group(w, gs)
    return c, s, gs


def w4_dequantize(codes: Tensor, scale: Tensor, group_size: int) -> Tensor:
    """``(codes - 8) · scale`` in fp32; ``scale`` is ``[out, n_groups]``."""
    s = expand_group_scales(scale.float(), group_size, codes.shape[-1])
    return (codes.to(torch.float32) - W4_OFFSET) * s


# ----------------------------------------------------------------------------------------------------
# embedding (pitfall 14)
# ----------------------------------------------------------------------------------------------------


def _embedding_row_ref(table: Tensor) -> Tensor:
    """Signed row max, replaced by the row absmax where the signed max is <= 0 (see module docstring)."""
    t = table.detach().float()
    rowmax = t.amax(dim=1)
    absmax = t.abs().amax(dim=1)
    return torch.where(rowmax > 0, rowmax, absmax)


def embedding_quantize_w8(table: Tensor) -> QuantResult:
    """Per-row W8: ``s_r = signed_rowmax_r / 127`` (guarded), int8 codes. Scale ``[V]`` fp32."""
    _check_2d(table, "embedding table")
    s = scale_from_amax(_embedding_row_ref(table), qmax=127.0)
    return QuantResult(quantize_sym(table, s[:, None], 8), s)


def embedding_quantize_w4(table: Tensor) -> QuantResult:
    """Per-row W4: ``s_r = signed_rowmax_r / 8`` (guarded), offset-binary uint8 codes. Scale ``[V]``."""
    _check_2d(table, "embedding table")
    s = scale_from_amax(_embedding_row_ref(table), qmax=8.0)
    return QuantResult(w4_quantize_with_scale(table, s[:, None]), s)


def embedding_dequantize_w8(q: Tensor, scale: Tensor) -> Tensor:
    """``q · s_row`` (fp32)."""
    return dequantize(q, scale[:, None])


def embedding_dequantize_w4(codes: Tensor, scale: Tensor) -> Tensor:
    """``(codes − 8) · s_row`` (fp32)."""
    return (codes.to(torch.float32) - W4_OFFSET) * scale.float()[:, None]
