/* SelectiveScan (quamba_edge/ops/selective_scan.py; reference quamba_edge.models.ssm.selective_scan): the float
 * Mamba1 selective scan over L tokens (fp16 baseline and W4A16 models), fp32 math:
 * dt = softplus(delta + delta_bias) (or delta + delta_bias without delta_softplus), per channel e and state n
 * h_t = exp(dt_t A[e, n]) h_{t-1} + dt_t B_t[n] u_t,  y_t = C_t . h_t + D[e] u_t,  y *= silu(z).
 * y is written as fp16; the state is fp32 or fp16 (state_type), its math fp32.
 * Layouts: u, delta, z, y [B, L, E] (channel stride 1), B, C [B, L, N] (state stride 1), A [E, N] contiguous,
 * states [B, E, N] contiguous; batch and token strides free. Any batch / seqlen / dim, d_state N 1..256 (larger:
 * cudaErrorNotSupported); NULL required pointers, sizes < 1 or another state_type: cudaErrorInvalidValue
 * (details: selective_scan.cu). */
#ifndef QUAMBA_KERNELS_SELECTIVE_SCAN_H
#define QUAMBA_KERNELS_SELECTIVE_SCAN_H

#include "quamba_kernels/abi.h"
#include "quamba_kernels/dtype_codes.h"


QUAMBA_EXTERN_C_BEGIN

typedef struct QuambaFloatSelectiveScanParams {
  int batch, seqlen, dim, dstate; /* B, L, E, N */
  const uint16_t* u;        /* fp16 [B, L, E] */
  int64_t u_stride_b, u_stride_l;
  const uint16_t* delta;    /* fp16 [B, L, E]: dt_proj output without its bias */
  int64_t delta_stride_b, delta_stride_l;
  const float* A;           /* device fp32 [E, N] (= -exp(A_log)) */
  const uint16_t* Bm;       /* fp16 [B, L, N] */
  int64_t B_stride_b, B_stride_l;
  const uint16_t* Cm;       /* fp16 [B, L, N] */
  int64_t C_stride_b, C_stride_l;
  const float* D;           /* device fp32 [E], or NULL */
  const uint16_t* z;        /* fp16 [B, L, E], or NULL (no gate) */
  int64_t z_stride_b, z_stride_l;
  const float* delta_bias;  /* device fp32 [E], or NULL */
  int delta_softplus;       /* 1: softplus(delta + bias) (softplus20, as the reference); 0: delta + bias */
  int state_type;           /* QUAMBA_SSD_STATE_F32 / _F16 */
  const void* state_in;     /* [B, E, N] of state_type, or NULL = zeros */
  void* state_out;          /* [B, E, N] of state_type; may be the same buffer as state_in */
  uint16_t* y;              /* fp16 [B, L, E] */
  int64_t y_stride_b, y_stride_l;
} QuambaFloatSelectiveScanParams;

QUAMBA_API cudaError_t quamba_selective_scan(const QuambaFloatSelectiveScanParams* p, cudaStream_t stream);

QUAMBA_EXTERN_C_END

#endif /* QUAMBA_KERNELS_SELECTIVE_SCAN_H */
