"""CUDA w4a16_linear against the reference op (quamba_edge/ops/w4a16_linear.py) on the GPU.

The kernel multiplies fp16 activations with the exact fp16 codes (c - 8) on tensor cores (fp32 sums) and scales
each group's partial sum in fp32: the reference's fp32 result up to the order of additions.
"""

import pytest
import torch

from gpu_helpers import assert_calls_raise, assert_fp16_close, run_poisoned
from linear_helpers import DECODE_M, MODEL_SHAPES, WIDE_M, gen, group_count, w4_codes
from quamba_edge.ops import w4a16_dequantize
from quamba_edge.ops import w4a16_linear as ref_linear
from quamba_edge.quant.packing import pack_int4

pytestmark = pytest.mark.gpu


def _weight(n, k, group_size, g):
    codes = w4_codes(n, k, g)
    scale = (0.002 + 0.02 * torch.rand(n, group_count(k, group_size), device="cuda", generator=g)).to(torch.float16)
    return codes, pack_int4(codes), scale


def _check(kernels, x, codes, packed, scale, group_size, bias, y_dtype):
    m, n = x.shape[0], codes.shape[0]
    (y,) = run_poisoned(lambda y: kernels.w4a16_linear(x, packed, scale, group_size, bias, y), [((m, n), y_dtype)])
    ref = ref_linear(x, codes, scale, group_size, bias)
    k = x.shape[1]
    if 0 < group_size < k and group_size % 128 != 0:
        # prescaled fp16 weights: each |w x| term may move by 2^-11 of itself (fp16 rounding of w), so bound
        # the error per output by 2^-10 sum_k |w_k x_k| (2x margin), plus the output's own rounding
        w_abs = w4a16_dequantize(codes, scale, group_size).abs()
        bound = 2**-10 * (x.float().abs() @ w_abs.t()) + 2**-10 * ref.abs() + 1e-6
        err = (y.float() - ref).abs()
        assert torch.isfinite(y).all() and bool((err <= bound).all()), (
            f"{int((err > bound).sum())} elements past the fp16 weight-rounding bound, max err {float(err.max()):.3g}")
        return
    # exact codes: fp32 output differs by summation order only; fp16 output by its rounding too
    tol = 1e-4 if y_dtype == torch.float32 else 2e-3
    assert_fp16_close(y, ref, "y", rtol=tol, atol=tol * 0.1 * float(ref.abs().max()))


def _x(m, k, g):
    return torch.randn(m, k, device="cuda", generator=g).to(torch.float16)


@pytest.mark.parametrize("m", DECODE_M)
@pytest.mark.parametrize("model,layer,n,k", MODEL_SHAPES)
def test_model_shapes_decode(kernels, model, layer, n, k, m):
    g = gen("w4a16", n, k, m)
    codes, packed, scale = _weight(n, k, 128, g)
    _check(kernels, _x(m, k, g), codes, packed, scale, 128, None, torch.float16)


@pytest.mark.parametrize("m,n,k", WIDE_M)
@pytest.mark.parametrize("y_dtype", [torch.float32, torch.float16])
def test_wide_m_and_odd_n(kernels, m, n, k, y_dtype):
    g = gen("w4a16w", m, n, k)
    codes, packed, scale = _weight(n, k, 128, g)
    _check(kernels, _x(m, k, g), codes, packed, scale, 128, torch.randn(n, device="cuda", generator=g), y_dtype)


@pytest.mark.parametrize("k,group_size", [(32, 128), (96, 0), (160, 128), (384, 256), (1024, 512), (2080, 128),
                                          (64, 32), (288, 32), (640, 64), (4096, 96)])
@pytest.mark.parametrize("m", [1, 12])
def test_groups_and_tails(kernels, k, group_size, m):
    """Step groups (group_size % 128 == 0 or per row) and prescaled codes (other multiples of 32)."""
    g = gen("w4a16g", k, group_size, m)
    codes, packed, scale = _weight(72, k, group_size, g)
    _check(kernels, _x(m, k, g), codes, packed, scale, group_size, None, torch.float32)


_BAD_ARGS = """
x = torch.zeros(2, 64, dtype=torch.float16, device=dev)
w = torch.zeros(8, 32, dtype=torch.uint8, device=dev)
s = torch.ones(8, 1, dtype=torch.float16, device=dev)
yf = torch.empty(2, 8, device=dev)
bad = [
    (x.float(), w, s, 128, None, yf),                                                  # x not fp16
    (x, w, torch.ones(8, 4, dtype=torch.float16, device=dev), 16, None, yf),           # group 16
    (x[:, :48].contiguous(), w[:, :24].contiguous(), s, 128, None, yf),                # K % 32 != 0
    (x, w, s, 128, None, torch.empty(2, 8, dtype=torch.int8, device=dev)),             # int8 y
]
"""


def test_bad_arguments_raise(kernels):
    assert_calls_raise("w4a16_linear", _BAD_ARGS)


def test_sanitize_w4a16_linear(kernels):
    for m, n, k in [(1, 40, 160), (13, 24, 288), (20, 17, 128)]:
        g = gen("w4a16san", m, n, k)
        codes, packed, scale = _weight(n, k, 128, g)
        _check(kernels, _x(m, k, g), codes, packed, scale, 128, None, torch.float32)
