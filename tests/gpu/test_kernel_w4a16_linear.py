"""CUDA w4a16_linear against the reference op (quamba_edge/ops/w4a16_linear.py) on the GPU.

The kernel multiplies fp16 activations with the exact fp16 codes (c - 8) on tensor cores (fp32 sums) and scales
each group's partial sum in fp32: the reference's fp32 result up to the order of additions. M <= 16 runs the
GEMV, M > 16 the tiled GEMM (exact codes and per-group fp32 scaling for group_size % 64 == 0 or one group per
row; else prescaled fp16 weights, as the GEMV for group sizes that are not multiples of 128).
"""

import pytest
import torch

from gpu_helpers import assert_calls_raise, assert_fp16_close, run_poisoned
from linear_helpers import DECODE_M, GEMM_M, GEMM_NK, MODEL_SHAPES, PREFILL_M, WIDE_M, gen, group_count, w4_codes
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
    # exact codes with per-group fp32 scaling: the GEMV for group_size % 128 == 0, the GEMM (M > 16) for % 64
    if 0 < group_size < k and group_size % (128 if m <= 16 else 64) != 0:
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
@pytest.mark.parametrize("m", [1, 12, 40, 300])
def test_groups_and_tails(kernels, k, group_size, m):
    """GEMV: step groups (group_size % 128 == 0 or per row) and prescaled codes (other multiples of 32); GEMM
    (M = 40, 300): exact codes with per-group scaling (group_size % 64 == 0, per row) or prescaled (32, 96)."""
    g = gen("w4a16g", k, group_size, m)
    codes, packed, scale = _weight(72, k, group_size, g)
    _check(kernels, _x(m, k, g), codes, packed, scale, group_size, None, torch.float32)


@pytest.mark.parametrize("n,k", GEMM_NK)
@pytest.mark.parametrize("m", GEMM_M)
@pytest.mark.parametrize("y_dtype", [torch.float32, torch.float16])
def test_gemm_m_n_k_tails(kernels, m, n, k, y_dtype):
    """The GEMM around its tile edges: M tails of 64 / 128-row tiles, odd N, K tails of the 64-position k-tile
    (the last group of 128 cut to 32); bias on every other case."""
    g = gen("w4a16gemm", m, n, k, str(y_dtype))
    codes, packed, scale = _weight(n, k, 128, g)
    bias = torch.randn(n, device="cuda", generator=g) if (GEMM_M.index(m) + GEMM_NK.index((n, k))) % 2 else None
    _check(kernels, _x(m, k, g), codes, packed, scale, 128, bias, y_dtype)


@pytest.mark.parametrize("model,layer,n,k", MODEL_SHAPES)
def test_model_shapes_prefill(kernels, model, layer, n, k):
    """Every linear of the benchmark models at M = 1024 (dt_proj's K = 160: one group per row)."""
    g = gen("w4a16p", n, k)
    gs = 128 if k % 128 == 0 else 0
    codes, packed, scale = _weight(n, k, gs, g)
    _check(kernels, _x(PREFILL_M, k, g), codes, packed, scale, gs, None, torch.float16)


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


@pytest.mark.parametrize("n,k,gs", [(1, 32, 32), (17, 96, 32), (40, 256, 64), (24, 384, 128), (9, 160, 0),
                                    (4096, 2560, 128)])
def test_dequantize_is_the_reference_weight_in_fp16(kernels, n, k, gs):
    """w4a16_dequantize = fp16 of the reference's exact fp32 weight (round to nearest even), bit for bit, every
    element written; a slice of output rows (the prefill's wide layers) as the whole's rows."""
    g = gen("w4a16dq", n, k, gs)
    codes, packed, scale = _weight(n, k, gs, g)
    (w,) = run_poisoned(lambda w: kernels.w4a16_dequantize(packed, scale, k, gs, w), [((n, k), torch.float16)])
    want = w4a16_dequantize(codes, scale, gs if gs > 0 else k).half()
    assert torch.equal(w, want), f"{int((w != want).sum())} weights differ"
    if n > 2:
        part = torch.empty(n - 2, k, dtype=torch.float16, device="cuda")
        kernels.w4a16_dequantize(packed[1:-1], scale[1:-1], k, gs, part)
        assert torch.equal(part, want[1:-1])


def test_dequantize_bad_arguments_raise(kernels):
    w, s = torch.zeros(8, 24, dtype=torch.uint8, device="cuda"), torch.ones(8, 1, dtype=torch.float16, device="cuda")
    with pytest.raises(RuntimeError, match="w4a16_dequantize"):  # K = 48: K % 32 != 0
        kernels.w4a16_dequantize(w, s, 48, 128, torch.empty(8, 48, dtype=torch.float16, device="cuda"))
    with pytest.raises(RuntimeError, match="out"):  # fp32 out
        kernels.w4a16_dequantize(w, s, 48, 128, torch.empty(8, 48, device="cuda"))


@pytest.mark.parametrize("m,n,k,gs,bias", [(128, 40, 256, 128, False), (300, 296, 288, 32, True),
                                           (1024, 4096, 2560, 128, False)])
def test_prefill_through_cublas(kernels, m, n, k, gs, bias):
    """kernel_dispatch's W4A16 prefill from W4A16_CUBLAS_MIN_M rows: dequantized fp16 weight x cuBLAS fp16 with
    fp32 output, within the fp16 weight-rounding bound of the reference; sliced when wide."""
    from quamba_edge.ops import kernel_dispatch as kd

    assert m >= kd.W4A16_CUBLAS_MIN_M
    g = gen("w4a16cublas", m, n, k, gs)
    codes, packed, scale = _weight(n, k, gs, g)
    x = _x(m, k, g)
    b = torch.randn(n, device="cuda", generator=g) if bias else None
    ref = ref_linear(x, codes, scale, gs, b)
    w_abs = w4a16_dequantize(codes, scale, gs).abs()
    bound = 2**-10 * (x.float().abs() @ w_abs.t()) + 2**-10 * ref.abs() + 1e-6
    for sliced in (False, True):
        kd.counts.clear()
        with kd.use_kernels(kernels):
            if sliced:
                old, kd._W4A16_DEQUANT_SLICE = kd._W4A16_DEQUANT_SLICE, 128 * k
            try:
                y = kd.w4a16_linear(x, packed, scale, gs, b, k)
            finally:
                if sliced:
                    kd._W4A16_DEQUANT_SLICE = old
        assert y.dtype == torch.float32 and kd.counts["w4a16_linear"] == 1
        err = (y - ref).abs()
        assert bool((err <= bound).all()), f"max err {float(err.max()):.3g}"


def test_sanitize_w4a16_linear(kernels):
    """GEMV calls, GEMM with M / N / K tails (64 x 64 tiles; exact and prescaled codes) and one call on the
    128 x 128 tiles (257 x 8200: 195 tiles)."""
    for m, n, k, gs in [(1, 40, 160, 128), (13, 24, 288, 128), (20, 17, 128, 128), (70, 40, 288, 128),
                        (40, 24, 288, 32), (257, 8200, 160, 128)]:
        g = gen("w4a16san", m, n, k, gs)
        codes, packed, scale = _weight(n, k, gs, g)
        _check(kernels, _x(m, k, g), codes, packed, scale, gs,
               torch.randn(n, device="cuda", generator=g) if m > 16 else None, torch.float32)
        w = torch.empty(n, k, dtype=torch.float16, device="cuda")
        kernels.w4a16_dequantize(packed, scale, k, gs, w)
        torch.cuda.synchronize()
