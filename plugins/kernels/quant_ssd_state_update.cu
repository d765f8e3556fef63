// QuantSSDStateUpdate: one Mamba2 decode token, int8 (or float) SSM state read once, written once.
// Contract: quamba_edge/ops/quant_ssd_state_update.py (see quamba_kernels/quant_ssd_state_update.h).
//
// Memory bound: every thread owns 16 consecutive states (b, h, p, n0 .. n0+15) and reads them (16 bytes of
// int8), their 16 fp32 scales (64 bytes, or a row of a compact table) and 16 B / C values with 16-byte
// loads, all issued before any arithmetic (one memory round trip), updates them in fp32, writes 16
// requantized bytes, and the N / 16 threads of a channel sum their y partials with shuffles.
#include "quamba_kernels/quant_ssd_state_update.h"

#include "quamba_kernels/common.cuh"
#include "quamba_kernels/mamba2_common.cuh"

namespace quamba {
namespace {

using m2::mamba2_A;
using m2::mamba2_delta;

constexpr int kThreads = 128;
constexpr int kNPT = 16;  // states per thread

template <bool VEC>
__device__ __forceinline__ void load16_f32(const float* src, float (&out)[kNPT]) {
  if (VEC) {
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const float4 v = reinterpret_cast<const float4*>(src)[k];
      out[k * 4 + 0] = v.x; out[k * 4 + 1] = v.y; out[k * 4 + 2] = v.z; out[k * 4 + 3] = v.w;
    }
  } else {
#pragma unroll
    for (int k = 0; k < kNPT; ++k) out[k] = src[k];
  }
}

// 16 raw int8 values (one 16-byte load when VEC).
template <bool VEC>
__device__ __forceinline__ int4 load16_raw(const int8_t* src) {
  int4 v;
  if (VEC) {
    v = *reinterpret_cast<const int4*>(src);
  } else {
    int w[4];
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      w[k] = int(uint8_t(src[4 * k])) | (int(uint8_t(src[4 * k + 1])) << 8) | (int(uint8_t(src[4 * k + 2])) << 16) |
             (int(uint8_t(src[4 * k + 3])) << 24);
    }
    v = make_int4(w[0], w[1], w[2], w[3]);
  }
  return v;
}

__device__ __forceinline__ int8_t byte_of(const int4& v, int k) {
  const int w = k < 4 ? v.x : (k < 8 ? v.y : (k < 12 ? v.z : v.w));
  return static_cast<int8_t>((w >> (8 * (k & 3))) & 0xff);
}

