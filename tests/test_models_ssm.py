"""Unit tests of the reference SSM math (quamba_edge.models.ssm) against naive per-token loops."""

from __future__ import annotations

import time

import pytest
import torch
import torch.nn.functional as F

from quamba_edge.models import MambaConfig, MambaLM
from quamba_edge.models.mamba1 import Mamba1Mixer
from quamba_edge.models.mamba2 import Mamba2Mixer
from quamba_edge.models.ssm import (
    causal_conv1d,
    gated_rms_norm,
    mamba2_dt,
    rms_norm,
    selective_scan,
    selective_state_update,
    ssd_chunked,
    ssd_state_update,
)

F64 = torch.float64


# ---- naive references (written independently of ssm.py: one token at a time) --------------------


def naive_selective_scan(u, delta, A, B, C, D, z, delta_bias, h0):
    dt = F.softplus(delta + delta_bias) if delta_bias is not None else F.softplus(delta)
    h = h0.clone()
    ys = []
    for t in range(u.shape[1]):
        h = torch.exp(dt[:, t, :, None] * A) * h + (dt[:, t] * u[:, t])[:, :, None] * B[:, t, None, :]
        y = (h * C[:, t, None, :]).sum(-1)
        if D is not None:
            y = y + D * u[:, t]
        if z is not None:
            y = y * F.silu(z[:, t])
        ys.append(y)
    return torch.stack(ys, 1), h


def naive_ssd(x, dt, A, B, C, D, h0):
    bsz, seqlen, nheads, headdim = x.shape
    ngroups = B.shape[2]
    s = h0.clone()
    ys = []
    for t in range(seqlen):
        y_t = torch.empty(bsz, nheads, headdim, dtype=x.dtype)
        for h in range(nheads):
            g = h // (nheads // ngroups)
            s[:, h] = (torch.exp(dt[:, t, h] * A[h])[:, None, None] * s[:, h]
                       + dt[:, t, h, None, None] * x[:, t, h, :, None] * B[:, t, g, None, :])
            y_t[:, h] = (s[:, h] * C[:, t, g, None, :]).sum(-1)
            if D is not None:
                y_t[:, h] += D[h] * x[:, t, h]
        ys.append(y_t)
    return torch.stack(ys, 1), s


def _m1_inputs(bsz=2, seqlen=37, e=6, n=4, seed=0, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=dtype)  # noqa: E731
    return dict(u=r(bsz, seqlen, e), delta=r(bsz, seqlen, e), A=-torch.rand(e, n, generator=g, dtype=dtype) * 4,
                B=r(bsz, seqlen, n), C=r(bsz, seqlen, n), D=r(e), z=r(bsz, seqlen, e), delta_bias=r(e) * 0.5,
                h0=r(bsz, e, n))


def _m2_inputs(bsz=2, seqlen=21, nheads=4, headdim=3, ngroups=2, n=5, seed=0, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=dtype)  # noqa: E731
    return dict(x=r(bsz, seqlen, nheads, headdim), dt=F.softplus(r(bsz, seqlen, nheads)),
                A=-torch.rand(nheads, generator=g, dtype=dtype) * 3, B=r(bsz, seqlen, ngroups, n),
                C=r(bsz, seqlen, ngroups, n), D=r(nheads), h0=r(bsz, nheads, headdim, n))


# ---- causal conv ------------------------------------------------------------------------------


def test_causal_conv1d_matches_padded_conv_and_chunks():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 11, 5, generator=g, dtype=F64)
    w = torch.randn(5, 4, generator=g, dtype=F64)
    b = torch.randn(5, generator=g, dtype=F64)
    ref = F.silu(F.conv1d(x.transpose(1, 2), w[:, None], b, padding=3, groups=5)[..., :11]).transpose(1, 2)
    y, st = causal_conv1d(x, w, b, None, "silu")
    torch.testing.assert_close(y, ref)
    torch.testing.assert_close(st, x[:, -3:].transpose(1, 2))  # last K-1 inputs, oldest first
    # two chunks and then single tokens, carrying the state
    y1, s1 = causal_conv1d(x[:, :2], w, b, None, "silu")  # shorter than K-1: left zero padding kept
    assert s1.shape == (2, 5, 3)
    y2, s2 = causal_conv1d(x[:, 2:7], w, b, s1, "silu")
    outs = [y1, y2]
    s = s2
    for t in range(7, 11):
        yt, s = causal_conv1d(x[:, t:t + 1], w, b, s, "silu")
        outs.append(yt)
    torch.testing.assert_close(torch.cat(outs, 1), ref)
    torch.testing.assert_close(s, st)


