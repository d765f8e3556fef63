// QuantHadamard: y = int8(clamp(rint((x @ M^T) / out_scale))) for M = kron(H_b, H_{2^k}) / sqrt(n).
// Contract: quamba_edge/ops/quant_hadamard.py (see quamba_kernels/quant_hadamard.h).
// Also the float-output helper quamba_hadamard (quamba_kernels/hadamard.h): y = x @ M^T as fp32 / fp16 / bf16.
// It lives in this file, not its own .cu, so that both entries instantiate the one kernel body below (the output
// kind is a template parameter) without a shared header of kernel code.
//
// One block per row. The Walsh-Hadamard transform of every contiguous 2^k chunk runs as radix-16/8/4/2
// passes (each thread gathers R elements at stride s, does log2 R butterfly stages in registers, scatters
// them back) over an fp32 copy of the row in shared memory (one padding word every 16: the passes are free
// of bank conflicts); the first pass reads the row straight from global memory and, for a pure power of
// two, the last pass writes the result. The b x b base factor (entries read from the passed matrix,
// the 1/sqrt(n) included) then mixes the chunks column by column: thread (q, i-group) holds
// z[j] = chunk_j[q] for all j and writes out[i][q] = sum_j Mb[i][j] z[j] for its rows i.
// The int8 output's scale is folded into the factor (Mb / out_scale, or M[0][0] / out_scale), which the op's
// contract allows (fp32 rounding only: int8 within +-1 LSB); the clamp is always applied (pitfall F.12).
// The float output passes a scale of 1 (__fdiv_rn(m, 1) == m exactly) and rounds the fp32 value once to its dtype.
#include "quamba_kernels/hadamard.h"
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

// What both entries hand the kernel besides the output: the input rows and the base factor, whose entries are
// divided by `scale` (out_scale for int8, 1 for float outputs).
struct Src {
  const void* x;
  int64_t x_row_stride;
  int x_dtype;
  int n;
  const float* base_matrix;
  float scale;
};

// The output kinds (the kernel's template parameter): row(r) is the writer of row r; w(i, v) stores element i
// of the transform, v already multiplied by the (scaled) factor.
struct Int8Out {
  int8_t* y;
  int64_t row_stride;
  struct Row {
    int8_t* y;
    __device__ __forceinline__ void operator()(int i, float v) const { y[i] = quantize_folded(v); }
  };
  __device__ __forceinline__ Row row(int64_t r) const { return {y + r * row_stride}; }
};

struct FloatOut {
  void* y;
  int64_t row_stride;
  int dtype;  // QUAMBA_DT_*: a block-uniform branch per store, cheaper than three more kernel instantiations
  struct Row {
    void* y;
    int64_t off;
    int dtype;
    __device__ __forceinline__ void operator()(int i, float v) const { m2::store_float(y, off + i, dtype, v); }
  };
  __device__ __forceinline__ Row row(int64_t r) const { return {y, r * row_stride, dtype}; }
};

// One radix-R pass over index bits [log2s, log2s + log2 R): gather (from global on the first pass), butterfly,
// scatter (to the output times `factor` on the last pass of a pure power of two).
template <int R, bool FIRST, bool LAST, class W>
__device__ __forceinline__ void radix_pass(float* buf, int n, int log2s, const void* x, int64_t xoff, int dtype,
                                           const W& w, float factor) {
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
        w(i0 + k * s, v[k] * factor);
      } else {
        buf[pad(i0 + k * s)] = v[k];
      }
    }
  }
}

template <int R, class W>
__device__ __forceinline__ void radix_pass_any(bool first, bool last, float* buf, int n, int log2s, const void* x,
                                               int64_t xoff, int dtype, const W& w, float factor) {
  if (first && last) {
    radix_pass<R, true, true>(buf, n, log2s, x, xoff, dtype, w, factor);
  } else if (first) {
    radix_pass<R, true, false>(buf, n, log2s, x, xoff, dtype, w, factor);
  } else if (last) {
    radix_pass<R, false, true>(buf, n, log2s, x, xoff, dtype, w, factor);
  } else {
    radix_pass<R, false, false>(buf, n, log2s, x, xoff, dtype, w, factor);
  }
}

// BASE: the base factor b; IG: row groups of the b x b mixing (each thread computes b / IG outputs).
template <int BASE, int IG, class Out>
__global__ void hadamard_kernel(const Src src, const Out out, int log2p) {
  constexpr int IPT = BASE / IG;
  static_assert(BASE % IG == 0, "row groups");
  extern __shared__ float4 smem4[];
  float* mb = reinterpret_cast<float*>(smem4);  // [BASE][BASE] / scale (rounded up to 4 floats)
  constexpr int MB_FLOATS = (BASE * BASE + 3) / 4 * 4;
  float* buf = mb + MB_FLOATS;
  const int n = src.n;
  const int pw = 1 << log2p;
  const int64_t row = blockIdx.x;
  const int tid = threadIdx.x;
  const int64_t xoff = row * src.x_row_stride;
  const typename Out::Row yr = out.row(row);
  const float os = src.scale;

  if (BASE > 1) {
    for (int i = tid; i < BASE * BASE; i += blockDim.x) mb[i] = __fdiv_rn(src.base_matrix[i], os);
  }
  const float factor = BASE == 1 ? __fdiv_rn(src.base_matrix[0], os) : 1.0f;
  if (log2p == 0) {  // n == BASE: no butterflies
    if constexpr (BASE == 1) {
      if (tid == 0) yr(0, m2::load_float(src.x, xoff, src.x_dtype) * factor);
      return;
    } else {
      for (int i = tid; i < n; i += blockDim.x) buf[pad(i)] = m2::load_float(src.x, xoff + i, src.x_dtype);
    }
  }
  __syncthreads();  // mb (and buf) ready

  // Walsh-Hadamard transform of every contiguous chunk of length 2^k (bits 0 .. k-1 of the index)
  for (int b0 = 0; b0 < log2p;) {
    const int rem = log2p - b0;
    const int r = rem >= 4 ? 4 : rem;
    const bool first = b0 == 0, last = BASE == 1 && b0 + r == log2p;
    switch (r) {
      case 4: radix_pass_any<16>(first, last, buf, n, b0, src.x, xoff, src.x_dtype, yr, factor); break;
      case 3: radix_pass_any<8>(first, last, buf, n, b0, src.x, xoff, src.x_dtype, yr, factor); break;
      case 2: radix_pass_any<4>(first, last, buf, n, b0, src.x, xoff, src.x_dtype, yr, factor); break;
      default: radix_pass_any<2>(first, last, buf, n, b0, src.x, xoff, src.x_dtype, yr, factor); break;
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
      for (int i = 0; i < IPT; ++i) yr((i0 + i) * pw + q, acc[i]);
    }
  }
}

