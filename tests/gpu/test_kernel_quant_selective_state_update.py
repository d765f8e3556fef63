"""CUDA quant_selective_state_update against the reference op on the GPU."""

import pytest
import torch

from gpu_helpers import assert_fp16_close, assert_int8_close, make_scan_inputs, rand_int8, run_poisoned, scan_args
from quamba_edge.ops import quant_selective_scan as ref_scan
from quamba_edge.ops import quant_selective_state_update as ref_step

pytestmark = pytest.mark.gpu

STATE_SCALE = 0.02


def _token(p, squeeze):
    """[B, 1, C] token tensors of a one-token make_scan_inputs, optionally squeezed to [B, C]."""
    return {k: (v[:, 0] if squeeze and isinstance(v, torch.Tensor) and v.dim() == 3 else v) for k, v in p.items()}


def _state(int8, bsz, dim, dstate, gen):
    if int8:
        return rand_int8(bsz, dim, dstate, gen=gen), STATE_SCALE
    return torch.randn(bsz, dim, dstate, device="cuda", generator=gen), None


CASES = [
    # (B, E, N, int8 state, squeeze, z, D, dt_bias)
    (1, 5120, 16, True, True, True, True, True),      # mamba-2.8b
    (1, 64, 16, False, False, True, True, True),
    (3, 100, 16, True, True, False, True, False),
    (8, 256, 64, True, False, True, True, True),
    (2, 96, 128, False, True, True, False, True),
    (5, 33, 128, True, True, True, True, True),
    (2, 40, 20, True, True, True, True, True),        # N % 16 != 0: scalar path
    (1, 17, 7, False, False, True, True, True),
    (4, 24, 256, True, True, True, True, True),
    (8, 1000, 16, True, True, True, True, True),
    # batches past one wave of blocks: several rows per block (row loop with prefetch, double-buffered B / C)
    (64, 5120, 16, True, True, True, True, True),     # mamba-2.8b decode batch
    (67, 5120, 16, True, False, False, False, False),  # uneven rows per block
    (200, 1024, 20, True, True, True, True, True),    # scalar path, 2 lanes per channel
    (128, 2048, 16, False, True, True, True, True),   # fp32 state
    (64, 512, 256, True, False, True, True, True),    # 16 lanes per channel
]


@pytest.mark.parametrize("bsz,dim,dstate,int8,squeeze,z,D,dt_bias", CASES)
def test_matches_reference(kernels, bsz, dim, dstate, int8, squeeze, z, D, dt_bias):
    gen = torch.Generator(device="cuda").manual_seed(hash((bsz, dim, dstate, int8, squeeze)) % 2**31)
    p = _token(make_scan_inputs(bsz, 1, dim, dstate, gen, z=z, D=D, dt_bias=dt_bias), squeeze)
    state, scale = _state(int8, bsz, dim, dstate, gen)
    yshape = (bsz, dim) if squeeze else (bsz, 1, dim)

    def call(y, st):
        kernels.quant_selective_state_update(*scan_args(p), state, scale, y, st)

    y, st = run_poisoned(call, [(yshape, torch.float16), ((bsz, dim, dstate), state.dtype)])
    y_ref, st_ref = ref_step(*scan_args(p), state, scale)
    assert_fp16_close(y, y_ref, "y")
    if int8:
        assert_int8_close(st, st_ref, "new_state")
    else:
        torch.testing.assert_close(st, st_ref, rtol=1e-5, atol=1e-5 * float(st_ref.abs().max()))


@pytest.mark.parametrize("int8", [True, False])
def test_in_place_decode_loop_matches_prefill(kernels, int8):
    """Tokens decoded one by one (state updated in place) agree with the prefill kernel over the same
    tokens (fp32 state: to rounding; int8 state: the reference loop of steps)."""
    gen = torch.Generator(device="cuda").manual_seed(9)
    bsz, seqlen, dim, dstate = 2, 24, 128, 16
    p = make_scan_inputs(bsz, seqlen, dim, dstate, gen)
    state, scale = _state(int8, bsz, dim, dstate, gen)
    st = state.clone()
    ref_st = state.clone()
    y = torch.empty(bsz, seqlen, dim, dtype=torch.float16, device="cuda")
    ys_ref = []
    for t in range(seqlen):
        pt = {k: (v[:, t:t + 1] if isinstance(v, torch.Tensor) and v.dim() == 3 else v) for k, v in p.items()}
        kernels.quant_selective_state_update(*scan_args(pt), st, scale, y[:, t:t + 1], st)
        y_t, ref_st = ref_step(*scan_args(pt), ref_st, scale)
        ys_ref.append(y_t)
    torch.cuda.synchronize()
    y_ref = torch.cat(ys_ref, dim=1)
    assert_fp16_close(y, y_ref, "y")
    if int8:
        # requantized every step: a ±1 LSB flip can propagate a little; allow 2 LSB, nearly all exact
        assert_int8_close(st, ref_st, "state", max_lsb=2)
        assert (st != ref_st).float().mean() < 0.01
    else:
        y_pf, st_pf = ref_scan(*scan_args(p), state_in=state, state_scale=None)
        assert_fp16_close(y, y_pf, "y vs prefill")
        torch.testing.assert_close(st, st_pf, rtol=1e-4, atol=1e-4)


def test_sanitize_quant_selective_state_update(kernels):
    gen = torch.Generator(device="cuda").manual_seed(8)
    # the last three: more rows than one wave of blocks holds (row loop, shared-memory double buffer)
    for bsz, dim, dstate, int8 in [(2, 40, 16, True), (1, 8, 128, False), (2, 9, 20, True), (1, 5, 64, True),
                                   (3000, 8, 16, True), (4100, 8, 16, True), (2100, 8, 20, False)]:
        p = _token(make_scan_inputs(bsz, 1, dim, dstate, gen), True)
        state, scale = _state(int8, bsz, dim, dstate, gen)

        def call(y, st):
            kernels.quant_selective_state_update(*scan_args(p), state, scale, y, st)

        y, st = run_poisoned(call, [((bsz, dim), torch.float16), ((bsz, dim, dstate), state.dtype)])
        y_ref, st_ref = ref_step(*scan_args(p), state, scale)
        assert_fp16_close(y, y_ref, "y")
