// GatedRMSNorm: Mamba2's gated group-wise RMSNorm on float x / z (the float twin of quant_gated_rms_norm), one
// (row, group) per block. Contract: quamba_kernels/gated_rms_norm.h (= quamba_edge.models.ssm.gated_rms_norm).
#include "quamba_kernels/gated_rms_norm.h"

#include "quamba_kernels/common.cuh"
#include "quamba_kernels/mamba2_common.cuh"

namespace quamba {
namespace {

template <int kMaxPerThread>  // elements per thread: 16 (<= 8192 per block) or 32
__global__ void __launch_bounds__(m2::kNormMaxThreads) gated_rms_norm_kernel(const QuambaGatedRMSNormParams p) {
  __shared__ float red[32];
  const int ngroups = p.dim / p.group_size;
  const int64_t row = blockIdx.x / ngroups;
  const int c0 = static_cast<int>(blockIdx.x % ngroups) * p.group_size;
  const int gs = p.group_size, T = blockDim.x, tid = threadIdx.x;
  const bool gate = p.z != nullptr, gate_first = gate && !p.norm_before_gate;

  float v[kMaxPerThread], g[kMaxPerThread];  // loads first, all in flight
  m2::load_row(v, p.x, row * p.x_row_stride + c0, p.x_dtype, gs);
  if (gate) m2::load_row(g, p.z, row * p.z_row_stride + c0, p.z_dtype, gs);
  float ss = 0.0f;
#pragma unroll
  for (int k = 0; k < kMaxPerThread; ++k) {
    if (gate) g[k] = silu(g[k]);  // silu(0) = 0 past the group's end
    if (gate_first) v[k] = v[k] * g[k];
    ss = fmaf(v[k], v[k], ss);
  }
  const float rstd = m2::rms_rstd(ss, red, gs, p.eps);
  const int64_t oo = row * p.out_row_stride + c0;
#pragma unroll
  for (int k = 0; k < kMaxPerThread; ++k) {
    const int i = tid + k * T;
    if (i < gs) {
      float o = (v[k] * rstd) * m2::load_float(p.weight, c0 + i, p.weight_dtype);
      if (gate && !gate_first) o = o * g[k];
      m2::store_float(p.out, oo + i, p.out_dtype, o);
    }
  }
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
  const quamba::m2::NormLaunch l = quamba::m2::norm_launch(p->group_size);
  if (l.per == 16) {
    quamba::gated_rms_norm_kernel<16><<<static_cast<unsigned>(blocks), l.threads, 0, stream>>>(*p);
  } else {
    quamba::gated_rms_norm_kernel<32><<<static_cast<unsigned>(blocks), l.threads, 0, stream>>>(*p);
  }
  return cudaGetLastError();
}
