"""CUDA quant_hadamard against the reference op (quamba_edge/ops/quant_hadamard.py) on the GPU.

The kernel gets the very matrix used offline (``quamba_edge.quant.hadamard.hadamard_matrix(n)``) and must
give the reference's int8 output within +-1 LSB, with the clamp (spec pitfall F.12).
"""

import pytest
import torch
from gpu_helpers import assert_int8_close, run_poisoned

from quamba_edge.ops.quant_hadamard import hadamard as ref_hadamard
from quamba_edge.ops.quant_hadamard import quant_hadamard as ref_quant_hadamard
from quamba_edge.quant.hadamard import hadamard_factors, hadamard_matrix

pytestmark = pytest.mark.gpu


def _check(kernels, x, n, gen, *, clamp_share=0.01, matrix=None, extended=False):
    m = hadamard_matrix(n, device="cuda", extended=extended)
    y_f = ref_hadamard(x, m)
    # a scale that puts ~clamp_share of the outputs beyond the int8 range (the clamp must act)
    amax = torch.quantile(y_f.abs().flatten()[:1_000_000].float(), 1.0 - clamp_share).item() if y_f.numel() > 1 else 1.0
    out_scale = max(amax, 1e-6) / 127.0 * (0.9 + 0.2 * float(torch.rand((), device="cuda", generator=gen)))
    mk = m if matrix is None else matrix(m)

    def call(y):
        kernels.quant_hadamard(x, mk, out_scale, y)

    (y,) = run_poisoned(call, [(tuple(x.shape), torch.int8)])
    ref = ref_quant_hadamard(x, m, out_scale)
    assert_int8_close(y, ref, f"n={n}")
    assert int((y != ref).sum()) <= max(2, y.numel() // 500), "too many 1-LSB differences"
    if clamp_share > 0 and y.numel() >= 1000:
        assert int((y == 127).sum() + (y == -128).sum()) > 0, "the test meant to exercise the clamp"
    return y


CASES = [
    # (rows shape, n, dtype)
    ((1, 1), 5120, torch.float16),          # mamba2-2.7b decode: 40 * 128
    ((1, 1), 8192, torch.float16),          # mamba2-8b decode: 2^13
    ((2, 33), 5120, torch.float16),
    ((1, 257), 8192, torch.float16),
    ((3, 7), 768, torch.float16),           # 12 * 64 (mamba1-ref)
    ((4, 5), 2560, torch.float32),          # 40 * 64
    ((2, 9), 1536, torch.bfloat16),         # 12 * 128
    ((1, 2048), 4096, torch.float16),
    ((5,), 64, torch.float32),
    ((3, 3), 12, torch.float16),            # 12 * 1: the base factor alone
    ((3, 3), 40, torch.float32),
    ((2, 11), 48, torch.float16),           # 12 * 4
    ((1, 3), 16384, torch.float16),         # > 48 KiB of shared memory
    ((1, 2), 24576, torch.float32),         # 12 * 2048
    ((2, 100), 1024, torch.bfloat16),
    ((1, 1), 1, torch.float32),
]


@pytest.mark.parametrize("lead,n,dtype", CASES)
def test_quant_hadamard_matches_reference(kernels, lead, n, dtype):
    gen = torch.Generator(device="cuda").manual_seed(hash((lead, n, str(dtype))) % 2**31)
    x = (torch.randn(*lead, n, device="cuda", generator=gen) * 3.0).to(dtype)
    # outlier channels, as in the out_proj input the Hadamard is meant to flatten
    idx = torch.randint(0, n, (max(1, n // 64),), device="cuda", generator=gen)
    x[..., idx] = (x[..., idx].float() * 20.0).to(dtype)
    _check(kernels, x, n, gen, clamp_share=0.0 if n == 1 else 0.01)


@pytest.mark.parametrize("n", [20, 28 * 8])  # 20 * 2^k (k >= 1) is 40 * 2^(k-1)
def test_extended_sizes(kernels, n):
    gen = torch.Generator(device="cuda").manual_seed(n)
    x = torch.randn(3, n, device="cuda", generator=gen).half()
    assert hadamard_factors(n, extended=True)[0] in (20, 28)
    _check(kernels, x, n, gen, extended=True)


def test_base_factor_and_strided_rows(kernels):
    """The kernel takes the b x b base factor M[i*2^k, j*2^k] too, and rows with a free row stride."""
    gen = torch.Generator(device="cuda").manual_seed(77)
    n = 5120
    _, p = hadamard_factors(n)
    big = torch.randn(6, n + 64, device="cuda", generator=gen).half()
    x = big[:, 32:32 + n]  # 2-D, unit element stride, row stride n + 64
    _check(kernels, x, n, gen)
    m = hadamard_matrix(n, device="cuda")
    y_base = torch.empty(6, n, dtype=torch.int8, device="cuda")
    y_full = torch.empty_like(y_base)
    kernels.quant_hadamard(x, m[::p, ::p].contiguous(), 0.05, y_base)
    kernels.quant_hadamard(x, m, 0.05, y_full)
    torch.cuda.synchronize()
    assert torch.equal(y_base, y_full)


def test_small_values_follow_the_transform(kernels):
    """Values far from the clamp: the int8 codes follow the fp32 transform (+-1 LSB)."""
    gen = torch.Generator(device="cuda").manual_seed(8)
    n = 2560
    x = (torch.rand(4, n, device="cuda", generator=gen) - 0.5).half() * 0.05
    m = hadamard_matrix(n, device="cuda")
    y = torch.empty(4, n, dtype=torch.int8, device="cuda")
    kernels.quant_hadamard(x, m, 1.0 / 512.0, y)
    ref = ref_quant_hadamard(x, m, 1.0 / 512.0)
    torch.cuda.synchronize()
    assert_int8_close(y, ref)
    assert int(ref.abs().max()) < 127


def test_bad_arguments_raise(kernels):
    x = torch.randn(2, 100, device="cuda").half()  # 100 = 4 * 25: not a supported size
    y = torch.empty(2, 100, dtype=torch.int8, device="cuda")
    with pytest.raises(RuntimeError):
        kernels.quant_hadamard(x, torch.eye(100, device="cuda"), 0.1, y)
    x = torch.randn(2, 64, device="cuda").half()
    with pytest.raises(RuntimeError):  # matrix of the wrong size
        kernels.quant_hadamard(x, hadamard_matrix(32, device="cuda"), 0.1, torch.empty(2, 64, dtype=torch.int8,
                                                                                          device="cuda"))


def test_sanitize_quant_hadamard(kernels):
    gen = torch.Generator(device="cuda").manual_seed(4)
    for lead, n, dt in [((3,), 5120, torch.float16), ((2,), 8192, torch.float32), ((5,), 48, torch.bfloat16),
                        ((1,), 16384, torch.float16)]:
        x = torch.randn(*lead, n, device="cuda", generator=gen).to(dt)
        _check(kernels, x, n, gen)
