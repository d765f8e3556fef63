// QuantAddRMSNorm: residual add + RMSNorm + static int8 quantization (or fp16 output), one row per block.
// Contract: quamba_edge/ops/quant_add_rms_norm.py (see quamba_kernels/quant_add_rms_norm.h).
//
// Each thread keeps its <= 16 elements (i = tid + k * blockDim) of the fp32 sum s in registers: one read
// of hidden and residual (all issued before any store), one write of residual_out and y; the sum of
// squares is a warp-shuffle + shared memory block reduction.
#include "quamba_kernels/quant_add_rms_norm.h"

#include "quamba_kernels/common.cuh"
#include "quamba_kernels/mamba2_common.cuh"

namespace quamba {
namespace {

template <int kMaxPerThread>  // elements per thread: 16 (<= 8192 per block) or 32
__global__ void __launch_bounds__(m2::kNormMaxThreads) quant_add_rms_norm_kernel(const QuambaQuantAddRMSNormParams p) {
  __shared__ float red[32];
  const int64_t row = blockIdx.x;
  const int d = p.dim, T = blockDim.x, tid = threadIdx.x;
  const int64_t ho = row * p.hidden_row_stride, ro = row * p.residual_row_stride;
  const int64_t oo = row * p.residual_out_row_stride, yo = row * p.y_row_stride;

  // every load first (residual_out may alias hidden or residual, so a store in between would serialize them)
  float s[kMaxPerThread], r[kMaxPerThread];
#pragma unroll
  for (int k = 0; k < kMaxPerThread; ++k) {
    const int i = tid + k * T;
    s[k] = i < d ? m2::load_float(p.hidden, ho + i, p.hidden_dtype) : 0.0f;
    r[k] = (i < d && p.residual != nullptr) ? m2::load_float(p.residual, ro + i, p.residual_dtype) : 0.0f;
  }
  float ss = 0.0f;
#pragma unroll
  for (int k = 0; k < kMaxPerThread; ++k) {
    const int i = tid + k * T;
    if (p.residual != nullptr) s[k] = s[k] + r[k];  // float(hidden) + float(residual)
    if (i < d) m2::store_float(p.residual_out, oo + i, p.residual_out_dtype, s[k]);
    ss = fmaf(s[k], s[k], ss);
  }
  const float rstd = m2::rms_rstd(ss, red, d, p.eps);
#pragma unroll
  for (int k = 0; k < kMaxPerThread; ++k) {
    const int i = tid + k * T;
    if (i < d) {
      float y = s[k] * rstd;
      if (p.weight != nullptr) y = y * p.weight[i];
      if (p.out_int8) {
        static_cast<int8_t*>(p.y)[yo + i] = quantize_int8(y, p.out_scale);
      } else {
        static_cast<uint16_t*>(p.y)[yo + i] = f32_to_f16_bits(y);
      }
    }
  }
}

}  // namespace
}  // namespace quamba

extern "C" QUAMBA_API cudaError_t quamba_quant_add_rms_norm(const QuambaQuantAddRMSNormParams* p,
                                                            cudaStream_t stream) {
  QUAMBA_CHECK_ARG(p != nullptr && p->hidden != nullptr && p->y != nullptr && p->residual_out != nullptr);
  QUAMBA_CHECK_ARG(p->rows >= 1 && p->rows <= 0x7fffffffLL && p->dim >= 1 && p->dim <= 16384);
  for (int t : {p->hidden_dtype, p->residual_out_dtype, p->residual != nullptr ? p->residual_dtype : 0}) {
    QUAMBA_CHECK_ARG(t == QUAMBA_DT_F32 || t == QUAMBA_DT_F16 || t == QUAMBA_DT_BF16);
  }
  const quamba::m2::NormLaunch l = quamba::m2::norm_launch(p->dim);
  const int threads = l.threads;
  if (l.per == 16) {
    quamba::quant_add_rms_norm_kernel<16><<<static_cast<unsigned>(p->rows), threads, 0, stream>>>(*p);
  } else {
    quamba::quant_add_rms_norm_kernel<32><<<static_cast<unsigned>(p->rows), threads, 0, stream>>>(*p);
  }
  return cudaGetLastError();
}
