"""Weight packing for our kernels (spec C.8, C.9; pitfalls 15, 16, 17).

int4 storage format (OURS — not Marlin's or QQQ's tile-permuted layouts, nor upstream's 8-per-int32
embedding interleave):

* Codes are 4-bit OFFSET BINARY nibbles ``c ∈ [0, 15]`` with value ``c − 8`` (the W4 grid of
  :mod:`.quantize`). Signed values ``v ∈ [−8, 7]`` convert with ``c = v + 8``.
* Two codes per byte along the LAST dimension (the input / K dimension of a ``[out, in]`` weight, the
  ``d`` dimension of an embedding row), LOW NIBBLE FIRST: ``byte[k] = c[2k] | (c[2k+1] << 4)``.
* Storage dtype ``uint8``; :func:`unpack_int4` also accepts the same bytes viewed as ``int8``.
* An odd last dimension must be padded by the caller or with ``pad_code`` (8 encodes 0.0).

W4A8 two-level scales (spec C.8 "W4A8 kernel format", pitfall 16), from W4 codes ``c`` and the W4 group
scales ``gs`` ``[out, n_groups]`` (fp32):

* ``Ŵ = (c − 8)·gs`` (fp32);
* ``s_channel[r] = max(max_j |Ŵ[r, j]|, MIN_AMAX) / 127`` (fp32, ``[out]``);
* ``s_group[r, g] = fp16(gs[r, g] / s_channel[r])`` (``[out, n_groups]``);
* kernel dequant chain, simulated exactly by :func:`w4a8_effective_int8`:
  ``w8 = clamp(round_half_even(fp16((c − 8) · s_group)), −128, 127)`` (the fp16 product is correctly
  rounded: the exact product of two fp16 numbers fits in fp32, and is then rounded once to fp16);
* the GEMM computes ``(Σ a_int8 · w8) · s_tok · s_channel``, so the weight the kernel actually applies is
  ``w8 · s_channel`` (:func:`w4a8_dequantize`).

W4A16: codes + fp16 group scales, dequant ``(c − 8) · float32(s_fp16)`` (:func:`w4a16_dequantize`).
W8: int8 codes + fp32 scale(s): per-tensor (one scale) or per-segment (one scale per output row range).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from .quantize import (
    MIN_AMAX,
    W4_OFFSET,
    _check_segments,
    expand_group_scales,
    num_groups,
    quantize_per_segment,
    quantize_per_tensor,
    scale_from_amax,
)

__all__ = [
    "pack_int4",
    "unpack_int4",
    "signed_to_offset",
    "offset_to_signed",
    "PackedW4A8",
    "PackedW4A16",
    "PackedW8",
    "w4a8_two_level_scales",
    "w4a8_effective_int8",
    "w4a8_pack",
    "w4a8_unpack_codes",
    "w4a8_dequantize",
    "w4a16_pack",
    "w4a16_dequantize",
    "w8_pack_per_tensor",
    "w8_pack_per_segment",
    "w8_row_scales",
    "w8_dequantize",
]


# ----------------------------------------------------------------------------------------------------
# nibbles
# ----------------------------------------------------------------------------------------------------


def signed_to_offset(v: Tensor) -> Tensor:
    """Signed int4 values ``[−8, 7]`` → offset-binary uint8 codes ``v + 8``."""
    if (v < -8).any() or (v > 7).any():
        raise ValueError("signed int4 values must lie in [-8, 7]")
    return (v.to(torch.int16) + W4_OFFSET).to(torch.uint8)


def offset_to_signed(c: Tensor) -> Tensor:
    """Offset-binary codes ``[0, 15]`` → signed int8 values ``c − 8``."""
    return (c.to(torch.int16) - W4_OFFSET).to(torch.int8)


def pack_int4(codes: Tensor, pad_code: int | None = None) -> Tensor:
    """Pack uint 4-bit codes ``[..., K]`` (values 0..15) into uint8 ``[..., ceil(K/2)]``, low nibble first.

    Odd ``K`` raises ``ValueError`` unless ``pad_code`` (0..15) is given, which fills the last high nibble.
    """
    c = codes.to(torch.int16)
    if c.numel() and (int(c.min()) < 0 or int(c.max()) > 15):
        raise ValueError("pack_int4: codes must lie in [0, 15] (offset binary)")
    if c.shape[-1] % 2:
        if pad_code is None:
            raise ValueError(f"pack_int4: last dim {c.shape[-1]} is odd; pass pad_code (8 encodes 0)")
        if not 0 <= pad_code <= 15:
            raise ValueError("pad_code must be in [0, 15]")
        c = torch.nn.functional.pad(c, (0, 1), value=pad_code)
    lo, hi = c[..., 0::2], c[..., 1::2]
    return (lo | (hi << 4)).to(torch.uint8)


def unpack_int4(packed: Tensor, n: int | None = None) -> Tensor:
    """Inverse of :func:`pack_int4`: uint8/int8 bytes ``[..., B]`` → uint8 codes ``[..., n or 2B]``."""
    b = packed.to(torch.int16) & 0xFF
    lo, hi = b & 0xF, (b >> 4) & 0xF
    out = torch.stack((lo, hi), dim=-1).reshape(*b.shape[:-1], 2 * b.shape[-1]).to(torch.uint8)
    if n is not None:
        if not 2 * b.shape[-1] - 1 <= n <= 2 * b.shape[-1]:
            raise ValueError(f"unpack_int4: n={n} incompatible with {b.shape[-1]} bytes")
        out = out[..., :n]
    return out


# ----------------------------------------------------------------------------------------------------
# W4A8 (two-level scales) and W4A16
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PackedW4A8:
    """``qweight`` uint8 ``[out, ceil(in/2)]``; ``s_channel`` fp32 ``[out]``; ``s_group`` fp16
    ``[out, n_groups]``; ``group_size`` (== ``in_features`` for the per-channel branch)."""

    qweight: Tensor
    s_channel: Tensor
    s_group: Tensor
    group_size: int
    in_features: int

    @property
    def out_features(self) -> int:
        return int(self.qweight.shape[0])


@dataclass(frozen=True)
class PackedW4A16:
    """``qweight`` uint8 ``[out, ceil(in/2)]``; ``scale`` fp16 ``[out, n_groups]``."""

    qweight: Tensor
    scale: Tensor
    group_size: int
    in_features: int


def _check_codes_scales(codes: Tensor, scale: Tensor, group_size: int) -> None:
    if codes.dim() != 2:
        raise ValueError(f"codes must be [out, in], got {tuple(codes.shape)}")
    ng = num_groups(codes.shape[1], group_size)
    if tuple(scale.shape) != (codes.shape[0], ng):
        raise ValueError(f"scales must be [out={codes.shape[0]}, n_groups={ng}], got {tuple(scale.shape)}")


def w4a8_two_level_scales(codes: Tensor, group_scale: Tensor, group_size: int) -> tuple[Tensor, Tensor]:
    """``(s_channel fp32 [out], s_group fp16 [out, n_groups])`` from W4 codes and fp32 group scales."""
    _check_codes_scales(codes, group_scale, group_size)
    gs = group_scale.to(torch.float32)
    w_hat = (codes.to(torch.float32) - W4_OFFSET) * expand_group_scales(gs, group_size, codes.shape[1])
    s_channel = scale_from_amax(w_hat.abs().amax(dim=1), eps=MIN_AMAX)
    s_group = (gs / s_channel[:, None]).to(torch.float16)
    return s_channel, s_group


def w4a8_effective_int8(q4: Tensor, s_group: Tensor, group_size: int) -> Tensor:
    """The int8 weight the W4A8 kernel feeds its int8 MMA: ``clamp(rne(fp16((q4 − 8)·s_group)))``.

    ``q4``: offset-binary codes uint8 ``[out, in]``; ``s_group``: fp16 ``[out, n_groups]``.
    """
    _check_codes_scales(q4, s_group, group_size)
    v = (q4.to(torch.int16) - W4_OFFSET).to(torch.float16)
    sg = expand_group_scales(s_group.to(torch.float16), group_size, q4.shape[1])
    prod = v * sg  # fp16 × fp16 → fp16, correctly rounded
    return torch.round(prod.to(torch.float32)).clamp_(-128, 127).to(torch.int8)


def w4a8_pack(codes: Tensor, group_scale: Tensor, group_size: int) -> PackedW4A8:
    """Pack GPTQ/RTN W4 output (offset-binary codes ``[out, in]``, fp32 scales ``[out, n_groups]``)."""
    s_channel, s_group = w4a8_two_level_scales(codes, group_scale, group_size)
    return PackedW4A8(pack_int4(codes, pad_code=W4_OFFSET), s_channel, s_group, int(group_size),
                      int(codes.shape[1]))


def w4a8_unpack_codes(p: PackedW4A8) -> Tensor:
    """Offset-binary codes ``[out, in]`` back from a :class:`PackedW4A8`."""
    return unpack_int4(p.qweight, p.in_features)


def w4a8_dequantize(p: PackedW4A8) -> Tensor:
    """fp32 ``[out, in]`` weight the W4A8 kernel applies: ``w4a8_effective_int8 · s_channel``."""
    w8 = w4a8_effective_int8(w4a8_unpack_codes(p), p.s_group, p.group_size)
    return w8.to(torch.float32) * p.s_channel[:, None]


def w4a16_pack(codes: Tensor, scale: Tensor, group_size: int) -> PackedW4A16:
    """Pack W4 codes with fp16 group scales (W4A16)."""
    _check_codes_scales(codes, scale, group_size)
    return PackedW4A16(pack_int4(codes, pad_code=W4_OFFSET), scale.to(torch.float16), int(group_size),
                       int(codes.shape[1]))


def w4a16_dequantize(p: PackedW4A16) -> Tensor:
    """fp32 ``[out, in]``: ``(c − 8) · float32(s_fp16)`` (exact in fp32; rounding it to fp16 is the
    kernel's only further rounding)."""
    c = unpack_int4(p.qweight, p.in_features)
    s = expand_group_scales(p.scale.to(torch.float32), p.group_size, p.in_features)
    return (c.to(torch.float32) - W4_OFFSET) * s


# ----------------------------------------------------------------------------------------------------
# W8
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PackedW8:
    """``qweight`` int8 ``[out, in]``; ``scale`` fp32 ``[n_segments]``; ``segments`` row ranges
    (one segment ``[(0, out)]`` for per-tensor)."""

    qweight: Tensor
    scale: Tensor
    segments: tuple[tuple[int, int], ...]


def w8_pack_per_tensor(w: Tensor) -> PackedW8:
    """Per-tensor symmetric int8 (spec C.8 W8)."""
    q, s = quantize_per_tensor(w, 8)
    return PackedW8(q, s.reshape(1), ((0, int(w.shape[0])),))


def w8_pack_per_segment(w: Tensor, segments: Sequence[tuple[int, int]]) -> PackedW8:
    """One scale per output row range (spec C.8: Mamba2 in_proj z|x|B|C|dt)."""
    q, s = quantize_per_segment(w, segments, 8)
    return PackedW8(q, s, tuple((int(a), int(b)) for a, b in segments))


def w8_row_scales(p: PackedW8) -> Tensor:
    """fp32 ``[out]``: the scale of every output row (the GEMM epilogue's per-channel vector)."""
    _check_segments(p.segments, p.qweight.shape[0])
    return torch.cat([p.scale[i].expand(b - a) for i, (a, b) in enumerate(p.segments)])


def w8_dequantize(p: PackedW8) -> Tensor:
    """fp32 ``[out, in]`` = ``q · s_row``."""
    return p.qweight.to(torch.float32) * w8_row_scales(p)[:, None]
