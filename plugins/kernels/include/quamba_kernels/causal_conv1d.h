/* causal_conv1d: the float depthwise causal conv1d (+ bias, SiLU) of the FP / W4A16 Mamba mixers, prefill (any
 * L >= 1) and decode (L = 1) in one call. Reference: quamba_edge.models.ssm.causal_conv1d; the float sibling of
 * quant_causal_conv1d.h.
 *
 *   xx = concat(conv_state, x^T)  [C, K-1+L] (conv_state NULL: zeros)
 *   y[b, t, c] = act(sum_k w[c, k] * xx[c, t+k] + bias[c])   (fp32 math, act = SiLU when silu, else identity)
 *   new_conv_state = the last K-1 columns of xx
 *
 * x, y and new_conv_state share x_type (QUAMBA_DT_F16 or QUAMBA_DT_F32): y is rounded once to it, the new state
 * holds the inputs exactly (a fp32 conv_state is rounded to fp16 where it lands in an fp16 new state, as the
 * reference's `conv_state.to(x.dtype)`). w / bias / conv_state: fp16 or fp32 each (w_type, bias_type,
 * state_type); they are read as they are (no rounding to x_type: at least as accurate as the reference).
 * Layouts: x / y [B, L, C] with unit channel stride, batch / token strides free (x may be a column slice of a
 * wider activation); w [C, K], bias [C], states [B, C, K-1] contiguous. 1 <= K <= 4 (Mamba: 4); B <= 65535.
 * new_conv_state may be conv_state (in place, any L; then state_type must equal x_type); y must not overlap x
 * or the states. NULL required pointers, bad sizes or dtype codes: cudaErrorInvalidValue.
 */
#ifndef QUAMBA_KERNELS_CAUSAL_CONV1D_H
#define QUAMBA_KERNELS_CAUSAL_CONV1D_H

#include "quamba_kernels/abi.h"
#include "quamba_kernels/dtype_codes.h"

QUAMBA_EXTERN_C_BEGIN

typedef struct QuambaFloatCausalConv1dParams {
  int batch, seqlen, channels, width; /* B, L, C, K */
  int x_type;                         /* QUAMBA_DT_F16 / QUAMBA_DT_F32: x, y, new_conv_state */

  const void* x; int64_t x_stride_b, x_stride_l; /* [B, L, C], channel stride 1 */
  const void* w; int w_type;                     /* [C, K] contiguous */
  const void* bias; int bias_type;               /* [C] contiguous, or NULL */
  const void* conv_state; int state_type;        /* [B, C, K-1] contiguous, or NULL (zeros) */
  int silu;

  void* y; int64_t y_stride_b, y_stride_l;       /* [B, L, C], channel stride 1 */
  void* new_conv_state;                          /* [B, C, K-1] contiguous (x_type), or NULL (not wanted) */
} QuambaFloatCausalConv1dParams;

QUAMBA_API cudaError_t quamba_causal_conv1d(const QuambaFloatCausalConv1dParams* p, cudaStream_t stream);

QUAMBA_EXTERN_C_END

#endif /* QUAMBA_KERNELS_CAUSAL_CONV1D_H */
