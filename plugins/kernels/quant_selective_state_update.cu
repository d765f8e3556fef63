// quant_selective_state_update: one decode token of the Mamba1 scan, int8 (or fp32) state in place.
// Contract: quamba_edge/ops/quant_selective_scan.py / quant_selective_state_update.py;
// ABI: include/quamba_kernels/quant_selective_state_update.h.
//
// The state is read once and written once, but at N = 16 the arithmetic costs as much as the traffic:
// ~14.5 instructions per state element (dequantize, exp, update, y, requantize) plus ~200 per (b, e) row
// (softplus, silu, addresses, prefetch), i.e. ~4-5 us of issue time on an H100 at B = 64, E = 5120 against
// ~6.1 us for a no-math kernel with the same traffic. So the layout minimizes per-row / per-block work and
// keeps loads in flight while computing:
// - TPC lanes per channel own NPT consecutive states (NPT = 16: one 16-byte load / store per lane, the
//   whole N = 16 channel in one lane; NPT = 4 for small grids, where more lanes hide latency better); y is
//   reduced with warp shuffles.
// - A block covers 128 / TPC channels and the batch rows b = blockIdx.y + k * gridDim.y. Its channels' A
//   (A * log2 e from a 256-entry table over the int8 code: one expf per code, not per element) stays in
//   registers for all its rows, and the next row's loads are issued before the current row is computed
//   (B / C of a row dequantized into double-buffered shared memory, one barrier a row).
// - Grid: the fewest rows per block such that every block is resident at once (SM count x occupancy,
//   queried at runtime, so Orin's 8 SMs get long row loops and the H100 a single full wave): a second,
//   partial wave cost more than the longer loop (H100, B = 64: 2560 one-row blocks over ~1.9 waves
//   10.9 us; 880 blocks of 3 rows in one wave of 924 slots 9.2 us; forcing 2 rows, 1280 blocks: 10.5 us).
// - Tried and slower at B = 64: all rows' loads up front (2-8 rows unrolled, no loop, before the leaner
//   arithmetic: 11.0-13.9 us), a 64-register cap (8 blocks / SM instead of 7, with spills; 9.4 us), the
//   row loop unrolled by two to avoid row-register copies (80 registers, 6 blocks / SM; 9.9 us).
// Arithmetic: int8 <-> fp32 by exact magic-number arithmetic; the requantization multiplies by
// 1 / state_scale (correctly rounded on the host): the product differs from the IEEE quotient by
// < |h / s| * 2^-23, so the rounded int8 values can differ only where h / s lies within 1.6e-5 of a .5
// boundary, by one LSB (the contract's ±1 LSB). exp(delta A) = ex2.approx.ftz(delta * (A log2 e)), A log2 e
// rounded once in the table (two fp32 roundings, as (delta A) log2 e had): the same 2-ulp MUFU.EX2 as
// exp2f without its subnormal-result path (3 instructions per element), so exp(delta A) < 2^-126 becomes 0
// instead of a subnormal (a change below 2^-126 |h_prev|, far under an int8 step).
#include <atomic>

#include "quamba_kernels/common.cuh"
#include "quamba_kernels/quant_selective_state_update.h"