# ---- Mamba1 selective scan --------------------------------------------------------------------


@pytest.mark.parametrize("chunk_size", [1, 3, 5, 16, 64])
@pytest.mark.parametrize("with_state", [False, True])
def test_selective_scan_matches_naive_loop(chunk_size, with_state):
    p = _m1_inputs()
    h0 = p["h0"] if with_state else torch.zeros_like(p["h0"])
    y_ref, h_ref = naive_selective_scan(p["u"], p["delta"], p["A"], p["B"], p["C"], p["D"], p["z"],
                                        p["delta_bias"], h0)
    y, h = selective_scan(p["u"], p["delta"], p["A"], p["B"], p["C"], p["D"], p["z"], p["delta_bias"], True,
                          h0 if with_state else None, chunk_size=chunk_size)
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(h, h_ref, rtol=1e-10, atol=1e-10)


def test_selective_scan_without_D_z_bias_and_fp32():
    p = _m1_inputs(dtype=torch.float32, seqlen=50)
    y_ref, h_ref = naive_selective_scan(*(p[k].double() for k in ("u", "delta", "A", "B", "C")), None, None,
                                        None, torch.zeros_like(p["h0"]).double())
    y, h = selective_scan(p["u"], p["delta"], p["A"], p["B"], p["C"])
    assert y.dtype == torch.float32 and h.dtype == torch.float32
    torch.testing.assert_close(y.double(), y_ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(h.double(), h_ref, rtol=1e-4, atol=1e-5)


def test_selective_scan_split_equals_full():
    p = _m1_inputs(seqlen=40)
    args = lambda s: (p["u"][:, s], p["delta"][:, s], p["A"], p["B"][:, s], p["C"][:, s], p["D"],  # noqa: E731
                      p["z"][:, s], p["delta_bias"])
    y, h = selective_scan(*args(slice(None)), True, p["h0"])
    y1, h1 = selective_scan(*args(slice(0, 13)), True, p["h0"])
    y2, h2 = selective_scan(*args(slice(13, None)), True, h1)
    torch.testing.assert_close(torch.cat([y1, y2], 1), y)
    torch.testing.assert_close(h2, h)


def test_selective_state_update_equals_one_scan_step():
    p = _m1_inputs(seqlen=1)
    y_scan, h_scan = selective_scan(p["u"], p["delta"], p["A"], p["B"], p["C"], p["D"], p["z"],
                                    p["delta_bias"], True, p["h0"])
    y, h = selective_state_update(p["h0"], p["u"][:, 0], p["delta"][:, 0], p["A"], p["B"][:, 0], p["C"][:, 0],
                                  p["D"], p["z"][:, 0], p["delta_bias"], True)
    torch.testing.assert_close(y, y_scan[:, 0])
    torch.testing.assert_close(h, h_scan)


def test_selective_scan_is_stable_for_huge_decay():
    # dt*|A| up to ~1e4 per token over 300 tokens: exp(+cumsum) formulations overflow here.
    p = _m1_inputs(seqlen=300, dtype=torch.float32)
    A = -torch.full_like(p["A"], 1000.0)
    delta = torch.full_like(p["delta"], 10.0)
    y, h = selective_scan(p["u"], delta, A, p["B"], p["C"], p["D"], p["z"], None, True, p["h0"].float())
    assert torch.isfinite(y).all() and torch.isfinite(h).all()
    # with such a decay the state forgets everything but the last token
    torch.testing.assert_close(h, (10.0 * p["u"][:, -1])[..., None] * p["B"][:, -1, None, :], rtol=1e-4, atol=1e-4)


def test_selective_scan_gradcheck():
    p = _m1_inputs(bsz=1, seqlen=7, e=2, n=3)
    inputs = [p[k].clone().requires_grad_() for k in ("u", "delta", "A", "B", "C", "D", "z", "delta_bias", "h0")]

    def f(u, delta, A, B, C, D, z, db, h0):
        y, h = selective_scan(u, delta, A, B, C, D, z, db, True, h0, chunk_size=3)
        return y, h

    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-6)
    # activation checkpointing of the chunks gives the same gradients as keeping every state
    grads = []
    for ckpt in (False, True):
        xs = [t.detach().clone().requires_grad_() for t in inputs]
        y, h = selective_scan(*xs[:8], True, xs[8], chunk_size=3, checkpoint_chunks=ckpt)
        (y.sum() + (h * h).sum()).backward()
        grads.append([t.grad for t in xs])
    for g0, g1 in zip(*grads):
        torch.testing.assert_close(g0, g1)


