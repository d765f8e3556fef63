"""CUDA quant_ssd, chunked tensor-core path (plugins/kernels/quant_ssd.cu, ssdc::chunked_kernel, selected with
QUAMBA_SSD_CHUNKED) against the reference op (quamba_edge/ops/quant_ssd.py) on the GPU.

Every call here sets QUAMBA_SSD_CHUNKED=2 (the chunked kernel for every L it supports) around the kernel call
only; the default (unset) is the chunked kernel from L = 32, QUAMBA_SSD_CHUNKED=0 the sequential one. Outputs are poisoned with two sentinels (every element must be
written). Bounds (derivation; helpers in ssd_helpers.py, the same ones the CPU emulation of the kernel,
tests/test_quant_ssd_chunked_emu.py, asserts):

- y: the kernel's fp32 value before its fp16 store and the reference's fp32 value are two evaluations of the
  same sum of terms (Y_diag over the chunk's tokens, Y_off over the N states, D x). Exact parts: the int8
  codes in fp16, C Bq^T in int32, fp16 x fp16 products. Rounded parts: fp32 element-wise operations and
  accumulations (a few tens of roundings along any path: <= ~2^-18 of T = sum |terms| each; T is the same SSD
  evaluated on |x|, |B|, |C|, |D|, |S0|, ssd_abs_system), the hi + lo fp16 representation of M, Xd and S
  (2^-22 relative, or an absolute floor where lo is subnormal: y_floor), and the reference's own exponent
  cancellation exp(dA_cum[-1] - dA_cum) over its chunk (~2^-24 cmax relative, cmax = max |sum dA| per
  reference chunk). Hence |y - y_ref| <= 2^-11 |y_ref| + 2^-24 (fp16 store) + (2^-13 + 2^-21 cmax) T + y_floor
  (2^-13 leaves ~30x over the emulated ~2^-18). Asserted together with the usual fp16 tolerance (rtol 2e-3,
  atol 1e-3 max |y_ref|): emulated, the kernel uses <= 0.65 of the derived bound and ~0.15 of the tolerance.
- float state: |S - S_ref| <= (2^-16 + 2^-21 cmax) T_S + s_floor (+ 2^-11 |S_ref| + 2^-24 for an fp16 state).
- int8 state: the codes are round(S / scale) of two fp32 values that differ by far less than one scale step
  (the bound above over scales of absmax / 110), so they differ by at most 1 LSB, and only where S / scale
  lies that close to a .5 boundary: +-1 LSB and at most max(2, numel / 200) differing codes (ssd_helpers.
  _check_state, as for the sequential kernel; emulated: <= 0.05 %).
"""

from __future__ import annotations

import contextlib
import os

import pytest
import torch
from gpu_helpers import assert_fp16_close, rand_int8, run_poisoned
from ssd_helpers import (
    INF,
    _inputs,
    _is_act,
    _make_state,
    _ref_args,
    check_chunked,
    compact_state_scales,
    ref_ssd,
    ssd_bound_terms,
)

pytestmark = pytest.mark.gpu

ENV = "QUAMBA_SSD_CHUNKED"


@contextlib.contextmanager
def chunked_env(mode: str | None = "2"):
    """QUAMBA_SSD_CHUNKED=mode (None: unset) for the calls inside; the C entry point reads it on every call."""
    old = os.environ.get(ENV)
    if mode is None:
        os.environ.pop(ENV, None)
    else:
        os.environ[ENV] = mode
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = old


def _state(mode, a, gen, chunk):
    """(state_in, kernel state_scale, reference state_scale, state_scale_row, out dtype). Modes: int8-rows
    (a compact G x 4 x 4 x N table + [H, P] row index, random codes), int8 / none-int8 (expanded scales
    calibrated on a float run), f32, f16, none-f32."""
    bsz, _, h, p = a["x_q"].shape
    g, n = a["B_q"].shape[2:]
    if mode == "int8-rows":
        table, rows, expanded = compact_state_scales(gen, h, p, g, n)
        return rand_int8(bsz, h, p, n, gen=gen), table, expanded, rows, torch.int8
    st, sc, dtype = _make_state(mode, bsz, h, p, n, a, gen, chunk)
    return st, sc, sc, None, dtype


