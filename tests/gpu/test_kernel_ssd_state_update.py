"""CUDA ssd_state_update (one float Mamba2 decode step, quamba_kernels/ssd_state_update.h) against
quamba_edge.models.ssm.ssd_state_update in fp32 on the same fp16 inputs. Tolerance as tests/gpu/test_kernel_ssd.py:
|y - ref| <= 2^-10 |ref| + 2^-9 mag (mag: the reference on absolute values = sum |terms|), the state within
2^-9 mag_state (+ 2^-10 |ref| for an fp16 state)."""

from __future__ import annotations

import pytest
import torch

from gpu_helpers import run_poisoned, check_float_ssm
from quamba_edge.models import ssm
from quamba_edge.ops import kernel_dispatch as kd

pytestmark = pytest.mark.gpu


def make(b, h, p, g, n, st_dtype=torch.float32, dt_dtype=torch.float32, seed=0):
    gen = torch.Generator(device="cuda").manual_seed(seed)
    r = lambda *s: torch.randn(*s, device="cuda", generator=gen)  # noqa: E731
    return (r(b, h, p, n).to(st_dtype), r(b, h, p).half(),
            (torch.rand(b, h, device="cuda", generator=gen) * 0.1 + 0.001).to(dt_dtype),
            -torch.exp(torch.rand(h, device="cuda", generator=gen) * 2.5), (r(b, g, n) * 0.3).half(),
            (r(b, g, n) * 0.3).half(), r(h))


def reference(s, x, dt, A, B, C, D):
    y, st = ssm.ssd_state_update(s.float(), x.float(), dt.float(), A, B.float(), C.float(), D)
    my, ms = ssm.ssd_state_update(s.float().abs(), x.float().abs(), dt.float(), A, B.float().abs(),
                                  C.float().abs(), None if D is None else D.abs())
    return y, st, my, ms


check = check_float_ssm  # the shared bound (gpu_helpers)


def run(kernels, s, x, dt, A, B, C, D):
    def call(y, st):
        kernels.ssd_state_update(s, x, dt, A, B, C, D, y, st)

    return run_poisoned(call, [(tuple(x.shape), torch.float16), (tuple(s.shape), s.dtype)])


CASES = [  # (B, H, P, G, N, state dtype, dt dtype, D)
    (1, 8, 64, 1, 128, torch.float32, torch.float32, True),
    (2, 8, 64, 2, 64, torch.float16, torch.float32, True),
    (4, 16, 32, 8, 256, torch.float32, torch.float16, False),
    (3, 8, 80, 2, 128, torch.float32, torch.float32, True),
    (1, 4, 24, 1, 16, torch.float16, torch.float16, True),    # any headdim; d_state 16
    (2, 6, 50, 3, 48, torch.float32, torch.float32, True),
    (64, 80, 64, 1, 128, torch.float32, torch.float32, True),  # mamba2-2.7b, batch 64
]


@pytest.mark.parametrize("b,h,p,g,n,st,dtt,has_d", CASES, ids=[f"B{c[0]}H{c[1]}P{c[2]}G{c[3]}N{c[4]}-{c[5]}"
                                                              .replace("torch.", "") for c in CASES])
def test_ssd_state_update_matches_reference(kernels, b, h, p, g, n, st, dtt, has_d):
    s, x, dt, A, B, C, D = make(b, h, p, g, n, st, dtt, seed=b * h)
    D = D if has_d else None
    y, new = run(kernels, s, x, dt, A, B, C, D)
    check(y, new, *reference(s, x, dt, A, B, C, D))


def test_ssd_state_update_in_place_and_strided(kernels):
    """new_state may be state; x / B / C views with a batch stride (one token of [B, L, ...])."""
    b, h, p, g, n = 3, 8, 64, 2, 128
    s, _, _, A, _, _, D = make(b, h, p, g, n)
    gen = torch.Generator(device="cuda").manual_seed(1)
    xbc = torch.randn(b, 4, h * p + 2 * g * n, device="cuda", generator=gen).half()[:, 2]
    x, B, C = xbc.split([h * p, g * n, g * n], -1)
    x, B, C = x.reshape(b, h, p), B.reshape(b, g, n), C.reshape(b, g, n)
    dt = torch.rand(b, 2 * h, device="cuda", generator=gen)[:, :h] * 0.1
    y, new = run(kernels, s, x, dt, A, B, C, D)
    check(y, new, *reference(s, x, dt, A, B, C, D))
    s2, y2 = s.clone(), torch.empty_like(y)
    kernels.ssd_state_update(s2, x, dt, A, B, C, D, y2, s2)
    torch.cuda.synchronize()
    assert torch.equal(y2, y) and torch.equal(s2, new)


def test_decode_steps_equal_prefill(kernels):
    """16 decode steps carrying the fp32 state agree with the ssd_chunked reference over the same tokens."""
    b, L, h, p, g, n = 2, 16, 8, 64, 2, 128
    gen = torch.Generator(device="cuda").manual_seed(2)
    x = torch.randn(b, L, h, p, device="cuda", generator=gen).half()
    B, C = [(torch.randn(b, L, g, n, device="cuda", generator=gen) * 0.3).half() for _ in range(2)]
    dt = torch.rand(b, L, h, device="cuda", generator=gen) * 0.1
    A, D = -torch.rand(h, device="cuda", generator=gen) * 5, torch.randn(h, device="cuda", generator=gen)
    s0 = torch.randn(b, h, p, n, device="cuda", generator=gen)
    y_ref, s_ref = ssm.ssd_chunked(x.float(), dt, A, B.float(), C.float(), 256, D, s0)
    s, ys = s0, []
    for t in range(L):
        y, s = run(kernels, s, x[:, t], dt[:, t], A, B[:, t], C[:, t], D)
        ys.append(y)
    _, _, my, _ = reference(s0, x[:, 0], dt[:, 0], A, B[:, 0], C[:, 0], D)
    y = torch.stack(ys, 1).float()
    tol = 2**-8 * float(y_ref.abs().max())
    torch.testing.assert_close(y, y_ref, rtol=2**-9, atol=tol)
    torch.testing.assert_close(s, s_ref, rtol=2**-9, atol=2**-8 * float(s_ref.abs().max()))


def test_ssd_state_update_dispatch(kernels):
    """kernel_dispatch.ssd_state_update: the kernel (counted), y in x's dtype, a new fp32 state, the caller's
    state untouched; an fp64 call stays on the reference."""
    kd.counts.clear()
    s, x, dt, A, B, C, D = make(2, 8, 64, 2, 128, torch.float16)
    keep = s.clone()
    with torch.inference_mode(), kd.use_kernels(kernels):
        y, new = kd.ssd_state_update(s, x, dt, A, B, C, D)
        y32, _ = kd.ssd_state_update(s, x.float(), dt, A, B.float(), C.float(), D)
        kd.ssd_state_update(s.double(), x.double(), dt.double(), A, B.double(), C.double(), D)
    assert kd.counts == {"ssd_state_update": 2, "ssd_state_update:reference": 1}
    assert y.dtype == torch.float16 and y32.dtype == torch.float32 and new.dtype == torch.float32
    assert torch.equal(s, keep)
    check(y, new, *reference(s, x, dt, A, B, C, D))
    check(y32, new, *reference(s, x, dt, A, B, C, D))
