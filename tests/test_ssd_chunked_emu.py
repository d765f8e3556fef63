"""The chunked SSD kernel as the float op instantiates it (plugins/kernels/ssd.cu: fp16 x / B / C, delta given)
run on the CPU by the emulator of tests/ssd_chunked_emu/ (see tests/test_quant_ssd_chunked_emu.py for what it
checks and what it cannot), against quamba_edge.models.ssm.ssd_chunked in fp32 on the same fp16 inputs, with the
GPU tests' tolerance (tests/gpu/test_kernel_ssd.py). Skipped without g++ or the CUDA headers."""

from __future__ import annotations

import ctypes
import sys
import zlib
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow  # ~15 s on a 2-core CPU

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "gpu"))
sys.path.insert(0, str(REPO / "tests" / "ssd_chunked_emu"))

from emu_lib import check_layout, load_emulator  # noqa: E402
from gpu_helpers import POISON  # noqa: E402
from test_kernel_ssd import check, reference  # noqa: E402  (the GPU tests' bound, device-free functions)

ST = {torch.float32: 2, torch.float16: 3}
DT = {torch.float32: 0, torch.float16: 1}


class Params(ctypes.Structure):
    """Mirror of QuambaSSDParams (quamba_kernels/ssd.h); checked against the C offsets."""
    _fields_ = [
        ("batch", ctypes.c_int), ("seqlen", ctypes.c_int), ("nheads", ctypes.c_int), ("headdim", ctypes.c_int),
        ("ngroups", ctypes.c_int), ("dstate", ctypes.c_int), ("chunk_size", ctypes.c_int),
        ("x", ctypes.c_void_p), ("x_batch_stride", ctypes.c_int64), ("x_seq_stride", ctypes.c_int64),
        ("dt", ctypes.c_void_p), ("dt_type", ctypes.c_int), ("dt_batch_stride", ctypes.c_int64),
        ("dt_seq_stride", ctypes.c_int64), ("A", ctypes.c_void_p),
        ("B", ctypes.c_void_p), ("B_batch_stride", ctypes.c_int64), ("B_seq_stride", ctypes.c_int64),
        ("C", ctypes.c_void_p), ("C_batch_stride", ctypes.c_int64), ("C_seq_stride", ctypes.c_int64),
        ("D", ctypes.c_void_p), ("state_type", ctypes.c_int), ("state_in", ctypes.c_void_p),
        ("state_out", ctypes.c_void_p), ("y", ctypes.c_void_p), ("y_batch_stride", ctypes.c_int64),
        ("y_seq_stride", ctypes.c_int64)]


@pytest.fixture(scope="module")
def emu():
    lib = load_emulator()
    check_layout(lib.emu_f16_params_layout, Params)
    return lib


def make(b, L, h, p, g, n, seed, state=None, dt_dtype=torch.float32, scale=1.0):
    """CPU twin of test_kernel_ssd.make (scale: multiplies x, B, C: large values exercise the M scaling)."""
    gen = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=gen)  # noqa: E731
    x = (r(b, L, h, p) * scale).half()
    B, C = (r(b, L, g, n) * 0.3 * scale).half(), (r(b, L, g, n) * 0.3 * scale).half()
    dt = (torch.rand(b, L, h, generator=gen) * 0.1 + 0.001).to(dt_dtype)
    A = -torch.exp(torch.rand(h, generator=gen) * 2.5)
    D = r(h)
    s = None if state is None else r(b, h, p, n).to(state)
    return x, dt, A, B, C, D, s


