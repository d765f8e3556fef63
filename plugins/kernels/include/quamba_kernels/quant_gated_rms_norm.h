/* QuantGatedRMSNorm (quamba_edge/ops/quant_gated_rms_norm.py): Mamba2's gated, group-wise RMSNorm with an
 * int8 gate z and an fp16 output; one (row, group) per block.
 *
 * Contract = the docstring of quamba_edge.ops.quant_gated_rms_norm.quant_gated_rms_norm, in fp32:
 *   z = float(z_q) * z_scale;  g = z / (1 + exp(-z))
 *   v = float(y) * g   (norm_before_gate = 0)   or   v = float(y)   (norm_before_gate = 1)
 *   per group of group_size consecutive channels: rstd = rsqrtf(sum(v*v) / group_size + eps)
 *   out = (v * rstd) * weight   (times g when norm_before_gate)     -> fp16
 *
 * Tensors are [rows, E] with a free row stride and contiguous elements; group_size divides E and is
 * <= 16384.
 */
#ifndef QUAMBA_KERNELS_QUANT_GATED_RMS_NORM_H
#define QUAMBA_KERNELS_QUANT_GATED_RMS_NORM_H

#include "quamba_kernels/abi.h"

#include "quamba_kernels/dtype_codes.h"

QUAMBA_EXTERN_C_BEGIN

typedef struct QuambaQuantGatedRMSNormParams {
  int64_t rows;
  int dim;                  /* E */
  int group_size;           /* E / G */
  int y_dtype;              /* QUAMBA_DT_* */
  const void* y;
  int64_t y_row_stride;
  const int8_t* z;          /* int8 [rows, E] */
  int64_t z_row_stride;
  float z_scale;            /* host */
  const float* weight;      /* device fp32 [E] */
  float eps;
  int norm_before_gate;
  uint16_t* out;            /* fp16 [rows, E] */
  int64_t out_row_stride;
} QuambaQuantGatedRMSNormParams;

QUAMBA_API cudaError_t quamba_quant_gated_rms_norm(const QuambaQuantGatedRMSNormParams* p, cudaStream_t stream);

QUAMBA_EXTERN_C_END

#endif /* QUAMBA_KERNELS_QUANT_GATED_RMS_NORM_H */
