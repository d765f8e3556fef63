// QuantSSD: Mamba2 SSD prefill with int8 inputs (grouped Quamba2 scales) and an int8 / float state.
// Contract: quamba_edge/ops/quant_ssd.py (see quamba_kernels/quant_ssd.h).
//
// Two kernels behind one entry point (quamba_quant_ssd at the end of this file):
//   - the chunked tensor-core kernel (ssdc::chunked_kernel, below): the default for prefills of L >= 32 that
//     it supports (QUAMBA_SSD_CHUNKED=0 turns it off);
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

#ifndef QUAMBA_SSD_EMULATE
#include <atomic>
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

// ================================================================================================
// Chunked prefill on tensor cores (Mamba2's SSD algorithm, written from the paper's chunked form).
//
// Decomposition: one block of 4 warps per (batch b, head h, tile of PT = 32 or 64 headdim channels) walks
// the sequence in chunks of Q = 64 tokens and keeps its PT x N slice of the state in fp32 mma accumulators
// for the whole sequence (state passing between chunks inside the block: no workspace, which the C ABI
// does not have, and the same in-place state_in == state_out contract as the sequential kernel). Per
// chunk, with cum_t = sum_{k <= t} dA_k (dA = delta A, inclusive within the chunk) and S the state
// entering the chunk:
//   Y_diag[t, p] = s_x[p] sum_{s <= t} M[t, s] xq[s, p],  M[t, s] = G[t, s] sB sC exp(cum_t - cum_s) delta_s,
//                  G = Cq Bq^T (int8 m16n8k32 mma: exact int32)
//   Y_off[t, p]  = sC exp(cum_t) sum_n Cq[t, n] S[p, n]                       (fp16 m16n8k16 mma)
//   y[t, p]      = Y_diag + Y_off + D x[t, p]                                  (fp32, stored as fp16)
//   S           <- exp(cum_Q) S + sum_s Xd[s, p] Bq[s, n],  Xd[s, p] = x[s, p] exp(cum_Q - cum_s) delta_s sB
// Warp w owns the chunk's row tile t in [16 w, 16 w + 16) for y (C B^T only for the s-blocks s <= t: warp
// w does w + 1 of them), and a fixed share of the state's (16-channel, 32-state) tiles for the update.
// Per chunk: cp.async of the next chunk's int8 B / C / x rows into the other stage buffer (overlapping
// this chunk's compute); the per-token scan (every warp computes all 64 prefix / suffix sums with
// shuffles, identically); x -> fp16 operands; barrier; y; barrier; state update; the state (fp16 hi / lo)
// back to shared memory for the next chunk's Y_off.
//
// Fragment layouts (PTX ISA, mma.sync m16n8k16 .f16 / m16n8k32 .s8; g = lane / 4, q = lane % 4):
//   f16 A (16 x 16): r0 (row g, k 2q..2q+1), r1 (row g+8, k 2q..), r2 (row g, k 8+2q..), r3 (row g+8, k 8+2q..)
//   f16 B (16 x 8):  r0 (k 2q..2q+1, col g), r1 (k 8+2q.., col g);   C/D: c0,c1 (row g, col 2q..), c2,c3 (row g+8)
//   s8 A (16 x 32):  r0 (row g, k 4q..4q+3), r1 (row g+8, k 4q..), r2 (row g, k 16+4q..), r3 (row g+8, k 16+4q..)
//   s8 B (32 x 8):   r0 (k 4q..4q+3, col g), r1 (k 16+4q.., col g); C: as f16.
// A dot product does not care in which order its K positions enter an mma, so operands are fed in
// whatever K (or output-column) order makes the loads cheap, the same for both operands:
//   - Y_off: the s8 A fragment of Cq (ldmatrix) is widened in registers to two f16 A fragments; logical k
//     2q+e <-> state 4q+e and 8+2q+e <-> 4q+2+e, so S^T's B fragment is one 8-byte load of S[p][4q..4q+3];
//   - state update: output column c of n8 tile j <-> state n = 32 ng + 4 c + j, so a lane's B fragments of
//     all four n8 tiles come from one 32-bit word per B row (Bq[s][32 ng + 4 g .. + 3]), and its
//     accumulators hold 8 consecutive states of a channel (one 16-byte store of S per row).
//
// Numerics (no fast-math; the bounds the tests assert: tests/gpu/ssd_helpers.py, chunked_*_bound):
//   exact:  int8 -> fp16 of the integer codes (|q| <= 128), G = Cq Bq^T in int32 and float(G)
//           (|G| <= 128^2 N <= 2^22 < 2^24), fp16 x fp16 products inside the mma, power-of-two scalings;
//   fp32:   delta (m2::mamba2_delta, as the reference and the sequential kernel), dA = delta A, M, Xd, the
//           epilogue, all mma accumulation (order unspecified), the state across chunks (never requantized);
//   hi/lo:  the three fp32 operands of the fp16 mmas (M, Xd, S) are split into two fp16 parts, v ~ hi + lo
//           with hi = fp16(v), lo = fp16(v - hi) (v - hi is exact): |v - hi - lo| <= 2^-22 |v| while lo is
//           a normal fp16 (|v| >= 2^-3), else 2^-25 absolute. M and Xd are first scaled by a power of two
//           per chunk (from bounds: |M| <= 128^2 N sB sC max delta, |Xd| <= 128 max s_x max w) so that their
//           largest possible value is < 2^15: no fp16 overflow, and the absolute floor is 2^-40 of the
//           chunk's bound (a token whose decayed weight is below that is lost, e.g. e^-27 of the chunk's
//           largest; mamba_ssm's fp16 chunk_state has the same limit at 2^-11 relative precision); the
//           state accumulators live in Xd's units and are rescaled exactly between chunks. S (the Y_off
//           operand) is not scaled: it must fit fp16 (|S| < 65504, as any fp16 state cache) and keeps the
//           2^-25 floor (y: <= 2^-25 sum_n |C_t n| absolute).
//           Without the split, the emulated kernel (tests/test_quant_ssd_chunked_emu.py) flipped ~1 % of
//           the int8 state codes against the fp32 reference, some by 2 LSB (Xd), and doubled y's error
//           (M, S; still inside the fp16 tolerance): the split of Xd stays, kSplitM / kSplitS are the
//           speed / accuracy knobs for y;
//   decay:  cum is a double-float prefix sum (hi + lo, two-sum steps), so exp(cum_t - cum_s) has no
//           cancellation (the reference's masked-cumsum segsum has none either); exp(cum_Q - cum_s) is a
//           direct suffix sum; exp(cum_t) and exp(cum_Q) are direct prefix sums.
//   Against the reference (ssm.ssd_chunked, fp32, chunk_size 128 / 256): the same quantities summed in a
//   different order, so y differs by ~1e-6 of sum_terms |.| before its fp16 rounding (emulated) and the
//   fp32 state by ~1e-6 relative (+ the reference's own exp(dA_cum[-1] - dA_cum) cancellation, ~2^-24
//   |dA_cum[-1]| in the exponent): int8 state codes within +-1 LSB, nearly all equal (0.04 % emulated).
// ================================================================================================
namespace quamba {
namespace ssdc {

constexpr int kQ = 64;                 // tokens per chunk
constexpr int kWarps = 4;              // = kQ / 16: one 16-token row tile of y per warp
constexpr int kThreads = 32 * kWarps;
constexpr int kMinSeqlen = 32;         // default (QUAMBA_SSD_CHUNKED unset / 1): shorter prefills stay sequential (not tuned)
constexpr bool kSplitM = true;         // M as hi + lo fp16 (else one fp16 operand): y only
constexpr bool kSplitS = true;         // S as hi + lo fp16 for Y_off (else one): y only
constexpr unsigned kFull = 0xffffffffu;

// ---- warp primitives (sm_80+: cp.async, ldmatrix, mma.sync); host stand-ins under QUAMBA_SSD_EMULATE ----
#ifndef QUAMBA_SSD_EMULATE
__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
__device__ __forceinline__ unsigned char* dyn_smem() {
  extern __shared__ __align__(16) unsigned char ssdc_smem[];
  return ssdc_smem;
}
// 16 bytes global -> shared; zero-filled (nothing read) when !valid. "memory": no shared access moves across.
__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(dst)), "l"(src),
               "r"(valid ? 16 : 0)
               : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_group 0;\n" ::: "memory"); }
// Four 8x8 b16 matrices; lanes 8i..8i+7 give the row addresses of matrix i (16-byte aligned rows).
__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(row))
               : "memory");
}
__device__ __forceinline__ void ldsm_x4_t(uint32_t (&r)[4], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(row))
               : "memory");
}
__device__ __forceinline__ void mma_s8(int (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
__device__ __forceinline__ void mma_f16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
// fp16x2 a - b (round to nearest; exact for the integer operands it is used with)
__device__ __forceinline__ uint32_t hsub2_bits(uint32_t a, uint32_t b) {
  uint32_t d;
  asm("sub.rn.f16x2 %0, %1, %2;\n" : "=r"(d) : "r"(a), "r"(b));
  return d;
}
#endif  // !QUAMBA_SSD_EMULATE

// Two int8 at bytes 0 and 2 of t -> fp16x2 (byte 0 in the low half), exactly: (b ^ 0x80) = b + 128 goes
// into the mantissa of 1024 (fp16 spacing 1 in [1024, 2048)), then 1152 = 1024 + 128 is subtracted.
__device__ __forceinline__ uint32_t s8x2_to_h2(uint32_t t) {
  return hsub2_bits((t & 0x00ff00ffu) ^ 0x64806480u, 0x64806480u);
}
__device__ __forceinline__ uint32_t s8_lo_h2(uint32_t w) { return s8x2_to_h2(__byte_perm(w, 0u, 0x0100u)); }  // bytes 0, 1
__device__ __forceinline__ uint32_t s8_hi_h2(uint32_t w) { return s8x2_to_h2(__byte_perm(w, 0u, 0x0302u)); }  // bytes 2, 3
// byte j of wa (low half) and byte j of wb (high half)
__device__ __forceinline__ uint32_t s8_pair_h2(uint32_t wa, uint32_t wb, int j) {
  return s8x2_to_h2(__byte_perm(wa, wb, uint32_t(j) | (uint32_t(4 + j) << 8)));
}
__device__ __forceinline__ float h_lo(uint32_t h2) { return f16_bits_to_f32(static_cast<uint16_t>(h2 & 0xffffu)); }
__device__ __forceinline__ float h_hi(uint32_t h2) { return f16_bits_to_f32(static_cast<uint16_t>(h2 >> 16)); }
__device__ __forceinline__ uint32_t pack_h2(float lo, float hi) {
  return uint32_t(f32_to_f16_bits(lo)) | (uint32_t(f32_to_f16_bits(hi)) << 16);
}
// (v0, v1) -> hi = fp16 pair, lo = fp16 pair of the remainders (v - float(hi) is exact in fp32)
__device__ __forceinline__ void split_h2(float v0, float v1, uint32_t& hi, uint32_t& lo) {
  hi = pack_h2(v0, v1);
  lo = pack_h2(__fsub_rn(v0, h_lo(hi)), __fsub_rn(v1, h_hi(hi)));
}
// s + e = a + b exactly (Knuth's two-sum; separate IEEE adds, nothing to contract)
__device__ __forceinline__ void two_sum(float a, float b, float& s, float& e) {
  s = __fadd_rn(a, b);
  const float bb = __fsub_rn(s, a);
  e = __fadd_rn(__fsub_rn(a, __fsub_rn(s, bb)), __fsub_rn(b, bb));
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(kFull, v, o));
  return v;
}
// Exponent k such that bound * 2^k < 2^15 (operands scaled by 2^k stay finite in fp16 and their lo parts are
// subnormal only 2^-18 below the bound); `keep` when the bound is 0 or not finite. |k| <= 60 so that the
// ratio of two consecutive scales stays a normal float.
__device__ __forceinline__ int pow2_exponent(float bound, int keep) {
  if (!(bound > 0.0f && bound <= 3.0e38f)) return keep;  // 0, inf or NaN
  const int k = 14 - ilogbf(bound);
  return k < -60 ? -60 : (k > 60 ? 60 : k);
}

template <int N, int PT>
struct Cfg {
  static_assert(N == 64 || N == 128 || N == 256, "d_state 64 / 128 / 256");
  static_assert(PT == 32 || PT == 64, "channel tile 32 / 64");
  // Row strides (padding keeps ldmatrix phases and the state's 32-bit B loads free of bank conflicts:
  // B / C rows are 4 words mod 32 apart, X rows 4 or 20, S rows 8 (two half-warps of 8-byte loads)).
  static constexpr int BCS = N + 16;   // bytes per B / C stage row
  static constexpr int XQS = PT + 16;  // bytes per x stage row
  static constexpr int XHS = PT + 8;   // halves per X / Xd row
  static constexpr int SS = N + 16;    // halves per S row
  static constexpr int ST_B = 0, ST_C = kQ * BCS, ST_X = 2 * kQ * BCS;
  static constexpr int ST_BYTES = ST_X + kQ * XQS;  // one stage; two stages (double buffer)
  static constexpr int OFF_X = 2 * ST_BYTES;        // fp16 [Q][XHS]: the x codes, exact
  static constexpr int OFF_XDH = OFF_X + 2 * kQ * XHS;
  static constexpr int OFF_XDL = OFF_XDH + 2 * kQ * XHS;
  static constexpr int OFF_SH = OFF_XDL + 2 * kQ * XHS;  // fp16 [PT][SS]: the chunk's start state, hi
  static constexpr int OFF_SL = OFF_SH + 2 * PT * SS;    // and lo
  static constexpr int OFF_CUMH = OFF_SL + 2 * PT * SS;  // float [Q]: cum, hi part
  static constexpr int OFF_CUML = OFF_CUMH + 4 * kQ;     // float [Q]: cum, lo part
  static constexpr int OFF_DT = OFF_CUML + 4 * kQ;       // float [Q]: delta
  static constexpr int SMEM_BYTES = OFF_DT + 4 * kQ;
  static constexpr int NK = N / 32;   // k32 steps over the states
  static constexpr int PN = PT / 8;   // n8 tiles of channels in a y row tile
  static constexpr int XW = PT / 4;   // 4-channel words per x row
  // state tiles: MT (16 channels) x NG (32 states); warps WM along channels x WN along states
  static constexpr int MT = PT / 16, NG = N / 32;
  static constexpr int WN = NG < kWarps ? NG : kWarps, WM = kWarps / WN;
  static constexpr int MTW = MT / WM, NGW = NG / WN;  // tiles per warp
  static_assert(MT % WM == 0 && NG % WN == 0, "state tiles");
  static_assert(ST_BYTES % 16 == 0 && OFF_SH % 16 == 0 && OFF_CUMH % 16 == 0, "16-byte aligned regions");
};

template <int N, int PT>
__global__ void __launch_bounds__(kThreads) chunked_kernel(const QuambaQuantSSDParams p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
  __trap();  // never launched there (the entry point checks the device); keeps other arch lists building
#else
  using Cf = Cfg<N, PT>;
  constexpr int NK = Cf::NK, PN = Cf::PN, XW = Cf::XW, MTW = Cf::MTW, NGW = Cf::NGW, WN = Cf::WN, WM = Cf::WM;
  unsigned char* smem = dyn_smem();
  uint16_t* sX = reinterpret_cast<uint16_t*>(smem + Cf::OFF_X);
  uint16_t* sXdh = reinterpret_cast<uint16_t*>(smem + Cf::OFF_XDH);
  uint16_t* sXdl = reinterpret_cast<uint16_t*>(smem + Cf::OFF_XDL);
  uint16_t* sSh = reinterpret_cast<uint16_t*>(smem + Cf::OFF_SH);
  uint16_t* sSl = reinterpret_cast<uint16_t*>(smem + Cf::OFF_SL);
  float* sCumH = reinterpret_cast<float*>(smem + Cf::OFF_CUMH);
  float* sCumL = reinterpret_cast<float*>(smem + Cf::OFF_CUML);
  float* sDt = reinterpret_cast<float*>(smem + Cf::OFF_DT);

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, gid = lane >> 2, tig = lane & 3;
  const int P = p.headdim, H = p.nheads, L = p.seqlen;
  const int p0 = blockIdx.x * PT, h = blockIdx.y, b = blockIdx.z;
  const int g = h / (H / p.ngroups);
  const float A = m2::mamba2_A(p.A_log[h], p.A_log_scale);
  const float bias = p.dt_bias[h];
  const float Dh = p.D != nullptr ? dequant(p.D[h], p.D_scale) : 0.0f;
  const float sB = p.B_scale[g], sC = p.C_scale[g];
  const float sBC = sB * sC;

  const int8_t* xg = p.x + int64_t(b) * p.x_batch_stride + int64_t(h) * P + p0;
  const int8_t* dtg = p.dt + int64_t(b) * p.dt_batch_stride + h;
  const int8_t* Bg = p.B + int64_t(b) * p.B_batch_stride + int64_t(g) * N;
  const int8_t* Cg = p.C + int64_t(b) * p.C_batch_stride + int64_t(g) * N;
  uint16_t* yg = p.y + int64_t(b) * p.y_batch_stride + int64_t(h) * P + p0;
  const float* xsc = p.x_scale + int64_t(h) * P + p0;

  // x scales of this lane's y columns (8 pn + 2 tig + e) and of its conversion columns (4 xw + i)
  float xs_y[PN][2];
#pragma unroll
  for (int pn = 0; pn < PN; ++pn) {
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      const int pl = 8 * pn + 2 * tig + e;
      xs_y[pn][e] = p0 + pl < P ? xsc[pl] : 0.0f;
    }
  }
  const int xw = lane % XW;
  float xs_c[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) xs_c[i] = p0 + 4 * xw + i < P ? xsc[4 * xw + i] : 0.0f;
  // largest x scale of the tile (the lanes' xw cover every column): bounds |x| <= 128 sx_max
  const float sx_max = warp_max(fmaxf(fmaxf(fabsf(xs_c[0]), fabsf(xs_c[1])), fmaxf(fabsf(xs_c[2]), fabsf(xs_c[3]))));

  // ---- async loads of chunk c into stage st: int8 rows of B, C (N bytes) and x (PT bytes); rows past L
  // and channels past P are zero-filled (P % 16 == 0: a 16-byte piece is wholly in or out) ------------
  auto issue_loads = [&](int c, int st) {
    unsigned char* sb = smem + st * Cf::ST_BYTES;
    const int t0 = c * kQ;
    constexpr int BCP = N / 16;
#pragma unroll
    for (int i = 0; i < kQ * BCP / kThreads; ++i) {
      const int u = tid + i * kThreads, r = u / BCP, k = (u % BCP) * 16;
      const bool ok = t0 + r < L;
      const int64_t t = ok ? t0 + r : 0;  // a valid address even where nothing is read
      cp_async16(sb + Cf::ST_B + r * Cf::BCS + k, Bg + t * p.B_seq_stride + k, ok);
      cp_async16(sb + Cf::ST_C + r * Cf::BCS + k, Cg + t * p.C_seq_stride + k, ok);
    }
    constexpr int XP = PT / 16;
#pragma unroll
    for (int i = 0; i < kQ * XP / kThreads; ++i) {
      const int u = tid + i * kThreads, r = u / XP, k = (u % XP) * 16;
      const bool ok = t0 + r < L && p0 + k < P;
      cp_async16(sb + Cf::ST_X + r * Cf::XQS + k, ok ? xg + int64_t(t0 + r) * p.x_seq_stride + k : xg, ok);
    }
    cp_async_commit();
  };
  // raw dt of tokens 2 lane, 2 lane + 1 of chunk c (every warp keeps its own copy: each runs the scan)
  auto load_dt = [&](int c, int8_t (&d)[2]) {
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      const int t = c * kQ + 2 * lane + e;
      d[e] = t < L ? dtg[int64_t(t) * p.dt_seq_stride] : int8_t(0);
    }
  };

  // ---- the state: acc[mi][ni][j][r] = 2^kx S[16 mt + g (+8 for r >= 2)][32 ng + 8 tig + j (+4 for odd r)] ----
  // with mt = warp / WN + WM mi, ng = warp % WN + WN ni (output column c of n8 tile j <-> state 32 ng + 4 c + j);
  // kx: the current chunk's power-of-two scale of Xd (0 before the first chunk)
  float acc[MTW][NGW][4][4];
  const bool int8_state = p.state_type == QUAMBA_SSD_STATE_INT8;
