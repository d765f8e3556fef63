"""Quantized modules (quamba_edge.quant.qlinear / qmamba1 / qmamba2 / qconfig): buffers, agreement with
the reference ops they wrap, closeness to float within quantization tolerance, config round trips."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from quamba_edge import ops
from quamba_edge.models import MambaConfig
from quamba_edge.models.mamba1 import Mamba1Mixer
from quamba_edge.models.mamba2 import Mamba2Mixer
from quamba_edge.models.ssm import rms_norm
from quamba_edge.quant.gptq import gptq_quantize
from quamba_edge.quant.packing import unpack_int4
from quamba_edge.quant.qconfig import VALID_COMBOS, QuantConfig
from quamba_edge.quant.qlinear import (
    FPLinear,
    QuantAddRMSNorm,
    QuantEmbedding,
    W4A8Linear,
    W4A16Linear,
    W8A8Linear,
    W8A8SegmentLinear,
)
from quamba_edge.quant.qmamba1 import QMamba1Mixer
from quamba_edge.quant.qmamba2 import QMamba2Mixer
from quamba_edge.quant.quantize import fake_quant


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def _act(shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g)


# ---- W8A8 ---------------------------------------------------------------------------------------


def test_w8a8_linear_per_tensor_matches_op_and_float():
    w = _act((48, 96), 1) * 0.05
    x = _act((2, 5, 96), 2)
    s_in = x.abs().max() / 127
    y_fp = F.linear(x, w)
    s_out = y_fp.abs().max() / 127
    lin = W8A8Linear.from_float(w, s_in, s_out)
    assert lin.weight.dtype == torch.int8 and lin.weight_scale.shape == (1,) and lin.output_scale.shape == (1,)
    assert torch.allclose(lin.weight_scale, w.abs().max() / 127)
    x_q = ops._common.quantize_int8(x, s_in)
    y_q = lin(x_q)
    ref = ops.w8a8_linear(x_q, s_in, lin.weight, lin.weight_scale[0], None, s_out)
    assert torch.equal(y_q, ref)
    # dequantized int8 output vs the float layer: a few LSB of the output scale
    assert (y_q.float() * s_out - y_fp).abs().max() <= 4 * s_out
    # float-output variant
    lin16 = W8A8Linear.from_float(w, s_in, None)
    assert lin16.output_scale is None
    assert _rel(lin16(x_q), y_fp) < 0.02
    assert torch.allclose(lin16(x_q), F.linear(x_q.float() * s_in, lin16.dequantized_weight()), atol=1e-5)


def test_w8a8_segment_linear_in_proj_layout():
    sizes = (32, 32, 8, 8, 4)  # z | x | B | C | dt
    w = torch.cat([_act((n, 40), 10 + i) * (0.01 * (i + 1)) for i, n in enumerate(sizes)])
    x = _act((3, 40), 3)
    s_in = x.abs().max() / 127
    y_fp = F.linear(x, w)
    seg_out = torch.stack([y_fp[:, a:a + n].abs().max() / 127
                           for a, n in zip([0, 32, 64, 72, 80], sizes)])
    lin = W8A8SegmentLinear.from_float(w, s_in, seg_out, segments=sizes)
    assert lin.weight_scale.shape == (5,) and lin.output_scale.shape == (5,)
    for i, (a, n) in enumerate(zip([0, 32, 64, 72, 80], sizes)):
        assert torch.allclose(lin.weight_scale[i], w[a:a + n].abs().max() / 127)
    x_q = ops._common.quantize_int8(x, s_in)
    y_q = lin(x_q)
    rows = ops.expand_segment_scales(seg_out, sizes)
    assert torch.equal(y_q, ops.w8a8_linear(x_q, s_in, lin.weight, ops.expand_segment_scales(
        lin.weight_scale, sizes), None, rows))
    assert ((y_q.float() * rows - y_fp).abs() <= 4 * rows).all()


# ---- W4 -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [96, 256, 200])  # per-channel branch, two groups, short last group
def test_w4a8_linear_two_level_and_gptq(k):
    w = _act((24, k), 4) * 0.05
    x = _act((64, k), 5)
    s_in = x.abs().max() / 127
    res = gptq_quantize(w, x, bits=4, group_size=128)
    lin = W4A8Linear.from_float(w, s_in, None, gptq_result=res, group_size=128)
    assert lin.qweight.dtype == torch.uint8 and lin.qweight.shape == (24, (k + 1) // 2)
    assert torch.equal(unpack_int4(lin.qweight, k), res.codes)  # packed GPTQ codes
    assert lin.group_size == (k if k <= 128 else 128)
    # the double quantization (int4 -> fp16 -> int8 per channel) stays close to the GPTQ weight
    wd = lin.dequantized_weight()
    assert (wd - res.weight).abs().max() <= lin.s_channel.max() * 0.51 + 1e-7
    x_q = ops._common.quantize_int8(x, s_in)
    y = lin(x_q)
    ref = ops.w4a8_linear(x_q, s_in, lin.codes(), lin.s_group, lin.s_channel, lin.group_size)
    assert torch.equal(y, ref)
    assert torch.allclose(y, F.linear(x_q.float() * s_in, wd), rtol=1e-4, atol=1e-4)
    assert _rel(y, F.linear(x, w)) < 0.25  # 4-bit weights
    # RTN path and int8 output with per-segment scales
    seg = (16, 8)
    out = F.linear(x, w)
    s_out = torch.stack([out[:, :16].abs().max(), out[:, 16:].abs().max()]) / 127
    lin8 = W4A8Linear.from_float(w, s_in, s_out, group_size=128, segments=seg)
    y8 = lin8(x_q)
    assert y8.dtype == torch.int8
    assert torch.equal(y8, ops.w4a8_linear(x_q, s_in, lin8.codes(), lin8.s_group, lin8.s_channel,
                                           lin8.group_size, ops.expand_segment_scales(s_out, seg)))


def test_w4a16_linear_matches_op_and_float():
    w = _act((20, 256), 6) * 0.05
    x = _act((4, 256), 7)
    lin = W4A16Linear.from_float(w, None, 128)
    assert lin.scale.dtype == torch.float16 and lin.scale.shape == (20, 2)
    y = lin(x)
    assert torch.equal(y, ops.w4a16_linear(x, lin.codes(), lin.scale, 128))
    assert torch.allclose(y, F.linear(x, lin.dequantized_weight()), atol=1e-5)
    assert _rel(y, F.linear(x, w)) < 0.25
    with pytest.raises(ValueError, match="does not match"):
        W4A16Linear.from_float(w, gptq_quantize(w[:, :128], x[:, :128]), 128)


def test_fp_linear_and_embedding():
    w = _act((50, 32), 8)
    lin = FPLinear.from_float(w, dtype=torch.float16)
    assert lin.weight.dtype == torch.float16
    x = _act((3, 32), 9)
    assert torch.allclose(lin(x), F.linear(x, w.half().float()))
    ids = torch.randint(0, 50, (2, 7))
    for bits, tol in ((8, 0.5 / 127 * 1.002), (4, 0.5 / 8 * 1.002)):  # half a step (fp16 scale)
        emb = QuantEmbedding.from_float(w, bits)
        assert emb.row_scale.dtype == torch.float16
        out = emb(ids)
        assert torch.equal(out, ops.quant_embedding(ids, emb.table(), emb.row_scale, bits))
        rowmax = w.amax(1)
        # values inside the representable range [qmin*s, qmax*s] are within half a step
        rm = rowmax[ids].unsqueeze(-1)
        err = (out - w[ids]).abs() / rm
        lo, hi = (-128 / 127, 1.0) if bits == 8 else (-1.0, 7 / 8)
        inside = (w[ids] >= lo * rm) & (w[ids] <= hi * rm)
        assert err[inside].max() <= tol
    emb4 = QuantEmbedding.from_float(w[:, :31], 4)  # odd width packs with a pad nibble
    assert emb4.weight.shape == (50, 16)
    assert emb4(ids).shape == (2, 7, 31)
    emb16 = QuantEmbedding.from_float(w, 16)
    assert torch.equal(emb16(ids), w.half().float()[ids])


def test_quant_add_rms_norm():
    class N(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(1 + 0.1 * _act((32,), 11))
            self.eps = 1e-5

    hidden, residual = _act((2, 4, 32), 12), _act((2, 4, 32), 13)
    y_ref = rms_norm(hidden + residual, N().weight.half().float(), 1e-5)
    s = y_ref.abs().max() / 127
    norm = QuantAddRMSNorm.from_float(N(), s)
    y_q, res = norm(hidden, residual)
    assert y_q.dtype == torch.int8 and torch.allclose(res, hidden + residual)
    assert (y_q.float() * s - y_ref).abs().max() <= 0.5 * s + 1e-6
    y_f, _ = QuantAddRMSNorm.from_float(N(), None)(hidden, residual)
    assert torch.allclose(y_f, y_ref, atol=1e-5)


# ---- config ------------------------------------------------------------------------------------


def test_quant_config_defaults_and_round_trip():
    for recipe, bits, arch in VALID_COMBOS:
        qc = QuantConfig(recipe, bits, arch)
        d = json.loads(json.dumps(qc.to_dict()))
        assert QuantConfig.from_dict(d) == qc
        assert (qc.w_bits, qc.a_bits) == (4 if bits.startswith("w4") else 8, 16 if bits == "w4a16" else 8)
    v1 = QuantConfig("quamba", "w8a8", "mamba1")
    assert v1.percentile_alpha == 0.99999 and v1.ssm_state_bits == 16 and not v1.residual_rotation
    assert not v1.quantize_embedding and not v1.quantize_lm_head
    q2 = QuantConfig("quamba2", "w4a8", "mamba2", head_groups=[[[2, 2]]], channel_groups=[[[[8, 8], [16, 0]]]])
    assert q2.percentile_alpha == 0.9995 and q2.ssm_state_bits == 8 and q2.group_heads and q2.gptq
    assert QuantConfig.from_dict(q2.to_dict()).channel_groups == [[[[8, 8], [16, 0]]]]
    assert not QuantConfig("quamba2", "w4a16", "mamba2").group_heads


@pytest.mark.parametrize("kw, msg", [
    (dict(recipe="quamba3"), "valid recipes"),
    (dict(recipe="quamba", bits="w4a8"), "quamba/w8a8/mamba1"),
    (dict(bits="w8a16"), "valid"),
    (dict(arch="mamba3"), "mamba1"),
    (dict(bits="w4a16", ssm_state_bits=8), "8-bit activations"),
    (dict(arch="mamba1", group_heads=True), "mamba2"),
])
def test_quant_config_errors(kw, msg):
    base = dict(recipe="quamba2", bits="w8a8", arch="mamba1")
    base.update(kw)
    with pytest.raises(ValueError, match=msg):
        QuantConfig(**base)
    with pytest.raises(ValueError, match="unknown QuantConfig fields"):
        QuantConfig.from_dict({**QuantConfig().to_dict(), "bogus": 1})


# ---- mixers: tap names, skeleton buffers -----------------------------------------------------------


def _taps(m):
    return sorted(n for n, c in m.named_children() if type(c) is torch.nn.Identity)


@pytest.mark.parametrize("bits", ["w8a8", "w4a8", "w4a16"])
def test_mixer_skeletons_keep_fp_tap_names(bits):
    c1 = MambaConfig(arch="mamba1", d_model=32, n_layer=1, vocab_size=64, d_state=8)
    q1 = QMamba1Mixer(c1, QuantConfig("quamba2", bits, "mamba1"), 0)
    assert _taps(q1) == _taps(Mamba1Mixer(c1))
    c2 = MambaConfig(arch="mamba2", d_model=32, n_layer=1, vocab_size=64, d_state=8, headdim=8, ngroups=2)
    qc2 = QuantConfig("quamba2", bits, "mamba2", group_heads=False)
    q2 = QMamba2Mixer(c2, qc2, 0)
    assert _taps(q2) == _taps(Mamba2Mixer(c2))
    sd = q1.state_dict()
    if bits == "w4a16":
        assert sd["in_proj.qweight"].dtype == torch.uint8 and "ssm_state_scale" not in sd
        assert sd["conv1d.weight"].dtype == torch.float16
    else:
        assert sd["dt_proj.weight"].dtype == torch.int8  # dt_proj W8A8 also under W4A8 (spec F.24)
        assert sd["A_log"].dtype == torch.int8 and sd["ssm_state_scale"].shape == ()
        sd2 = q2.state_dict()
        assert sd2["in_proj.output_scale"].shape == (5,) and sd2["conv1d.input_scale"].shape == (3,)
        assert sd2["x_out_scale"].shape == (2, 1, 1) and sd2["ssm_state_scale"].shape == (2, 1, 1, 8)
        assert sd2["dt_bias"].dtype == torch.float16  # Mamba2 dt_bias stays float (spec C.7)


def test_quant_hadamard_fake_quant_consistency():
    """The A8 out_proj input path (QuantHadamard) equals Hadamard + fake quant used by fakequant."""
    from quamba_edge.quant.qlinear import online_hadamard_matrix

    y = _act((2, 3, 96), 14)
    m = online_hadamard_matrix(96)
    s = (y @ m.T).abs().max() / 127 * 0.8
    q = ops.quant_hadamard(y, m, s)
    assert torch.equal(q.float() * s, fake_quant(y @ m.T, s))


def test_memo_caches_until_a_source_changes():
    """Constant per-channel tables are built once per decode run (qlinear.memo), rebuilt after an in-place
    write to a source, and also under inference mode (the torch backends' forward)."""
    from torch import nn

    from quamba_edge.quant.qlinear import memo

    m, t, calls = nn.Module(), torch.ones(3), []

    def build():
        calls.append(1)
        return t * 2

    with torch.inference_mode():
        a, b = memo(m, "k", (t,), build), memo(m, "k", (t,), build)
    assert a is b and len(calls) == 1
    t.add_(1)
    assert float(memo(m, "k", (t,), build)[0]) == 4.0 and len(calls) == 2
    u = torch.ones(3)  # another tensor under the same name is another table
    memo(m, "k", (u,), build)
    assert len(calls) == 3
