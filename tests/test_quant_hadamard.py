"""Hadamard matrices / transforms (spec B.3, C.2, pitfall 9)."""

from __future__ import annotations

import math

import pytest
import torch

from quamba_edge.quant.hadamard import (
    base_hadamard,
    fuse_input_rotation,
    fuse_output_rotation,
    fwht,
    hadamard_factors,
    hadamard_matrix,
    hadamard_transform,
    paley1,
    paley2,
    quant_hadamard,
    sylvester,
)
from quamba_edge.quant.quantize import absmax_scale, fake_quant, quantize_sym

SIZES = [1, 2, 12, 24, 40, 64, 80, 96, 768, 1536, 2560, 4096, 5120]


@pytest.mark.parametrize("n,expected", [
    (768, (12, 64)), (1536, (12, 128)), (3072, (12, 256)), (96, (12, 8)), (12, (12, 1)), (24, (12, 2)),
    (2560, (40, 64)), (5120, (40, 128)), (40, (40, 1)), (80, (40, 2)),
    (1024, (1, 1024)), (4096, (1, 4096)), (64, (1, 64)), (1, (1, 1)),
])
def test_size_selection(n, expected):
    assert hadamard_factors(n) == expected


def test_size_selection_checks_12_before_40():
    # 120 = 12·10 = 40·3: neither power-of-two cofactor -> error; 480 likewise.
    # A size that is both 12·2^a and 40·2^b cannot exist (3 ∤ 40·2^b), so order is observable only via
    # the error path and the extended families: 20·2^k sizes are 40·2^(k-1) and take the 40 family.
    assert hadamard_factors(160, extended=True) == (40, 4)
    assert hadamard_factors(20, extended=True) == (20, 1)
    assert hadamard_factors(56, extended=True) == (28, 2)


@pytest.mark.parametrize("n", [0, 3, 7, 20, 28, 36, 100, 120, 480, 6000])
def test_unsupported_size_raises(n):
    with pytest.raises(ValueError) as ei:
        hadamard_matrix(n)
    msg = str(ei.value)
    assert str(n) in msg and "12·2^k" in msg and "40·2^k" in msg and "2^k" in msg
    if n > 0:
        with pytest.raises(ValueError):
            hadamard_transform(torch.zeros(2, n))


@pytest.mark.parametrize("b,builder", [(12, lambda: paley1(11)), (20, lambda: paley1(19)),
                                       (28, lambda: paley2(13)), (40, lambda: base_hadamard(40))])
def test_base_matrices_are_hadamard(b, builder):
    h = builder().to(torch.int64)
    assert h.shape == (b, b)
    assert set(h.unique().tolist()) == {-1, 1}
    assert torch.equal(h @ h.T, b * torch.eye(b, dtype=torch.int64))


def test_h40_is_sylvester_doubling_of_paley_h20():
    h20 = paley1(19)
    h40 = base_hadamard(40, torch.int64)
    assert torch.equal(h40, torch.kron(torch.tensor([[1, 1], [1, -1]]), h20.to(torch.int64)))


@pytest.mark.parametrize("n", SIZES + [20, 28, 56, 160])
def test_matrix_orthonormal(n):
    ext = n in (20, 28, 56)
    m = hadamard_matrix(n, torch.float64, extended=ext)
    assert m.shape == (n, n)
    # all rows for small n, a random subset of 16 rows (against all rows) for large n
    gen = torch.Generator().manual_seed(n)
    rows = torch.arange(n) if n <= 1024 else torch.randperm(n, generator=gen)[:16]
    eye = torch.eye(n, dtype=torch.float64)[rows]
    torch.testing.assert_close(m[rows] @ m.T, eye, atol=1e-12, rtol=0)
    torch.testing.assert_close(m.T[rows] @ m, eye, atol=1e-12, rtol=0)
    assert (m.abs() - 1 / math.sqrt(n)).abs().max() <= 1e-15
    m32 = hadamard_matrix(n, extended=ext)
    assert m32.dtype == torch.float32
    assert torch.equal(m32, m.float())


def test_matrix_is_cached_and_kron_order():
    assert hadamard_matrix(768) is hadamard_matrix(768)
    h = hadamard_matrix(24, torch.float64) * math.sqrt(24)
    expected = torch.kron(paley1(11).double(), sylvester(2, torch.float64))
    assert torch.equal(h, expected)


