"""CUDA w4a8_linear against the reference op (quamba_edge/ops/w4a8_linear.py) on the GPU.

The int4 -> int8 step (fp16 multiply by the group scale, half-to-even, saturating) and the int32 sums are
exact, so int8 / fp32 outputs must equal the reference bit for bit, also where the int8 weight saturates.
M <= 16 runs the GEMV, M > 16 the tiled GEMM (the same int4 -> int8 tables, per k-tile or per k-step of 32).
"""

import pytest
import torch

from gpu_helpers import assert_calls_raise, run_poisoned
from linear_helpers import (DECODE_M, GEMM_M, GEMM_NK, MODEL_SHAPES, PREFILL_M, WIDE_M, gen, out_scale_for, rand_x8,
                            w4a8_weight)
from quamba_edge.ops import w4a8_linear as ref_linear
from quamba_edge.ops._common import quantize_int8

pytestmark = pytest.mark.gpu


def _check(kernels, x, xs, codes, packed, s_group, s_channel, group_size, bias, y_dtype):
    m, n = x.shape[0], codes.shape[0]
    y_ref_f = ref_linear(x, xs, codes, s_group, s_channel, group_size, None, bias)
    os = out_scale_for(y_ref_f) if y_dtype == torch.int8 else None
    (y,) = run_poisoned(lambda y: kernels.w4a8_linear(x, xs, packed, s_group, s_channel, group_size, bias, os, y),
                        [((m, n), y_dtype)])
    # int8: the reference's last step on its own float output (= ref_linear(..., out_scale=os), one matmul less)
    ref = quantize_int8(y_ref_f, os) if os is not None else y_ref_f.to(y_dtype)
    assert torch.equal(y, ref), f"{int((y != ref).sum())} of {y.numel()} elements differ"


@pytest.mark.parametrize("m", DECODE_M)
@pytest.mark.parametrize("model,layer,n,k", MODEL_SHAPES)
def test_model_shapes_decode(kernels, model, layer, n, k, m):
    g = gen("w4a8", n, k, m)
    codes, packed, s_group, s_channel = w4a8_weight(n, k, 128, g)
    _check(kernels, rand_x8(m, k, g), torch.tensor(0.02, device="cuda"), codes, packed, s_group, s_channel, 128,
           None, torch.int8 if layer != "out_proj" else torch.float32)


@pytest.mark.parametrize("m,n,k", WIDE_M)
@pytest.mark.parametrize("y_dtype", [torch.int8, torch.float32, torch.float16])
def test_wide_m_and_odd_n(kernels, m, n, k, y_dtype):
    g = gen("w4a8w", m, n, k)
    codes, packed, s_group, s_channel = w4a8_weight(n, k, 128, g)
    bias = torch.randn(n, device="cuda", generator=g)
    _check(kernels, rand_x8(m, k, g), torch.tensor(0.011, device="cuda"), codes, packed, s_group, s_channel, 128,
           bias, y_dtype)


@pytest.mark.parametrize("k,group_size", [(32, 128), (96, 0), (160, 128), (256, 64), (288, 32), (1024, 256),
                                          (2080, 128), (480, 96)])
@pytest.mark.parametrize("m", [1, 11, 40, 300])
def test_groups_tails_and_saturation(kernels, k, group_size, m):
    """Per-row groups, groups smaller than a k-step / k-tile (the GEMM's per-k-step tables: 32, 64, 96), partial
    last steps; wild group scales saturate int8."""
    g = gen("w4a8g", k, group_size, m)
    codes, packed, s_group, s_channel = w4a8_weight(72, k, group_size, g, wild=True)
    _check(kernels, rand_x8(m, k, g), torch.tensor(0.02, device="cuda"), codes, packed, s_group, s_channel,
           group_size, None, torch.int8)


@pytest.mark.parametrize("n,k", GEMM_NK)
@pytest.mark.parametrize("m", GEMM_M)
@pytest.mark.parametrize("y_dtype", [torch.int8, torch.float32, torch.float16])
def test_gemm_m_n_k_tails(kernels, m, n, k, y_dtype):
    """The GEMM around its tile edges: M tails of 64 / 128-row tiles, odd N, K tails of the 128-position k-tile
    (a last group of 32); bias on every other case."""
    g = gen("w4a8gemm", m, n, k, str(y_dtype))
    codes, packed, s_group, s_channel = w4a8_weight(n, k, 128, g)
    bias = torch.randn(n, device="cuda", generator=g) if (GEMM_M.index(m) + GEMM_NK.index((n, k))) % 2 else None
    _check(kernels, rand_x8(m, k, g), torch.tensor(0.011, device="cuda"), codes, packed, s_group, s_channel, 128,
           bias, y_dtype)


@pytest.mark.parametrize("model,layer,n,k", MODEL_SHAPES)
def test_model_shapes_prefill(kernels, model, layer, n, k):
    """Every linear of the benchmark models at M = 1024 (dt_proj's K = 160: one group per row)."""
    g = gen("w4a8p", n, k)
    gs = 128 if k % 128 == 0 else 0
    codes, packed, s_group, s_channel = w4a8_weight(n, k, gs, g)
    _check(kernels, rand_x8(PREFILL_M, k, g), torch.tensor(0.02, device="cuda"), codes, packed, s_group, s_channel, gs,
           None, torch.int8 if layer not in ("out_proj", "lm_head") else torch.float16)


_BAD_ARGS = """
x = torch.zeros(2, 64, dtype=torch.int8, device=dev)
w = torch.zeros(8, 32, dtype=torch.uint8, device=dev)
sg = torch.ones(8, 1, dtype=torch.float16, device=dev)
sc = torch.ones(8, device=dev)
xs = torch.ones((), device=dev)
yf = torch.empty(2, 8, device=dev)
bad = [
    (x, xs, w, sg.float(), sc, 128, None, None, yf),                                  # s_group not fp16
    (x, xs, w, torch.ones(8, 3, dtype=torch.float16, device=dev), sc, 32, None, None, yf),  # s_group columns
    (x[:, :48].contiguous(), xs, w[:, :24].contiguous(), sg, sc, 128, None, None, yf),       # K % 32 != 0
    (x, xs, w, torch.ones(8, 4, dtype=torch.float16, device=dev), sc, 16, None, None, yf),  # group 16
    (x, xs, w, sg, sc, 128, None, None, torch.empty(2, 8, dtype=torch.int8, device=dev)),  # int8 y, no out_scale
]
"""


def test_bad_arguments_raise(kernels):
    assert_calls_raise("w4a8_linear", _BAD_ARGS)


def test_sanitize_w4a8_linear(kernels):
    """GEMV calls, GEMM with M / N / K tails (64 x 64 tiles; per-k-tile and per-k-step group tables) and one call
    on the 128 x 128 tiles (257 x 8200: 195 tiles)."""
    for m, n, k, gs in [(1, 40, 160, 128), (13, 24, 288, 128), (20, 17, 128, 128), (70, 40, 288, 128),
                        (40, 24, 288, 96), (257, 8200, 160, 128)]:
        g = gen("w4a8san", m, n, k, gs)
        codes, packed, s_group, s_channel = w4a8_weight(n, k, gs, g)
        _check(kernels, rand_x8(m, k, g), torch.tensor(0.02, device="cuda"), codes, packed, s_group, s_channel,
               gs, torch.randn(n, device="cuda", generator=g) if m > 16 else None, torch.int8)