template <int LN, bool VEC>
__global__ void __launch_bounds__(kThreads) quant_ssd_state_update_kernel(const QuambaQuantSSDStateUpdateParams p) {
  constexpr int N = LN * kNPT;
  constexpr int PPB = kThreads / LN;  // channels per block
  const int P = p.headdim, H = p.nheads;
  const int h = blockIdx.y, b = blockIdx.z;
  const int tid = threadIdx.x;
  const int pch = blockIdx.x * PPB + tid / LN;
  const int ln = tid % LN;
  const bool valid = pch < P;  // invalid lanes read channel 0 and still join the shuffles below
  const int pc = valid ? pch : 0;
  const int g = h / (H / p.ngroups);
  const int n0 = ln * kNPT;
  const int64_t ch = int64_t(h) * P + pc;
  const int64_t st = (int64_t(b) * H * P + ch) * N + n0;

  // ---- every global load first: they are all in flight together (one memory round trip, two for a row
  // index), the transcendental math below waits on them at once
  const int8_t a_q = p.A_log[h];
  const int8_t dt_q = p.dt[int64_t(b) * p.dt_batch_stride + h];
  const float bias = p.dt_bias[h];
  const int8_t x_q = p.x[int64_t(b) * p.x_batch_stride + ch];
  const float xs = p.x_scale[ch];
  const int8_t d_q = p.D != nullptr ? p.D[h] : int8_t(0);
  const float sBg = p.B_scale[g], sCg = p.C_scale[g];
  const int4 b_raw = load16_raw<VEC>(p.B + int64_t(b) * p.B_batch_stride + int64_t(g) * N + n0);
  const int4 c_raw = load16_raw<VEC>(p.C + int64_t(b) * p.C_batch_stride + int64_t(g) * N + n0);
  float s[kNPT], sc[kNPT];
  int4 s_raw = make_int4(0, 0, 0, 0);
  if (p.state_type == QUAMBA_SSD_STATE_INT8) {
    s_raw = load16_raw<VEC>(static_cast<const int8_t*>(p.state_in) + st);
    const int64_t si = (p.state_scale_row != nullptr ? int64_t(p.state_scale_row[ch]) : ch) * N + n0;
    load16_f32<VEC>(p.state_scale + si, sc);
  } else if (p.state_type == QUAMBA_SSD_STATE_F16) {
    const uint16_t* src = static_cast<const uint16_t*>(p.state_in) + st;
#pragma unroll
    for (int k = 0; k < kNPT; ++k) s[k] = f16_bits_to_f32(src[k]);
  } else {
    load16_f32<VEC>(static_cast<const float*>(p.state_in) + st, s);
  }

  // ---- math
  if (p.state_type == QUAMBA_SSD_STATE_INT8) {
#pragma unroll
    for (int k = 0; k < kNPT; ++k) s[k] = dequant(byte_of(s_raw, k), sc[k]);
  }
  const float A = mamba2_A(a_q, p.A_log_scale);
  const float delta = mamba2_delta(dt_q, p.dt_scale, bias, p.dt_limit_lo, p.dt_limit_hi);
  const float dA = expf(delta * A);
  const float x = valid ? dequant(x_q, xs) : 0.0f;
  const float dx = delta * x;

  float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
  for (int k = 0; k < kNPT; ++k) {
    const float sk = valid ? s[k] : 0.0f;
    s[k] = fmaf(sk, dA, dx * dequant(byte_of(b_raw, k), sBg));
    acc[k & 3] = fmaf(s[k], dequant(byte_of(c_raw, k), sCg), acc[k & 3]);
  }
  float y = m2::group_sum<LN>((acc[0] + acc[1]) + (acc[2] + acc[3]));

  if (!valid) return;  // after the last shuffle
  if (ln == 0) {
    y = fmaf(p.D != nullptr ? dequant(d_q, p.D_scale) : 0.0f, x, y);
    p.y[int64_t(b) * p.y_batch_stride + ch] = f32_to_f16_bits(y);
  }
  if (p.state_type == QUAMBA_SSD_STATE_INT8) {
    int w[4];
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      w[k] = int(uint8_t(quantize_int8(s[4 * k], sc[4 * k]))) | (int(uint8_t(quantize_int8(s[4 * k + 1], sc[4 * k + 1]))) << 8) |
             (int(uint8_t(quantize_int8(s[4 * k + 2], sc[4 * k + 2]))) << 16) |
             (int(uint8_t(quantize_int8(s[4 * k + 3], sc[4 * k + 3]))) << 24);
    }
    int8_t* dst = static_cast<int8_t*>(p.state_out) + st;
    if (VEC) {
      *reinterpret_cast<int4*>(dst) = make_int4(w[0], w[1], w[2], w[3]);
    } else {
#pragma unroll
      for (int k = 0; k < kNPT; ++k) dst[k] = static_cast<int8_t>((w[k >> 2] >> (8 * (k & 3))) & 0xff);
    }
  } else if (p.state_type == QUAMBA_SSD_STATE_F16) {
    uint16_t* dst = static_cast<uint16_t*>(p.state_out) + st;
#pragma unroll
    for (int k = 0; k < kNPT; ++k) dst[k] = f32_to_f16_bits(s[k]);
  } else {
    float* dst = static_cast<float*>(p.state_out) + st;
    if (VEC) {
#pragma unroll
      for (int k = 0; k < 4; ++k)
        reinterpret_cast<float4*>(dst)[k] = make_float4(s[k * 4], s[k * 4 + 1], s[k * 4 + 2], s[k * 4 + 3]);
    } else {
#pragma unroll
      for (int k = 0; k < kNPT; ++k) dst[k] = s[k];
    }
  }
}

template <int LN, bool VEC>
cudaError_t launch(const QuambaQuantSSDStateUpdateParams& p, cudaStream_t stream) {
  constexpr int PPB = kThreads / LN;
  dim3 grid(ceil_div(p.headdim, PPB), p.nheads, p.batch);
  quant_ssd_state_update_kernel<LN, VEC><<<grid, kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

template <bool VEC>
cudaError_t dispatch(const QuambaQuantSSDStateUpdateParams& p, cudaStream_t stream) {
  switch (p.dstate) {
    case 16: return launch<1, VEC>(p, stream);
    case 32: return launch<2, VEC>(p, stream);
    case 64: return launch<4, VEC>(p, stream);
    case 128: return launch<8, VEC>(p, stream);
    case 256: return launch<16, VEC>(p, stream);
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
  // 16-byte accesses need 16-byte aligned bases and strides (N is a multiple of 16).
  const bool vec = aligned(p->B, 16) && aligned(p->C, 16) && p->B_batch_stride % 16 == 0 &&
                   p->C_batch_stride % 16 == 0 && aligned(p->state_in, 16) && aligned(p->state_out, 16) &&
                   (p->state_scale == nullptr || aligned(p->state_scale, 16));
  return vec ? quamba::dispatch<true>(*p, stream) : quamba::dispatch<false>(*p, stream);
}
