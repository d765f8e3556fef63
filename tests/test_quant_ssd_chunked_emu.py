"""The chunked quant_ssd kernel (quamba_kernels/ssd_chunked.cuh as quant_ssd.cu instantiates it) run on the CPU: its own
source compiled as host C++ by tests/ssd_chunked_emu/emu.cpp (fibers for its 128 threads, stand-ins of
mma.sync / ldmatrix / cp.async / shfl written from the PTX fragment tables), against the reference op
(quamba_edge.ops.quant_ssd) with the bounds the GPU tests assert (tests/gpu/ssd_helpers.py). This checks the
kernel's index math, masks, chunk boundaries and barriers before any GPU run; it cannot check the hardware's
own behaviour (the GPU tests do). Skipped without g++ or the CUDA headers (cuda_fp16.h)."""

from __future__ import annotations

import ctypes
import zlib
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow  # ~20 s on a 2-core CPU (the emulated threads switch by ucontext)

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "gpu"))
sys.path.insert(0, str(REPO / "tests" / "ssd_chunked_emu"))

from gpu_helpers import POISON  # noqa: E402
from emu_lib import check_layout, load_emulator  # noqa: E402
from ssd_helpers import INF, check_chunked, ssd_bound_terms  # noqa: E402

from quamba_edge.ops.quant_ssd import quant_ssd as ref_ssd  # noqa: E402

class Params(ctypes.Structure):
    """Mirror of QuambaQuantSSDParams (quamba_kernels/quant_ssd.h); checked against the C offsets below."""
    _fields_ = [
        ("batch", ctypes.c_int), ("seqlen", ctypes.c_int), ("nheads", ctypes.c_int), ("headdim", ctypes.c_int),
        ("ngroups", ctypes.c_int), ("dstate", ctypes.c_int), ("chunk_size", ctypes.c_int),
        ("x", ctypes.c_void_p), ("x_batch_stride", ctypes.c_int64), ("x_seq_stride", ctypes.c_int64),
        ("x_scale", ctypes.c_void_p), ("dt", ctypes.c_void_p), ("dt_batch_stride", ctypes.c_int64),
        ("dt_seq_stride", ctypes.c_int64), ("dt_scale", ctypes.c_float), ("dt_bias", ctypes.c_void_p),
        ("A_log", ctypes.c_void_p), ("A_log_scale", ctypes.c_float),
        ("B", ctypes.c_void_p), ("B_batch_stride", ctypes.c_int64), ("B_seq_stride", ctypes.c_int64),
        ("B_scale", ctypes.c_void_p), ("C", ctypes.c_void_p), ("C_batch_stride", ctypes.c_int64),
        ("C_seq_stride", ctypes.c_int64), ("C_scale", ctypes.c_void_p), ("D", ctypes.c_void_p),
        ("D_scale", ctypes.c_float), ("dt_limit_lo", ctypes.c_float), ("dt_limit_hi", ctypes.c_float),
        ("state_type", ctypes.c_int), ("state_in", ctypes.c_void_p), ("state_out", ctypes.c_void_p),
        ("state_scale", ctypes.c_void_p), ("state_scale_row", ctypes.c_void_p), ("y", ctypes.c_void_p),
        ("y_batch_stride", ctypes.c_int64), ("y_seq_stride", ctypes.c_int64), ("p_tile", ctypes.c_int),
        ("staging", ctypes.c_int)]


@pytest.fixture(scope="module")
def emu():
    lib = load_emulator()
    check_layout(lib.emu_params_layout, Params)
    return lib


def _inputs(bsz, seqlen, h, p, g, n, gen, d=True):
    """CPU version of ssd_helpers._inputs (uniform int8 codes, the GPU tests' scale ranges)."""
    r = lambda *s, lo=0.0, hi=1.0: lo + (hi - lo) * torch.rand(*s, generator=gen)  # noqa: E731
    i8 = lambda *s: torch.randint(-128, 128, s, dtype=torch.int8, generator=gen)  # noqa: E731
    return dict(x_q=i8(bsz, seqlen, h, p), x_scale=r(h, p, lo=0.005, hi=0.03), dt_q=i8(bsz, seqlen, h),
                dt_scale=0.03, dt_bias=r(h, lo=-4.0, hi=0.5), A_log_q=i8(h), A_log_scale=0.02,
                B_q=i8(bsz, seqlen, g, n), B_scale=r(g, lo=0.01, hi=0.04), C_q=i8(bsz, seqlen, g, n),
                C_scale=r(g, lo=0.01, hi=0.04), D_q=i8(h) if d else None, D_scale=0.01)


def _args(a):
    return (a["x_q"], a["x_scale"], a["dt_q"], a["dt_scale"], a["dt_bias"], a["A_log_q"], a["A_log_scale"],
            a["B_q"], a["B_scale"], a["C_q"], a["C_scale"], a["D_q"], a["D_scale"])


