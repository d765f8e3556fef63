// QuantSSDStateUpdate: one Mamba2 decode token, int8 (or float) SSM state read once, written once.
// Contract: quamba_edge/ops/quant_ssd_state_update.py (see quamba_kernels/quant_ssd_state_update.h).
//
// Memory bound, and at batch 1 latency bound, so the per-element instruction count is what matters:
// - a block covers (b, h, CPB channels); LN = N / NPT lanes per channel, each lane owns NPT states in
//   chunks of 4 (chunk j of lane l: n = (j * LN + l) * 4 .. +3), so every warp-wide access of the state
//   (4 bytes a lane) and of its scales (16 bytes a lane) is contiguous;
// - per (b, h) values are computed once per block: delta, exp(delta A), D (thread 0) and the dequantized
//   B, C rows of the group (all threads) go to shared memory behind one barrier; every global load of a
//   thread is issued before that barrier, so their latencies overlap;
// - int8 <-> fp32 by exact magic-number arithmetic (byte permute + one fp32 add) instead of I2F / F2I;
// - the requantization multiplies by rcp.approx(scale) instead of dividing: |h * rcp(s) - h / s| is
//   below |h / s| * 2^-22, so for |h / s| < 128.5 the rounded values can differ only when h / s lies
//   within 3.1e-5 of a .5 boundary, and then by exactly one LSB; beyond that both saturate equally
//   (the ±1 LSB contract of the reference op).
// The N / NPT lanes of a channel sum their y partials with shuffles.
#include "quamba_kernels/quant_ssd_state_update.h"

#include "quamba_kernels/common.cuh"
#include "quamba_kernels/mamba2_common.cuh"

