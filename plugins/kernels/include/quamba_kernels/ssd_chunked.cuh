// The chunked tensor-core SSD prefill kernel shared by QuantSSD (quant_ssd.cu: int8 x / B / C with Quamba2
// scales, int8 dt before its softplus) and SSD (ssd.cu: fp16 x / B / C, delta given), and its host-side launch
// helpers. One kernel body, templated on the op's parameter struct: the input format only changes how rows are
// loaded and converted (marked `kF16` below); scan, chunk matmuls, state passing and numerics are shared.
// QUAMBA_SSD_EMULATE (tests/ssd_chunked_emu/): the including file provides host stand-ins of the warp
// primitives, and the host-side helpers are left out.
#pragma once

#include "quamba_kernels/common.cuh"
#include "quamba_kernels/mamba2_common.cuh"
#include "quamba_kernels/quant_ssd.h"
#include "quamba_kernels/ssd.h"

#ifndef QUAMBA_SSD_EMULATE
#include <atomic>
#endif

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
// The float op (SSD, kF16): the same with fp16 rows, sB = sC = s_x = 1, G = C B^T on fp16 m16n8k16 mmas (fp32
// sums of exact products), delta read (already softplus'ed) and A given; see "Float inputs" below.
// Per chunk: cp.async of the next chunk's B / C / x rows into the other stage buffer (overlapping
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
//   Float inputs (kF16): x, B, C are fp16 values, exact in the fp16 operands as the int8 codes are; G is an fp32
//           sum of exact products (not exact: ~2^-24 N max|C B| per element); |x| <= 65504 replaces 128 s_x in
//           Xd's bound; M has no a-priori bound, so each warp scales each of its s-blocks by a power of two
//           from the block's own max |M| (yd is rescaled exactly when a later block needs a smaller scale).
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

// F16: the float op's inputs (fp16 rows, QuambaSSDParams) instead of int8 codes (QuambaQuantSSDParams)
template <int N, int PT, bool F16 = false>
struct Cfg {
  static_assert(N == 64 || N == 128 || N == 256, "d_state 64 / 128 / 256");
  static_assert(PT == 32 || PT == 64, "channel tile 32 / 64");
  static constexpr int ESZ = F16 ? 2 : 1;  // bytes per input element
  // Row strides (padding keeps ldmatrix phases and the state's B loads free of bank conflicts: B / C rows
  // are 4 words mod 32 apart, X rows 4 or 20; S rows 8 words (int8: two half-warps of 8-byte loads) or
  // 4 words (fp16: one 32-bit load per lane)).
  static constexpr int BCS = N * ESZ + 16;   // bytes per B / C stage row
  static constexpr int XQS = PT * ESZ + 16;  // bytes per x stage row
  static constexpr int XHS = PT + 8;         // halves per X / Xd row
  static constexpr int SS = F16 ? N + 8 : N + 16;  // halves per S row
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
  static constexpr int NK = N * ESZ / 32;  // 32-byte k steps over the states (int8 k32 / fp16 k16 mmas)
  static constexpr int PN = PT / 8;   // n8 tiles of channels in a y row tile
  static constexpr int XW = PT / 4;   // 4-channel words per x row
  // state tiles: MT (16 channels) x NG (32 states); warps WM along channels x WN along states
  static constexpr int MT = PT / 16, NG = N / 32;
  static constexpr int WN = NG < kWarps ? NG : kWarps, WM = kWarps / WN;
  static constexpr int MTW = MT / WM, NGW = NG / WN;  // tiles per warp
  static_assert(MT % WM == 0 && NG % WN == 0, "state tiles");
  static_assert(ST_BYTES % 16 == 0 && OFF_SH % 16 == 0 && OFF_CUMH % 16 == 0, "16-byte aligned regions");
};

