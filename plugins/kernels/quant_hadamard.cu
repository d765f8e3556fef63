// QuantHadamard: y = int8(clamp(rint((x @ M^T) / out_scale))) for M = kron(H_b, H_{2^k}) / sqrt(n).
// Contract: quamba_edge/ops/quant_hadamard.py (see quamba_kernels/quant_hadamard.h).
//
// One block per row. The Walsh-Hadamard transform of every contiguous 2^k chunk runs as radix-16/8/4/2
// passes (each thread gathers R elements at stride s, does log2 R butterfly stages in registers, scatters
// them back) over an fp32 copy of the row in shared memory (one padding word every 16: the passes are free
// of bank conflicts); the first pass reads the row straight from global memory and, for a pure power of
// two, the last pass writes the int8 result. The b x b base factor (entries read from the passed matrix,
// the 1/sqrt(n) included) then mixes the chunks column by column: thread (q, i-group) holds
// z[j] = chunk_j[q] for all j and writes out[i][q] = sum_j Mb[i][j] z[j] for its rows i.
// The output scale is folded into the factor (Mb / out_scale, or M[0][0] / out_scale), which the op's
// contract allows (fp32 rounding only: int8 within +-1 LSB); the clamp is always applied (pitfall F.12).
#include "quamba_kernels/quant_hadamard.h"

#include "quamba_kernels/common.cuh"
#include "quamba_kernels/mamba2_common.cuh"

