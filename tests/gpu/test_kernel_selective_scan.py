"""CUDA selective_scan (the float Mamba1 scan, quamba_kernels/selective_scan.h) against
quamba_edge.models.ssm.selective_scan in fp32 on the same fp16 inputs.

Tolerance (fp16 y, fp32 math): y within 2^-10 |ref| (its fp16 rounding, 2x margin) + 2^-9 mag, mag = sum of
|terms| (the reference on |u|, |B|, |C|, |D| and |state|, times |silu(z)|): the kernel's summation order and any
exp2 approximation of exp(dt A) (relative ~2^-22 per factor) stay far below it; the state within 2^-9 of
mag_state (+ 2^-10 |ref| for an fp16 state)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gpu_helpers import run_poisoned, check_float_ssm
from quamba_edge.models import ssm
from quamba_edge.ops import kernel_dispatch as kd

pytestmark = pytest.mark.gpu
ST = {"fp32": torch.float32, "fp16": torch.float16}


def make(b, L, e, n, z=True, D=True, bias=True, state=None, seed=0):
    gen = torch.Generator(device="cuda").manual_seed(seed)
    r = lambda *s: torch.randn(*s, device="cuda", generator=gen)  # noqa: E731
    A = -torch.arange(1, n + 1, device="cuda").float().expand(e, n) * (torch.rand(e, 1, device="cuda", generator=gen)
                                                                         + 0.1)
    return (r(b, L, e).half(), (r(b, L, e) - 2).half(), A.contiguous(), r(b, L, n).half(), r(b, L, n).half(),
            r(e) if D else None, r(b, L, e).half() if z else None, (r(e) * 0.5 - 3) if bias else None, True,
            None if state is None else r(b, e, n).to(ST[state]))


def reference(u, delta, A, B, C, D, z, bias, softplus, s):
    up = lambda t: None if t is None else t.float()  # noqa: E731
    y, st = ssm.selective_scan(u.float(), delta.float(), A, B.float(), C.float(), D, up(z), bias, softplus, up(s))
    my, ms = ssm.selective_scan(u.float().abs(), delta.float(), A, B.float().abs(), C.float().abs(),
                                None if D is None else D.abs(), None, bias, softplus,
                                None if s is None else s.float().abs())
    if z is not None:
        my = my * F.silu(z.float()).abs()
    return y, st, my, ms


check = check_float_ssm  # the shared bound (gpu_helpers)


def run(kernels, args, st_dtype=torch.float32):
    u, A = args[0], args[2]
    b, L, e = u.shape

    def call(y, st):
        kernels.selective_scan(*args, y, st)

    return run_poisoned(call, [((b, L, e), torch.float16), ((b, e, A.shape[1]), st_dtype)])


CASES = [  # (B, L, E, N, z, D, bias, state)
    (1, 1, 64, 16, True, True, True, "fp32"),
    (2, 2, 128, 16, True, True, True, None),
    (2, 7, 200, 16, False, True, True, "fp32"),
    (1, 63, 96, 64, True, False, False, None),
    (3, 64, 128, 16, True, True, True, "fp16"),
    (1, 255, 64, 128, True, True, True, "fp32"),
    (2, 257, 160, 16, True, True, False, None),
    (1, 1000, 256, 16, True, True, True, "fp32"),
    (1, 2048, 5120, 16, True, True, True, None),       # mamba-2.8b's d_inner
    (2, 4097, 64, 256, True, True, True, "fp32"),
    (1, 300, 40, 20, True, True, True, "fp32"),        # N not a power of two
]


@pytest.mark.parametrize("b,L,e,n,z,D,bias,state", CASES, ids=[f"B{c[0]}L{c[1]}E{c[2]}N{c[3]}-{c[7]}" for c in CASES])
def test_selective_scan_matches_reference(kernels, b, L, e, n, z, D, bias, state):
    args = make(b, L, e, n, z, D, bias, state, seed=L)
    y, st = run(kernels, args, ST.get(state, torch.float32))
    check(y, st, *reference(*args))


def test_selective_scan_no_softplus_and_carried_state(kernels):
    """delta_softplus False (delta + bias used as dt, kept >= 0); a prefill in 3 pieces carrying the state equals
    the one-shot reference."""
    u, delta, A, B, C, D, z, _, _, s = make(2, 500, 128, 16, state="fp32", seed=4)
    delta = (delta.float().abs() * 0.02).half()
    args = (u, delta, A, B, C, D, z, None, False, s)
    y, st = run(kernels, args)
    check(y, st, *reference(*args))
    ys, cur = [], s
    for a, b_ in ((0, 1), (1, 300), (300, 500)):
        part = (u[:, a:b_], delta[:, a:b_], A, B[:, a:b_], C[:, a:b_], D, z[:, a:b_], None, False, cur)
        yy, cur = run(kernels, part)
        ys.append(yy)
    check(torch.cat(ys, 1), cur, *reference(*args))


def test_selective_scan_strided_views_in_place(kernels):
    """u / z as the two halves of in_proj's [B, L, 2E] output, B / C as slices of x_proj's output (token strides
    free); state_out may be state_in."""
    b, L, e, n = 2, 130, 96, 16
    gen = torch.Generator(device="cuda").manual_seed(6)
    xz = torch.randn(b, L, 2 * e, device="cuda", generator=gen).half()
    u, z = xz.chunk(2, -1)
    dbc = torch.randn(b, L, 4 + 2 * n, device="cuda", generator=gen).half()
    B, C = dbc[..., 4:4 + n], dbc[..., 4 + n:]
    delta = torch.randn(b, L, e, device="cuda", generator=gen).half()
    A = -torch.rand(e, n, device="cuda", generator=gen) * 3 - 0.1
    s = torch.randn(b, e, n, device="cuda", generator=gen)
    args = (u, delta, A, B, C, None, z, None, True, s)
    y, st = run(kernels, args)
    check(y, st, *reference(*args))
    s2, y2 = s.clone(), torch.empty_like(y)
    kernels.selective_scan(u, delta, A, B, C, None, z, None, True, s2, y2, s2)
    torch.cuda.synchronize()
    assert torch.equal(y2, y) and torch.equal(s2, st)


def test_selective_scan_dispatch(kernels):
    """kernel_dispatch.selective_scan: the kernel (counted) for fp16 and fp32 (rounded) inputs, the reference for
    d_state > 256."""
    kd.counts.clear()
    args = make(2, 40, 64, 16, state="fp32")
    with torch.inference_mode(), kd.use_kernels(kernels):
        y, st = kd.selective_scan(*args)
        y32, st32 = kd.selective_scan(*(a.float() if isinstance(a, torch.Tensor) else a for a in args))
        big = make(1, 8, 16, 300)
        got = kd.selective_scan(*big)
        want = ssm.selective_scan(*big)
    assert kd.counts == {"selective_scan": 2, "selective_scan:reference": 1}
    assert y.dtype == torch.float16 and y32.dtype == torch.float32 and st.dtype == st32.dtype == torch.float32
    check(y, st, *reference(*args))
    check(y32, st32, *reference(*args))
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
