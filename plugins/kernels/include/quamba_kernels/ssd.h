/* SSD (quamba_edge/ops/ssd.py): the float Mamba2 SSD prefill over L tokens (fp16 baseline and W4A16 models).
 *
 * Contract = quamba_edge.models.ssm.ssd_chunked with fp32 math: dt arrives softplus'ed and clamped (delta),
 * S_t = exp(delta_t A_h) S_{t-1} + (delta_t x_t) (outer) B_t[g],  y_t = S_t . C_t[g] + D_h x_t, head h uses
 * group g = h / (H / G). y is written as fp16; the state is fp32 or fp16 (state_type), its math fp32.
 * chunk_size is validated and not needed (the kernel's own chunk length only changes fp32 rounding).
 *
 * Layouts (element strides, int64): x [B, L, H, P] with the (h, p) plane contiguous (head stride P);
 * dt [B, L, H] (head stride 1); B, C [B, L, G, N] (group stride N); y [B, L, H, P] (head stride P);
 * states [B, H, P, N] contiguous. Batch and token strides are free (views of a larger activation work).
 * Supported: d_state N in {64, 128, 256}, headdim P % 16 == 0, nheads % ngroups == 0, 16-byte aligned rows of
 * x / B / C (base and strides), even y base / strides, an sm_80+ device with the shared memory; other calls
 * return cudaErrorNotSupported (callers run the reference) and bad arguments cudaErrorInvalidValue.
 */
#ifndef QUAMBA_KERNELS_SSD_H
#define QUAMBA_KERNELS_SSD_H

#include "quamba_kernels/abi.h"
#include "quamba_kernels/dtype_codes.h"


QUAMBA_EXTERN_C_BEGIN

typedef struct QuambaSSDParams {
  int batch, seqlen, nheads, headdim, ngroups, dstate;
  int chunk_size;           /* > 0; validated only */
  const uint16_t* x;        /* fp16 [B, L, H, P] */
  int64_t x_batch_stride, x_seq_stride;
  const void* dt;           /* [B, L, H] of dt_type: delta = softplus(dt + dt_bias), clamped */
  int dt_type;              /* QUAMBA_DT_F16 or QUAMBA_DT_F32 */
  int64_t dt_batch_stride, dt_seq_stride;
  const float* A;           /* device fp32 [H] (= -exp(A_log)) */
  const uint16_t* B;        /* fp16 [B, L, G, N] */
  int64_t B_batch_stride, B_seq_stride;
  const uint16_t* C;        /* fp16 [B, L, G, N] */
  int64_t C_batch_stride, C_seq_stride;
  const float* D;           /* device fp32 [H], or NULL (no skip term) */
  int state_type;           /* QUAMBA_SSD_STATE_F32 / _F16 */
  const void* state_in;     /* [B, H, P, N] of state_type, or NULL = zeros */
  void* state_out;          /* [B, H, P, N] of state_type; may be the same buffer as state_in */
  uint16_t* y;              /* fp16 [B, L, H, P] */
  int64_t y_batch_stride, y_seq_stride;
} QuambaSSDParams;

QUAMBA_API cudaError_t quamba_ssd(const QuambaSSDParams* p, cudaStream_t stream);

QUAMBA_EXTERN_C_END

#endif /* QUAMBA_KERNELS_SSD_H */
