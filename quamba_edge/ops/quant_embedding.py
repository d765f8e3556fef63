"""QuantEmbedding: token lookup in a per-row (per-token) quantized table, W8 or W4.

Spec: shared/spec/quamba.md C.9 ("Embedding"), D.1 (``w8a16_embedding_lookup`` /
``w4a16_embedding_lookup``), pitfall F.14 (the row scale is the signed row max; that is the quantizer's
business, the lookup only dequantizes).
"""

# registry record: RECORD at the end of this module

from __future__ import annotations

import torch

from ._common import check_codes4, check_int8
from .registry import Attr, OpRecord, Port, emit, register


def quant_embedding(
    ids: torch.Tensor,
    table: torch.Tensor,
    row_scale: torch.Tensor,
    bits: int,
) -> torch.Tensor:
    """``out[b, l] = value(table[ids[b, l]]) * row_scale[ids[b, l]]``.

    Inputs
      ids        int32/int64 [B, L]: token ids in [0, V).
      table      bits=8: int8 [V, d] (value = q). bits=4: uint8 [V, d] unpacked codes 0..15, offset binary
                 (value = q - 8); nibble packing is the packing module's business.
      row_scale  fp16 or fp32 [V]: one scale per row.
      bits       8 or 4.
    Output
      fp32 [B, L, d] (the kernel, plugins/kernels/quant_embedding.cu, writes fp32, fp16 or bf16; for an id
      outside [0, V) it gives a row of zeros, where this op raises, or wraps a negative id).

    Arithmetic: ``float32(value) * float32(row_scale[id])``, one fp32 multiply. With fp16 row scales (the
    artifact's format) the product is exact in fp32 (an 8-bit integer times an 11-bit significand), so
    its fp16 rounding is unique and kernels match bit for bit.
    """
    if bits == 8:
        check_int8("table", table)
        offset = 0.0
    elif bits == 4:
        check_codes4("table", table)
        offset = 8.0
    else:
        raise ValueError(f"bits must be 4 or 8, got {bits}")
    if table.dim() != 2 or row_scale.shape != (table.shape[0],):
        raise ValueError(f"table must be [V, d] and row_scale [V]; got {tuple(table.shape)}, "
                         f"{tuple(row_scale.shape)}")
    ids = ids.to(torch.int64)
    rows = table[ids].to(torch.float32) - offset
    return rows * row_scale.to(torch.float32)[ids].unsqueeze(-1)


def quant_embedding_packed4(ids: torch.Tensor, packed: torch.Tensor, row_scale: torch.Tensor,
                            embedding_dim: int) -> torch.Tensor:
    """:func:`quant_embedding` (bits 4) on the stored packed table ``uint8 [V, ceil(d/2)]``: the rows of
    ``ids`` are gathered first and only they are unpacked (unpacking the whole table costs a full pass
    over it per call: ~10 ms a decode step for a 256000 x 4096 vocabulary on an H200). Same arithmetic."""
    from ..quant.packing import unpack_int4

    flat = ids.reshape(-1).to(torch.int64)
    rows = unpack_int4(packed[flat], embedding_dim)
    local = torch.arange(flat.numel(), device=flat.device).reshape(ids.shape)
    return quant_embedding(local, rows, row_scale[flat], 4)


def quant_embedding_stored(ids: torch.Tensor, table: torch.Tensor, row_scale: torch.Tensor, bits: int,
                           embedding_dim: int) -> torch.Tensor:
    """:func:`quant_embedding` on the table as stored (the node's input): int8 ``[V, d]`` for bits 8, packed
    ``uint8 [V, ceil(d/2)]`` for bits 4 (:func:`quant_embedding_packed4`)."""
    if bits == 4:
        return quant_embedding_packed4(ids, table, row_scale, embedding_dim)
    return quant_embedding(ids, table, row_scale, bits)


# ---- registry record ---------------------------------------------------------------------------


def _node(ids: torch.Tensor, table: torch.Tensor, row_scale: torch.Tensor, *, bits: int,
          embedding_dim: int, **_: object) -> tuple[torch.Tensor]:
    return (quant_embedding_stored(ids, table, row_scale, bits, embedding_dim),)


RECORD = register(OpRecord(
    name="QuantEmbedding",
    inputs=(Port("ids", "int64", "[B, L]"),
            Port("table", "W", "[V, d] int8 (bits 8) or [V, ceil(d/2)] uint8 packed int4 (bits 4)"),
            Port("row_scale", "float16", "[V]")),
    outputs=(Port("out", "T", "[B, L, d]"),),
    attrs=(Attr("bits", "int", None, "8 or 4"), Attr("embedding_dim", "int", None, "d")),
    type_vars={"W": ("int8", "uint8")},
    reason="Standard Gather cannot unpack int4 rows; one gather-and-dequantize kernel reads V/4..V/2 bytes "
           "per row instead of a dequantized fp16 table.",
    reference="quamba_edge.ops.quant_embedding",
    impl=_node,
    kernel="quant_embedding.cu",
))


def emit_quant_embedding(ids, table, row_scale, bits, embedding_dim):
    """Export form taking the stored table (int8, or *packed* int4 for bits 4)."""
    (out,) = emit("QuantEmbedding", [ids, table, row_scale], {"bits": int(bits), "embedding_dim": int(embedding_dim)},
                  shapes=[[*ids.shape, embedding_dim]], binding={"W": "int8" if bits == 8 else "uint8"})
    return out
