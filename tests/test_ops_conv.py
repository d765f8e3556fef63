"""QuantCausalConv1d against a loop reference; state continuation; Mamba1 and Mamba2 scale layouts."""

import math

import numpy as np
import pytest
import torch

from quamba_edge.models import ssm
from quamba_edge.ops import quant_causal_conv1d
from quamba_edge.ops.scales import conv_channel_scales, expand_segment_scales


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _i8(shape, g, lo=-128, hi=128):
    return torch.randint(lo, hi, shape, generator=g).to(torch.int8)


def _loop_ref(x_q, xs, w_q, ws, b_q, bs, os_, state, silu):
    """float64 loops: returns the unrounded y/out_scale [B, L, C] and the expected state."""
    bsz, seqlen, c = x_q.shape
    k = w_q.shape[1]
    if state is None:
        state = torch.zeros(bsz, c, k - 1, dtype=torch.int8)
    xx = torch.cat([state.to(torch.int64), x_q.to(torch.int64).transpose(1, 2)], dim=2).tolist()
    w = w_q.to(torch.int64).tolist()
    out = np.zeros((bsz, seqlen, c))
    for b in range(bsz):
        for ch in range(c):
            for t in range(seqlen):
                acc = sum(w[ch][j] * xx[b][ch][t + j] for j in range(k))
                y = acc * float(xs[ch]) * float(ws[ch])
                if b_q is not None:
                    y += int(b_q[ch]) * float(bs[ch])
                if silu:
                    y = y / (1.0 + math.exp(-y)) if y > -700 else 0.0
                out[b, t, ch] = y / float(os_[ch])
    new_state = torch.tensor(xx, dtype=torch.int64)[:, :, -(k - 1):].to(torch.int8)
    return out, new_state


def _check_lsb(q, scaled_ref, min_exact=0.97):
    ref = np.clip(np.rint(scaled_ref), -128, 127)
    diff = np.abs(q.to(torch.int64).numpy() - ref)
    assert diff.max() <= 1
    assert (diff == 0).mean() >= min_exact


def _mamba1_args(g, c, k, scalar=False):
    xs, ws, bs, os_ = 0.0513, 0.00417, 0.0107, 0.0231  # not "round": avoid exact decimal ties
    t = (lambda v: v) if scalar else (lambda v: torch.full((c,), v))
    return dict(x_scale=t(xs), w_q=_i8((c, k), g), w_scale=t(ws), b_q=_i8((c,), g), b_scale=t(bs),
                out_scale=t(os_))


@pytest.mark.parametrize("seqlen", [1, 2, 7])
@pytest.mark.parametrize("with_state", [False, True])
@pytest.mark.parametrize("silu", [True, False])
def test_conv_matches_loop_reference(seqlen, with_state, silu):
    g = _gen(seqlen)
    bsz, c, k = 2, 6, 4
    args = _mamba1_args(g, c, k)
    x_q = _i8((bsz, seqlen, c), g)
    state = _i8((bsz, c, k - 1), g) if with_state else None
    y_q, new_state = quant_causal_conv1d(x_q, conv_state=state, silu=silu, **args)
    assert y_q.dtype == torch.int8 and y_q.shape == (bsz, seqlen, c)
    assert new_state.dtype == torch.int8 and new_state.shape == (bsz, c, k - 1)
    ref, ref_state = _loop_ref(x_q, args["x_scale"], args["w_q"], args["w_scale"], args["b_q"],
                               args["b_scale"], args["out_scale"], state, silu)
    _check_lsb(y_q, ref)
    assert torch.equal(new_state, ref_state)


def test_scalar_scales_equal_broadcast_vectors():
    g = _gen(5)
    c, k = 5, 4
    x_q = _i8((1, 6, c), g)
    a_vec = _mamba1_args(_gen(9), c, k, scalar=False)
    a_sca = _mamba1_args(_gen(9), c, k, scalar=True)
    y1, s1 = quant_causal_conv1d(x_q, **a_vec)
    y2, s2 = quant_causal_conv1d(x_q, **a_sca)
    assert torch.equal(y1, y2) and torch.equal(s1, s2)


@pytest.mark.parametrize("splits", [[3, 4], [1, 1, 1, 1, 1, 1, 1], [2, 5], [1, 2, 4]])
def test_state_continuation_equals_one_shot(splits):
    g = _gen(11)
    bsz, c, k = 2, 4, 4
    args = _mamba1_args(g, c, k)
    x_q = _i8((bsz, sum(splits), c), g)
    state0 = _i8((bsz, c, k - 1), g)
    y_full, s_full = quant_causal_conv1d(x_q, conv_state=state0, **args)
    ys, s = [], state0
    pos = 0
    for n in splits:
        y, s = quant_causal_conv1d(x_q[:, pos:pos + n], conv_state=s, **args)
        ys.append(y)
        pos += n
    assert torch.equal(torch.cat(ys, dim=1), y_full)
    assert torch.equal(s, s_full)


