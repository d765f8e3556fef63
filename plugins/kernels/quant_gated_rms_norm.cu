// QuantGatedRMSNorm: Mamba2's gated group-wise RMSNorm with an int8 gate, fp16 output; one (row, group)
// per block. Contract: quamba_edge/ops/quant_gated_rms_norm.py (see quamba_kernels/quant_gated_rms_norm.h).
#include "quamba_kernels/quant_gated_rms_norm.h"

#include "quamba_kernels/common.cuh"
#include "quamba_kernels/mamba2_common.cuh"

namespace quamba {
namespace {

template <int kMaxPerThread>  // elements per thread: 16 (<= 8192 per block) or 32
__global__ void __launch_bounds__(m2::kNormMaxThreads) quant_gated_rms_norm_kernel(const QuambaQuantGatedRMSNormParams p) {
  __shared__ float red[32];
  __shared__ float gate_of[256];  // silu(dequant(q, z_scale)) for every int8 code q: z takes 256 values only
  const int ngroups = p.dim / p.group_size;
  const int64_t row = blockIdx.x / ngroups;
  const int c0 = static_cast<int>(blockIdx.x % ngroups) * p.group_size;
  const int gs = p.group_size, T = blockDim.x, tid = threadIdx.x;
  const int64_t yo = row * p.y_row_stride + c0, zo = row * p.z_row_stride + c0, oo = row * p.out_row_stride + c0;

  float v[kMaxPerThread];
  int8_t zq[kMaxPerThread];
#pragma unroll
  for (int k = 0; k < kMaxPerThread; ++k) {  // loads first, all in flight
    const int i = tid + k * T;
    v[k] = i < gs ? m2::load_float(p.y, yo + i, p.y_dtype) : 0.0f;
    zq[k] = i < gs ? p.z[zo + i] : int8_t(0);
  }
  for (int q = tid; q < 256; q += T) gate_of[q] = silu(dequant(static_cast<int8_t>(q - 128), p.z_scale));
  __syncthreads();
  float ss = 0.0f;
#pragma unroll
  for (int k = 0; k < kMaxPerThread; ++k) {
    if (!p.norm_before_gate) v[k] = v[k] * gate_of[zq[k] + 128];
    ss = fmaf(v[k], v[k], ss);
  }
  const float rstd = m2::rms_rstd(ss, red, gs, p.eps);
#pragma unroll
  for (int k = 0; k < kMaxPerThread; ++k) {
    const int i = tid + k * T;
    if (i < gs) {
      float o = (v[k] * rstd) * p.weight[c0 + i];
      if (p.norm_before_gate) o = o * gate_of[zq[k] + 128];
      p.out[oo + i] = f32_to_f16_bits(o);
    }
  }
}

}  // namespace
}  // namespace quamba

extern "C" QUAMBA_API cudaError_t quamba_quant_gated_rms_norm(const QuambaQuantGatedRMSNormParams* p,
                                                              cudaStream_t stream) {
  QUAMBA_CHECK_ARG(p != nullptr && p->y != nullptr && p->z != nullptr && p->weight != nullptr && p->out != nullptr);
  QUAMBA_CHECK_ARG(p->rows >= 1 && p->dim >= 1 && p->group_size >= 1 && p->group_size <= 16384);
  QUAMBA_CHECK_ARG(p->dim % p->group_size == 0);
  QUAMBA_CHECK_ARG(p->y_dtype == QUAMBA_DT_F32 || p->y_dtype == QUAMBA_DT_F16 || p->y_dtype == QUAMBA_DT_BF16);
  const int64_t blocks = p->rows * (p->dim / p->group_size);
  QUAMBA_CHECK_ARG(blocks <= 0x7fffffffLL);
  const quamba::m2::NormLaunch l = quamba::m2::norm_launch(p->group_size);
  const int threads = l.threads;
  if (l.per == 16) {
    quamba::quant_gated_rms_norm_kernel<16><<<static_cast<unsigned>(blocks), threads, 0, stream>>>(*p);
  } else {
    quamba::quant_gated_rms_norm_kernel<32><<<static_cast<unsigned>(blocks), threads, 0, stream>>>(*p);
  }
  return cudaGetLastError();
}
