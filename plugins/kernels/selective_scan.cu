// selective_scan: the float Mamba1 prefill scan, fp16 u / delta / B / C / z in, fp16 y out, fp32 math,
// fp32 or fp16 state. Contract: quamba_edge/ops/selective_scan.py (reference
// quamba_edge.models.ssm.selective_scan); ABI: include/quamba_kernels/selective_scan.h.
// The float sibling of quant_selective_scan.cu: the same work split, "dequantize int8 x scale" replaced by
// "load fp16".
//
// Supported: any batch, seqlen >= 1, dim >= 1 (batch * ceil(dim / channels per block) < 2^31 blocks),
// d_state 1..256, batch / token strides free (any value, in elements; channel / state stride 1), D / z /
// delta_bias optional (NULL), state_in NULL (zeros) or of state_type, state_out may be state_in.
// Returns cudaErrorInvalidValue for a NULL params / u / delta / A / B / C / y / state_out pointer, a
// non-positive size, a state_type other than QUAMBA_SSD_STATE_F32 / _F16; cudaErrorNotSupported for
// d_state > 256; otherwise the launch error.
//
// Parallel over (batch, channel e, state n), sequential over time. A block of 128 threads owns
// CPB = 128 / TPC channels of one batch row; the TPC consecutive lanes of a channel each hold NPT states
// (n = i * TPC + sub) in fp32 registers for the whole sequence (state read once, written once).
// Time is walked in tiles of T tokens, software-pipelined:
//   consume:  the tile's raw fp16 u, delta, z, B, C (already in registers) are converted into shared
//             memory: delta = softplus20(delta + bias), delta * u, u * D (the start value of y), silu(z);
//   prefetch: the next tile's raw fp16 data is loaded into registers (vector loads when the sizes and
//             alignment allow: dim % CPB == 0, d_state == TPC * NPT, bases and strides aligned to the
//             per-thread chunk), in flight while
//   recur:    each thread runs h = exp(delta A) h + (delta u) B over the tile; y_t = sum_n h C is reduced
//             with warp shuffles inside the TPC lanes and added to the tile's y in shared memory;
//   finish:   y * silu(z) is written as fp16 by all threads.
// Numerics: fp32 throughout; exp(delta A) = exp2f(delta * (A log2 e)) (as quant_selective_scan), the state
// update h = fma(dA, h, (delta u) B); the reference (a chunked parallel scan) rounds in another order, so
// y agrees to fp32 rounding before its fp16 rounding, not bit for bit. A fp16 state is rounded once, at
// the end.
#include "quamba_kernels/common.cuh"
#include "quamba_kernels/mamba2_common.cuh"
#include "quamba_kernels/selective_scan.h"

