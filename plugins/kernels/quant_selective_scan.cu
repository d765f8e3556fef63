// quant_selective_scan: Mamba1 prefill selective scan, int8 in, fp16 y, int8 / fp32 state.
// Contract: quamba_edge/ops/quant_selective_scan.py; ABI: include/quamba_kernels/quant_selective_scan.h.
//
// Parallel over (batch, channel e, state n), sequential over time. A block of 128 threads owns
// CPB = 128 / TPC channels; the TPC consecutive lanes of a channel each hold NPT states (n = i*TPC + sub)
// in fp32 registers for the whole sequence (the state is requantized once, at the end: spec B.4).
// Time is walked in tiles of T tokens, software-pipelined:
//   consume: the tile's raw int8 u, dt, z, B, C (already in registers) are dequantized into shared
//            memory: delta = softplus20(dt), delta*u, u*D (the start value of y), silu(z), B, C;
//   prefetch: the next tile's raw int8 data is loaded into registers (one 16-byte load per thread and
//            tensor for Mamba shapes), in flight while
//   recur:   each thread runs h = exp(delta A) h + (delta u) B over the tile; y_t = sum_n h C is reduced
//            with warp shuffles inside the TPC lanes and added to the tile's y in shared memory;
//   finish:  y * silu(z) is written as fp16 by all threads.
#include "quamba_kernels/common.cuh"
#include "quamba_kernels/quant_selective_scan.h"

