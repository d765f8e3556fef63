"""CUDA w8a8_linear against the reference op (quamba_edge/ops/w8a8_linear.py) on the GPU.

The kernel accumulates exactly in int32 and repeats the reference's fp32 epilogue operation by operation, so
int8 and fp32 outputs must equal the reference bit for bit (fp16 outputs: the reference rounded to fp16).
M <= 16 runs the GEMV, M > 16 the tiled GEMM (K % 16 == 0 with 16-byte aligned rows; else the GEMV).
"""

import pytest
import torch

from gpu_helpers import assert_calls_raise, run_poisoned
from linear_helpers import DECODE_M, GEMM_M, GEMM_NK, MODEL_SHAPES, PREFILL_M, WIDE_M, gen, out_scale_for, rand_x8
from quamba_edge.ops import w8a8_linear as ref_linear
from quamba_edge.ops._common import quantize_int8

pytestmark = pytest.mark.gpu


def _weights(n, k, g, per_row=True, bias=False):
    w = torch.randint(-128, 128, (n, k), dtype=torch.int8, device="cuda", generator=g)
    ws = (0.001 + 0.01 * torch.rand(n if per_row else 1, device="cuda", generator=g))
    b = torch.randn(n, device="cuda", generator=g) if bias else None
    return w, ws, b


def _check(kernels, x, xs, w, ws, b, y_dtype, *, per_row_out=True):
    m, n = x.shape[0], w.shape[0]
    y_ref_f = ref_linear(x, xs, w, ws if ws.numel() > 1 else ws[0], b)
    os = None
    if y_dtype == torch.int8:
        os = out_scale_for(y_ref_f)
        if not per_row_out:
            os = os.max().reshape(1)
    (y,) = run_poisoned(lambda y: kernels.w8a8_linear(x, xs, w, ws, b, os, y), [((m, n), y_dtype)])
    if y_dtype == torch.int8:
        # the reference's step 4 on its own float output: ref_linear(..., out_scale=os) without a second matmul
        ref = quantize_int8(y_ref_f, os if os.numel() > 1 else os[0])
        # per-row scales down to std / 120 clamp a few percent; one shared scale (std / 40) clamps ~0.1 %, which
        # a few thousand outputs may miss: checked for per-row scales only
        if per_row_out and ref.numel() >= 2000:
            assert int((ref == 127).sum() + (ref == -128).sum()) > 0, "test inputs should make some outputs clamp"
    else:
        ref = y_ref_f.to(y_dtype)
    assert torch.equal(y, ref), f"{int((y != ref).sum())} of {y.numel()} elements differ"


@pytest.mark.parametrize("m", DECODE_M)
@pytest.mark.parametrize("model,layer,n,k", MODEL_SHAPES)
def test_model_shapes_decode(kernels, model, layer, n, k, m):
    g = gen("w8a8", n, k, m)
    w, ws, b = _weights(n, k, g, per_row=layer == "in_proj")
    x = rand_x8(m, k, g)
    xs = torch.tensor(0.02, device="cuda")
    _check(kernels, x, xs, w, ws, b, torch.int8 if layer != "out_proj" else torch.float32)


@pytest.mark.parametrize("m,n,k", WIDE_M)
@pytest.mark.parametrize("y_dtype", [torch.int8, torch.float32, torch.float16])
def test_wide_m_and_odd_n(kernels, m, n, k, y_dtype):
    g = gen("w8a8w", m, n, k)
    w, ws, b = _weights(n, k, g, bias=True)
    _check(kernels, rand_x8(m, k, g), torch.tensor(0.013, device="cuda"), w, ws, b, y_dtype)


@pytest.mark.parametrize("m", [3, 100])
@pytest.mark.parametrize("k", [16, 48, 64, 80, 208, 1040, 4, 24, 100, 333])
def test_k_tails_and_scalar_scales(kernels, k, m):
    """K past whole k-steps / k-tiles; K % 16 != 0 runs the byte-wise GEMV loads (also for M = 100)."""
    g = gen("w8a8k", k, m)
    w, ws, b = _weights(37, k, g, per_row=False)
    _check(kernels, rand_x8(m, k, g), torch.tensor(0.05, device="cuda"), w, ws, b, torch.int8, per_row_out=False)


@pytest.mark.parametrize("n,k", GEMM_NK)
@pytest.mark.parametrize("m", GEMM_M)
@pytest.mark.parametrize("y_dtype", [torch.int8, torch.float32, torch.float16])
def test_gemm_m_n_k_tails(kernels, m, n, k, y_dtype):
    """The GEMM around its tile edges: M tails of 64 / 128-row tiles, odd N, K tails of the 128-byte k-tile;
    per-row or scalar weight and output scales, with or without bias (alternating over the cases)."""
    g = gen("w8a8gemm", m, n, k, str(y_dtype))
    alt = (GEMM_M.index(m) + GEMM_NK.index((n, k))) % 2 == 1
    w, ws, b = _weights(n, k, g, per_row=alt, bias=not alt)
    _check(kernels, rand_x8(m, k, g), torch.tensor(0.013, device="cuda"), w, ws, b, y_dtype, per_row_out=not alt)


