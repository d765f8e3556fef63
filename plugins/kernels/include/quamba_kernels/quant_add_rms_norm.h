/* QuantAddRMSNorm (quamba_edge/ops/quant_add_rms_norm.py): fused residual add + RMSNorm (+ static int8
 * quantization), one row (token) per block.
 *
 * Contract = the docstring of quamba_edge.ops.quant_add_rms_norm.quant_add_rms_norm, in fp32:
 *   s = float(hidden) + float(residual)   (s = float(hidden) when residual is NULL);  residual_out = s
 *   rstd = rsqrtf(sum(s*s) / d + eps);  y = (s * rstd) * weight   (no multiply when weight is NULL)
 *   int8 y: clamp(round_half_even(y / out_scale), -128, 127);  float y: written as fp16.
 * residual_out is written in residual_out_dtype (fp32 for residual_in_fp32, else hidden's dtype); the
 * norm always uses the fp32 s.
 *
 * Tensors are [rows, d] with a free row stride and contiguous elements; d <= 16384.
 */
#ifndef QUAMBA_KERNELS_QUANT_ADD_RMS_NORM_H
#define QUAMBA_KERNELS_QUANT_ADD_RMS_NORM_H

#include "quamba_kernels/abi.h"

#include "quamba_kernels/dtype_codes.h"

QUAMBA_EXTERN_C_BEGIN

typedef struct QuambaQuantAddRMSNormParams {
  int64_t rows;
  int dim;
  int hidden_dtype;         /* QUAMBA_DT_* */
  const void* hidden;
  int64_t hidden_row_stride;
  int residual_dtype;       /* QUAMBA_DT_* (ignored when residual is NULL) */
  const void* residual;     /* or NULL (first block) */
  int64_t residual_row_stride;
  const float* weight;      /* device fp32 [d], or NULL (unit weight) */
  float eps;
  int out_int8;             /* 1: y int8 with out_scale; 0: y fp16 */
  float out_scale;          /* host */
  void* y;                  /* int8 or fp16 [rows, d] */
  int64_t y_row_stride;
  int residual_out_dtype;   /* QUAMBA_DT_* */
  void* residual_out;       /* [rows, d] */
  int64_t residual_out_row_stride;
} QuambaQuantAddRMSNormParams;

QUAMBA_API cudaError_t quamba_quant_add_rms_norm(const QuambaQuantAddRMSNormParams* p, cudaStream_t stream);

QUAMBA_EXTERN_C_END

#endif /* QUAMBA_KERNELS_QUANT_ADD_RMS_NORM_H */