def _call(kernels, a, chunk, dt_limit, st_in, sc, rows, y, st, p_tile=0, mode="2", staging=0):
    with chunked_env(mode):
        kernels.quant_ssd(*_ref_args(a), chunk, dt_limit[0], dt_limit[1], st_in, sc, y, st, p_tile, rows, staging)


def _run_chunked(kernels, a, mode, chunk, gen, p_tile=0, dt_limit=(0.0, INF), name=""):
    bsz, seqlen, h, p = a["x_q"].shape
    n = a["B_q"].shape[-1]
    st_in, sc_k, sc_ref, rows, st_dtype = _state(mode, a, gen, chunk)
    y, st = run_poisoned(lambda y, st: _call(kernels, a, chunk, dt_limit, st_in, sc_k, rows, y, st, p_tile),
                         [((bsz, seqlen, h, p), torch.float16), ((bsz, h, p, n), st_dtype)])
    ref_in = st_in.float() if st_dtype == torch.float16 else st_in
    ref_sc = sc_ref if st_dtype == torch.int8 else None
    y_ref, st_ref = ref_ssd(*_ref_args(a), chunk, dt_limit, ref_in, ref_sc)
    check_chunked(y, st, y_ref, st_ref, st_dtype, ssd_bound_terms(a, ref_in, ref_sc, chunk, dt_limit),
                  name or f"{mode} L={seqlen}")
    return y, st


CASES = [
    # (B, L, H, P, G, N, chunk, state mode): L around one and several 64-token chunks and the reference's
    # 128 / 256 chunks; batch 1 / 4; ngroups 1 / 8; d_state 64 / 128 / 256; every state kind
    (1, 1, 8, 64, 1, 128, 256, "int8-rows"),
    (4, 1, 8, 64, 8, 64, 128, "f32"),
    (1, 255, 8, 64, 1, 128, 256, "int8-rows"),
    (4, 255, 32, 64, 8, 64, 128, "none-f32"),
    (1, 256, 32, 64, 8, 256, 128, "int8-rows"),
    (4, 256, 8, 64, 1, 128, 256, "none-int8"),
    (1, 257, 8, 64, 1, 256, 256, "f32"),
    (4, 257, 32, 64, 8, 128, 128, "int8-rows"),
    (1, 1024, 32, 64, 8, 128, 128, "int8-rows"),
    (4, 1024, 8, 64, 1, 64, 256, "f16"),
    (1, 4096, 8, 64, 1, 128, 256, "int8-rows"),
    (4, 4096, 32, 64, 8, 256, 128, "none-int8"),
    (1, 8192, 8, 64, 1, 128, 256, "int8-rows"),
    # headdims 32 / 80 (a 32-channel tile half empty) / 128
    (2, 300, 8, 32, 2, 128, 256, "int8-rows"),
    (2, 300, 8, 80, 1, 128, 256, "f32"),
    (2, 300, 8, 128, 8, 64, 128, "int8"),
    # the benchmark models' heads: mamba2-2.7b (80 x 64, G 1, chunk 256) and mamba2-8b (128 x 64, G 8, 128)
    (1, 512, 80, 64, 1, 128, 256, "int8-rows"),
    (1, 512, 128, 64, 8, 128, 128, "int8-rows"),
]


@pytest.mark.parametrize("bsz,seqlen,h,p,g,n,chunk,mode", CASES)
def test_chunked_matches_reference(kernels, bsz, seqlen, h, p, g, n, chunk, mode):
    gen = torch.Generator(device="cuda").manual_seed(1000 + seqlen + 7 * h + 131 * n + bsz)
    a = _inputs(bsz, seqlen, h, p, g, n, gen, d=(seqlen % 2 == 1))
    _run_chunked(kernels, a, mode, chunk, gen)


@pytest.mark.parametrize("p,n,p_tile", [(64, 128, 32), (64, 128, 64), (80, 64, 64), (128, 128, 64), (128, 256, 32)])
def test_chunked_channel_tiles(kernels, p, n, p_tile):
    """Both channel tiles (p_tile 32 / 64; 64 only for d_state <= 128), with partial tiles."""
    gen = torch.Generator(device="cuda").manual_seed(p + n + p_tile)
    a = _inputs(2, 200, 8, p, 2, n, gen)
    _run_chunked(kernels, a, "int8-rows", 256, gen, p_tile=p_tile)


