/* quant_selective_state_update: one decode token of the Mamba1 scan, int8 (or fp32) state in place.
 * Contract: quamba_edge/ops/quant_selective_state_update.py (y written as fp16).
 *
 *   delta = softplus20(dt_q * dt_scale + dt_bias_q * dt_bias_scale);  A = -exp(A_log_q * A_log_scale)
 *   h = h_prev * exp(delta * A) + (delta * u) * B;   y = (sum_n h C + D u) * silu(z)
 *   new_state = clamp(rint(h / state_scale), -128, 127) (int8) or h (fp32 when state_is_int8 == 0)
 *
 * state / new_state: contiguous [B, E, N]; may be the same buffer (in-place update).
 */
#ifndef QUAMBA_KERNELS_QUANT_SELECTIVE_STATE_UPDATE_H
#define QUAMBA_KERNELS_QUANT_SELECTIVE_STATE_UPDATE_H

#include "quamba_kernels/abi.h"

QUAMBA_EXTERN_C_BEGIN

typedef struct QuambaSelectiveStateUpdateParams {
  int batch, dim, dstate; /* B, E, N */

  const int8_t* u;  int64_t u_stride_b;   /* [B, E] */
  const int8_t* dt; int64_t dt_stride_b;  /* [B, E] */
  const int8_t* A_log;                    /* [E, N] contiguous */
  const int8_t* Bm; int64_t B_stride_b;   /* [B, N] */
  const int8_t* Cm; int64_t C_stride_b;   /* [B, N] */
  const int8_t* D;                        /* [E] or NULL */
  const int8_t* z;  int64_t z_stride_b;   /* [B, E] or NULL */
  const int8_t* dt_bias;                  /* [E] or NULL */

  float u_scale, dt_scale, A_log_scale, B_scale, C_scale, D_scale, z_scale, dt_bias_scale;

  int state_is_int8;
  float state_scale;
  const void* state;  /* [B, E, N] int8 or fp32 */
  void* new_state;    /* [B, E, N] int8 or fp32 (may equal state) */

  uint16_t* y; int64_t y_stride_b;        /* [B, E] fp16 */
} QuambaSelectiveStateUpdateParams;

QUAMBA_API cudaError_t quamba_quant_selective_state_update(const QuambaSelectiveStateUpdateParams* p,
                                                           cudaStream_t stream);

QUAMBA_EXTERN_C_END

#endif