namespace quamba {
namespace {

using m2::mamba2_A;
using m2::mamba2_delta;

constexpr int kThreads = 256;
constexpr float kMagicI8 = 8388736.0f;     // 2^23 + 128: bits 0x4B0000uu hold 2^23 + (q + 128)
constexpr float kMagicRound = 12582912.0f;  // 1.5 * 2^23: x + it rounds x to an integer (half to even)

// Four int8 (one 32-bit word) as exact fp32.
__device__ __forceinline__ void i8x4_to_f32(int w, float (&f)[4]) {
  const int u = w ^ 0x80808080;  // q + 128 per byte
  f[0] = __int_as_float(__byte_perm(u, 0x4B000000, 0x7440)) - kMagicI8;
  f[1] = __int_as_float(__byte_perm(u, 0x4B000000, 0x7441)) - kMagicI8;
  f[2] = __int_as_float(__byte_perm(u, 0x4B000000, 0x7442)) - kMagicI8;
  f[3] = __int_as_float(__byte_perm(u, 0x4B000000, 0x7443)) - kMagicI8;
}

// clamp(round_half_even(v), -128, 127) of four values packed into one word (NaN -> -128, as
// quantize_int8). Clamping before rounding gives the same integers as rounding before clamping.
__device__ __forceinline__ int f32x4_to_i8x4(const float (&v)[4]) {
  int b[4];
#pragma unroll
  for (int k = 0; k < 4; ++k) b[k] = __float_as_int(fminf(fmaxf(v[k], -128.0f), 127.0f) + kMagicRound);
  return __byte_perm(__byte_perm(b[0], b[1], 0x0040), __byte_perm(b[2], b[3], 0x0040), 0x5410);
}

// 1 / s to within 1 ulp (MUFU.RCP; subnormal inputs handled, no ftz).
__device__ __forceinline__ float rcp_approx(float s) {
  float r;
  asm("rcp.approx.f32 %0, %1;" : "=f"(r) : "f"(s));
  return r;
}

template <int LN, int NPT>
__global__ void __launch_bounds__(kThreads) quant_ssd_state_update_kernel(const QuambaQuantSSDStateUpdateParams p,
                                                                          const bool vec) {
  static_assert(NPT % 4 == 0 && LN >= 1 && LN <= 32 && (LN & (LN - 1)) == 0, "layout");
  constexpr int N = LN * NPT;
  constexpr int NC = NPT / 4;         // chunks of 4 states per lane
  constexpr int CPB = kThreads / LN;  // channels per block
  constexpr int kFill = (2 * N + kThreads - 1) / kThreads;
  __shared__ __align__(16) float sBC[2 * N];  // dequantized B (0 .. N-1) and C (N .. 2N-1) of (b, g)
  __shared__ float s_dA, s_delta, s_D;

  const int P = p.headdim, H = p.nheads;
  const int h = blockIdx.y, b = blockIdx.z;
  const int tid = threadIdx.x;
  const int pch = blockIdx.x * CPB + tid / LN;
  const int ln = tid % LN;
  const bool valid = pch < P;  // invalid lanes work on channel 0 and store nothing
  const int pc = valid ? pch : 0;
  const int g = h / (H / p.ngroups);
  const int64_t ch = int64_t(h) * P + pc;
  const int64_t st = (int64_t(b) * H * P + ch) * N;
  const bool is_i8 = p.state_type == QUAMBA_SSD_STATE_INT8;

  // ---- every global load first (the row index, then everything else; the scales wait on the row)
  const int64_t srow = (is_i8 && p.state_scale_row != nullptr) ? int64_t(p.state_scale_row[ch]) : ch;
  const int8_t x_q = p.x[int64_t(b) * p.x_batch_stride + ch];
  const float xs = p.x_scale[ch];
  int8_t bc_q[kFill];
#pragma unroll
  for (int i = 0; i < kFill; ++i) {
    const int t = tid + i * kThreads;
    bc_q[i] = 0;
    if (t < N) bc_q[i] = p.B[int64_t(b) * p.B_batch_stride + int64_t(g) * N + t];
    else if (t < 2 * N) bc_q[i] = p.C[int64_t(b) * p.C_batch_stride + int64_t(g) * N + (t - N)];
  }
  int8_t a_q = 0, dt_q = 0, d_q = 0;
  float bias = 0.0f;
  if (tid == 0) {
    a_q = p.A_log[h];
    dt_q = p.dt[int64_t(b) * p.dt_batch_stride + h];
    bias = p.dt_bias[h];
    if (p.D != nullptr) d_q = p.D[h];
  }
  float s[NC][4], sc[NC][4];
  int s_w[NC];
  if (is_i8) {
    const int8_t* src = static_cast<const int8_t*>(p.state_in) + st;
    const float* scp = p.state_scale + srow * N;
#pragma unroll
    for (int j = 0; j < NC; ++j) {
      const int n = (j * LN + ln) * 4;
      if (vec) {
        s_w[j] = *reinterpret_cast<const int*>(src + n);
        const float4 v = *reinterpret_cast<const float4*>(scp + n);
        sc[j][0] = v.x; sc[j][1] = v.y; sc[j][2] = v.z; sc[j][3] = v.w;
      } else {
        s_w[j] = int(uint8_t(src[n])) | (int(uint8_t(src[n + 1])) << 8) | (int(uint8_t(src[n + 2])) << 16) |
                 (int(uint8_t(src[n + 3])) << 24);
#pragma unroll
        for (int k = 0; k < 4; ++k) sc[j][k] = scp[n + k];
      }
    }
  } else if (p.state_type == QUAMBA_SSD_STATE_F16) {
    const uint16_t* src = static_cast<const uint16_t*>(p.state_in) + st;
#pragma unroll
    for (int j = 0; j < NC; ++j) {
      const int n = (j * LN + ln) * 4;
#pragma unroll
      for (int k = 0; k < 4; ++k) s[j][k] = f16_bits_to_f32(src[n + k]);
    }
  } else {
    const float* src = static_cast<const float*>(p.state_in) + st;
#pragma unroll
    for (int j = 0; j < NC; ++j) {
      const int n = (j * LN + ln) * 4;
      if (vec) {
        const float4 v = *reinterpret_cast<const float4*>(src + n);
        s[j][0] = v.x; s[j][1] = v.y; s[j][2] = v.z; s[j][3] = v.w;
      } else {
#pragma unroll
        for (int k = 0; k < 4; ++k) s[j][k] = src[n + k];
      }
    }
  }

  // ---- per-(b, h) values once per block
  {
    const float sBg = p.B_scale[g], sCg = p.C_scale[g];
#pragma unroll
    for (int i = 0; i < kFill; ++i) {
      const int t = tid + i * kThreads;
      if (t < 2 * N) sBC[t] = dequant(bc_q[i], t < N ? sBg : sCg);
    }
  }
  if (tid == 0) {
    const float A = mamba2_A(a_q, p.A_log_scale);
    const float delta = mamba2_delta(dt_q, p.dt_scale, bias, p.dt_limit_lo, p.dt_limit_hi);
    s_dA = expf(delta * A);
    s_delta = delta;
    s_D = p.D != nullptr ? dequant(d_q, p.D_scale) : 0.0f;
  }
  // the state's dequantization does not need the barrier
  if (is_i8) {
#pragma unroll
    for (int j = 0; j < NC; ++j) {
      float f[4];
      i8x4_to_f32(s_w[j], f);
#pragma unroll
      for (int k = 0; k < 4; ++k) s[j][k] = f[k] * sc[j][k];
    }
  }
  __syncthreads();

  // ---- update: S = S_prev * dA + (delta x) B (separate fp32 multiply and add, as the reference)
  const float dA = s_dA;
  const float x = dequant(x_q, xs);
  const float dx = s_delta * x;
  float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
  for (int j = 0; j < NC; ++j) {
    const int c4 = j * LN + ln;
    const float4 bv = reinterpret_cast<const float4*>(sBC)[c4];
    const float4 cv = reinterpret_cast<const float4*>(sBC + N)[c4];
    const float bb[4] = {bv.x, bv.y, bv.z, bv.w}, cc[4] = {cv.x, cv.y, cv.z, cv.w};
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      s[j][k] = __fadd_rn(__fmul_rn(s[j][k], dA), __fmul_rn(dx, bb[k]));
      acc[k] = fmaf(s[j][k], cc[k], acc[k]);
    }
  }
  float y = m2::group_sum<LN>((acc[0] + acc[1]) + (acc[2] + acc[3]));

