// AddRMSNorm: the FP model's residual add + RMSNorm with a float output (the float twin of quant_add_rms_norm),
// one row per block. Contract: quamba_kernels/add_rms_norm.h (= kernel_dispatch._float_add_rms_norm).
//
// Each thread keeps its <= 32 elements (m2::row_idx: 8-element chunks with 16-byte accesses when the rows allow,
// else i = tid + k * blockDim) of the fp32 sum s in registers: one read of hidden, residual and weight (all
// issued before any store), one write of residual_out (optional) and y; the sum of squares is a warp-shuffle +
// shared memory block reduction (m2::rms_rstd).
#include "quamba_kernels/add_rms_norm.h"

#include "quamba_kernels/common.cuh"
#include "quamba_kernels/mamba2_common.cuh"

namespace quamba {
namespace {

template <int kMaxPerThread, bool V>  // elements per thread: 16 (<= 8192 per block) or 32; V: m2::row_idx
__global__ void __launch_bounds__(m2::kNormMaxThreads) add_rms_norm_kernel(const QuambaAddRMSNormParams p) {
  __shared__ float red[32];
  const int64_t row = blockIdx.x;
  const int d = p.dim;
  const int64_t oo = row * p.residual_out_row_stride, yo = row * p.y_row_stride;
  const bool add = p.residual != nullptr;

  // every load first (a store in between would serialize them where residual_out may alias an input); the
  // weight too, so that its latency hides behind the reduction
  float s[kMaxPerThread], r[kMaxPerThread], w[kMaxPerThread];
  m2::load_row<kMaxPerThread, V>(s, p.hidden, row * p.hidden_row_stride, p.hidden_dtype, d);
  if (add) m2::load_row<kMaxPerThread, V>(r, p.residual, row * p.residual_row_stride, p.residual_dtype, d);
  m2::load_row<kMaxPerThread, V>(w, p.weight, 0, p.weight_dtype, d);
  float ss = 0.0f;
#pragma unroll
  for (int k = 0; k < kMaxPerThread; ++k) {
    if (add) s[k] = s[k] + r[k];                     // float(hidden) + float(residual): one fp32 add
    s[k] = m2::round_to(s[k], p.residual_out_dtype);  // the stream as stored (the reference norms that)
    ss = fmaf(s[k], s[k], ss);                        // zero past d
  }
  if (p.residual_out != nullptr) m2::store_row<kMaxPerThread, V>(p.residual_out, oo, p.residual_out_dtype, s, d);
  const float rstd = m2::rms_rstd(ss, red, d, p.eps);
#pragma unroll
  for (int k = 0; k < kMaxPerThread; ++k) s[k] = (s[k] * rstd) * w[k];
  m2::store_row<kMaxPerThread, V>(p.y, yo, p.y_dtype, s, d);
}

}  // namespace
}  // namespace quamba

extern "C" QUAMBA_API cudaError_t quamba_add_rms_norm(const QuambaAddRMSNormParams* p, cudaStream_t stream) {
  using quamba::m2::float_dtype;
  QUAMBA_CHECK_ARG(p != nullptr && p->hidden != nullptr && p->weight != nullptr && p->y != nullptr);
  QUAMBA_CHECK_ARG(p->rows >= 1 && p->rows <= 0x7fffffffLL && p->dim >= 1 && p->dim <= 16384);
  QUAMBA_CHECK_ARG(float_dtype(p->hidden_dtype) && float_dtype(p->weight_dtype) && float_dtype(p->y_dtype));
  QUAMBA_CHECK_ARG(float_dtype(p->residual_out_dtype) && (p->residual == nullptr || float_dtype(p->residual_dtype)));
  using quamba::m2::dtype_bytes;
  using quamba::m2::vec_rows_ok;
  const int d = p->dim;
  const auto ok = [&](const void* q, int bytes, int64_t stride) {
    return vec_rows_ok(q, bytes, stride, d, p->rows);
  };
  const bool vec = ok(p->hidden, dtype_bytes(p->hidden_dtype), p->hidden_row_stride) &&
                   ok(p->residual, dtype_bytes(p->residual_dtype), p->residual_row_stride) &&
                   ok(p->weight, dtype_bytes(p->weight_dtype), 0) &&
                   ok(p->y, dtype_bytes(p->y_dtype), p->y_row_stride) &&
                   ok(p->residual_out, dtype_bytes(p->residual_out_dtype), p->residual_out_row_stride);
  const quamba::m2::NormLaunch l = quamba::m2::norm_launch(d);
  const dim3 grid(static_cast<unsigned>(p->rows));
  if (l.per == 16) {
    if (vec) {
      quamba::add_rms_norm_kernel<16, true><<<grid, l.threads, 0, stream>>>(*p);
    } else {
      quamba::add_rms_norm_kernel<16, false><<<grid, l.threads, 0, stream>>>(*p);
    }
  } else if (vec) {
    quamba::add_rms_norm_kernel<32, true><<<grid, l.threads, 0, stream>>>(*p);
  } else {
    quamba::add_rms_norm_kernel<32, false><<<grid, l.threads, 0, stream>>>(*p);
  }
  return cudaGetLastError();
}
