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


# ---------------------------------------------------------------------------------------------------
# Chunked quant_ssd (QUAMBA_SSD_CHUNKED, plugins/kernels/quant_ssd.cu ssdc::chunked_kernel): the error
# bounds its tests assert (derivation: tests/gpu/test_kernel_quant_ssd_chunked.py). Device-agnostic: the CPU
# emulation test (tests/test_quant_ssd_chunked_emu.py) uses them too.
# ---------------------------------------------------------------------------------------------------

U16 = 2.0 ** -11   # fp16 unit roundoff
SUB16 = 2.0 ** -24  # fp16 subnormal spacing (y values below it flush)
U32 = 2.0 ** -24   # fp32 unit roundoff


def ssd_float_inputs(a, dt_limit=(0.0, INF)):
    """The reference op's fp32 operands (x, delta, A, B, C, D) of the int8 inputs ``a`` (``_inputs`` keys)."""
    from quamba_edge.ops._common import dequant, dequant_A
    from quamba_edge.ops.quant_ssd import group_scale, mamba2_delta

    x = dequant(a["x_q"], a["x_scale"])
    delta = mamba2_delta(a["dt_q"], a["dt_scale"], a["dt_bias"], dt_limit)
    A = dequant_A(a["A_log_q"], a["A_log_scale"])
    B = dequant(a["B_q"], group_scale(a["B_scale"], 2))
    C = dequant(a["C_q"], group_scale(a["C_scale"], 2))
    D = None if a["D_q"] is None else dequant(a["D_q"], a["D_scale"])
    return x, delta, A, B, C, D


def ssd_abs_system(a, state_in, state_scale, dt_limit=(0.0, INF)):
    """(y, final state) of the same SSD with x, B, C, D and the initial state replaced by their magnitudes
    (the decays are positive already): for every output, the sum of the magnitudes of the terms it adds up
    (its condition: fp32 rounding of a sum is bounded relative to this, not to the sum). fp32."""
    from quamba_edge.models import ssm
    from quamba_edge.ops._common import dequant_state

    x, delta, A, B, C, D = ssd_float_inputs(a, dt_limit)
    s0 = None if state_in is None else dequant_state(
        state_in.float() if state_in.dtype == torch.float16 else state_in, state_scale).abs()
    return ssm.ssd_chunked(x.abs(), delta, A, B.abs(), C.abs(), 64, D=None if D is None else D.abs(),
                           initial_state=s0)


def ssd_cum_max(a, chunk, dt_limit=(0.0, INF)) -> float:
    """max over (batch, head, reference chunk) of |sum delta A|: the reference's exp(dA_cum[-1] - dA_cum)
    (chunk length min(chunk, L)) subtracts two such sums, losing ~U32 of that size in the exponent."""
    _, delta, A, _, _, _ = ssd_float_inputs(a, dt_limit)
    dA = delta * A  # [B, L, H]
    L = dA.shape[1]
    c = max(1, min(int(chunk), L))
    dA = torch.nn.functional.pad(dA, (0, 0, 0, (-L) % c))
    return float(dA.view(dA.shape[0], -1, c, dA.shape[-1]).sum(2).abs().max())


def ssd_bound_terms(a, state_in, state_scale, chunk, dt_limit=(0.0, INF)):
    """What the derived bounds need: (y_abs, s_abs) of :func:`ssd_abs_system`, the reference's cum max
    (:func:`ssd_cum_max`) and the absolute floors of the kernel's fp16 operands. Each fp16 operand carries
    at most 2^-25 absolute (an fp16 subnormal lo part) in its own units: S unscaled (Y_off: y_floor gets
    2^-25 sum_n |C_t n|); M and Xd scaled per chunk so that their bound is < 2^15, i.e. 2^-40 of the bound
    (M: 128^2 N sB sC max delta; Xd: 128 max_p s_x max delta sB), summed over at most 64 tokens of 128
    codes (y: times s_x; state: once per chunk)."""
    y_abs, s_abs = ssd_abs_system(a, state_in, state_scale, dt_limit)
    _, delta, _, _, C, _ = ssd_float_inputs(a, dt_limit)
    bsz, seqlen, h, p = a["x_q"].shape
    g, n = a["B_q"].shape[2:]
    dev = a["x_q"].device
    per_head = lambda v: torch.as_tensor(v, dtype=torch.float32, device=dev).reshape(-1).expand(g)  # noqa: E731
    sB = per_head(a["B_scale"]).repeat_interleave(h // g)  # [H]
    sC = per_head(a["C_scale"]).repeat_interleave(h // g)
    sx = torch.as_tensor(a["x_scale"], dtype=torch.float32, device=dev).expand(h, p)
    dmax = delta.amax(dim=(0, 1))  # [H]
    tokens = 128.0 * min(seqlen, 64)
    c_sum = C.abs().sum(-1).repeat_interleave(h // g, dim=2).unsqueeze(-1)  # [B, L, H, 1]
    m_bound = 16384.0 * n * sB * sC * dmax  # [H]
    x_bound = 128.0 * sx.abs().amax(1) * dmax * sB  # [H]
    y_floor = 2.0 ** -25 * c_sum + 2.0 ** -40 * (m_bound[:, None] * sx.abs()) * tokens  # [B, L, H, P]
    s_floor = (2.0 ** -40 * x_bound * tokens * -(-seqlen // 64)).view(1, h, 1, 1)
    return dict(y_abs=y_abs, s_abs=s_abs, cmax=ssd_cum_max(a, chunk, dt_limit), y_floor=y_floor, s_floor=s_floor)


def chunked_y_bound(y_ref, t):
    """|y_chunked - y_ref| bound: the fp16 rounding of y (U16 |y| + SUB16), fp32-level differences of both
    evaluations relative to sum |terms| (2^-13, generous over the ~2^-18 seen in emulation), the reference's
    exponent cancellation (8 U32 cmax) and the floors of the fp16 operands (y_floor). ``t``: ssd_bound_terms."""
    return U16 * y_ref.abs() + SUB16 + (2.0 ** -13 + 8 * U32 * t["cmax"]) * t["y_abs"] + t["y_floor"]


def chunked_state_bound(s_ref, st_dtype, t):
    """|S_chunked - S_ref| bound of a float state: the same fp32-level terms (2^-16 of sum |terms|), the floor
    of Xd's fp16 parts (s_floor) and the fp16 storage rounding of an fp16 state."""
    bound = (2.0 ** -16 + 8 * U32 * t["cmax"]) * t["s_abs"] + t["s_floor"]
    if st_dtype == torch.float16:
        bound = bound + U16 * s_ref.abs() + SUB16
    return bound


def assert_within(out, ref, bound, name):
    err = (out.float() - ref.float()).abs()
    bad = err > bound
    assert not bad.any(), (f"{name}: {int(bad.sum())} of {err.numel()} elements outside the derived bound, "
                           f"worst err / bound {float((err / bound).max()):.3g}")
    return float((err / bound).max()) if err.numel() else 0.0


def check_chunked(y, st, y_ref, st_ref, st_dtype, terms, name=""):
    """The chunked kernel's outputs against the reference: y within the fp16 tolerance and the derived bound;
    an int8 state within +-1 LSB and nearly all equal (_check_state); a float state within its bound."""
    assert_fp16_close(y, y_ref, f"{name} y")
    assert_within(y, y_ref, chunked_y_bound(y_ref, terms), f"{name} y")
    if st_dtype == torch.int8:
        _check_state(st, st_ref, st_dtype, f"{name} state")
    else:
        assert_within(st, st_ref, chunked_state_bound(st_ref, st_dtype, terms), f"{name} state")
