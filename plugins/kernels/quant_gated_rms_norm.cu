// QuantGatedRMSNorm: Mamba2's gated group-wise RMSNorm with an int8 gate, fp16 output; one (row, group)
// per block. Contract: quamba_edge/ops/quant_gated_rms_norm.py (see quamba_kernels/quant_gated_rms_norm.h).
#include "quamba_kernels/quant_gated_rms_norm.h"

#include "quamba_kernels/common.cuh"
#include "quamba_kernels/mamba2_common.cuh"

namespace quamba {
namespace {

template <int kMaxPerThread, bool V>  // elements per thread: 16 (<= 8192 per block) or 32; V: m2::row_idx
__global__ void __launch_bounds__(m2::kNormMaxThreads) quant_gated_rms_norm_kernel(const QuambaQuantGatedRMSNormParams p) {
  __shared__ float red[32];
  __shared__ float gate_of[256];  // silu(dequant(q, z_scale)) for every int8 code q: z takes 256 values only
  const int ngroups = p.dim / p.group_size;
  const int64_t row = blockIdx.x / ngroups;
  const int c0 = static_cast<int>(blockIdx.x % ngroups) * p.group_size;
  const int gs = p.group_size, T = blockDim.x, tid = threadIdx.x;

  float v[kMaxPerThread], w[kMaxPerThread];  // loads first, all in flight (the weight too)
  int8_t zq[kMaxPerThread];
  m2::load_row<kMaxPerThread, V>(v, p.y, row * p.y_row_stride + c0, p.y_dtype, gs);
  m2::load_row_i8<kMaxPerThread, V>(zq, p.z, row * p.z_row_stride + c0, gs);
  m2::load_row<kMaxPerThread, V>(w, p.weight, c0, QUAMBA_DT_F32, gs);
  for (int q = tid; q < 256; q += T) gate_of[q] = silu(dequant(static_cast<int8_t>(q - 128), p.z_scale));
  __syncthreads();
  float ss = 0.0f;
#pragma unroll
  for (int k = 0; k < kMaxPerThread; ++k) {
    if (!p.norm_before_gate) v[k] = v[k] * gate_of[zq[k] + 128];
    ss = fmaf(v[k], v[k], ss);  // zero past the group's end
  }
  const float rstd = m2::rms_rstd(ss, red, gs, p.eps);
#pragma unroll
  for (int k = 0; k < kMaxPerThread; ++k) {
    v[k] = (v[k] * rstd) * w[k];
    if (p.norm_before_gate) v[k] = v[k] * gate_of[zq[k] + 128];
  }
  m2::store_row<kMaxPerThread, V>(p.out, row * p.out_row_stride + c0, QUAMBA_DT_F16, v, gs);
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
  using quamba::m2::dtype_bytes;
  using quamba::m2::vec_rows_ok;
  const int gs = p->group_size;
  const auto ok = [&](const void* q, int bytes, int64_t stride) {
    return vec_rows_ok(q, bytes, stride, gs, p->rows);
  };
  const bool vec = ok(p->y, dtype_bytes(p->y_dtype), p->y_row_stride) && ok(p->z, 1, p->z_row_stride) &&
                   ok(p->weight, 4, 0) && ok(p->out, 2, p->out_row_stride);
  const quamba::m2::NormLaunch l = quamba::m2::norm_launch(gs);
  const dim3 grid(static_cast<unsigned>(blocks));
  if (l.per == 16) {
    if (vec) {
      quamba::quant_gated_rms_norm_kernel<16, true><<<grid, l.threads, 0, stream>>>(*p);
    } else {
      quamba::quant_gated_rms_norm_kernel<16, false><<<grid, l.threads, 0, stream>>>(*p);
    }
  } else if (vec) {
    quamba::quant_gated_rms_norm_kernel<32, true><<<grid, l.threads, 0, stream>>>(*p);
  } else {
    quamba::quant_gated_rms_norm_kernel<32, false><<<grid, l.threads, 0, stream>>>(*p);
  }
  return cudaGetLastError();
}
