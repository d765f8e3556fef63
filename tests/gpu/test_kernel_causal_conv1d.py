"""CUDA causal_conv1d (the float conv, plugins/kernels/causal_conv1d.cu) against quamba_edge.models.ssm.causal_conv1d
run in fp32 on the same inputs (same GPU, TF32 off).

Tolerance of y (derived, not fitted): the kernel sums K products and the bias in fp32 (FMAs) and rounds once to x's
dtype; the fp32 reference sums the same terms in its own order. So |y - y_ref| <= rel |y_ref| (the one rounding:
2^-10 for fp16 > its half ulp 2^-11; 2^-22 for fp32) + 1.1 * 2 (K + 1) 2^-24 S (both fp32 sums, S = sum |w x| + |b|,
1.1 bounding silu's slope) + 2^-20 |y_ref| (the two fp32 silu evaluations) + 2^-24 (absolute). The new state
holds the inputs: exact (in x's dtype)."""

import pytest
import torch

from gpu_helpers import assert_calls_raise, run_poisoned
from quamba_edge.models import ssm

pytestmark = pytest.mark.gpu

MAMBA2_8B_CONV = 8192 + 2 * 8 * 128  # d_inner + 2 ngroups d_state


@pytest.fixture(autouse=True)
def _no_tf32(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)


def _inputs(b, L, c, k, gen, *, dtype=torch.float16, wdt=None, sdt="same", bias=True, stride_pad=0):
    """x [B, L, C] of ``dtype`` (a column slice of a wider [B, L, C + stride_pad] tensor when stride_pad > 0, as
    Mamba2's [x|B|C] out of in_proj), weight [C, K] / bias [C] of ``wdt``, state [B, C, K-1] of ``sdt`` (None:
    no state)."""
    dev = "cuda"
    wdt = wdt or dtype
    full = torch.randn(b, L, c + stride_pad, device=dev, generator=gen)
    off = stride_pad // 2
    x = full.to(dtype)[..., off:off + c]
    w = (torch.randn(c, k, device=dev, generator=gen) / k**0.5).to(wdt)
    bb = (0.5 * torch.randn(c, device=dev, generator=gen)).to(wdt) if bias else None
    sdt = dtype if sdt == "same" else sdt
    st = None if sdt is None else torch.randn(b, c, k - 1, device=dev, generator=gen).to(sdt)
    return x, w, bb, st


def _up(t):
    return None if t is None else t.float()


def _check(kernels, x, w, bias, st, silu=True):
    b, L, c = x.shape
    k = w.shape[1]
    act = "silu" if silu else None

    def call(y, nst):
        kernels.causal_conv1d(x, w, bias, st, silu, y, nst)

    y, nst = run_poisoned(call, [((b, L, c), x.dtype), ((b, c, k - 1), x.dtype)])
    y_ref, st_ref = ssm.causal_conv1d(x.float(), w.float(), _up(bias), _up(st), act)
    mag, _ = ssm.causal_conv1d(x.float().abs(), w.float().abs(), None if bias is None else bias.float().abs(),
                               None if st is None else st.float().abs(), None)
    rel = 2.0**-10 if x.dtype == torch.float16 else 2.0**-22
    tol = rel * y_ref.abs() + 1.1 * 2 * (k + 1) * 2.0**-24 * mag + 2.0**-20 * y_ref.abs() + 2.0**-24
    err = (y.float() - y_ref).abs()
    bad = err > tol
    assert not bad.any(), (f"{int(bad.sum())} of {y.numel()} y elements out of tolerance; worst excess "
                           f"{float((err - tol).max()):.3g}")
    # the new state: the last K-1 columns of concat(state, x^T), in x's dtype (exact)
    assert torch.equal(nst, st_ref.to(x.dtype)), "new conv state must be an exact copy of the inputs"
    return y, nst


LENGTHS = [1, 2, 3, 4, 5, 17, 1000, 4096]


@pytest.mark.parametrize("L", LENGTHS)
@pytest.mark.parametrize("c", [MAMBA2_8B_CONV, 1001], ids=["mamba2-8b", "odd"])
def test_fp16_matches_reference(kernels, L, c):
    gen = torch.Generator(device="cuda").manual_seed(1000 * L + c)
    _check(kernels, *_inputs(2 if L <= 17 else 1, L, c, 4, gen))


@pytest.mark.parametrize("L", [1, 5, 17, 1000])
@pytest.mark.parametrize("pad", [8, 3], ids=["aligned", "odd-offset"])
def test_strided_x(kernels, L, pad):
    """x a column slice of a wider activation (row stride C + pad): aligned (vector path) or an odd element offset
    (the scalar path)."""
    gen = torch.Generator(device="cuda").manual_seed(7 + L + pad)
    x, w, b, st = _inputs(2, L, 5376, 4, gen, stride_pad=pad)
    assert x.stride(1) == 5376 + pad and not x.is_contiguous()
    _check(kernels, x, w, b, st)


