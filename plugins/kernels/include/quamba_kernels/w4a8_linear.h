/* W4A8Linear (quamba_edge/ops/w4a8_linear.py): int8 activations x int4 weights with the two-level
 * Marlin-QQQ scales, on int8 tensor cores.
 *
 *   w8[n, k] = clamp(round_half_even(fp16(fp16(c[n, k] - 8) * s_group[n, k / group_size])), -128, 127)
 *   acc[m, n] = sum_k x_q[m, k] * w8[n, k]                              (exact int32)
 *   y = float(acc) * (x_scale * s_channel[n]) [+ bias[n]]; int8 output: clamp(rint(y / out_scale[n]))
 *
 * qweight: uint8 [N, K / 2], two offset-binary codes per byte, low nibble first (quamba_edge.quant.packing).
 * s_group: fp16 bits [N, ceil(K / group_size)] (row stride free); s_channel fp32 [N]; x_scale, out_scale and
 * bias as in w8a8_linear.h (device arrays). Requirements (else cudaErrorInvalidValue): K % 32 == 0,
 * K <= 65536, group_size % 32 == 0 or group_size >= K (one group per row); x and qweight 16-byte aligned
 * with row strides multiples of 16 bytes. y as in w8a8_linear.h. Exact: int8 / fp32 outputs equal the
 * reference bit for bit. M <= 16: the tensor-core GEMV; M > 16: the tiled tensor-core GEMM (linear_gemm.cuh),
 * the same int4 -> int8 step per (row, group) and int32 sums.
 */
#ifndef QUAMBA_KERNELS_W4A8_LINEAR_H
#define QUAMBA_KERNELS_W4A8_LINEAR_H

#include "quamba_kernels/abi.h"

#include "quamba_kernels/dtype_codes.h"

QUAMBA_EXTERN_C_BEGIN

typedef struct QuambaW4A8LinearParams {
  int64_t m;
  int n, k;
  const int8_t* x;          int64_t x_row_stride;       /* elements */
  const float* x_scale;     /* device, 1 value */
  const uint8_t* qweight;   int64_t w_row_stride;       /* bytes (>= K / 2) */
  const uint16_t* s_group;  int64_t s_group_row_stride; /* fp16 bits, elements */
  int group_size;           /* effective group size along K (>= K: one group per row) */
  const float* s_channel;   /* device fp32 [N] */
  const float* bias;        /* device fp32 [N] or NULL */
  const float* out_scale;   int out_scale_stride;       /* device; only for QUAMBA_DT_I8 */
  int y_dtype;
  void* y;                  int64_t y_row_stride;
} QuambaW4A8LinearParams;

QUAMBA_API cudaError_t quamba_w4a8_linear(const QuambaW4A8LinearParams* p, cudaStream_t stream);

QUAMBA_EXTERN_C_END

#endif /* QUAMBA_KERNELS_W4A8_LINEAR_H */
