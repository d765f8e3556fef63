"""QuantSSD / QuantSSDStateUpdate (Mamba2) against a float64 token-loop reference, with grouped
(sort-and-cluster, per-SSD-group, per-state) scales."""

import numpy as np
import pytest
import torch

from quamba_edge.ops import quant_ssd, quant_ssd_state_update
from quamba_edge.ops.scales import expand_head_channel_scales, expand_head_channel_state_scales

H, P, N = 8, 4, 3


def _groups(ngroups):
    if ngroups == 1:
        return [[2, 2, 3, 1]], [[[1, 1, 1, 1], [2, 1, 1, 0], [1, 2, 1, 0], [4, 0, 0, 0]]]
    return ([[1, 1, 1, 1], [1, 2, 1, 0]],
            [[[1, 1, 1, 1], [1, 1, 2, 0], [2, 2, 0, 0], [1, 1, 1, 1]],
             [[3, 1, 0, 0], [1, 1, 1, 1], [1, 1, 1, 1], [4, 0, 0, 0]]])


def _make(seed, bsz, seqlen, ngroups, D=True, state_mag=0.02):
    g = torch.Generator().manual_seed(seed)

    def i8(*shape):
        return torch.randint(-128, 128, shape, generator=g).to(torch.int8)

    hg, cg = _groups(ngroups)
    x_table = torch.rand(ngroups, 4, 4, generator=g) * 0.03 + 0.005
    s_table = torch.rand(ngroups, 4, 4, N, generator=g) * state_mag + state_mag / 4
    a_log = torch.log(torch.arange(1, H + 1, dtype=torch.float32))
    a_scale = float(a_log.abs().max()) / 127
    p = dict(
        x_q=i8(bsz, seqlen, H, P), x_scale=expand_head_channel_scales(x_table, hg, cg, H, P),
        dt_q=i8(bsz, seqlen, H), dt_scale=0.019,
        dt_bias=torch.randn(H, generator=g).to(torch.float16),
        A_log_q=torch.clamp(torch.round(a_log / a_scale), -128, 127).to(torch.int8), A_log_scale=a_scale,
        B_q=i8(bsz, seqlen, ngroups, N), B_scale=torch.rand(ngroups, generator=g) * 0.02 + 0.005,
        C_q=i8(bsz, seqlen, ngroups, N), C_scale=torch.rand(ngroups, generator=g) * 0.02 + 0.005,
        D_q=i8(H) if D else None, D_scale=0.01 if D else None,
    )
    state_scale = expand_head_channel_state_scales(s_table, hg, cg, H, P)
    return p, state_scale, g


def _deq(q, s):
    s = s.double().numpy() if isinstance(s, torch.Tensor) else float(np.float32(s))
    return q.double().numpy() * s


def _ref(p, s0, dt_limit=(0.0, np.inf)):
    x = _deq(p["x_q"], p["x_scale"])
    G = p["B_q"].shape[-2]
    B = _deq(p["B_q"], p["B_scale"][:, None])
    C = _deq(p["C_q"], p["C_scale"][:, None])
    dt = _deq(p["dt_q"], p["dt_scale"]) + p["dt_bias"].double().numpy()
    delta = np.clip(np.where(dt > 20, dt, np.log1p(np.exp(np.minimum(dt, 20)))), *dt_limit)
    A = -np.exp(_deq(p["A_log_q"], p["A_log_scale"]))
    D = None if p["D_q"] is None else _deq(p["D_q"], p["D_scale"])
    bsz, seqlen = x.shape[:2]
    S = np.zeros((bsz, H, P, N)) if s0 is None else s0.copy()
    y = np.zeros((bsz, seqlen, H, P))
    hpg = H // G
    for t in range(seqlen):
        for h in range(H):
            gg = h // hpg
            S[:, h] = (np.exp(delta[:, t, h] * A[h])[:, None, None] * S[:, h]
                       + (delta[:, t, h, None] * x[:, t, h])[:, :, None] * B[:, t, gg, None, :])
            y[:, t, h] = (S[:, h] * C[:, t, gg, None, :]).sum(-1)
            if D is not None:
                y[:, t, h] += D[h] * x[:, t, h]
    return y, S


def _close(y, ref, rtol=1e-4):
    np.testing.assert_allclose(y.numpy(), ref, rtol=rtol, atol=rtol * np.abs(ref).max())


def _assert_state_lsb(q, s64, scale):
    ref = np.clip(np.rint(s64 / scale.double().numpy()), -128, 127)
    assert np.abs(q.to(torch.int64).numpy() - ref).max() <= 1


@pytest.mark.parametrize("ngroups", [1, 2])
@pytest.mark.parametrize("seqlen", [1, 6, 11])
@pytest.mark.parametrize("D", [True, False])
def test_ssd_int8_state_round_trip(ngroups, seqlen, D):
    p, sc, g = _make(seqlen + 10 * ngroups, 2, seqlen, ngroups, D=D)
    state_in = torch.randint(-128, 128, (2, H, P, N), generator=g).to(torch.int8)
    y, s_out = quant_ssd(**p, chunk_size=4, state_in=state_in, state_scale=sc)
    assert y.dtype == torch.float32 and y.shape == (2, seqlen, H, P)
    assert s_out.dtype == torch.int8 and s_out.shape == (2, H, P, N)
    y_ref, s_ref = _ref(p, state_in.double().numpy() * sc.double().numpy())
    _close(y, y_ref)
    _assert_state_lsb(s_out, s_ref, sc)
    assert (s_out.abs() >= 127).float().mean() < 0.5  # mostly in range: the test is not all clamps


