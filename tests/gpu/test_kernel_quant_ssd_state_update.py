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


# The kernel has two paths (plugins/kernels/quant_ssd_state_update.cu): batch 1 with an aligned int8 state
# (one row a thread, no shared memory), else 4 batch rows a thread (blocks with fewer rows at the tail).
# Every d_state, channel blocks with unused lanes (P = 40 / 24), heads per group 1 / 3 / 4.
PATH_CASES = [
    # (B, H, P, G, N)
    (1, 6, 40, 2, 16),
    (1, 12, 24, 4, 32),
    (1, 4, 40, 1, 64),
    (1, 8, 40, 2, 256),
    (1, 3, 64, 3, 128),
    (5, 6, 40, 2, 16),
    (6, 12, 24, 4, 32),
    (7, 4, 40, 1, 128),
    (9, 8, 40, 2, 256),
]


@pytest.mark.parametrize("bsz,h,p,g,n", PATH_CASES)
def test_quant_ssd_state_update_paths(kernels, bsz, h, p, g, n):
    gen = torch.Generator(device="cuda").manual_seed(hash((bsz, h, p, g, n, "paths")) % 2**31)
    a = _inputs(bsz, None, h, p, g, n, gen, d=(n != 64))
    _run_update(kernels, a, "int8", gen)


@pytest.mark.parametrize("bsz", [1, 2, 5])
def test_quant_ssd_state_update_unaligned_rows(kernels, bsz):
    """B / C at odd offsets: the byte-load variant of the batched path, also for batch 1."""
    gen = torch.Generator(device="cuda").manual_seed(91 + bsz)
    h, p, g, n = 8, 40, 2, 64
    a = _inputs(bsz, None, h, p, g, n, gen)
    big = rand_int8(bsz, 1 + 2 * g * n, gen=gen)
    views = dict(B_q=big[:, 1:1 + g * n].view(bsz, g, n), C_q=big[:, 1 + g * n:].view(bsz, g, n))
    for k, v in views.items():
        a[k] = v.clone()
    _run_update(kernels, a, "int8", gen, views=views)


def test_sanitize_quant_ssd_state_update(kernels):
    """Small calls for compute-sanitizer: the batch-1 path (unused lanes), the batched path with a tail
    block and compact scales, the byte-load variant, and a float state."""
    gen = torch.Generator(device="cuda").manual_seed(5)
    a = _inputs(1, None, 6, 40, 2, 32, gen)
    _run_update(kernels, a, "int8", gen)
    a = _inputs(5, None, 8, 40, 2, 16, gen)
    _run_update(kernels, a, "int8", gen)
    bsz, h, p, g, n = 5, 8, 64, 2, 128
    a = _inputs(bsz, None, h, p, g, n, gen)
    table, rows, _ = compact_state_scales(gen, h, p, g, n)
    y = torch.empty(bsz, h, p, dtype=torch.float16, device="cuda")
    st = rand_int8(bsz, h, p, n, gen=gen)
    kernels.quant_ssd_state_update(*_ref_args(a), 0.0, INF, st, table, y, st, rows)
    torch.cuda.synchronize()
    a = _inputs(1, None, 4, 40, 1, 64, gen)
    big = rand_int8(1, 1 + 2 * 64, gen=gen)
    views = dict(B_q=big[:, 1:65].view(1, 1, 64), C_q=big[:, 65:].view(1, 1, 64))
    for k, v in views.items():
        a[k] = v.clone()
    _run_update(kernels, a, "int8", gen, views=views)
    a = _inputs(2, None, 4, 40, 2, 64, gen)
    _run_update(kernels, a, "f32", gen)


@pytest.mark.parametrize("bsz,h,p,g,n,seed", [
    (1, 128, 64, 8, 128, 67),  # mamba2-8b at batch 1: 8 x 16 rows of 128 scales
    (5, 16, 64, 2, 128, 73),   # batch > 1: 4 rows a thread (one scale load for all), a tail block
    (16, 16, 64, 2, 128, 84),
])
def test_quant_ssd_state_update_compact_state_scales(kernels, bsz, h, p, g, n, seed):
    """Compact table + row index == expanded scales (bit for bit), both within the reference's contract."""
    gen = torch.Generator(device="cuda").manual_seed(seed)
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