namespace quamba {
namespace {

constexpr int kThreads = 128;
constexpr float kLog2e = 1.4426950408889634f;

template <int TPC_, int NPT_, int T_>
struct FScanCfg {
  static constexpr int TPC = TPC_, NPT = NPT_, T = T_;
  static constexpr int CPB = kThreads / TPC;      // channels per block
  static constexpr int NPAD = TPC * NPT;          // padded d_state
  static constexpr int UE = T * CPB / kThreads;   // fp16 elements of a [T, CPB] tile per thread
  static constexpr int BE = T * NPAD / kThreads;  // fp16 elements of a [T, NPAD] tile per thread
  static constexpr int UA = UE * 2 < 16 ? UE * 2 : 16;  // byte alignment of the vector loads
  static constexpr int BA = BE * 2 < 16 ? BE * 2 : 16;
  static_assert(UE >= 1 && BE >= 1 && CPB % UE == 0 && NPAD % BE == 0, "tile split");
  static_assert((4 * T * CPB + 2 * T * NPAD + 2 * CPB) * 4 <= 48 * 1024, "static shared memory");
};

template <class Cfg, bool kVec>
__global__ void __launch_bounds__(kThreads)
selective_scan_f16_kernel(const QuambaFloatSelectiveScanParams p, const int tiles) {
  constexpr int TPC = Cfg::TPC, NPT = Cfg::NPT, T = Cfg::T, CPB = Cfg::CPB, NPAD = Cfg::NPAD;
  constexpr int UE = Cfg::UE, BE = Cfg::BE;
  __shared__ float s_delta[T * CPB];  // delta
  __shared__ float s_du[T * CPB];     // delta * u
  __shared__ float s_y[T * CPB];      // u * D, then + sum_n h C
  __shared__ float s_g[T * CPB];      // silu(z) (1 without a gate)
  __shared__ float s_B[T * NPAD];
  __shared__ float s_C[T * NPAD];
  __shared__ float s_bias[CPB], s_D[CPB];

  const int b = blockIdx.x / tiles;
  const int e0 = (blockIdx.x - b * tiles) * CPB;
  const int tid = threadIdx.x;
  const int cl = tid / TPC;   // channel of the recurrence
  const int sub = tid % TPC;  // lane within the channel
  const int N = p.dstate;
  const int E = p.dim;
  const int L = p.seqlen;

  if (tid < CPB) {
    const int e = e0 + tid;
    s_bias[tid] = (p.delta_bias && e < E) ? p.delta_bias[e] : 0.0f;
    s_D[tid] = (p.D && e < E) ? p.D[e] : 0.0f;
  }

  // A * log2 e (exp(delta A) = exp2(delta A log2 e)) and the initial state in registers
  float A2[NPT], h[NPT];
  const int er = e0 + cl;
  const int64_t st_off = (static_cast<int64_t>(b) * E + er) * N;
#pragma unroll
  for (int i = 0; i < NPT; ++i) {
    const int n = i * TPC + sub;
    const bool ok = er < E && n < N;
    A2[i] = ok ? p.A[static_cast<int64_t>(er) * N + n] * kLog2e : 0.0f;
    h[i] = ok && p.state_in ? m2::load_state(p.state_in, nullptr, st_off + n, 0, p.state_type) : 0.0f;
  }

  // this thread's chunk of the [T, CPB] tiles (row ru, channels cu..cu+UE-1) and [T, NPAD] tiles
  const int ru = tid * UE / CPB, cu = tid * UE % CPB;
  const int rb = tid * BE / NPAD, nb = tid * BE % NPAD;
  const uint16_t* u_b = p.u + b * p.u_stride_b + e0 + cu;
  const uint16_t* dt_b = p.delta + b * p.delta_stride_b + e0 + cu;
  const uint16_t* z_b = p.z ? p.z + b * p.z_stride_b + e0 + cu : nullptr;
  const uint16_t* B_b = p.Bm + b * p.B_stride_b + nb;
  const uint16_t* C_b = p.Cm + b * p.C_stride_b + nb;
  const int uvalid = min(UE, E - (e0 + cu));  // channels of the chunk inside E
  const int bvalid = min(BE, N - nb);

  F16Regs<UE> r_u, r_dt, r_z;
  F16Regs<BE> r_B, r_C;
  auto prefetch = [&](int t0) {
    const int64_t tu = t0 + ru, tb = t0 + rb;
    if constexpr (kVec) {
      r_u.zero(); r_dt.zero(); r_z.zero(); r_B.zero(); r_C.zero();
      if (tu < L) {
        r_u.load_vec(u_b + tu * p.u_stride_l);
        r_dt.load_vec(dt_b + tu * p.delta_stride_l);
        if (z_b) r_z.load_vec(z_b + tu * p.z_stride_l);
      }
      if (tb < L) {
        r_B.load_vec(B_b + tb * p.B_stride_l);
        r_C.load_vec(C_b + tb * p.C_stride_l);
      }
    } else {
      const int uv = tu < L ? uvalid : 0, bv = tb < L ? bvalid : 0;
      r_u.load_n(u_b + tu * p.u_stride_l, uv);
      r_dt.load_n(dt_b + tu * p.delta_stride_l, uv);
      r_z.load_n(z_b ? z_b + tu * p.z_stride_l : nullptr, z_b ? uv : 0);
      r_B.load_n(B_b + tb * p.B_stride_l, bv);
      r_C.load_n(C_b + tb * p.C_stride_l, bv);
    }
  };

  prefetch(0);
  __syncthreads();  // s_bias, s_D

  for (int t0 = 0; t0 < L; t0 += T) {
    const int tlen = min(T, L - t0);
    // ---- consume: the raw tile as fp32 into shared memory
    {
      const bool row_ok = t0 + ru < L;
#pragma unroll
      for (int i = 0; i < UE; ++i) {
        const int c = cu + i;
        const int idx = ru * CPB + c;
        float delta = 0.0f, u = 0.0f, g = 1.0f;
        if (row_ok) {
          u = r_u.get(i);
          float dt = r_dt.get(i);
          if (p.delta_bias) dt = dt + s_bias[c];
          delta = p.delta_softplus ? softplus20(dt) : dt;
          if (z_b) g = silu(r_z.get(i));
        }
        s_delta[idx] = delta;
        s_du[idx] = delta * u;
        s_y[idx] = u * s_D[c];
        s_g[idx] = g;
      }
#pragma unroll
      for (int i = 0; i < BE; ++i) {
        const int idx = rb * NPAD + nb + i;
        s_B[idx] = r_B.get(i);
        s_C[idx] = r_C.get(i);
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
      y = m2::group_sum<TPC>(y);
      if (sub == 0) s_y[t * CPB + cl] += y;
    }
    __syncthreads();

    // ---- finish: gate, fp16 store
    for (int idx = tid; idx < tlen * CPB; idx += kThreads) {
      const int t = idx / CPB, c = idx % CPB, e = e0 + c;
      if (e < E) p.y[b * p.y_stride_b + static_cast<int64_t>(t0 + t) * p.y_stride_l + e] =
          f32_to_f16_bits(s_y[idx] * s_g[idx]);
    }
    __syncthreads();
  }

  // ---- final state (each element written by the thread that read it: state_out may be state_in)
#pragma unroll
  for (int i = 0; i < NPT; ++i) {
    const int n = i * TPC + sub;
    if (er < E && n < N) m2::store_state(p.state_out, nullptr, st_off + n, 0, p.state_type, h[i]);
  }
}

// base and element strides of an fp16 tensor aligned to `bytes`
bool f16_rows_aligned(const void* base, int64_t stride_b, int64_t stride_l, int bytes) {
  return m2::aligned(base, bytes) && (stride_b * 2) % bytes == 0 && (stride_l * 2) % bytes == 0;
}

template <class Cfg>
cudaError_t launch(const QuambaFloatSelectiveScanParams& p, cudaStream_t stream) {
  const int tiles = ceil_div(p.dim, Cfg::CPB);
  QUAMBA_CHECK_ARG(static_cast<int64_t>(tiles) * p.batch <= INT32_MAX);
  const bool vec = p.dim % Cfg::CPB == 0 && p.dstate == Cfg::NPAD &&
                   f16_rows_aligned(p.u, p.u_stride_b, p.u_stride_l, Cfg::UA) &&
                   f16_rows_aligned(p.delta, p.delta_stride_b, p.delta_stride_l, Cfg::UA) &&
                   (!p.z || f16_rows_aligned(p.z, p.z_stride_b, p.z_stride_l, Cfg::UA)) &&
                   f16_rows_aligned(p.Bm, p.B_stride_b, p.B_stride_l, Cfg::BA) &&
                   f16_rows_aligned(p.Cm, p.C_stride_b, p.C_stride_l, Cfg::BA);
  const dim3 grid(static_cast<unsigned>(tiles) * static_cast<unsigned>(p.batch));
  if (vec) selective_scan_f16_kernel<Cfg, true><<<grid, kThreads, 0, stream>>>(p, tiles);
  else selective_scan_f16_kernel<Cfg, false><<<grid, kThreads, 0, stream>>>(p, tiles);
  return cudaGetLastError();
}

}  // namespace
}  // namespace quamba

extern "C" QUAMBA_API cudaError_t quamba_selective_scan(const QuambaFloatSelectiveScanParams* p,
                                                        cudaStream_t stream) {
  using namespace quamba;
  QUAMBA_CHECK_ARG(p != nullptr);
  QUAMBA_CHECK_ARG(p->batch >= 1 && p->seqlen >= 1 && p->dim >= 1 && p->dstate >= 1);
  QUAMBA_CHECK_ARG(p->u && p->delta && p->A && p->Bm && p->Cm && p->y && p->state_out);
  QUAMBA_CHECK_ARG(p->state_type == QUAMBA_SSD_STATE_F32 || p->state_type == QUAMBA_SSD_STATE_F16);
  if (p->dstate > 256) return cudaErrorNotSupported;
  const int N = p->dstate;  // (lanes per channel, states per lane, tile tokens) as quant_selective_scan
  if (N <= 16) return launch<FScanCfg<4, 4, 64>>(*p, stream);
  if (N <= 32) return launch<FScanCfg<4, 8, 32>>(*p, stream);
  if (N <= 64) return launch<FScanCfg<8, 8, 32>>(*p, stream);
  if (N <= 128) return launch<FScanCfg<8, 16, 32>>(*p, stream);
  return launch<FScanCfg<16, 16, 16>>(*p, stream);
}