#pragma unroll
  for (int mi = 0; mi < MTW; ++mi) {
#pragma unroll
    for (int ni = 0; ni < NGW; ++ni) {
      const int mt = warp / WN + WM * mi, ng = warp % WN + WN * ni;
#pragma unroll
      for (int hr = 0; hr < 2; ++hr) {
        const int pch = p0 + 16 * mt + gid + 8 * hr, n0 = 32 * ng + 8 * tig;
        const bool ok = pch < P && p.state_in != nullptr;
        const int64_t sbase = ((int64_t(b) * H + h) * P + pch) * N + n0;
        const int64_t cbase = ok && int8_state ? m2::state_scale_row_of(p.state_scale_row, int64_t(h) * P + pch) * N + n0 : 0;
#pragma unroll
        for (int k = 0; k < 8; ++k) {
          acc[mi][ni][k & 3][2 * hr + (k >> 2)] =
              ok ? m2::load_state(p.state_in, p.state_scale, sbase + k, cbase + k, p.state_type) : 0.0f;
        }
      }
    }
  }
  // the state as fp16 hi / lo rows S[p][n] for the next chunk's Y_off (8 consecutive states per store)
  auto write_state = [&](float unscale) {
#pragma unroll
    for (int mi = 0; mi < MTW; ++mi) {
#pragma unroll
      for (int ni = 0; ni < NGW; ++ni) {
        const int mt = warp / WN + WM * mi, ng = warp % WN + WN * ni;
#pragma unroll
        for (int hr = 0; hr < 2; ++hr) {
          uint32_t hi[4], lo[4];
#pragma unroll
          for (int k2 = 0; k2 < 4; ++k2) {
            const int k = 2 * k2;
            split_h2(acc[mi][ni][k & 3][2 * hr + (k >> 2)] * unscale,
                     acc[mi][ni][(k + 1) & 3][2 * hr + ((k + 1) >> 2)] * unscale, hi[k2], lo[k2]);
          }
          const int row = 16 * mt + gid + 8 * hr, n0 = 32 * ng + 8 * tig;
          *reinterpret_cast<uint4*>(sSh + row * Cf::SS + n0) = make_uint4(hi[0], hi[1], hi[2], hi[3]);
          *reinterpret_cast<uint4*>(sSl + row * Cf::SS + n0) = make_uint4(lo[0], lo[1], lo[2], lo[3]);
        }
      }
    }
  };

  int8_t dnext[2];
  load_dt(0, dnext);
  issue_loads(0, 0);
  write_state(1.0f);
  int kx_prev = 0;
  const int nchunks = (L + kQ - 1) / kQ;
  for (int c = 0; c < nchunks; ++c) {
    const unsigned char* stage = smem + (c & 1) * Cf::ST_BYTES;
    const unsigned char* sBq = stage + Cf::ST_B;
    const unsigned char* sCq = stage + Cf::ST_C;
    const int8_t dcur[2] = {dnext[0], dnext[1]};
    cp_async_wait_all();
    // B1: this chunk's rows have landed; every thread is done with the previous chunk (its stage, X / Xd,
    // cum / delta) and the previous state update wrote S
    __syncthreads();
    if (c + 1 < nchunks) {
      issue_loads(c + 1, (c + 1) & 1);
      load_dt(c + 1, dnext);
    }

    // ---- per-token scan (all warps, identical values): lane holds tokens 2 lane + e ---------------------
    float dl[2], da[2];
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      const int t = c * kQ + 2 * lane + e;
      dl[e] = t < L ? m2::mamba2_delta(dcur[e], p.dt_scale, bias, p.dt_limit_lo, p.dt_limit_hi) : 0.0f;
      da[e] = dl[e] * A;  // padded tokens: delta 0 -> decay 1, no input
    }
    // inclusive prefix sum as a double-float (ih + il): exact differences cum_t - cum_s where they cancel
    float ih, il;
    two_sum(da[0], da[1], ih, il);
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const float vh = __shfl_up_sync(kFull, ih, o), vl = __shfl_up_sync(kFull, il, o);
      if (lane >= o) {
        float s, e;
        two_sum(vh, ih, s, e);
        ih = s;
        il = __fadd_rn(__fadd_rn(il, vl), e);
      }
    }
    float eh = __shfl_up_sync(kFull, ih, 1), el = __shfl_up_sync(kFull, il, 1);
    if (lane == 0) eh = el = 0.0f;
    float cumh[2], cuml[2];
    {
      float e0;
      two_sum(eh, da[0], cumh[0], e0);
      cuml[0] = __fadd_rn(el, e0);
      cumh[1] = ih;
      cuml[1] = il;
    }
    // suffix sums rev_s = sum_{k > s} dA_k (exp(rev_s) = exp(cum_Q - cum_s) without a difference)
    float sinc = __fadd_rn(da[0], da[1]);
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const float v = __shfl_down_sync(kFull, sinc, o);
      if (lane + o < 32) sinc = __fadd_rn(sinc, v);
    }
    float sexc = __shfl_down_sync(kFull, sinc, 1);
    if (lane == 31) sexc = 0.0f;
    const float rev[2] = {__fadd_rn(sexc, da[1]), sexc};
    const float cdec = expf(__fadd_rn(__shfl_sync(kFull, ih, 31), __shfl_sync(kFull, il, 31)));  // exp(cum_Q)
    float wv[2];  // state weight of token s: exp(cum_Q - cum_s) delta_s sB
