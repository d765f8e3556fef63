/* quant_selective_scan: Mamba1 prefill selective scan, int8 inputs, int8 or fp32 SSM state, fp16 y.
 * Contract: quamba_edge/ops/quant_selective_scan.py (same inputs, same arithmetic; y written as fp16).
 *
 *   delta = softplus20(dt_q * dt_scale + dt_bias_q * dt_bias_scale);  A = -exp(A_log_q * A_log_scale)
 *   h_t = exp(delta_t * A) * h_{t-1} + (delta_t * u_t) * B_t          (fp32, state never requantized inside)
 *   y_t = (sum_n h_t[n] C_t[n] + D u_t) * silu(z_t)                     (gate only when z_q != NULL)
 *   state_out = clamp(rint(h_L / state_scale), -128, 127) (int8) or h_L (fp32 when state_is_int8 == 0)
 *
 * Strides are in elements. state_in / state_out are contiguous [B, E, N] (may be the same buffer: each
 * element is read before it is written, by the same thread). d_state N <= 256.
 */
#ifndef QUAMBA_KERNELS_QUANT_SELECTIVE_SCAN_H
#define QUAMBA_KERNELS_QUANT_SELECTIVE_SCAN_H

#include "quamba_kernels/abi.h"

QUAMBA_EXTERN_C_BEGIN

typedef struct QuambaSelectiveScanParams {
  int batch, seqlen, dim, dstate; /* B, L, E, N */

  const int8_t* u;  /* [B, L, E] */
  int64_t u_stride_b, u_stride_l;  /* element stride over e must be 1 */
  const int8_t* dt; /* [B, L, E], dt_proj output without bias */
  int64_t dt_stride_b, dt_stride_l;
  const int8_t* A_log; /* [E, N] contiguous */
  const int8_t* Bm;    /* [B, L, N], stride over n must be 1 */
  int64_t B_stride_b, B_stride_l;
  const int8_t* Cm;    /* [B, L, N] */
  int64_t C_stride_b, C_stride_l;
  const int8_t* D;       /* [E] or NULL */
  const int8_t* z;       /* [B, L, E] or NULL */
  int64_t z_stride_b, z_stride_l;
  const int8_t* dt_bias; /* [E] or NULL */

  float u_scale, dt_scale, A_log_scale, B_scale, C_scale, D_scale, z_scale, dt_bias_scale;

  int state_is_int8;     /* 1: int8 state with state_scale; 0: fp32 state */
  float state_scale;
  const void* state_in;  /* [B, E, N] int8 or fp32, or NULL (zeros) */
  void* state_out;       /* [B, E, N] int8 or fp32 */

  uint16_t* y;           /* [B, L, E] fp16 */
  int64_t y_stride_b, y_stride_l;
} QuambaSelectiveScanParams;

QUAMBA_API cudaError_t quamba_quant_selective_scan(const QuambaSelectiveScanParams* p, cudaStream_t stream);

QUAMBA_EXTERN_C_END

#endif
