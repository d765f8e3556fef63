// quant_selective_state_update: one decode token of the Mamba1 scan, int8 (or fp32) state in place.
// Contract: quamba_edge/ops/quant_selective_scan.py / quant_selective_state_update.py;
// ABI: include/quamba_kernels/quant_selective_state_update.h.
//
// Memory-bound: the state is read once and written once. A block covers one batch row b and 128 / TPC
// channels; TPC lanes per channel own NPT consecutive states each (NPT = 16: one 16-byte load / store
// of the int8 state and of A_log per lane, the whole channel in one lane for N = 16; NPT = 4 for small
// grids, where more lanes hide latency better) and reduce y = sum_n h C with warp shuffles. Hoisted out
// of the per-element work, once per block into shared memory:
// - A = -exp(A_log_q * A_log_scale) as a 256-entry table over the int8 code (one expf per code, not per
//   (b, e, n) element),
// - the dequantized B and C rows of b.
// Every global load is issued before that block's single barrier. int8 <-> fp32 by exact magic-number
// arithmetic; the requantization multiplies by 1 / state_scale (correctly rounded on the host): the
// product differs from the IEEE quotient by < |h / s| * 2^-23, so the rounded int8 values can differ only
// where h / s lies within 1.6e-5 of a .5 boundary, by one LSB (the contract's ±1 LSB).
#include "quamba_kernels/common.cuh"
#include "quamba_kernels/quant_selective_state_update.h"

