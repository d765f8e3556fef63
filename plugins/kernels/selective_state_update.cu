// selective_state_update: one decode token of the float Mamba1 scan, fp16 u / delta / B / C / z in, fp16 y
// out, fp32 math, fp32 or fp16 state (in place allowed). Contract: quamba_edge/ops/selective_scan.py at L = 1
// (reference quamba_edge.models.ssm.selective_state_update); ABI: include/quamba_kernels/selective_state_update.h.
// The float sibling of quant_selective_state_update.cu (same layout, "dequantize int8 x scale" -> "load fp16").
//
// Supported: any batch, dim >= 1, d_state 1..256, batch strides free (any value, in elements), D / z /
// delta_bias optional (NULL), state_out may be state_in (each element is read and written by one thread).
// Returns cudaErrorInvalidValue for a NULL params / u / delta / A / B / C / state_in / state_out / y pointer,
// a non-positive size, a state_type other than QUAMBA_SSD_STATE_F32 / _F16; cudaErrorNotSupported for
// d_state > 256; otherwise the first runtime error (device / occupancy query) or the launch error.
//
// Layout (as the int8 kernel):
// - TPC lanes per channel own NPT consecutive states (NPT = 16: four 16-byte fp32 / two 16-byte fp16 accesses
//   per lane; NPT = 4 for small grids, where more lanes hide latency better); y is reduced with warp shuffles.
// - A block covers 128 / TPC channels and the batch rows b = blockIdx.y + k * gridDim.y. Its channels' A (times
//   log2 e) stays in registers for all its rows; the next row's loads (u, delta, z, state, B / C) are issued
//   before the current row is computed, B / C of a row converted into double-buffered shared memory (one
//   barrier a row).
// - Grid: the fewest rows per block such that every block is resident at once (SM count x occupancy, queried
//   once per device and state dtype), as the int8 kernel measured best.
// - Vector state / A accesses (template VEC) when d_state % NPT == 0 and A, state_in, state_out are aligned
//   (A and fp32 states 16 bytes, fp16 states 2 * NPT bytes); otherwise element accesses.
// Numerics: fp32; dt = delta + bias (a separate add), softplus20 when delta_softplus; h = h_prev * exp(dt A)
// + (dt u) B with a separate fp32 multiply and add as the reference, exp(dt A) = ex2.approx.ftz(dt * (A log2 e))
// (2 ulp, results below 2^-126 flushed to 0: a change below 2^-126 |h_prev|); y = sum_n h C (fp32 FMAs, then
// shuffles: a different summation order than the reference's matmul) + D u, times silu(z); y rounded to fp16.
// A fp16 state is rounded to nearest even after the update.
#include <atomic>

#include "quamba_kernels/common.cuh"
#include "quamba_kernels/mamba2_common.cuh"
#include "quamba_kernels/selective_state_update.h"

