// QuantSSD: Mamba2 SSD prefill with int8 inputs (grouped Quamba2 scales) and an int8 / float state.
// Contract: quamba_edge/ops/quant_ssd.py (see quamba_kernels/quant_ssd.h).
//
// Two kernels behind one entry point (quamba_quant_ssd at the end of this file):
//   - the chunked tensor-core kernel (ssdc::chunked_kernel in quamba_kernels/ssd_chunked.cuh, shared with the
//     float SSD op's ssd.cu): the default for prefills of L >= 32 that it supports (QUAMBA_SSD_CHUNKED=0 turns
//     it off);
//   - the sequential-in-time kernel (quant_ssd_kernel), described next: shorter prefills, the calls the
//     chunked kernel does not take (d_state 16 / 32, p_tile 8 / 16, staging, unaligned rows), and
//     QUAMBA_SSD_CHUNKED=0.
//
// Sequential design: a state-passing recurrence. One block owns (batch b, head h, a tile of PB headdim channels) and
// keeps that PB x N slice of the state in fp32 registers for the whole sequence. Thread (pg, ln) holds a
// 4 x 8 register tile: channels p0 + 4 pg + k (k < 4) times states n in the float4 chunks {j * LN + ln}
// (j < 2, LN = N / 8 threads per channel group; interleaved so that the shared-memory float4 reads of B and
// C are conflict-free). Each B / C value read from shared memory thus serves 4 channels (a quarter of the
// shared-memory traffic of a 1 x 16 tile). Time is walked in tiles of TT tokens: the tile's B, C
// (dequantized, fp32), x (dequantized), delta and exp(delta A) are staged in shared memory (by default from
// registers that were loaded while the previous tile computed: `staging`); every thread then runs the TT
// steps (the next step's operands prefetched into registers while the current one computes)
//     s = fma(exp(delta A), s, (delta x[p]) * B[n]);   ypart[p] += s * C[n]
// and leaves its 4 partial dot products in shared memory; after a barrier the PB x TT outputs are summed
// over the LN partials, D x is added and y is stored as fp16. The final state is quantized once.
// Parallelism is B x H x P / 4 x N / 8 threads: at batch 1 only a few warps per SM, so the loop is latency
// bound (measurements and what was tried: benchmarks/results/kernels_mamba2.md).
//
// QUAMBA_SSD_EMULATE (tests/test_quant_ssd_chunked_emu.py only): compiles just the chunked kernel as host
// C++ over stand-ins of its warp primitives (tests/ssd_chunked_emu/), to run its index math on a CPU.
#include "quamba_kernels/quant_ssd.h"

#include "quamba_kernels/common.cuh"
#include "quamba_kernels/mamba2_common.cuh"
#include "quamba_kernels/ssd_chunked.cuh"  // the chunked tensor-core kernel (shared with ssd.cu)

#ifndef QUAMBA_SSD_EMULATE
#ifndef __CUDACC_RTC__
#include <stdlib.h>  // getenv (NVRTC's device-side check has no C library: the call is compiled out there)
#endif
#endif