namespace quamba {
namespace {

__device__ __forceinline__ int pad(int i) { return i + (i >> 4); }

__device__ __forceinline__ int8_t quantize_folded(float v) {  // v is already divided by the scale
  float q = rintf(v);
  q = fminf(fmaxf(q, -128.0f), 127.0f);
  return static_cast<int8_t>(__float2int_rn(q));
}

// One radix-R pass over index bits [log2s, log2s + log2 R): gather (from global on the first pass), butterfly,
// scatter (to the int8 output times `factor` on the last pass of a pure power of two).
template <int R, bool FIRST, bool LAST>
__device__ __forceinline__ void radix_pass(float* buf, int n, int log2s, const void* x, int64_t xoff, int dtype,
                                           int8_t* y, float factor) {
  const int s = 1 << log2s;
  for (int gi = threadIdx.x; gi < n / R; gi += blockDim.x) {
    const int low = gi & (s - 1);
    const int i0 = ((gi >> log2s) * R << log2s) + low;
    float v[R];
#pragma unroll
    for (int k = 0; k < R; ++k) v[k] = FIRST ? m2::load_float(x, xoff + i0 + k * s, dtype) : buf[pad(i0 + k * s)];
#pragma unroll
    for (int hh = 1; hh < R; hh <<= 1) {
#pragma unroll
      for (int k = 0; k < R; ++k) {
        if ((k & hh) == 0) {
          const float a = v[k], c = v[k + hh];
          v[k] = a + c;
          v[k + hh] = a - c;
        }
      }
    }
#pragma unroll
    for (int k = 0; k < R; ++k) {
      if (LAST) {
        y[i0 + k * s] = quantize_folded(v[k] * factor);
      } else {
        buf[pad(i0 + k * s)] = v[k];
      }
    }
  }
}

template <int R>
__device__ __forceinline__ void radix_pass_any(bool first, bool last, float* buf, int n, int log2s, const void* x,
                                               int64_t xoff, int dtype, int8_t* y, float factor) {
  if (first && last) {
    radix_pass<R, true, true>(buf, n, log2s, x, xoff, dtype, y, factor);
  } else if (first) {
    radix_pass<R, true, false>(buf, n, log2s, x, xoff, dtype, y, factor);
  } else if (last) {
    radix_pass<R, false, true>(buf, n, log2s, x, xoff, dtype, y, factor);
  } else {
    radix_pass<R, false, false>(buf, n, log2s, x, xoff, dtype, y, factor);
  }
}

// BASE: the base factor b; IG: row groups of the b x b mixing (each thread computes b / IG outputs).
template <int BASE, int IG>
__global__ void quant_hadamard_kernel(const QuambaQuantHadamardParams p, int log2p) {
  constexpr int IPT = BASE / IG;
  static_assert(BASE % IG == 0, "row groups");
  extern __shared__ float4 smem4[];
  float* mb = reinterpret_cast<float*>(smem4);  // [BASE][BASE] / out_scale (rounded up to 4 floats)
  constexpr int MB_FLOATS = (BASE * BASE + 3) / 4 * 4;
  float* buf = mb + MB_FLOATS;
  const int n = p.n;
  const int pw = 1 << log2p;
  const int64_t row = blockIdx.x;
  const int tid = threadIdx.x;
  const int64_t xoff = row * p.x_row_stride;
  int8_t* yr = p.y + row * p.y_row_stride;
  const float os = p.out_scale;

  if (BASE > 1) {
    for (int i = tid; i < BASE * BASE; i += blockDim.x) mb[i] = __fdiv_rn(p.base_matrix[i], os);
  }
  const float factor = BASE == 1 ? __fdiv_rn(p.base_matrix[0], os) : 1.0f;
  if (log2p == 0) {  // n == BASE: no butterflies
    if constexpr (BASE == 1) {
      if (tid == 0) yr[0] = quantize_folded(m2::load_float(p.x, xoff, p.x_dtype) * factor);
      return;
    } else {
      for (int i = tid; i < n; i += blockDim.x) buf[pad(i)] = m2::load_float(p.x, xoff + i, p.x_dtype);
    }
  }
  __syncthreads();  // mb (and buf) ready

  // Walsh-Hadamard transform of every contiguous chunk of length 2^k (bits 0 .. k-1 of the index)
  for (int b0 = 0; b0 < log2p;) {
    const int rem = log2p - b0;
    const int r = rem >= 4 ? 4 : rem;
    const bool first = b0 == 0, last = BASE == 1 && b0 + r == log2p;
    switch (r) {
      case 4: radix_pass_any<16>(first, last, buf, n, b0, p.x, xoff, p.x_dtype, yr, factor); break;
      case 3: radix_pass_any<8>(first, last, buf, n, b0, p.x, xoff, p.x_dtype, yr, factor); break;
      case 2: radix_pass_any<4>(first, last, buf, n, b0, p.x, xoff, p.x_dtype, yr, factor); break;
      default: radix_pass_any<2>(first, last, buf, n, b0, p.x, xoff, p.x_dtype, yr, factor); break;
    }
    b0 += r;
    if (!last) __syncthreads();
  }

  if constexpr (BASE > 1) {
    for (int w = tid; w < pw * IG; w += blockDim.x) {
      const int q = w & (pw - 1), i0 = (w >> log2p) * IPT;
      float z[BASE];
#pragma unroll
      for (int j = 0; j < BASE; ++j) z[j] = buf[pad(j * pw + q)];
      float acc[IPT];
#pragma unroll
      for (int i = 0; i < IPT; ++i) acc[i] = 0.0f;
#pragma unroll
      for (int j4 = 0; j4 < BASE / 4; ++j4) {
#pragma unroll
        for (int i = 0; i < IPT; ++i) {
          const float4 m = reinterpret_cast<const float4*>(mb + (i0 + i) * BASE)[j4];  // BASE % 4 == 0
          acc[i] = fmaf(m.x, z[4 * j4], acc[i]);
          acc[i] = fmaf(m.y, z[4 * j4 + 1], acc[i]);
          acc[i] = fmaf(m.z, z[4 * j4 + 2], acc[i]);
          acc[i] = fmaf(m.w, z[4 * j4 + 3], acc[i]);
        }
      }
#pragma unroll
      for (int i = 0; i < IPT; ++i) yr[(i0 + i) * pw + q] = quantize_folded(acc[i]);
    }
  }
}

template <int BASE, int IG>
cudaError_t launch(const QuambaQuantHadamardParams& p, int log2p, cudaStream_t stream) {
  const int n = p.n, pw = 1 << log2p;
  int threads = BASE == 1 ? n / 16 : pw * IG;  // one radix-16 group / one mixing task per thread
  threads = threads < 32 ? 32 : (threads > 512 ? 512 : threads);
  threads = (threads + 31) / 32 * 32;
  constexpr int MB_FLOATS = (BASE * BASE + 3) / 4 * 4;
  const size_t smem = sizeof(float) * (MB_FLOATS + (BASE == 1 && log2p <= 4 ? 0 : n + (n >> 4) + 1));
  auto kernel = quant_hadamard_kernel<BASE, IG>;
  if (smem > 48 * 1024) {
    QUAMBA_CUDA_TRY(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  }
  kernel<<<static_cast<unsigned>(p.rows), threads, smem, stream>>>(p, log2p);
  return cudaGetLastError();
}

}  // namespace
}  // namespace quamba

extern "C" QUAMBA_API cudaError_t quamba_quant_hadamard(const QuambaQuantHadamardParams* p, cudaStream_t stream) {
  QUAMBA_CHECK_ARG(p != nullptr && p->x != nullptr && p->y != nullptr && p->base_matrix != nullptr);
  QUAMBA_CHECK_ARG(p->rows >= 1 && p->rows <= 0x7fffffffLL && p->n >= 1 && p->n <= 32768);
  QUAMBA_CHECK_ARG(p->x_dtype == QUAMBA_DT_F32 || p->x_dtype == QUAMBA_DT_F16 || p->x_dtype == QUAMBA_DT_BF16);
  QUAMBA_CHECK_ARG(p->base >= 1 && p->n % p->base == 0);
  const int pw = p->n / p->base;
  QUAMBA_CHECK_ARG((pw & (pw - 1)) == 0);
  int log2p = 0;
  while ((1 << log2p) < pw) ++log2p;
  switch (p->base) {
    case 1: return quamba::launch<1, 1>(*p, log2p, stream);
    case 12: return quamba::launch<12, 2>(*p, log2p, stream);
    case 20: return quamba::launch<20, 2>(*p, log2p, stream);
    case 28: return quamba::launch<28, 4>(*p, log2p, stream);
    case 40: return quamba::launch<40, 4>(*p, log2p, stream);
    default: return cudaErrorInvalidValue;
  }
}
