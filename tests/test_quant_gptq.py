"""GPTQ for one linear layer vs RTN (spec C.8 "GPTQ")."""

from __future__ import annotations

import pytest
import torch

from quamba_edge.quant.gptq import GPTQ, gptq_quantize, rtn_quantize


def _correlated_inputs(n_tokens: int, d: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(d, d, generator=g) / d ** 0.5
    z = torch.randn(n_tokens, d, generator=g)
    scale = torch.linspace(0.2, 3.0, d)  # unequal channel energies
    return (z @ mix + 0.3 * torch.randn(n_tokens, d, generator=g)) * scale


def _recon_err(x: torch.Tensor, w: torch.Tensor, w_hat: torch.Tensor) -> float:
    return (x @ w.T - x @ w_hat.T).norm().item()


@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("in_features", [256, 200, 96])
def test_gptq_beats_rtn(bits, in_features):
    g = torch.Generator().manual_seed(1)
    w = torch.randn(48, in_features, generator=g)
    x = _correlated_inputs(1024, in_features)
    res = gptq_quantize(w, x, bits=bits)
    rtn = rtn_quantize(w, bits=bits)
    e_gptq, e_rtn = _recon_err(x, w, res.weight), _recon_err(x, w, rtn.weight)
    assert e_gptq < e_rtn, (e_gptq, e_rtn)
    # outputs are consistent: weight == dequantize(codes, scales) exactly, codes on the grid
    assert torch.equal(res.dequantize(), res.weight)
    assert torch.equal(rtn.dequantize(), rtn.weight)
    if bits == 4:
        assert res.codes.dtype == torch.uint8 and int(res.codes.max()) <= 15
    else:
        assert res.codes.dtype == torch.int8


def test_group_layout_and_short_last_group():
    w = torch.randn(16, 300)
    x = _correlated_inputs(512, 300)
    res = gptq_quantize(w, x, bits=4)
    assert res.group_size == 128 and res.scales.shape == (16, 3) and res.scales.dtype == torch.float32
    rtn = rtn_quantize(w, bits=4)
    # the first group's scale is computed before any error compensation reaches it -> equals RTN's
    torch.testing.assert_close(res.scales[:, 0], rtn.scales[:, 0], rtol=0, atol=0)
    # RTN scale rule of the W4 grid: absmax · 2/15 per (row, group); last group covers 44 columns
    torch.testing.assert_close(rtn.scales[:, 2], w[:, 256:].abs().amax(1) * 2 / 15)


def test_per_channel_when_in_features_le_128():
    w = torch.randn(8, 64)
    x = _correlated_inputs(256, 64)
    res = gptq_quantize(w, x, bits=4)
    assert res.group_size == 64 and res.scales.shape == (8, 1)
    rtn = rtn_quantize(w, bits=4)
    torch.testing.assert_close(rtn.scales[:, 0], w.abs().amax(1) / 7)  # per-channel branch: absmax/7
    torch.testing.assert_close(res.scales, rtn.scales)  # computed once, before the sweep
    assert set((rtn.codes.int() - 8).unique().tolist()) <= set(range(-7, 8))


def test_dead_columns_zeroed():
    w = torch.randn(8, 256)
    x = _correlated_inputs(512, 256)
    x[:, 10] = 0.0
    x[:, 200] = 0.0
    res = gptq_quantize(w, x, bits=4)
    assert (res.weight[:, 10] == 0).all() and (res.weight[:, 200] == 0).all()


def test_add_batch_accumulates_running_mean():
    w = torch.randn(4, 32)
    x = torch.randn(100, 32)
    a = GPTQ(w)
    a.add_batch(x)
    b = GPTQ(w)
    b.add_batch(x[:30].reshape(3, 10, 32))
    b.add_batch(x[30:])
    torch.testing.assert_close(a.H, b.H, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(a.H, 2 / 100 * x.T @ x, rtol=1e-5, atol=1e-5)
    assert b.nsamples == 100
    with pytest.raises(RuntimeError):
        GPTQ(w).quantize()
    with pytest.raises(ValueError):
        a.add_batch(torch.randn(3, 31))


def test_rtn_w4_grid_by_hand():
    w = torch.zeros(1, 256)
    w[0, :4] = torch.tensor([7.5, -7.5, -3.0, 0.4])
    r = rtn_quantize(w, bits=4)
    assert r.scales[0, 0].item() == 1.0
    assert r.weight[0, :4].tolist() == [7.0, -8.0, -3.0, 0.0]
    r8 = rtn_quantize(w, bits=8)
    assert r8.codes[0, :4].tolist() == [127, -127, -51, 7]