  if (!valid) return;  // after the last shuffle
  if (ln == 0) {
    y = fmaf(s_D, x, y);
    p.y[int64_t(b) * p.y_batch_stride + ch] = f32_to_f16_bits(y);
  }
  if (is_i8) {
    int8_t* dst = static_cast<int8_t*>(p.state_out) + st;
#pragma unroll
    for (int j = 0; j < NC; ++j) {
      const int n = (j * LN + ln) * 4;
      float q[4];
#pragma unroll
      for (int k = 0; k < 4; ++k) q[k] = s[j][k] * rcp_approx(sc[j][k]);
      const int w = f32x4_to_i8x4(q);
      if (vec) {
        *reinterpret_cast<int*>(dst + n) = w;
      } else {
#pragma unroll
        for (int k = 0; k < 4; ++k) dst[n + k] = static_cast<int8_t>((w >> (8 * k)) & 0xff);
      }
    }
  } else if (p.state_type == QUAMBA_SSD_STATE_F16) {
    uint16_t* dst = static_cast<uint16_t*>(p.state_out) + st;
#pragma unroll
    for (int j = 0; j < NC; ++j) {
      const int n = (j * LN + ln) * 4;
#pragma unroll
      for (int k = 0; k < 4; ++k) dst[n + k] = f32_to_f16_bits(s[j][k]);
    }
  } else {
    float* dst = static_cast<float*>(p.state_out) + st;
#pragma unroll
    for (int j = 0; j < NC; ++j) {
      const int n = (j * LN + ln) * 4;
      if (vec) {
        *reinterpret_cast<float4*>(dst + n) = make_float4(s[j][0], s[j][1], s[j][2], s[j][3]);
      } else {
#pragma unroll
        for (int k = 0; k < 4; ++k) dst[n + k] = s[j][k];
      }
    }
  }
}

template <int LN, int NPT>
cudaError_t launch(const QuambaQuantSSDStateUpdateParams& p, bool vec, cudaStream_t stream) {
  constexpr int CPB = kThreads / LN;
  dim3 grid(ceil_div(p.headdim, CPB), p.nheads, p.batch);
  quant_ssd_state_update_kernel<LN, NPT><<<grid, kThreads, 0, stream>>>(p, vec);
  return cudaGetLastError();
}

// N / NPT lanes per channel. NPT 8 (16 for N = 256): measured on an H100 against NPT 4 (twice the warps),
// which was no faster at batch 1 (mamba2-8b 5.5 vs 4.0 us) and 1.5x slower at batch 16.
cudaError_t dispatch(const QuambaQuantSSDStateUpdateParams& p, bool vec, cudaStream_t stream) {
  switch (p.dstate) {
    case 16: return launch<4, 4>(p, vec, stream);
    case 32: return launch<4, 8>(p, vec, stream);
    case 64: return launch<8, 8>(p, vec, stream);
    case 128: return launch<16, 8>(p, vec, stream);
    case 256: return launch<16, 16>(p, vec, stream);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace
}  // namespace quamba

extern "C" QUAMBA_API cudaError_t quamba_quant_ssd_state_update(const QuambaQuantSSDStateUpdateParams* p,
                                                                cudaStream_t stream) {
  using quamba::m2::aligned;
  QUAMBA_CHECK_ARG(p != nullptr);
  QUAMBA_CHECK_ARG(p->batch >= 1 && p->nheads >= 1 && p->headdim >= 1 && p->ngroups >= 1);
  QUAMBA_CHECK_ARG(p->nheads % p->ngroups == 0 && p->batch <= 65535 && p->nheads <= 65535);
  QUAMBA_CHECK_ARG(p->x && p->x_scale && p->dt && p->dt_bias && p->A_log && p->B && p->B_scale && p->C &&
                   p->C_scale && p->y && p->state_in && p->state_out);
  QUAMBA_CHECK_ARG(p->state_type == QUAMBA_SSD_STATE_INT8 || p->state_type == QUAMBA_SSD_STATE_F32 ||
                   p->state_type == QUAMBA_SSD_STATE_F16);
  QUAMBA_CHECK_ARG(p->state_type != QUAMBA_SSD_STATE_INT8 || p->state_scale != nullptr);
  // 4-byte int8 / 16-byte fp32 state chunks and 16-byte scale chunks need 16-byte aligned bases (N is a
  // multiple of 16); B and C are read byte by byte into shared memory.
  const bool vec = aligned(p->state_in, 16) && aligned(p->state_out, 16) &&
                   (p->state_scale == nullptr || aligned(p->state_scale, 16));
  return quamba::dispatch(*p, vec, stream);
}