def test_chunked_dt_limit_no_D_scalar_scales(kernels):
    gen = torch.Generator(device="cuda").manual_seed(5)
    a = _inputs(2, 190, 8, 64, 2, 128, gen, d=False)
    a["x_scale"] = torch.tensor(0.02, device="cuda")
    a["B_scale"] = torch.tensor(0.03, device="cuda")
    _run_chunked(kernels, a, "int8", 64, gen, dt_limit=(0.01, 0.2))


def test_chunked_carried_state_equals_one_shot(kernels):
    """prefill(0, L1) then prefill(L1, L) from the fp32 state, in place, equals prefill(0, L): bit for bit
    where L1 is a multiple of the kernel's 64-token chunk (the same chunks see the same operands), within
    the bounds otherwise; with an int8 state, the second call matches the reference continued from the
    kernel's own first state."""
    gen = torch.Generator(device="cuda").manual_seed(21)
    bsz, seqlen, h, p, g, n = 2, 600, 8, 64, 2, 128
    a = _inputs(bsz, seqlen, h, p, g, n, gen)
    args = _ref_args(a)

    def part(lo, hi):
        return {k: (v[:, lo:hi] if _is_act(v) else v) for k, v in a.items()}

    def run(parts, st, sc=None, rows=None):
        ys = []
        for lo, hi in parts:
            y = torch.empty(bsz, hi - lo, h, p, dtype=torch.float16, device="cuda")
            _call(kernels, part(lo, hi), 256, (0.0, INF), st, sc, rows, y, st)
            ys.append(y)
        torch.cuda.synchronize()
        return torch.cat(ys, 1)

    s0 = torch.randn(bsz, h, p, n, device="cuda", generator=gen)
    st_full = s0.clone()
    y_full = run([(0, seqlen)], st_full)
    st = s0.clone()
    y = run([(0, 192), (192, seqlen)], st)
    assert torch.equal(y, y_full) and torch.equal(st, st_full)

    st = s0.clone()
    y = run([(0, 123), (123, seqlen)], st)
    y_ref, st_ref = ref_ssd(*args, 256, (0.0, INF), s0, None)
    check_chunked(y, st, y_ref, st_ref, torch.float32, ssd_bound_terms(a, s0, None, 256), "split at 123")

    table, rows, expanded = compact_state_scales(gen, h, p, g, n)
    q0 = rand_int8(bsz, h, p, n, gen=gen)
    st = q0.clone()
    run([(0, 250)], st, table, rows)
    mid = st.clone()
    y2 = run([(250, seqlen)], st, table, rows)
    b = part(250, seqlen)
    y_ref, st_ref = ref_ssd(*_ref_args(b), 256, (0.0, INF), mid, expanded)
    check_chunked(y2, st, y_ref, st_ref, torch.int8, ssd_bound_terms(b, mid, expanded, 256), "int8 continued")


def _seq_and_chunked(kernels, a, mode_env, st_in=None, sc=None, rows=None, p_tile=0, staging=0, views=None):
    bsz, seqlen, h, p = a["x_q"].shape
    n = a["B_q"].shape[-1]
    ka = a if views is None else {**a, **views}
    y = torch.empty(bsz, seqlen, h, p, dtype=torch.float16, device="cuda")
    st = torch.empty(bsz, h, p, n, dtype=torch.int8 if sc is not None else torch.float32, device="cuda")
    _call(kernels, ka, 256, (0.0, INF), st_in, sc, rows, y, st, p_tile, mode_env, staging)
    torch.cuda.synchronize()
    return y, st