#ifndef QUAMBA_SSD_EMULATE
namespace quamba {
namespace {

using m2::load_state;
using m2::mamba2_A;
using m2::mamba2_delta;
using m2::store_state;

template <int N, int PB>
struct SsdCfg {
  static constexpr int PPT = 4;               // channels per thread
  static constexpr int NPT = 8;               // states per thread and channel (two float4 chunks)
  static constexpr int LN = N / NPT;          // threads per channel group
  static constexpr int PG = PB / PPT;         // channel groups per block
  static constexpr int N4 = N / 4;            // float4 chunks per row of B / C
  static constexpr int THREADS = PG * LN;
  static constexpr int TT = N >= 256 ? 8 : (N >= 128 ? 16 : 32);  // tokens per tile
  static constexpr int YS = LN + 1;           // float4 stride of one (token, group) row of partials (padded)
  static_assert(N % 16 == 0 && LN >= 2 && LN <= 32, "d_state must be 16..256, a multiple of 16");
  static_assert(PB % PPT == 0 && THREADS >= 32 && THREADS >= TT, "channel tile");
  static constexpr int BCU = (TT * N4 + THREADS - 1) / THREADS;         // 4-byte B / C loads per thread
  static constexpr int XU = (TT * (PB / 4) + THREADS - 1) / THREADS;    // 4-channel x loads per thread
  // shared memory (floats): B[TT][N], C[TT][N], x[2][TT][PB] (two buffers when pipelined), x_scale[PB],
  // delta[TT], dA[TT], ypart[TT][PG][YS][4]
  static constexpr int SM_B = 0;
  static constexpr int SM_C = SM_B + TT * N;
  static constexpr int SM_X = SM_C + TT * N;
  static constexpr int SM_XS = SM_X + 2 * TT * PB;
  static constexpr int SM_DELTA = SM_XS + PB;
  static constexpr int SM_DA = SM_DELTA + TT;
  static constexpr int SM_Y = SM_DA + TT + ((4 - (SM_DA + TT) % 4) % 4);  // 16-byte aligned
  static constexpr int SM_FLOATS = SM_Y + TT * PG * YS * 4;
  static constexpr size_t SMEM_BYTES = sizeof(float) * SM_FLOATS;
};

// 4 consecutive int8 as floats times s (one 32-bit load when VEC, else 4 byte loads).
template <bool VEC>
__device__ __forceinline__ float4 load4_dequant(const int8_t* p, float s) {
  if (VEC) {
    const char4 c = *reinterpret_cast<const char4*>(p);
    return make_float4(dequant(c.x, s), dequant(c.y, s), dequant(c.z, s), dequant(c.w, s));
  }
  return make_float4(dequant(p[0], s), dequant(p[1], s), dequant(p[2], s), dequant(p[3], s));
}

// 4 consecutive int8 as one 32-bit word (one load when VEC, else 4 byte loads; bytes at or past `valid` = 0).
template <bool VEC>
__device__ __forceinline__ uint32_t load4_raw(const int8_t* p, int valid = 4) {
  if (VEC) return valid >= 4 ? *reinterpret_cast<const uint32_t*>(p) : 0u;
  uint32_t w = 0;
#pragma unroll
  for (int e = 0; e < 4; ++e) {
    if (e < valid) w |= uint32_t(uint8_t(p[e])) << (8 * e);
  }
  return w;
}

__device__ __forceinline__ float byte_dequant(uint32_t w, int e, float s) {
  return dequant(static_cast<int8_t>((w >> (8 * e)) & 0xffu), s);
}

__device__ __forceinline__ float f4(const float4& v, int e) { return e == 0 ? v.x : (e == 1 ? v.y : (e == 2 ? v.z : v.w)); }

template <int N, int PB, bool VEC, bool PIPE>
__global__ void __launch_bounds__(SsdCfg<N, PB>::THREADS)
quant_ssd_kernel(const QuambaQuantSSDParams p) {
  using Cfg = SsdCfg<N, PB>;
  constexpr int LN = Cfg::LN, PG = Cfg::PG, N4 = Cfg::N4, TT = Cfg::TT, THREADS = Cfg::THREADS, YS = Cfg::YS;
  constexpr int PPT = Cfg::PPT, NPT = Cfg::NPT, BCU = Cfg::BCU, XU = Cfg::XU, PB4 = PB / 4;
  extern __shared__ float4 smem4[];
  float* smem = reinterpret_cast<float*>(smem4);
  float* sB = smem + Cfg::SM_B;
  float* sC = smem + Cfg::SM_C;
  float* sX = smem + Cfg::SM_X;
  float* sXS = smem + Cfg::SM_XS;
  float* sDelta = smem + Cfg::SM_DELTA;
  float* sDA = smem + Cfg::SM_DA;
  float4* sY4 = reinterpret_cast<float4*>(smem + Cfg::SM_Y);
  const float4* sB4 = reinterpret_cast<const float4*>(sB);
  const float4* sC4 = reinterpret_cast<const float4*>(sC);

  const int P = p.headdim, H = p.nheads, L = p.seqlen;
  const int h = blockIdx.y, b = blockIdx.z;
  const int p0 = blockIdx.x * PB;
  const int tid = threadIdx.x;
  const int pg = tid / LN, ln = tid % LN;
  const int g = h / (H / p.ngroups);

  const float A = mamba2_A(p.A_log[h], p.A_log_scale);
  const float bias = p.dt_bias[h];
  const float Dh = p.D != nullptr ? dequant(p.D[h], p.D_scale) : 0.0f;
  const float sBg = p.B_scale[g], sCg = p.C_scale[g];

  // ---- initial state: s[k][j * 4 + e] = S[p0 + 4 pg + k][(j * LN + ln) * 4 + e] -------------------
  float s[PPT][NPT];
#pragma unroll
  for (int k = 0; k < PPT; ++k) {
    const int pch = p0 + pg * PPT + k;
    const bool pvalid = pch < P;
    const int64_t st_base = ((int64_t(b) * H + h) * P + pch) * N;
    int64_t sc_base = 0;
    if (pvalid && p.state_type == QUAMBA_SSD_STATE_INT8) {
      sc_base = m2::state_scale_row_of(p.state_scale_row, int64_t(h) * P + pch) * N;
    }
#pragma unroll
    for (int j = 0; j < 2; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int n = (j * LN + ln) * 4 + e;
        s[k][j * 4 + e] = (pvalid && p.state_in != nullptr)
                              ? load_state(p.state_in, p.state_scale, st_base + n, sc_base + n, p.state_type)
                              : 0.0f;
      }
    }
  }