template <int BASE, int IG, class Out>
cudaError_t launch(const Src& src, const Out& out, int64_t rows, int log2p, cudaStream_t stream) {
  const int n = src.n, pw = 1 << log2p;
  int threads = BASE == 1 ? n / 16 : pw * IG;  // one radix-16 group / one mixing task per thread
  threads = threads < 32 ? 32 : (threads > 512 ? 512 : threads);
  threads = (threads + 31) / 32 * 32;
  constexpr int MB_FLOATS = (BASE * BASE + 3) / 4 * 4;
  const size_t smem = sizeof(float) * (MB_FLOATS + (BASE == 1 && log2p <= 4 ? 0 : n + (n >> 4) + 1));
  auto kernel = hadamard_kernel<BASE, IG, Out>;
  if (smem > 48 * 1024) {
    QUAMBA_CUDA_TRY(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  }
  kernel<<<static_cast<unsigned>(rows), threads, smem, stream>>>(src, out, log2p);
  return cudaGetLastError();
}

// The checks both entries make; *log2p = log2(n / base) on success.
cudaError_t check_common(const void* x, const void* y, const float* base_matrix, int64_t rows, int n, int base,
                         int x_dtype, int* log2p) {
  QUAMBA_CHECK_ARG(x != nullptr && y != nullptr && base_matrix != nullptr);
  QUAMBA_CHECK_ARG(rows >= 1 && rows <= 0x7fffffffLL && n >= 1 && n <= 32768);
  QUAMBA_CHECK_ARG(x_dtype == QUAMBA_DT_F32 || x_dtype == QUAMBA_DT_F16 || x_dtype == QUAMBA_DT_BF16);
  QUAMBA_CHECK_ARG(base >= 1 && n % base == 0);
  const int pw = n / base;
  QUAMBA_CHECK_ARG((pw & (pw - 1)) == 0);
  int l = 0;
  while ((1 << l) < pw) ++l;
  *log2p = l;
  return cudaSuccess;
}

template <class Out>
cudaError_t dispatch(const Src& src, const Out& out, int64_t rows, int base, int log2p, cudaStream_t stream) {
  switch (base) {
    case 1: return launch<1, 1>(src, out, rows, log2p, stream);
    case 12: return launch<12, 2>(src, out, rows, log2p, stream);
    case 20: return launch<20, 2>(src, out, rows, log2p, stream);
    case 28: return launch<28, 4>(src, out, rows, log2p, stream);
    case 40: return launch<40, 4>(src, out, rows, log2p, stream);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace
}  // namespace quamba

extern "C" QUAMBA_API cudaError_t quamba_quant_hadamard(const QuambaQuantHadamardParams* p, cudaStream_t stream) {
  QUAMBA_CHECK_ARG(p != nullptr);
  int log2p = 0;
  QUAMBA_CUDA_TRY(quamba::check_common(p->x, p->y, p->base_matrix, p->rows, p->n, p->base, p->x_dtype, &log2p));
  const quamba::Src src{p->x, p->x_row_stride, p->x_dtype, p->n, p->base_matrix, p->out_scale};
  return quamba::dispatch(src, quamba::Int8Out{p->y, p->y_row_stride}, p->rows, p->base, log2p, stream);
}

extern "C" QUAMBA_API cudaError_t quamba_hadamard(const QuambaHadamardParams* p, cudaStream_t stream) {
  QUAMBA_CHECK_ARG(p != nullptr);
  int log2p = 0;
  QUAMBA_CUDA_TRY(quamba::check_common(p->x, p->y, p->base_matrix, p->rows, p->n, p->base, p->x_dtype, &log2p));
  QUAMBA_CHECK_ARG(p->y_dtype == QUAMBA_DT_F32 || p->y_dtype == QUAMBA_DT_F16 || p->y_dtype == QUAMBA_DT_BF16);
  QUAMBA_CHECK_ARG(p->rows == 1 || p->y_row_stride >= p->n);  // rows are written concurrently: no overlap
  const quamba::Src src{p->x, p->x_row_stride, p->x_dtype, p->n, p->base_matrix, 1.0f};
  return quamba::dispatch(src, quamba::FloatOut{p->y, p->y_row_stride, p->y_dtype}, p->rows, p->base, log2p, stream);
}
