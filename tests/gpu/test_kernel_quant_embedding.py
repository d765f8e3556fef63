"""CUDA quant_embedding against the reference op (quamba_edge/ops/quant_embedding.py) on the GPU.

With fp16 row scales the product value * scale is exact in fp32, so the kernel's output must equal the
reference's fp32 result rounded to the output dtype bit for bit (compared as integers: -0.0 included). An id
outside [0, V) gives a row of zeros (+0.0). Bits 4: the stored packed table (low nibble first, offset
binary; for odd d the pad nibble of the last byte is random here and must be ignored).
"""

import copy

import pytest
import torch
from gpu_helpers import POISON, assert_calls_raise, run_poisoned

from quamba_edge.ops import kernel_dispatch as kd
from quamba_edge.ops.quant_embedding import quant_embedding as ref_w8
from quamba_edge.ops.quant_embedding import quant_embedding_packed4 as ref_packed4

pytestmark = pytest.mark.gpu

_BITS_VIEW = {torch.float32: torch.int32, torch.float16: torch.int16, torch.bfloat16: torch.int16}


def _gen(*key) -> torch.Generator:
    return torch.Generator(device="cuda").manual_seed(hash(tuple(map(str, key))) % 2**31)


def _table(bits: int, v: int, d: int, g: torch.Generator, pad: int = 0, offset: int = 0):
    """(table, row_scale): random codes (bits 4: random packed bytes) with ``pad`` extra bytes a row and the
    rows starting ``offset`` bytes into them (a slice of a wider table: row stride > row, unaligned rows);
    signed fp16 scales (the quantizer's signed row max), a few of them subnormal."""
    rb = d if bits == 8 else (d + 1) // 2
    wide = torch.randint(0, 256, (v, rb + pad + offset), device="cuda", generator=g, dtype=torch.uint8)
    table = wide[:, offset:offset + rb]
    if bits == 8:
        table = table.view(torch.int8)
    scale = torch.randn(v, device="cuda", generator=g) * 0.02
    scale[::17] = 3e-6  # fp16 subnormals
    return table, scale.to(torch.float16)


def _reference(ids: torch.Tensor, table: torch.Tensor, row_scale: torch.Tensor, bits: int, d: int,
               dtype: torch.dtype) -> torch.Tensor:
    """The reference op on the valid ids, zero rows for the others, rounded to ``dtype``."""
    valid = (ids >= 0) & (ids < table.shape[0])
    safe = torch.where(valid, ids, 0)
    ref = ref_w8(safe, table, row_scale, 8) if bits == 8 else ref_packed4(safe, table, row_scale, d)
    assert ref.dtype == torch.float32
    return torch.where(valid[..., None], ref, 0.0).to(dtype)


def _assert_bits_equal(out: torch.Tensor, ref: torch.Tensor, what: str = "") -> None:
    assert out.dtype == ref.dtype and out.shape == ref.shape, (what, out.dtype, ref.dtype, out.shape, ref.shape)
    a, b = out.view(_BITS_VIEW[out.dtype]), ref.view(_BITS_VIEW[ref.dtype])
    assert torch.equal(a, b), f"{what}: {int((a != b).sum())} of {a.numel()} elements differ"


def _check(kernels, ids, table, row_scale, bits, d, dtype, what=""):
    (out,) = run_poisoned(lambda o: kernels.quant_embedding(ids, table, row_scale, bits, o),
                          [((*ids.shape, d), dtype)])
    _assert_bits_equal(out, _reference(ids, table, row_scale, bits, d, dtype), what)
    return out


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("ids_dtype", [torch.int32, torch.int64])
@pytest.mark.parametrize("d", [1, 7, 64, 2560, 4097])
@pytest.mark.parametrize("bits", [8, 4])
def test_quant_embedding_matches_reference(kernels, bits, d, ids_dtype, dtype):
    g = _gen("emb", bits, d, ids_dtype, dtype)
    v = 1000
    table, scale = _table(bits, v, d, g)
    for shape in [(1, 1), (2, 9), (3, 130)]:  # decode, short and longer batches [B, L]
        ids = torch.randint(0, v, shape, device="cuda", generator=g, dtype=ids_dtype)
        _check(kernels, ids, table, scale, bits, d, dtype, f"bits={bits} d={d} ids={shape}")


