"""CUDA quant_causal_conv1d against the reference op (quamba_edge/ops/quant_causal_conv1d.py) on the GPU."""

import pytest
import torch

from gpu_helpers import assert_calls_raise, assert_int8_close, rand_int8, run_poisoned
from quamba_edge.ops import quant_causal_conv1d as ref_conv

pytestmark = pytest.mark.gpu


def _inputs(bsz, seqlen, c, k, gen, *, bias=True, state=True, per_channel=True):
    dev = "cuda"

    def sc(lo, hi):
        if per_channel:
            return lo + (hi - lo) * torch.rand(c, device=dev, generator=gen)
        return torch.full((c,), lo + (hi - lo) * float(torch.rand((), device=dev, generator=gen)), device=dev)

    x_scale, w_scale = sc(0.01, 0.05), sc(0.002, 0.01)
    return dict(
        x_q=rand_int8(bsz, seqlen, c, gen=gen), x_scale=x_scale,
        w_q=rand_int8(c, k, gen=gen), w_scale=w_scale,
        b_q=rand_int8(c, gen=gen) if bias else None, b_scale=sc(0.005, 0.02) if bias else None,
        # output scales so that outputs use the int8 range and some clamp
        out_scale=x_scale * w_scale * (40.0 * k ** 0.5) * (0.5 + torch.rand(c, device=dev, generator=gen)),
        conv_state=rand_int8(bsz, c, k - 1, gen=gen) if state else None,
    )


def _run(kernels, p, silu=True, scalar_scales=False):
    bsz, seqlen, c = p["x_q"].shape
    k = p["w_q"].shape[1]
    args = dict(p)
    if scalar_scales:  # a [1] tensor: the kernel's stride-0 path
        for name in ("x_scale", "w_scale", "b_scale", "out_scale"):
            if args[name] is not None:
                args[name] = args[name][:1].contiguous()

    def call(y, st):
        kernels.quant_causal_conv1d(args["x_q"], args["x_scale"], args["w_q"], args["w_scale"], args["b_q"],
                                    args["b_scale"], args["out_scale"], args["conv_state"], silu, y, st)

    y, st = run_poisoned(call, [((bsz, seqlen, c), torch.int8), ((bsz, c, k - 1), torch.int8)])
    ref_args = {n: (v[0] if scalar_scales and n.endswith("scale") and v is not None else v) for n, v in args.items()}
    if scalar_scales:
        ref_args = {n: (float(v) if n.endswith("scale") and v is not None else v) for n, v in ref_args.items()}
    y_ref, st_ref = ref_conv(ref_args["x_q"], ref_args["x_scale"], ref_args["w_q"], ref_args["w_scale"],
                             ref_args["b_q"], ref_args["b_scale"], ref_args["out_scale"], ref_args["conv_state"],
                             silu=silu)
    return y, st, y_ref, st_ref


CASES = [
    # (B, L, C, K, bias, state, per_channel)
    (1, 1, 5120, 4, True, True, True),       # Mamba1 decode
    (1, 1, 5376, 4, True, True, True),       # Mamba2 x|B|C decode
    (8, 1, 1000, 4, True, True, False),
    (1, 2, 64, 4, True, True, True),         # L < K-1: the new state mixes old state and x
    (3, 3, 128, 4, False, True, True),
    (2, 7, 36, 4, True, False, True),
    (1, 63, 260, 3, True, True, True),
    (4, 64, 512, 4, True, True, False),
    (1, 65, 128, 2, True, True, True),
    (2, 129, 77, 4, True, True, True),        # C not a multiple of 4: scalar path
    (1, 1000, 1024, 4, True, True, True),
    (5, 333, 96, 5, False, False, True),
    (8, 257, 256, 4, True, True, True),
    (1, 4096, 640, 4, True, True, True),
    (2, 4095, 5376, 4, True, True, True),
    (1, 17, 64, 1, True, False, True),        # K = 1: no state
]


