// AddRMSNorm: the FP model's residual add + RMSNorm with a float output (the float twin of quant_add_rms_norm),
// one row per block. Contract: quamba_kernels/add_rms_norm.h (= kernel_dispatch._float_add_rms_norm).
//
// Each thread keeps its <= 32 elements (i = tid + k * blockDim) of the fp32 sum s in registers: one read of
// hidden and residual (all issued before any store), one write of residual_out (optional) and y; the sum of
// squares is a warp-shuffle + shared memory block reduction (m2::rms_rstd).
#include "quamba_kernels/add_rms_norm.h"

#include "quamba_kernels/common.cuh"
#include "quamba_kernels/mamba2_common.cuh"

namespace quamba {
namespace {

template <int kMaxPerThread>  // elements per thread: 16 (<= 8192 per block) or 32
__global__ void __launch_bounds__(m2::kNormMaxThreads) add_rms_norm_kernel(const QuambaAddRMSNormParams p) {
  __shared__ float red[32];
  const int64_t row = blockIdx.x;
  const int d = p.dim, T = blockDim.x, tid = threadIdx.x;
  const int64_t oo = row * p.residual_out_row_stride, yo = row * p.y_row_stride;
  const bool add = p.residual != nullptr;

  // every load first (a store in between would serialize them where residual_out may alias an input)
  float s[kMaxPerThread], r[kMaxPerThread];
  m2::load_row(s, p.hidden, row * p.hidden_row_stride, p.hidden_dtype, d);
  if (add) m2::load_row(r, p.residual, row * p.residual_row_stride, p.residual_dtype, d);
  float ss = 0.0f;
#pragma unroll
  for (int k = 0; k < kMaxPerThread; ++k) {
    const int i = tid + k * T;
    if (add) s[k] = s[k] + r[k];                     // float(hidden) + float(residual): one fp32 add
    s[k] = m2::round_to(s[k], p.residual_out_dtype);  // the stream as stored (the reference norms that)
    if (p.residual_out != nullptr && i < d) m2::store_float(p.residual_out, oo + i, p.residual_out_dtype, s[k]);
    ss = fmaf(s[k], s[k], ss);
  }
  const float rstd = m2::rms_rstd(ss, red, d, p.eps);
#pragma unroll
  for (int k = 0; k < kMaxPerThread; ++k) {
    const int i = tid + k * T;
    if (i < d) m2::store_float(p.y, yo + i, p.y_dtype, (s[k] * rstd) * m2::load_float(p.weight, i, p.weight_dtype));
  }
}

}  // namespace
}  // namespace quamba

extern "C" QUAMBA_API cudaError_t quamba_add_rms_norm(const QuambaAddRMSNormParams* p, cudaStream_t stream) {
  using quamba::m2::float_dtype;
  QUAMBA_CHECK_ARG(p != nullptr && p->hidden != nullptr && p->weight != nullptr && p->y != nullptr);
  QUAMBA_CHECK_ARG(p->rows >= 1 && p->rows <= 0x7fffffffLL && p->dim >= 1 && p->dim <= 16384);
  QUAMBA_CHECK_ARG(float_dtype(p->hidden_dtype) && float_dtype(p->weight_dtype) && float_dtype(p->y_dtype));
  QUAMBA_CHECK_ARG(float_dtype(p->residual_out_dtype) && (p->residual == nullptr || float_dtype(p->residual_dtype)));
  const quamba::m2::NormLaunch l = quamba::m2::norm_launch(p->dim);
  if (l.per == 16) {
    quamba::add_rms_norm_kernel<16><<<static_cast<unsigned>(p->rows), l.threads, 0, stream>>>(*p);
  } else {
    quamba::add_rms_norm_kernel<32><<<static_cast<unsigned>(p->rows), l.threads, 0, stream>>>(*p);
  }
  return cudaGetLastError();
}
