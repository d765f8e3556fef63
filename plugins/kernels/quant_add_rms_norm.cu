// QuantAddRMSNorm: residual add + RMSNorm + static int8 quantization (or fp16 output), one row per block.
// Contract: quamba_edge/ops/quant_add_rms_norm.py (see quamba_kernels/quant_add_rms_norm.h).
//
// Each thread keeps its <= 32 elements (m2::row_idx: 8-element chunks with 16-byte accesses when the rows allow,
// else i = tid + k * blockDim) of the fp32 sum s in registers: one read of hidden, residual and weight (all
// issued before any store), one write of residual_out and y; the sum of squares is a warp-shuffle + shared
// memory block reduction.
#include "quamba_kernels/quant_add_rms_norm.h"

#include "quamba_kernels/common.cuh"
#include "quamba_kernels/mamba2_common.cuh"

namespace quamba {
namespace {

template <int kMaxPerThread, bool V>  // elements per thread: 16 (<= 8192 per block) or 32; V: m2::row_idx
__global__ void __launch_bounds__(m2::kNormMaxThreads) quant_add_rms_norm_kernel(const QuambaQuantAddRMSNormParams p) {
  __shared__ float red[32];
  const int64_t row = blockIdx.x;
  const int d = p.dim;

  // every load first (residual_out may alias hidden or residual, so a store in between would serialize them)
  float s[kMaxPerThread], r[kMaxPerThread], w[kMaxPerThread];
  m2::load_row<kMaxPerThread, V>(s, p.hidden, row * p.hidden_row_stride, p.hidden_dtype, d);
  if (p.residual != nullptr) {
    m2::load_row<kMaxPerThread, V>(r, p.residual, row * p.residual_row_stride, p.residual_dtype, d);
  }
  if (p.weight != nullptr) m2::load_row<kMaxPerThread, V>(w, p.weight, 0, QUAMBA_DT_F32, d);
  float ss = 0.0f;
#pragma unroll
  for (int k = 0; k < kMaxPerThread; ++k) {
    if (p.residual != nullptr) s[k] = s[k] + r[k];  // float(hidden) + float(residual)
    ss = fmaf(s[k], s[k], ss);                       // zero past d
  }
  m2::store_row<kMaxPerThread, V>(p.residual_out, row * p.residual_out_row_stride, p.residual_out_dtype, s, d);
  const float rstd = m2::rms_rstd(ss, red, d, p.eps);
#pragma unroll
  for (int k = 0; k < kMaxPerThread; ++k) {
    s[k] = s[k] * rstd;
    if (p.weight != nullptr) s[k] = s[k] * w[k];
  }
  const int64_t yo = row * p.y_row_stride;
  if (p.out_int8) {
    int8_t q[kMaxPerThread];
#pragma unroll
    for (int k = 0; k < kMaxPerThread; ++k) q[k] = quantize_int8(s[k], p.out_scale);
    m2::store_row_i8<kMaxPerThread, V>(static_cast<int8_t*>(p.y), yo, q, d);
  } else {
    m2::store_row<kMaxPerThread, V>(p.y, yo, QUAMBA_DT_F16, s, d);
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
  using quamba::m2::dtype_bytes;
  using quamba::m2::vec_rows_ok;
  const int d = p->dim;
  const auto ok = [&](const void* q, int bytes, int64_t stride) {
    return vec_rows_ok(q, bytes, stride, d, p->rows);
  };
  const bool vec = ok(p->hidden, dtype_bytes(p->hidden_dtype), p->hidden_row_stride) &&
                   ok(p->residual, dtype_bytes(p->residual_dtype), p->residual_row_stride) && ok(p->weight, 4, 0) &&
                   ok(p->y, p->out_int8 ? 1 : 2, p->y_row_stride) &&
                   ok(p->residual_out, dtype_bytes(p->residual_out_dtype), p->residual_out_row_stride);
  const quamba::m2::NormLaunch l = quamba::m2::norm_launch(d);
  const dim3 grid(static_cast<unsigned>(p->rows));
  if (l.per == 16) {
    if (vec) {
      quamba::quant_add_rms_norm_kernel<16, true><<<grid, l.threads, 0, stream>>>(*p);
    } else {
      quamba::quant_add_rms_norm_kernel<16, false><<<grid, l.threads, 0, stream>>>(*p);
    }
  } else if (vec) {
    quamba::quant_add_rms_norm_kernel<32, true><<<grid, l.threads, 0, stream>>>(*p);
  } else {
    quamba::quant_add_rms_norm_kernel<32, false><<<grid, l.threads, 0, stream>>>(*p);
  }
  return cudaGetLastError();
}
