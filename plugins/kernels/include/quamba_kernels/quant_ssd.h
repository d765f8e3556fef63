/* QuantSSD (quamba_edge/ops/quant_ssd.py): Mamba2 SSD prefill over L tokens with int8 inputs (grouped
 * Quamba2 scales) and an int8 (or float) SSM state.
 *
 * Contract = the docstring of quamba_edge.ops.quant_ssd.quant_ssd: same inputs, same fp32 arithmetic
 * (dequantize, delta = clamp(softplus20(dt_q * dt_scale + dt_bias), lo, hi), A = -exp(A_log_q * s),
 * S_t = exp(delta_t A) S_{t-1} + (delta_t x_t) (outer) B_t,  y_t = S_t . C_t + D x_t,
 * state_out = clamp(round_half_even(S_L / state_scale), -128, 127)). y is written as fp16.
 * The kernel evaluates the recurrence token by token (exact in real arithmetic; chunk_size only changes
 * fp32 rounding in the reference, so the kernel accepts it and does not need it).
 *
 * Layouts (element strides, int64): x [B, L, H, P] with the (h, p) plane contiguous (head stride P);
 * dt [B, L, H] (head stride 1); B, C [B, L, G, N] (group stride N); y [B, L, H, P] (head stride P);
 * states [B, H, P, N] contiguous. Batch and token strides are free (views of a larger activation work).
 * Supported: d_state N in {16, 32, 64, 128, 256}; any headdim P >= 1; nheads % ngroups == 0.
 */
#ifndef QUAMBA_KERNELS_QUANT_SSD_H
#define QUAMBA_KERNELS_QUANT_SSD_H

#include "quamba_kernels/abi.h"
#include "quamba_kernels/dtype_codes.h" /* QUAMBA_SSD_STATE_* */


QUAMBA_EXTERN_C_BEGIN

typedef struct QuambaQuantSSDParams {
  int batch, seqlen, nheads, headdim, ngroups, dstate;
  int chunk_size;           /* > 0; validated, not needed by the token-recurrent kernel */
  const int8_t* x;          /* [B, L, H, P] */
  int64_t x_batch_stride, x_seq_stride;
  const float* x_scale;     /* device fp32 [H, P] (expanded sort-and-cluster scales) */
  const int8_t* dt;         /* [B, L, H], raw dt before bias and softplus */
  int64_t dt_batch_stride, dt_seq_stride;
  float dt_scale;           /* host */
  const float* dt_bias;     /* device fp32 [H] */
  const int8_t* A_log;      /* device int8 [H] */
  float A_log_scale;        /* host */
  const int8_t* B;          /* [B, L, G, N] */
  int64_t B_batch_stride, B_seq_stride;
  const float* B_scale;     /* device fp32 [G] */
  const int8_t* C;          /* [B, L, G, N] */
  int64_t C_batch_stride, C_seq_stride;
  const float* C_scale;     /* device fp32 [G] */
  const int8_t* D;          /* device int8 [H], or NULL (no skip term) */
  float D_scale;            /* host */
  float dt_limit_lo, dt_limit_hi; /* clamp of delta after the softplus (0, +inf by default) */
  int state_type;           /* QUAMBA_SSD_STATE_INT8 (state_scale required) / _F32 / _F16 */
  const void* state_in;     /* [B, H, P, N] of state_type, or NULL = zeros */
  void* state_out;          /* [B, H, P, N] of state_type; may be the same buffer as state_in */
  const float* state_scale; /* device fp32 [H, P, N] (int8 state only), or [R, N] with state_scale_row */
  const int32_t* state_scale_row; /* NULL, or device int32 [H, P]: channel (h, p) uses row
                                     state_scale_row[h * P + p] (< R) of a compact [R, N] table (e.g. the
                                     G x 4 x 4 x N Quamba2 table, R = 16 G); NULL = row h * P + p */
  uint16_t* y;              /* fp16 [B, L, H, P] */
  int64_t y_batch_stride, y_seq_stride;
  int p_tile;               /* 0 = automatic; else headdim channels per block (tuning/benchmarks) */
  int staging;              /* 0 = default: the next tile's inputs are loaded while the current tile
                               computes; 1 = each tile staged after the previous one (comparison/tuning) */
} QuambaQuantSSDParams;

QUAMBA_API cudaError_t quamba_quant_ssd(const QuambaQuantSSDParams* p, cudaStream_t stream);

QUAMBA_EXTERN_C_END

#endif /* QUAMBA_KERNELS_QUANT_SSD_H */
