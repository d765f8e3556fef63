"""QuantSelectiveScan / QuantSelectiveStateUpdate (Mamba1) against a float64 token-loop reference."""

import numpy as np
import pytest
import torch

from quamba_edge.ops import quant_selective_scan, quant_selective_state_update
from quamba_edge.ops._common import softplus20

E, N = 6, 4


def _f32(v):
    return float(np.float32(v))


def _make(seed, bsz, seqlen, z=True, D=True, dt_bias=True):
    g = torch.Generator().manual_seed(seed)

    def i8(*shape):
        return torch.randint(-128, 128, shape, generator=g).to(torch.int8)

    a_log = torch.log(torch.arange(1, N + 1, dtype=torch.float32)).repeat(E, 1)
    a_log = a_log + 0.1 * torch.rand(E, N, generator=g)
    a_scale = float(a_log.abs().max()) / 127
    p = dict(
        u_q=i8(bsz, seqlen, E), u_scale=0.021,
        dt_q=i8(bsz, seqlen, E), dt_scale=0.017,
        A_log_q=torch.clamp(torch.round(a_log / a_scale), -128, 127).to(torch.int8), A_log_scale=a_scale,
        B_q=i8(bsz, seqlen, N), B_scale=0.013,
        C_q=i8(bsz, seqlen, N), C_scale=0.011,
        D_q=i8(E) if D else None, D_scale=0.009 if D else None,
        z_q=i8(bsz, seqlen, E) if z else None, z_scale=0.03 if z else None,
        dt_bias_q=i8(E) if dt_bias else None, dt_bias_scale=0.008 if dt_bias else None,
    )
    return p, g


def _deq(q, s):
    return None if q is None else q.double().numpy() * _f32(s)


def _softplus20(x):
    return np.where(x > 20, x, np.log1p(np.exp(np.minimum(x, 20))))


def _ref(p, h0):
    """float64 loop over tokens. Returns y [B, L, E] and the final state [B, E, N]."""
    u, B, C = _deq(p["u_q"], p["u_scale"]), _deq(p["B_q"], p["B_scale"]), _deq(p["C_q"], p["C_scale"])
    dt = _deq(p["dt_q"], p["dt_scale"])
    if p["dt_bias_q"] is not None:
        dt = dt + _deq(p["dt_bias_q"], p["dt_bias_scale"])
    delta = _softplus20(dt)
    A = -np.exp(_deq(p["A_log_q"], p["A_log_scale"]))
    D = _deq(p["D_q"], p["D_scale"])
    bsz, seqlen, _ = u.shape
    h = np.zeros((bsz, E, N)) if h0 is None else h0.copy()
    y = np.zeros((bsz, seqlen, E))
    for t in range(seqlen):
        h = np.exp(delta[:, t, :, None] * A) * h + (delta[:, t] * u[:, t])[:, :, None] * B[:, t, None, :]
        y[:, t] = (h * C[:, t, None, :]).sum(-1)
        if D is not None:
            y[:, t] += D * u[:, t]
    if p["z_q"] is not None:
        z = _deq(p["z_q"], p["z_scale"])
        y = y * z / (1 + np.exp(-z))
    return y, h


def _close(y, ref, rtol=1e-4):
    np.testing.assert_allclose(y.numpy(), ref, rtol=rtol, atol=rtol * np.abs(ref).max())


def _assert_state_lsb(q, h64, scale):
    ref = np.clip(np.rint(h64 / _f32(scale)), -128, 127)
    diff = np.abs(q.to(torch.int64).numpy() - ref)
    assert diff.max() <= 1


@pytest.mark.parametrize("seqlen", [1, 5, 9])
@pytest.mark.parametrize("opts", [dict(), dict(z=False), dict(D=False, dt_bias=False)])
def test_scan_int8_state_round_trip(seqlen, opts):
    p, g = _make(seqlen, 2, seqlen, **opts)
    state_scale = 0.012
    state_in = torch.randint(-128, 128, (2, E, N), generator=g).to(torch.int8)
    y, s_out = quant_selective_scan(**p, state_in=state_in, state_scale=state_scale, chunk_size=4)
    assert y.dtype == torch.float32 and y.shape == (2, seqlen, E)
    assert s_out.dtype == torch.int8 and s_out.shape == (2, E, N)
    y_ref, h_ref = _ref(p, state_in.double().numpy() * _f32(state_scale))
    _close(y, y_ref)
    _assert_state_lsb(s_out, h_ref, state_scale)


def test_scan_zero_and_float_state():
    p, _ = _make(3, 1, 7)
    y0, s0 = quant_selective_scan(**p)  # no state at all: zeros in, fp32 out
    assert s0.dtype == torch.float32
    y_ref, h_ref = _ref(p, None)
    _close(y0, y_ref)
    np.testing.assert_allclose(s0.numpy(), h_ref, rtol=1e-4, atol=1e-6)


def _slice(p, a, b):
    out = dict(p)
    for k in ("u_q", "dt_q", "B_q", "C_q", "z_q"):
        if out[k] is not None:
            out[k] = p[k][:, a:b]
    return out