def test_dispatch_modes_and_fallbacks(kernels):
    """QUAMBA_SSD_CHUNKED=0 = the sequential kernel; unset (the default) = 1 = chunked from L = 32 (shorter:
    sequential); 2 = chunked for every L; calls the chunked kernel does not take run the sequential one (bit
    for bit)."""
    gen = torch.Generator(device="cuda").manual_seed(8)
    s0 = lambda a: torch.randn(a["x_q"].shape[0], a["x_q"].shape[2], a["x_q"].shape[3], a["B_q"].shape[-1],  # noqa: E731
                               device="cuda", generator=gen)
    same = lambda r0, r1: torch.equal(r0[0], r1[0]) and torch.equal(r0[1], r1[1])  # noqa: E731

    a = _inputs(1, 16, 8, 64, 1, 128, gen)
    st = s0(a)
    seq = _seq_and_chunked(kernels, a, "0", st)
    assert same(_seq_and_chunked(kernels, a, "1", st), seq)  # L < 32: sequential
    assert same(_seq_and_chunked(kernels, a, None, st), seq)  # the default too
    a = _inputs(1, 255, 8, 64, 1, 128, gen)
    st = s0(a)
    seq, chk = _seq_and_chunked(kernels, a, "0", st), _seq_and_chunked(kernels, a, "2", st)
    assert same(_seq_and_chunked(kernels, a, "1", st), chk)
    assert same(_seq_and_chunked(kernels, a, None, st), chk), "the default (unset) is not the chunked kernel"
    assert not same(seq, chk), "QUAMBA_SSD_CHUNKED=2 gave the sequential kernel's exact bits: chunked path not taken"
    # not taken by the chunked kernel: d_state 16 / 32, the sequential kernel's tiles / staging, odd views
    a = _inputs(1, 100, 8, 64, 1, 32, gen)
    st = s0(a)
    assert same(_seq_and_chunked(kernels, a, "2", st), _seq_and_chunked(kernels, a, "0", st))
    a = _inputs(1, 100, 8, 64, 1, 128, gen)
    st = s0(a)
    assert same(_seq_and_chunked(kernels, a, "2", st, p_tile=8), _seq_and_chunked(kernels, a, "0", st, p_tile=8))
    assert same(_seq_and_chunked(kernels, a, "2", st, staging=1), _seq_and_chunked(kernels, a, "0", st, staging=1))
    bsz, seqlen, h, p, g, n = 1, 100, 8, 64, 1, 128
    big = rand_int8(bsz, seqlen, 1 + h * p + 2 * g * n + h, gen=gen)
    e = h * p
    views = dict(x_q=big[:, :, 1:1 + e].view(bsz, seqlen, h, p),
                 B_q=big[:, :, 1 + e:1 + e + g * n].view(bsz, seqlen, g, n),
                 C_q=big[:, :, 1 + e + g * n:1 + e + 2 * g * n].view(bsz, seqlen, g, n),
                 dt_q=big[:, :, 1 + e + 2 * g * n:])
    assert same(_seq_and_chunked(kernels, a, "2", st, views=views), _seq_and_chunked(kernels, a, "0", st, views=views))


def test_chunked_kernel_is_what_runs(kernels):
    """The profiler sees ssdc::chunked_kernel with QUAMBA_SSD_CHUNKED=2 and by default (unset), and only the
    sequential kernel with QUAMBA_SSD_CHUNKED=0."""
    gen = torch.Generator(device="cuda").manual_seed(9)
    a = _inputs(1, 300, 8, 64, 1, 128, gen)
    names = {}
    for mode in ("2", None, "0"):
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
            _seq_and_chunked(kernels, a, mode)
        names[mode] = " ".join(e.name for e in prof.events())
    assert "chunked_kernel" in names["2"], names["2"][:2000]
    assert "chunked_kernel" in names[None], names[None][:2000]
    assert "chunked_kernel" not in names["0"] and "quant_ssd_kernel" in names["0"], names["0"][:2000]


def test_sanitize_quant_ssd_chunked(kernels):
    """Small chunked calls for compute-sanitizer: every d_state and tile, a partial channel tile, one and
    several chunks with a partial last one, int8 (compact table, in place) / fp16 / no initial state."""
    gen = torch.Generator(device="cuda").manual_seed(3)
    for n, p, p_tile, seqlen, mode in ((64, 80, 64, 130, "int8-rows"), (128, 80, 32, 65, "f16"),
                                       (256, 64, 32, 70, "none-f32"), (128, 64, 64, 1, "int8")):
        a = _inputs(1, seqlen, 4, p, 1, n, gen)
        _run_chunked(kernels, a, mode, 256, gen, p_tile=p_tile, name=f"sanitize N={n} P={p}")
    a = _inputs(1, 100, 4, 64, 1, 128, gen)
    table, rows, expanded = compact_state_scales(gen, 4, 64, 1, 128)
    st = rand_int8(1, 4, 64, 128, gen=gen)
    st0 = st.clone()
    y = torch.empty(1, 100, 4, 64, dtype=torch.float16, device="cuda")
    _call(kernels, a, 256, (0.0, INF), st, table, rows, y, st)  # in place
    y_ref, st_ref = ref_ssd(*_ref_args(a), 256, (0.0, INF), st0, expanded)
    torch.cuda.synchronize()
    assert_fp16_close(y, y_ref, "in-place y")
