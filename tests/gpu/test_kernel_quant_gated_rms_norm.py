"""CUDA quant_gated_rms_norm against the reference op (quamba_edge/ops/quant_gated_rms_norm.py) on the GPU."""

import pytest
import torch
from gpu_helpers import assert_fp16_close, rand_int8, run_poisoned

from quamba_edge.ops.quant_gated_rms_norm import quant_gated_rms_norm as ref_gated_norm

pytestmark = pytest.mark.gpu

GATED_CASES = [
    # (lead, E, ngroups, y dtype, norm_before_gate)
    ((1, 1), 5120, 1, torch.float16, False),     # mamba2-2.7b decode
    ((1, 1), 8192, 8, torch.float16, False),     # mamba2-8b decode
    ((1, 1024), 5120, 1, torch.float16, False),
    ((2, 300), 8192, 8, torch.float16, False),
    ((3, 7), 256, 2, torch.float32, False),      # mamba2-ref: E 256, G 2
    ((4, 5), 96, 3, torch.float16, True),
    ((2, 9), 1000, 1, torch.bfloat16, False),
    ((1, 3), 16384, 1, torch.float32, True),
    ((6,), 64, 64, torch.float16, False),        # group of one channel
]


def _gated_run(kernels, lead, e, ngroups, ydt, nbg, gen, y=None):
    if y is None:
        y = (torch.randn(*lead, e, device="cuda", generator=gen) * 3.0).to(ydt)
    shape = tuple(y.shape)
    z = rand_int8(*shape, gen=gen)
    z_scale = 0.04
    weight = (0.5 + torch.rand(e, device="cuda", generator=gen)).half()
    eps = 1e-5

    def call(out):
        kernels.quant_gated_rms_norm(y, z, z_scale, weight, eps, e // ngroups, nbg, out)

    (out,) = run_poisoned(call, [(shape, torch.float16)])
    ref = ref_gated_norm(y, z, z_scale, weight, eps, e // ngroups, nbg)
    assert_fp16_close(out, ref, "out")


@pytest.mark.parametrize("lead,e,ngroups,ydt,nbg", GATED_CASES)
def test_quant_gated_rms_norm_matches_reference(kernels, lead, e, ngroups, ydt, nbg):
    gen = torch.Generator(device="cuda").manual_seed(hash((lead, e, ngroups, str(ydt), nbg)) % 2**31)
    _gated_run(kernels, lead, e, ngroups, ydt, nbg, gen)


def test_quant_gated_rms_norm_strided_rows(kernels):
    gen = torch.Generator(device="cuda").manual_seed(6)
    big = torch.randn(5, 5120 + 32, device="cuda", generator=gen).half()
    _gated_run(kernels, None, 5120, 1, None, False, gen, y=big[:, 32:])
    # rows that start 8 bytes off a 16-byte boundary: the scalar layout (m2::vec_rows_ok)
    _gated_run(kernels, None, 5120, 1, None, False, gen, y=big[:, 4:5124])
    _gated_run(kernels, None, 5120, 4, None, True, gen, y=big[:1, 4:5124])


def test_bad_arguments_raise(kernels):
    y = torch.randn(2, 96, device="cuda").half()
    z = torch.zeros(2, 96, dtype=torch.int8, device="cuda")
    out = torch.empty(2, 96, dtype=torch.float16, device="cuda")
    with pytest.raises(RuntimeError):  # group size does not divide E
        kernels.quant_gated_rms_norm(y, z, 0.1, torch.ones(96, device="cuda"), 1e-5, 40, False, out)
    with pytest.raises(RuntimeError):  # z must be int8
        kernels.quant_gated_rms_norm(y, z.float(), 0.1, torch.ones(96, device="cuda"), 1e-5, 32, False, out)


def test_sanitize_quant_gated_rms_norm(kernels):
    gen = torch.Generator(device="cuda").manual_seed(13)
    _gated_run(kernels, (2, 3), 8192, 8, torch.float16, False, gen)
    _gated_run(kernels, (3,), 96, 3, torch.float32, True, gen)