namespace quamba {
namespace {

constexpr int kThreads = 128;
constexpr float kLog2e = 1.4426950408889634f;

template <int TPC_, int NPT_, int T_>
struct ScanCfg {
  static constexpr int TPC = TPC_, NPT = NPT_, T = T_;
  static constexpr int CPB = kThreads / TPC;      // channels per block
  static constexpr int NPAD = TPC * NPT;          // padded d_state
  static constexpr int UB = T * CPB / kThreads;   // bytes of a [T, CPB] int8 tile per thread
  static constexpr int BB = T * NPAD / kThreads;  // bytes of a [T, NPAD] int8 tile per thread
  static constexpr int SMEM = (4 * T * CPB + 2 * T * NPAD + 2 * CPB) * 4;
  static_assert(UB >= 1 && BB >= 1 && CPB % UB == 0 && NPAD % BB == 0, "tile split");
  static_assert(SMEM <= 48 * 1024, "static shared memory");
};

// BYTES consecutive int8 values held in 32-bit registers.
template <int BYTES>
struct Raw {
  static constexpr int W = (BYTES + 3) / 4;
  uint32_t w[W];
  __device__ __forceinline__ int get(int i) const {
    return static_cast<int8_t>((w[i / 4] >> (8 * (i % 4))) & 0xffu);
  }
  __device__ __forceinline__ void zero() {
#pragma unroll
    for (int j = 0; j < W; ++j) w[j] = 0;
  }
  // vector load (src aligned to min(BYTES, 16)), only when ok
  __device__ __forceinline__ void load_vec(const int8_t* src, bool ok) {
    zero();
    if (!ok) return;
    if constexpr (BYTES == 1) {
      w[0] = static_cast<uint8_t>(*src);
    } else if constexpr (BYTES == 2) {
      w[0] = *reinterpret_cast<const uint16_t*>(src);
    } else if constexpr (BYTES == 4) {
      w[0] = *reinterpret_cast<const uint32_t*>(src);
    } else if constexpr (BYTES == 8) {
      const uint2 v = *reinterpret_cast<const uint2*>(src);
      w[0] = v.x; w[1] = v.y;
    } else {
      static_assert(BYTES % 16 == 0, "vector width");
#pragma unroll
      for (int j = 0; j < BYTES / 16; ++j) {
        const uint4 v = reinterpret_cast<const uint4*>(src)[j];
        w[4 * j] = v.x; w[4 * j + 1] = v.y; w[4 * j + 2] = v.z; w[4 * j + 3] = v.w;
      }
    }
  }
  // byte loads, element i only when i < valid
  __device__ __forceinline__ void load_bytes(const int8_t* src, int valid) {
    zero();
#pragma unroll
    for (int i = 0; i < BYTES; ++i)
      if (i < valid) w[i / 4] |= static_cast<uint32_t>(static_cast<uint8_t>(src[i])) << (8 * (i % 4));
  }
};

template <class Cfg, bool kStateInt8, bool kVec>
__global__ void __launch_bounds__(kThreads)
quamba_selective_scan_kernel(const QuambaSelectiveScanParams p) {
  constexpr int TPC = Cfg::TPC, NPT = Cfg::NPT, T = Cfg::T, CPB = Cfg::CPB, NPAD = Cfg::NPAD;
  constexpr int UB = Cfg::UB, BB = Cfg::BB;
  __shared__ float s_delta[T * CPB];  // delta
  __shared__ float s_du[T * CPB];     // delta * u
  __shared__ float s_y[T * CPB];      // u * D, then + sum_n h C
  __shared__ float s_g[T * CPB];      // silu(z) (1 without a gate)
  __shared__ float s_B[T * NPAD];
  __shared__ float s_C[T * NPAD];
  __shared__ float s_bias[CPB], s_D[CPB];

  const int b = blockIdx.y;
  const int e0 = blockIdx.x * CPB;
  const int tid = threadIdx.x;
  const int cl = tid / TPC;   // channel of the recurrence
  const int sub = tid % TPC;  // lane within the channel
  const int N = p.dstate;
  const int E = p.dim;
  const int L = p.seqlen;

  if (tid < CPB) {
    const int e = e0 + tid;
    s_bias[tid] = (p.dt_bias && e < E) ? dequant(p.dt_bias[e], p.dt_bias_scale) : 0.0f;
    s_D[tid] = (p.D && e < E) ? dequant(p.D[e], p.D_scale) : 0.0f;
  }

  // A (pre-scaled by log2 e: exp(delta A) = exp2(delta A log2 e)) and the initial state in registers.
  float A2[NPT], h[NPT];
  const int er = e0 + cl;
  const int64_t st_off = (static_cast<int64_t>(b) * E + er) * N;
#pragma unroll
  for (int i = 0; i < NPT; ++i) {
    const int n = i * TPC + sub;
    const bool ok = er < E && n < N;
    A2[i] = ok ? -expf(dequant(p.A_log[static_cast<int64_t>(er) * N + n], p.A_log_scale)) * kLog2e : 0.0f;
    float h0 = 0.0f;
    if (ok && p.state_in) {
      if (kStateInt8) h0 = dequant(static_cast<const int8_t*>(p.state_in)[st_off + n], p.state_scale);
      else h0 = static_cast<const float*>(p.state_in)[st_off + n];
    }
    h[i] = h0;
  }

  // this thread's chunk of the [T, CPB] tiles (row ru, channels cu..cu+UB-1) and [T, NPAD] tiles
  const int ru = tid * UB / CPB, cu = tid * UB % CPB;
  const int rb = tid * BB / NPAD, nb = tid * BB % NPAD;
  const int8_t* u_b = p.u + b * p.u_stride_b + e0 + cu;
  const int8_t* dt_b = p.dt + b * p.dt_stride_b + e0 + cu;
  const int8_t* z_b = p.z ? p.z + b * p.z_stride_b + e0 + cu : nullptr;
  const int8_t* B_b = p.Bm + b * p.B_stride_b + nb;
  const int8_t* C_b = p.Cm + b * p.C_stride_b + nb;
  const int uvalid = min(UB, E - (e0 + cu));  // channels of the chunk inside E
  const int bvalid = min(BB, N - nb);

  Raw<UB> ru_u, ru_dt, ru_z;
  Raw<BB> rb_B, rb_C;
  auto prefetch = [&](int t0) {
    const int tu = t0 + ru, tb = t0 + rb;
    if (kVec) {
      ru_u.load_vec(u_b + tu * p.u_stride_l, tu < L);
      ru_dt.load_vec(dt_b + tu * p.dt_stride_l, tu < L);
      ru_z.load_vec(z_b ? z_b + tu * p.z_stride_l : nullptr, z_b != nullptr && tu < L);
      rb_B.load_vec(B_b + tb * p.B_stride_l, tb < L);
      rb_C.load_vec(C_b + tb * p.C_stride_l, tb < L);
    } else {
      const int uv = tu < L ? uvalid : 0, bv = tb < L ? bvalid : 0;
      ru_u.load_bytes(u_b + static_cast<int64_t>(tu) * p.u_stride_l, uv);
      ru_dt.load_bytes(dt_b + static_cast<int64_t>(tu) * p.dt_stride_l, uv);
      ru_z.load_bytes(z_b ? z_b + static_cast<int64_t>(tu) * p.z_stride_l : nullptr, z_b ? uv : 0);
      rb_B.load_bytes(B_b + static_cast<int64_t>(tb) * p.B_stride_l, bv);
      rb_C.load_bytes(C_b + static_cast<int64_t>(tb) * p.C_stride_l, bv);
    }
  };

  prefetch(0);
  __syncthreads();  // s_bias, s_D

  for (int t0 = 0; t0 < L; t0 += T) {
    const int tlen = min(T, L - t0);
    // ---- consume: dequantize the raw tile into shared memory
    {
      const bool row_ok = t0 + ru < L;
#pragma unroll
      for (int i = 0; i < UB; ++i) {
        const int c = cu + i;
        const int idx = ru * CPB + c;
        float delta = 0.0f, u = 0.0f, g = 1.0f;
        if (row_ok) {
          u = dequant(static_cast<int8_t>(ru_u.get(i)), p.u_scale);
          float dt = dequant(static_cast<int8_t>(ru_dt.get(i)), p.dt_scale);
          if (p.dt_bias) dt = dt + s_bias[c];
          delta = softplus20(dt);
          if (z_b) g = silu(dequant(static_cast<int8_t>(ru_z.get(i)), p.z_scale));
        }
        s_delta[idx] = delta;
        s_du[idx] = delta * u;
        s_y[idx] = u * s_D[c];
        s_g[idx] = g;
      }
#pragma unroll
      for (int i = 0; i < BB; ++i) {
        const int idx = rb * NPAD + nb + i;
        s_B[idx] = dequant(static_cast<int8_t>(rb_B.get(i)), p.B_scale);
        s_C[idx] = dequant(static_cast<int8_t>(rb_C.get(i)), p.C_scale);
      }
    }
    __syncthreads();
    if (t0 + T < L) prefetch(t0 + T);  // in flight during the recurrence

    // ---- recurrence over the tile
#pragma unroll 2
    for (int t = 0; t < tlen; ++t) {
      const float delta = s_delta[t * CPB + cl];
      const float du = s_du[t * CPB + cl];
      const float* Bt = s_B + t * NPAD + sub;
      const float* Ct = s_C + t * NPAD + sub;
      float y = 0.0f;
#pragma unroll
      for (int i = 0; i < NPT; ++i) {
        const float dA = exp2f(delta * A2[i]);
        h[i] = fmaf(dA, h[i], du * Bt[i * TPC]);
        y = fmaf(h[i], Ct[i * TPC], y);
      }
#pragma unroll
      for (int o = TPC / 2; o > 0; o >>= 1) y += __shfl_xor_sync(0xffffffffu, y, o);
      if (sub == 0) s_y[t * CPB + cl] = y + s_y[t * CPB + cl];
    }
    __syncthreads();

    // ---- finish: gate, fp16 store (thread -> channel tid % CPB, rows tid / CPB + k * 128 / CPB)
    for (int idx = tid; idx < tlen * CPB; idx += kThreads) {
      const int t = idx / CPB, c = idx % CPB, e = e0 + c;
      if (e < E) {
        const float y = s_y[idx] * s_g[idx];
        p.y[b * p.y_stride_b + static_cast<int64_t>(t0 + t) * p.y_stride_l + e] = f32_to_f16_bits(y);
      }
    }
    __syncthreads();
  }

  // ---- final state (requantized once)
#pragma unroll
  for (int i = 0; i < NPT; ++i) {
    const int n = i * TPC + sub;
    if (er < E && n < N) {
      if (kStateInt8) static_cast<int8_t*>(p.state_out)[st_off + n] = quantize_int8(h[i], p.state_scale);
      else static_cast<float*>(p.state_out)[st_off + n] = h[i];
    }
  }
}

bool aligned16(const void* ptr) { return (reinterpret_cast<uintptr_t>(ptr) & 15u) == 0; }

template <class Cfg>
cudaError_t launch(const QuambaSelectiveScanParams& p, cudaStream_t stream) {
  const bool vec = p.dim % Cfg::CPB == 0 && p.dstate == Cfg::NPAD && aligned16(p.u) && aligned16(p.dt) &&
                   aligned16(p.Bm) && aligned16(p.Cm) && (!p.z || aligned16(p.z)) &&
                   p.u_stride_b % 16 == 0 && p.u_stride_l % 16 == 0 && p.dt_stride_b % 16 == 0 &&
                   p.dt_stride_l % 16 == 0 && p.B_stride_b % 16 == 0 && p.B_stride_l % 16 == 0 &&
                   p.C_stride_b % 16 == 0 && p.C_stride_l % 16 == 0 &&
                   (!p.z || (p.z_stride_b % 16 == 0 && p.z_stride_l % 16 == 0));
  const dim3 grid(ceil_div(p.dim, Cfg::CPB), p.batch);
  if (p.state_is_int8) {
    if (vec) quamba_selective_scan_kernel<Cfg, true, true><<<grid, kThreads, 0, stream>>>(p);
    else quamba_selective_scan_kernel<Cfg, true, false><<<grid, kThreads, 0, stream>>>(p);
  } else {
    if (vec) quamba_selective_scan_kernel<Cfg, false, true><<<grid, kThreads, 0, stream>>>(p);
    else quamba_selective_scan_kernel<Cfg, false, false><<<grid, kThreads, 0, stream>>>(p);
  }
  return cudaGetLastError();
}

}  // namespace
}  // namespace quamba

extern "C" QUAMBA_API cudaError_t quamba_quant_selective_scan(const QuambaSelectiveScanParams* p,
                                                              cudaStream_t stream) {
  using namespace quamba;
  QUAMBA_CHECK_ARG(p != nullptr);
  QUAMBA_CHECK_ARG(p->batch >= 1 && p->batch <= 65535 && p->seqlen >= 1 && p->dim >= 1);
  QUAMBA_CHECK_ARG(p->dstate >= 1 && p->dstate <= 256);
  QUAMBA_CHECK_ARG(p->u && p->dt && p->A_log && p->Bm && p->Cm && p->y && p->state_out);
  const int N = p->dstate;
  if (N <= 16) return launch<ScanCfg<4, 4, 64>>(*p, stream);
  if (N <= 32) return launch<ScanCfg<4, 8, 32>>(*p, stream);
  if (N <= 64) return launch<ScanCfg<8, 8, 32>>(*p, stream);
  if (N <= 128) return launch<ScanCfg<8, 16, 32>>(*p, stream);
  return launch<ScanCfg<16, 16, 16>>(*p, stream);
}
