// quant_selective_state_update: one decode token of the Mamba1 scan, int8 (or fp32) state in place.
// Contract: quamba_edge/ops/quant_selective_state_update.py;
// ABI: include/quamba_kernels/quant_selective_state_update.h.
//
// Memory-bound: the state is read once and written once. One thread owns NPT consecutive states of one
// (batch, channel) (NPT = 4: one 32-bit load/store of the int8 state, of A_log, B and C; a warp covers 128
// contiguous bytes), TPC = N / NPT lanes per channel (rounded up to a power of two, <= 32) reduce
// y = sum_n h C with warp shuffles. Every global load is issued before the arithmetic starts.
#include "quamba_kernels/common.cuh"
#include "quamba_kernels/quant_selective_state_update.h"

namespace quamba {
namespace {

constexpr int kThreads = 128;
constexpr float kLog2e = 1.4426950408889634f;

template <int NPT>
__device__ __forceinline__ void load_i8(const int8_t* src, bool vec, int valid, int (&v)[NPT]) {
  static_assert(NPT == 4 || NPT == 8, "NPT");
  if (vec) {
    if constexpr (NPT == 4) {
      const int w = *reinterpret_cast<const int*>(src);
#pragma unroll
      for (int i = 0; i < 4; ++i) v[i] = static_cast<int8_t>((w >> (8 * i)) & 0xff);
    } else {
      const int2 w = *reinterpret_cast<const int2*>(src);
#pragma unroll
      for (int i = 0; i < 8; ++i) v[i] = static_cast<int8_t>((((i < 4) ? w.x : w.y) >> (8 * (i % 4))) & 0xff);
    }
  } else {
#pragma unroll
    for (int i = 0; i < NPT; ++i) v[i] = i < valid ? src[i] : 0;
  }
}

template <int NPT>
__device__ __forceinline__ void store_i8(int8_t* dst, bool vec, int valid, const int8_t (&q)[NPT]) {
  if (vec) {
    int w[NPT / 4];
#pragma unroll
    for (int j = 0; j < NPT / 4; ++j)
      w[j] = (q[4 * j] & 0xff) | ((q[4 * j + 1] & 0xff) << 8) | ((q[4 * j + 2] & 0xff) << 16) |
             ((q[4 * j + 3] & 0xff) << 24);
    if constexpr (NPT == 4) *reinterpret_cast<int*>(dst) = w[0];
    else *reinterpret_cast<int2*>(dst) = make_int2(w[0], w[1]);
  } else {
#pragma unroll
    for (int i = 0; i < NPT; ++i)
      if (i < valid) dst[i] = q[i];
  }
}

template <int NPT, int TPC, bool kStateInt8>
__global__ void __launch_bounds__(kThreads)
quamba_selective_state_update_kernel(const QuambaSelectiveStateUpdateParams p, const bool vec) {
  const int gid = blockIdx.x * kThreads + threadIdx.x;
  const int sub = gid % TPC;
  const int be = gid / TPC;  // (b, e) flattened
  const bool active = be < p.batch * p.dim;
  const int b = active ? be / p.dim : 0;
  const int e = active ? be % p.dim : 0;
  const int N = p.dstate;
  const int n0 = sub * NPT;
  const int valid = active ? max(0, min(NPT, N - n0)) : 0;
  const bool lead = active && sub == 0;

  // ---- every load first
  int u_q = 0, dt_q = 0, bias_q = 0, d_q = 0, z_q = 0;
  if (valid > 0) {
    u_q = p.u[b * p.u_stride_b + e];
    dt_q = p.dt[b * p.dt_stride_b + e];
    if (p.dt_bias) bias_q = p.dt_bias[e];
  }
  if (lead) {
    if (p.D) d_q = p.D[e];
    if (p.z) z_q = p.z[b * p.z_stride_b + e];
  }
  int a_q[NPT], b_q[NPT], c_q[NPT];
  float h[NPT];
  const int64_t off = static_cast<int64_t>(be) * N + n0;
  if (valid > 0) {
    load_i8<NPT>(p.A_log + static_cast<int64_t>(e) * N + n0, vec, valid, a_q);
    load_i8<NPT>(p.Bm + b * p.B_stride_b + n0, vec, valid, b_q);
    load_i8<NPT>(p.Cm + b * p.C_stride_b + n0, vec, valid, c_q);
    if (kStateInt8) {
      int s_q[NPT];
      load_i8<NPT>(static_cast<const int8_t*>(p.state) + off, vec, valid, s_q);
#pragma unroll
      for (int i = 0; i < NPT; ++i) h[i] = dequant(static_cast<int8_t>(s_q[i]), p.state_scale);
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
  }

  // ---- arithmetic (fp32) and the state write
  float y = 0.0f;
  const float u = dequant(static_cast<int8_t>(u_q), p.u_scale);
  if (valid > 0) {
    float dt = dequant(static_cast<int8_t>(dt_q), p.dt_scale);
    if (p.dt_bias) dt = dt + dequant(static_cast<int8_t>(bias_q), p.dt_bias_scale);
    const float delta = softplus20(dt);
    const float du = delta * u;
#pragma unroll
    for (int i = 0; i < NPT; ++i) {
      const float A = -expf(dequant(static_cast<int8_t>(a_q[i]), p.A_log_scale));
      const float dA = exp2f(delta * A * kLog2e);
      h[i] = fmaf(h[i], dA, du * dequant(static_cast<int8_t>(b_q[i]), p.B_scale));
      if (i < valid) y = fmaf(h[i], dequant(static_cast<int8_t>(c_q[i]), p.C_scale), y);
    }
    if (kStateInt8) {
      int8_t q[NPT];
#pragma unroll
      for (int i = 0; i < NPT; ++i) q[i] = quantize_int8(h[i], p.state_scale);
      store_i8<NPT>(static_cast<int8_t*>(p.new_state) + off, vec, valid, q);
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
  const int64_t threads = static_cast<int64_t>(p.batch) * p.dim * TPC;
  const dim3 grid(static_cast<unsigned>(ceil_div<int64_t>(threads, kThreads)));
  if (p.state_is_int8)
    quamba_selective_state_update_kernel<NPT, TPC, true><<<grid, kThreads, 0, stream>>>(p, vec);
  else
    quamba_selective_state_update_kernel<NPT, TPC, false><<<grid, kThreads, 0, stream>>>(p, vec);
  return cudaGetLastError();
}

bool aligned(const void* ptr, uintptr_t a) { return (reinterpret_cast<uintptr_t>(ptr) & (a - 1)) == 0; }

template <int NPT>
cudaError_t dispatch(const QuambaSelectiveStateUpdateParams& p, cudaStream_t stream) {
  const int N = p.dstate;
  const uintptr_t a = NPT;  // int8 vectors of NPT bytes
  const uintptr_t af = p.state_is_int8 ? a : 16;
  const bool vec = N % NPT == 0 && aligned(p.A_log, a) && aligned(p.Bm, a) && aligned(p.Cm, a) &&
                   aligned(p.state, af) && aligned(p.new_state, af) && p.B_stride_b % NPT == 0 &&
                   p.C_stride_b % NPT == 0;
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
  QUAMBA_CHECK_ARG(static_cast<int64_t>(p->batch) * p->dim * 32 < (int64_t{1} << 31));
  QUAMBA_CHECK_ARG(p->u && p->dt && p->A_log && p->Bm && p->Cm && p->state && p->new_state && p->y);
  return p->dstate <= 128 ? quamba::dispatch<4>(*p, stream) : quamba::dispatch<8>(*p, stream);
}
