/* GatedRMSNorm: Mamba2's gated, group-wise RMSNorm on float tensors (quamba_edge.models.ssm.gated_rms_norm,
 * mamba_ssm RMSNormGated); one (row, group) per block. The float twin of quant_gated_rms_norm.
 *
 * Contract = ssm.gated_rms_norm, in fp32:
 *   g = z / (1 + exp(-z))   with z = float(z)   (no gate when z is NULL)
 *   v = float(x) * g   (norm_before_gate = 0)   or   v = float(x)   (norm_before_gate = 1, or no z)
 *   per group of group_size consecutive channels: rstd = rsqrtf(sum(v*v) / group_size + eps)
 *   out = (v * rstd) * float(weight)   (times g when norm_before_gate and z)   -> out_dtype
 *
 * Tensors are [rows, E] with a free row stride and contiguous elements; weight [E] contiguous; group_size
 * divides E and is <= 16384; rows * (E / group_size) < 2^31. Float dtypes: QUAMBA_DT_F32 / F16 / BF16 each.
 */
#ifndef QUAMBA_KERNELS_GATED_RMS_NORM_H
#define QUAMBA_KERNELS_GATED_RMS_NORM_H

#include "quamba_kernels/abi.h"

#include "quamba_kernels/dtype_codes.h"

QUAMBA_EXTERN_C_BEGIN

typedef struct QuambaGatedRMSNormParams {
  int64_t rows;
  int dim;                  /* E */
  int group_size;           /* E / G */
  int x_dtype;              /* QUAMBA_DT_* */
  const void* x;
  int64_t x_row_stride;
  int z_dtype;              /* QUAMBA_DT_* (ignored when z is NULL) */
  const void* z;            /* [rows, E], or NULL (no gate) */
  int64_t z_row_stride;
  int weight_dtype;         /* QUAMBA_DT_* */
  const void* weight;       /* device [E] */
  float eps;
  int norm_before_gate;
  int out_dtype;            /* QUAMBA_DT_* */
  void* out;                /* [rows, E] */
  int64_t out_row_stride;
} QuambaGatedRMSNormParams;

QUAMBA_API cudaError_t quamba_gated_rms_norm(const QuambaGatedRMSNormParams* p, cudaStream_t stream);

QUAMBA_EXTERN_C_END

#endif /* QUAMBA_KERNELS_GATED_RMS_NORM_H */