  const int8_t* xb = p.x + int64_t(b) * p.x_batch_stride + int64_t(h) * P;
  const int8_t* dtb = p.dt + int64_t(b) * p.dt_batch_stride + h;
  const int8_t* Bb = p.B + int64_t(b) * p.B_batch_stride + int64_t(g) * N;
  const int8_t* Cb = p.C + int64_t(b) * p.C_batch_stride + int64_t(g) * N;
  uint16_t* yb = p.y + int64_t(b) * p.y_batch_stride + int64_t(h) * P;
  const float* xsc = p.x_scale + int64_t(h) * P;

  for (int q = tid; q < PB; q += THREADS) sXS[q] = p0 + q < P ? xsc[p0 + q] : 0.0f;

  // ---- pipelined staging: the raw bytes of the next tile travel in registers while a tile computes ----
  uint32_t rb[BCU], rc[BCU], rx[XU];
  int8_t rdt = 0;
  auto load_raw = [&](int t0, int tc) {
#pragma unroll
    for (int i = 0; i < BCU; ++i) {
      const int u = tid + i * THREADS;
      if (u < tc * N4) {
        const int64_t t = t0 + u / N4;
        const int c = u % N4;
        rb[i] = load4_raw<VEC>(Bb + t * p.B_seq_stride + c * 4);
        rc[i] = load4_raw<VEC>(Cb + t * p.C_seq_stride + c * 4);
      }
    }
#pragma unroll
    for (int i = 0; i < XU; ++i) {
      const int u = tid + i * THREADS;
      if (u < tc * PB4) {
        const int pc = p0 + (u % PB4) * 4;
        rx[i] = load4_raw<VEC>(xb + int64_t(t0 + u / PB4) * p.x_seq_stride + pc, P - pc);
      }
    }
    if (tid < tc) rdt = dtb[int64_t(t0 + tid) * p.dt_seq_stride];
  };
  auto store_raw = [&](int tc, float* sXb) {
#pragma unroll
    for (int i = 0; i < BCU; ++i) {
      const int u = tid + i * THREADS;
      if (u < tc * N4) {
        reinterpret_cast<float4*>(sB)[u] = make_float4(byte_dequant(rb[i], 0, sBg), byte_dequant(rb[i], 1, sBg),
                                                       byte_dequant(rb[i], 2, sBg), byte_dequant(rb[i], 3, sBg));
        reinterpret_cast<float4*>(sC)[u] = make_float4(byte_dequant(rc[i], 0, sCg), byte_dequant(rc[i], 1, sCg),
                                                       byte_dequant(rc[i], 2, sCg), byte_dequant(rc[i], 3, sCg));
      }
    }
#pragma unroll
    for (int i = 0; i < XU; ++i) {
      const int u = tid + i * THREADS;
      if (u < tc * PB4) {
        const int q = (u % PB4) * 4;  // sX row tt = u / PB4, channels q .. q+3: float index u * 4
        reinterpret_cast<float4*>(sXb)[u] =
            make_float4(byte_dequant(rx[i], 0, sXS[q]), byte_dequant(rx[i], 1, sXS[q + 1]),
                        byte_dequant(rx[i], 2, sXS[q + 2]), byte_dequant(rx[i], 3, sXS[q + 3]));
      }
    }
    if (tid < tc) {
      const float d = mamba2_delta(rdt, p.dt_scale, bias, p.dt_limit_lo, p.dt_limit_hi);
      sDelta[tid] = d;
      sDA[tid] = expf(d * A);
    }
  };
  if constexpr (PIPE) {
    __syncthreads();  // sXS
    load_raw(0, min(TT, L));
  }

