/* W8A8Linear (quamba_edge/ops/w8a8_linear.py): int8 activations x int8 weights, exact int32 accumulation,
 * fp32 epilogue.
 *
 *   acc[m, n] = sum_k x_q[m, k] * w_q[n, k]                        (exact int32)
 *   y = float(acc) * (x_scale * w_scale[n]) [+ bias[n]]             (separate fp32 operations)
 *   int8 output: clamp(round_half_even(y / out_scale[n]), -128, 127); else fp32 / fp16 y.
 *
 * x: int8 [M, K] (M = B * L token rows), elements contiguous, row stride free; w: int8 [N, K] (row n =
 * output feature n). Scales are fp32 DEVICE arrays (a TensorRT graph and the torch model hold them as
 * tensors): x_scale one value; w_scale / out_scale [N] read with a stride (1 = per row, 0 = one value).
 * 1 <= K <= 65536 (else cudaErrorInvalidValue). Fast path: K % 16 == 0 with x, w 16-byte aligned and row strides
 * multiples of 16 bytes; any other K or alignment runs a byte-wise variant (meant for small layers). y: [M, N],
 * row stride free, dtype QUAMBA_DT_I8 (needs out_scale), QUAMBA_DT_F32 or QUAMBA_DT_F16.
 *
 * M <= 16 (decode): the tensor-core GEMV (linear_common.cuh), weights read once per 16 token rows. M > 16
 * (prefill) on the fast path: the tiled tensor-core GEMM (linear_gemm.cuh, 128 x 128 or 64 x 64 output tiles);
 * the byte-wise variant stays on the GEMV for every M. Both are exact: int8 / fp32 outputs equal the reference
 * bit for bit, fp16 outputs are the reference rounded to fp16.
 */
#ifndef QUAMBA_KERNELS_W8A8_LINEAR_H
#define QUAMBA_KERNELS_W8A8_LINEAR_H

#include "quamba_kernels/abi.h"

#include "quamba_kernels/dtype_codes.h"

QUAMBA_EXTERN_C_BEGIN

typedef struct QuambaW8A8LinearParams {
  int64_t m;              /* token rows */
  int n, k;               /* out / in features */
  const int8_t* x;        int64_t x_row_stride; /* elements */
  const float* x_scale;   /* device, 1 value */
  const int8_t* w;        int64_t w_row_stride;
  const float* w_scale;   int w_scale_stride;   /* device [N] (1) or [1] (0) */
  const float* bias;      /* device fp32 [N] or NULL */
  const float* out_scale; int out_scale_stride; /* device; only for y_dtype == QUAMBA_DT_I8 */
  int y_dtype;            /* QUAMBA_DT_I8 / _F32 / _F16 */
  void* y;                int64_t y_row_stride; /* elements */
} QuambaW8A8LinearParams;

QUAMBA_API cudaError_t quamba_w8a8_linear(const QuambaW8A8LinearParams* p, cudaStream_t stream);

QUAMBA_EXTERN_C_END

#endif /* QUAMBA_KERNELS_W8A8_LINEAR_H */
