// Device helpers of the Mamba2 / Hadamard / norm kernels (quant_ssd, quant_ssd_state_update,
// quant_hadamard, quant_add_rms_norm, quant_gated_rms_norm, add_rms_norm, gated_rms_norm). Builds on common.cuh; no fast-math.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#include "quamba_kernels/common.cuh"

#include "quamba_kernels/dtype_codes.h"

namespace quamba {
namespace m2 {

// Mamba2 time step (quamba_edge.ops.quant_ssd.mamba2_delta):
// clamp(softplus20(float(dt_q) * dt_scale + dt_bias), lo, hi), all fp32.
__device__ __forceinline__ float mamba2_delta(int8_t dt_q, float dt_scale, float dt_bias, float lo, float hi) {
  const float d = softplus20(dequant(dt_q, dt_scale) + dt_bias);
  return fminf(fmaxf(d, lo), hi);  // torch.clamp(min=lo, max=hi): max first, then min
}

// A = -exp(float(A_log_q) * A_log_scale)
__device__ __forceinline__ float mamba2_A(int8_t a_q, float a_scale) { return -expf(dequant(a_q, a_scale)); }

// One element of a float tensor of runtime dtype (QUAMBA_DT_*) as fp32 (uniform branch).
__device__ __forceinline__ float load_float(const void* base, int64_t i, int dtype) {
  if (dtype == QUAMBA_DT_F16) return __half2float(__ushort_as_half(static_cast<const uint16_t*>(base)[i]));
  if (dtype == QUAMBA_DT_BF16) return __bfloat162float(__ushort_as_bfloat16(static_cast<const uint16_t*>(base)[i]));
  return static_cast<const float*>(base)[i];
}

// Store fp32 into a float tensor of runtime dtype (round to nearest even).
__device__ __forceinline__ void store_float(void* base, int64_t i, int dtype, float v) {
  if (dtype == QUAMBA_DT_F16) {
    static_cast<uint16_t*>(base)[i] = __half_as_ushort(__float2half_rn(v));
  } else if (dtype == QUAMBA_DT_BF16) {
    static_cast<uint16_t*>(base)[i] = __bfloat16_as_ushort(__float2bfloat16_rn(v));
  } else {
    static_cast<float*>(base)[i] = v;
  }
}

// SSM state element i as fp32 (int8 x scale, or a float state).
__device__ __forceinline__ float load_state(const void* st, const float* scale, int64_t i, int64_t si, int type) {
  if (type == QUAMBA_SSD_STATE_INT8) return dequant(static_cast<const int8_t*>(st)[i], scale[si]);
  if (type == QUAMBA_SSD_STATE_F16) return __half2float(__ushort_as_half(static_cast<const uint16_t*>(st)[i]));
  return static_cast<const float*>(st)[i];
}

__device__ __forceinline__ void store_state(void* st, const float* scale, int64_t i, int64_t si, int type, float v) {
  if (type == QUAMBA_SSD_STATE_INT8) {
    static_cast<int8_t*>(st)[i] = quantize_int8(v, scale[si]);
  } else if (type == QUAMBA_SSD_STATE_F16) {
    static_cast<uint16_t*>(st)[i] = __half_as_ushort(__float2half_rn(v));
  } else {
    static_cast<float*>(st)[i] = v;
  }
}

// Sum over the `width` consecutive lanes of an aligned lane group (width a power of two <= 32).
template <int WIDTH>
__device__ __forceinline__ float group_sum(float v) {
#pragma unroll
  for (int o = WIDTH / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Block-wide sum (all threads get the result). `red` is shared scratch of >= 32 floats; the block size
// is a multiple of 32. Contains two __syncthreads().
__device__ __forceinline__ float block_sum(float v, float* red) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  v = warp_sum(v);
  if (lane == 0) red[warp] = v;
  __syncthreads();
  float t = lane < nwarps ? red[lane] : 0.0f;
  t = warp_sum(t);
  __syncthreads();  // red may be reused by the caller
  return t;
}

// fp32 rounded through a float dtype (QUAMBA_DT_*) and back: the value a store_float / load_float pair gives.
__device__ __forceinline__ float round_to(float v, int dtype) {
  if (dtype == QUAMBA_DT_F16) return __half2float(__float2half_rn(v));
  if (dtype == QUAMBA_DT_BF16) return __bfloat162float(__float2bfloat16_rn(v));
  return v;
}

// ---- the one-row (or one-group) RMSNorm kernels (quant_add_rms_norm, quant_gated_rms_norm and their float
// twins add_rms_norm, gated_rms_norm): one block per row (group) of n <= 16384 elements, element
// i = threadIdx.x + k * blockDim.x of the row in register k of each thread.

constexpr int kNormMaxThreads = 512;

// Launch shape over n elements: `per` elements per thread (16 up to 16 * kNormMaxThreads, else 32; the
// kernels' template argument) and a multiple of 32 threads, at least 64 from n >= 64.
struct NormLaunch {
  int per;
  int threads;
};

inline NormLaunch norm_launch(int n) {
  const int per = n <= 16 * kNormMaxThreads ? 16 : 32;
  int threads = ceil_div(ceil_div(n, per), 32) * 32;
  if (threads < 64) threads = n >= 64 ? 64 : 32;
  return NormLaunch{per, threads};
}

// A float dtype code the norm kernels take (QUAMBA_DT_F32 / F16 / BF16).
inline bool float_dtype(int t) { return t == QUAMBA_DT_F32 || t == QUAMBA_DT_F16 || t == QUAMBA_DT_BF16; }

// Two layouts of a row over the block's threads (register k of a thread holds element row_idx<V>(k)):
//   V = false: i = tid + k * T (any length, stride and alignment);
//   V = true:  chunks of 8 consecutive elements, i = 8 (tid + (k / 8) T) + k % 8, moved with 16-byte (8-byte
//              for int8) loads and stores: at one row per block (batch-1 decode) the scalar layout's per-element
//              loads, dtype branches and address arithmetic made the norms latency-bound (7.5-9.4 us for 2-5 K
//              elements on an H200, Nsight Compute). Needs n % 8 == 0 and aligned rows (vec_rows_ok).
template <bool V>
__device__ __forceinline__ int row_idx(int k) {
  return V ? 8 * (static_cast<int>(threadIdx.x) + (k >> 3) * static_cast<int>(blockDim.x)) + (k & 7)
           : static_cast<int>(threadIdx.x) + k * static_cast<int>(blockDim.x);
}

__device__ __forceinline__ void unpack8(float* v, uint4 u, int dtype) {  // 8 halves (fp16 or bf16) of u
  const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const uint16_t lo = static_cast<uint16_t>(w[j]), hi = static_cast<uint16_t>(w[j] >> 16);
    if (dtype == QUAMBA_DT_F16) {
      v[2 * j] = __half2float(__ushort_as_half(lo));
      v[2 * j + 1] = __half2float(__ushort_as_half(hi));
    } else {
      v[2 * j] = __bfloat162float(__ushort_as_bfloat16(lo));
      v[2 * j + 1] = __bfloat162float(__ushort_as_bfloat16(hi));
    }
  }
}

// This thread's elements of a float row of runtime dtype (from element `off` of base) as fp32, 0 from n on.
template <int K, bool V = false>
__device__ __forceinline__ void load_row(float (&v)[K], const void* base, int64_t off, int dtype, int n) {
  if constexpr (V) {
#pragma unroll
    for (int j = 0; j < K / 8; ++j) {
      const int i0 = row_idx<true>(8 * j);
      float* c = v + 8 * j;
      if (i0 >= n) {
#pragma unroll
        for (int e = 0; e < 8; ++e) c[e] = 0.0f;
      } else if (dtype == QUAMBA_DT_F32) {
        const float4* q = reinterpret_cast<const float4*>(static_cast<const float*>(base) + off + i0);
        const float4 a = q[0], b = q[1];
        c[0] = a.x, c[1] = a.y, c[2] = a.z, c[3] = a.w, c[4] = b.x, c[5] = b.y, c[6] = b.z, c[7] = b.w;
      } else {
        unpack8(c, *reinterpret_cast<const uint4*>(static_cast<const uint16_t*>(base) + off + i0), dtype);
      }
    }
  } else {
#pragma unroll
    for (int k = 0; k < K; ++k) {
      const int i = row_idx<false>(k);
      v[k] = i < n ? load_float(base, off + i, dtype) : 0.0f;
    }
  }
}

// This thread's elements of an int8 row (0 from n on).
template <int K, bool V = false>
__device__ __forceinline__ void load_row_i8(int8_t (&v)[K], const int8_t* base, int64_t off, int n) {
#pragma unroll
  for (int j = 0; j < (V ? K / 8 : K); ++j) {
    if constexpr (V) {
      const int i0 = row_idx<true>(8 * j);
      const uint2 u = i0 < n ? *reinterpret_cast<const uint2*>(base + off + i0) : make_uint2(0, 0);
#pragma unroll
      for (int e = 0; e < 8; ++e) v[8 * j + e] = static_cast<int8_t>((e < 4 ? u.x : u.y) >> (8 * (e & 3)));
    } else {
      const int i = row_idx<false>(j);
      v[j] = i < n ? base[off + i] : int8_t(0);
    }
  }
}

// Store this thread's elements (fp32, rounded to the row's float dtype) of a row; elements from n on are skipped.
template <int K, bool V = false>
__device__ __forceinline__ void store_row(void* base, int64_t off, int dtype, const float (&v)[K], int n) {
  if constexpr (V) {
#pragma unroll
    for (int j = 0; j < K / 8; ++j) {
      const int i0 = row_idx<true>(8 * j);
      if (i0 >= n) continue;
      const float* c = v + 8 * j;
      if (dtype == QUAMBA_DT_F32) {
        float4* q = reinterpret_cast<float4*>(static_cast<float*>(base) + off + i0);
        q[0] = make_float4(c[0], c[1], c[2], c[3]);
        q[1] = make_float4(c[4], c[5], c[6], c[7]);
      } else {
        uint32_t w[4];
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const uint32_t lo = dtype == QUAMBA_DT_F16 ? __half_as_ushort(__float2half_rn(c[2 * e]))
                                                     : __bfloat16_as_ushort(__float2bfloat16_rn(c[2 * e]));
          const uint32_t hi = dtype == QUAMBA_DT_F16 ? __half_as_ushort(__float2half_rn(c[2 * e + 1]))
                                                     : __bfloat16_as_ushort(__float2bfloat16_rn(c[2 * e + 1]));
          w[e] = lo | (hi << 16);
        }
        *reinterpret_cast<uint4*>(static_cast<uint16_t*>(base) + off + i0) = make_uint4(w[0], w[1], w[2], w[3]);
      }
    }
  } else {
#pragma unroll
    for (int k = 0; k < K; ++k) {
      const int i = row_idx<false>(k);
      if (i < n) store_float(base, off + i, dtype, v[k]);
    }
  }
}

// Store int8 elements of a row (elements from n on are skipped).
template <int K, bool V = false>
__device__ __forceinline__ void store_row_i8(int8_t* base, int64_t off, const int8_t (&q)[K], int n) {
#pragma unroll
  for (int j = 0; j < (V ? K / 8 : K); ++j) {
    if constexpr (V) {
      const int i0 = row_idx<true>(8 * j);
      if (i0 >= n) continue;
      uint32_t w[2] = {0u, 0u};
#pragma unroll
      for (int e = 0; e < 8; ++e) {
        w[e >> 2] |= static_cast<uint32_t>(static_cast<uint8_t>(q[8 * j + e])) << (8 * (e & 3));
      }
      *reinterpret_cast<uint2*>(base + off + i0) = make_uint2(w[0], w[1]);
    } else {
      const int i = row_idx<false>(j);
      if (i < n) base[off + i] = q[j];
    }
  }
}

// Host: `rows` rows of n elements at `ptr` (element size `bytes`, row stride `stride` elements, each row's
// elements taken from offsets that are multiples of n) fit the V layout: n % 8 == 0 and every 8-element chunk
// aligned to its access (16 bytes for float dtypes, 8 for int8). A null pointer (an absent operand) fits.
inline bool vec_rows_ok(const void* ptr, int bytes, int64_t stride, int n, int64_t rows) {
  if (ptr == nullptr) return true;
  const int64_t align = bytes == 1 ? 8 : 16;
  return n % 8 == 0 && reinterpret_cast<uintptr_t>(ptr) % align == 0 && (rows == 1 || (stride * bytes) % align == 0);
}

inline int dtype_bytes(int dtype) { return dtype == QUAMBA_DT_F32 ? 4 : 2; }  // the float dtype codes

// The RMSNorm factor rsqrtf(sum / n + eps) from each thread's partial sum of squares (block_sum: all threads
// of the block call it; `red` as there).
__device__ __forceinline__ float rms_rstd(float ss, float* red, int n, float eps) {
  const float ms = __fdiv_rn(block_sum(ss, red), static_cast<float>(n));
  return rsqrtf(ms + eps);
}

// Row of the int8 state's scale table for channel ch = h * P + p: state_scale_row[ch] for a compact table
// (e.g. Quamba2's G x 4 x 4 rows), else ch itself (an expanded [H, P, N] table).
__device__ __forceinline__ int64_t state_scale_row_of(const int32_t* state_scale_row, int64_t ch) {
  return state_scale_row != nullptr ? int64_t(state_scale_row[ch]) : ch;
}

// h / heads_per_group with gdiv = group_magic(heads_per_group) = ceil(2^32 / hpg) (0 for hpg = 1): exact for
// h < 2^16, since h * (gdiv * hpg - 2^32) < 2^16 * hpg. A multiply-high instead of an integer division.
__device__ __forceinline__ int group_of(int h, uint32_t gdiv) {
  return gdiv ? static_cast<int>(__umulhi(static_cast<uint32_t>(h), gdiv)) : h;
}

inline uint32_t group_magic(int heads_per_group) {
  return heads_per_group == 1 ? 0u
                              : static_cast<uint32_t>(((uint64_t(1) << 32) + uint64_t(heads_per_group) - 1) /
                                                      uint64_t(heads_per_group));
}

// K consecutive elements of a float SSM state (ST = QUAMBA_SSD_STATE_F32 / _F16) in registers, from element i
// of st: load_vec with 16-byte (fp32, K % 4 == 0) or min(2 K, 16)-byte (fp16) accesses, the base + i aligned
// to them; load_n element by element, the first `valid` only (the others 0). get(k) is fp32.
template <int ST, int K>
struct StateRegs;

template <int K>
struct StateRegs<QUAMBA_SSD_STATE_F32, K> {
  float f[K];
  __device__ __forceinline__ float get(int k) const { return f[k]; }
  __device__ __forceinline__ void zero() {
#pragma unroll
    for (int k = 0; k < K; ++k) f[k] = 0.0f;
  }
  __device__ __forceinline__ void load_vec(const void* st, int64_t i) {
    static_assert(K % 4 == 0, "fp32 vector width");
    const float4* src = reinterpret_cast<const float4*>(static_cast<const float*>(st) + i);
#pragma unroll
    for (int j = 0; j < K / 4; ++j) {
      const float4 v = src[j];
      f[4 * j] = v.x;
      f[4 * j + 1] = v.y;
      f[4 * j + 2] = v.z;
      f[4 * j + 3] = v.w;
    }
  }
  __device__ __forceinline__ void load_n(const void* st, int64_t i, int valid) {
    const float* src = static_cast<const float*>(st) + i;
#pragma unroll
    for (int k = 0; k < K; ++k) f[k] = k < valid ? src[k] : 0.0f;
  }
};

template <int K>
struct StateRegs<QUAMBA_SSD_STATE_F16, K> {
  F16Regs<K> r;
  __device__ __forceinline__ float get(int k) const { return r.get(k); }
  __device__ __forceinline__ void zero() { r.zero(); }
  __device__ __forceinline__ void load_vec(const void* st, int64_t i) {
    r.load_vec(static_cast<const uint16_t*>(st) + i);
  }
  __device__ __forceinline__ void load_n(const void* st, int64_t i, int valid) {
    r.load_n(static_cast<const uint16_t*>(st) + i, valid);
  }
};

// Store K fp32 values into a float SSM state at element i (fp16: round to nearest even). VEC: the accesses
// of StateRegs::load_vec (same alignment); else element by element, the first `valid` only.
template <int ST, int K, bool VEC>
__device__ __forceinline__ void store_states(void* st, int64_t i, const float (&v)[K], int valid) {
  static_assert(ST == QUAMBA_SSD_STATE_F32 || ST == QUAMBA_SSD_STATE_F16, "float state");
  if constexpr (ST == QUAMBA_SSD_STATE_F32) {
    float* dst = static_cast<float*>(st) + i;
    if constexpr (VEC) {
      static_assert(K % 4 == 0, "fp32 vector width");
#pragma unroll
      for (int j = 0; j < K / 4; ++j)
        reinterpret_cast<float4*>(dst)[j] = make_float4(v[4 * j], v[4 * j + 1], v[4 * j + 2], v[4 * j + 3]);
    } else {
#pragma unroll
      for (int k = 0; k < K; ++k)
        if (k < valid) dst[k] = v[k];
    }
  } else {
    uint16_t* dst = static_cast<uint16_t*>(st) + i;
    if constexpr (VEC && K % 4 == 0) {
      uint32_t w[K / 2];
#pragma unroll
      for (int j = 0; j < K / 2; ++j)
        w[j] = static_cast<uint32_t>(f32_to_f16_bits(v[2 * j])) |
               (static_cast<uint32_t>(f32_to_f16_bits(v[2 * j + 1])) << 16);
      if constexpr (K == 4) {
        *reinterpret_cast<uint2*>(dst) = make_uint2(w[0], w[1]);
      } else {
        static_assert(K % 8 == 0, "fp16 vector width");
#pragma unroll
        for (int j = 0; j < K / 8; ++j)
          reinterpret_cast<uint4*>(dst)[j] = make_uint4(w[4 * j], w[4 * j + 1], w[4 * j + 2], w[4 * j + 3]);
      }
    } else {
#pragma unroll
      for (int k = 0; k < K; ++k)
        if (VEC || k < valid) dst[k] = f32_to_f16_bits(v[k]);
    }
  }
}

inline bool aligned(const void* p, unsigned bytes) {
  return (reinterpret_cast<uintptr_t>(p) % bytes) == 0;
}

}  // namespace m2
}  // namespace quamba