  for (int t0 = 0, par = 0; t0 < L; t0 += TT, par ^= (PIPE ? 1 : 0)) {
    const int tc = min(TT, L - t0);
    float* sXb = sX + par * TT * PB;
    const float4* sX4 = reinterpret_cast<const float4*>(sXb);
    if constexpr (PIPE) {
      // Hazards: sB / sC / delta / dA were last read by this tile's predecessor before the barrier that
      // precedes its epilogue; sXb (this parity) by the epilogue two tiles back, before the barrier below.
      store_raw(tc, sXb);
      __syncthreads();
      if (t0 + TT < L) load_raw(t0 + TT, min(TT, L - t0 - TT));
    } else {
    __syncthreads();  // the previous tile is fully consumed
    // ---- stage the tile --------------------------------------------------------------------------
    for (int u = tid; u < tc * N4; u += THREADS) {
      const int tt = u / N4, c = u % N4;
      const int64_t t = t0 + tt;
      reinterpret_cast<float4*>(sB)[u] = load4_dequant<VEC>(Bb + t * p.B_seq_stride + c * 4, sBg);
      reinterpret_cast<float4*>(sC)[u] = load4_dequant<VEC>(Cb + t * p.C_seq_stride + c * 4, sCg);
    }
    for (int u = tid; u < tc * PB; u += THREADS) {
      const int tt = u / PB, q = u % PB;
      const int pc = p0 + q;
      sXb[u] = pc < P ? dequant(xb[int64_t(t0 + tt) * p.x_seq_stride + pc], xsc[pc]) : 0.0f;
    }
    for (int tt = tid; tt < tc; tt += THREADS) {
      const float d = mamba2_delta(dtb[int64_t(t0 + tt) * p.dt_seq_stride], p.dt_scale, bias, p.dt_limit_lo,
                                   p.dt_limit_hi);
      sDelta[tt] = d;
      sDA[tt] = expf(d * A);
    }
    __syncthreads();
    }

    // ---- recurrence over the tile (operands of step tt + 1 fetched while step tt computes) -----------
    float4 nb0 = sB4[ln], nb1 = sB4[LN + ln], nc0 = sC4[ln], nc1 = sC4[LN + ln], nx = sX4[pg];
    float ndA = sDA[0], ndl = sDelta[0];
#pragma unroll 2
    for (int tt = 0; tt < tc; ++tt) {
      const float4 b0 = nb0, b1 = nb1, c0 = nc0, c1 = nc1, xv = nx;
      const float dA = ndA, dl = ndl;
      const int tn = tt + 1 < TT ? tt + 1 : tt;  // rows past tc hold stale values that are never used
      nb0 = sB4[tn * N4 + ln];
      nb1 = sB4[tn * N4 + LN + ln];
      nc0 = sC4[tn * N4 + ln];
      nc1 = sC4[tn * N4 + LN + ln];
      nx = sX4[tn * PG + pg];
      ndA = sDA[tn];
      ndl = sDelta[tn];

      const float dx[PPT] = {dl * xv.x, dl * xv.y, dl * xv.z, dl * xv.w};
      float acc[PPT];
#pragma unroll
      for (int k = 0; k < PPT; ++k) {
        float a0 = 0.0f, a1 = 0.0f;
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          s[k][e] = fmaf(dA, s[k][e], dx[k] * f4(b0, e));
          s[k][4 + e] = fmaf(dA, s[k][4 + e], dx[k] * f4(b1, e));
          a0 = fmaf(s[k][e], f4(c0, e), a0);
          a1 = fmaf(s[k][4 + e], f4(c1, e), a1);
        }
        acc[k] = a0 + a1;
      }
      sY4[(tt * PG + pg) * YS + ln] = make_float4(acc[0], acc[1], acc[2], acc[3]);
    }
    __syncthreads();