// the float op's parameters (fp16 rows) or QuantSSD's (int8 codes); a trait, not a function: usable in
// device code without --expt-relaxed-constexpr; no <type_traits> (NVRTC has no standard headers)
template <class Prm>
struct IsF16 {
  static constexpr bool value = false;
};
template <>
struct IsF16<QuambaSSDParams> {
  static constexpr bool value = true;
};

// (v0 of row a, v0 of row c), halves j of two 4-half rows a and c: the fp16 twin of s8_pair_h2
__device__ __forceinline__ uint32_t h_pair(uint2 a, uint2 c, int j) {
  return __byte_perm(j < 2 ? a.x : a.y, j < 2 ? c.x : c.y, (j & 1) ? 0x7632u : 0x5410u);
}

template <int N, int PT, class Prm = QuambaQuantSSDParams>
__global__ void __launch_bounds__(kThreads) chunked_kernel(const Prm p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
  __trap();  // never launched there (the entry point checks the device); keeps other arch lists building
#else
  constexpr bool kF16 = IsF16<Prm>::value;
  using Cf = Cfg<N, PT, kF16>;
  constexpr int ESZ = Cf::ESZ;
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
  // per-head constants; the float op has unit scales, A given, delta read as it is (bias = 0, unused)
  float A, bias = 0.0f, Dh, sB = 1.0f, sC = 1.0f;
  const float* xsc = nullptr;       // x scales of the tile's channels (int8 only)
  const float* st_scale = nullptr;  // int8 state: its scale table and row index
  const int32_t* st_rows = nullptr;
  if constexpr (kF16) {
    A = p.A[h];
    Dh = p.D != nullptr ? p.D[h] : 0.0f;
  } else {
    A = m2::mamba2_A(p.A_log[h], p.A_log_scale);
    bias = p.dt_bias[h];
    Dh = p.D != nullptr ? dequant(p.D[h], p.D_scale) : 0.0f;
    sB = p.B_scale[g];
    sC = p.C_scale[g];
    xsc = p.x_scale + int64_t(h) * P + p0;
    st_scale = p.state_scale;
    st_rows = p.state_scale_row;
  }
  const float sBC = sB * sC;

  // row pointers and token strides in bytes
  const unsigned char* xg =
      reinterpret_cast<const unsigned char*>(p.x) + (int64_t(b) * p.x_batch_stride + int64_t(h) * P + p0) * ESZ;
  const unsigned char* Bg =
      reinterpret_cast<const unsigned char*>(p.B) + (int64_t(b) * p.B_batch_stride + int64_t(g) * N) * ESZ;
  const unsigned char* Cg =
      reinterpret_cast<const unsigned char*>(p.C) + (int64_t(b) * p.C_batch_stride + int64_t(g) * N) * ESZ;
  const int64_t x_ss = p.x_seq_stride * ESZ, B_ss = p.B_seq_stride * ESZ, C_ss = p.C_seq_stride * ESZ;
  const int64_t dt0 = int64_t(b) * p.dt_batch_stride + h;
  uint16_t* yg = p.y + int64_t(b) * p.y_batch_stride + int64_t(h) * P + p0;

  // x scales of this lane's y columns (8 pn + 2 tig + e) and of its conversion columns (4 xw + i); 1 (0 past
  // P) for the float op
  float xs_y[PN][2];
#pragma unroll
  for (int pn = 0; pn < PN; ++pn) {
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      const int pl = 8 * pn + 2 * tig + e;
      xs_y[pn][e] = p0 + pl < P ? (kF16 ? 1.0f : xsc[pl]) : 0.0f;
    }
  }
  const int xw = lane % XW;
  float xs_c[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) xs_c[i] = p0 + 4 * xw + i < P ? (kF16 ? 1.0f : xsc[4 * xw + i]) : 0.0f;
  // bound of |x| over the tile: 128 x the largest x scale (the lanes' xw cover every column), or fp16's max
  const float x_bound =
      kF16 ? 65504.0f
           : 128.0f * warp_max(fmaxf(fmaxf(fabsf(xs_c[0]), fabsf(xs_c[1])), fmaxf(fabsf(xs_c[2]), fabsf(xs_c[3]))));

  // ---- async loads of chunk c into stage st: rows of B, C (N elements) and x (PT elements); rows past L
  // and channels past P are zero-filled (P % 16 == 0: a 16-byte piece is wholly in or out) ------------
  auto issue_loads = [&](int c, int st) {
    unsigned char* sb = smem + st * Cf::ST_BYTES;
    const int t0 = c * kQ;
    constexpr int BCP = N * ESZ / 16;
#pragma unroll
    for (int i = 0; i < kQ * BCP / kThreads; ++i) {
      const int u = tid + i * kThreads, r = u / BCP, k = (u % BCP) * 16;
      const bool ok = t0 + r < L;
      const int64_t t = ok ? t0 + r : 0;  // a valid address even where nothing is read
      cp_async16(sb + Cf::ST_B + r * Cf::BCS + k, Bg + t * B_ss + k, ok);
      cp_async16(sb + Cf::ST_C + r * Cf::BCS + k, Cg + t * C_ss + k, ok);
    }
    constexpr int XP = PT * ESZ / 16;
#pragma unroll
    for (int i = 0; i < kQ * XP / kThreads; ++i) {
      const int u = tid + i * kThreads, r = u / XP, k = (u % XP) * 16;
      const bool ok = t0 + r < L && p0 + k / ESZ < P;
      cp_async16(sb + Cf::ST_X + r * Cf::XQS + k, ok ? xg + int64_t(t0 + r) * x_ss + k : xg, ok);
    }
    cp_async_commit();
  };
  // delta of tokens 2 lane, 2 lane + 1 of chunk c, 0 past L (every warp keeps its own copy: each runs the scan)
  auto load_dt = [&](int c, float (&d)[2]) {
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      const int t = c * kQ + 2 * lane + e;
      if (t >= L) {
        d[e] = 0.0f;  // padded tokens: delta 0 -> decay 1, no input
      } else if constexpr (kF16) {
        d[e] = m2::load_float(p.dt, dt0 + int64_t(t) * p.dt_seq_stride, p.dt_type);
      } else {
        d[e] = m2::mamba2_delta(p.dt[dt0 + int64_t(t) * p.dt_seq_stride], p.dt_scale, bias, p.dt_limit_lo,
                                p.dt_limit_hi);
      }
    }
  };

  // ---- the state: acc[mi][ni][j][r] = 2^kx S[16 mt + g (+8 for r >= 2)][32 ng + 8 tig + j (+4 for odd r)] ----
  // with mt = warp / WN + WM mi, ng = warp % WN + WN ni (output column c of n8 tile j <-> state 32 ng + 4 c + j);
  // kx: the current chunk's power-of-two scale of Xd (0 before the first chunk)
  float acc[MTW][NGW][4][4];
  const bool int8_state = p.state_type == QUAMBA_SSD_STATE_INT8;
  // this thread's state rows: f(mi, ni, hr, row, n0) for the accumulators acc[mi][ni][.][2 hr ..], which hold
  // row `row` of the block's channel tile (channel p0 + row), states n0 .. n0 + 7
  auto for_state_rows = [&](auto&& f) {
#pragma unroll
    for (int mi = 0; mi < MTW; ++mi) {
#pragma unroll
      for (int ni = 0; ni < NGW; ++ni) {
        const int mt = warp / WN + WM * mi, ng = warp % WN + WN * ni;
#pragma unroll
        for (int hr = 0; hr < 2; ++hr) f(mi, ni, hr, 16 * mt + gid + 8 * hr, 32 * ng + 8 * tig);
      }
    }
  };
  // global offsets of a row's first state and of its scale (int8 state)
  auto state_base = [&](int pch, int n0) { return ((int64_t(b) * H + h) * P + pch) * N + n0; };
  auto scale_base = [&](int pch, int n0) {
    return int8_state ? m2::state_scale_row_of(st_rows, int64_t(h) * P + pch) * N + n0 : int64_t(0);
  };
  for_state_rows([&](int mi, int ni, int hr, int row, int n0) {
    const int pch = p0 + row;
    const bool ok = pch < P && p.state_in != nullptr;
    const int64_t sbase = state_base(pch, n0), cbase = ok ? scale_base(pch, n0) : 0;
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      acc[mi][ni][k & 3][2 * hr + (k >> 2)] =
          ok ? m2::load_state(p.state_in, st_scale, sbase + k, cbase + k, p.state_type) : 0.0f;
    }
  });
  // the state as fp16 hi / lo rows S[p][n] for the next chunk's Y_off (8 consecutive states per store)
  auto write_state = [&](float unscale) {
    for_state_rows([&](int mi, int ni, int hr, int row, int n0) {
      uint32_t hi[4], lo[4];
#pragma unroll
      for (int k2 = 0; k2 < 4; ++k2) {
        const int k = 2 * k2;
        split_h2(acc[mi][ni][k & 3][2 * hr + (k >> 2)] * unscale,
                 acc[mi][ni][(k + 1) & 3][2 * hr + ((k + 1) >> 2)] * unscale, hi[k2], lo[k2]);
      }
      *reinterpret_cast<uint4*>(sSh + row * Cf::SS + n0) = make_uint4(hi[0], hi[1], hi[2], hi[3]);
      *reinterpret_cast<uint4*>(sSl + row * Cf::SS + n0) = make_uint4(lo[0], lo[1], lo[2], lo[3]);
    });
  };

  float dnext[2];
  load_dt(0, dnext);
  issue_loads(0, 0);
  write_state(1.0f);
  int kx_prev = 0;
  const int nchunks = (L + kQ - 1) / kQ;
  for (int c = 0; c < nchunks; ++c) {
    const unsigned char* stage = smem + (c & 1) * Cf::ST_BYTES;
    const unsigned char* sBq = stage + Cf::ST_B;
    const unsigned char* sCq = stage + Cf::ST_C;
    const float dcur[2] = {dnext[0], dnext[1]};
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
      dl[e] = dcur[e];
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
    // power-of-two scales of this chunk's fp16 operands, from bounds (|Xd| <= x_bound max w; int8:
    // |M| <= 128^2 N sB sC max delta): Xd and the state accumulators in units of 2^-kx, M of 2^-km (the float
    // op starts each chunk at the largest km and lowers it per s-block, see the y rows below)
    const int kx = pow2_exponent(x_bound * warp_max(fmaxf(fabsf(wv[0]), fabsf(wv[1]))), kx_prev);
    const int km0 = kF16 ? 60 : pow2_exponent(16384.0f * N * sBC * warp_max(fmaxf(dl[0], dl[1])), 0);
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
        float xd[4];
        uint2 xh;  // the 4 x values as fp16 (int8: the codes, exact)
        if constexpr (kF16) {
          xh = *reinterpret_cast<const uint2*>(stage + Cf::ST_X + s * Cf::XQS + 8 * xw);
          xd[0] = h_lo(xh.x) * ws;
          xd[1] = h_hi(xh.x) * ws;
          xd[2] = h_lo(xh.y) * ws;
          xd[3] = h_hi(xh.y) * ws;
        } else {
          const uint32_t q4 = *reinterpret_cast<const uint32_t*>(stage + Cf::ST_X + s * Cf::XQS + 4 * xw);
#pragma unroll
          for (int i = 0; i < 4; ++i) {
            xd[i] = (dequant(static_cast<int8_t>((q4 >> (8 * i)) & 0xffu), xs_c[i])) * ws;
          }
          xh = make_uint2(s8_lo_h2(q4), s8_hi_h2(q4));
        }
        uint32_t dh0, dl0, dh1, dl1;
        split_h2(xd[0], xd[1], dh0, dl0);
        split_h2(xd[2], xd[3], dh1, dl1);
        const int o = s * Cf::XHS + 4 * xw;
        *reinterpret_cast<uint2*>(sX + o) = xh;
        *reinterpret_cast<uint2*>(sXdh + o) = make_uint2(dh0, dh1);
        *reinterpret_cast<uint2*>(sXdl + o) = make_uint2(dl0, dl1);
      }
    }
    __syncthreads();  // B2: cum / delta / X / Xd of the whole chunk

    // ---- y rows t0 .. t0 + 15 -----------------------------------------------------------------------------
    {
      const int t0 = 16 * warp;
      // C rows t0..: A fragments per 32-byte k step (int8: s8 k32, kept in registers for Y_off and every
      // s-block; fp16: f16 k16, re-read where used to spare registers); same ldmatrix addressing
      const unsigned char* ca_row = sCq + (t0 + (lane & 7) + 8 * ((lane >> 3) & 1)) * Cf::BCS + 16 * (lane >> 4);
      uint32_t ca[kF16 ? 1 : NK][4];
      if constexpr (!kF16) {
#pragma unroll
        for (int kk = 0; kk < NK; ++kk) ldsm_x4(ca[kk], ca_row + 32 * kk);
      }
      float yo[PN][4], yd[PN][4];
#pragma unroll
      for (int pn = 0; pn < PN; ++pn) {
#pragma unroll
        for (int r = 0; r < 4; ++r) yo[pn][r] = yd[pn][r] = 0.0f;
      }
      // inter-chunk: sum_n C[t, n] S[p, n]
      if constexpr (kF16) {
#pragma unroll
        for (int kk = 0; kk < NK; ++kk) {
          uint32_t cf[4];
          ldsm_x4(cf, ca_row + 32 * kk);
#pragma unroll
          for (int pn = 0; pn < PN; ++pn) {
            const int o = (8 * pn + gid) * Cf::SS + 16 * kk + 2 * tig;
            mma_f16(yo[pn], cf, *reinterpret_cast<const uint32_t*>(sSh + o), *reinterpret_cast<const uint32_t*>(sSh + o + 8));
            if (kSplitS) {
              mma_f16(yo[pn], cf, *reinterpret_cast<const uint32_t*>(sSl + o), *reinterpret_cast<const uint32_t*>(sSl + o + 8));
            }
          }
        }
      } else {
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
      }
      // intra-chunk: s-blocks j <= warp (the diagonal block masked to s <= t)
      const int tr0 = t0 + gid, tr1 = tr0 + 8;
      int km = km0;  // M in units of 2^-km: exact scalings
      const float sBCm = ldexpf(sBC, km);
      const float ch0 = sCumH[tr0], cl0 = sCumL[tr0], ch1 = sCumH[tr1], cl1 = sCumL[tr1];
      for (int j = 0; j <= warp; ++j) {
        const int s0 = 16 * j;
        const unsigned char* bb_row = sBq + (s0 + (lane & 7) + 8 * (lane >> 4)) * Cf::BCS + 16 * ((lane >> 3) & 1);
        float gv[2][4];  // C B^T of rows tr0 / tr1 and the block's columns (fragment layout of m below)
        if constexpr (kF16) {
#pragma unroll
          for (int nt = 0; nt < 2; ++nt) {
#pragma unroll
            for (int r = 0; r < 4; ++r) gv[nt][r] = 0.0f;
          }
#pragma unroll
          for (int kk = 0; kk < NK; ++kk) {
            uint32_t cf[4], bb[4];
            ldsm_x4(cf, ca_row + 32 * kk);
            ldsm_x4(bb, bb_row + 32 * kk);
            mma_f16(gv[0], cf, bb[0], bb[1]);
            mma_f16(gv[1], cf, bb[2], bb[3]);
          }
        } else {
          int gacc[2][4] = {{0, 0, 0, 0}, {0, 0, 0, 0}};
#pragma unroll
          for (int kk = 0; kk < NK; ++kk) {
            uint32_t bb[4];
            ldsm_x4(bb, bb_row + 32 * kk);
            mma_s8(gacc[0], ca[kk], bb[0], bb[1]);
            mma_s8(gacc[1], ca[kk], bb[2], bb[3]);
          }
#pragma unroll
          for (int nt = 0; nt < 2; ++nt) {
#pragma unroll
            for (int r = 0; r < 4; ++r) gv[nt][r] = static_cast<float>(gacc[nt][r]);  // exact (|G| < 2^24)
          }
        }
        float m[2][4];  // m[nt][r]: row tr0 (r < 2) / tr1, s = s0 + 8 nt + 2 tig + (r & 1)
#pragma unroll
        for (int nt = 0; nt < 2; ++nt) {
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            const int s = s0 + 8 * nt + 2 * tig + e;
            const float csh = sCumH[s], csl = sCumL[s], w = sDt[s] * (kF16 ? 1.0f : sBCm);
            const float d0 = __fadd_rn(__fsub_rn(ch0, csh), __fsub_rn(cl0, csl));
            const float d1 = __fadd_rn(__fsub_rn(ch1, csh), __fsub_rn(cl1, csl));
            m[nt][e] = s <= tr0 ? gv[nt][e] * w * expf(d0) : 0.0f;
            m[nt][2 + e] = s <= tr1 ? gv[nt][2 + e] * w * expf(d1) : 0.0f;
          }
        }
        if constexpr (kF16) {
          // the block's own power of two: max |M| 2^km < 2^15; a smaller km than the blocks before rescales
          // their sums (exactly), so every block's operands fit fp16
          float mx = 0.0f;
#pragma unroll
          for (int nt = 0; nt < 2; ++nt) {
#pragma unroll
            for (int r = 0; r < 4; ++r) mx = fmaxf(mx, fabsf(m[nt][r]));
          }
          const int kb = pow2_exponent(warp_max(mx), 60);
          if (kb < km) {
            const float r = ldexpf(1.0f, kb - km);
#pragma unroll
            for (int pn = 0; pn < PN; ++pn) {
#pragma unroll
              for (int q = 0; q < 4; ++q) yd[pn][q] *= r;
            }
            km = kb;
          }
#pragma unroll
          for (int nt = 0; nt < 2; ++nt) {
#pragma unroll
            for (int r = 0; r < 4; ++r) m[nt][r] = ldexpf(m[nt][r], km);
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
      const float ym = ldexpf(1.0f, -km);
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
        // B rows 16 ks + 2 tig (+1, +8, +9), states 32 ng + 4 gid .. + 3: one 4- (int8) or 8-byte (fp16) load each
        const unsigned char* bw = sBq + (16 * ks + 2 * tig) * Cf::BCS + (32 * ng + 4 * gid) * ESZ;
        uint2 w0, w1, w2, w3;
        if constexpr (kF16) {
          w0 = *reinterpret_cast<const uint2*>(bw);
          w1 = *reinterpret_cast<const uint2*>(bw + Cf::BCS);
          w2 = *reinterpret_cast<const uint2*>(bw + 8 * Cf::BCS);
          w3 = *reinterpret_cast<const uint2*>(bw + 9 * Cf::BCS);
        } else {
          w0.x = *reinterpret_cast<const uint32_t*>(bw);
          w1.x = *reinterpret_cast<const uint32_t*>(bw + Cf::BCS);
          w2.x = *reinterpret_cast<const uint32_t*>(bw + 8 * Cf::BCS);
          w3.x = *reinterpret_cast<const uint32_t*>(bw + 9 * Cf::BCS);
        }
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          const uint32_t b0 = kF16 ? h_pair(w0, w1, j) : s8_pair_h2(w0.x, w1.x, j);
          const uint32_t b1 = kF16 ? h_pair(w2, w3, j) : s8_pair_h2(w2.x, w3.x, j);
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
  for_state_rows([&](int mi, int ni, int hr, int row, int n0) {
    const int pch = p0 + row;
    if (pch >= P) return;
    const int64_t sbase = state_base(pch, n0), cbase = scale_base(pch, n0);
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      m2::store_state(p.state_out, st_scale, sbase + k, cbase + k, p.state_type,
                      acc[mi][ni][k & 3][2 * hr + (k >> 2)] * unscale);
    }
  });
#endif
}

}  // namespace ssdc
}  // namespace quamba

