/* W4A16Linear (quamba_edge/ops/w4a16_linear.py): fp16 activations x int4 weights with fp16 group scales.
 *
 *   y[m, n] = sum_g s[n, g] * sum_{k in g} x[m, k] * (c[n, k] - 8)  [+ bias[n]]
 *
 * The inner sums run on fp16 tensor cores with fp32 accumulation. M <= 16 (the GEMV) with group_size % 128 == 0
 * (or >= K), and M > 16 (the tiled GEMM, linear_gemm.cuh) with group_size % 64 == 0 (or >= K): (c - 8) is exact
 * in fp16 and each group's partial sum is scaled in fp32, the reference's fp32 product up to the order of
 * additions; other multiples of 32: each weight is fp16((c - 8) * s) (one more fp16 rounding per weight).
 * y is compared with a float tolerance. qweight as in w4a8_linear.h; scale fp16 bits [N, ceil(K / group_size)].
 * Requirements (else cudaErrorInvalidValue): K % 32 == 0, K <= 65536, group_size % 32 == 0 or group_size >= K;
 * x fp16 [M, K] and qweight 16-byte aligned, row strides multiples of 16 bytes. y: QUAMBA_DT_F32 or _F16.
 *
 * quamba_w4a16_dequantize: the fp16 weight w[n, k] = fp16((c[n, k] - 8) * s[n, k / group_size]) (the fp32
 * product is exact; one round to nearest even), for a prefill that multiplies it with cuBLAS fp16 (the torch-cuda
 * backend does so from kernel_dispatch.W4A16_CUBLAS_MIN_M token rows up). Same qweight / scale requirements; out
 * fp16 bits [N, K], 16-byte aligned rows (out_row_stride % 8 == 0).
 */
#ifndef QUAMBA_KERNELS_W4A16_LINEAR_H
#define QUAMBA_KERNELS_W4A16_LINEAR_H

#include "quamba_kernels/abi.h"

#include "quamba_kernels/dtype_codes.h"

QUAMBA_EXTERN_C_BEGIN

typedef struct QuambaW4A16LinearParams {
  int64_t m;
  int n, k;
  const uint16_t* x;       int64_t x_row_stride;     /* fp16 bits, elements */
  const uint8_t* qweight;  int64_t w_row_stride;     /* bytes */
  const uint16_t* scale;   int64_t scale_row_stride; /* fp16 bits, elements */
  int group_size;
  const float* bias;       /* device fp32 [N] or NULL */
  int y_dtype;             /* QUAMBA_DT_F32 / _F16 */
  void* y;                 int64_t y_row_stride;
} QuambaW4A16LinearParams;

QUAMBA_API cudaError_t quamba_w4a16_linear(const QuambaW4A16LinearParams* p, cudaStream_t stream);

typedef struct QuambaW4A16DequantizeParams {
  int n, k;
  const uint8_t* qweight;  int64_t w_row_stride;     /* bytes */
  const uint16_t* scale;   int64_t scale_row_stride; /* fp16 bits, elements */
  int group_size;
  uint16_t* out;           int64_t out_row_stride;   /* fp16 bits, elements */
} QuambaW4A16DequantizeParams;

QUAMBA_API cudaError_t quamba_w4a16_dequantize(const QuambaW4A16DequantizeParams* p, cudaStream_t stream);

QUAMBA_EXTERN_C_END

#endif /* QUAMBA_KERNELS_W4A16_LINEAR_H */
