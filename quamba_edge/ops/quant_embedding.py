"""QuantEmbedding: token lookup in a per-row (per-token) quantized table, W8 or W4.

Spec: shared/spec/quamba.md C.9 ("Embedding"), D.1 (``w8a16_embedding_lookup`` /
``w4a16_embedding_lookup``), pitfall F.14 (the row scale is the signed row max; that is the quantizer's
business, the lookup only dequantizes).
"""

# registry record: added with the export issue

from __future__ import annotations

import torch

from ._common import check_codes4, check_int8


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
      fp32 [B, L, d] (the kernel writes fp16).

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
