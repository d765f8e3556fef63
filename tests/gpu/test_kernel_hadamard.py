"""CUDA hadamard (the float-output online Hadamard, quamba_kernels/hadamard.h, in plugins/kernels/quant_hadamard.cu;
a kernel helper of the W4A16 out_proj input) against the exact transform in float64 and against the fp32 path it
replaces (quant.hadamard.hadamard_kron), on the GPU.

Oracle: ``y = x @ M^T`` with M = quant.hadamard.hadamard_matrix(n), computed in float64 as
``base @ fwht(x.reshape(b, 2^k))`` (base = the b x b factor M[i * 2^k, j * 2^k] with the fp32 1/sqrt(n) in it, which
is M = kron(base, H_{2^k}) exactly; checked against the dense float64 product where that is small).

Tolerance (first-order rounding-error analysis, not a fitted constant): every output element of the kernel goes
through log2(2^k) butterfly additions, a chain of b fused multiply-adds with the base entries (b > 1) or one
multiply by 1/sqrt(n) (b = 1), each rounding once in fp32 (u = 2^-24) on partial sums bounded by the row's
s * ||x||_1 (s = 1/sqrt(n), every |M| entry), so the fp32 value v is within e32 = (L + 1) u s ||x||_1 of the exact
one, L = log2(2^k) + b + 1. Writing it to the output dtype rounds once more: |out - v| <= u_out |v| (+ 2^-25
absolute for fp16 subnormals), u_out = 0 / 2^-11 / 2^-8 for fp32 / fp16 / bf16:
    |out - exact| <= (1 + u_out) e32 + u_out |exact| + abs_out.
Against hadamard_kron (two fp32 matmuls over r and c terms, r * c = n) rounded to the same dtype the fp32 errors add:
    |out - dt(kron)| <= e32 + e_kron + u_out (|out| + |kron|) + 2 abs_out,   e_kron = (r + c + 2) u s ||x||_1.
Inputs are exact in fp32 (fp16 / bf16 widen exactly), so nothing else enters.
"""

import math

import pytest
import torch
from gpu_helpers import assert_calls_raise, run_poisoned

from quamba_edge.ops import kernel_dispatch as kd
from quamba_edge.quant.hadamard import fwht, hadamard_factors, hadamard_kron, hadamard_matrix

pytestmark = pytest.mark.gpu

U32 = 2.0**-24
OUT_U = {torch.float32: 0.0, torch.float16: 2.0**-11, torch.bfloat16: 2.0**-8}
OUT_ABS = {torch.float32: 0.0, torch.float16: 2.0**-25, torch.bfloat16: 0.0}
FLOATS = (torch.float32, torch.float16, torch.bfloat16)
NAMES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}

# sizes kernel_dispatch._hadamard_size takes and hadamard_matrix builds: 2^k, 12 * 2^k, 40 * 2^k
SIZES = [1, 2, 16, 32, 64, 4096, 8192, 16384,   # 2^k: one thread; one radix-16 pass; 16 + 2; ...; > 48 KiB smem
         12, 48, 768, 3072, 24576,              # 12 * 2^k: the base factor alone (n = 12); 3 * 1024; 12 * 2048
         40, 2560, 5120, 10240]                 # 40 * 2^k: mamba2-2.7b's 5120, 40 * 256
ROWS = [(1,), (3,), (17,), (2, 3)]


def _base(n: int, extended: bool = False) -> torch.Tensor:
    """The b x b factor as kernel_dispatch passes it (for the extended families: taken from the dense matrix)."""
    if extended:
        b, p = hadamard_factors(n, extended=True)
        return hadamard_matrix(n, extended=True)[::p, ::p].contiguous().cuda()
    return kd._kron_base(n, torch.device("cuda"))


