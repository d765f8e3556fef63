"""CUDA quant_add_rms_norm against the reference op (quamba_edge/ops/quant_add_rms_norm.py) on the GPU."""

import pytest
import torch
from gpu_helpers import assert_fp16_close, assert_int8_close, run_poisoned

from quamba_edge.ops.quant_add_rms_norm import quant_add_rms_norm as ref_add_norm

pytestmark = pytest.mark.gpu

ADD_CASES = [
    # (lead shape, d, hidden dtype, residual dtype or None, weight dtype or None, quantize, residual_in_fp32)
    ((1, 1), 2560, torch.float16, torch.float32, None, True, True),        # mamba2-2.7b decode
    ((1, 1), 4096, torch.float16, torch.float32, None, True, True),        # mamba2-8b decode
    ((1, 1024), 2560, torch.float16, torch.float32, None, True, True),
    ((2, 2048), 4096, torch.float16, torch.float32, torch.float32, True, True),
    ((3, 5), 768, torch.float16, None, torch.float16, True, True),          # first block: no residual
    ((4, 33), 1000, torch.float32, torch.float32, torch.float32, True, True),
    ((2, 7), 2560, torch.bfloat16, torch.bfloat16, None, True, False),     # residual_out in hidden's dtype
    ((1, 9), 2560, torch.float16, torch.float16, None, False, False),      # float (fp16) output
    ((8, 1), 16384, torch.float16, torch.float32, torch.float32, True, True),
    ((17,), 40, torch.float32, None, None, False, True),
    ((2, 3), 1, torch.float16, torch.float32, None, True, True),
]


def _add_run(kernels, lead, d, hdt, rdt, wdt, quant, res_fp32, gen, hidden=None, residual=None):
    if hidden is None:
        hidden = (torch.randn(*lead, d, device="cuda", generator=gen) * 2.0).to(hdt)
        residual = None if rdt is None else (torch.randn(*lead, d, device="cuda", generator=gen) * 4.0).to(rdt)
    weight = None if wdt is None else (0.5 + torch.rand(d, device="cuda", generator=gen)).to(wdt)
    eps = 1e-5
    out_scale = None
    if quant:  # a scale that clamps the largest ~0.5 % of the outputs
        y_f, _ = ref_add_norm(hidden, residual, weight, eps, None, res_fp32)
        out_scale = torch.quantile(y_f.abs().flatten()[:1_000_000], 0.995).item() / 127.0 if y_f.numel() > 1 else 0.01
    ro_dtype = torch.float32 if res_fp32 else hidden.dtype
    shape = tuple(hidden.shape)

    def call(y, ro):
        kernels.quant_add_rms_norm(hidden, residual, weight, eps, out_scale, y, ro)

    y, ro = run_poisoned(call, [(shape, torch.int8 if quant else torch.float16), (shape, ro_dtype)])
    y_ref, ro_ref = ref_add_norm(hidden, residual, weight, eps, out_scale, res_fp32)
    assert ro.dtype == ro_ref.dtype
    assert torch.equal(ro, ro_ref), "residual_out is one fp32 add (then the same rounding): must be exact"
    if quant:
        assert_int8_close(y, y_ref, "y")
        assert int((y != y_ref).sum()) <= max(2, y.numel() // 500)
    else:
        assert_fp16_close(y, y_ref, "y")


@pytest.mark.parametrize("lead,d,hdt,rdt,wdt,quant,res_fp32", ADD_CASES)
def test_quant_add_rms_norm_matches_reference(kernels, lead, d, hdt, rdt, wdt, quant, res_fp32):
    gen = torch.Generator(device="cuda").manual_seed(hash((lead, d, str(hdt), str(rdt), quant)) % 2**31)
    _add_run(kernels, lead, d, hdt, rdt, wdt, quant, res_fp32, gen)


def test_quant_add_rms_norm_strided_rows(kernels):
    gen = torch.Generator(device="cuda").manual_seed(3)
    big = torch.randn(9, 2560 + 8, device="cuda", generator=gen).half()
    hidden = big[:, 8:]
    residual = torch.randn(9, 2560, device="cuda", generator=gen)
    _add_run(kernels, None, 2560, None, None, torch.float32, True, True, gen, hidden=hidden, residual=residual)
    # rows that start 8 bytes off a 16-byte boundary: the scalar layout (m2::vec_rows_ok)
    _add_run(kernels, None, 2560, None, None, torch.float32, True, True, gen, hidden=big[:, 4:2564],
             residual=residual)
    _add_run(kernels, None, 2560, None, None, torch.float32, True, True, gen, hidden=big[:1, 4:2564],
             residual=residual[:1])


def test_bad_arguments_raise(kernels):
    y = torch.randn(2, 96, device="cuda").half()
    out = torch.empty(2, 96, dtype=torch.float16, device="cuda")
    with pytest.raises(RuntimeError):  # with an out_scale y must be int8
        kernels.quant_add_rms_norm(y, None, None, 1e-5, 0.1, out, torch.empty(2, 96, device="cuda"))
    with pytest.raises(RuntimeError):  # residual of another shape
        kernels.quant_add_rms_norm(y, torch.randn(2, 95, device="cuda"), None, 1e-5, None, out,
                                   torch.empty(2, 96, device="cuda"))


def test_sanitize_quant_add_rms_norm(kernels):
    gen = torch.Generator(device="cuda").manual_seed(12)
    _add_run(kernels, (2, 3), 2560, torch.float16, torch.float32, torch.float32, True, True, gen)
    _add_run(kernels, (3,), 100, torch.bfloat16, None, None, False, False, gen)