@pytest.mark.parametrize("bsz,seqlen,c,k,bias,state,per_channel", CASES)
def test_matches_reference(kernels, bsz, seqlen, c, k, bias, state, per_channel):
    gen = torch.Generator(device="cuda").manual_seed(hash((bsz, seqlen, c, k, bias, state)) % 2**31)
    p = _inputs(bsz, seqlen, c, k, gen, bias=bias, state=state, per_channel=per_channel)
    y, st, y_ref, st_ref = _run(kernels, p)
    assert_int8_close(y, y_ref, "y")
    assert torch.equal(st, st_ref), "new conv state must be an exact copy of the inputs"
    # the reference is integer-faithful with the same fp32 operations: expect bit-exact results
    assert int((y != y_ref).sum()) <= max(1, y.numel() // 10000)


@pytest.mark.parametrize("silu", [True, False])
def test_scalar_scales_and_no_silu(kernels, silu):
    gen = torch.Generator(device="cuda").manual_seed(7)
    p = _inputs(2, 50, 256, 4, gen)
    y, st, y_ref, st_ref = _run(kernels, p, silu=silu, scalar_scales=True)
    assert_int8_close(y, y_ref, "y")
    assert torch.equal(st, st_ref)


def test_prefill_then_decode_equals_full_prefill(kernels):
    gen = torch.Generator(device="cuda").manual_seed(11)
    bsz, seqlen, c, k = 2, 40, 384, 4
    p = _inputs(bsz, seqlen, c, k, gen)
    y_full = torch.empty(bsz, seqlen, c, dtype=torch.int8, device="cuda")
    st_full = torch.empty(bsz, c, k - 1, dtype=torch.int8, device="cuda")
    kernels.quant_causal_conv1d(p["x_q"], p["x_scale"], p["w_q"], p["w_scale"], p["b_q"], p["b_scale"],
                                p["out_scale"], p["conv_state"], True, y_full, st_full)
    split = 31
    ys = torch.empty_like(y_full)
    st = torch.empty(bsz, c, k - 1, dtype=torch.int8, device="cuda")
    kernels.quant_causal_conv1d(p["x_q"][:, :split], p["x_scale"], p["w_q"], p["w_scale"], p["b_q"], p["b_scale"],
                                p["out_scale"], p["conv_state"], True, ys[:, :split], st)
    for t in range(split, seqlen):  # decode, state updated in place
        kernels.quant_causal_conv1d(p["x_q"][:, t:t + 1], p["x_scale"], p["w_q"], p["w_scale"], p["b_q"],
                                    p["b_scale"], p["out_scale"], st, True, ys[:, t:t + 1], st)
    torch.cuda.synchronize()
    assert torch.equal(ys, y_full)
    assert torch.equal(st, st_full)


def test_in_place_state_prefill(kernels):
    """new_conv_state may be the conv_state tensor itself (the binding copies it for L > 1)."""
    gen = torch.Generator(device="cuda").manual_seed(12)
    p = _inputs(2, 300, 128, 4, gen)
    y_ref, st_ref = ref_conv(p["x_q"], p["x_scale"], p["w_q"], p["w_scale"], p["b_q"], p["b_scale"],
                             p["out_scale"], p["conv_state"])
    st = p["conv_state"].clone()
    y = torch.empty_like(p["x_q"])
    kernels.quant_causal_conv1d(p["x_q"], p["x_scale"], p["w_q"], p["w_scale"], p["b_q"], p["b_scale"],
                                p["out_scale"], st, True, y, st)
    torch.cuda.synchronize()
    assert_int8_close(y, y_ref, "y")
    assert torch.equal(st, st_ref)


_BAD_ARGS = """
x = torch.zeros(1, 4, 8, dtype=torch.int8, device="cuda")
w = torch.zeros(8, 4, dtype=torch.int8, device="cuda")
s = torch.ones(8, device="cuda")
y = torch.empty(1, 4, 8, dtype=torch.int8, device="cuda")
st = torch.empty(1, 8, 3, dtype=torch.int8, device="cuda")
bad = [
    (x.float(), s, w, s, None, None, s, None, True, y, st),          # x_q not int8
    (x, s, w, s, None, None, s, None, True, y, st[:, :, :2]),        # wrong state shape
    (x, s[:5], w, s, None, None, s, None, True, y, st),              # scale neither [1] nor [C]
    (x, s, w, s, w[:, 0].contiguous(), None, s, None, True, y, st),  # bias without its scale
]
"""


def test_bad_arguments_raise(kernels):
    """Bad dtypes / shapes raise RuntimeError with a message (in a subprocess: a crash must not take the
    whole test session down)."""
    assert_calls_raise("quant_causal_conv1d", _BAD_ARGS)


def test_sanitize_quant_causal_conv1d(kernels):
    """Small calls for compute-sanitizer (plugins/sanitize_driver.py): vector and scalar paths, decode."""
    gen = torch.Generator(device="cuda").manual_seed(3)
    for bsz, seqlen, c, k in [(2, 67, 136, 4), (1, 1, 64, 4), (2, 5, 13, 3)]:
        p = _inputs(bsz, seqlen, c, k, gen)
        y, st, y_ref, st_ref = _run(kernels, p)
        assert_int8_close(y, y_ref, "y")
        assert torch.equal(st, st_ref)