@pytest.mark.parametrize("splits", [[4, 5], [1, 8], [3, 3, 3], [1] * 9])
def test_scan_chunked_with_state_equals_one_shot(splits):
    p, g = _make(7, 2, sum(splits))
    h0 = torch.randn(2, E, N, generator=g) * 0.3
    y_full, s_full = quant_selective_scan(**p, state_in=h0)
    ys, s, pos = [], h0, 0
    for n in splits:
        y, s = quant_selective_scan(**_slice(p, pos, pos + n), state_in=s)
        ys.append(y)
        pos += n
    torch.testing.assert_close(torch.cat(ys, 1), y_full, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(s, s_full, rtol=1e-5, atol=1e-6)


def test_scan_chunk_size_is_only_a_speed_knob():
    p, _ = _make(8, 1, 11)
    y1, s1 = quant_selective_scan(**p, chunk_size=1)
    y2, s2 = quant_selective_scan(**p, chunk_size=4)
    y3, s3 = quant_selective_scan(**p, chunk_size=64)
    for y, s in ((y2, s2), (y3, s3)):
        torch.testing.assert_close(y, y1, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(s, s1, rtol=1e-5, atol=1e-6)


def _token(p, t, keep_dim):
    out = dict(p)
    for k in ("u_q", "dt_q", "B_q", "C_q", "z_q"):
        if out[k] is not None:
            out[k] = p[k][:, t:t + 1] if keep_dim else p[k][:, t]
    return out


@pytest.mark.parametrize("keep_dim", [False, True])
def test_update_equals_one_step_of_prefill(keep_dim):
    p, g = _make(9, 3, 1)
    state_scale = 0.012
    state = torch.randint(-128, 128, (3, E, N), generator=g).to(torch.int8)
    y_pre, s_pre = quant_selective_scan(**p, state_in=state, state_scale=state_scale)
    y_dec, s_dec = quant_selective_state_update(**_token(p, 0, keep_dim), state=state,
                                                state_scale=state_scale)
    assert y_dec.shape == ((3, 1, E) if keep_dim else (3, E))
    torch.testing.assert_close(y_dec.reshape(3, 1, E), y_pre, rtol=1e-5, atol=1e-6)
    assert s_dec.dtype == torch.int8
    assert (s_dec.to(torch.int64) - s_pre.to(torch.int64)).abs().max() <= 1
    y_ref, h_ref = _ref(p, state.double().numpy() * _f32(state_scale))
    _close(y_dec.reshape(3, 1, E), y_ref)
    _assert_state_lsb(s_dec, h_ref, state_scale)


def test_decode_loop_with_float_state_equals_prefill():
    p, g = _make(10, 2, 6)
    h0 = torch.randn(2, E, N, generator=g) * 0.3
    y_full, s_full = quant_selective_scan(**p, state_in=h0)
    s, ys = h0, []
    for t in range(6):
        y, s = quant_selective_state_update(**_token(p, t, False), state=s, state_scale=None)
        ys.append(y)
    torch.testing.assert_close(torch.stack(ys, 1), y_full, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(s, s_full, rtol=1e-5, atol=1e-6)


def test_decode_requantizes_every_step_with_static_scale():
    p, g = _make(12, 1, 4)
    scale = 0.005
    s = torch.randint(-128, 128, (1, E, N), generator=g).to(torch.int8)
    for t in range(4):
        s_prev = s
        y, s = quant_selective_state_update(**_token(p, t, False), state=s_prev, state_scale=scale)
        one = _token(p, t, True)
        y_ref, h_ref = _ref(one, s_prev.double().numpy() * _f32(scale))
        _close(y.unsqueeze(1), y_ref)
        _assert_state_lsb(s, h_ref, scale)


def test_state_saturates():
    p, g = _make(13, 1, 5)
    state_in = torch.full((1, E, N), 127, dtype=torch.int8)
    state_in[..., ::2] = -128
    _, s = quant_selective_scan(**p, state_in=state_in, state_scale=1.0)
    _, s_tiny = quant_selective_scan(**p, state_in=state_in, state_scale=1e-6)
    assert set(s_tiny.unique().tolist()) <= {-128, 127, 0}
    assert s_tiny.max().item() == 127 and s_tiny.min().item() == -128
    assert s.dtype == torch.int8


def test_softplus_threshold():
    x = torch.tensor([-30.0, -1.0, 0.0, 19.5, 20.0, 20.5, 80.0])
    y = softplus20(x)
    assert y[-1].item() == 80.0 and y[-2].item() == 20.5  # identity above 20
    np.testing.assert_allclose(y[:5].numpy(), np.log1p(np.exp(x[:5].double().numpy())), rtol=1e-6)


def test_scan_state_dtype_errors():
    p, _ = _make(14, 1, 2)
    with pytest.raises(TypeError):
        quant_selective_scan(**p, state_in=torch.zeros(1, E, N, dtype=torch.int8), state_scale=None)
    with pytest.raises(TypeError):
        quant_selective_scan(**p, state_in=torch.zeros(1, E, N), state_scale=0.1)