@pytest.mark.parametrize("n", SIZES)
def test_online_transform_matches_matrix(n):
    g = torch.Generator().manual_seed(n)
    x = torch.randn(16, n, generator=g)
    online = hadamard_transform(x)
    offline = x @ hadamard_matrix(n).T
    assert online.dtype == torch.float32
    # equal to fp32 rounding: 1e-6 relative to the output magnitude
    assert (online - offline).abs().max() <= 1e-6 * offline.abs().max().clamp_min(1.0)
    xd = x.double()
    torch.testing.assert_close(hadamard_transform(xd), xd @ hadamard_matrix(n, torch.float64).T,
                               atol=1e-12, rtol=1e-12)


def test_transform_dim_and_dtype():
    x = torch.randn(3, 96, 5)
    y = hadamard_transform(x, dim=1)
    ref = hadamard_transform(x.transpose(1, 2)).transpose(1, 2)
    assert torch.equal(y, ref)
    xh = torch.randn(4, 768).half()
    yh = hadamard_transform(xh)
    assert yh.dtype == torch.float16
    torch.testing.assert_close(yh.float(), hadamard_transform(xh.float()), atol=2e-3, rtol=2e-3)


def test_transform_orthogonal_inverse():
    x = torch.randn(5, 2560, dtype=torch.float64)
    y = hadamard_transform(x)
    m = hadamard_matrix(2560, torch.float64)
    torch.testing.assert_close(y @ m, x, atol=1e-12, rtol=1e-12)  # x = y·M
    torch.testing.assert_close(y.norm(dim=-1), x.norm(dim=-1))


@pytest.mark.parametrize("n", [1, 2, 8, 64, 1024])
def test_fwht(n):
    x = torch.randn(3, n, dtype=torch.float64)
    h = sylvester(n, torch.float64)
    torch.testing.assert_close(fwht(x), x @ h.T)
    torch.testing.assert_close(fwht(fwht(x)) / n, x)
    torch.testing.assert_close(fwht(x, normalize=True), x @ hadamard_matrix(n, torch.float64).T)
    with pytest.raises(ValueError):
        fwht(torch.zeros(12))


def test_fusion_helpers_compute_invariance():
    g = torch.Generator().manual_seed(0)
    d, e = 768, 1536
    x = torch.randn(7, e, generator=g, dtype=torch.float64)
    w = torch.randn(d, e, generator=g, dtype=torch.float64)
    b = torch.randn(d, generator=g, dtype=torch.float64)
    # input side: online y·Mᵀ and offline W·Mᵀ
    torch.testing.assert_close(hadamard_transform(x) @ fuse_input_rotation(w).T, x @ w.T)
    # W·Mᵀ equals transforming every row of W
    torch.testing.assert_close(fuse_input_rotation(w), hadamard_transform(w))
    # output side: the layer emits (x Wᵀ + b)·Mᵀ
    w2, b2 = fuse_output_rotation(w, b)
    torch.testing.assert_close(x @ w2.T + b2, hadamard_transform(x @ w.T + b))


def test_hadamard_reduces_outlier_quant_error():
    g = torch.Generator().manual_seed(0)
    n, t = 1536, 512
    x = torch.randn(t, n, generator=g)
    outliers = torch.tensor([3, 100, 777, 1200])
    x[:, outliers] *= 60.0
    mse_plain = (fake_quant(x, absmax_scale(x)) - x).pow(2).mean()
    xr = hadamard_transform(x)
    mse_rot = (fake_quant(xr, absmax_scale(xr)) - xr).pow(2).mean()  # orthonormal: same MSE domain
    assert mse_plain / mse_rot >= 10.0, (mse_plain, mse_rot)


def test_quant_hadamard_clamps_and_matches():
    x = torch.randn(4, 768) * 10
    s = torch.tensor(0.01)
    q = quant_hadamard(x, s)
    assert q.dtype == torch.int8
    assert q.min() >= -128 and q.max() <= 127 and (q.abs() >= 127).any()
    assert torch.equal(q, quantize_sym(hadamard_transform(x), s))


@pytest.mark.parametrize("n", [16, 96, 128, 640, 768, 2560, 5120, 8192])
def test_hadamard_kron_equals_the_matrix(n):
    """The two-factor online transform (W4A16 out_proj input) equals x @ M^T with M = hadamard_matrix(n) up to
    fp32 summation order."""
    from quamba_edge.quant.hadamard import hadamard_kron

    x = torch.randn(3, 2, n, generator=torch.Generator().manual_seed(n), dtype=torch.float32)
    want = x.double() @ hadamard_matrix(n, torch.float64).T
    got = hadamard_kron(x.half())
    assert got.dtype == torch.float32 and got.shape == x.shape
    torch.testing.assert_close(got.double(), (x.half().double() @ hadamard_matrix(n, torch.float64).T),
                               rtol=0, atol=2e-6 * float(want.abs().max()))