#ifndef QUAMBA_SSD_EMULATE
namespace quamba {
namespace ssdc {

template <int N, int PT, bool F16>
constexpr int smem_of() {
  return Cfg<N, PT, F16>::SMEM_BYTES;
}

template <bool F16>
int smem_bytes(int n, int pt) {
  switch (n) {
    case 64: return pt == 32 ? smem_of<64, 32, F16>() : smem_of<64, 64, F16>();
    case 128: return pt == 32 ? smem_of<128, 32, F16>() : smem_of<128, 64, F16>();
    default: return smem_of<256, 32, F16>();
  }
}

// The chunked kernel's channel tile for this call (32 / 64), or 0 = not taken. It takes d_state 64 / 128 / 256,
// headdim % 16 == 0, 16-byte aligned x / B / C rows (cp.async), an even-aligned y (32-bit stores), a tile
// `pt` of 32 or 64 (64 only for d_state <= 128), and an sm_80+ device with the shared memory (sm_86 / sm_89
// lack it for int8 d_state 256, the Orin's sm_87 for fp16 d_state 256).
template <class Prm>
int tile_for(const Prm& p, int pt) {
  using quamba::m2::aligned;
  constexpr int64_t e = IsF16<Prm>::value ? 2 : 1;  // bytes per input element
  if (p.dstate != 64 && p.dstate != 128 && p.dstate != 256) return 0;
  if (p.headdim % 16 != 0) return 0;
  if ((pt != 32 && pt != 64) || (pt == 64 && p.dstate > 128)) return 0;
  const bool rows16 = aligned(p.x, 16) && p.x_batch_stride * e % 16 == 0 && p.x_seq_stride * e % 16 == 0 &&
                      aligned(p.B, 16) && p.B_batch_stride * e % 16 == 0 && p.B_seq_stride * e % 16 == 0 &&
                      aligned(p.C, 16) && p.C_batch_stride * e % 16 == 0 && p.C_seq_stride * e % 16 == 0;
  const bool y_even = aligned(p.y, 4) && p.y_batch_stride % 2 == 0 && p.y_seq_stride % 2 == 0;
  if (!rows16 || !y_even) return 0;
  int dev = 0, major = 0, optin = 0;
  if (cudaGetDevice(&dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess) {
    return 0;
  }
  return major >= 8 && optin >= smem_bytes<IsF16<Prm>::value>(p.dstate, pt) ? pt : 0;
}

template <int N, int PT, class Prm>
cudaError_t launch(const Prm& p, cudaStream_t stream) {
  constexpr int smem = Cfg<N, PT, IsF16<Prm>::value>::SMEM_BYTES;
  auto kernel = chunked_kernel<N, PT, Prm>;
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
  kernel<<<grid, kThreads, smem, stream>>>(p);
  return cudaGetLastError();
}

template <class Prm>
cudaError_t dispatch(const Prm& p, int pt, cudaStream_t stream) {
  switch (p.dstate) {
    case 64: return pt == 32 ? launch<64, 32>(p, stream) : launch<64, 64>(p, stream);
    case 128: return pt == 32 ? launch<128, 32>(p, stream) : launch<128, 64>(p, stream);
    case 256: return launch<256, 32>(p, stream);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace ssdc
}  // namespace quamba
#endif  // !QUAMBA_SSD_EMULATE