def test_ssd_dt_limit_and_zero_state():
    p, _, _ = _make(3, 1, 7, 2)
    lim = (0.05, 0.3)
    y, s = quant_ssd(**p, chunk_size=3, dt_limit=lim)
    assert s.dtype == torch.float32
    y_ref, s_ref = _ref(p, None, lim)
    _close(y, y_ref)
    np.testing.assert_allclose(s.numpy(), s_ref, rtol=1e-4, atol=1e-6)
    y_nolim, _ = quant_ssd(**p, chunk_size=3)
    assert not torch.allclose(y, y_nolim)


def _slice(p, a, b):
    out = dict(p)
    for k in ("x_q", "dt_q", "B_q", "C_q"):
        out[k] = p[k][:, a:b]
    return out


@pytest.mark.parametrize("ngroups", [1, 2])
@pytest.mark.parametrize("splits", [[4, 5], [1, 8], [3, 3, 3], [2, 7]])
def test_ssd_chunked_with_state_equals_one_shot(ngroups, splits):
    p, _, g = _make(5, 2, sum(splits), ngroups)
    s0 = torch.randn(2, H, P, N, generator=g) * 0.2
    y_full, s_full = quant_ssd(**p, chunk_size=4, state_in=s0)
    ys, s, pos = [], s0, 0
    for n in splits:
        y, s = quant_ssd(**_slice(p, pos, pos + n), chunk_size=4, state_in=s)
        ys.append(y)
        pos += n
    torch.testing.assert_close(torch.cat(ys, 1), y_full, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(s, s_full, rtol=1e-5, atol=1e-5)


def test_ssd_chunk_size_affects_rounding_only():
    p, _, _ = _make(6, 1, 13, 2)
    y1, s1 = quant_ssd(**p, chunk_size=1)
    for cs in (4, 5, 256):
        y, s = quant_ssd(**p, chunk_size=cs)
        torch.testing.assert_close(y, y1, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(s, s1, rtol=1e-5, atol=1e-5)


def _token(p, t, keep_dim):
    out = dict(p)
    for k in ("x_q", "dt_q", "B_q", "C_q"):
        out[k] = p[k][:, t:t + 1] if keep_dim else p[k][:, t]
    return out


@pytest.mark.parametrize("ngroups", [1, 2])
@pytest.mark.parametrize("keep_dim", [False, True])
def test_update_equals_one_step_of_prefill(ngroups, keep_dim):
    p, sc, g = _make(7, 3, 1, ngroups)
    state = torch.randint(-128, 128, (3, H, P, N), generator=g).to(torch.int8)
    lim = (0.0, float("inf"))
    y_pre, s_pre = quant_ssd(**p, chunk_size=4, state_in=state, state_scale=sc)
    y_dec, s_dec = quant_ssd_state_update(**_token(p, 0, keep_dim), dt_limit=lim, state=state, state_scale=sc)
    assert y_dec.shape == ((3, 1, H, P) if keep_dim else (3, H, P))
    torch.testing.assert_close(y_dec.reshape(3, 1, H, P), y_pre, rtol=1e-5, atol=1e-5)
    assert s_dec.dtype == torch.int8
    assert (s_dec.to(torch.int64) - s_pre.to(torch.int64)).abs().max() <= 1
    y_ref, s_ref = _ref(p, state.double().numpy() * sc.double().numpy())
    _close(y_dec.reshape(3, 1, H, P), y_ref)
    _assert_state_lsb(s_dec, s_ref, sc)


def test_decode_loop_float_state_equals_prefill_and_int8_requant_each_step():
    p, sc, g = _make(8, 2, 5, 2)
    lim = (0.0, float("inf"))
    s0 = torch.randn(2, H, P, N, generator=g) * 0.2
    y_full, s_full = quant_ssd(**p, chunk_size=2, state_in=s0)
    s, ys = s0, []
    for t in range(5):
        y, s = quant_ssd_state_update(**_token(p, t, False), dt_limit=lim, state=s, state_scale=None)
        ys.append(y)
    torch.testing.assert_close(torch.stack(ys, 1), y_full, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(s, s_full, rtol=1e-5, atol=1e-5)
    # int8: every step dequantizes with the static scale, updates in fp32, y from the fp32 state,
    # requantizes with the same scale
    s = torch.randint(-128, 128, (2, H, P, N), generator=g).to(torch.int8)
    for t in range(5):
        s_prev = s
        y, s = quant_ssd_state_update(**_token(p, t, False), dt_limit=lim, state=s_prev, state_scale=sc)
        y_ref, s_ref = _ref(_token(p, t, True), s_prev.double().numpy() * sc.double().numpy())
        _close(y.unsqueeze(1), y_ref)
        _assert_state_lsb(s, s_ref, sc)


def test_ssd_state_saturates():
    p, sc, g = _make(9, 1, 4, 1)
    state_in = torch.full((1, H, P, N), 127, dtype=torch.int8)
    state_in[..., 1] = -128
    _, s = quant_ssd(**p, chunk_size=4, state_in=state_in, state_scale=torch.full((H, P, N), 1.0))
    _, s_tiny = quant_ssd(**p, chunk_size=4, state_in=state_in, state_scale=1e-6)
    assert s_tiny.max().item() == 127 and s_tiny.min().item() == -128
    assert set(s_tiny.unique().tolist()) <= {-128, 0, 127}
    assert s.dtype == torch.int8


def test_ssd_shape_error():
    p, _, _ = _make(1, 1, 2, 1)
    p["x_q"] = p["x_q"].reshape(1, 2, H * P)
    with pytest.raises(ValueError):
        quant_ssd(**p, chunk_size=4)
