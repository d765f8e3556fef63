// Device helpers shared by every kernel in plugins/kernels (CUDA C++17, only for .cu files).
//
// Numerics follow quamba_edge/ops/_common.py exactly; the whole project builds WITHOUT fast-math
// (no --use_fast_math, no -ftz/-prec-div=false), and the helpers below spell the IEEE operations out so
// that a stray flag cannot change them:
//   quantize_int8(y, s) = clamp(round_half_even(y / s), -128, 127)   (true fp32 division, rintf)
//   silu(y)             = y / (1 + expf(-y))                          (true fp32 division)
//   softplus20(x)       = x > 20 ? x : log1pf(expf(x))
//   dequant(q, s)       = float(q) * s
//   acc_to_f32(acc)     = __int2float_rn(acc)                        (round to nearest even)
// nvcc contracts `a * b + c` into one FMA by default (-fmad=true), which rounds once instead of twice.
// Where the reference does a separate fp32 multiply and add and the result is then quantized, write
// __fmul_rn / __fadd_rn (never contracted) so that int8 outputs agree bit for bit.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "quamba_kernels/abi.h"

// Evaluate a CUDA runtime call; on failure return its error from the enclosing function.
#define QUAMBA_CUDA_TRY(expr)                         \
  do {                                                \
    cudaError_t quamba_err_ = (expr);                 \
    if (quamba_err_ != cudaSuccess) return quamba_err_; \
  } while (0)

// Return cudaErrorInvalidValue from the enclosing function when a host-side check fails.
#define QUAMBA_CHECK_ARG(cond)                                  \
  do {                                                          \
    if (!(cond)) return cudaErrorInvalidValue;                  \
  } while (0)

namespace quamba {

template <typename T>
__host__ __device__ __forceinline__ constexpr T ceil_div(T a, T b) {
  return (a + b - 1) / b;
}

__device__ __forceinline__ float dequant(int8_t q, float s) { return static_cast<float>(q) * s; }

__device__ __forceinline__ float acc_to_f32(int acc) { return __int2float_rn(acc); }

// clamp(round_half_even(y / s), -128, 127). NaN maps to 0 (the reference's int8 cast is undefined there).
__device__ __forceinline__ int8_t quantize_int8(float y, float s) {
  float q = rintf(__fdiv_rn(y, s));
  q = fminf(fmaxf(q, -128.0f), 127.0f);
  return static_cast<int8_t>(__float2int_rn(q));
}

__device__ __forceinline__ float silu(float y) { return __fdiv_rn(y, 1.0f + expf(-y)); }

__device__ __forceinline__ float softplus20(float x) { return x > 20.0f ? x : log1pf(expf(x)); }

// fp16 <-> fp32 without relying on the half operators (torch builds with __CUDA_NO_HALF_OPERATORS__).
__device__ __forceinline__ uint16_t f32_to_f16_bits(float x) {
  return __half_as_ushort(__float2half_rn(x));
}
__device__ __forceinline__ float f16_bits_to_f32(uint16_t b) {
  return __half2float(__ushort_as_half(b));
}

// Load type selector for the fp16 variants: an element of the input tensors is either int8 (scaled by
// its tensor scale) or fp16 bits (scale = 1). `load_as_f32(p[i], s)` covers both.
__device__ __forceinline__ float load_as_f32(int8_t q, float s) { return dequant(q, s); }
__device__ __forceinline__ float load_as_f32(uint16_t h, float /*s*/) { return f16_bits_to_f32(h); }

// 2^x with one MUFU.EX2 (ex2.approx.ftz: the 2-ulp approximation exp2f uses, without exp2f's subnormal-result
// path of 3 more instructions, so results below 2^-126 flush to 0). exp(d A) = ex2_ftz(d * (A * log2 e)).
__device__ __forceinline__ float ex2_ftz(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// K fp16 values held as their bits in (K + 1) / 2 32-bit registers: loaded early (the loads stay in flight),
// converted to fp32 by get() where they are used.
template <int K>
struct F16Regs {
  static constexpr int W = (K + 1) / 2;
  uint32_t w[W];
  __device__ __forceinline__ float get(int i) const {
    return f16_bits_to_f32(static_cast<uint16_t>(w[i / 2] >> (16 * (i % 2))));
  }
  __device__ __forceinline__ void zero() {
#pragma unroll
    for (int j = 0; j < W; ++j) w[j] = 0u;
  }
  // K values with the fewest accesses (src aligned to min(2 K, 16) bytes)
  __device__ __forceinline__ void load_vec(const uint16_t* src) {
    if constexpr (K == 1) {
      w[0] = src[0];
    } else if constexpr (K == 2) {
      w[0] = *reinterpret_cast<const uint32_t*>(src);
    } else if constexpr (K == 4) {
      const uint2 v = *reinterpret_cast<const uint2*>(src);
      w[0] = v.x;
      w[1] = v.y;
    } else {
      static_assert(K % 8 == 0, "fp16 vector width");
#pragma unroll
      for (int j = 0; j < K / 8; ++j) {
        const uint4 v = reinterpret_cast<const uint4*>(src)[j];
        w[4 * j] = v.x;
        w[4 * j + 1] = v.y;
        w[4 * j + 2] = v.z;
        w[4 * j + 3] = v.w;
      }
    }
  }
  // element i only when i < valid (one 2-byte access each), the others 0
  __device__ __forceinline__ void load_n(const uint16_t* src, int valid) {
    zero();
#pragma unroll
    for (int i = 0; i < K; ++i)
      if (i < valid) w[i / 2] |= static_cast<uint32_t>(src[i]) << (16 * (i % 2));
  }
};

// Float activations as fp16 bits (uint16_t) or fp32, for kernels templated on their activation type:
// to_f32 widens exactly, from_f32<T> rounds to nearest even (fp16) or passes (fp32).
__device__ __forceinline__ float to_f32(float v) { return v; }
__device__ __forceinline__ float to_f32(uint16_t b) { return f16_bits_to_f32(b); }
template <typename T>
__device__ __forceinline__ T from_f32(float v);
template <>
__device__ __forceinline__ float from_f32<float>(float v) { return v; }
template <>
__device__ __forceinline__ uint16_t from_f32<uint16_t>(float v) { return f32_to_f16_bits(v); }

// Element i of a buffer whose dtype is known only at run time: fp16 bits when f16, else fp32.
__device__ __forceinline__ float load_f16_or_f32(const void* p, int64_t i, bool f16) {
  return f16 ? f16_bits_to_f32(static_cast<const uint16_t*>(p)[i]) : static_cast<const float*>(p)[i];
}

// N consecutive elements of T moved as one access (N * sizeof(T) bytes, that alignment required).
template <typename T, int N>
struct alignas(sizeof(T) * N) VecPack {
  T v[N];
};

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

}  // namespace quamba