def test_selective_scan_bf16_autocast_backward():
    p = _m1_inputs(seqlen=20, dtype=torch.float32)
    u = p["u"].clone().requires_grad_()
    A = p["A"].clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, h = selective_scan(u.bfloat16(), p["delta"], A, p["B"], p["C"], p["D"], p["z"], p["delta_bias"])
    assert y.dtype == torch.bfloat16 and h.dtype == torch.float32
    (y.float().sum() + h.sum()).backward()
    assert torch.isfinite(u.grad).all() and torch.isfinite(A.grad).all()


# ---- Mamba2 SSD -------------------------------------------------------------------------------


@pytest.mark.parametrize("seqlen,chunk_size", [(1, 4), (7, 4), (16, 8), (21, 8), (21, 64), (32, 16)])
@pytest.mark.parametrize("ngroups", [1, 2, 4])
@pytest.mark.parametrize("with_state", [False, True])
def test_ssd_matches_naive_recurrence(seqlen, chunk_size, ngroups, with_state):
    p = _m2_inputs(seqlen=seqlen, ngroups=ngroups)
    h0 = p["h0"] if with_state else torch.zeros_like(p["h0"])
    y_ref, s_ref = naive_ssd(p["x"], p["dt"], p["A"], p["B"], p["C"], p["D"], h0)
    y, s = ssd_chunked(p["x"], p["dt"], p["A"], p["B"], p["C"], chunk_size, p["D"],
                       h0 if with_state else None)
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(s, s_ref, rtol=1e-10, atol=1e-10)


def test_ssd_state_update_equals_one_step():
    p = _m2_inputs(seqlen=1, ngroups=2)
    y_ref, s_ref = ssd_chunked(p["x"], p["dt"], p["A"], p["B"], p["C"], 8, p["D"], p["h0"])
    y, s = ssd_state_update(p["h0"], p["x"][:, 0], p["dt"][:, 0], p["A"], p["B"][:, 0], p["C"][:, 0], p["D"])
    torch.testing.assert_close(y, y_ref[:, 0])
    torch.testing.assert_close(s, s_ref)


def test_ssd_stable_for_huge_decay_and_gradcheck():
    p = _m2_inputs(seqlen=40, dtype=torch.float32)
    y, s = ssd_chunked(p["x"], p["dt"] * 0 + 50.0, p["A"] * 0 - 100.0, p["B"], p["C"], 16, p["D"], p["h0"].float())
    assert torch.isfinite(y).all() and torch.isfinite(s).all()
    q = _m2_inputs(bsz=1, seqlen=6, nheads=2, headdim=2, ngroups=1, n=2)
    inputs = [q[k].clone().requires_grad_() for k in ("x", "dt", "A", "B", "C", "D", "h0")]
    f = lambda x, dt, A, B, C, D, h0: ssd_chunked(x, dt, A, B, C, 4, D, h0)  # noqa: E731
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-6)


def test_mamba2_dt_limit():
    raw = torch.tensor([[-20.0, 0.0, 20.0]])
    dt = mamba2_dt(raw, torch.zeros(3), (0.01, 5.0))
    assert dt.min() >= 0.01 and dt.max() <= 5.0
    torch.testing.assert_close(mamba2_dt(raw, torch.zeros(3)), F.softplus(raw))


# ---- norms ------------------------------------------------------------------------------------


def test_rms_and_gated_norm():
    g = torch.Generator().manual_seed(3)
    x, z, w = (torch.randn(2, 3, 8, generator=g, dtype=F64), torch.randn(2, 3, 8, generator=g, dtype=F64),
               torch.randn(8, generator=g, dtype=F64))
    torch.testing.assert_close(rms_norm(x, w, 1e-5), x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * w)
    h = x * F.silu(z)
    parts = [hp / torch.sqrt(hp.pow(2).mean(-1, keepdim=True) + 1e-5) for hp in h.split(4, dim=-1)]
    torch.testing.assert_close(gated_rms_norm(x, z, w, 1e-5, group_size=4), torch.cat(parts, -1) * w)
    whole = h / torch.sqrt(h.pow(2).mean(-1, keepdim=True) + 1e-5) * w
    torch.testing.assert_close(gated_rms_norm(x, z, w, 1e-5, group_size=8), whole)
    before = rms_norm(x, w, 1e-5) * F.silu(z)
    torch.testing.assert_close(gated_rms_norm(x, z, w, 1e-5, None, norm_before_gate=True), before)


