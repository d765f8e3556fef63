"""CUDA ssd (the float Mamba2 SSD prefill, quamba_kernels/ssd.h) against quamba_edge.models.ssm.ssd_chunked run in
fp32 on the same fp16 inputs, on the GPU.

Tolerance (fp16 y, fp32 math): the reference sees exactly the kernel's inputs (fp16 values upcast), so the kernel
may differ by (a) the fp16 rounding of y, half an ulp = 2^-11 |y|, and (b) its own fp32 summation order and any
fp16 rounding of an intermediate operand inside its tensor-core products (e.g. the decayed dt x or C B^T in
fp16, as mamba_ssm's Triton kernel does), each at most 2^-11 of the term it rounds, so at most 2^-11 of
mag = sum |terms|, which the reference itself gives when run on |x|, |B|, |C|, |D|, |state| (an upper bound of
every |C_t . B_s| decay dt |x_s| term summed). Allowed: |y - ref| <= 2^-10 |ref| + 2^-9 mag + 2^-24 elementwise
(2x / 4x margins; 2^-24 = one fp16 ulp below 2^-14, where fp16 has absolute precision only: a y of 1e-6 cannot
be stored closer than 3e-8). The fp32 state: |s - ref| <= 2^-9 mag_state (+ 2^-10 |ref| + 2^-24 for an fp16
state, its rounding).
A real indexing / decay bug gives errors of the order of mag itself.
"""

from __future__ import annotations

import pytest
import torch

from gpu_helpers import POISON, run_poisoned, check_float_ssm
from quamba_edge.models import ssm
from quamba_edge.ops import kernel_dispatch as kd

pytestmark = pytest.mark.gpu

ST = {"fp32": torch.float32, "fp16": torch.float16}


def make(b, L, h, p, g, n, seed=0, state=None, dt_dtype=torch.float32):
    gen = torch.Generator(device="cuda").manual_seed(seed)
    r = lambda *s: torch.randn(*s, device="cuda", generator=gen)  # noqa: E731
    x, B, C = r(b, L, h, p).half(), (r(b, L, g, n) * 0.3).half(), (r(b, L, g, n) * 0.3).half()
    dt = (torch.rand(b, L, h, device="cuda", generator=gen) * 0.1 + 0.001).to(dt_dtype)
    A = -torch.exp(torch.rand(h, device="cuda", generator=gen) * 2.5)  # -1 .. -12
    D = r(h)
    s = None if state is None else r(b, h, p, n).to(ST[state])
    return x, dt, A, B, C, D, s


def reference(x, dt, A, B, C, D, s, chunk=256):
    """(y, state) in fp32 on the fp16 inputs, and their magnitudes (the reference on absolute values)."""
    up = lambda t: None if t is None else t.float()  # noqa: E731
    y, st = ssm.ssd_chunked(x.float(), dt.float(), A, B.float(), C.float(), chunk, D, up(s))
    my, ms = ssm.ssd_chunked(x.float().abs(), dt.float(), A, B.float().abs(), C.float().abs(), chunk,
                             None if D is None else D.abs(), None if s is None else s.float().abs())
    return y, st, my, ms


check = check_float_ssm  # the shared bound (gpu_helpers)


def run(kernels, x, dt, A, B, C, D, s, st_dtype=torch.float32, chunk=256):
    b, L, h, p = x.shape
    n = B.shape[-1]
    ran = []

    def call(y, st):
        ran.append(kernels.ssd(x, dt, A, B, C, chunk, D, s, y, st))

    y, st = run_poisoned(call, [((b, L, h, p), torch.float16), ((b, h, p, n), st_dtype)])
    assert ran == [True, True]
    return y, st


CASES = [
    # (B, L, H, P, G, N, state)
    (1, 1, 4, 64, 1, 128, "fp32"),
    (1, 2, 4, 64, 2, 64, None),
    (2, 17, 8, 32, 2, 128, "fp32"),
    (1, 63, 8, 64, 1, 64, None),
    (1, 64, 8, 64, 8, 128, "fp32"),
    (3, 65, 8, 80, 2, 64, "fp32"),      # headdim 80 (% 16 == 0: taken)
    (1, 255, 8, 64, 2, 128, None),
    (2, 256, 8, 128, 1, 128, "fp32"),
    (1, 257, 16, 64, 8, 256, "fp32"),
    (4, 333, 8, 32, 2, 256, None),
    (1, 1000, 8, 128, 2, 64, "fp32"),
    (2, 1023, 8, 64, 1, 128, "fp16"),
    (1, 4096, 8, 64, 1, 128, "fp32"),
    (1, 4097, 4, 80, 1, 64, None),
    (1, 8192, 8, 64, 1, 128, "fp32"),
    (2, 8191, 4, 64, 2, 256, None),
]


@pytest.mark.parametrize("b,L,h,p,g,n,state", CASES, ids=[f"B{c[0]}L{c[1]}H{c[2]}P{c[3]}G{c[4]}N{c[5]}-{c[6]}"
                                                           for c in CASES])
def test_ssd_matches_reference(kernels, b, L, h, p, g, n, state):
    x, dt, A, B, C, D, s = make(b, L, h, p, g, n, seed=L, state=state)
    st_dtype = ST.get(state, torch.float32)
    y, st = run(kernels, x, dt, A, B, C, D, s, st_dtype)
    check(y, st, *reference(x, dt, A, B, C, D, s), name=f"L={L}")