namespace quamba {
namespace {

constexpr int kThreads = 128;
constexpr int kMaxN = 256;
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kMagicI8 = 8388736.0f;      // 2^23 + 128: bits 0x4B0000uu hold 2^23 + (q + 128)
constexpr float kMagicRound = 12582912.0f;  // 1.5 * 2^23: x + it rounds x to an integer (half to even)

__device__ __forceinline__ float i8_byte_to_f32(int u, int k) {  // u = word ^ 0x80808080
  return __int_as_float(__byte_perm(u, 0x4B000000, 0x7440 | k)) - kMagicI8;
}

// clamp(round_half_even(v), -128, 127) as the low byte of the result (NaN -> -128, as quantize_int8).
__device__ __forceinline__ int f32_to_i8_bits(float v) {
  return __float_as_int(fminf(fmaxf(v, -128.0f), 127.0f) + kMagicRound);
}

template <int NPT>
__device__ __forceinline__ void load_words(const int8_t* src, bool vec, int valid, int (&w)[NPT / 4]) {
  if (vec) {
    if constexpr (NPT == 4) {
      w[0] = *reinterpret_cast<const int*>(src);
    } else {
      const int4 v = *reinterpret_cast<const int4*>(src);
      w[0] = v.x; w[1] = v.y; w[2] = v.z; w[3] = v.w;
    }
  } else {
#pragma unroll
    for (int j = 0; j < NPT / 4; ++j) {
      int x = 0;
#pragma unroll
      for (int k = 0; k < 4; ++k)
        if (4 * j + k < valid) x |= int(uint8_t(src[4 * j + k])) << (8 * k);
      w[j] = x;
    }
  }
}

template <int NPT, int TPC, bool kStateInt8>
__global__ void __launch_bounds__(kThreads)
quamba_selective_state_update_kernel(const QuambaSelectiveStateUpdateParams p, const float inv_state_scale,
                                     const bool vec) {
  static_assert(NPT == 4 || NPT == 16, "NPT");
  constexpr int NW = NPT / 4;
  constexpr int CPB = kThreads / TPC;  // channels per block
  __shared__ float sA[256];            // A for the int8 code (uint8 index)
  __shared__ __align__(16) float sB[kMaxN], sC[kMaxN];

  const int tid = threadIdx.x;
  const int b = blockIdx.y;
  const int e_raw = blockIdx.x * CPB + tid / TPC;
  const int sub = tid % TPC;
  const bool active = e_raw < p.dim;
  const int e = active ? e_raw : 0;
  const int N = p.dstate;
  const int n0 = sub * NPT;
  const int valid = active ? max(0, min(NPT, N - n0)) : 0;
  const bool lead = active && sub == 0;

  // ---- every global load first
  const int u_q = p.u[b * p.u_stride_b + e];
  const int dt_q = p.dt[b * p.dt_stride_b + e];
  const int bias_q = p.dt_bias ? p.dt_bias[e] : 0;
  int d_q = 0, z_q = 0;
  if (lead) {
    if (p.D) d_q = p.D[e];
    if (p.z) z_q = p.z[b * p.z_stride_b + e];
  }
  constexpr int kFill = 2 * kMaxN / kThreads;
  int bc_q[kFill];
#pragma unroll
  for (int i = 0; i < kFill; ++i) {
    const int t = tid + i * kThreads;
    bc_q[i] = 0;
    if (t < N) bc_q[i] = p.Bm[b * p.B_stride_b + t];
    else if (t >= kMaxN && t - kMaxN < N) bc_q[i] = p.Cm[b * p.C_stride_b + (t - kMaxN)];
  }
  int a_w[NW], s_w[NW];
  float h[NPT];
  const int64_t off = (static_cast<int64_t>(b) * p.dim + e) * N + n0;
  if (valid > 0) {
    load_words<NPT>(p.A_log + static_cast<int64_t>(e) * N + n0, vec, valid, a_w);
    if (kStateInt8) {
      load_words<NPT>(static_cast<const int8_t*>(p.state) + off, vec, valid, s_w);
    } else {
      const float* src = static_cast<const float*>(p.state) + off;
      if (vec) {
#pragma unroll
        for (int i = 0; i < NPT; i += 4) {
          const float4 f = *reinterpret_cast<const float4*>(src + i);
          h[i] = f.x; h[i + 1] = f.y; h[i + 2] = f.z; h[i + 3] = f.w;
        }
      } else {
#pragma unroll
        for (int i = 0; i < NPT; ++i) h[i] = i < valid ? src[i] : 0.0f;
      }
    }
  } else {
#pragma unroll
    for (int j = 0; j < NW; ++j) a_w[j] = s_w[j] = 0;
#pragma unroll
    for (int i = 0; i < NPT; ++i) h[i] = 0.0f;
  }

  // ---- tables of the block (one barrier)
#pragma unroll
  for (int i = 0; i < 256 / kThreads; ++i) {
    const int t = tid + i * kThreads;
    sA[t] = -expf(dequant(static_cast<int8_t>(t), p.A_log_scale));
  }
#pragma unroll
  for (int i = 0; i < kFill; ++i) {
    const int t = tid + i * kThreads;
    if (t < kMaxN) sB[t] = dequant(static_cast<int8_t>(bc_q[i]), p.B_scale);
    else sC[t - kMaxN] = dequant(static_cast<int8_t>(bc_q[i]), p.C_scale);
  }
  if (kStateInt8) {
#pragma unroll
    for (int j = 0; j < NW; ++j) {
      const int u = s_w[j] ^ 0x80808080;
#pragma unroll
      for (int k = 0; k < 4; ++k) h[4 * j + k] = i8_byte_to_f32(u, k) * p.state_scale;
    }
  }
  const float u = dequant(static_cast<int8_t>(u_q), p.u_scale);
  float dt = dequant(static_cast<int8_t>(dt_q), p.dt_scale);
  if (p.dt_bias) dt = dt + dequant(static_cast<int8_t>(bias_q), p.dt_bias_scale);
  const float delta = softplus20(dt);
  const float du = delta * u;
  __syncthreads();

  // ---- h = h_prev * exp(delta A) + (delta u) B (separate fp32 multiply and add, as the reference)
  float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
  for (int j = 0; j < NW; ++j) {
    const float4 bv = *reinterpret_cast<const float4*>(sB + n0 + 4 * j);
    const float4 cv = *reinterpret_cast<const float4*>(sC + n0 + 4 * j);
    const float bb[4] = {bv.x, bv.y, bv.z, bv.w}, cc[4] = {cv.x, cv.y, cv.z, cv.w};
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const int i = 4 * j + k;
      const float A = sA[__byte_perm(a_w[j], 0, 0x4440 | k)];
      const float dA = exp2f(delta * A * kLog2e);
      h[i] = __fadd_rn(__fmul_rn(h[i], dA), __fmul_rn(du, bb[k]));
      // lanes past N (valid < NPT) see the zero-filled tail of sB / sC; keep their y partial exactly 0
      if (i < valid) acc[k] = fmaf(h[i], cc[k], acc[k]);
    }
  }
  float y = (acc[0] + acc[1]) + (acc[2] + acc[3]);

