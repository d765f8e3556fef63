"""QuantAddRMSNorm and QuantGatedRMSNorm against float64 references."""

import numpy as np
import pytest
import torch

from quamba_edge.models import ssm
from quamba_edge.ops import quant_add_rms_norm, quant_gated_rms_norm


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _q_ref(y64, scale):
    return np.clip(np.rint(np.asarray(y64, np.float64) / scale), -128, 127)


def _assert_lsb(q, q_ref, min_exact=0.98):
    diff = np.abs(q.to(torch.int64).numpy() - q_ref)
    assert diff.max() <= 1
    assert (diff == 0).mean() >= min_exact


def _rms_ref(s, w, eps):
    s = s.astype(np.float64)
    y = s / np.sqrt((s * s).mean(-1, keepdims=True) + eps)
    return y if w is None else y * w.astype(np.float64)


# ---------------------------------------------------------------------------------- QuantAddRMSNorm


@pytest.mark.parametrize("with_residual", [True, False])
@pytest.mark.parametrize("with_weight", [True, False])
def test_add_rms_norm_int8(with_residual, with_weight):
    g = _gen(1)
    d = 48
    h = torch.randn(2, 5, d, generator=g).to(torch.float16)
    r = torch.randn(2, 5, d, generator=g) * 3 if with_residual else None
    w = torch.rand(d, generator=g) + 0.5 if with_weight else None
    scale = 0.03
    q, res = quant_add_rms_norm(h, r, w, 1e-5, scale)
    assert q.dtype == torch.int8 and q.shape == h.shape
    s64 = h.double().numpy() + (r.double().numpy() if r is not None else 0.0)
    assert res.dtype == torch.float32
    assert torch.equal(res, h.float() + r if r is not None else h.float())
    y = _rms_ref(s64, None if w is None else w.numpy(), 1e-5)
    _assert_lsb(q, _q_ref(y, scale))


def test_add_rms_norm_float_out_and_residual_dtype():
    g = _gen(2)
    h = torch.randn(1, 3, 16, generator=g).to(torch.float16)
    r = torch.randn(1, 3, 16, generator=g).to(torch.float16)
    w = torch.rand(16, generator=g)
    y, res = quant_add_rms_norm(h, r, w, 1e-6, None, residual_in_fp32=False)
    assert y.dtype == torch.float32 and res.dtype == torch.float16
    s = h.double().numpy() + r.double().numpy()
    np.testing.assert_allclose(y.numpy(), _rms_ref(s, w.numpy(), 1e-6), rtol=1e-5, atol=1e-6)
    # same as the FP reference norm
    torch.testing.assert_close(y, ssm.rms_norm(h.float() + r.float(), w, 1e-6))


def test_add_rms_norm_ties_and_saturation():
    # s = 1 everywhere, eps = 0 -> rstd = 1 exactly, y = weight
    h = torch.ones(1, 1, 6)
    w = torch.tensor([0.5, 1.5, 2.5, -2.5, -0.5, 3.5])
    q, _ = quant_add_rms_norm(h, None, w, 0.0, 1.0)
    assert q.flatten().tolist() == [0, 2, 2, -2, 0, 4]
    w = torch.tensor([1e6, -1e6, 1.0, -1.0, 0.0, 0.0])
    q, _ = quant_add_rms_norm(h, torch.zeros(1, 1, 6), w, 0.0, 1e-3)
    assert q.flatten().tolist() == [127, -128, 127, -128, 0, 0]


# -------------------------------------------------------------------------------- QuantGatedRMSNorm


def _gated_ref(y, z, w, eps, gs, before):
    y = y.astype(np.float64)
    gz = z / (1.0 + np.exp(-z))
    v = y if before else y * gz
    sh = v.shape
    vg = v.reshape(*sh[:-1], sh[-1] // gs, gs)
    out = (vg / np.sqrt((vg * vg).mean(-1, keepdims=True) + eps)).reshape(sh) * w.astype(np.float64)
    return out * gz if before else out


@pytest.mark.parametrize("ngroups", [1, 2])
@pytest.mark.parametrize("norm_before_gate", [False, True])
@pytest.mark.parametrize("seqlen", [1, 5])
def test_gated_rms_norm(ngroups, norm_before_gate, seqlen):
    g = _gen(3)
    e = 32
    y = torch.randn(2, seqlen, e, generator=g).to(torch.float16)
    z_q = torch.randint(-128, 128, (2, seqlen, e), generator=g).to(torch.int8)
    z_scale = 0.04
    w = torch.rand(e, generator=g) + 0.5
    out = quant_gated_rms_norm(y, z_q, z_scale, w, 1e-5, e // ngroups, norm_before_gate)
    assert out.dtype == torch.float32 and out.shape == y.shape
    z64 = z_q.double().numpy() * np.float64(np.float32(z_scale))
    ref = _gated_ref(y.double().numpy(), z64, w.numpy(), 1e-5, e // ngroups, norm_before_gate)
    np.testing.assert_allclose(out.numpy(), ref, rtol=2e-5, atol=2e-5)
    # consistent with the FP model's gated norm on the dequantized gate
    fp = ssm.gated_rms_norm(y.float(), z_q.float() * z_scale, w, 1e-5, e // ngroups, norm_before_gate)
    torch.testing.assert_close(out, fp, rtol=1e-5, atol=1e-5)


def test_gated_rms_norm_errors():
    y = torch.zeros(1, 1, 8)
    with pytest.raises(ValueError):
        quant_gated_rms_norm(y, torch.zeros(1, 1, 8, dtype=torch.int8), 1.0, torch.ones(8), 1e-5, 3)
    with pytest.raises(TypeError):
        quant_gated_rms_norm(y, torch.zeros(1, 1, 8), 1.0, torch.ones(8), 1e-5, 8)