def _state(mode, a, gen, chunk):
    """(state_in, kernel scale, reference scale, row index, out dtype); modes int8 / int8-rows / none-int8 /
    f32 / f16 / none-f32."""
    bsz, _, h, p = a["x_q"].shape
    n = a["B_q"].shape[-1]
    if mode.startswith("int8") or mode == "none-int8":
        s0 = torch.randn(bsz, h, p, n, generator=gen) * 4
        _, sf = ref_ssd(*_args(a), chunk, (0.0, INF), None if mode == "none-int8" else s0, None)
        amax = torch.cat([sf, s0]).abs().amax(0).clamp_min(1e-3)
        rows = None
        if mode == "int8-rows":  # a compact G x 4 x 4 x N table and the [H, P] row of each channel
            g = a["B_q"].shape[2]
            hh, pp = torch.arange(h)[:, None], torch.arange(p)[None, :]
            rows = (((hh // (h // g)) * 4 + (hh % (h // g)) * 4 // (h // g)) * 4 + pp * 4 // p).to(torch.int32)
            rows = rows.expand(h, p).contiguous()
            table = torch.full((16 * g, n), 1e-3)
            for r in range(16 * g):  # each row: the absmax of the channels that use it
                sel = (rows == r).reshape(-1)
                if sel.any():
                    table[r] = amax.reshape(h * p, n)[sel].amax(0).clamp_min(1e-3)
            table = (table / 110).contiguous()
            sc_ref = table[rows.long()]
            sc_k = table
        else:
            sc_ref = sc_k = (amax / 110 * (0.6 + 0.8 * torch.rand(amax.shape, generator=gen))).contiguous()
        st = None if mode == "none-int8" else torch.clamp(torch.round(s0 / sc_ref), -128, 127).to(torch.int8)
        return st, sc_k, sc_ref, rows, torch.int8
    if mode == "f32":
        return torch.randn(bsz, h, p, n, generator=gen) * 4, None, None, None, torch.float32
    if mode == "f16":
        return (torch.randn(bsz, h, p, n, generator=gen) * 4).half(), None, None, None, torch.float16
    assert mode == "none-f32"
    return None, None, None, None, torch.float32


def _run(emu, a, st_in, st_scale, rows, st_dtype, pt, *, dt_limit=(0.0, INF), seed=0, poison=0, state_out=None,
         y=None):
    bsz, seqlen, h, p = a["x_q"].shape
    g, n = a["B_q"].shape[2:]
    if y is None:
        y = torch.full((bsz, seqlen, h, p), POISON[torch.float16][poison], dtype=torch.float16)
    if state_out is None:
        state_out = torch.full((bsz, h, p, n), POISON[st_dtype][poison], dtype=st_dtype)
    keep = []

    def ptr(t):
        if t is None:
            return None
        keep.append(t)
        return t.data_ptr()

    x, dt, B, C = (a[k].contiguous() for k in ("x_q", "dt_q", "B_q", "C_q"))
    pr = Params(batch=bsz, seqlen=seqlen, nheads=h, headdim=p, ngroups=g, dstate=n, chunk_size=256)
    pr.x, pr.x_batch_stride, pr.x_seq_stride = ptr(x), x.stride(0), x.stride(1)
    pr.x_scale = ptr(torch.as_tensor(a["x_scale"]).float().expand(h, p).contiguous())
    pr.dt, pr.dt_batch_stride, pr.dt_seq_stride = ptr(dt), dt.stride(0), dt.stride(1)
    pr.dt_scale, pr.dt_bias = a["dt_scale"], ptr(a["dt_bias"].float().contiguous())
    pr.A_log, pr.A_log_scale = ptr(a["A_log_q"]), a["A_log_scale"]
    pr.B, pr.B_batch_stride, pr.B_seq_stride = ptr(B), B.stride(0), B.stride(1)
    pr.B_scale = ptr(torch.as_tensor(a["B_scale"]).float().expand(g).contiguous())
    pr.C, pr.C_batch_stride, pr.C_seq_stride = ptr(C), C.stride(0), C.stride(1)
    pr.C_scale = ptr(torch.as_tensor(a["C_scale"]).float().expand(g).contiguous())
    pr.D, pr.D_scale = ptr(a["D_q"]), a["D_scale"]
    pr.dt_limit_lo, pr.dt_limit_hi = dt_limit
    pr.state_type = {torch.int8: 1, torch.float32: 2, torch.float16: 3}[st_dtype]
    pr.state_in, pr.state_out = ptr(st_in), state_out.data_ptr()
    pr.state_scale, pr.state_scale_row = ptr(st_scale), ptr(rows)
    pr.y, pr.y_batch_stride, pr.y_seq_stride = y.data_ptr(), y.stride(0), y.stride(1)
    ins = [x, B, C]  # what cp.async may read
    lo = (ctypes.c_void_p * 3)(*[t.data_ptr() for t in ins])
    hi = (ctypes.c_void_p * 3)(*[t.data_ptr() + t.numel() for t in ins])
    if emu.emu_run(ctypes.byref(pr), pt, lo, hi, 3, seed) != 0:
        raise AssertionError(f"emulated kernel: {emu.emu_error().decode()}")
    return y, state_out


def _check(emu, bsz, seqlen, h, p, g, n, pt, mode, seed, *, chunk=256, d=True, dt_limit=(0.0, INF)):
    gen = torch.Generator().manual_seed(seed)
    a = _inputs(bsz, seqlen, h, p, g, n, gen, d=d)
    st_in, sc_k, sc_ref, rows, st_dtype = _state(mode, a, gen, chunk)
    runs = [_run(emu, a, st_in, sc_k, rows, st_dtype, pt, dt_limit=dt_limit, seed=seed + w, poison=w)
            for w in (0, 1)]
    for o0, o1 in zip(*runs):  # every element written (either sentinel gives the same bytes)
        assert torch.equal(o0, o1), "an output element was not written"
    y, st = runs[0]
    ref_in = st_in.float() if st_dtype == torch.float16 else st_in
    ref_scale = sc_ref if st_dtype == torch.int8 else None
    y_ref, st_ref = ref_ssd(*_args(a), chunk, dt_limit, ref_in, ref_scale)
    check_chunked(y, st, y_ref, st_ref, st_dtype, ssd_bound_terms(a, ref_in, ref_scale, chunk, dt_limit),
                  f"{mode} L={seqlen}")
    return a, st_in, sc_k, rows, st_dtype, y, st


CASES = [
    # (B, L, H, P, G, N, channel tile, state mode): one and partial chunks, chunk boundaries (64), every
    # d_state and tile, headdims 32 / 64 / 80 (a partly empty tile) / 128, ngroups 1 / 2 / 8, every state kind
    (1, 1, 2, 64, 1, 128, 32, "int8-rows"),
    (1, 17, 2, 64, 1, 64, 32, "f32"),
    (2, 63, 4, 32, 2, 64, 32, "int8"),
    (1, 64, 2, 64, 1, 256, 32, "f16"),
    (1, 65, 2, 80, 1, 128, 32, "none-int8"),
    (1, 130, 1, 128, 1, 128, 64, "int8-rows"),
    (1, 129, 2, 80, 1, 64, 64, "f32"),
    (1, 90, 8, 32, 8, 128, 32, "none-f32"),
]


@pytest.mark.parametrize("bsz,seqlen,h,p,g,n,pt,mode", CASES)
def test_emulated_chunked_kernel_matches_reference(emu, bsz, seqlen, h, p, g, n, pt, mode):
    _check(emu, bsz, seqlen, h, p, g, n, pt, mode, seed=zlib.crc32(repr((bsz, seqlen, h, p, g, n, pt, mode)).encode()))


def test_emulated_no_D_dt_limit_chunk128(emu):
    _check(emu, 1, 140, 2, 32, 2, 128, 32, "int8", 7, chunk=128, d=False, dt_limit=(0.01, 0.2))


def test_emulated_carried_state_and_in_place(emu):
    """prefill(0, 128) then prefill(128, L) from its fp32 state, in place, equals prefill(0, L) bit for bit
    (128 is a chunk boundary: the same chunks see the same operands); an in-place int8 run equals the
    out-of-place one."""
    gen = torch.Generator().manual_seed(3)
    bsz, seqlen, h, p, g, n = 1, 150, 2, 32, 1, 64
    a = _inputs(bsz, seqlen, h, p, g, n, gen)
    sl = lambda lo, hi: {k: (v[:, lo:hi] if isinstance(v, torch.Tensor) and v.dim() >= 3 else v)  # noqa: E731
                         for k, v in a.items()}
    s0 = torch.randn(bsz, h, p, n, generator=gen)
    y_full, st_full = _run(emu, a, s0, None, None, torch.float32, 32)
    st = s0.clone()
    y1, _ = _run(emu, sl(0, 128), st, None, None, torch.float32, 32, state_out=st)
    y2, _ = _run(emu, sl(128, seqlen), st, None, None, torch.float32, 32, state_out=st)
    assert torch.equal(torch.cat([y1, y2], 1), y_full) and torch.equal(st, st_full)

    st_in, sc, _, _, _ = _state("int8", a, gen, 256)
    y_out, st_out = _run(emu, a, st_in, sc, None, torch.int8, 32)
    st = st_in.clone()
    y_in, _ = _run(emu, a, st, sc, None, torch.int8, 32, state_out=st)
    assert torch.equal(y_in, y_out) and torch.equal(st, st_out)
