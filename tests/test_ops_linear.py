"""W8A8Linear, W4A8Linear, W4A16Linear reference ops against independent computations."""

import numpy as np
import pytest
import torch

from quamba_edge.ops import w4a8_int8_weight, w4a8_linear, w4a16_linear, w8a8_linear


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _rand_i8(shape, g):
    return torch.randint(-128, 128, shape, generator=g, dtype=torch.int64).to(torch.int8)


def _int_dot(x, w):
    """Exact int64 x [..., K] . w [N, K] -> [..., N] by broadcasting (no matmul)."""
    return (x.to(torch.int64).unsqueeze(-2) * w.to(torch.int64)).sum(-1)


def _q_ref(y64, scale):
    """float64 reference quantizer (numpy rint = half to even)."""
    y64 = np.asarray(y64, dtype=np.float64)
    return np.clip(np.rint(y64 / np.asarray(scale, dtype=np.float64)), -128, 127)


def _assert_lsb(q, q_ref, min_exact=0.98):
    q = q.to(torch.int64).numpy()
    diff = np.abs(q - q_ref)
    assert diff.max() <= 1, diff.max()
    assert (diff == 0).mean() >= min_exact


# ---------------------------------------------------------------------------------------------- W8A8


@pytest.mark.parametrize("lead", [(1,), (2, 3), (2, 1)])
def test_w8a8_float_out_matches_exact_int(lead):
    g = _gen(1)
    k, n = 40, 24
    x = _rand_i8((*lead, k), g)
    w = _rand_i8((n, k), g)
    xs, ws = 0.013, 0.0021
    y = w8a8_linear(x, xs, w, ws)
    assert y.dtype == torch.float32 and y.shape == (*lead, n)
    acc = _int_dot(x, w)
    # documented fp32 order: float32(acc) * (float32(xs) * float32(ws))
    alpha = torch.tensor(xs, dtype=torch.float32) * torch.tensor(ws, dtype=torch.float32)
    assert torch.equal(y, acc.to(torch.float32) * alpha)
    np.testing.assert_allclose(y.numpy(), acc.numpy() * xs * ws, rtol=1e-6)


def test_w8a8_per_channel_scales_bias_int8_out():
    g = _gen(2)
    k, n = 33, 17
    x = _rand_i8((3, 5, k), g)
    w = _rand_i8((n, k), g)
    ws = torch.rand(n, generator=g) * 0.01 + 1e-3
    bias = torch.randn(n, generator=g)
    out_s = torch.rand(n, generator=g) * 0.5 + 0.5
    q = w8a8_linear(x, 0.02, w, ws, bias=bias, out_scale=out_s)
    assert q.dtype == torch.int8 and q.shape == (3, 5, n)
    y64 = _int_dot(x, w).double().numpy() * 0.02 * ws.double().numpy() + bias.double().numpy()
    _assert_lsb(q, _q_ref(y64, out_s.double().numpy()))


def test_w8a8_exact_past_2_24():
    # acc = 2048 * 16384 + 1 = 2^25 + 1: not representable in fp32, so fp32 accumulation would be off.
    k = 2049
    x = torch.full((1, k), 127, dtype=torch.int8)
    x[0, -1] = 1
    w = torch.full((2, k), -128, dtype=torch.int8)
    w[:, -1] = 0
    x[0, :2048] = -128  # (-128)(-128) = 16384 per term
    w[1, -1] = 1
    acc = _int_dot(x, w)
    assert acc[0, 0].item() == 2048 * 16384 and acc[0, 1].item() == 2048 * 16384 + 1
    y = w8a8_linear(x, 1.0, w, 1.0)
    assert torch.equal(y, acc.to(torch.float64).to(torch.float32))
    # float64 of the op's integer part is exact: recover it with an fp64 scale of 2^-30 (exact)
    y2 = w8a8_linear(x, 2.0 ** -30, w, 1.0)
    assert torch.equal(y2, (acc.double() * 2.0 ** -30).float())


def test_w8a8_ties_half_to_even_and_saturation():
    x = torch.tensor([[1]], dtype=torch.int8)
    w = torch.tensor([[1], [3], [5], [-5], [-1], [7]], dtype=torch.int8)
    q = w8a8_linear(x, 1.0, w, 1.0, out_scale=2.0)  # y/2 = .5 1.5 2.5 -2.5 -.5 3.5
    assert q.flatten().tolist() == [0, 2, 2, -2, 0, 4]
    xs = torch.tensor([[127, -128]], dtype=torch.int8)
    ws = torch.tensor([[127, -128], [-128, 127]], dtype=torch.int8)
    q = w8a8_linear(xs, 1.0, ws, 1.0, out_scale=1e-3)
    assert q.flatten().tolist() == [127, -128]


# ---------------------------------------------------------------------------------------------- W4A8