@pytest.mark.parametrize("ids_dtype", [torch.int32, torch.int64])
@pytest.mark.parametrize("bits", [8, 4])
def test_out_of_range_ids_give_zero_rows(kernels, bits, ids_dtype):
    g = _gen("oob", bits, ids_dtype)
    v, d = 50, 67
    table, scale = _table(bits, v, d, g)
    big = [2**31 - 1, -(2**31)] if ids_dtype == torch.int32 else [2**40, -(2**40), 2**63 - 1]
    bad = [-1, -v, -v - 3, v, v + 100, *big]
    ids = torch.randint(0, v, (2, len(bad) + 4), device="cuda", generator=g, dtype=ids_dtype)
    ids[0, : len(bad)] = torch.tensor(bad, dtype=ids_dtype)
    ids[1, 2:2 + len(bad)] = torch.tensor(bad[::-1], dtype=ids_dtype)
    out = _check(kernels, ids, table, scale, bits, d, torch.float16)
    invalid = (ids < 0) | (ids >= v)
    assert int(invalid.sum()) == 2 * len(bad)
    assert torch.equal(out[invalid].view(torch.int16), torch.zeros(2 * len(bad), d, dtype=torch.int16, device="cuda"))


@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("d", [7, 64, 4097])
def test_strided_table_and_out_rows(kernels, bits, d):
    """Table rows a slice of wider ones (row stride > row bytes; offsets 0..3: unaligned rows take the byte
    path), out rows with a row stride > d: the kernel writes exactly the d elements of each row."""
    g = _gen("strided", bits, d)
    v, t = 300, 23
    ids = torch.randint(0, v, (t,), device="cuda", generator=g)
    for pad, offset in [(5, 0), (4, 1), (13, 3), (64, 2)]:
        table, scale = _table(bits, v, d, g, pad=pad, offset=offset)
        assert table.stride(0) > table.shape[1]
        for dtype in (torch.float16, torch.float32):
            want = _reference(ids, table, scale, bits, d, dtype)
            runs = []
            for which in (0, 1):
                buf = torch.full((t, d + 9), POISON[dtype][which], dtype=dtype, device="cuda")
                kernels.quant_embedding(ids, table, scale, bits, buf[:, 4:4 + d])
                torch.cuda.synchronize()
                runs.append(buf)
                _assert_bits_equal(buf[:, 4:4 + d], want, f"pad={pad} offset={offset} {dtype}")
                rest = torch.cat([buf[:, :4], buf[:, 4 + d:]], 1)
                fill = torch.full_like(rest, POISON[dtype][which])
                assert torch.equal(rest.view(_BITS_VIEW[dtype]), fill.view(_BITS_VIEW[dtype])), "wrote past the row"


def test_one_row_table_and_no_tokens(kernels):
    g = _gen("edge")
    table, scale = _table(4, 1, 9, g)
    ids = torch.tensor([[0, 1, -1, 0]], device="cuda")
    _check(kernels, ids, table, scale, 4, 9, torch.float32)
    out = torch.empty(0, 3, 9, device="cuda")
    kernels.quant_embedding(torch.empty(0, 3, dtype=torch.long, device="cuda"), table, scale, 4, out)
    torch.cuda.synchronize()


