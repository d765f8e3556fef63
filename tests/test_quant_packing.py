"""int4 packing, W4A8 two-level scales, W4A16, W8 (spec C.8, pitfall 16)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from quamba_edge.quant.gptq import gptq_quantize, rtn_quantize
from quamba_edge.quant.packing import (
    offset_to_signed,
    pack_int4,
    signed_to_offset,
    unpack_int4,
    w4a8_dequantize,
    w4a8_effective_int8,
    w4a8_pack,
    w4a8_two_level_scales,
    w4a8_unpack_codes,
    w4a16_dequantize,
    w4a16_pack,
    w8_dequantize,
    w8_pack_per_segment,
    w8_pack_per_tensor,
    w8_row_scales,
)
from quamba_edge.quant.quantize import (
    quantize_per_segment,
    quantize_per_tensor,
    segments_from_sizes,
    w4_dequantize,
)


def test_nibble_order_low_first():
    codes = torch.tensor([[1, 2, 15, 0, 8, 8]], dtype=torch.uint8)
    packed = pack_int4(codes)
    assert packed.dtype == torch.uint8
    assert packed.tolist() == [[0x21, 0x0F, 0x88]]
    assert torch.equal(unpack_int4(packed), codes)
    assert torch.equal(unpack_int4(packed.view(torch.int8)), codes)  # int8 view of the same bytes


def test_pack_roundtrip_random_and_odd():
    c = torch.randint(0, 16, (5, 7, 64), dtype=torch.uint8)
    assert torch.equal(unpack_int4(pack_int4(c)), c)
    odd = torch.randint(0, 16, (3, 9), dtype=torch.uint8)
    with pytest.raises(ValueError):
        pack_int4(odd)
    p = pack_int4(odd, pad_code=8)
    assert p.shape == (3, 5) and (p[:, -1] >> 4 == 8).all()
    assert torch.equal(unpack_int4(p, 9), odd)
    with pytest.raises(ValueError):
        pack_int4(torch.tensor([16, 0]))


def test_signed_offset_conversion():
    v = torch.arange(-8, 8, dtype=torch.int8)
    c = signed_to_offset(v)
    assert c.tolist() == list(range(16))
    assert torch.equal(offset_to_signed(c), v)
    with pytest.raises(ValueError):
        signed_to_offset(torch.tensor([8]))


def _np_chain(codes: torch.Tensor, gs: torch.Tensor, group_size: int):
    """Independent numpy simulation of the W4A8 scales and dequant chain."""
    c = codes.numpy().astype(np.float32) - 8
    g = np.repeat(gs.numpy().astype(np.float32), group_size, axis=1)[:, : c.shape[1]]
    w_hat = c * g
    s_ch = np.maximum(np.abs(w_hat).max(axis=1), np.float32(1e-8)) / np.float32(127)
    s_grp = (gs.numpy().astype(np.float32) / s_ch[:, None]).astype(np.float16)
    sg = np.repeat(s_grp, group_size, axis=1)[:, : c.shape[1]]
    prod = c.astype(np.float16) * sg  # float16 multiply (numpy rounds the product to float16)
    w8 = np.clip(np.rint(prod.astype(np.float32)), -128, 127).astype(np.int8)
    return s_ch.astype(np.float32), s_grp, w8


def test_w4a8_chain_matches_independent_simulation():
    w = torch.randn(24, 300) * torch.linspace(0.1, 2.0, 300)
    r = rtn_quantize(w, bits=4)
    s_ch, s_grp = w4a8_two_level_scales(r.codes, r.scales, r.group_size)
    ref_ch, ref_grp, ref_w8 = _np_chain(r.codes, r.scales, r.group_size)
    assert s_ch.dtype == torch.float32 and s_grp.dtype == torch.float16
    assert np.array_equal(s_ch.numpy(), ref_ch)
    assert np.array_equal(s_grp.numpy(), ref_grp)
    w8 = w4a8_effective_int8(r.codes, s_grp, r.group_size)
    assert w8.dtype == torch.int8
    assert np.array_equal(w8.numpy(), ref_w8)
    # the row max maps to ±127 (up to the fp16 rounding of s_group), the second quantization is close
    assert (w8.abs().amax(1) >= 126).all()
    w_kernel = w8.float() * s_ch[:, None]
    err = (w_kernel - r.weight).abs()
    assert (err <= 0.51 * s_ch[:, None] + 1e-3 * r.weight.abs()).all()


def test_w4a8_effective_int8_by_hand():
    # one row, one group: codes 15 (value 7) and 0 (value -8); gs = 1 -> Ŵ = [7, -8]; s_ch = 8/127
    codes = torch.tensor([[15, 0, 9, 8]], dtype=torch.uint8)
    gs = torch.tensor([[1.0]])
    s_ch, s_grp = w4a8_two_level_scales(codes, gs, 4)
    assert s_ch.item() == pytest.approx(8 / 127)
    assert s_grp.item() == float(np.float16(np.float32(1.0) / np.float32(8 / 127)))  # fp16(15.875)
    w8 = w4a8_effective_int8(codes, s_grp, 4)
    # 7·15.875 = 111.125 -> 111; -8·15.875 = -127; 1·15.875 -> 16; 0 -> 0
    assert w8.tolist() == [[111, -127, 16, 0]]


def test_w4a8_pack_roundtrip_gptq():
    w = torch.randn(32, 256)
    x = torch.randn(512, 256)
    r = gptq_quantize(w, x, bits=4)
    p = w4a8_pack(r.codes, r.scales, r.group_size)
    assert p.qweight.shape == (32, 128) and p.qweight.dtype == torch.uint8
    assert torch.equal(w4a8_unpack_codes(p), r.codes)
    w_kernel = w4a8_dequantize(p)
    torch.testing.assert_close(w_kernel, r.weight, atol=float(p.s_channel.max()) * 0.51, rtol=1e-3)


def test_w4a8_per_channel_and_zero_row():
    w = torch.randn(4, 64)
    w[2] = 0.0
    r = rtn_quantize(w, bits=4)  # in_features <= 128 -> per-channel branch
    p = w4a8_pack(r.codes, r.scales, r.group_size)
    assert p.s_group.shape == (4, 1)
    assert torch.isfinite(p.s_group.float()).all() and (p.s_channel > 0).all()
    assert (w4a8_dequantize(p)[2] == 0).all()


def test_w4a16_roundtrip():
    w = torch.randn(8, 384)
    r = rtn_quantize(w, bits=4)
    p = w4a16_pack(r.codes, r.scales, r.group_size)
    assert p.scale.dtype == torch.float16
    assert torch.equal(w4a16_dequantize(p), w4_dequantize(r.codes, r.scales.half().float(), 128))
    torch.testing.assert_close(w4a16_dequantize(p), r.weight, atol=1e-3, rtol=1e-3)


def test_w8_per_tensor_roundtrip():
    w = torch.randn(16, 40)
    p = w8_pack_per_tensor(w)
    assert p.qweight.dtype == torch.int8 and p.scale.shape == (1,) and p.scale.dtype == torch.float32
    w_hat = w8_dequantize(p)
    assert (w_hat - w).abs().max() <= 0.5 * p.scale.item() * (1 + 1e-6)
    q2, s2 = quantize_per_tensor(w_hat)  # re-quantizing the dequantized weight is idempotent
    assert torch.equal(q2, p.qweight)
    torch.testing.assert_close(s2, p.scale[0])


def test_w8_per_segment_roundtrip():
    sizes = [8, 8, 4, 4, 2]  # e.g. z | x | B | C | dt
    gains = torch.tensor([1.0] * 8 + [5.0] * 8 + [0.1] * 4 + [2.0] * 4 + [0.01] * 2)
    w = torch.randn(26, 32) * gains[:, None]
    segs = segments_from_sizes(sizes)
    assert segs == [(0, 8), (8, 16), (16, 20), (20, 24), (24, 26)]
    p = w8_pack_per_segment(w, segs)
    assert p.scale.shape == (5,)
    rs = w8_row_scales(p)
    assert rs.shape == (26,) and rs[17] == p.scale[2]
    w_hat = w8_dequantize(p)
    assert ((w_hat - w).abs() <= 0.5 * rs[:, None] * (1 + 1e-6)).all()
    q2, _ = quantize_per_segment(w_hat, segs)
    assert torch.equal(q2, p.qweight)
