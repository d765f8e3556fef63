"""CUDA quant_ssd_state_update against the reference op (quamba_edge/ops/quant_ssd_state_update.py) on the GPU."""

import pytest
import torch
from gpu_helpers import assert_fp16_close, assert_int8_close, rand_int8
from ssd_helpers import (
    INF,
    _inputs,
    _ref_args,
    _run_update,
    compact_state_scales,
    ref_update,
)

pytestmark = pytest.mark.gpu


UPDATE_CASES = [
    # (B, H, P, G, N, state mode, token dim)
    (1, 80, 64, 1, 128, "int8", False),
    (1, 128, 64, 8, 128, "int8", True),
    (8, 16, 32, 2, 64, "int8", False),
    (3, 6, 40, 3, 16, "int8", True),
    (2, 4, 64, 1, 256, "int8", False),
    (4, 8, 32, 8, 32, "f32", False),
    (2, 8, 64, 2, 128, "f16", True),
]


@pytest.mark.parametrize("bsz,h,p,g,n,mode,token_dim", UPDATE_CASES)
def test_quant_ssd_state_update_matches_reference(kernels, bsz, h, p, g, n, mode, token_dim):
    gen = torch.Generator(device="cuda").manual_seed(hash((bsz, h, p, g, n, mode)) % 2**31)
    a = _inputs(bsz, None, h, p, g, n, gen, d=(bsz % 2 == 1), grouped_x=True)
    if token_dim:
        for k in ("x_q", "dt_q", "B_q", "C_q"):
            a[k] = a[k].unsqueeze(1)
    _run_update(kernels, a, mode, gen)


def test_quant_ssd_state_update_in_place_and_unaligned(kernels):
    gen = torch.Generator(device="cuda").manual_seed(33)
    bsz, h, p, g, n = 3, 8, 64, 2, 128
    a = _inputs(bsz, None, h, p, g, n, gen)
    _run_update(kernels, a, "int8", gen, in_place=True)
    big = rand_int8(bsz, 1 + 2 * g * n, gen=gen)  # B, C at odd offsets: the scalar path
    views = dict(B_q=big[:, 1:1 + g * n].view(bsz, g, n), C_q=big[:, 1 + g * n:].view(bsz, g, n))
    for k, v in views.items():
        a[k] = v.clone()
    _run_update(kernels, a, "int8", gen, views=views)




def test_quant_ssd_state_update_compact_state_scales(kernels):
    gen = torch.Generator(device="cuda").manual_seed(67)
    bsz, h, p, g, n = 1, 128, 64, 8, 128  # mamba2-8b: 8 x 16 rows of 128 scales
    a = _inputs(bsz, None, h, p, g, n, gen)
    table, rows, expanded = compact_state_scales(gen, h, p, g, n)
    st_in = rand_int8(bsz, h, p, n, gen=gen)
    outs = []
    for sc, row in ((expanded, None), (table, rows)):
        y = torch.empty(bsz, h, p, dtype=torch.float16, device="cuda")
        st = st_in.clone()
        kernels.quant_ssd_state_update(*_ref_args(a), 0.0, INF, st, sc, y, st, row)  # in place
        outs.append((y, st))
    y_ref, st_ref = ref_update(*_ref_args(a), (0.0, INF), st_in, expanded)
    torch.cuda.synchronize()
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])
    assert_fp16_close(outs[1][0], y_ref, "y")
    assert_int8_close(outs[1][1], st_ref, "state")