@pytest.mark.parametrize("model,layer,n,k", MODEL_SHAPES)
def test_model_shapes_prefill(kernels, model, layer, n, k):
    """Every linear of the benchmark models at M = 1024 (the big 128 x 128 tiles on most of them)."""
    g = gen("w8a8p", n, k)
    w, ws, b = _weights(n, k, g, per_row=layer == "in_proj")
    _check(kernels, rand_x8(PREFILL_M, k, g), torch.tensor(0.02, device="cuda"), w, ws, b,
           torch.int8 if layer not in ("out_proj", "lm_head") else torch.float16)


@pytest.mark.parametrize("y_dtype", [torch.int8, torch.float16, torch.float32])
@pytest.mark.parametrize("y_offset", [0, 1])
def test_gemm_strided_rows(kernels, y_dtype, y_offset):
    """GEMM on x as a column slice of a wider tensor (aligned row stride 160 != K) and y a slice of a wider
    buffer: offset 0 with row stride 76 (paired stores) or offset 1 with row stride 77 (odd element offsets:
    single stores); the columns around y's slice must stay untouched."""
    g = gen("w8a8gs", y_offset, str(y_dtype))
    big = torch.randint(-128, 128, (100, 160), dtype=torch.int8, device="cuda", generator=g)
    x = big[:, 16:16 + 128]
    w, ws, b = _weights(72, 128, g, bias=True)
    xs = torch.tensor(0.03, device="cuda")
    y_ref_f = ref_linear(x, xs, w, ws, b)
    os = out_scale_for(y_ref_f) if y_dtype == torch.int8 else None
    ybig = torch.full((100, 76 + y_offset), 7, dtype=y_dtype, device="cuda")
    y = ybig[:, y_offset:y_offset + 72]
    kernels.w8a8_linear(x, xs, w, ws, b, os, y)
    ref = quantize_int8(y_ref_f, os) if os is not None else y_ref_f.to(y_dtype)
    assert torch.equal(y, ref), f"{int((y != ref).sum())} of {y.numel()} elements differ"
    outside = torch.cat([ybig[:, :y_offset].flatten(), ybig[:, y_offset + 72:].flatten()])
    assert (outside == 7).all(), "columns outside y must not be written"


def test_gemm_leading_dims(kernels):
    """[B, L, K] activations and [B, L, N] outputs (B * L = 100 token rows: the GEMM)."""
    g = gen("w8a8ld")
    x = torch.randint(-128, 128, (2, 50, 96), dtype=torch.int8, device="cuda", generator=g)
    w, ws, b = _weights(40, 96, g, bias=True)
    xs = torch.tensor(0.03, device="cuda")
    (y,) = run_poisoned(lambda y: kernels.w8a8_linear(x, xs, w, ws, b, None, y), [((2, 50, 40), torch.float32)])
    assert torch.equal(y, ref_linear(x, xs, w, ws, b))


@pytest.mark.parametrize("offset", [0, 4])
def test_strided_rows_and_leading_dims(kernels, offset):
    """x as a column slice of a wider tensor (row stride != K; offset 4: unaligned rows, byte-wise loads),
    [B, L, K] leading dims, y a slice too."""
    g = gen("w8a8s", offset)
    big = torch.randint(-128, 128, (6, 100), dtype=torch.int8, device="cuda", generator=g)
    x = big[:, offset:offset + 64]
    w, ws, b = _weights(40, 64, g, bias=True)
    xs = torch.tensor(0.03, device="cuda")
    ybig = torch.full((6, 48), 7.0, device="cuda")
    y = ybig[:, :40]
    kernels.w8a8_linear(x, xs, w, ws, b, None, y)
    ref = ref_linear(x, xs, w, ws, b)
    assert torch.equal(y, ref)
    assert (ybig[..., 40:] == 7.0).all(), "columns past N must not be written"


_BAD_ARGS = """
x = torch.zeros(2, 32, dtype=torch.int8, device=dev)
w = torch.zeros(8, 32, dtype=torch.int8, device=dev)
s = torch.ones(8, device=dev)
xs = torch.ones((), device=dev)
y8 = torch.empty(2, 8, dtype=torch.int8, device=dev)
yf = torch.empty(2, 8, device=dev)
bad = [
    (x.float(), xs, w, s, None, None, yf),                                        # x not int8
    (x, xs, w[:, :16], s, None, None, yf),                                        # K mismatch
    (x, xs, w, s, None, None, y8),                                                # int8 y without out_scale
    (x, xs, w, s, None, None, torch.empty(3, 8, device=dev)),                     # y rows != x rows
    (x, xs, w, s[:5], None, None, yf),                                            # w_scale neither 1 nor N
]
"""


def test_bad_arguments_raise(kernels):
    """Unsupported shapes and bad dtypes raise with a message, never compute a wrong answer (subprocess)."""
    assert_calls_raise("w8a8_linear", _BAD_ARGS)


def test_sanitize_w8a8_linear(kernels):
    """Small calls for compute-sanitizer (plugins/sanitize_driver.py): GEMV with one and two token tiles, tails;
    GEMM with M, N and K tails in the 64 x 64 tiles and (257 x 8200: 195 tiles, >= the SMs of an H200) the
    128 x 128 ones."""
    for m, n, k in [(1, 40, 80), (13, 24, 272), (20, 17, 64), (70, 40, 144), (257, 8200, 80)]:
        g = gen("w8a8san", m, n, k)
        w, ws, b = _weights(n, k, g, bias=True)
        _check(kernels, rand_x8(m, k, g), torch.tensor(0.02, device="cuda"), w, ws, b, torch.int8)