#pragma unroll
    for (int e = 0; e < 2; ++e) wv[e] = expf(rev[e]) * dl[e] * sB;
    // power-of-two scales of this chunk's fp16 operands, from bounds (|Xd| <= 128 sx_max max w,
    // |M| <= 128^2 N sB sC max delta): Xd and the state accumulators in units of 2^-kx, M of 2^-km
    const int kx = pow2_exponent(128.0f * sx_max * warp_max(fmaxf(fabsf(wv[0]), fabsf(wv[1]))), kx_prev);
    const int km = pow2_exponent(16384.0f * N * sBC * warp_max(fmaxf(dl[0], dl[1])), 0);
#pragma unroll
    for (int e = 0; e < 2; ++e) wv[e] = ldexpf(wv[e], kx);  // exact
    if ((lane >> 3) == warp) {  // each warp publishes its own 16 rows
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        sCumH[2 * lane + e] = cumh[e];
        sCumL[2 * lane + e] = cuml[e];
        sDt[2 * lane + e] = dl[e];
      }
    }
    // ---- x rows 16 warp .. 16 warp + 15 -> X (fp16 codes, exact) and Xd = x w_s as hi / lo --------------
    {
      constexpr int RPP = 32 / XW;  // rows per pass
#pragma unroll
      for (int it = 0; it < 16 / RPP; ++it) {
        const int s = 16 * warp + it * RPP + lane / XW;
        const float w0 = __shfl_sync(kFull, wv[0], s >> 1), w1 = __shfl_sync(kFull, wv[1], s >> 1);
        const float ws = (s & 1) ? w1 : w0;
        const uint32_t q4 = *reinterpret_cast<const uint32_t*>(stage + Cf::ST_X + s * Cf::XQS + 4 * xw);
        float xd[4];
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          xd[i] = (dequant(static_cast<int8_t>((q4 >> (8 * i)) & 0xffu), xs_c[i])) * ws;
        }
        uint32_t dh0, dl0, dh1, dl1;
        split_h2(xd[0], xd[1], dh0, dl0);
        split_h2(xd[2], xd[3], dh1, dl1);
        const int o = s * Cf::XHS + 4 * xw;
        *reinterpret_cast<uint2*>(sX + o) = make_uint2(s8_lo_h2(q4), s8_hi_h2(q4));
        *reinterpret_cast<uint2*>(sXdh + o) = make_uint2(dh0, dh1);
        *reinterpret_cast<uint2*>(sXdl + o) = make_uint2(dl0, dl1);
      }
    }
    __syncthreads();  // B2: cum / delta / X / Xd of the whole chunk

    // ---- y rows t0 .. t0 + 15 -----------------------------------------------------------------------------
    {
      const int t0 = 16 * warp;
      uint32_t ca[NK][4];  // Cq rows t0.., s8 A fragments per 32 states
#pragma unroll
      for (int kk = 0; kk < NK; ++kk) {
        ldsm_x4(ca[kk], sCq + (t0 + (lane & 7) + 8 * ((lane >> 3) & 1)) * Cf::BCS + 32 * kk + 16 * (lane >> 4));
      }
      float yo[PN][4], yd[PN][4];
#pragma unroll
      for (int pn = 0; pn < PN; ++pn) {
#pragma unroll
        for (int r = 0; r < 4; ++r) yo[pn][r] = yd[pn][r] = 0.0f;
      }
      // inter-chunk: sum_n Cq[t, n] S[p, n]
#pragma unroll
      for (int kk = 0; kk < NK; ++kk) {
        const uint32_t f0[4] = {s8_lo_h2(ca[kk][0]), s8_lo_h2(ca[kk][1]), s8_hi_h2(ca[kk][0]), s8_hi_h2(ca[kk][1])};
        const uint32_t f1[4] = {s8_lo_h2(ca[kk][2]), s8_lo_h2(ca[kk][3]), s8_hi_h2(ca[kk][2]), s8_hi_h2(ca[kk][3])};
#pragma unroll
        for (int pn = 0; pn < PN; ++pn) {
          const int o = (8 * pn + gid) * Cf::SS + 32 * kk + 4 * tig;
          const uint2 h0 = *reinterpret_cast<const uint2*>(sSh + o), h1 = *reinterpret_cast<const uint2*>(sSh + o + 16);
          mma_f16(yo[pn], f0, h0.x, h0.y);
          mma_f16(yo[pn], f1, h1.x, h1.y);
          if (kSplitS) {
            const uint2 l0 = *reinterpret_cast<const uint2*>(sSl + o), l1 = *reinterpret_cast<const uint2*>(sSl + o + 16);
            mma_f16(yo[pn], f0, l0.x, l0.y);
            mma_f16(yo[pn], f1, l1.x, l1.y);
          }
        }
      }
      // intra-chunk: s-blocks j <= warp (the diagonal block masked to s <= t)
      const int tr0 = t0 + gid, tr1 = tr0 + 8;
      const float sBCm = ldexpf(sBC, km), ym = ldexpf(1.0f, -km);  // M in units of 2^-km: exact scalings
      const float ch0 = sCumH[tr0], cl0 = sCumL[tr0], ch1 = sCumH[tr1], cl1 = sCumL[tr1];
      for (int j = 0; j <= warp; ++j) {
        const int s0 = 16 * j;
        int gacc[2][4] = {{0, 0, 0, 0}, {0, 0, 0, 0}};
#pragma unroll
        for (int kk = 0; kk < NK; ++kk) {
          uint32_t bb[4];
          ldsm_x4(bb, sBq + (s0 + (lane & 7) + 8 * (lane >> 4)) * Cf::BCS + 32 * kk + 16 * ((lane >> 3) & 1));
          mma_s8(gacc[0], ca[kk], bb[0], bb[1]);
          mma_s8(gacc[1], ca[kk], bb[2], bb[3]);
        }
        float m[2][4];  // m[nt][r]: row tr0 (r < 2) / tr1, s = s0 + 8 nt + 2 tig + (r & 1)
#pragma unroll
        for (int nt = 0; nt < 2; ++nt) {
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            const int s = s0 + 8 * nt + 2 * tig + e;
            const float csh = sCumH[s], csl = sCumL[s], w = sDt[s] * sBCm;
            const float d0 = __fadd_rn(__fsub_rn(ch0, csh), __fsub_rn(cl0, csl));
            const float d1 = __fadd_rn(__fsub_rn(ch1, csh), __fsub_rn(cl1, csl));
            m[nt][e] = s <= tr0 ? static_cast<float>(gacc[nt][e]) * w * expf(d0) : 0.0f;
            m[nt][2 + e] = s <= tr1 ? static_cast<float>(gacc[nt][2 + e]) * w * expf(d1) : 0.0f;
          }
        }
        uint32_t mh[4], ml[4];
        split_h2(m[0][0], m[0][1], mh[0], ml[0]);
        split_h2(m[0][2], m[0][3], mh[1], ml[1]);
        split_h2(m[1][0], m[1][1], mh[2], ml[2]);
        split_h2(m[1][2], m[1][3], mh[3], ml[3]);
        if (!kSplitM) {
#pragma unroll
          for (int r = 0; r < 4; ++r) ml[r] = 0u;
        }
#pragma unroll
        for (int pp = 0; pp < PN / 2; ++pp) {
          uint32_t xb[4];
          ldsm_x4_t(xb, sX + (s0 + (lane & 7) + 8 * ((lane >> 3) & 1)) * Cf::XHS + 16 * pp + 8 * (lane >> 4));
          mma_f16(yd[2 * pp], mh, xb[0], xb[1]);
          mma_f16(yd[2 * pp + 1], mh, xb[2], xb[3]);
          if (kSplitM) {
            mma_f16(yd[2 * pp], ml, xb[0], xb[1]);
            mma_f16(yd[2 * pp + 1], ml, xb[2], xb[3]);
          }
        }
      }
      // epilogue: y = s_x Y_diag + sC exp(cum_t) Y_off + D x, two channels per 32-bit store