    // ---- outputs of the tile -----------------------------------------------------------------------
    const float* sY = reinterpret_cast<const float*>(sY4);
    for (int u = tid; u < tc * PB; u += THREADS) {
      const int tt = u / PB, q = u % PB;
      const int pc = p0 + q;
      if (pc >= P) continue;
      const float* row = sY + ((tt * PG + q / PPT) * YS) * 4 + (q % PPT);
      float v = 0.0f;
#pragma unroll
      for (int l = 0; l < LN; ++l) v += row[l * 4];
      v = fmaf(Dh, sXb[u], v);
      yb[int64_t(t0 + tt) * p.y_seq_stride + pc] = f32_to_f16_bits(v);
    }
  }

  // ---- final state -------------------------------------------------------------------------------
#pragma unroll
  for (int k = 0; k < PPT; ++k) {
    const int pch = p0 + pg * PPT + k;
    if (pch >= P) continue;
    const int64_t st_base = ((int64_t(b) * H + h) * P + pch) * N;
    int64_t sc_base = 0;
    // the row index is re-read rather than kept in PPT more registers live through the chunk loop
    if (p.state_type == QUAMBA_SSD_STATE_INT8) {
      sc_base = m2::state_scale_row_of(p.state_scale_row, int64_t(h) * P + pch) * N;
    }
#pragma unroll
    for (int j = 0; j < 2; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int n = (j * LN + ln) * 4 + e;
        store_state(p.state_out, p.state_scale, st_base + n, sc_base + n, p.state_type, s[k][j * 4 + e]);
      }
    }
  }
}

template <int N, int PB, bool VEC>
cudaError_t launch(const QuambaQuantSSDParams& p, cudaStream_t stream) {
  using Cfg = SsdCfg<N, PB>;
  auto kernel = p.staging == 1 ? quant_ssd_kernel<N, PB, VEC, false> : quant_ssd_kernel<N, PB, VEC, true>;
  if (Cfg::SMEM_BYTES > 48 * 1024) {
    QUAMBA_CUDA_TRY(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         static_cast<int>(Cfg::SMEM_BYTES)));
  }
  dim3 grid(ceil_div(p.headdim, PB), p.nheads, p.batch);
  kernel<<<grid, Cfg::THREADS, Cfg::SMEM_BYTES, stream>>>(p);
  return cudaGetLastError();
}

