"""CUDA add_rms_norm (the FP model's residual add + RMSNorm, plugins/kernels/add_rms_norm.cu) against the
reference (kernel_dispatch._float_add_rms_norm = lm.Block / RMSNorm) on the GPU.

Tolerance of a float y: its rounding to the output dtype (2^-11 relative for fp16, 2^-8 for bf16, none for
fp32) plus fp32 reduction-order slack (the sum of squares in another order, rsqrt: 2^-19 relative), and 2^-24
absolute (fp16 subnormals). The residual stream is one fp32 add then the same rounding as the reference: exact.
"""

import pytest
import torch
from gpu_helpers import run_poisoned

from quamba_edge.ops import kernel_dispatch as kd

pytestmark = pytest.mark.gpu

REL = {torch.float16: 2.0**-11, torch.bfloat16: 2.0**-8, torch.float32: 0.0}
SLACK = 2.0**-19


def assert_norm_close(out: torch.Tensor, ref: torch.Tensor, name: str = "y") -> None:
    """out within its own rounding + fp32 reduction slack of the fp32 reference value ``ref``."""
    assert out.shape == ref.shape, (name, out.shape, ref.shape)
    o, r = out.double(), ref.double()
    assert torch.isfinite(o).all(), f"{name}: non-finite values"
    tol = (REL[out.dtype] * (1 + SLACK) + SLACK) * r.abs() + 2.0**-24
    err = (o - r).abs()
    bad = err > tol
    assert not bad.any(), f"{name}: {int(bad.sum())} of {r.numel()} outside, max err {float(err.max()):.3g}"


def _stream(hdt, rdt, res_fp32):
    if res_fp32:
        return torch.float32
    return hdt if rdt is None else torch.promote_types(hdt, rdt)


CASES = [
    # (lead shape, d, hidden, residual or None, weight, residual_in_fp32, want the residual)
    ((1, 1), 4096, torch.float16, torch.float32, torch.float16, True, True),     # mamba2-8b decode block
    ((1, 1), 2560, torch.float16, torch.float32, torch.float16, True, True),     # mamba2-2.7b decode
    ((2, 1), 4096, torch.float16, torch.float32, torch.float16, False, False),   # norm_f, batch 2
    ((1, 1024), 4096, torch.float16, torch.float32, torch.float16, True, True),  # prefill
    ((3, 5), 768, torch.float16, None, torch.float16, True, True),               # first block
    ((2, 7), 1000, torch.float16, torch.float16, torch.float16, False, True),    # fp16 stream (residual_in_fp32 off)
    ((2, 7), 1000, torch.float16, torch.float16, torch.float32, False, True),    # fp16 stream, fp32 weight
    ((4, 33), 1001, torch.float32, torch.float32, torch.float32, True, True),    # fp32 model, odd d
    ((2, 3), 2560, torch.bfloat16, torch.bfloat16, torch.bfloat16, False, True),
    ((8, 1), 16384, torch.float16, torch.float32, torch.float16, True, True),    # the largest d (32 per thread)
    ((5,), 9000, torch.float16, torch.float32, torch.float16, True, False),      # 32 per thread, odd tail
    ((17,), 40, torch.float32, None, torch.float16, True, True),
    ((2, 3), 1, torch.float16, torch.float32, torch.float16, True, True),
]


def _run(kernels, hidden, residual, weight, res_fp32, want_res, eps=1e-5):
    shape = tuple(hidden.shape)
    stream = _stream(hidden.dtype, None if residual is None else residual.dtype, res_fp32)
    ydt = kd._norm_out_dtype(stream, weight.dtype)
    like = [(shape, ydt)] + ([(shape, stream)] if want_res else [])

    def call(y, ro=None):
        kernels.add_rms_norm(hidden, residual, weight, eps, res_fp32, y, ro)

    outs = run_poisoned(call, like)
    # the reference on the same inputs: the stream exactly, the norm in fp32 (then the kernel's rounding)
    s = hidden if residual is None else residual + hidden
    s = s.float() if res_fp32 else s
    if want_res:
        assert outs[1].dtype == s.dtype and torch.equal(outs[1], s), "residual_out: one add, the same rounding"
    s32 = s.float()
    ref = s32 * torch.rsqrt(s32.pow(2).mean(-1, keepdim=True) + eps) * weight.float()
    assert_norm_close(outs[0], ref)