def test_short_input_keeps_part_of_old_state():
    c, k = 2, 4
    state = torch.tensor([[[1, 2, 3], [4, 5, 6]]], dtype=torch.int8)
    x_q = torch.tensor([[[7, 8]]], dtype=torch.int8)  # [B=1, L=1, C=2]
    _, s = quant_causal_conv1d(x_q, 1.0, torch.zeros(c, k, dtype=torch.int8), 1.0, None, None, 1.0,
                               conv_state=state)
    assert s.tolist() == [[[2, 3, 7], [5, 6, 8]]]


def test_ties_and_saturation():
    # K = 2, taps [0, 1]: y = x; scales 1, out_scale 2, no SiLU -> x/2
    w = torch.tensor([[0, 1]], dtype=torch.int8)
    x = torch.tensor([[[1], [3], [5], [-5], [-1], [7]]], dtype=torch.int8)
    y, _ = quant_causal_conv1d(x, 1.0, w, 1.0, None, None, 2.0, silu=False)
    assert y.flatten().tolist() == [0, 2, 2, -2, 0, 4]
    # saturation both ways
    x = torch.tensor([[[127], [-128]]], dtype=torch.int8)
    w = torch.tensor([[0, 127]], dtype=torch.int8)
    y, _ = quant_causal_conv1d(x, 1.0, w, 1.0, None, None, 1.0, silu=False)
    assert y.flatten().tolist() == [127, -128]
    # with SiLU the negative side is bounded (min silu ~ -0.278): tiny out_scale still clamps to -128
    y, _ = quant_causal_conv1d(torch.tensor([[[-2]]], dtype=torch.int8), 1.0, w, 0.01, None, None, 1e-4)
    assert y.item() == -128


def test_mamba2_segment_scales_and_fp_consistency():
    """x | B | C channels with different input/weight/bias/out scales (one op for both generations),
    and agreement with the FP conv on dequantized tensors."""
    g = _gen(21)
    e, gn, k, bsz, seqlen = 8, 3, 4, 2, 5
    c = e + 2 * gn
    sizes = [e, gn, gn]
    xs = expand_segment_scales([0.03, 0.05, 0.07], sizes)
    ws = expand_segment_scales([0.004, 0.006, 0.002], sizes)
    bs = expand_segment_scales([0.01, 0.02, 0.03], sizes)
    out_x = torch.rand(e, generator=g) * 0.01 + 0.005
    os_ = conv_channel_scales(out_x, torch.full((gn,), 0.02), torch.full((gn,), 0.03))
    w_q, b_q = _i8((c, k), g), _i8((c,), g)
    x_q = _i8((bsz, seqlen, c), g)
    state = _i8((bsz, c, k - 1), g)
    y_q, new_state = quant_causal_conv1d(x_q, xs, w_q, ws, b_q, bs, os_, conv_state=state)
    ref, ref_state = _loop_ref(x_q, xs, w_q, ws, b_q, bs, os_, state, True)
    _check_lsb(y_q, ref)
    assert torch.equal(new_state, ref_state)
    # the FP conv on dequantized inputs/weights gives the same pre-quantization values
    y_fp, st_fp = ssm.causal_conv1d(x_q.float() * xs, w_q.float() * ws[:, None], b_q.float() * bs,
                                    conv_state=state.float() * xs[:, None], activation="silu")
    _check_lsb(y_q, (y_fp / os_).double().numpy())
    assert torch.equal(st_fp, new_state.float() * xs[:, None])


def test_conv_errors():
    with pytest.raises(TypeError):
        quant_causal_conv1d(torch.zeros(1, 2, 3), 1.0, torch.zeros(3, 4, dtype=torch.int8), 1.0,
                            None, None, 1.0)
    with pytest.raises(ValueError):
        quant_causal_conv1d(torch.zeros(1, 2, 3, dtype=torch.int8), torch.ones(2),
                            torch.zeros(3, 4, dtype=torch.int8), 1.0, None, None, 1.0)
    with pytest.raises(ValueError):
        quant_causal_conv1d(torch.zeros(1, 2, 3, dtype=torch.int8), 1.0, torch.zeros(3, 4, dtype=torch.int8),
                            1.0, None, None, 1.0, conv_state=torch.zeros(1, 3, 2, dtype=torch.int8))
