"""CUDA selective_state_update (one float Mamba1 decode step, quamba_kernels/selective_state_update.h) against
quamba_edge.models.ssm.selective_state_update in fp32 on the same fp16 inputs; tolerance as in
tests/gpu/test_kernel_selective_scan.py (2^-10 |ref| + 2^-9 sum |terms|)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gpu_helpers import run_poisoned, check_float_ssm
from quamba_edge.models import ssm
from quamba_edge.ops import kernel_dispatch as kd

pytestmark = pytest.mark.gpu


def make(b, e, n, z=True, D=True, bias=True, st_dtype=torch.float32, seed=0):
    gen = torch.Generator(device="cuda").manual_seed(seed)
    r = lambda *s: torch.randn(*s, device="cuda", generator=gen)  # noqa: E731
    A = -(torch.rand(e, n, device="cuda", generator=gen) * 8 + 0.1)
    return (r(b, e, n).to(st_dtype), r(b, e).half(), (r(b, e) - 2).half(), A, r(b, n).half(), r(b, n).half(),
            r(e) if D else None, r(b, e).half() if z else None, (r(e) * 0.5 - 3) if bias else None, True)


def reference(s, x, dt, A, B, C, D, z, bias, softplus):
    up = lambda t: None if t is None else t.float()  # noqa: E731
    y, st = ssm.selective_state_update(s.float(), x.float(), dt.float(), A, B.float(), C.float(), D, up(z), bias,
                                       softplus)
    my, ms = ssm.selective_state_update(s.float().abs(), x.float().abs(), dt.float(), A, B.float().abs(),
                                        C.float().abs(), None if D is None else D.abs(), None, bias, softplus)
    if z is not None:
        my = my * F.silu(z.float()).abs()
    return y, st, my, ms


check = check_float_ssm  # the shared bound (gpu_helpers)


def run(kernels, args):
    s, x = args[0], args[1]

    def call(y, st):
        kernels.selective_state_update(*args, y, st)

    return run_poisoned(call, [(tuple(x.shape), torch.float16), (tuple(s.shape), s.dtype)])


CASES = [  # (B, E, N, z, D, bias, state dtype)
    (1, 64, 16, True, True, True, torch.float32),
    (2, 200, 16, False, True, True, torch.float16),
    (4, 128, 64, True, False, False, torch.float32),
    (3, 96, 256, True, True, True, torch.float32),
    (1, 40, 20, True, True, True, torch.float16),
    (64, 5120, 16, True, True, True, torch.float32),  # mamba-2.8b, batch 64
]


@pytest.mark.parametrize("b,e,n,z,D,bias,st", CASES, ids=[f"B{c[0]}E{c[1]}N{c[2]}-{c[6]}".replace("torch.", "")
                                                          for c in CASES])
def test_selective_state_update_matches_reference(kernels, b, e, n, z, D, bias, st):
    args = make(b, e, n, z, D, bias, st, seed=e)
    y, new = run(kernels, args)
    check(y, new, *reference(*args))


def test_selective_state_update_in_place_strided(kernels):
    """x / z as halves of one [B, 2E] row, B / C slices; new_state may be state."""
    b, e, n = 3, 128, 16
    s, _, dt, A, _, _, D, _, bias, _ = make(b, e, n)
    gen = torch.Generator(device="cuda").manual_seed(3)
    x, z = torch.randn(b, 2 * e, device="cuda", generator=gen).half().chunk(2, -1)
    bc = torch.randn(b, 4 + 2 * n, device="cuda", generator=gen).half()
    args = (s, x, dt, A, bc[:, 4:4 + n], bc[:, 4 + n:], D, z, bias, True)
    y, new = run(kernels, args)
    check(y, new, *reference(*args))
    s2, y2 = s.clone(), torch.empty_like(y)
    kernels.selective_state_update(s2, *args[1:], y2, s2)
    torch.cuda.synchronize()
    assert torch.equal(y2, y) and torch.equal(s2, new)


def test_decode_steps_equal_scan(kernels):
    """12 decode steps carrying the state agree with selective_scan over the same tokens."""
    b, L, e, n = 2, 12, 64, 16
    gen = torch.Generator(device="cuda").manual_seed(4)
    r = lambda *s: torch.randn(*s, device="cuda", generator=gen)  # noqa: E731
    u, delta, z = r(b, L, e).half(), (r(b, L, e) - 2).half(), r(b, L, e).half()
    B, C = r(b, L, n).half(), r(b, L, n).half()
    A, D, bias, s = -(torch.rand(e, n, device="cuda", generator=gen) * 4 + 0.1), r(e), r(e) * 0.5 - 3, r(b, e, n)
    y_ref, s_ref = ssm.selective_scan(u.float(), delta.float(), A, B.float(), C.float(), D, z.float(), bias, True, s)
    ys, cur = [], s
    for t in range(L):
        y, cur = run(kernels, (cur, u[:, t], delta[:, t], A, B[:, t], C[:, t], D, z[:, t], bias, True))
        ys.append(y)
    y = torch.stack(ys, 1).float()
    torch.testing.assert_close(y, y_ref, rtol=2**-9, atol=2**-8 * float(y_ref.abs().max()))
    torch.testing.assert_close(cur, s_ref, rtol=2**-9, atol=2**-8 * float(s_ref.abs().max()))


def test_selective_state_update_dispatch(kernels):
    kd.counts.clear()
    args = make(2, 64, 16, st_dtype=torch.float16)
    keep = args[0].clone()
    with torch.inference_mode(), kd.use_kernels(kernels):
        y, new = kd.selective_state_update(*args)
        y32, _ = kd.selective_state_update(*(a.float() if isinstance(a, torch.Tensor) else a for a in args))
        big = make(1, 16, 300)
        got, want = kd.selective_state_update(*big), ssm.selective_state_update(*big)
    assert kd.counts == {"selective_state_update": 2, "selective_state_update:reference": 1}
    assert y.dtype == torch.float16 and y32.dtype == torch.float32 and new.dtype == torch.float32
    assert torch.equal(args[0], keep)
    check(y, new, *reference(*args))
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
