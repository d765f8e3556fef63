"""QuantHadamard / hadamard and QuantEmbedding reference ops."""

import numpy as np
import pytest
import torch

from quamba_edge.ops import hadamard, quant_embedding, quant_hadamard


def _sylvester(n):
    h = np.array([[1.0]])
    while h.shape[0] < n:
        h = np.block([[h, h], [h, -h]])
    return h / np.sqrt(n)


def _rand_orthogonal(n, seed):
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((n, n)))
    return q


@pytest.mark.parametrize("n,kind", [(16, "hadamard"), (12, "orthogonal")])
def test_quant_hadamard_matches_float64(n, kind):
    m = _sylvester(n) if kind == "hadamard" else _rand_orthogonal(n, 0)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 7, n, generator=g).to(torch.float16)
    mt = torch.tensor(m, dtype=torch.float32)
    scale = 0.02
    q = quant_hadamard(x, mt, scale)
    assert q.dtype == torch.int8 and q.shape == x.shape
    y64 = x.double().numpy() @ mt.double().numpy().T
    ref = np.clip(np.rint(y64 / scale), -128, 127)
    diff = np.abs(q.to(torch.int64).numpy() - ref)
    assert diff.max() <= 1 and (diff == 0).mean() > 0.97
    y = hadamard(x, mt)
    assert y.dtype == torch.float32
    np.testing.assert_allclose(y.numpy(), y64, rtol=1e-5, atol=1e-5)
    # orthonormal: the float transform is invertible with M^T
    np.testing.assert_allclose((y.double().numpy() @ mt.double().numpy()), x.double().numpy(), atol=1e-4)


def test_quant_hadamard_clamps_and_ties():
    n = 8
    mt = torch.tensor(_sylvester(n), dtype=torch.float32)
    x = torch.zeros(2, n)
    x[0, 0] = 1e4   # every output +1e4/sqrt(8) -> saturates at 127
    x[1, 0] = -1e4  # -> -128, not a wrapped value
    q = quant_hadamard(x, mt, 0.01)
    assert q[0].tolist() == [127] * n and q[1].tolist() == [-128] * n
    eye = torch.eye(4)
    q = quant_hadamard(torch.tensor([[0.5, 1.5, 2.5, -2.5]]), eye, 1.0)
    assert q.flatten().tolist() == [0, 2, 2, -2]


def test_hadamard_shape_check():
    with pytest.raises(ValueError):
        hadamard(torch.zeros(1, 8), torch.eye(4))


@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("scale_dtype", [torch.float16, torch.float32])
def test_quant_embedding(bits, scale_dtype):
    g = torch.Generator().manual_seed(1)
    v, d = 11, 6
    if bits == 8:
        table = torch.randint(-128, 128, (v, d), generator=g).to(torch.int8)
    else:
        table = torch.randint(0, 16, (v, d), generator=g).to(torch.uint8)
    row_scale = (torch.rand(v, generator=g) * 0.1 + 0.001).to(scale_dtype)
    ids = torch.tensor([[0, 3, 10], [5, 5, 1]])
    out = quant_embedding(ids, table, row_scale, bits)
    assert out.shape == (2, 3, d) and out.dtype == torch.float32
    for b in range(2):
        for t in range(3):
            i = int(ids[b, t])
            for j in range(d):
                val = int(table[i, j]) - (8 if bits == 4 else 0)
                expect = np.float32(val) * np.float32(float(row_scale[i]))
                assert out[b, t, j].item() == expect
    if scale_dtype != torch.float16:
        return
    # with fp16 row scales the fp32 value is exact, hence its fp16 rounding is unique
    exact = (table[ids].double() - (8 if bits == 4 else 0)) * row_scale.double()[ids].unsqueeze(-1)
    assert torch.equal(out.double(), exact)


@pytest.mark.parametrize("d", [6, 7])
def test_quant_embedding_packed4_equals_full_table(d):
    """Gathering the packed rows first (QuantEmbedding W4, the ONNX node) gives exactly the op on the whole
    unpacked table."""
    from quamba_edge.ops.quant_embedding import quant_embedding_packed4
    from quamba_edge.quant.packing import pack_int4, unpack_int4

    g = torch.Generator().manual_seed(2)
    codes = torch.randint(0, 16, (13, d), generator=g).to(torch.uint8)
    packed = pack_int4(codes, pad_code=8)
    assert torch.equal(unpack_int4(packed, d), codes)
    row_scale = (torch.rand(13, generator=g) * 0.1 + 0.001).to(torch.float16)
    ids = torch.tensor([[0, 12, 5, 5], [3, 1, 12, 0]])
    want = quant_embedding(ids, codes, row_scale, 4)
    assert torch.equal(quant_embedding_packed4(ids, packed, row_scale, d), want)


def test_quant_embedding_errors():
    with pytest.raises(ValueError):
        quant_embedding(torch.zeros(1, 1, dtype=torch.long), torch.zeros(2, 2, dtype=torch.int8),
                        torch.ones(2), 6)
    with pytest.raises(TypeError):  # W4 table must be uint8 codes
        quant_embedding(torch.zeros(1, 1, dtype=torch.long), torch.zeros(2, 2, dtype=torch.int8),
                        torch.ones(2), 4)