namespace quamba {
namespace {

constexpr int kThreads = 128;
constexpr float kLog2e = 1.4426950408889634f;

template <int ST, int NPT, int TPC>
struct DecodeRow {  // one batch row's global inputs of a lane (raw fp16 bits / state registers)
  static constexpr int kFill = (2 * NPT * TPC + kThreads - 1) / kThreads;
  uint32_t u, dt, z;
  m2::StateRegs<ST, NPT> s;
  uint32_t bc[kFill];  // B / C elements of the block's shared row
};

template <int ST, int NPT, int TPC, bool VEC>
__global__ void __launch_bounds__(kThreads)
selective_state_update_f16_kernel(const QuambaFloatSelectiveStateUpdateParams p) {
  static_assert(NPT == 4 || NPT == 16, "NPT");
  constexpr int CPB = kThreads / TPC;  // channels per block
  constexpr int NS = NPT * TPC;        // states covered by a channel's lanes (>= N): B / C row length
  using RowT = DecodeRow<ST, NPT, TPC>;
  constexpr int kFill = RowT::kFill;
  __shared__ __align__(16) float sBC[2][2 * NS];  // B then C of a row (zero past N), double-buffered

  const int tid = threadIdx.x;
  const int e_raw = blockIdx.x * CPB + tid / TPC;
  const int sub = tid % TPC;
  const bool active = e_raw < p.dim;
  const int e = active ? e_raw : 0;  // inactive lanes work on channel 0 and store nothing
  const int N = p.dstate;
  const int n0 = sub * NPT;
  const int valid = active ? max(0, min(NPT, N - n0)) : 0;
  const bool lead = active && sub == 0;

  // row pointers at row b; a row step adds G rows
  const int G = gridDim.y;
  int b = blockIdx.y;
  const int64_t sstep = static_cast<int64_t>(G) * p.dim * N;
  int64_t soff = (static_cast<int64_t>(b) * p.dim + e) * N + n0;  // state element of the lane at row b
  const uint16_t* pu = p.u + b * p.u_stride_b;
  const uint16_t* pdt = p.delta + b * p.delta_stride_b;
  const uint16_t* pz = p.z ? p.z + b * p.z_stride_b : nullptr;
  const uint16_t* pB = p.Bm + b * p.B_stride_b;
  const uint16_t* pC = p.Cm + b * p.C_stride_b;
  uint16_t* py = p.y + b * p.y_stride_b;

  auto load_row = [&](RowT& r, int64_t so) {  // at the current input pointers, state element so
    r.u = pu[e];
    r.dt = pdt[e];
    r.z = lead && pz ? pz[e] : 0u;
#pragma unroll
    for (int i = 0; i < kFill; ++i) {
      const int t = tid + i * kThreads, n = t % NS;
      r.bc[i] = 0u;
      if (t < 2 * NS && n < N) r.bc[i] = t < NS ? pB[n] : pC[n];
    }
    if (valid <= 0) r.s.zero();
    else if constexpr (VEC) r.s.load_vec(p.state_in, so);
    else r.s.load_n(p.state_in, so, valid);
  };
  auto advance_in = [&]() {
    pu += G * p.u_stride_b;
    pdt += G * p.delta_stride_b;
    if (pz) pz += G * p.z_stride_b;
    pB += G * p.B_stride_b;
    pC += G * p.C_stride_b;
  };
  auto store_bc = [&](const RowT& r, float* dst) {
#pragma unroll
    for (int i = 0; i < kFill; ++i) {
      const int t = tid + i * kThreads;
      if (t < 2 * NS) dst[t] = f16_bits_to_f32(static_cast<uint16_t>(r.bc[i]));
    }
  };

  // ---- prologue: first row's loads, the channel's A / D / bias (one barrier)
  RowT cur;
  load_row(cur, soff);
  float A2[NPT];  // A * log2(e) of the lane's states, for every row
  {
    const float* pa = p.A + static_cast<int64_t>(e) * N + n0;
    if (valid <= 0) {
#pragma unroll
      for (int i = 0; i < NPT; ++i) A2[i] = 0.0f;
    } else if constexpr (VEC) {
#pragma unroll
      for (int i = 0; i < NPT; i += 4) {
        const float4 a = *reinterpret_cast<const float4*>(pa + i);
        A2[i] = a.x; A2[i + 1] = a.y; A2[i + 2] = a.z; A2[i + 3] = a.w;
      }
    } else {
#pragma unroll
      for (int i = 0; i < NPT; ++i) A2[i] = i < valid ? pa[i] : 0.0f;
    }
#pragma unroll
    for (int i = 0; i < NPT; ++i) A2[i] *= kLog2e;
  }
  const float bias = p.delta_bias ? p.delta_bias[e] : 0.0f;
  const float dskip = lead && p.D ? p.D[e] : 0.0f;
  store_bc(cur, sBC[0]);
  __syncthreads();

  for (int buf = 0;; buf ^= 1) {
    // prefetch the block's next row first (block-uniform condition: the barrier below is safe)
    const int bn = b + G;
    const bool more = bn < p.batch;
    RowT nxt;
    if (more) {
      advance_in();
      load_row(nxt, soff + sstep);
    }

    const float u = f16_bits_to_f32(static_cast<uint16_t>(cur.u));
    float dt = f16_bits_to_f32(static_cast<uint16_t>(cur.dt));
    if (p.delta_bias) dt = __fadd_rn(dt, bias);  // a separate add, as the reference
    const float delta = p.delta_softplus ? softplus20(dt) : dt;
    const float du = delta * u;
    // h = h_prev * exp(delta A) + (delta u) B (separate fp32 multiply and add, as the reference)
    const float* sB = sBC[buf] + n0;
    const float* sC = sB + NS;
    float h[NPT];
    float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
    for (int j = 0; j < NPT / 4; ++j) {
      const float4 bv = *reinterpret_cast<const float4*>(sB + 4 * j);
      const float4 cv = *reinterpret_cast<const float4*>(sC + 4 * j);
      const float bb[4] = {bv.x, bv.y, bv.z, bv.w}, cc[4] = {cv.x, cv.y, cv.z, cv.w};
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        const int i = 4 * j + k;
        const float dA = ex2_ftz(delta * A2[i]);
        h[i] = __fadd_rn(__fmul_rn(cur.s.get(i), dA), __fmul_rn(du, bb[k]));
        // past N: h_prev = 0 and B = C = 0 (zero-filled), so the term adds exactly 0 (finite inputs)
        acc[k] = fmaf(h[i], cc[k], acc[k]);
      }
    }
    if (valid > 0) m2::store_states<ST, NPT, VEC>(p.state_out, soff, h, valid);
    // every lane of the warp takes part in the reduction (aligned groups of TPC lanes per channel)
    float y = m2::group_sum<TPC>((acc[0] + acc[1]) + (acc[2] + acc[3]));
    if (lead) {
      if (p.D) y = y + u * dskip;
      if (p.z) y = y * silu(f16_bits_to_f32(static_cast<uint16_t>(cur.z)));
      py[e] = f32_to_f16_bits(y);
    }

    if (!more) break;
    store_bc(nxt, sBC[buf ^ 1]);  // last read for the previous row, before the previous barrier
    __syncthreads();
    cur = nxt;
    b = bn;
    soff += sstep;
    py += G * p.y_stride_b;
  }
}

// blocks of `kernel` resident at once on the current device (cached per device and cache slot)
template <class K>
cudaError_t resident_blocks(K kernel, std::atomic<int>* cache, int* out) {
  int dev = 0;
  QUAMBA_CUDA_TRY(cudaGetDevice(&dev));
  std::atomic<int>* slot = dev < 64 ? cache + dev : nullptr;
  int fit = slot ? slot->load(std::memory_order_relaxed) : 0;
  if (fit <= 0) {
    int sms = 0, per_sm = 0;
    QUAMBA_CUDA_TRY(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
    QUAMBA_CUDA_TRY(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, 0));
    fit = max(1, sms * per_sm);
    if (slot) slot->store(fit, std::memory_order_relaxed);
  }
  *out = fit;
  return cudaSuccess;
}

template <int ST, int NPT, int TPC, bool VEC>
cudaError_t launch(const QuambaFloatSelectiveStateUpdateParams& p, cudaStream_t stream) {
  constexpr int CPB = kThreads / TPC;
  const int tiles = ceil_div(p.dim, CPB);
  auto kernel = selective_state_update_f16_kernel<ST, NPT, TPC, VEC>;
  static std::atomic<int> resident[64];  // per device (one cache per kernel instance); 0 = not queried yet
  int fit = 0;
  QUAMBA_CUDA_TRY(resident_blocks(kernel, resident, &fit));
  // rows per block: the fewest that fit the grid in one wave (and at most 65535 row groups)
  const int rows = max(ceil_div(p.batch, max(1, fit / tiles)), ceil_div(p.batch, 65535));
  const dim3 grid(static_cast<unsigned>(tiles), static_cast<unsigned>(ceil_div(p.batch, rows)));
  kernel<<<grid, kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

template <int ST, int NPT, int TPC>
cudaError_t launch_vec(const QuambaFloatSelectiveStateUpdateParams& p, cudaStream_t stream) {
  // fp32 A / state: float4 accesses; fp16 state: 2 * NPT bytes (8 or 32 -> 16)
  const unsigned sa = ST == QUAMBA_SSD_STATE_F32 ? 16u : (NPT == 4 ? 8u : 16u);
  const bool vec = p.dstate % NPT == 0 && m2::aligned(p.A, 16) && m2::aligned(p.state_in, sa) &&
                   m2::aligned(p.state_out, sa);
  return vec ? launch<ST, NPT, TPC, true>(p, stream) : launch<ST, NPT, TPC, false>(p, stream);
}

template <int ST, int NPT>
cudaError_t dispatch(const QuambaFloatSelectiveStateUpdateParams& p, cudaStream_t stream) {
  const int lanes = ceil_div(p.dstate, NPT);  // lanes per channel, rounded up to a power of two
  if (lanes <= 1) return launch_vec<ST, NPT, 1>(p, stream);
  if (lanes <= 2) return launch_vec<ST, NPT, 2>(p, stream);
  if (lanes <= 4) return launch_vec<ST, NPT, 4>(p, stream);
  if (lanes <= 8) return launch_vec<ST, NPT, 8>(p, stream);
  if constexpr (NPT == 16) {
    return launch_vec<ST, NPT, 16>(p, stream);  // N <= 256
  } else {
    if (lanes <= 16) return launch_vec<ST, NPT, 16>(p, stream);
    return launch_vec<ST, NPT, 32>(p, stream);  // N <= 128 here
  }
}

template <int ST>
cudaError_t dispatch_npt(const QuambaFloatSelectiveStateUpdateParams& p, cudaStream_t stream) {
  // NPT 4 (4x the lanes: latency) while the NPT-16 grid would give each SM under ~2 blocks, else NPT 16
  const int64_t lanes16 = static_cast<int64_t>(p.batch) * p.dim * ((p.dstate + 15) / 16);
  const bool small = p.dstate <= 128 && lanes16 < 32768;
  return small ? dispatch<ST, 4>(p, stream) : dispatch<ST, 16>(p, stream);
}

}  // namespace
}  // namespace quamba

extern "C" QUAMBA_API cudaError_t quamba_selective_state_update(const QuambaFloatSelectiveStateUpdateParams* p,
                                                                cudaStream_t stream) {
  QUAMBA_CHECK_ARG(p != nullptr);
  QUAMBA_CHECK_ARG(p->batch >= 1 && p->dim >= 1 && p->dstate >= 1);
  QUAMBA_CHECK_ARG(p->u && p->delta && p->A && p->Bm && p->Cm && p->state_in && p->state_out && p->y);
  QUAMBA_CHECK_ARG(p->state_type == QUAMBA_SSD_STATE_F32 || p->state_type == QUAMBA_SSD_STATE_F16);
  if (p->dstate > 256) return cudaErrorNotSupported;
  if (p->state_type == QUAMBA_SSD_STATE_F16) return quamba::dispatch_npt<QUAMBA_SSD_STATE_F16>(*p, stream);
  return quamba::dispatch_npt<QUAMBA_SSD_STATE_F32>(*p, stream);
}
