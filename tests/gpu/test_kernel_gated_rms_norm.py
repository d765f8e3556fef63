"""CUDA gated_rms_norm (Mamba2's float gated group-wise RMSNorm, plugins/kernels/gated_rms_norm.cu) against the
reference (quamba_edge.models.ssm.gated_rms_norm) computed in fp32 on the same inputs, on the GPU. Tolerance
as in test_kernel_add_rms_norm.py: the output's rounding + fp32 reduction / silu slack, 2^-24 absolute."""

import pytest
import torch
from gpu_helpers import run_poisoned
from test_kernel_add_rms_norm import assert_norm_close

from quamba_edge.models import ssm
from quamba_edge.ops import kernel_dispatch as kd

pytestmark = pytest.mark.gpu

CASES = [
    # (lead shape, E, groups, x dtype, z dtype or None, weight dtype, norm_before_gate)
    ((1, 1), 8192, 8, torch.float16, torch.float16, torch.float16, False),    # mamba2-8b decode
    ((2, 1), 8192, 8, torch.float16, torch.float16, torch.float16, False),    # batch 2
    ((1, 512), 8192, 8, torch.float16, torch.float16, torch.float16, False),  # mamba2-8b prefill
    ((1, 1), 5120, 1, torch.float16, torch.float16, torch.float16, False),    # mamba2-2.7b (one group)
    ((2, 3), 8192, 8, torch.float32, torch.float32, torch.float16, False),    # W4A16 (fp32 y, z)
    ((3, 5), 768, 4, torch.float16, torch.float16, torch.float16, True),      # norm before gate
    ((2, 7), 1001, 7, torch.float32, torch.float16, torch.float32, False),    # odd group size (143)
    ((4,), 999, 1, torch.float16, None, torch.float16, False),                # no gate
    ((2, 3), 2560, 2, torch.bfloat16, torch.bfloat16, torch.bfloat16, True),
    ((1, 2), 16384, 1, torch.float16, torch.float16, torch.float32, False),   # the largest group (32 per thread)
    ((3,), 9000, 1, torch.float16, torch.float16, torch.float16, True),       # 32 per thread, odd tail
    ((5,), 24, 24, torch.float32, torch.float32, torch.float32, False),       # one-channel groups
]


def _ref32(x, z, weight, eps, gs, nbg):
    return ssm.gated_rms_norm(x.float(), None if z is None else z.float(), weight.float(), eps, gs, nbg)


def _run(kernels, x, z, weight, gs, nbg, eps=1e-5):
    def call(out):
        kernels.gated_rms_norm(x, z, weight, eps, gs, nbg, out)

    (out,) = run_poisoned(call, [(tuple(x.shape), x.dtype)])
    assert_norm_close(out, _ref32(x, z, weight, eps, gs, nbg), "out")
    return out


