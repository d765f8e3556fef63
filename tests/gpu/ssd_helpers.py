"""Shared helpers of the Mamba2 SSD kernel tests (test_kernel_quant_ssd*.py): random Quamba2-style inputs,
int8 state scales calibrated on the fly, and the poisoned kernel-vs-reference runs."""

from __future__ import annotations

import torch
from gpu_helpers import assert_fp16_close, assert_int8_close, rand_int8, run_poisoned

from quamba_edge.ops import scales as scale_tables
from quamba_edge.ops.quant_ssd import quant_ssd as ref_ssd
from quamba_edge.ops.quant_ssd_state_update import quant_ssd_state_update as ref_update

INF = float("inf")


def _rand(gen, *shape, lo=0.0, hi=1.0):
    return lo + (hi - lo) * torch.rand(*shape, device="cuda", generator=gen)


def _inputs(bsz, seqlen, h, p, g, n, gen, *, d=True, grouped_x=False):
    """Random Quamba2-style inputs. seqlen None: one decode token ([B, H, P] ...)."""
    tok = () if seqlen is None else (seqlen,)
    if grouped_x and h % g == 0 and (h // g) % 4 == 0 and p % 4 == 0:
        # x scales from a real G x 4 x 4 sort-and-cluster table (uneven head / channel groups)
        hpg = h // g
        hg = [[hpg // 4 - 1, hpg // 4 + 1, hpg // 4, hpg // 4] if hpg >= 8 else [hpg // 4] * 4 for _ in range(g)]
        cg = [[[p // 4 + 2, p // 4 - 2, p // 4, p // 4] for _ in range(4)] for _ in range(g)]
        table = _rand(gen, g, 4, 4, lo=0.005, hi=0.03).cpu()
        x_scale = scale_tables.expand_head_channel_scales(table, hg, cg, h, p).cuda()
    else:
        x_scale = _rand(gen, h, p, lo=0.005, hi=0.03)
    return dict(
        x_q=rand_int8(bsz, *tok, h, p, gen=gen), x_scale=x_scale,
        dt_q=rand_int8(bsz, *tok, h, gen=gen), dt_scale=0.03,
        dt_bias=_rand(gen, h, lo=-4.0, hi=0.5),
        A_log_q=rand_int8(h, gen=gen), A_log_scale=0.02,
        B_q=rand_int8(bsz, *tok, g, n, gen=gen), B_scale=_rand(gen, g, lo=0.01, hi=0.04),
        C_q=rand_int8(bsz, *tok, g, n, gen=gen), C_scale=_rand(gen, g, lo=0.01, hi=0.04),
        D_q=rand_int8(h, gen=gen) if d else None, D_scale=0.01,
    )


def _is_act(t):
    """An activation ([B, L, ...]) among the op's arguments (scales and weights are lower-rank or floats)."""
    return isinstance(t, torch.Tensor) and t.dim() >= 3


def _state_scale_for(s_float, gen):
    """Per-(h, p, n) scales that use the int8 range and clamp a few elements: ~absmax/110 x U(0.6, 1.4)."""
    amax = s_float.abs().amax(dim=0).clamp_min(1e-3)
    return (amax / 110.0 * _rand(gen, *amax.shape, lo=0.6, hi=1.4)).contiguous()


def _ref_args(a):
    return (a["x_q"], a["x_scale"], a["dt_q"], a["dt_scale"], a["dt_bias"], a["A_log_q"], a["A_log_scale"],
            a["B_q"], a["B_scale"], a["C_q"], a["C_scale"], a["D_q"], a["D_scale"])


def _make_state(mode, bsz, h, p, n, a, gen, chunk):
    """(state_in, state_scale, out dtype) for mode in none-int8 / none-f32 / int8 / f32 / f16."""
    if mode in ("int8", "none-int8"):
        # calibrate scales on a float run of the same inputs so the int8 state is meaningful
        s0 = torch.randn(bsz, h, p, n, device="cuda", generator=gen) * 4.0
        if a["x_q"].dim() == 4:
            _, s_f = ref_ssd(*_ref_args(a), chunk, (0.0, INF), s0 if mode == "int8" else None, None)
        else:
            _, s_f = ref_update(*_ref_args(a), (0.0, INF), s0, None)
        sc = _state_scale_for(torch.cat([s_f, s0]), gen)
        if mode == "none-int8":
            return None, sc, torch.int8
        st = torch.clamp(torch.round(s0 / sc), -128, 127).to(torch.int8)
        return st, sc, torch.int8
    if mode == "none-f32":
        return None, None, torch.float32
    if mode == "f32":
        return torch.randn(bsz, h, p, n, device="cuda", generator=gen) * 4.0, None, torch.float32
    if mode == "f16":
        return (torch.randn(bsz, h, p, n, device="cuda", generator=gen) * 4.0).half(), None, torch.float16
    raise ValueError(mode)


def _check_state(st, st_ref, dtype, name="state"):
    if dtype == torch.int8:
        assert_int8_close(st, st_ref, name)
        # nearly all elements should be bit-exact (only fp32 rounding near .5 may flip)
        assert int((st != st_ref).sum()) <= max(2, st.numel() // 200), f"{name}: too many 1-LSB differences"
    elif dtype == torch.float16:
        assert_fp16_close(st, st_ref.float(), name)
    else:
        err = (st - st_ref).abs().max().item()
        assert err <= 1e-4 * max(1.0, st_ref.abs().max().item()), f"{name}: max abs err {err}"


def _run_ssd(kernels, a, mode, chunk, gen, dt_limit=(0.0, INF), p_tile=0, views=None, staging=0):
    bsz, seqlen, h, p = a["x_q"].shape
    n = a["B_q"].shape[-1]
    st_in, st_scale, st_dtype = _make_state(mode, bsz, h, p, n, a, gen, chunk)
    ka = dict(a) if views is None else {**a, **views}

    def call(y, st):
        kernels.quant_ssd(ka["x_q"], ka["x_scale"], ka["dt_q"], ka["dt_scale"], ka["dt_bias"], ka["A_log_q"],
                          ka["A_log_scale"], ka["B_q"], ka["B_scale"], ka["C_q"], ka["C_scale"], ka["D_q"],
                          ka["D_scale"], chunk, dt_limit[0], dt_limit[1], st_in, st_scale, y, st, p_tile, None,
                          staging)

    y, st = run_poisoned(call, [((bsz, seqlen, h, p), torch.float16), ((bsz, h, p, n), st_dtype)])
    ref_state_in = st_in.float() if st_dtype == torch.float16 else st_in
    y_ref, st_ref = ref_ssd(*_ref_args(a), chunk, dt_limit, ref_state_in,
                            st_scale if st_dtype == torch.int8 else None)
    assert_fp16_close(y, y_ref, "y")
    _check_state(st, st_ref, st_dtype)
    return y, st


def _run_update(kernels, a, mode, gen, in_place=False, views=None):
    squeeze = a["x_q"].dim() == 3
    bsz, h, p = (a["x_q"].shape if squeeze else a["x_q"][:, 0].shape)
    n = a["B_q"].shape[-1]
    st_in, st_scale, st_dtype = _make_state(mode, bsz, h, p, n, a, gen, 0)
    ka = dict(a) if views is None else {**a, **views}

    def call(y, st):
        src = st_in
        if in_place:
            st.copy_(st_in)
            src = st
        kernels.quant_ssd_state_update(ka["x_q"], ka["x_scale"], ka["dt_q"], ka["dt_scale"], ka["dt_bias"],
                                       ka["A_log_q"], ka["A_log_scale"], ka["B_q"], ka["B_scale"], ka["C_q"],
                                       ka["C_scale"], ka["D_q"], ka["D_scale"], 0.0, INF, src, st_scale, y, st)

    y_shape = tuple(a["x_q"].shape)
    if in_place:  # the state buffer is overwritten with state_in first: no poison check on it
        y = torch.empty(y_shape, dtype=torch.float16, device="cuda")
        st = torch.empty(bsz, h, p, n, dtype=st_dtype, device="cuda")
        call(y, st)
        torch.cuda.synchronize()
    else:
        y, st = run_poisoned(call, [(y_shape, torch.float16), ((bsz, h, p, n), st_dtype)])
    ref_state_in = st_in.float() if st_dtype == torch.float16 else st_in
    y_ref, st_ref = ref_update(*_ref_args(a), (0.0, INF), ref_state_in, st_scale if st_dtype == torch.int8 else None)
    assert_fp16_close(y, y_ref, "y")
    _check_state(st, st_ref, st_dtype)
    return y, st


def compact_state_scales(gen, h, p, g, n):
    """A Quamba2 G x 4 x 4 x N state-scale table with uneven head / channel groups: (table [16 G, N],
    row index int32 [H, P], the same scales expanded to [H, P, N] by quamba_edge.ops.scales)."""
    hpg = h // g
    hg = [[hpg // 4 - 1, hpg // 4 + 1, hpg // 4, hpg // 4] if hpg >= 8 else [hpg // 4] * 4 for _ in range(g)]
    cg = [[[p // 4 + 2, p // 4 - 2, p // 4, p // 4] for _ in range(4)] for _ in range(g)]
    table = (0.02 + 0.1 * torch.rand(g, 4, 4, n, generator=torch.Generator().manual_seed(int(gen.initial_seed()))))
    expanded = scale_tables.expand_head_channel_state_scales(table, hg, cg, h, p).cuda()
    gi, ii, ji = scale_tables.head_channel_index(hg, cg, h, p)
    rows = ((gi * 4 + ii) * 4 + ji).to(torch.int32).cuda()
    return table.reshape(g * 16, n).cuda(), rows, expanded
