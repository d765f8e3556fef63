// GatedRMSNorm: Mamba2's gated group-wise RMSNorm on float x / z (the float twin of quant_gated_rms_norm), one
// (row, group) per block. Contract: quamba_kernels/gated_rms_norm.h (= quamba_edge.models.ssm.gated_rms_norm).
#include "quamba_kernels/gated_rms_norm.h"

#include "quamba_kernels/common.cuh"
#include "quamba_kernels/mamba2_common.cuh"

namespace quamba {
namespace {

template <int kMaxPerThread, bool V>  // elements per thread: 16 (<= 8192 per block) or 32; V: m2::row_idx
__global__ void __launch_bounds__(m2::kNormMaxThreads) gated_rms_norm_kernel(const QuambaGatedRMSNormParams p) {
  __shared__ float red[32];
  const int ngroups = p.dim / p.group_size;
  const int64_t row = blockIdx.x / ngroups;
  const int c0 = static_cast<int>(blockIdx.x % ngroups) * p.group_size;
  const int gs = p.group_size;
  const bool gate = p.z != nullptr, gate_first = gate && !p.norm_before_gate;

  float v[kMaxPerThread], g[kMaxPerThread], w[kMaxPerThread];  // loads first, all in flight (the weight too)
  m2::load_row<kMaxPerThread, V>(v, p.x, row * p.x_row_stride + c0, p.x_dtype, gs);
  if (gate) m2::load_row<kMaxPerThread, V>(g, p.z, row * p.z_row_stride + c0, p.z_dtype, gs);
  m2::load_row<kMaxPerThread, V>(w, p.weight, c0, p.weight_dtype, gs);
  float ss = 0.0f;
#pragma unroll
  for (int k = 0; k < kMaxPerThread; ++k) {
    if (gate) g[k] = silu(g[k]);  // silu(0) = 0 past the group's end
    if (gate_first) v[k] = v[k] * g[k];
    ss = fmaf(v[k], v[k], ss);
  }
  const float rstd = m2::rms_rstd(ss, red, gs, p.eps);
#pragma unroll
  for (int k = 0; k < kMaxPerThread; ++k) {
    v[k] = (v[k] * rstd) * w[k];
    if (gate && !gate_first) v[k] = v[k] * g[k];
  }
  m2::store_row<kMaxPerThread, V>(p.out, row * p.out_row_stride + c0, p.out_dtype, v, gs);
}

}  // namespace
}  // namespace quamba

extern "C" QUAMBA_API cudaError_t quamba_gated_rms_norm(const QuambaGatedRMSNormParams* p, cudaStream_t stream) {
  using quamba::m2::float_dtype;
  QUAMBA_CHECK_ARG(p != nullptr && p->x != nullptr && p->weight != nullptr && p->out != nullptr);
  QUAMBA_CHECK_ARG(p->rows >= 1 && p->dim >= 1 && p->group_size >= 1 && p->group_size <= 16384);
  QUAMBA_CHECK_ARG(p->dim % p->group_size == 0);
  QUAMBA_CHECK_ARG(float_dtype(p->x_dtype) && float_dtype(p->weight_dtype) && float_dtype(p->out_dtype));
  QUAMBA_CHECK_ARG(p->z == nullptr || float_dtype(p->z_dtype));
  const int64_t blocks = p->rows * (p->dim / p->group_size);
  QUAMBA_CHECK_ARG(blocks <= 0x7fffffffLL);
  using quamba::m2::dtype_bytes;
  using quamba::m2::vec_rows_ok;
  const int gs = p->group_size;
  const auto ok = [&](const void* q, int bytes, int64_t stride) {
    return vec_rows_ok(q, bytes, stride, gs, p->rows);
  };
  const bool vec = ok(p->x, dtype_bytes(p->x_dtype), p->x_row_stride) &&
                   ok(p->z, dtype_bytes(p->z_dtype), p->z_row_stride) &&
                   ok(p->weight, dtype_bytes(p->weight_dtype), 0) &&
                   ok(p->out, dtype_bytes(p->out_dtype), p->out_row_stride);
  const quamba::m2::NormLaunch l = quamba::m2::norm_launch(gs);
  const dim3 grid(static_cast<unsigned>(blocks));
  if (l.per == 16) {
    if (vec) {
      quamba::gated_rms_norm_kernel<16, true><<<grid, l.threads, 0, stream>>>(*p);
    } else {
      quamba::gated_rms_norm_kernel<16, false><<<grid, l.threads, 0, stream>>>(*p);
    }
  } else if (vec) {
    quamba::gated_rms_norm_kernel<32, true><<<grid, l.threads, 0, stream>>>(*p);
  } else {
    quamba::gated_rms_norm_kernel<32, false><<<grid, l.threads, 0, stream>>>(*p);
  }
  return cudaGetLastError();
}
