/* quant_causal_conv1d: int8 depthwise causal conv1d + bias + SiLU + int8 requantization, with the
 * int8 conv state [B, C, K-1] (the last K-1 inputs, oldest first). Prefill (any L >= 1) and decode
 * (L = 1) are the same call. Contract: quamba_edge/ops/quant_causal_conv1d.py.
 *
 *   acc = sum_k w_q[c,k] * xx[c, t+k]  (int32, xx = concat(conv_state, x^T))
 *   y = float(acc) * (x_scale[c] * w_scale[c]) [+ float(b_q[c]) * b_scale[c]];  y = silu(y) if silu
 *   y_q = clamp(rint(y / out_scale[c]), -128, 127);  new_conv_state = last K-1 columns of xx
 *
 * Per-channel scales are fp32 device arrays read with a stride (1 = one value per channel, 0 = one value
 * for all channels). 1 <= K <= 8. new_conv_state may alias conv_state only when L == 1.
 */
#ifndef QUAMBA_KERNELS_QUANT_CAUSAL_CONV1D_H
#define QUAMBA_KERNELS_QUANT_CAUSAL_CONV1D_H

#include "quamba_kernels/abi.h"

QUAMBA_EXTERN_C_BEGIN

typedef struct QuambaCausalConv1dParams {
  int batch, seqlen, channels, width; /* B, L, C, K */

  const int8_t* x; int64_t x_stride_b, x_stride_l; /* [B, L, C], stride over c must be 1 */
  const int8_t* w;                                 /* [C, K] contiguous */
  const int8_t* bias;                              /* [C] or NULL */
  const float* x_scale;   int x_scale_stride;      /* [C] (stride 1) or [1] (stride 0) */
  const float* w_scale;   int w_scale_stride;
  const float* b_scale;   int b_scale_stride;      /* ignored when bias == NULL */
  const float* out_scale; int out_scale_stride;
  const int8_t* conv_state; /* [B, C, K-1] contiguous, or NULL (zeros) */
  int silu;

  int8_t* y; int64_t y_stride_b, y_stride_l;       /* [B, L, C] */
  int8_t* new_conv_state;                          /* [B, C, K-1] contiguous, or NULL (not wanted) */
} QuambaCausalConv1dParams;

QUAMBA_API cudaError_t quamba_quant_causal_conv1d(const QuambaCausalConv1dParams* p, cudaStream_t stream);

QUAMBA_EXTERN_C_END

#endif