@pytest.mark.parametrize("lead,e,g,xdt,zdt,wdt,nbg", CASES)
def test_gated_rms_norm_matches_reference(kernels, lead, e, g, xdt, zdt, wdt, nbg):
    gen = torch.Generator(device="cuda").manual_seed(hash((lead, e, g, str(xdt), str(zdt), nbg)) % 2**31)
    x = (torch.randn(*lead, e, device="cuda", generator=gen) * 2.0).to(xdt)
    z = None if zdt is None else (torch.randn(*lead, e, device="cuda", generator=gen) * 3.0).to(zdt)
    weight = (0.5 + torch.rand(e, device="cuda", generator=gen)).to(wdt)
    _run(kernels, x, z, weight, e // g, nbg)


def test_gated_rms_norm_strided_rows(kernels):
    """z as the model passes it: a slice of in_proj's output rows (row stride > E)."""
    gen = torch.Generator(device="cuda").manual_seed(3)
    e = 8192
    zx = torch.randn(3, e + e + 100, device="cuda", generator=gen).half()
    z, x = zx[:, :e], zx[:, e:2 * e]
    weight = (0.5 + torch.rand(e, device="cuda", generator=gen)).half()
    _run(kernels, x, z, weight, e // 8, False)
    _run(kernels, x, z, weight * 2e-5, e // 8, True)  # outputs in fp16 subnormals
    # an odd row stride (2 E + 100 halves: rows off 16-byte boundaries) takes the scalar layout from 2 rows on,
    # the 16-byte one for a single row; a start 8 bytes off a boundary, the scalar one always
    _run(kernels, x[:1], z[:1], weight, e // 8, False)
    _run(kernels, zx[:, 4:4 + e], z, weight, e // 8, False)
    _run(kernels, zx[:1, 4:4 + e], z[:1], weight, e // 8, False)


def test_gated_rms_norm_dispatch_on_cuda(kernels):
    """kernel_dispatch.gated_rms_norm on CUDA tensors: the kernel, out in x's dtype; [B, L, E] views of in_proj's
    output collapse to row views."""
    gen = torch.Generator(device="cuda").manual_seed(4)
    e = 8192
    zxbc = torch.randn(2, 5, 2 * e + 64, device="cuda", generator=gen).half()
    z, x = zxbc[..., :e], zxbc[..., e:2 * e]
    weight = (0.5 + torch.rand(e, device="cuda", generator=gen)).half()
    kd.counts.clear()
    with torch.inference_mode(), kd.use_kernels(kernels):
        out = kd.gated_rms_norm(x, z, weight, 1e-5, e // 8, False)
        out32 = kd.gated_rms_norm(x.float(), z.float(), weight, 1e-5, e // 8, False)
    assert kd.counts == {"gated_rms_norm": 2}, dict(kd.counts)
    assert (out.dtype, out32.dtype) == (torch.float16, torch.float32)
    ref = _ref32(x, z, weight, 1e-5, e // 8, False)
    assert_norm_close(out, ref)
    assert_norm_close(out32, ref)


def test_bad_arguments_raise(kernels):
    x = torch.randn(2, 96, device="cuda").half()
    w = torch.ones(96, device="cuda").half()
    out = torch.empty_like(x)
    with pytest.raises(RuntimeError):  # group size not dividing E
        kernels.gated_rms_norm(x, None, w, 1e-5, 7, False, out)
    with pytest.raises(RuntimeError):  # z of another shape
        kernels.gated_rms_norm(x, torch.randn(2, 95, device="cuda"), w, 1e-5, 96, False, out)
    with pytest.raises(RuntimeError):  # weight of another size
        kernels.gated_rms_norm(x, None, torch.ones(95, device="cuda"), 1e-5, 96, False, out)
    with pytest.raises(RuntimeError):  # out of another shape
        kernels.gated_rms_norm(x, None, w, 1e-5, 96, False, torch.empty(2, 95, device="cuda").half())
    with pytest.raises(RuntimeError):  # group over 16384
        xb = torch.randn(1, 16400, device="cuda").half()
        kernels.gated_rms_norm(xb, None, torch.ones(16400, device="cuda"), 1e-5, 16400, False, torch.empty_like(xb))
    with pytest.raises(RuntimeError):  # an int8 z (that is quant_gated_rms_norm)
        kernels.gated_rms_norm(x, torch.zeros(2, 96, dtype=torch.int8, device="cuda"), w, 1e-5, 96, False, out)


def test_sanitize_gated_rms_norm(kernels):
    gen = torch.Generator(device="cuda").manual_seed(12)
    x = torch.randn(2, 3, 1024, device="cuda", generator=gen).half()
    z = torch.randn(2, 3, 1024, device="cuda", generator=gen).half()
    w = torch.rand(1024, device="cuda", generator=gen).half()
    _run(kernels, x, z, w, 128, False)
    _run(kernels, x[..., :100].float(), None, w[:100], 50, True)