def _w8_ref(codes, s_group, group_size):
    """numpy float16 multiply (correctly rounded), rint (half to even), clip."""
    n, k = codes.shape
    g = k if group_size <= 0 or group_size >= k else group_size
    c = codes.numpy().astype(np.float16) - np.float16(8)
    sg = s_group.numpy().astype(np.float16)
    out = np.empty((n, k), dtype=np.float64)
    for kk in range(k):
        prod = (c[:, kk] * sg[:, kk // g]).astype(np.float16)
        out[:, kk] = np.clip(np.rint(prod.astype(np.float64)), -128, 127)
    return out.astype(np.int64)


@pytest.mark.parametrize("k,group_size", [(256, 128), (200, 128), (96, 128), (64, -1), (48, 16)])
def test_w4a8_matches_reference(k, group_size):
    g = _gen(3)
    n = 12
    codes = torch.randint(0, 16, (n, k), generator=g, dtype=torch.int64).to(torch.uint8)
    ng = 1 if group_size <= 0 or group_size >= k else -(-k // group_size)
    s_group = (torch.rand(n, ng, generator=g) * 16 + 1).to(torch.float16)  # lands on an int8 grid-ish
    s_ch = torch.rand(n, generator=g) * 1e-3 + 1e-4
    x = _rand_i8((2, 3, k), g)
    w8 = w4a8_int8_weight(codes, s_group, group_size)
    assert w8.dtype == torch.int8
    w8_ref = _w8_ref(codes, s_group, group_size)
    assert np.array_equal(w8.to(torch.int64).numpy(), w8_ref)
    y = w4a8_linear(x, 0.05, codes, s_group, s_ch, group_size=group_size)
    acc = _int_dot(x, torch.from_numpy(w8_ref))
    alpha = torch.tensor(0.05, dtype=torch.float32) * s_ch
    assert torch.equal(y, acc.to(torch.float32) * alpha)
    out_s = 0.02
    q = w4a8_linear(x, 0.05, codes, s_group, s_ch, group_size=group_size, out_scale=out_s)
    _assert_lsb(q, _q_ref(acc.double().numpy() * 0.05 * s_ch.double().numpy(), out_s))


def test_w4a8_int8_weight_ties_and_clamp():
    # (code - 8) * s_group: 1*0.5, 3*0.5, 5*0.5, -5*0.5 -> .5 1.5 2.5 -2.5 -> 0 2 2 -2
    codes = torch.tensor([[9, 11, 13, 3]], dtype=torch.uint8)
    s = torch.tensor([[0.5]], dtype=torch.float16)
    assert w4a8_int8_weight(codes, s, 128).flatten().tolist() == [0, 2, 2, -2]
    # 7 * 30 = 210 -> 127 ; -8 * 30 = -240 -> -128
    codes = torch.tensor([[15, 0]], dtype=torch.uint8)
    s = torch.tensor([[30.0]], dtype=torch.float16)
    assert w4a8_int8_weight(codes, s, 128).flatten().tolist() == [127, -128]
    # the product is rounded to fp16 first: 7 * 18.14 = 126.98.. in fp32 but fp16(18.14) * 7 -> 127.0
    sv = torch.tensor([[18.14]], dtype=torch.float16)
    codes = torch.tensor([[15]], dtype=torch.uint8)
    expect = float(np.rint(np.float16(np.float16(7) * np.float16(18.14))))
    assert w4a8_int8_weight(codes, sv, 128).item() == expect


def test_w4a8_saturates_int8_out():
    codes = torch.full((2, 8), 15, dtype=torch.uint8)
    s_group = torch.full((2, 1), 18.0, dtype=torch.float16)  # 7 * 18 = 126
    x = torch.full((1, 8), 127, dtype=torch.int8)
    s_ch = torch.tensor([1.0, -1.0])
    q = w4a8_linear(x, 1.0, codes, s_group, s_ch, group_size=128, out_scale=1.0)
    assert q.flatten().tolist() == [127, -128]


# --------------------------------------------------------------------------------------------- W4A16


@pytest.mark.parametrize("k,group_size", [(256, 128), (130, 128), (64, -1)])
def test_w4a16_matches_float64(k, group_size):
    g = _gen(4)
    n = 9
    codes = torch.randint(0, 16, (n, k), generator=g, dtype=torch.int64).to(torch.uint8)
    gs = k if group_size <= 0 else group_size
    ng = -(-k // gs)
    s_group = (torch.rand(n, ng, generator=g) * 0.1 + 0.01).to(torch.float16)
    x = torch.randn(3, 2, k, generator=g).to(torch.float16)
    bias = torch.randn(n, generator=g)
    y = w4a16_linear(x, codes, s_group, group_size=group_size, bias=bias)
    assert y.dtype == torch.float32 and y.shape == (3, 2, n)
    w_ref = np.empty((n, k))
    for kk in range(k):
        w_ref[:, kk] = (codes[:, kk].double().numpy() - 8) * s_group[:, kk // gs].double().numpy()
    y_ref = x.double().numpy() @ w_ref.T + bias.double().numpy()
    np.testing.assert_allclose(y.numpy(), y_ref, rtol=1e-5, atol=1e-5)


def test_linear_shape_errors():
    with pytest.raises(ValueError):
        w8a8_linear(torch.zeros(2, 4, dtype=torch.int8), 1.0, torch.zeros(3, 5, dtype=torch.int8), 1.0)
    with pytest.raises(TypeError):
        w8a8_linear(torch.zeros(2, 4), 1.0, torch.zeros(3, 4, dtype=torch.int8), 1.0)
    with pytest.raises(ValueError):  # wrong number of groups
        w4a16_linear(torch.zeros(1, 256), torch.zeros(2, 256, dtype=torch.uint8),
                     torch.ones(2, 3, dtype=torch.float16), 128)