@pytest.mark.parametrize("bits", [8, 4])
def test_dispatch_runs_the_kernel(kernels, bits):
    """QuantEmbedding on CUDA inside use_kernels: the kernel ran (counted, no fallback), fp32 output equal to
    the reference path bit for bit; fp32 row scales fall back (counted)."""
    from kernel_dispatch_helpers import tiny_quantized  # tests/ (on sys.path through tests/conftest.py)

    recipe_bits = "w8a8" if bits == 8 else "w4a16"
    emb = copy.deepcopy(tiny_quantized("quamba2", recipe_bits, "mamba2").embedding).cuda()
    assert emb.bits == bits and emb.row_scale.dtype == torch.float16
    ids = torch.randint(0, emb.num_embeddings, (2, 37), device="cuda", generator=_gen("dispatch", bits))
    kd.counts.clear()
    with torch.inference_mode():
        ref = emb(ids)
        assert not kd.counts
        with kd.use_kernels(kernels):
            got = emb(ids)
            step = emb(ids[:, -1])  # a decode step's ids [B]
            assert dict(kd.counts) == {"quant_embedding": 2}, dict(kd.counts)
            kd.quant_embedding(ids, emb.weight, emb.row_scale.float(), bits, emb.embedding_dim)
            assert kd.counts["quant_embedding:reference"] == 1
    assert got.dtype == step.dtype == torch.float32 and got.shape == (2, 37, emb.embedding_dim)
    _assert_bits_equal(got, ref)
    _assert_bits_equal(step, ref[:, -1])
    kd.counts.clear()


_BAD_ARGS = """
ids = torch.zeros(2, 3, dtype=torch.long, device=dev)
t8 = torch.zeros(10, 16, dtype=torch.int8, device=dev)
t4 = torch.zeros(10, 8, dtype=torch.uint8, device=dev)
s = torch.ones(10, dtype=torch.float16, device=dev)
out = torch.empty(2, 3, 16, device=dev)
bad = [
    (ids.float(), t8, s, 8, out),                                                     # float ids
    (ids, t8, s, 5, out),                                                             # bits 5
    (ids, t8.view(torch.uint8), s, 8, out),                                           # bits 8 table uint8
    (ids, t4.view(torch.int8), s, 4, out),                                            # bits 4 table int8
    (ids, t8[:, :15], s, 8, out),                                                     # table width != d
    (ids, t4, s, 4, torch.empty(2, 3, 18, device=dev)),                               # ceil(18/2) != 8
    (ids, t8, s.float(), 8, out),                                                     # fp32 row_scale
    (ids, t8, s[:9], 8, out),                                                         # row_scale not [V]
    (ids, t8, s, 8, torch.empty(2, 4, 16, device=dev)),                               # out shape
    (ids, t8, s, 8, torch.empty(2, 3, 16, dtype=torch.int8, device=dev)),             # int8 out
    (ids, t8, s, 8, torch.empty(2, 3, 20, device=dev)[..., :16]),                     # 3-D strided out
    (ids, t8.t().contiguous().t(), s, 8, out),                                        # column-major table
    (ids.cpu(), t8, s, 8, out),                                                       # ids on the CPU
    (ids, torch.zeros(0, 16, dtype=torch.int8, device=dev), s[:0], 8, out),           # empty table
]
"""


def test_bad_arguments_raise(kernels):
    assert_calls_raise("quant_embedding", _BAD_ARGS)


def test_sanitize_quant_embedding(kernels):
    """Small calls under compute-sanitizer: bits 8 / 4, odd d (a pad nibble), ids outside [0, V), a strided
    and unaligned table (byte path), strided out rows."""
    g = _gen("sanitize")
    v = 40
    for bits, d, pad, offset in [(8, 7, 0, 0), (4, 7, 0, 0), (4, 1, 3, 1), (8, 1029, 2, 3), (4, 4097, 0, 0)]:
        table, scale = _table(bits, v, d, g, pad=pad, offset=offset)
        ids = torch.randint(-3, v + 3, (3, 5), device="cuda", generator=g)
        _check(kernels, ids, table, scale, bits, d, torch.float16)
        buf = torch.zeros(15, d + 3, device="cuda")
        kernels.quant_embedding(ids.reshape(-1).int(), table, scale, bits, buf[:, 1:1 + d])
        torch.cuda.synchronize()
        _assert_bits_equal(buf[:, 1:1 + d], _reference(ids.reshape(-1), table, scale, bits, d, torch.float32))
