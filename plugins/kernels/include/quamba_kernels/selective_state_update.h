/* SelectiveScan for L = 1 (quamba_edge/ops/selective_scan.py; reference
 * quamba_edge.models.ssm.selective_state_update): one decode step of the float Mamba1 scan, fp32 math (the
 * formula of selective_scan.h for one token). Layouts: u, delta, z, y [B, E] (channel stride 1), B, C [B, N],
 * A [E, N] contiguous, states [B, E, N] contiguous; batch strides free. Any batch / dim, d_state N 1..256 (larger:
 * cudaErrorNotSupported); NULL required pointers, sizes < 1 or another state_type: cudaErrorInvalidValue
 * (details: selective_state_update.cu). */
#ifndef QUAMBA_KERNELS_SELECTIVE_STATE_UPDATE_H
#define QUAMBA_KERNELS_SELECTIVE_STATE_UPDATE_H

#include "quamba_kernels/abi.h"
#include "quamba_kernels/dtype_codes.h"


QUAMBA_EXTERN_C_BEGIN

typedef struct QuambaFloatSelectiveStateUpdateParams {
  int batch, dim, dstate; /* B, E, N */
  const uint16_t* u;     int64_t u_stride_b;      /* fp16 [B, E] */
  const uint16_t* delta; int64_t delta_stride_b;  /* fp16 [B, E], without its bias */
  const float* A;                                 /* device fp32 [E, N] */
  const uint16_t* Bm;    int64_t B_stride_b;      /* fp16 [B, N] */
  const uint16_t* Cm;    int64_t C_stride_b;      /* fp16 [B, N] */
  const float* D;                                 /* device fp32 [E], or NULL */
  const uint16_t* z;     int64_t z_stride_b;      /* fp16 [B, E], or NULL */
  const float* delta_bias;                        /* device fp32 [E], or NULL */
  int delta_softplus;
  int state_type;         /* QUAMBA_SSD_STATE_F32 / _F16 */
  const void* state_in;   /* [B, E, N], required */
  void* state_out;        /* [B, E, N]; may be the same buffer as state_in */
  uint16_t* y;           int64_t y_stride_b;      /* fp16 [B, E] */
} QuambaFloatSelectiveStateUpdateParams;

QUAMBA_API cudaError_t quamba_selective_state_update(const QuambaFloatSelectiveStateUpdateParams* p,
                                                     cudaStream_t stream);

QUAMBA_EXTERN_C_END

#endif /* QUAMBA_KERNELS_SELECTIVE_STATE_UPDATE_H */