# ---- mixers: the one-token update path equals the sequence path --------------------------------


@pytest.mark.parametrize("arch", ["mamba1", "mamba2"])
def test_mixer_decode_path_equals_sequence_path(arch):
    torch.manual_seed(0)
    cfg = MambaConfig(arch=arch, d_model=32, n_layer=1, vocab_size=64, d_state=8, headdim=16, ngroups=2,
                      chunk_size=4)
    mixer = (Mamba1Mixer if arch == "mamba1" else Mamba2Mixer)(cfg).double()
    hidden = torch.randn(2, 1, 32, dtype=F64)
    conv0 = torch.randn(2, *cfg.conv_state_shape, dtype=F64)
    ssm0 = torch.randn(2, *cfg.ssm_state_shape, dtype=F64)
    out_step, c1, s1 = mixer(hidden, conv0, ssm0)  # L == 1 with states: the update path
    # the sequence path with the same states: call it through _ssm by giving a 2-token input and
    # comparing the first token
    out_seq, _, _ = mixer(torch.cat([hidden, hidden], 1), conv0, ssm0)
    torch.testing.assert_close(out_step[:, 0], out_seq[:, 0])
    # and prefill of [t0, t1] == decode t0 then t1
    h2 = torch.randn(2, 1, 32, dtype=F64)
    out_seq, c_seq, s_seq = mixer(torch.cat([hidden, h2], 1), conv0, ssm0)
    out2, c2, s2 = mixer(h2, c1, s1)
    torch.testing.assert_close(out2[:, 0], out_seq[:, 1])
    torch.testing.assert_close(c2, c_seq)
    torch.testing.assert_close(s2, s_seq)


def test_tap_points_exist():
    m1 = Mamba1Mixer(MambaConfig(arch="mamba1", d_model=16, n_layer=1, vocab_size=8))
    for name in ("x_conv_out", "ssm_out", "ssm_state_act"):
        assert isinstance(getattr(m1, name), torch.nn.Identity)
    m2 = Mamba2Mixer(MambaConfig(arch="mamba2", d_model=16, n_layer=1, vocab_size=8, headdim=8, d_state=4))
    for name in ("z_act", "x_conv_in", "B_conv_in", "C_conv_in", "dt_act", "x_conv_out", "B_conv_out",
                 "C_conv_out", "ssd_out", "ssm_state_act"):
        assert isinstance(getattr(m2, name), torch.nn.Identity)
    seen = {}
    for name in ("dt_act", "ssd_out", "ssm_state_act"):
        getattr(m2, name).register_forward_hook(lambda mod, i, o, name=name: seen.__setitem__(name, o.shape))
    m2(torch.randn(1, 5, 16))
    assert seen == {"dt_act": (1, 5, 4), "ssd_out": (1, 5, 32), "ssm_state_act": (1, 4, 8, 4)}


# ---- timing (printed, not asserted tightly) ------------------------------------------------------


@pytest.mark.parametrize("arch", ["mamba1", "mamba2"])
def test_prefill_timing_512_tokens(arch):
    torch.manual_seed(0)
    kw = dict(d_state=16) if arch == "mamba1" else dict(d_state=128, headdim=64, chunk_size=256)
    cfg = MambaConfig(arch=arch, d_model=256, n_layer=4, vocab_size=1024, **kw)
    model = MambaLM(cfg).eval()
    ids = torch.randint(0, 1024, (1, 512))
    with torch.inference_mode():
        model(ids)  # warm-up
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            model(ids)
            times.append(time.perf_counter() - t0)
    best = min(times)
    print(f"\n[timing] {arch} 4 layers d_model=256 prefill of 512 tokens on CPU "
          f"({torch.get_num_threads()} threads): {best * 1e3:.1f} ms")
    assert best < 5.0  # generous: only catches a pathological regression