#pragma unroll
      for (int hr = 0; hr < 2; ++hr) {
        const int t = tr0 + 8 * hr;
        const int64_t tg = int64_t(c) * kQ + t;
        if (tg >= L) continue;
        const float eo = sC * expf(__fadd_rn(hr ? ch1 : ch0, hr ? cl1 : cl0));
#pragma unroll
        for (int pn = 0; pn < PN; ++pn) {
          const int pl = 8 * pn + 2 * tig;
          if (p0 + pl >= P) continue;  // P even: both channels in or out
          const uint32_t xq2 = *reinterpret_cast<const uint32_t*>(sX + t * Cf::XHS + pl);
          float v[2];
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            const float x = (e ? h_hi(xq2) : h_lo(xq2)) * xs_y[pn][e];  // = float(q) * s_x, as the reference
            v[e] = fmaf(Dh, x, fmaf(xs_y[pn][e] * ym, yd[pn][2 * hr + e], eo * yo[pn][2 * hr + e]));
          }
          *reinterpret_cast<uint32_t*>(yg + tg * p.y_seq_stride + pl) = pack_h2(v[0], v[1]);
        }
      }
    }
    __syncthreads();  // B3: every warp has read S (Y_off) before the update below rewrites it

    // ---- state update: S <- exp(cum_Q) S + Xd^T Bq (accumulators from units 2^-kx_prev to 2^-kx) ----------
    {
      const float rescale = ldexpf(1.0f, kx - kx_prev);  // |kx - kx_prev| <= 120: a normal float
#pragma unroll
      for (int mi = 0; mi < MTW; ++mi) {
#pragma unroll
        for (int ni = 0; ni < NGW; ++ni) {
#pragma unroll
          for (int j = 0; j < 4; ++j) {
#pragma unroll
            for (int r = 0; r < 4; ++r) acc[mi][ni][j][r] = (acc[mi][ni][j][r] * cdec) * rescale;
          }
        }
      }
      kx_prev = kx;
    }