@pytest.mark.parametrize("lead,d,hdt,rdt,wdt,res_fp32,want_res", CASES)
def test_add_rms_norm_matches_reference(kernels, lead, d, hdt, rdt, wdt, res_fp32, want_res):
    gen = torch.Generator(device="cuda").manual_seed(hash((lead, d, str(hdt), str(rdt), res_fp32)) % 2**31)
    hidden = (torch.randn(*lead, d, device="cuda", generator=gen) * 2.0).to(hdt)
    residual = None if rdt is None else (torch.randn(*lead, d, device="cuda", generator=gen) * 4.0).to(rdt)
    weight = (0.5 + torch.rand(d, device="cuda", generator=gen)).to(wdt)
    _run(kernels, hidden, residual, weight, res_fp32, want_res)


def test_add_rms_norm_strided_rows_and_tiny_values(kernels):
    """Rows with a free stride (a slice of a wider buffer); values near fp16's subnormal range."""
    gen = torch.Generator(device="cuda").manual_seed(3)
    big = torch.randn(9, 4096 + 8, device="cuda", generator=gen).half()
    residual = torch.randn(9, 4096, device="cuda", generator=gen)
    weight = (torch.rand(4096, device="cuda", generator=gen) * 2e-5).half()  # outputs in fp16 subnormals
    _run(kernels, big[:, 8:], residual, weight, True, True)
    _run(kernels, big[:, 8:], residual[:, :4096], weight, False, False)
    # rows that start 8 bytes off a 16-byte boundary: the scalar layout (m2::vec_rows_ok), one row and several
    _run(kernels, big[:, 4:4100], residual, weight, True, True)
    _run(kernels, big[:1, 4:4100], residual[:1], weight, True, True)


def test_add_rms_norm_dispatch_on_cuda(kernels):
    """kernel_dispatch.add_rms_norm on CUDA tensors runs the kernel, with the reference's dtypes."""
    gen = torch.Generator(device="cuda").manual_seed(4)
    hidden = torch.randn(2, 5, 4096, device="cuda", generator=gen).half()
    residual = torch.randn(2, 5, 4096, device="cuda", generator=gen)
    weight = (0.5 + torch.rand(4096, device="cuda", generator=gen)).half()
    kd.counts.clear()
    with torch.inference_mode(), kd.use_kernels(kernels):
        y, res = kd.add_rms_norm(hidden, residual, weight, 1e-5, True)
        y_f = kd.add_rms_norm(hidden[:, -1:], residual[:, -1:], weight, 1e-5, False, False)
    assert kd.counts == {"add_rms_norm": 2}, dict(kd.counts)
    y_r, res_r = kd._float_add_rms_norm(hidden, residual, weight, 1e-5, True)
    assert (y.dtype, res.dtype) == (y_r.dtype, res_r.dtype) == (torch.float16, torch.float32)
    assert torch.equal(res, res_r)
    s = (residual + hidden)
    ref = s * torch.rsqrt(s.pow(2).mean(-1, keepdim=True) + 1e-5) * weight.float()
    assert_norm_close(y, ref)
    assert_norm_close(y_f, ref[:, -1:])


def test_bad_arguments_raise(kernels):
    h = torch.randn(2, 96, device="cuda").half()
    w = torch.ones(96, device="cuda").half()
    y = torch.empty(2, 96, dtype=torch.float16, device="cuda")
    with pytest.raises(RuntimeError):  # residual of another shape
        kernels.add_rms_norm(h, torch.randn(2, 95, device="cuda"), w, 1e-5, True, y, None)
    with pytest.raises(RuntimeError):  # residual_out not in the stream's dtype (fp32 for residual_in_fp32)
        kernels.add_rms_norm(h, None, w, 1e-5, True, y, torch.empty(2, 96, dtype=torch.float16, device="cuda"))
    with pytest.raises(RuntimeError):  # weight of another size
        kernels.add_rms_norm(h, None, torch.ones(95, device="cuda"), 1e-5, True, y, None)
    with pytest.raises(RuntimeError):  # y of another shape
        kernels.add_rms_norm(h, None, w, 1e-5, True, torch.empty(2, 95, device="cuda").half(), None)
    with pytest.raises(RuntimeError):  # d over 16384
        hb = torch.randn(1, 16400, device="cuda").half()
        kernels.add_rms_norm(hb, None, torch.ones(16400, device="cuda"), 1e-5, True, torch.empty_like(hb), None)
    with pytest.raises(RuntimeError):  # an int hidden
        kernels.add_rms_norm(torch.ones(2, 96, dtype=torch.int32, device="cuda"), None, w, 1e-5, True, y, None)


def test_sanitize_add_rms_norm(kernels):
    gen = torch.Generator(device="cuda").manual_seed(12)
    hidden = torch.randn(2, 3, 2560, device="cuda", generator=gen).half()
    weight = torch.rand(2560, device="cuda", generator=gen).half()
    _run(kernels, hidden, torch.randn(2, 3, 2560, device="cuda", generator=gen), weight, True, True)
    _run(kernels, hidden[..., :100], None, weight[:100], False, False)
