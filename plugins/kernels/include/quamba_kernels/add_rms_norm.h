/* AddRMSNorm: the FP model's fused residual add + RMSNorm (quamba_edge/models/lm.py Block / norm_f, mamba_ssm's
 * fused add_rms_norm semantics), float output; one row (token) per block. The float twin of quant_add_rms_norm.
 *
 * Contract = quamba_edge.ops.kernel_dispatch._float_add_rms_norm (and so lm.Block / RMSNorm / ssm.rms_norm),
 * in fp32:
 *   s = float(hidden) + float(residual)   (s = float(hidden) when residual is NULL)
 *   s = round(s, residual_out_dtype)       (the residual stream's dtype: the norm reads the stored stream)
 *   residual_out = s                       (not written when residual_out is NULL)
 *   rstd = rsqrtf(sum(s*s) / d + eps);  y = (s * rstd) * float(weight)   -> y_dtype (round to nearest even)
 * residual_out_dtype is fp32 for residual_in_fp32, else the promoted dtype of hidden and residual; it applies
 * (the rounding of s) also when residual_out is NULL.
 *
 * Tensors are [rows, d] with a free row stride and contiguous elements; weight [d] contiguous; d <= 16384.
 * Float dtypes: QUAMBA_DT_F32 / F16 / BF16 each (weight too). Aliasing an output with an input of the same
 * dtype and layout is allowed (each element is read before it is written, by the same thread).
 */
#ifndef QUAMBA_KERNELS_ADD_RMS_NORM_H
#define QUAMBA_KERNELS_ADD_RMS_NORM_H

#include "quamba_kernels/abi.h"

#include "quamba_kernels/dtype_codes.h"

QUAMBA_EXTERN_C_BEGIN

typedef struct QuambaAddRMSNormParams {
  int64_t rows;
  int dim;
  int hidden_dtype;         /* QUAMBA_DT_* */
  const void* hidden;
  int64_t hidden_row_stride;
  int residual_dtype;       /* QUAMBA_DT_* (ignored when residual is NULL) */
  const void* residual;     /* or NULL (first block) */
  int64_t residual_row_stride;
  int weight_dtype;         /* QUAMBA_DT_* */
  const void* weight;       /* device [d] */
  float eps;
  int y_dtype;              /* QUAMBA_DT_* */
  void* y;                  /* [rows, d] */
  int64_t y_row_stride;
  int residual_out_dtype;   /* QUAMBA_DT_*: the residual stream's dtype (s is rounded to it) */
  void* residual_out;       /* [rows, d], or NULL (norm_f: the stream is not needed) */
  int64_t residual_out_row_stride;
} QuambaAddRMSNormParams;

QUAMBA_API cudaError_t quamba_add_rms_norm(const QuambaAddRMSNormParams* p, cudaStream_t stream);

QUAMBA_EXTERN_C_END

#endif /* QUAMBA_KERNELS_ADD_RMS_NORM_H */