#pragma unroll
    for (int ks = 0; ks < kQ / 16; ++ks) {
      uint32_t ah[MTW][4], al[MTW][4];  // Xd^T (rows = channels, k = tokens) via transposing ldmatrix
#pragma unroll
      for (int mi = 0; mi < MTW; ++mi) {
        const int mt = warp / WN + WM * mi;
        const int o = (16 * ks + (lane & 7) + 8 * (lane >> 4)) * Cf::XHS + 16 * mt + 8 * ((lane >> 3) & 1);
        ldsm_x4_t(ah[mi], sXdh + o);
        ldsm_x4_t(al[mi], sXdl + o);
      }
#pragma unroll
      for (int ni = 0; ni < NGW; ++ni) {
        const int ng = warp % WN + WN * ni;
        const unsigned char* bw = sBq + (16 * ks + 2 * tig) * Cf::BCS + 32 * ng + 4 * gid;
        const uint32_t w0 = *reinterpret_cast<const uint32_t*>(bw);
        const uint32_t w1 = *reinterpret_cast<const uint32_t*>(bw + Cf::BCS);
        const uint32_t w2 = *reinterpret_cast<const uint32_t*>(bw + 8 * Cf::BCS);
        const uint32_t w3 = *reinterpret_cast<const uint32_t*>(bw + 9 * Cf::BCS);
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          const uint32_t b0 = s8_pair_h2(w0, w1, j), b1 = s8_pair_h2(w2, w3, j);
#pragma unroll
          for (int mi = 0; mi < MTW; ++mi) {
            mma_f16(acc[mi][ni][j], ah[mi], b0, b1);
            mma_f16(acc[mi][ni][j], al[mi], b0, b1);
          }
        }
      }
    }
    write_state(ldexpf(1.0f, -kx));  // read by the next chunk's Y_off after its B1
  }

  // ---- final state (the block's own slice: state_out may be state_in) ------------------------------
  const float unscale = ldexpf(1.0f, -kx_prev);
