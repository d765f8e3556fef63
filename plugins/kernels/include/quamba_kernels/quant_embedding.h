/* QuantEmbedding (quamba_edge/ops/quant_embedding.py): token lookup in a per-row quantized table, W8 or
 * packed W4, dequantized on the fly.
 *
 * Contract = the docstring of quamba_edge.ops.quant_embedding.quant_embedding (bits 8) and
 * quant_embedding_packed4 (bits 4, the stored packed table):
 *   out[t, j] = float32(value(table[id_t], j)) * float32(row_scale[id_t])
 * value = q (int8, bits 8) or q - 8 (the int4 code of element j: byte j / 2 of the row, low nibble first for
 * even j; offset binary). With fp16 row scales the product is exact in fp32, so the fp16 output is the
 * unique rounding of the reference's value (bit for bit). An id outside [0, vocab) reads nothing and gives a
 * row of zeros (no out-of-bounds read; TensorRT's Gather leaves that case undefined, the reference raises).
 *
 * ids: [tokens] int32 or int64 (contiguous); table: bytes [vocab, row_bytes] with row stride table_row_stride
 * (bytes; row_bytes = d for bits 8, ceil(d / 2) for bits 4); row_scale: fp16 [vocab]; out: [tokens, d] of
 * out_dtype (row stride free, elements contiguous).
 */
#ifndef QUAMBA_KERNELS_QUANT_EMBEDDING_H
#define QUAMBA_KERNELS_QUANT_EMBEDDING_H

#include "quamba_kernels/abi.h"

#include "quamba_kernels/dtype_codes.h"

QUAMBA_EXTERN_C_BEGIN

typedef struct QuambaQuantEmbeddingParams {
  int64_t tokens;             /* B * L */
  int64_t vocab;
  int dim;                    /* d */
  int bits;                   /* 8 or 4 */
  const void* ids;
  int ids_int64;              /* 1: int64 ids, 0: int32 */
  const uint8_t* table;       /* int8 codes (bits 8) or packed int4 codes (bits 4) */
  int64_t table_row_stride;   /* bytes */
  const uint16_t* row_scale;  /* fp16 [vocab] */
  int out_dtype;              /* QUAMBA_DT_F32 / _F16 / _BF16 */
  void* out;
  int64_t out_row_stride;     /* elements */
} QuambaQuantEmbeddingParams;

QUAMBA_API cudaError_t quamba_quant_embedding(const QuambaQuantEmbeddingParams* p, cudaStream_t stream);

QUAMBA_EXTERN_C_END

#endif /* QUAMBA_KERNELS_QUANT_EMBEDDING_H */