namespace quamba {
namespace {

constexpr int kThreads = 128;
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kMagicI8 = 8388736.0f;      // 2^23 + 128: bits 0x4B0000uu hold 2^23 + (q + 128)
constexpr float kMagicRound = 12582912.0f;  // 1.5 * 2^23: x + it rounds x to an integer (half to even)

// byte k of w = word ^ 0x80808080 as a float: bits 0x4B0000uu = 2^23 + (q + 128), minus kMagicI8 (exact)
__device__ __forceinline__ float i8_byte_to_f32(int w, int magic, int k) {
  return __int_as_float(__byte_perm(w, magic, 0x7440 | k)) - kMagicI8;
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
struct Row {  // one batch row's global inputs of a lane
  static constexpr int kFill = (2 * NPT * TPC + kThreads - 1) / kThreads;
  int u, dt, z;
  int s[NPT / 4];                // int8 state words
  float f[kStateInt8 ? 1 : NPT];  // fp32 state
  int bc[kFill];                 // B / C codes of the block's shared table
};

template <int NPT, int TPC, bool kStateInt8>
__global__ void __launch_bounds__(kThreads)
quamba_selective_state_update_kernel(const QuambaSelectiveStateUpdateParams p, const float inv_state_scale,
                                     const bool vec, const int magic) {
  static_assert(NPT == 4 || NPT == 16, "NPT");
  constexpr int NW = NPT / 4;
  constexpr int CPB = kThreads / TPC;  // channels per block
  constexpr int NS = NPT * TPC;        // states covered by a channel's lanes (>= N): B / C row length
  using RowT = Row<NPT, TPC, kStateInt8>;
  constexpr int kFill = RowT::kFill;
  __shared__ float sA[256];                     // A * log2(e) for the int8 code (uint8 index)
  __shared__ __align__(16) float sBC[2][2 * NS];  // B then C of a row (zero past N), double-buffered

  const int tid = threadIdx.x;
  const int e_raw = blockIdx.x * CPB + tid / TPC;
  const int sub = tid % TPC;
  const bool active = e_raw < p.dim;
  const int e = active ? e_raw : 0;
  const int N = p.dstate;
  const int n0 = sub * NPT;
  const int valid = active ? max(0, min(NPT, N - n0)) : 0;
  const bool lead = active && sub == 0;

  // the lane's pointers at row b; a row step adds G rows (64-bit adds, no per-row index arithmetic).
  // Row pointers of the [B, E] / [B, N] inputs are block-uniform (uniform registers): the lane adds e.
  const int G = gridDim.y;
  int b = blockIdx.y;
  const int64_t soff = (static_cast<int64_t>(b) * p.dim + e) * N + n0;
  const int64_t sstep = static_cast<int64_t>(G) * p.dim * N;
  const int8_t* pu = p.u + b * p.u_stride_b;
  const int8_t* pdt = p.dt + b * p.dt_stride_b;
  const int8_t* pz = p.z ? p.z + b * p.z_stride_b : nullptr;
  const int8_t* pB = p.Bm + b * p.B_stride_b;
  const int8_t* pC = p.Cm + b * p.C_stride_b;
  uint16_t* py = p.y + b * p.y_stride_b;
  const char* ps = static_cast<const char*>(p.state) + soff * (kStateInt8 ? 1 : 4);
  char* pns = static_cast<char*>(p.new_state) + soff * (kStateInt8 ? 1 : 4);

  auto load_row = [&](RowT& r) {  // at the current pointers
    r.u = pu[e];
    r.dt = pdt[e];
    r.z = lead && pz ? pz[e] : 0;
#pragma unroll
    for (int i = 0; i < kFill; ++i) {
      const int t = tid + i * kThreads, n = t % NS;
      r.bc[i] = 0;
      if (t < 2 * NS && n < N) r.bc[i] = t < NS ? pB[n] : pC[n];
    }
    if (valid > 0) {
      if constexpr (kStateInt8) {
        load_words<NPT>(reinterpret_cast<const int8_t*>(ps), vec, valid, r.s);
      } else {
        const float* src = reinterpret_cast<const float*>(ps);
        if (vec) {
#pragma unroll
          for (int i = 0; i < NPT; i += 4) {
            const float4 f = *reinterpret_cast<const float4*>(src + i);
            r.f[i] = f.x; r.f[i + 1] = f.y; r.f[i + 2] = f.z; r.f[i + 3] = f.w;
          }
        } else {
#pragma unroll
          for (int i = 0; i < NPT; ++i) r.f[i] = i < valid ? src[i] : 0.0f;
        }
      }
    } else {
#pragma unroll
      for (int j = 0; j < NW; ++j) r.s[j] = 0;
#pragma unroll
      for (int i = 0; i < (kStateInt8 ? 1 : NPT); ++i) r.f[i] = 0.0f;
    }
  };
  auto advance_in = [&]() {
    pu += G * p.u_stride_b;
    pdt += G * p.dt_stride_b;
    if (pz) pz += G * p.z_stride_b;
    pB += G * p.B_stride_b;
    pC += G * p.C_stride_b;
    ps += sstep * (kStateInt8 ? 1 : 4);
  };
  auto store_bc = [&](const RowT& r, float* dst) {
#pragma unroll
    for (int i = 0; i < kFill; ++i) {
      const int t = tid + i * kThreads;
      if (t < 2 * NS) dst[t] = dequant(static_cast<int8_t>(r.bc[i]), t < NS ? p.B_scale : p.C_scale);
    }
  };

  // ---- prologue: first row's loads, the channel's A_log / D / dt_bias, the block's tables (one barrier)
  RowT cur;
  load_row(cur);
  int a_w[NW];
  if (valid > 0) {
    load_words<NPT>(p.A_log + static_cast<int64_t>(e) * N + n0, vec, valid, a_w);
  } else {
#pragma unroll
    for (int j = 0; j < NW; ++j) a_w[j] = 0;
  }
  const float bias = p.dt_bias ? dequant(p.dt_bias[e], p.dt_bias_scale) : 0.0f;
  const float dskip = lead && p.D ? dequant(p.D[e], p.D_scale) : 0.0f;
#pragma unroll
  for (int i = 0; i < 256 / kThreads; ++i) {
    const int t = tid + i * kThreads;
    sA[t] = -expf(dequant(static_cast<int8_t>(t), p.A_log_scale)) * kLog2e;
  }
  store_bc(cur, sBC[0]);
  __syncthreads();
  float A2[NPT];  // A * log2(e) of the lane's states, for every row
#pragma unroll
  for (int i = 0; i < NPT; ++i) A2[i] = sA[__byte_perm(a_w[i / 4], 0, 0x4440 | (i % 4))];

  for (int buf = 0;; buf ^= 1) {
    // prefetch the block's next row first (block-uniform condition: the barrier below is safe)
    const int bn = b + G;
    const bool more = bn < p.batch;
    RowT nxt;
    if (more) {
      advance_in();
      load_row(nxt);
    }

    const float u = dequant(static_cast<int8_t>(cur.u), p.u_scale);
    float dt = dequant(static_cast<int8_t>(cur.dt), p.dt_scale);
    if (p.dt_bias) dt = __fadd_rn(dt, bias);  // a separate add, as the reference
    const float delta = softplus20(dt);
    const float du = delta * u;
    float h[NPT];
    if constexpr (kStateInt8) {
#pragma unroll
      for (int j = 0; j < NW; ++j) {
        const int w = cur.s[j] ^ 0x80808080;
#pragma unroll
        for (int k = 0; k < 4; ++k) h[4 * j + k] = i8_byte_to_f32(w, magic, k) * p.state_scale;
      }
    } else {
#pragma unroll
      for (int i = 0; i < NPT; ++i) h[i] = cur.f[i];
    }
    // h = h_prev * exp(delta A) + (delta u) B (separate fp32 multiply and add, as the reference)
    const float* sB = sBC[buf] + n0;
    const float* sC = sB + NS;
    float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
    for (int j = 0; j < NW; ++j) {
      const float4 bv = *reinterpret_cast<const float4*>(sB + 4 * j);
      const float4 cv = *reinterpret_cast<const float4*>(sC + 4 * j);
      const float bb[4] = {bv.x, bv.y, bv.z, bv.w}, cc[4] = {cv.x, cv.y, cv.z, cv.w};
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        const int i = 4 * j + k;
        const float dA = ex2_ftz(delta * A2[i]);
        h[i] = __fadd_rn(__fmul_rn(h[i], dA), __fmul_rn(du, bb[k]));
        // past N: h_prev = 0 and B = C = 0 (zero-filled), so the term adds exactly 0 (finite inputs)
        acc[k] = fmaf(h[i], cc[k], acc[k]);
      }
    }
    float y = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    if (valid > 0) {
      if constexpr (kStateInt8) {
        int w[NW];
#pragma unroll
        for (int j = 0; j < NW; ++j) {
          int q[4];
#pragma unroll
          for (int k = 0; k < 4; ++k) q[k] = f32_to_i8_bits(h[4 * j + k] * inv_state_scale);
          w[j] = __byte_perm(__byte_perm(q[0], q[1], 0x0040), __byte_perm(q[2], q[3], 0x0040), 0x5410);
        }
        int8_t* dst = reinterpret_cast<int8_t*>(pns);
        if (vec) {
          if constexpr (NPT == 4) *reinterpret_cast<int*>(dst) = w[0];
          else *reinterpret_cast<int4*>(dst) = make_int4(w[0], w[1], w[2], w[3]);
        } else {
#pragma unroll
          for (int i = 0; i < NPT; ++i)
            if (i < valid) dst[i] = static_cast<int8_t>((w[i / 4] >> (8 * (i % 4))) & 0xff);
        }
      } else {
        float* dst = reinterpret_cast<float*>(pns);
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
      if (p.D) y = y + u * dskip;
      if (p.z) y = y * silu(dequant(static_cast<int8_t>(cur.z), p.z_scale));
      py[e] = f32_to_f16_bits(y);
    }

    if (!more) break;
    store_bc(nxt, sBC[buf ^ 1]);  // last read for the previous row, before the previous barrier
    __syncthreads();
    cur = nxt;
    b = bn;
    py += G * p.y_stride_b;
    pns += sstep * (kStateInt8 ? 1 : 4);
  }
}

template <int NPT, int TPC>
cudaError_t launch(const QuambaSelectiveStateUpdateParams& p, bool vec, cudaStream_t stream) {
  constexpr int CPB = kThreads / TPC;
  const int tiles = ceil_div(p.dim, CPB);
  auto kernel = p.state_is_int8 ? quamba_selective_state_update_kernel<NPT, TPC, true>
                                : quamba_selective_state_update_kernel<NPT, TPC, false>;
  // rows per block: the fewest that fit the grid in one wave of resident blocks (occupancy x SMs)
  static std::atomic<int> resident[2][64];  // per state dtype and device; 0 = not queried yet
  int dev = 0, fit = 0;
  QUAMBA_CUDA_TRY(cudaGetDevice(&dev));
  std::atomic<int>* slot = dev < 64 ? &resident[p.state_is_int8 ? 1 : 0][dev] : nullptr;
  if (slot) fit = slot->load(std::memory_order_relaxed);
  if (fit <= 0) {
    int sms = 0, per_sm = 0;
    QUAMBA_CUDA_TRY(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
    QUAMBA_CUDA_TRY(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, 0));
    fit = max(1, sms * per_sm);
    if (slot) slot->store(fit, std::memory_order_relaxed);
  }
  const int rows = ceil_div(p.batch, max(1, fit / tiles));
  const dim3 grid(static_cast<unsigned>(tiles), static_cast<unsigned>(ceil_div(p.batch, rows)));
  // magic = 0x4B000000 as an argument: in a register, the PRMTs keep immediate selectors
  kernel<<<grid, kThreads, 0, stream>>>(p, p.state_is_int8 ? 1.0f / p.state_scale : 1.0f, vec, 0x4B000000);
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
  if constexpr (NPT == 16) {
    return launch<NPT, 16>(p, vec, stream);  // N <= 256
  } else {
    if (lanes <= 16) return launch<NPT, 16>(p, vec, stream);
    return launch<NPT, 32>(p, vec, stream);
  }
}

}  // namespace
}  // namespace quamba

extern "C" QUAMBA_API cudaError_t quamba_quant_selective_state_update(const QuambaSelectiveStateUpdateParams* p,
                                                                      cudaStream_t stream) {
  QUAMBA_CHECK_ARG(p != nullptr);
  QUAMBA_CHECK_ARG(p->batch >= 1 && p->dim >= 1 && p->dstate >= 1 && p->dstate <= 256);
  QUAMBA_CHECK_ARG(p->batch <= 65535 && static_cast<int64_t>(p->batch) * p->dim * 32 < (int64_t{1} << 31));
  QUAMBA_CHECK_ARG(p->u && p->dt && p->A_log && p->Bm && p->Cm && p->state && p->new_state && p->y);
  // NPT 4 (4x the lanes: latency) while the NPT-16 grid would give each SM under ~2 blocks, else NPT 16;
  // rows per block: launch() (one wave of resident blocks).
  const int64_t lanes16 = static_cast<int64_t>(p->batch) * p->dim * ((p->dstate + 15) / 16);
  const bool small = p->dstate <= 128 && lanes16 < 32768;
  return small ? quamba::dispatch<4>(*p, stream) : quamba::dispatch<16>(*p, stream);
}