#pragma unroll
  for (int mi = 0; mi < MTW; ++mi) {
#pragma unroll
    for (int ni = 0; ni < NGW; ++ni) {
      const int mt = warp / WN + WM * mi, ng = warp % WN + WN * ni;
#pragma unroll
      for (int hr = 0; hr < 2; ++hr) {
        const int pch = p0 + 16 * mt + gid + 8 * hr, n0 = 32 * ng + 8 * tig;
        if (pch >= P) continue;
        const int64_t sbase = ((int64_t(b) * H + h) * P + pch) * N + n0;
        const int64_t cbase = int8_state ? m2::state_scale_row_of(p.state_scale_row, int64_t(h) * P + pch) * N + n0 : 0;
#pragma unroll
        for (int k = 0; k < 8; ++k) {
          m2::store_state(p.state_out, p.state_scale, sbase + k, cbase + k, p.state_type,
                          acc[mi][ni][k & 3][2 * hr + (k >> 2)] * unscale);
        }
      }
    }
  }
#endif
}

}  // namespace ssdc
}  // namespace quamba

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

template <int N, int PT>
constexpr int chunked_smem() {
  return ssdc::Cfg<N, PT>::SMEM_BYTES;
}

int chunked_smem_bytes(int n, int pt) {
  switch (n) {
    case 64: return pt == 32 ? chunked_smem<64, 32>() : chunked_smem<64, 64>();
    case 128: return pt == 32 ? chunked_smem<128, 32>() : chunked_smem<128, 64>();
    default: return chunked_smem<256, 32>();
  }
}

