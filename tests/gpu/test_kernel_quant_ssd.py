"""CUDA quant_ssd against the reference op (quamba_edge/ops/quant_ssd.py) on the GPU.

Fresh random inputs per case; outputs poisoned with two sentinels (every element must be written); y (fp16)
within fp16 tolerance of the fp32 reference, int8 states within +-1 LSB, float states within fp32 rounding.
These are the sequential kernel's tests: QUAMBA_SSD_CHUNKED=0 for the whole module (the chunked kernel, the
default from L = 32, has its own file, test_kernel_quant_ssd_chunked.py).
"""

import pytest
import torch
from gpu_helpers import assert_fp16_close, assert_int8_close, rand_int8
from ssd_helpers import (
    INF,
    _inputs,
    _is_act,
    _make_state,
    _ref_args,
    _run_ssd,
    _run_update,
    compact_state_scales,
    ref_ssd,
    ref_update,
)

pytestmark = pytest.mark.gpu


@pytest.fixture(autouse=True)
def _sequential_kernel(monkeypatch):
    monkeypatch.setenv("QUAMBA_SSD_CHUNKED", "0")


SSD_CASES = [
    # (B, L, H, P, G, N, chunk, state mode)
    (1, 1, 8, 64, 1, 128, 256, "int8"),
    (2, 7, 8, 32, 2, 64, 256, "int8"),
    (1, 33, 16, 64, 8, 128, 128, "int8"),
    (3, 100, 4, 32, 1, 16, 64, "none-int8"),
    (8, 65, 8, 64, 2, 128, 256, "f32"),
    (1, 257, 24, 64, 1, 128, 256, "int8"),
    (2, 300, 8, 32, 8, 64, 128, "none-f32"),
    (4, 129, 6, 40, 3, 32, 64, "int8"),        # headdim not a multiple of the channel tile
    (1, 100, 4, 64, 1, 256, 256, "int8"),
    (5, 31, 16, 64, 8, 16, 128, "f16"),
    (2, 1024, 8, 64, 8, 128, 128, "int8"),
    (1, 2048, 16, 64, 2, 64, 256, "int8"),
    (1, 4096, 8, 64, 1, 128, 256, "int8"),
    (1, 4095, 16, 32, 2, 64, 256, "f32"),
    (8, 513, 8, 64, 1, 128, 256, "int8"),
    (1, 256, 80, 64, 1, 128, 256, "int8"),     # mamba2-2.7b heads
    (1, 128, 128, 64, 8, 128, 128, "int8"),    # mamba2-8b heads
]


@pytest.mark.parametrize("bsz,seqlen,h,p,g,n,chunk,mode", SSD_CASES)
def test_quant_ssd_matches_reference(kernels, bsz, seqlen, h, p, g, n, chunk, mode):
    gen = torch.Generator(device="cuda").manual_seed(hash((bsz, seqlen, h, p, g, n, mode)) % 2**31)
    a = _inputs(bsz, seqlen, h, p, g, n, gen, d=(seqlen % 2 == 1), grouped_x=True)
    _run_ssd(kernels, a, mode, chunk, gen)


@pytest.mark.parametrize("staging", [0, 1])
@pytest.mark.parametrize("p_tile", [8, 16])
def test_quant_ssd_channel_tiles_and_staging(kernels, p_tile, staging):
    """Both channel tiles x both staging schemes (pipelined default, tile-by-tile) give the same results."""
    gen = torch.Generator(device="cuda").manual_seed(100 + p_tile + 10 * staging)
    a = _inputs(2, 77, 4, 64, 2, 128, gen)
    _run_ssd(kernels, a, "int8", 256, gen, p_tile=p_tile, staging=staging)


@pytest.mark.parametrize("n,p", [(16, 40), (32, 64), (64, 36), (256, 64)])
def test_quant_ssd_staging_schemes_agree_bitwise(kernels, n, p):
    gen = torch.Generator(device="cuda").manual_seed(200 + n + p)
    bsz, seqlen, h, g = 2, 203, 4, 2
    a = _inputs(bsz, seqlen, h, p, g, n, gen)
    st_in = torch.randn(bsz, h, p, n, device="cuda", generator=gen)
    outs = []
    for staging in (0, 1):
        y = torch.empty(bsz, seqlen, h, p, dtype=torch.float16, device="cuda")
        st = torch.empty(bsz, h, p, n, device="cuda")
        kernels.quant_ssd(*_ref_args(a), 256, 0.0, INF, st_in, None, y, st, 0, None, staging)
        outs.append((y, st))
    torch.cuda.synchronize()
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])
    y_ref, st_ref = ref_ssd(*_ref_args(a), 256, (0.0, INF), st_in, None)
    assert_fp16_close(outs[0][0], y_ref, "y")


