/* QuantSSDStateUpdate (quamba_edge/ops/quant_ssd_state_update.py): one decode token of the Mamba2
 * recurrence, int8 SSM state requantized with its static per-(h, p, n) scales.
 *
 * Contract = the docstring of quamba_edge.ops.quant_ssd_state_update: step 1 of quant_ssd, then
 * S = S_prev * exp(delta A) + (delta x) (outer) B;  y = S . C + D x  (from the fp32 S, before the
 * requantization);  new_state = clamp(round_half_even(S / state_scale), -128, 127). y is written as fp16.
 *
 * Layouts (element strides, int64): x [B, H, P] (head stride P), dt [B, H], B, C [B, G, N] (group stride
 * N), y [B, H, P] (head stride P); states [B, H, P, N] contiguous; state_out may equal state_in (in place).
 * Supported: d_state N in {16, 32, 64, 128, 256}; any headdim; nheads % ngroups == 0.
 */
#ifndef QUAMBA_KERNELS_QUANT_SSD_STATE_UPDATE_H
#define QUAMBA_KERNELS_QUANT_SSD_STATE_UPDATE_H

#include "quamba_kernels/abi.h"
#include "quamba_kernels/dtype_codes.h" /* QUAMBA_SSD_STATE_* */


QUAMBA_EXTERN_C_BEGIN

typedef struct QuambaQuantSSDStateUpdateParams {
  int batch, nheads, headdim, ngroups, dstate;
  const int8_t* x;          /* [B, H, P] */
  int64_t x_batch_stride;
  const float* x_scale;     /* device fp32 [H, P] */
  const int8_t* dt;         /* [B, H] */
  int64_t dt_batch_stride;
  float dt_scale;           /* host */
  const float* dt_bias;     /* device fp32 [H] */
  const int8_t* A_log;      /* device int8 [H] */
  float A_log_scale;        /* host */
  const int8_t* B;          /* [B, G, N] */
  int64_t B_batch_stride;
  const float* B_scale;     /* device fp32 [G] */
  const int8_t* C;          /* [B, G, N] */
  int64_t C_batch_stride;
  const float* C_scale;     /* device fp32 [G] */
  const int8_t* D;          /* device int8 [H], or NULL */
  float D_scale;            /* host */
  float dt_limit_lo, dt_limit_hi;
  int state_type;           /* QUAMBA_SSD_STATE_INT8 (state_scale required) / _F32 / _F16 */
  const void* state_in;     /* [B, H, P, N], required */
  void* state_out;          /* [B, H, P, N]; may be the same buffer as state_in */
  const float* state_scale; /* device fp32 [H, P, N] (int8 state only), or [R, N] with state_scale_row */
  const int32_t* state_scale_row; /* NULL, or device int32 [H, P]: channel (h, p) uses row
                                     state_scale_row[h * P + p] (< R) of a compact [R, N] table (e.g. the
                                     G x 4 x 4 x N Quamba2 table: 16 G rows that stay in cache instead of
                                     4 bytes per state element read from DRAM every step) */
  uint16_t* y;              /* fp16 [B, H, P] */
  int64_t y_batch_stride;
} QuambaQuantSSDStateUpdateParams;

QUAMBA_API cudaError_t quamba_quant_ssd_state_update(const QuambaQuantSSDStateUpdateParams* p,
                                                     cudaStream_t stream);

QUAMBA_EXTERN_C_END

#endif /* QUAMBA_KERNELS_QUANT_SSD_STATE_UPDATE_H */