def _exact(x: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """x @ M^T in float64 for M = kron(base, H_p) (the fp32 matrix's entries, exactly)."""
    n, b = x.shape[-1], base.shape[0]
    z = fwht(x.double().reshape(*x.shape[:-1], b, n // b))
    return torch.matmul(base.double(), z).reshape(x.shape)


def _e32(x: torch.Tensor, n: int, b: int) -> torch.Tensor:
    """The kernel's fp32 bound per row (module docstring), broadcastable over the row."""
    levels = int(math.log2(n // b)) + (b if b > 1 else 0) + 1
    return (levels + 1) * U32 * x.double().abs().sum(-1, keepdim=True) / math.sqrt(n)


def _check(out: torch.Tensor, x: torch.Tensor, base: torch.Tensor, name: str, kron: bool = True) -> None:
    n, b = x.shape[-1], base.shape[0]
    dt = out.dtype
    exact = _exact(x, base)
    o = out.double()
    assert torch.isfinite(o).all(), f"{name}: non-finite output"
    e32 = _e32(x, n, b)
    bound = (1 + OUT_U[dt]) * e32 + OUT_U[dt] * exact.abs() + OUT_ABS[dt]
    err = (o - exact).abs()
    assert bool((err <= bound).all()), f"{name}: worst err / bound {float((err / bound.clamp_min(1e-300)).max()):.3g}"
    if kron and b in (1, 12, 40):  # the fp32 path the kernel replaces, rounded as the consumer would
        r, c = (2 ** (int(math.log2(n)) // 2), n // 2 ** (int(math.log2(n)) // 2)) if b == 1 else (b, n // b)
        k32 = hadamard_kron(x)
        kd_ = k32.to(dt).double()
        e_kron = (r + c + 2) * U32 * x.double().abs().sum(-1, keepdim=True) / math.sqrt(n)
        kb = e32 + e_kron + OUT_U[dt] * (o.abs() + k32.double().abs()) + 2 * OUT_ABS[dt]
        ke = (o - kd_).abs()
        assert bool((ke <= kb).all()), f"{name} vs hadamard_kron: worst err / bound {float((ke / kb).max()):.3g}"


def _input(lead, n, dtype, gen) -> torch.Tensor:
    """Gaussian rows with a few outlier channels (what the rotation is for), in dtype."""
    x = torch.randn(*lead, n, device="cuda", generator=gen) * 3.0
    idx = torch.randint(0, n, (max(1, n // 64),), device="cuda", generator=gen)
    x[..., idx] *= 20.0
    return x.to(dtype)


def _run(kernels, x, base, ydt) -> torch.Tensor:
    def call(y):
        kernels.hadamard(x, base, y)

    (y,) = run_poisoned(call, [(tuple(x.shape), ydt)])
    return y


def test_oracle_is_the_dense_product():
    """The float64 oracle equals the dense float64 product with hadamard_matrix(n) (to float64 rounding)."""
    gen = torch.Generator(device="cuda").manual_seed(1)
    for n in (1, 12, 64, 768, 2560, 4096):
        x = torch.randn(3, n, device="cuda", generator=gen, dtype=torch.float64)
        dense = x @ hadamard_matrix(n).to("cuda", torch.float64).t()
        torch.testing.assert_close(_exact(x, _base(n)), dense, rtol=1e-12, atol=1e-12 * float(dense.abs().max()))


@pytest.mark.parametrize("lead", ROWS, ids=lambda r: "x".join(map(str, r)))
@pytest.mark.parametrize("n", SIZES)
def test_hadamard_matches_exact(kernels, n, lead):
    """Every input dtype x every output dtype; all outputs written (two poison values)."""
    gen = torch.Generator(device="cuda").manual_seed(hash((n, lead)) % 2**31)
    base = _base(n)
    for xdt in FLOATS:
        x = _input(lead, n, xdt, gen)
        for ydt in FLOATS:
            y = _run(kernels, x, base, ydt)
            _check(y, x, base, f"n={n} rows={lead} {NAMES[xdt]}->{NAMES[ydt]}")


@pytest.mark.parametrize("n", [20, 28 * 8, 28])  # the kernel's other base factors (hadamard_matrix(extended=True))
def test_extended_sizes(kernels, n):
    gen = torch.Generator(device="cuda").manual_seed(n)
    assert hadamard_factors(n, extended=True)[0] in (20, 28)
    full = hadamard_matrix(n, extended=True).cuda()
    base = _base(n, extended=True)
    x = _input((5,), n, torch.float16, gen)
    for ydt in FLOATS:
        y = _run(kernels, x, full, ydt)  # the binding takes the dense matrix too
        _check(y, x, base, f"n={n} -> {NAMES[ydt]}", kron=False)


def test_full_matrix_and_base_factor_agree(kernels):
    """The binding extracts the base factor from the n x n matrix: bit-identical results."""
    gen = torch.Generator(device="cuda").manual_seed(2)
    for n in (64, 768, 2560, 5120):
        x = _input((4,), n, torch.float16, gen)
        a = _run(kernels, x, _base(n), torch.float32)
        b = _run(kernels, x, hadamard_matrix(n, device="cuda"), torch.float32)
        assert torch.equal(a, b), n


def test_strided_rows_and_poisoned_surroundings(kernels):
    """x and y as 2-D views with a free row stride (slices of wider NaN-filled buffers): exactly the view is
    written, the rest of y's buffer keeps its NaN; x given as a non-contiguous 3-D view (the binding copies it)."""
    gen = torch.Generator(device="cuda").manual_seed(3)
    for n in (5120, 8192, 768, 16):
        base = _base(n)
        for xdt, ydt in ((torch.float16, torch.float16), (torch.float32, torch.bfloat16),
                         (torch.bfloat16, torch.float32)):
            wide = _input((6,), n + 64, xdt, gen)
            x = wide[:, 32:32 + n]
            buf = torch.full((6, n + 40), float("nan"), dtype=ydt, device="cuda")
            y = buf[:, 8:8 + n]
            kernels.hadamard(x, base, y)
            torch.cuda.synchronize()
            assert not torch.isnan(y).any(), f"n={n}: elements of y not written"
            assert torch.isnan(buf[:, :8]).all() and torch.isnan(buf[:, 8 + n:]).all(), f"n={n}: wrote outside y"
            _check(y, x, base, f"strided n={n} {NAMES[xdt]}->{NAMES[ydt]}")
        # [B, L, n] with the last dim contiguous but L and B swapped (not a row view): copied by the binding
        x3 = _input((3, 2), n, torch.float16, gen).transpose(0, 1)
        y3 = _run(kernels, x3, base, torch.float32)
        _check(y3, x3, base, f"3-D view n={n}")


def test_many_rows_prefill(kernels):
    """A prefill's worth of rows (one block each) at mamba2-8b's size."""
    gen = torch.Generator(device="cuda").manual_seed(4)
    x = _input((2, 1024), 8192, torch.float16, gen)
    y = _run(kernels, x, _base(8192), torch.float16)
    _check(y, x, _base(8192), "prefill 2x1024 n=8192")


def test_empty_rows(kernels):
    x = torch.empty(0, 768, device="cuda", dtype=torch.float16)
    y = torch.empty(0, 768, device="cuda", dtype=torch.float16)
    kernels.hadamard(x, _base(768), y)
    torch.cuda.synchronize()


def test_dispatch_on_cuda(kernels):
    """kernel_dispatch.hadamard on CUDA tensors runs the kernel (fp32 out, or fp16 with fp16_out: what the W4A16
    linear kernels take); fp64 stays on hadamard_kron, counted as a fallback."""
    gen = torch.Generator(device="cuda").manual_seed(5)
    x = _input((2, 3), 5120, torch.float32, gen)
    kd.counts.clear()
    with torch.inference_mode(), kd.use_kernels(kernels):
        y32 = kd.hadamard(x)
        y16 = kd.hadamard(x, fp16_out=True)
        y64 = kd.hadamard(x.double(), fp16_out=True)
    assert dict(kd.counts) == {"hadamard": 2, "hadamard:reference": 1}, dict(kd.counts)
    assert (y32.dtype, y16.dtype, y64.dtype) == (torch.float32, torch.float16, torch.float32)
    base = _base(5120)
    _check(y32, x, base, "dispatch fp32")
    _check(y16, x, base, "dispatch fp16")
    assert torch.equal(y64, hadamard_kron(x.double()))


def test_bad_arguments_raise(kernels):
    """Each bad call raises a RuntimeError with a message (in a subprocess: a crash cannot take the session down);
    the overlapping-rows case passes the binding and is refused by quamba_hadamard's own check."""
    assert_calls_raise("hadamard", """
from quamba_edge.ops import kernel_dispatch as kd
from quamba_edge.quant.hadamard import hadamard_matrix
x = torch.randn(2, 64, device=dev).half()
xf = x.float()
b64 = kd._kron_base(64, torch.device(dev))
big = torch.empty(2 * 64 + 8, device=dev)
bad = [
    (torch.randn(2, 100, device=dev).half(), torch.eye(100, device=dev), torch.empty(2, 100, device=dev)),  # n = 100
    (x, b64, torch.empty(2, 65, device=dev)),                             # y of another shape
    (x, b64, torch.empty(2, 64, dtype=torch.int8, device=dev)),           # int8 y (that is quant_hadamard)
    (x, b64, torch.empty(2, 64, dtype=torch.float64, device=dev)),        # fp64 y
    (x.double(), b64, torch.empty(2, 64, device=dev)),                    # fp64 x
    (x.to(torch.int8), b64, torch.empty(2, 64, device=dev)),              # int8 x
    (x, hadamard_matrix(32, device=dev), torch.empty(2, 64, device=dev)), # matrix of another size
    (x, b64.double(), torch.empty(2, 64, device=dev)),                    # fp64 matrix
    (x, b64.cpu(), torch.empty(2, 64, device=dev)),                       # matrix on the CPU
    (x, b64, torch.empty(2, 64)),                                         # y on the CPU
    (xf, b64, xf),                                                        # y is x
    (x, b64, big.as_strided((2, 64), (1, 1))),                            # y's rows overlap (row stride 1)
    (x, b64, torch.empty(64, 2, device=dev).t()),                         # y without unit element stride
]
""")


def test_sanitize_hadamard(kernels):
    gen = torch.Generator(device="cuda").manual_seed(6)
    for lead, n, xdt, ydt in [((3,), 5120, torch.float16, torch.float16), ((2,), 8192, torch.float32, torch.float32),
                              ((5,), 48, torch.bfloat16, torch.float32), ((1,), 16384, torch.float16, torch.bfloat16),
                              ((2, 3), 16, torch.float32, torch.float16), ((3,), 1, torch.float16, torch.float32),
                              ((2,), 12, torch.float32, torch.float16)]:
        x = _input(lead, n, xdt, gen)
        _check(_run(kernels, x, _base(n), ydt), x, _base(n), f"sanitize n={n}")