def run(emu, x, dt, A, B, C, D, s, st_dtype=torch.float32, pt=32, seed=0, poison=0, y=None, st_out=None):
    b, L, h, p = x.shape
    g, n = B.shape[2:]
    if y is None:
        y = torch.full((b, L, h, p), POISON[torch.float16][poison], dtype=torch.float16)
    if st_out is None:
        st_out = torch.full((b, h, p, n), POISON[st_dtype][poison], dtype=st_dtype)
    pr = Params(batch=b, seqlen=L, nheads=h, headdim=p, ngroups=g, dstate=n, chunk_size=256)
    pr.x, pr.x_batch_stride, pr.x_seq_stride = x.data_ptr(), x.stride(0), x.stride(1)
    pr.dt, pr.dt_type, pr.dt_batch_stride, pr.dt_seq_stride = dt.data_ptr(), DT[dt.dtype], dt.stride(0), dt.stride(1)
    pr.A = A.data_ptr()
    pr.B, pr.B_batch_stride, pr.B_seq_stride = B.data_ptr(), B.stride(0), B.stride(1)
    pr.C, pr.C_batch_stride, pr.C_seq_stride = C.data_ptr(), C.stride(0), C.stride(1)
    pr.D = None if D is None else D.data_ptr()
    pr.state_type = ST[st_dtype]
    pr.state_in = None if s is None else s.data_ptr()
    pr.state_out = st_out.data_ptr()
    pr.y, pr.y_batch_stride, pr.y_seq_stride = y.data_ptr(), y.stride(0), y.stride(1)
    ins = [x, B, C]  # what cp.async may read
    lo = (ctypes.c_void_p * 3)(*[t.data_ptr() for t in ins])
    hi = (ctypes.c_void_p * 3)(*[t.data_ptr() + t.numel() * t.element_size() for t in ins])
    if emu.emu_run_f16(ctypes.byref(pr), pt, lo, hi, 3, seed) != 0:
        raise AssertionError(f"emulated kernel: {emu.emu_error().decode()}")
    return y, st_out


CASES = [
    # (B, L, H, P, G, N, tile, state dtype / None, dt dtype, input scale): one and partial chunks, chunk
    # boundaries (64), every d_state and tile, headdims 32 / 64 / 80 (a partly empty tile) / 128, ngroups 1 / 2 / 8
    (1, 1, 2, 64, 1, 128, 32, torch.float32, torch.float32, 1.0),
    (1, 17, 2, 64, 1, 64, 32, None, torch.float16, 1.0),
    (2, 63, 4, 32, 2, 64, 32, torch.float16, torch.float32, 1.0),
    (1, 64, 2, 64, 1, 256, 32, torch.float32, torch.float32, 1.0),
    (1, 65, 2, 80, 1, 128, 32, None, torch.float32, 1.0),
    (1, 130, 1, 128, 1, 128, 64, torch.float32, torch.float16, 1.0),
    (1, 129, 2, 80, 1, 64, 64, torch.float16, torch.float32, 1.0),
    (1, 90, 8, 32, 8, 128, 32, None, torch.float32, 1.0),
    (1, 150, 2, 32, 1, 128, 32, torch.float32, torch.float32, 30.0),  # |M| far above fp16's range unscaled
    (1, 150, 2, 32, 1, 64, 32, torch.float32, torch.float32, 0.01),   # tiny M: scaled up
]


@pytest.mark.parametrize("b,L,h,p,g,n,pt,st,dtd,scale", CASES)
def test_emulated_float_ssd_matches_reference(emu, b, L, h, p, g, n, pt, st, dtd, scale):
    seed = zlib.crc32(repr((b, L, h, p, g, n, pt, st, dtd, scale)).encode())
    x, dt, A, B, C, D, s = make(b, L, h, p, g, n, seed, state=st, dt_dtype=dtd, scale=scale)
    st_dtype = st or torch.float32
    runs = [run(emu, x, dt, A, B, C, D, s, st_dtype, pt, seed=seed + w, poison=w) for w in (0, 1)]
    for o0, o1 in zip(*runs):  # every element written (either sentinel gives the same bytes)
        assert torch.equal(o0, o1), "an output element was not written"
    check(*runs[0], *reference(x, dt, A, B, C, D, s), name=f"L={L}")


def test_emulated_float_carried_state_in_place_no_D(emu):
    """prefill(0, 128) then prefill(128, L) from its fp32 state, in place, equals prefill(0, L) bit for bit
    (128 is a chunk boundary); no D."""
    x, dt, A, B, C, _, s0 = make(1, 150, 2, 32, 1, 64, 5, state=torch.float32)
    y_full, st_full = run(emu, x, dt, A, B, C, None, s0)
    st = s0.clone()
    parts = [run(emu, *(t[:, lo:hi].contiguous() for t in (x, dt)), A, *(t[:, lo:hi].contiguous() for t in (B, C)),
                 None, st, st_out=st)[0] for lo, hi in ((0, 128), (128, 150))]
    assert torch.equal(torch.cat(parts, 1), y_full) and torch.equal(st, st_full)