@pytest.mark.parametrize("dtype,wdt,sdt", [
    (torch.float32, torch.float32, "same"),
    (torch.float32, torch.float16, torch.float16),   # W4A16's FPConv1d: fp32 x, fp16 weights and state
    (torch.float16, torch.float32, torch.float32),   # fp32 parameters and state with fp16 activations
    (torch.float16, torch.float16, None),             # no state (start of a sequence)
], ids=["fp32", "w4a16", "fp16-fp32-params", "no-state"])
@pytest.mark.parametrize("L", [1, 3, 64, 1000])
def test_dtypes(kernels, dtype, wdt, sdt, L):
    gen = torch.Generator(device="cuda").manual_seed(L)
    _check(kernels, *_inputs(2, L, 5120, 4, gen, dtype=dtype, wdt=wdt, sdt=sdt))


@pytest.mark.parametrize("k", [1, 2, 3, 4])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("silu", [True, False])
def test_widths_bias_silu(kernels, k, bias, silu):
    gen = torch.Generator(device="cuda").manual_seed(k + 10 * bias + 100 * silu)
    for L in (1, 2, 33):
        _check(kernels, *_inputs(3, L, 260, k, gen, bias=bias), silu=silu)


@pytest.mark.parametrize("L", [1, 2, 3, 17, 1000])
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
def test_in_place_state(kernels, L, dtype):
    """new_conv_state may be conv_state itself for every L (tile 0 reads the old state and writes the new one)."""
    gen = torch.Generator(device="cuda").manual_seed(L + 3)
    x, w, b, st = _inputs(2, L, 1024, 4, gen, dtype=dtype)
    y_ref, st_ref = ssm.causal_conv1d(x.float(), w.float(), b.float(), st.float(), "silu")
    st_buf = st.clone()
    y = torch.empty_like(x)
    kernels.causal_conv1d(x, w, b, st_buf, True, y, st_buf)
    torch.cuda.synchronize()
    assert torch.equal(st_buf, st_ref.to(dtype))
    want, _ = _check(kernels, x, w, b, st)
    assert torch.equal(y, want)


def test_prefill_then_decode_equals_full_prefill(kernels):
    gen = torch.Generator(device="cuda").manual_seed(11)
    bsz, seqlen, c, k = 2, 40, 384, 4
    x, w, b, st0 = _inputs(bsz, seqlen, c, k, gen)
    y_full, st_full = torch.empty_like(x), torch.empty(bsz, c, k - 1, dtype=x.dtype, device="cuda")
    kernels.causal_conv1d(x, w, b, st0, True, y_full, st_full)
    split = 31
    ys, st = torch.empty_like(x), torch.empty_like(st_full)
    kernels.causal_conv1d(x[:, :split], w, b, st0, True, ys[:, :split], st)
    for t in range(split, seqlen):  # decode, state updated in place
        kernels.causal_conv1d(x[:, t:t + 1], w, b, st, True, ys[:, t:t + 1], st)
    torch.cuda.synchronize()
    assert torch.equal(ys, y_full) and torch.equal(st, st_full)


_BAD_ARGS = """
x = torch.zeros(1, 4, 8, dtype=torch.float16, device=dev)
w = torch.zeros(8, 4, dtype=torch.float16, device=dev)
y = torch.empty(1, 4, 8, dtype=torch.float16, device=dev)
st = torch.empty(1, 8, 3, dtype=torch.float16, device=dev)
bad = [
    (x.bfloat16(), w, None, None, True, y, st),                     # x bf16
    (x.double(), w, None, None, True, y, st),                       # x fp64
    (x, torch.zeros(8, 5, dtype=torch.float16, device=dev), None, None, True, y, st),  # K = 5
    (x, w[:7], None, None, True, y, st),                            # weight not [C, K]
    (x, w, torch.zeros(7, dtype=torch.float16, device=dev), None, True, y, st),     # bias not [C]
    (x, w, None, st[:, :, :2], True, y, st),                        # wrong state shape
    (x, w, None, st.float(), True, y, st.float()),                  # new state not of x's dtype
    (x, w, None, None, True, y.float(), st),                        # y not of x's dtype
    (x, w, None, None, True, y[:, :3], st),                         # y wrong shape
    (x, w, None, None, True, torch.empty(1, 8, 4, dtype=torch.float16, device=dev).transpose(1, 2), st),  # y strided
    (x, w, None, None, True, y, st.transpose(1, 2).contiguous().transpose(1, 2)),  # new state not contiguous
    (x.cpu(), w, None, None, True, y, st),                          # x on the CPU
    (x[0], w, None, None, True, y, st),                             # x not 3-D
]
"""


def test_bad_arguments_raise():
    assert_calls_raise("causal_conv1d", _BAD_ARGS)
