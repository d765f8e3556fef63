"""The torch._int_mm prefill path timed by benchmarks/kernels_linear.py (``*_linear_intmm`` rows) computes what the
reference ops define: int4 -> int8 weight bit-identical to ``w4a8_int8_weight``, fp16 output = the reference's fp32
output rounded to fp16. On CPU, with the int8 GEMM emulated exactly (int64 matmul) and with CPU ``torch._int_mm``."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import kernels_linear as kl  # noqa: E402

from quamba_edge.ops.w4a8_linear import w4a8_int8_weight, w4a8_linear  # noqa: E402
from quamba_edge.ops.w8a8_linear import w8a8_linear  # noqa: E402
from quamba_edge.quant.packing import pack_int4  # noqa: E402


def _mm_int64(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a.to(torch.int64) @ b.to(torch.int64)


MMS = [_mm_int64, torch._int_mm]


@pytest.mark.parametrize("mm", MMS, ids=["int64_matmul", "torch_int_mm"])
def test_w8a8_intmm_matches_reference(mm):
    g = torch.Generator().manual_seed(0)
    m, n, k = 24, 40, 4096
    x = torch.randint(-128, 128, (m, k), dtype=torch.int8, generator=g)
    w = torch.randint(-128, 128, (n, k), dtype=torch.int8, generator=g)
    x[0], w[0] = 127, torch.randint(100, 128, (k,), dtype=torch.int8, generator=g)  # acc[0, 0] > 2^24
    assert mm(x, w.t())[0, 0] > 2**24  # the int -> fp32 conversion rounds there
    xs, ws = torch.tensor(0.02), torch.rand(n, generator=g) * 0.01 + 0.001
    y = kl.w8a8_linear_intmm(x, w, xs * ws, mm=mm)
    assert y.dtype == torch.float16
    assert torch.equal(y, w8a8_linear(x, xs, w, ws).to(torch.float16))


@pytest.mark.parametrize("mm", MMS, ids=["int64_matmul", "torch_int_mm"])
@pytest.mark.parametrize("k,group_size", [(256, 128), (160, 128), (96, -1)])
def test_w4a8_intmm_matches_reference(mm, k, group_size):
    g = torch.Generator().manual_seed(1)
    m, n = 24, 32
    ng = 1 if group_size <= 0 else -(-k // group_size)
    codes = torch.randint(0, 16, (n, k), dtype=torch.uint8, generator=g)
    sg = (torch.rand(n, ng, generator=g) * 20).to(torch.float16)  # up to 8 * 20 = 160: the clamp is hit
    sc = torch.rand(n, generator=g) * 0.01 + 0.001
    x = torch.randint(-128, 128, (m, k), dtype=torch.int8, generator=g)
    xs = torch.tensor(0.02)
    packed = pack_int4(codes)
    w8 = kl.w4a8_weight_int8(packed, sg, group_size)
    assert torch.equal(w8, w4a8_int8_weight(codes, sg, group_size))
    assert w8.min() == -128  # the saturation was exercised
    y = kl.w4a8_linear_intmm(x, packed, sg, xs * sc, group_size, mm=mm)
    assert torch.equal(y, w4a8_linear(x, xs, codes, sg, sc, group_size).to(torch.float16))