// The chunked kernel's channel tile for this call, or 0 = run the sequential kernel. It takes d_state 64 /
// 128 / 256, headdim % 16 == 0, 16-byte aligned x / B / C rows (cp.async), an even-aligned y (32-bit
// stores), p_tile 0 (= 32) / 32 / 64 (64 only for d_state <= 128; other values are the sequential kernel's
// tiles), staging 0, and an sm_80+ device with the shared memory (sm_86 / sm_89 lack it for d_state 256).
int chunked_tile(const QuambaQuantSSDParams& p, int mode) {
  using quamba::m2::aligned;
  if (mode == 0 || (mode == 1 && p.seqlen < ssdc::kMinSeqlen)) return 0;
  if (p.dstate != 64 && p.dstate != 128 && p.dstate != 256) return 0;
  if (p.headdim % 16 != 0 || p.staging != 0) return 0;
  const int pt = p.p_tile == 0 ? 32 : p.p_tile;
  if ((pt != 32 && pt != 64) || (pt == 64 && p.dstate > 128)) return 0;
  const bool rows16 = aligned(p.x, 16) && p.x_batch_stride % 16 == 0 && p.x_seq_stride % 16 == 0 &&
                      aligned(p.B, 16) && p.B_batch_stride % 16 == 0 && p.B_seq_stride % 16 == 0 &&
                      aligned(p.C, 16) && p.C_batch_stride % 16 == 0 && p.C_seq_stride % 16 == 0;
  const bool y_even = aligned(p.y, 4) && p.y_batch_stride % 2 == 0 && p.y_seq_stride % 2 == 0;
  if (!rows16 || !y_even) return 0;
  int dev = 0, major = 0, optin = 0;
  if (cudaGetDevice(&dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess) {
    return 0;
  }
  return major >= 8 && optin >= chunked_smem_bytes(p.dstate, pt) ? pt : 0;
}

template <int N, int PT>
cudaError_t launch_chunked(const QuambaQuantSSDParams& p, cudaStream_t stream) {
  constexpr int smem = ssdc::Cfg<N, PT>::SMEM_BYTES;
  auto kernel = ssdc::chunked_kernel<N, PT>;
  // the shared-memory attribute once per device (bit d of `done`), so that later launches, e.g. inside a
  // CUDA graph capture, make no attribute call; a lost update between threads only repeats the call
  static std::atomic<unsigned long long> done{0};
  int dev = 0;
  QUAMBA_CUDA_TRY(cudaGetDevice(&dev));
  const unsigned long long bit = dev < 64 ? 1ull << dev : 0ull;
  if (bit == 0 || (done.load() & bit) == 0) {
    QUAMBA_CUDA_TRY(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    done.store(done.load() | bit);
  }
  dim3 grid(ceil_div(p.headdim, PT), p.nheads, p.batch);
  kernel<<<grid, ssdc::kThreads, smem, stream>>>(p);
  return cudaGetLastError();
}

cudaError_t dispatch_chunked(const QuambaQuantSSDParams& p, int pt, cudaStream_t stream) {
  switch (p.dstate) {
    case 64: return pt == 32 ? launch_chunked<64, 32>(p, stream) : launch_chunked<64, 64>(p, stream);
    case 128: return pt == 32 ? launch_chunked<128, 32>(p, stream) : launch_chunked<128, 64>(p, stream);
    case 256: return launch_chunked<256, 32>(p, stream);
    default: return cudaErrorInvalidValue;
  }
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
  const int pt = quamba::chunked_tile(*p, quamba::chunked_mode());
  if (pt != 0) return quamba::dispatch_chunked(*p, pt, stream);
  // 4-byte loads of B, C and x need 4-byte aligned bases and strides (and whole 4-channel groups of x)
  const bool vec = p->headdim % 4 == 0 && aligned(p->x, 4) && p->x_batch_stride % 4 == 0 &&
                   p->x_seq_stride % 4 == 0 && p->dstate % 4 == 0 && aligned(p->B, 4) && aligned(p->C, 4) && p->B_batch_stride % 4 == 0 &&
                   p->B_seq_stride % 4 == 0 && p->C_batch_stride % 4 == 0 && p->C_seq_stride % 4 == 0;
  return vec ? quamba::dispatch_n<true>(*p, stream) : quamba::dispatch_n<false>(*p, stream);
}
#endif  // !QUAMBA_SSD_EMULATE