def test_quant_ssd_dt_limit_and_scalar_scales(kernels):
    gen = torch.Generator(device="cuda").manual_seed(5)
    a = _inputs(2, 90, 8, 32, 2, 64, gen)
    a["x_scale"] = torch.tensor(0.02, device="cuda")
    a["B_scale"] = torch.tensor(0.03, device="cuda")
    _run_ssd(kernels, a, "int8", 64, gen, dt_limit=(0.01, 0.2))


def test_quant_ssd_strided_views_of_one_activation(kernels):
    """x / B / C / dt as views into one [B, L, 1 + E + 2GN + H] tensor (odd offsets: the byte-load path)."""
    gen = torch.Generator(device="cuda").manual_seed(9)
    bsz, seqlen, h, p, g, n = 2, 150, 8, 32, 2, 64
    a = _inputs(bsz, seqlen, h, p, g, n, gen)
    e = h * p
    big = rand_int8(bsz, seqlen, 1 + e + 2 * g * n + h, gen=gen)
    views = dict(x_q=big[:, :, 1:1 + e].view(bsz, seqlen, h, p),
                 B_q=big[:, :, 1 + e:1 + e + g * n].view(bsz, seqlen, g, n),
                 C_q=big[:, :, 1 + e + g * n:1 + e + 2 * g * n].view(bsz, seqlen, g, n),
                 dt_q=big[:, :, 1 + e + 2 * g * n:])
    for k, v in views.items():
        a[k] = v.clone()  # the reference gets dense copies of the same values
    _run_ssd(kernels, a, "int8", 256, gen, views=views)


def test_quant_ssd_prefill_in_two_parts_and_in_place(kernels):
    """prefill(L1) then prefill(L2) from its float state == prefill(L1 + L2); state_out may be state_in."""
    gen = torch.Generator(device="cuda").manual_seed(21)
    bsz, seqlen, h, p, g, n = 2, 200, 8, 64, 2, 128
    a = _inputs(bsz, seqlen, h, p, g, n, gen)
    args = _ref_args(a)

    def run(lo, hi, st):
        sl = [t[:, lo:hi] if _is_act(t) else t for t in args]
        y = torch.empty(bsz, hi - lo, h, p, dtype=torch.float16, device="cuda")
        kernels.quant_ssd(*sl, 256, 0.0, INF, st, None, y, st)  # in place
        return y

    st_full = torch.zeros(bsz, h, p, n, device="cuda")
    y_full = run(0, seqlen, st_full)
    st = torch.zeros(bsz, h, p, n, device="cuda")
    y1 = run(0, 123, st)
    y2 = run(123, seqlen, st)
    torch.cuda.synchronize()
    assert torch.equal(torch.cat([y1, y2], 1), y_full)  # same recurrence, same operations
    assert torch.equal(st, st_full)


def test_decode_steps_continue_prefill(kernels):
    """prefill L tokens then decode K tokens one by one (int8 state in place) ~= the reference chain."""
    gen = torch.Generator(device="cuda").manual_seed(44)
    bsz, seqlen, k, h, p, g, n = 2, 64, 8, 8, 64, 2, 128
    a = _inputs(bsz, seqlen + k, h, p, g, n, gen)
    st_in, sc, _ = _make_state("int8", bsz, h, p, n, a, gen, 256)
    args = _ref_args(a)
    sl = lambda t, lo, hi: t[:, lo:hi] if _is_act(t) else t
    st = st_in.clone()
    y = torch.empty(bsz, seqlen, h, p, dtype=torch.float16, device="cuda")
    kernels.quant_ssd(*[sl(t, 0, seqlen) for t in args], 256, 0.0, INF, st, sc, y, st)
    y_ref, st_ref = ref_ssd(*[sl(t, 0, seqlen) for t in args], 256, (0.0, INF), st_in, sc)
    torch.cuda.synchronize()
    assert_fp16_close(y, y_ref, "prefill y")
    assert_int8_close(st, st_ref, "prefill state")
    st_ref = st.clone()  # follow the kernel's state (a 1-LSB flip would otherwise propagate)
    for t in range(seqlen, seqlen + k):
        yt = torch.empty(bsz, h, p, dtype=torch.float16, device="cuda")
        tok = [x[:, t] if _is_act(x) else x for x in args]
        kernels.quant_ssd_state_update(*tok, 0.0, INF, st, sc, yt, st)
        yt_ref, st_ref = ref_update(*tok, (0.0, INF), st_ref, sc)
        torch.cuda.synchronize()
        assert_fp16_close(yt, yt_ref, f"decode y {t}")
        assert_int8_close(st, st_ref, f"decode state {t}")
        st_ref = st.clone()


