"""CUDA quant_selective_scan against the reference op (quamba_edge/ops/quant_selective_scan.py) on the GPU."""

import pytest
import torch

from gpu_helpers import assert_fp16_close, assert_int8_close, make_scan_inputs, rand_int8, run_poisoned, scan_args
from quamba_edge.ops import quant_selective_scan as ref_scan

pytestmark = pytest.mark.gpu

STATE_SCALE = 0.02


def _state(kind, bsz, dim, dstate, gen):
    if kind == "int8":
        return rand_int8(bsz, dim, dstate, gen=gen), STATE_SCALE
    if kind == "fp32":
        return torch.randn(bsz, dim, dstate, device="cuda", generator=gen), None
    if kind == "none_int8":
        return None, STATE_SCALE
    return None, None  # "none_fp32"


def _run(kernels, p, state_in, state_scale):
    bsz, seqlen, dim = p["u_q"].shape
    dstate = p["A_log_q"].shape[1]
    st_dtype = torch.int8 if state_scale is not None else torch.float32

    def call(y, st):
        kernels.quant_selective_scan(*scan_args(p), state_in, state_scale, y, st)

    y, st = run_poisoned(call, [((bsz, seqlen, dim), torch.float16), ((bsz, dim, dstate), st_dtype)])
    y_ref, st_ref = ref_scan(*scan_args(p), state_in=state_in, state_scale=state_scale, chunk_size=128)
    return y, st, y_ref, st_ref


def _check(y, st, y_ref, st_ref, state_scale):
    assert_fp16_close(y, y_ref, "y")
    if state_scale is not None:
        assert_int8_close(st, st_ref, "state_out")
    else:
        torch.testing.assert_close(st, st_ref, rtol=1e-4, atol=1e-4 * float(st_ref.abs().max()))


CASES = [
    # (B, L, E, N, state kind, z, D, dt_bias)
    (1, 1, 64, 16, "int8", True, True, True),
    (1, 2, 128, 16, "fp32", True, True, True),
    (2, 7, 200, 16, "int8", True, True, True),       # E not a multiple of the block's channels
    (1, 63, 96, 16, "none_int8", False, True, True),
    (3, 64, 128, 16, "int8", True, False, False),
    (1, 65, 64, 64, "fp32", True, True, True),
    (8, 129, 64, 16, "int8", True, True, True),
    (2, 333, 96, 128, "int8", True, True, True),
    (1, 1000, 256, 16, "int8", True, True, True),
    (1, 1024, 160, 64, "none_fp32", True, True, False),
    (4, 2047, 64, 16, "fp32", False, False, True),
    (1, 4096, 128, 16, "int8", True, True, True),
    (2, 4096, 32, 128, "int8", True, True, True),
    (1, 300, 40, 20, "int8", True, True, True),       # N not a power of two
    (2, 100, 48, 1, "fp32", True, True, True),
    (1, 77, 24, 256, "int8", True, True, True),       # largest d_state
]


@pytest.mark.parametrize("bsz,seqlen,dim,dstate,state,z,D,dt_bias", CASES)
def test_matches_reference(kernels, bsz, seqlen, dim, dstate, state, z, D, dt_bias):
    gen = torch.Generator(device="cuda").manual_seed(hash((bsz, seqlen, dim, dstate, z, D)) % 2**31)
    p = make_scan_inputs(bsz, seqlen, dim, dstate, gen, z=z, D=D, dt_bias=dt_bias)
    state_in, state_scale = _state(state, bsz, dim, dstate, gen)
    y, st, y_ref, st_ref = _run(kernels, p, state_in, state_scale)
    _check(y, st, y_ref, st_ref, state_scale)


def test_mamba1_shape(kernels):
    """mamba-2.8b's scan shape (E = 5120, N = 16) over a long prompt, int8 state."""
    gen = torch.Generator(device="cuda").manual_seed(28)
    p = make_scan_inputs(1, 1536, 5120, 16, gen)
    state_in, state_scale = _state("int8", 1, 5120, 16, gen)
    _check(*_run(kernels, p, state_in, state_scale), state_scale)


def test_chunked_prefill_continues_state(kernels):
    """Two calls (fp32 state carried) equal one call over the whole sequence."""
    gen = torch.Generator(device="cuda").manual_seed(5)
    bsz, seqlen, dim, dstate = 2, 200, 64, 16
    p = make_scan_inputs(bsz, seqlen, dim, dstate, gen)
    y_all = torch.empty(bsz, seqlen, dim, dtype=torch.float16, device="cuda")
    st_all = torch.empty(bsz, dim, dstate, device="cuda")
    kernels.quant_selective_scan(*scan_args(p), None, None, y_all, st_all)
    split = 123
    parts = [{k: (v[:, a:b] if isinstance(v, torch.Tensor) and v.dim() == 3 else v) for k, v in p.items()}
             for a, b in ((0, split), (split, seqlen))]
    y = torch.empty_like(y_all)
    st1 = torch.empty_like(st_all)
    st2 = torch.empty_like(st_all)
    kernels.quant_selective_scan(*scan_args(parts[0]), None, None, y[:, :split], st1)
    kernels.quant_selective_scan(*scan_args(parts[1]), st1, None, y[:, split:], st2)
    torch.cuda.synchronize()
    torch.testing.assert_close(y.float(), y_all.float(), rtol=2e-3, atol=1e-3)
    torch.testing.assert_close(st2, st_all, rtol=1e-5, atol=1e-5)


def test_in_place_state(kernels):
    gen = torch.Generator(device="cuda").manual_seed(6)
    p = make_scan_inputs(2, 50, 64, 16, gen)
    st = rand_int8(2, 64, 16, gen=gen)
    y_ref, st_ref = ref_scan(*scan_args(p), state_in=st.clone(), state_scale=STATE_SCALE)
    y = torch.empty(2, 50, 64, dtype=torch.float16, device="cuda")
    kernels.quant_selective_scan(*scan_args(p), st, STATE_SCALE, y, st)
    torch.cuda.synchronize()
    assert_fp16_close(y, y_ref, "y")
    assert_int8_close(st, st_ref, "state")


def test_sanitize_quant_selective_scan(kernels):
    """Small calls for compute-sanitizer: each d_state class, partial tiles, every optional input."""
    gen = torch.Generator(device="cuda").manual_seed(4)
    for bsz, seqlen, dim, dstate, state in [(2, 67, 40, 16, "int8"), (1, 9, 16, 64, "fp32"),
                                             (1, 33, 20, 128, "none_int8"), (1, 5, 8, 20, "int8")]:
        p = make_scan_inputs(bsz, seqlen, dim, dstate, gen)
        state_in, state_scale = _state(state, bsz, dim, dstate, gen)
        _check(*_run(kernels, p, state_in, state_scale), state_scale)