// Channel tile PB1 or PB2 = 2 * PB1: the larger tile (two warps, half the B / C staging per state) unless it
// leaves multiprocessors idle. Measured on an H100 (benchmarks/kernels_mamba2.py, p_tile rows): PB2 was
// faster for both mamba2-2.7b (320 vs 640 blocks) and mamba2-8b.
template <int N, int PB1, bool VEC>
cudaError_t dispatch_tile(const QuambaQuantSSDParams& p, cudaStream_t stream) {
  constexpr int PB2 = 2 * PB1;
  int pb = p.p_tile;
  if (pb == 0) {
    int dev = 0, sms = 0;
    QUAMBA_CUDA_TRY(cudaGetDevice(&dev));
    QUAMBA_CUDA_TRY(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
    const long long blocks2 = static_cast<long long>(ceil_div(p.headdim, PB2)) * p.nheads * p.batch;
    pb = blocks2 >= sms ? PB2 : PB1;
  }
  if (pb == PB1) return launch<N, PB1, VEC>(p, stream);
  if (pb == PB2) return launch<N, PB2, VEC>(p, stream);
  return cudaErrorInvalidValue;
}

template <bool VEC>
cudaError_t dispatch_n(const QuambaQuantSSDParams& p, cudaStream_t stream) {
  switch (p.dstate) {  // tiles of 32 / 64 threads
    case 16: return dispatch_tile<16, 64, VEC>(p, stream);
    case 32: return dispatch_tile<32, 32, VEC>(p, stream);
    case 64: return dispatch_tile<64, 16, VEC>(p, stream);
    case 128: return dispatch_tile<128, 8, VEC>(p, stream);
    case 256: return dispatch_tile<256, 4, VEC>(p, stream);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace
}  // namespace quamba

#endif  // QUAMBA_SSD_EMULATE


#ifndef QUAMBA_SSD_EMULATE
namespace quamba {
namespace {

// QUAMBA_SSD_CHUNKED: "0" -> the sequential kernel; unset / "1" (or any other value) -> the chunked kernel
// for L >= ssdc::kMinSeqlen where it supports the call (the default); "2" -> the chunked kernel for every L
// it supports (tests). Read on every call (no caching: a test may change it between calls; getenv is cheap).
int chunked_mode() {
#if defined(__CUDACC_RTC__)
  return 1;
#else
  const char* e = getenv("QUAMBA_SSD_CHUNKED");
  if (e == nullptr || e[0] == '\0' || e[1] != '\0') return 1;
  return e[0] == '0' ? 0 : (e[0] == '2' ? 2 : 1);
#endif
}

}  // namespace
}  // namespace quamba

extern "C" QUAMBA_API cudaError_t quamba_quant_ssd(const QuambaQuantSSDParams* p, cudaStream_t stream) {
  using quamba::m2::aligned;
  QUAMBA_CHECK_ARG(p != nullptr);
  QUAMBA_CHECK_ARG(p->batch >= 1 && p->seqlen >= 1 && p->nheads >= 1 && p->headdim >= 1 && p->ngroups >= 1);
  QUAMBA_CHECK_ARG(p->nheads % p->ngroups == 0 && p->chunk_size >= 1);
  QUAMBA_CHECK_ARG(p->batch <= 65535 && p->nheads <= 65535);
  QUAMBA_CHECK_ARG(p->x && p->x_scale && p->dt && p->dt_bias && p->A_log && p->B && p->B_scale && p->C &&
                   p->C_scale && p->y && p->state_out);
  QUAMBA_CHECK_ARG(p->state_type == QUAMBA_SSD_STATE_INT8 || p->state_type == QUAMBA_SSD_STATE_F32 ||
                   p->state_type == QUAMBA_SSD_STATE_F16);
  QUAMBA_CHECK_ARG(p->state_type != QUAMBA_SSD_STATE_INT8 || p->state_scale != nullptr);
  QUAMBA_CHECK_ARG(p->staging == 0 || p->staging == 1);
  const int mode = quamba::chunked_mode();
  // the chunked kernel (ssd_chunked.cuh) unless QUAMBA_SSD_CHUNKED=0, a short prefill (L < kMinSeqlen, mode 1),
  // staging 1 or a call it does not take (then p_tile 8 / 16 and the rest are the sequential kernel's)
  const bool chunked = mode != 0 && (mode == 2 || p->seqlen >= quamba::ssdc::kMinSeqlen) && p->staging == 0;
  const int pt = chunked ? quamba::ssdc::tile_for(*p, p->p_tile == 0 ? 32 : p->p_tile) : 0;
  if (pt != 0) return quamba::ssdc::dispatch(*p, pt, stream);
  // 4-byte loads of B, C and x need 4-byte aligned bases and strides (and whole 4-channel groups of x)
  const bool vec = p->headdim % 4 == 0 && aligned(p->x, 4) && p->x_batch_stride % 4 == 0 &&
                   p->x_seq_stride % 4 == 0 && p->dstate % 4 == 0 && aligned(p->B, 4) && aligned(p->C, 4) && p->B_batch_stride % 4 == 0 &&
                   p->B_seq_stride % 4 == 0 && p->C_batch_stride % 4 == 0 && p->C_seq_stride % 4 == 0;
  return vec ? quamba::dispatch_n<true>(*p, stream) : quamba::dispatch_n<false>(*p, stream);
}
#endif  // !QUAMBA_SSD_EMULATE