def test_one_token_prefill_equals_decode_kernel(kernels):
    gen = torch.Generator(device="cuda").manual_seed(55)
    bsz, h, p, g, n = 4, 16, 64, 2, 128
    a = _inputs(bsz, 1, h, p, g, n, gen)
    st_in, sc, _ = _make_state("int8", bsz, h, p, n, a, gen, 256)
    y1 = torch.empty(bsz, 1, h, p, dtype=torch.float16, device="cuda")
    s1 = torch.empty(bsz, h, p, n, dtype=torch.int8, device="cuda")
    kernels.quant_ssd(*_ref_args(a), 256, 0.0, INF, st_in, sc, y1, s1)
    y2 = torch.empty(bsz, 1, h, p, dtype=torch.float16, device="cuda")
    s2 = torch.empty_like(s1)
    kernels.quant_ssd_state_update(*_ref_args(a), 0.0, INF, st_in, sc, y2, s2)
    torch.cuda.synchronize()
    assert_fp16_close(y1, y2.float(), "y")
    assert_int8_close(s1, s2, "state")


def test_quant_ssd_compact_state_scales(kernels):
    """A G x 4 x 4 x N table with a per-channel row index gives bit-identical results to the expanded table."""
    gen = torch.Generator(device="cuda").manual_seed(66)
    bsz, seqlen, h, p, g, n = 2, 50, 16, 64, 2, 128
    a = _inputs(bsz, seqlen, h, p, g, n, gen)
    table, rows, expanded = compact_state_scales(gen, h, p, g, n)
    st_in = rand_int8(bsz, h, p, n, gen=gen)
    outs = []
    for sc, row in ((expanded, None), (table, rows)):
        y = torch.empty(bsz, seqlen, h, p, dtype=torch.float16, device="cuda")
        st = torch.empty(bsz, h, p, n, dtype=torch.int8, device="cuda")
        kernels.quant_ssd(*_ref_args(a), 256, 0.0, INF, st_in, sc, y, st, 0, row)
        outs.append((y, st))
    y_ref, st_ref = ref_ssd(*_ref_args(a), 256, (0.0, INF), st_in, expanded)
    torch.cuda.synchronize()
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])
    assert_fp16_close(outs[1][0], y_ref, "y")
    assert_int8_close(outs[1][1], st_ref, "state")


def test_bad_arguments_raise(kernels):
    gen = torch.Generator(device="cuda").manual_seed(1)
    a = _inputs(1, 4, 4, 32, 1, 48, gen)  # d_state 48 is not supported by the kernel
    y = torch.empty(1, 4, 4, 32, dtype=torch.float16, device="cuda")
    st = torch.empty(1, 4, 32, 48, device="cuda")
    with pytest.raises(RuntimeError):
        kernels.quant_ssd(*_ref_args(a), 256, 0.0, INF, None, None, y, st)
    a = _inputs(1, 4, 4, 32, 1, 64, gen)
    st = torch.empty(1, 4, 32, 64, dtype=torch.int8, device="cuda")
    with pytest.raises(RuntimeError):  # int8 state_out without a scale
        kernels.quant_ssd(*_ref_args(a), 256, 0.0, INF, None, None, y, st)
    with pytest.raises(RuntimeError):  # wrong y shape
        kernels.quant_ssd(*_ref_args(a), 256, 0.0, INF, None, torch.ones(4, 32, 64, device="cuda"), y[:, :3], st)


def test_sanitize_quant_ssd(kernels):
    """Small calls for compute-sanitizer: both channel tiles, tails in L and P, every state kind, decode."""
    gen = torch.Generator(device="cuda").manual_seed(2)
    a = _inputs(2, 37, 4, 40, 2, 64, gen)
    for tile in (16, 32):
        for staging in (0, 1):
            _run_ssd(kernels, a, "int8", 16, gen, p_tile=tile, staging=staging)
    a = _inputs(1, 70, 2, 64, 1, 128, gen, d=False)
    _run_ssd(kernels, a, "f32", 256, gen)
    _run_ssd(kernels, a, "none-int8", 256, gen)
    a = _inputs(2, None, 4, 40, 2, 64, gen)
    _run_update(kernels, a, "int8", gen)
    a = _inputs(1, None, 2, 32, 1, 128, gen)
    _run_update(kernels, a, "f16", gen)
