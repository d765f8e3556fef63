/* SSD for L = 1 (quamba_edge/ops/ssd.py; reference quamba_edge.models.ssm.ssd_state_update): one decode step of
 * the float Mamba2 recurrence, fp32 math: S = exp(delta A_h) S + (delta x) (outer) B[g], y = S . C[g] + D_h x.
 * Layouts: x [B, H, P] (head stride P), dt [B, H] (head stride 1), B, C [B, G, N] (group stride N), y [B, H, P]
 * (head stride P), states [B, H, P, N] contiguous; batch strides free. Any batch / headdim; d_state 1..256 (Mamba2:
 * 16..256; larger: cudaErrorNotSupported); nheads <= 65535, nheads % ngroups == 0; NULL required pointers, sizes
 * < 1, another dt_type / state_type: cudaErrorInvalidValue (details: ssd_state_update.cu). */
#ifndef QUAMBA_KERNELS_SSD_STATE_UPDATE_H
#define QUAMBA_KERNELS_SSD_STATE_UPDATE_H

#include "quamba_kernels/abi.h"
#include "quamba_kernels/dtype_codes.h"


QUAMBA_EXTERN_C_BEGIN

typedef struct QuambaSSDStateUpdateParams {
  int batch, nheads, headdim, ngroups, dstate;
  const uint16_t* x;        /* fp16 [B, H, P] */
  int64_t x_batch_stride;
  const void* dt;           /* [B, H] of dt_type, softplus'ed and clamped */
  int dt_type;              /* QUAMBA_DT_F16 or QUAMBA_DT_F32 */
  int64_t dt_batch_stride;
  const float* A;           /* device fp32 [H] */
  const uint16_t* B;        /* fp16 [B, G, N] */
  int64_t B_batch_stride;
  const uint16_t* C;        /* fp16 [B, G, N] */
  int64_t C_batch_stride;
  const float* D;           /* device fp32 [H], or NULL */
  int state_type;           /* QUAMBA_SSD_STATE_F32 / _F16 */
  const void* state_in;     /* [B, H, P, N], required */
  void* state_out;          /* [B, H, P, N]; may be the same buffer as state_in */
  uint16_t* y;              /* fp16 [B, H, P] */
  int64_t y_batch_stride;
} QuambaSSDStateUpdateParams;

QUAMBA_API cudaError_t quamba_ssd_state_update(const QuambaSSDStateUpdateParams* p, cudaStream_t stream);

QUAMBA_EXTERN_C_END

#endif /* QUAMBA_KERNELS_SSD_STATE_UPDATE_H */
