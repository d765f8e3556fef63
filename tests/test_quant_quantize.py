"""Symmetric quantizers, W4 grid, embedding quantization (spec §0, C.8, C.9, pitfalls 12, 14, 15)."""

from __future__ import annotations

import pytest
import torch

from quamba_edge.quant.quantize import (
    MIN_AMAX,
    absmax_scale,
    dequantize,
    embedding_dequantize_w4,
    embedding_dequantize_w8,
    embedding_quantize_w4,
    embedding_quantize_w8,
    fake_quant,
    quantize_per_channel,
    quantize_per_group,
    quantize_per_segment,
    quantize_per_tensor,
    quantize_sym,
    scale_from_amax,
    segments_from_sizes,
    w4_dequantize,
    w4_quantize,
    w4_quantize_group,
)


def test_round_half_even_and_clamp():
    x = torch.tensor([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 126.5, 127.5, 1000.0, -1000.0, -128.5])
    q = quantize_sym(x, 1.0)
    assert q.dtype == torch.int8
    assert q.tolist() == [0, 2, 2, 0, -2, -2, 126, 127, 127, -128, -128]
    q4 = quantize_sym(torch.tensor([7.4, 7.6, -8.4, -9.0, 3.5]), 1.0, bits=4)
    assert q4.tolist() == [7, 7, -8, -8, 4]
    assert quantize_sym(torch.tensor([40000.0]), 1.0, bits=16).dtype == torch.int16


def test_scale_and_dequant():
    x = torch.tensor([[1.0, -2.54], [0.3, 0.0]])
    s = absmax_scale(x)
    assert s.dtype == torch.float32 and s.item() == pytest.approx(2.54 / 127)
    q = quantize_sym(x, s)
    assert q.tolist() == [[50, -127], [15, 0]]
    torch.testing.assert_close(dequantize(q, s), q.float() * s)
    assert fake_quant(x.half(), s).dtype == torch.float16


def test_zero_tensor_guard_and_nan():
    z = torch.zeros(3, 4)
    s = absmax_scale(z)
    assert s.item() == pytest.approx(MIN_AMAX / 127) and s.item() > 0
    assert torch.equal(fake_quant(z, s), z)
    with pytest.raises(ValueError):
        scale_from_amax(torch.tensor(float("nan")))
    with pytest.raises(ValueError):
        scale_from_amax(torch.tensor(float("inf")))


def test_per_tensor_channel_group_segment():
    w = torch.tensor([[1.0, -4.0, 2.0], [0.5, 0.25, -0.125]])
    q, s = quantize_per_tensor(w)
    assert s.shape == () and s.item() == pytest.approx(4 / 127) and q[0, 1] == -127
    q, s = quantize_per_channel(w)
    assert s.shape == (2,) and q[1, 0] == 127 and q[0, 1] == -127
    w = torch.randn(4, 300)
    q, s = quantize_per_group(w, 128)
    assert s.shape == (4, 3)
    assert s[:, 2].tolist() == pytest.approx((w[:, 256:].abs().amax(1) / 127).tolist())
    segs = segments_from_sizes([1, 3])
    assert segs == [(0, 1), (1, 4)]
    q, s = quantize_per_segment(w, segs)
    assert s.shape == (2,)
    assert s[0].item() == pytest.approx(w[0].abs().max().item() / 127)
    assert s[1].item() == pytest.approx(w[1:].abs().max().item() / 127)
    with pytest.raises(ValueError):
        quantize_per_segment(w, [(0, 1), (2, 4)])
    with pytest.raises(ValueError):
        quantize_per_segment(w, [(0, 3)])


def test_w4_grid_by_hand():
    # absmax 7.5 -> s = 1: 7.5 rounds to 8 (half even), +8 = 16 clamps to 15 -> value 7
    w = torch.tensor([[7.5, -7.5, -3.0, 2.5, 0.4, 0.0] + [0.0] * 250])
    c, s = w4_quantize_group(w, 128)
    assert s.shape == (1, 2) and s[0, 0].item() == 1.0
    assert c.dtype == torch.uint8
    assert c[0, :6].tolist() == [15, 0, 5, 10, 8, 8]
    assert w4_dequantize(c, s, 128)[0, :6].tolist() == [7.0, -8.0, -3.0, 2.0, 0.0, 0.0]


def test_w4_dispatch_per_channel_small_in_features():
    w = torch.tensor([[7.0, -3.5, 1.0], [0.7, 0.0, -0.3]])
    c, s, gs = w4_quantize(w, 128)
    assert gs == 3 and s.shape == (2, 1)
    torch.testing.assert_close(s[:, 0], torch.tensor([1.0, 0.1]))
    assert (c.int() - 8).tolist() == [[7, -4, 1], [7, 0, -3]]  # -3.5 -> -4 (half even)
    w = torch.randn(8, 256)
    c, s, gs = w4_quantize(w, 128)
    assert gs == 128 and s.shape == (8, 2)


def test_embedding_w8_signed_rowmax():
    t = torch.tensor([[1.0, -2.0, 0.25], [-1.0, -3.0, -0.5], [0.0, 0.0, 0.0]])
    q, s = embedding_quantize_w8(t)
    # row 0: signed max 1.0 -> s = 1/127; -2.0 -> -254 clips to -128 (upstream behaviour)
    assert s[0].item() == pytest.approx(1 / 127)
    assert q[0].tolist() == [127, -128, 32]
    # row 1: signed max <= 0 -> guarded: absmax 3.0 / 127, exact representation of -3.0
    assert s[1].item() == pytest.approx(3 / 127)
    assert q[1].tolist() == [-42, -127, -21]
    # row 2: all zero -> tiny positive scale, zeros back
    assert s[2].item() > 0
    assert torch.equal(embedding_dequantize_w8(q, s)[2], torch.zeros(3))
    assert (s > 0).all()


def test_embedding_w4_signed_rowmax():
    t = torch.tensor([[8.0, -8.0, -9.0, 3.0], [-4.0, -8.0, -1.0, 0.0]])
    c, s = embedding_quantize_w4(t)
    assert s[0].item() == 1.0  # rowmax / 8
    # 8 -> round(8)+8 = 16 -> 15 (value 7 = 0.875·max); -8 -> 0; -9 clips to 0; 3 -> 11
    assert c[0].tolist() == [15, 0, 0, 11]
    assert s[1].item() == 1.0  # guarded: absmax 8 / 8
    assert embedding_dequantize_w4(c, s)[1].tolist() == [-4.0, -8.0, -1.0, 0.0]