  if (valid > 0) {
    if (kStateInt8) {
      int w[NW];
#pragma unroll
      for (int j = 0; j < NW; ++j) {
        int q[4];
#pragma unroll
        for (int k = 0; k < 4; ++k) q[k] = f32_to_i8_bits(h[4 * j + k] * inv_state_scale);
        w[j] = __byte_perm(__byte_perm(q[0], q[1], 0x0040), __byte_perm(q[2], q[3], 0x0040), 0x5410);
      }
      int8_t* dst = static_cast<int8_t*>(p.new_state) + off;
      if (vec) {
        if constexpr (NPT == 4) *reinterpret_cast<int*>(dst) = w[0];
        else *reinterpret_cast<int4*>(dst) = make_int4(w[0], w[1], w[2], w[3]);
      } else {
#pragma unroll
        for (int i = 0; i < NPT; ++i)
          if (i < valid) dst[i] = static_cast<int8_t>((w[i / 4] >> (8 * (i % 4))) & 0xff);
      }
    } else {
      float* dst = static_cast<float*>(p.new_state) + off;
      if (vec) {
#pragma unroll
        for (int i = 0; i < NPT; i += 4)
          *reinterpret_cast<float4*>(dst + i) = make_float4(h[i], h[i + 1], h[i + 2], h[i + 3]);
      } else {
#pragma unroll
        for (int i = 0; i < NPT; ++i)
          if (i < valid) dst[i] = h[i];
      }
    }
  }
  // every lane of the warp takes part in the reduction (aligned groups of TPC lanes per channel)
#pragma unroll
  for (int o = TPC / 2; o > 0; o >>= 1) y += __shfl_xor_sync(0xffffffffu, y, o);
  if (lead) {
    if (p.D) y = y + u * dequant(static_cast<int8_t>(d_q), p.D_scale);
    if (p.z) y = y * silu(dequant(static_cast<int8_t>(z_q), p.z_scale));
    p.y[b * p.y_stride_b + e] = f32_to_f16_bits(y);
  }
}

template <int NPT, int TPC>
cudaError_t launch(const QuambaSelectiveStateUpdateParams& p, bool vec, cudaStream_t stream) {
  constexpr int CPB = kThreads / TPC;
  const dim3 grid(static_cast<unsigned>(ceil_div(p.dim, CPB)), static_cast<unsigned>(p.batch));
  if (p.state_is_int8)
    quamba_selective_state_update_kernel<NPT, TPC, true><<<grid, kThreads, 0, stream>>>(p, 1.0f / p.state_scale, vec);
  else
    quamba_selective_state_update_kernel<NPT, TPC, false><<<grid, kThreads, 0, stream>>>(p, 1.0f, vec);
  return cudaGetLastError();
}

bool aligned(const void* ptr, uintptr_t a) { return (reinterpret_cast<uintptr_t>(ptr) & (a - 1)) == 0; }

template <int NPT>
cudaError_t dispatch(const QuambaSelectiveStateUpdateParams& p, cudaStream_t stream) {
  const int N = p.dstate;
  const uintptr_t a = NPT;  // int8 vectors of NPT bytes
  const uintptr_t af = p.state_is_int8 ? a : 16;
  const bool vec = N % NPT == 0 && aligned(p.A_log, a) && aligned(p.state, af) && aligned(p.new_state, af);
  const int lanes = (N + NPT - 1) / NPT;
  if (lanes <= 1) return launch<NPT, 1>(p, vec, stream);
  if (lanes <= 2) return launch<NPT, 2>(p, vec, stream);
  if (lanes <= 4) return launch<NPT, 4>(p, vec, stream);
  if (lanes <= 8) return launch<NPT, 8>(p, vec, stream);
  if (lanes <= 16) return launch<NPT, 16>(p, vec, stream);
  return launch<NPT, 32>(p, vec, stream);
}

}  // namespace
}  // namespace quamba

extern "C" QUAMBA_API cudaError_t quamba_quant_selective_state_update(const QuambaSelectiveStateUpdateParams* p,
                                                                      cudaStream_t stream) {
  QUAMBA_CHECK_ARG(p != nullptr);
  QUAMBA_CHECK_ARG(p->batch >= 1 && p->dim >= 1 && p->dstate >= 1 && p->dstate <= 256);
  QUAMBA_CHECK_ARG(p->batch <= 65535 && static_cast<int64_t>(p->batch) * p->dim * 32 < (int64_t{1} << 31));
  QUAMBA_CHECK_ARG(p->u && p->dt && p->A_log && p->Bm && p->Cm && p->state && p->new_state && p->y);
  // NPT 4 (4x the lanes: latency) while the NPT-16 grid would give each SM under ~2 blocks, else NPT 16.
  const int64_t lanes16 = static_cast<int64_t>(p->batch) * p->dim * ((p->dstate + 15) / 16);
  const bool small = p->dstate <= 128 && lanes16 < 32768;
  return small ? quamba::dispatch<4>(*p, stream) : quamba::dispatch<16>(*p, stream);
}