@pytest.mark.parametrize("st_dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
def test_ssd_state_io_dtypes_no_D_fp16_dt(kernels, st_dtype):
    """fp16 state in and out, no D, fp16 dt; state_out may be state_in (in place)."""
    x, dt, A, B, C, _, s = make(2, 300, 8, 64, 2, 128, seed=3, state="fp16" if st_dtype == torch.float16 else "fp32",
                                dt_dtype=torch.float16)
    y, st = run(kernels, x, dt, A, B, C, None, s, st_dtype)
    check(y, st, *reference(x, dt, A, B, C, None, s))
    s2 = s.clone()
    y2 = torch.empty_like(y)
    assert kernels.ssd(x, dt, A, B, C, 256, None, s2, y2, s2)
    torch.cuda.synchronize()
    assert torch.equal(y2, y) and torch.equal(s2, st)


@pytest.mark.parametrize("splits", [(1, 255), (256, 256), (100, 700, 1), (1000, 3000, 96)],
                         ids=lambda s: "-".join(map(str, s)))
def test_ssd_carried_state_equals_one_shot(kernels, splits):
    """Prefill in pieces carrying the fp32 state equals the one-shot prefill (both within the bound of the
    reference one-shot)."""
    L = sum(splits)
    x, dt, A, B, C, D, _ = make(2, L, 8, 64, 2, 128, seed=11)
    ref = reference(x, dt, A, B, C, D, None)
    ys, s, t = [], None, 0
    for k in splits:
        sl = slice(t, t + k)
        y, s = run(kernels, x[:, sl], dt[:, sl], A, B[:, sl], C[:, sl], D, s)
        ys.append(y)
        t += k
    check(torch.cat(ys, 1), s, *ref, name="carried")


def test_ssd_strided_views(kernels):
    """x / B / C as views of one [B, L, E + 2GN] activation (the model's split), a token-strided dt, a batch
    slice: strides go to the kernel as they are (16-byte aligned rows)."""
    b, L, h, p, g, n = 3, 129, 8, 64, 2, 128
    e, gn = h * p, g * n
    gen = torch.Generator(device="cuda").manual_seed(5)
    xbc = torch.randn(b + 1, L, e + 2 * gn, device="cuda", generator=gen).half()[1:]
    x, B, C = xbc.split([e, gn, gn], -1)
    x, B, C = x.reshape(b, L, h, p), B.reshape(b, L, g, n) * 0.3, C.reshape(b, L, g, n)
    B = B.contiguous()[..., :]  # one dense operand among the views
    dt = (torch.rand(b, L, 2 * h, device="cuda", generator=gen) * 0.1)[..., :h]
    A = -torch.rand(h, device="cuda", generator=gen) * 4 - 0.5
    y, st = run(kernels, x, dt, A, B, C, None, None)
    check(y, st, *reference(x, dt, A, B, C, None, None))


@pytest.mark.parametrize("p,n", [(24, 64), (40, 128), (64, 16), (64, 32), (64, 100)])
def test_ssd_unsupported_shapes_answer_false(kernels, p, n):
    """Shapes outside ssd.h's set: the binding returns False and writes nothing (the poison stays)."""
    x, dt, A, B, C, D, _ = make(1, 40, 4, p, 1, n)
    y = torch.full((1, 40, 4, p), POISON[torch.float16][1], dtype=torch.float16, device="cuda")
    st = torch.full((1, 4, p, n), POISON[torch.float32][1], device="cuda")
    assert kernels.ssd(x, dt, A, B, C, 256, D, None, y, st) is False
    torch.cuda.synchronize()
    assert bool((y == POISON[torch.float16][1]).all()) and bool((st == POISON[torch.float32][1]).all())


def test_ssd_dispatch(kernels):
    """kernel_dispatch.ssd: the kernel where ssd.h takes the call (counted), the reference unchanged elsewhere
    (headdim 24, d_state 16); fp32 inputs are rounded to fp16 (y back in fp32, close to the reference)."""
    kd.counts.clear()
    x, dt, A, B, C, D, s = make(2, 100, 8, 64, 2, 64, state="fp32")
    with torch.inference_mode(), kd.use_kernels(kernels):
        y, st = kd.ssd(x, dt, A, B, C, 64, D, s)
        assert kd.counts == {"ssd": 1} and y.dtype == torch.float16 and st.dtype == torch.float32
        check(y, st, *reference(x, dt, A, B, C, D, s))
        y32, st32 = kd.ssd(x.float(), dt, A, B.float(), C.float(), 64, D, s)
        assert kd.counts == {"ssd": 2} and y32.dtype == torch.float32
        check(y32, st32, *reference(x, dt, A, B, C, D, s))
        for args in (make(1, 30, 4, 24, 1, 64), make(1, 30, 4, 64, 1, 16)):
            xx, dd, AA, BB, CC, DD, _ = args
            got = kd.ssd(xx, dd, AA, BB, CC, 64, DD, None)
            want = ssm.ssd_chunked(xx, dd, AA, BB, CC, 64, DD, None)
            assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    assert kd.counts == {"ssd": 2, "ssd:reference": 2}
