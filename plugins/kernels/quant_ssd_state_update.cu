// QuantSSDStateUpdate: one Mamba2 decode token, int8 (or float) SSM state read once, written once.
// Contract: quamba_edge/ops/quant_ssd_state_update.py (see quamba_kernels/quant_ssd_state_update.h).
//
// Memory bound, and at batch 1 latency bound. Measured on an H100 (ncu), the old one-kernel design
// issued ~400 warp instructions per 8 states (1.0 M for mamba2-2.7b B=1) and its schedulers were busy
// 78% of the time at B=16: the instruction count, not DRAM, set the time. So everything here is about
// instructions per state element (~14 in the update itself) and the per-thread overhead around them:
// - lane layout: LN = N / NPT lanes per channel, each lane owns NPT states in chunks of 4 (chunk j of lane
//   l: n = (j * LN + l) * 4 .. +3), so every warp-wide access of the state (4 bytes a lane), its scales
//   (16 bytes a lane) and of B / C is contiguous;
// - int8 <-> fp32 by exact magic-number arithmetic (byte permute + one fp32 add) instead of I2F / F2I;
// - the requantization multiplies by rcp.approx.ftz(scale) instead of dividing: |h * rcp(s) - h / s| is
//   below |h / s| * 2^-22, so for |h / s| < 128.5 the rounded values can differ only when h / s lies
//   within 3.1e-5 of a .5 boundary, and then by exactly one LSB; beyond that both saturate equally
//   (the ±1 LSB contract of the reference op). .ftz equals the non-ftz form for every scale in
//   [2^-126, 2^126] (a subnormal scale acts as 0); the non-ftz form costs 6 more instructions per element
//   (subnormal range fix-up), ~12% of the old kernel's instructions;
// - h / (H / G) by a multiply-high with a host-computed magic (exact for h < 2^16) instead of two
//   integer divisions (~35 instructions ahead of the first dependent load);
// - the aligned / unaligned variants are template instances: a runtime flag left both load paths in the
//   code as predicated instructions, which still issue.
// Two kernels (dispatch() says which shape takes which):
// - ssd_update_row (batch 1, int8, aligned): no shared memory, no barrier. Every thread loads its own
//   B / C chunks and computes delta / exp(delta A) itself (the same warp instructions as one thread doing
//   it), so each warp starts as soon as its own loads land instead of waiting at a block barrier for the
//   block's slowest warp and for thread 0's softplus / exp chain.
// - ssd_update_rows (batch > 1, floats, unaligned): a thread handles R batch rows of the same (h, p, n)
//   (R = 4 for int8): all R state words are loaded up front with the scales, 1 / scale is computed once
//   for the R rows, and the dequantized B / C rows plus delta / exp(delta A) of the block's R rows go to
//   shared memory behind one barrier. More bytes in flight per thread and the per-thread overhead
//   (addresses, scales, reciprocals) spread over 4 rows.
// The N / NPT lanes of a channel sum their y partials with shuffles.
#include "quamba_kernels/quant_ssd_state_update.h"

#include "quamba_kernels/common.cuh"
#include "quamba_kernels/mamba2_common.cuh"

namespace quamba {
namespace {

using m2::group_magic;
using m2::group_of;
using m2::mamba2_A;
using m2::mamba2_delta;

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

// 1 / s to within 1 ulp for s in [2^-126, 2^126] (one MUFU.RCP; see the header comment for .ftz).
__device__ __forceinline__ float rcp_ftz(float s) {
  float r;
  asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(s));
  return r;
}

// One packed int8 word as 4 dequantized values.
__device__ __forceinline__ void dequant4(int w, float s, float (&f)[4]) {
  i8x4_to_f32(w, f);
#pragma unroll
  for (int k = 0; k < 4; ++k) f[k] *= s;
}

// Requantize NC chunks of 4 states and store them (rc = 1 / scale).
template <int NC, int LN, bool VEC>
__device__ __forceinline__ void store_i8(int8_t* dst, const float (&v)[NC][4], const float (&rc)[NC][4]) {
#pragma unroll
  for (int j = 0; j < NC; ++j) {
    float q[4];
#pragma unroll
    for (int k = 0; k < 4; ++k) q[k] = v[j][k] * rc[j][k];
    const int w = f32x4_to_i8x4(q);
    int8_t* d = dst + j * LN * 4;
    if constexpr (VEC) {
      *reinterpret_cast<int*>(d) = w;
    } else {
#pragma unroll
      for (int k = 0; k < 4; ++k) d[k] = static_cast<int8_t>((w >> (8 * k)) & 0xff);
    }
  }
}

// ---- batch 1, int8 state, aligned: one (h, channel block) per block, no shared memory, no barrier.
template <int LN, int NPT, int THREADS>
__global__ void __launch_bounds__(THREADS)
    ssd_update_row(const QuambaQuantSSDStateUpdateParams p, const uint32_t gdiv) {
  static_assert(NPT % 4 == 0 && LN >= 1 && LN <= 32 && (LN & (LN - 1)) == 0, "layout");
  constexpr int N = LN * NPT, NC = NPT / 4, CPB = THREADS / LN;
  const int tid = threadIdx.x, ln = tid % LN;
  const int h = blockIdx.y, g = group_of(h, gdiv);
  const int P = p.headdim;
  const int pch = blockIdx.x * CPB + tid / LN;
  const bool valid = pch < P;  // invalid lanes work on channel 0 and store nothing
  const int ch = h * P + (valid ? pch : 0);
  const int64_t st = int64_t(ch) * N + ln * 4;  // batch row 0

  // every global load first (the row index, then the rest; the scales wait on the row index)
  const int64_t srow = m2::state_scale_row_of(p.state_scale_row, ch);
  const int8_t x_q = p.x[ch];
  const float xs = p.x_scale[ch];
  const int8_t a_q = p.A_log[h];
  const int8_t dt_q = p.dt[h];
  const float bias = p.dt_bias[h];
  const int8_t d_q = (ln == 0 && p.D != nullptr) ? p.D[h] : int8_t(0);
  const int8_t* src = static_cast<const int8_t*>(p.state_in) + st;
  const int8_t* Bp = p.B + g * N + ln * 4;
  const int8_t* Cp = p.C + g * N + ln * 4;
  int s_w[NC], b_w[NC], c_w[NC];
#pragma unroll
  for (int j = 0; j < NC; ++j) {
    s_w[j] = *reinterpret_cast<const int*>(src + j * LN * 4);
    b_w[j] = *reinterpret_cast<const int*>(Bp + j * LN * 4);
    c_w[j] = *reinterpret_cast<const int*>(Cp + j * LN * 4);
  }
  const float sBg = p.B_scale[g], sCg = p.C_scale[g];
  float sc[NC][4];
  const float* scp = p.state_scale + srow * N + ln * 4;
#pragma unroll
  for (int j = 0; j < NC; ++j) {
    const float4 v = *reinterpret_cast<const float4*>(scp + j * LN * 4);
    sc[j][0] = v.x; sc[j][1] = v.y; sc[j][2] = v.z; sc[j][3] = v.w;
  }

  const float A = mamba2_A(a_q, p.A_log_scale);
  const float delta = mamba2_delta(dt_q, p.dt_scale, bias, p.dt_limit_lo, p.dt_limit_hi);
  const float dA = expf(delta * A);
  const float x = dequant(x_q, xs);
  const float dx = delta * x;
  // S = S_prev * dA + (delta x) B (separate fp32 multiply and add, as the reference); y = sum S C with
  // the C scale applied once to the sum (y is fp16, the reordering is far below its rounding)
  float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  float v[NC][4], rc[NC][4];
#pragma unroll
  for (int j = 0; j < NC; ++j) {
    float f[4], bf[4], cf[4];
    i8x4_to_f32(s_w[j], f);
    dequant4(b_w[j], sBg, bf);
    i8x4_to_f32(c_w[j], cf);
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      v[j][k] = __fadd_rn(__fmul_rn(f[k] * sc[j][k], dA), __fmul_rn(dx, bf[k]));
      acc[k] = fmaf(v[j][k], cf[k], acc[k]);
      rc[j][k] = rcp_ftz(sc[j][k]);
    }
  }
  const float y = m2::group_sum<LN>((acc[0] + acc[1]) + (acc[2] + acc[3])) * sCg;

  if (!valid) return;  // after the last shuffle
  if (ln == 0) p.y[ch] = f32_to_f16_bits(fmaf(dequant(d_q, p.D_scale), x, y));
  store_i8<NC, LN, true>(static_cast<int8_t*>(p.state_out) + st, v, rc);
}

// ---- R batch rows per thread; B / C rows and delta / exp(delta A) per block in shared memory.
// VEC: 16-byte aligned state / scales and 4-byte aligned B / C rows (int8 state; ignored for floats,
// whose fp32 state uses f32vec at run time: they are not on the fast path).
template <int ST, int LN, int NPT, int R, int THREADS, bool VEC>
__global__ void __launch_bounds__(THREADS)
    ssd_update_rows(const QuambaQuantSSDStateUpdateParams p, const uint32_t gdiv, const bool f32vec) {
  static_assert(NPT % 4 == 0 && LN >= 1 && LN <= 32 && (LN & (LN - 1)) == 0, "layout");
  constexpr int N = LN * NPT;
  constexpr int NC = NPT / 4;         // chunks of 4 states per lane
  constexpr int CPB = THREADS / LN;   // channels per block
  constexpr bool I8 = ST == QUAMBA_SSD_STATE_INT8;
  constexpr int kBC = VEC ? 2 * N * R / 4 : 2 * N * R;  // B / C words (VEC) or bytes to stage
  constexpr int kFill = (kBC + THREADS - 1) / THREADS;
  __shared__ __align__(16) float sBC[R][2 * N];  // dequantized B (0 .. N-1) and C (N .. 2N-1) per row
  __shared__ float s_dA[R], s_delta[R];

  const int tid = threadIdx.x, ln = tid % LN;
  const int h = blockIdx.y, g = group_of(h, gdiv);
  const int P = p.headdim;
  const int pch = blockIdx.x * CPB + tid / LN;
  const bool valid = pch < P;  // invalid lanes work on channel 0 and store nothing
  const int ch = h * P + (valid ? pch : 0);
  const int b0 = blockIdx.z * R;
  const int nr = min(R, p.batch - b0);  // rows of this block (block-uniform)
  const int64_t plane = int64_t(p.nheads) * P * N;  // state batch stride
  const int64_t st = b0 * plane + int64_t(ch) * N + ln * 4;

  // ---- every global load first (the row index, then everything else; the scales wait on the row)
  int64_t srow = ch;
  if constexpr (I8) srow = m2::state_scale_row_of(p.state_scale_row, ch);
  int8_t x_q[R];
#pragma unroll
  for (int r = 0; r < R; ++r) x_q[r] = r < nr ? p.x[int64_t(b0 + r) * p.x_batch_stride + ch] : int8_t(0);
  const float xs = p.x_scale[ch];
  int bc_w[kFill];  // a B / C word (VEC) or byte
#pragma unroll
  for (int i = 0; i < kFill; ++i) {
    const int t = tid + i * THREADS;
    constexpr int kRow = kBC / R;           // words / bytes per row
    constexpr int kHalf = kRow / 2;         // ... of B
    const int r = t / kRow, k = t % kRow;
    bc_w[i] = 0;
    if ((kBC % THREADS == 0 || t < kBC) && r < nr) {
      const int64_t b = b0 + r;
      const int8_t* q = k < kHalf ? p.B + b * p.B_batch_stride : p.C + b * p.C_batch_stride;
      const int e = g * N + (k < kHalf ? k : k - kHalf) * (VEC ? 4 : 1);
      if constexpr (VEC) bc_w[i] = *reinterpret_cast<const int*>(q + e);
      else bc_w[i] = q[e];
    }
  }
  int8_t a_q = 0, dt_q = 0, d_q = 0;
  float bias = 0.0f;
  if (tid < nr) {  // thread r: delta of row r
    a_q = p.A_log[h];
    dt_q = p.dt[int64_t(b0 + tid) * p.dt_batch_stride + h];
    bias = p.dt_bias[h];
  }
  if (ln == 0 && p.D != nullptr) d_q = p.D[h];

  int s_w[I8 ? R : 1][NC];   // packed int8 states
  float s[I8 ? 1 : R][NC][4];  // float states
  float sc[I8 ? NC : 1][4];
  if constexpr (I8) {
    const int8_t* src = static_cast<const int8_t*>(p.state_in) + st;
#pragma unroll
    for (int r = 0; r < R; ++r) {
      if (r < nr) {
#pragma unroll
        for (int j = 0; j < NC; ++j) {
          const int8_t* q = src + r * plane + j * LN * 4;
          if constexpr (VEC) s_w[r][j] = *reinterpret_cast<const int*>(q);
          else s_w[r][j] = int(uint8_t(q[0])) | (int(uint8_t(q[1])) << 8) | (int(uint8_t(q[2])) << 16) |
                           (int(uint8_t(q[3])) << 24);
        }
      }
    }
    const float* scp = p.state_scale + srow * N + ln * 4;
#pragma unroll
    for (int j = 0; j < NC; ++j) {
      if constexpr (VEC) {
        const float4 v = *reinterpret_cast<const float4*>(scp + j * LN * 4);
        sc[j][0] = v.x; sc[j][1] = v.y; sc[j][2] = v.z; sc[j][3] = v.w;
      } else {
#pragma unroll
        for (int k = 0; k < 4; ++k) sc[j][k] = scp[j * LN * 4 + k];
      }
    }
  } else if constexpr (ST == QUAMBA_SSD_STATE_F16) {
    const uint16_t* src = static_cast<const uint16_t*>(p.state_in) + st;
#pragma unroll
    for (int r = 0; r < R; ++r) {
      if (r < nr) {
#pragma unroll
        for (int j = 0; j < NC; ++j)
#pragma unroll
          for (int k = 0; k < 4; ++k) s[r][j][k] = f16_bits_to_f32(src[r * plane + j * LN * 4 + k]);
      }
    }
  } else {
    const float* src = static_cast<const float*>(p.state_in) + st;
#pragma unroll
    for (int r = 0; r < R; ++r) {
      if (r < nr) {
#pragma unroll
        for (int j = 0; j < NC; ++j) {
          const float* q = src + r * plane + j * LN * 4;
          if (f32vec) {
            const float4 v = *reinterpret_cast<const float4*>(q);
            s[r][j][0] = v.x; s[r][j][1] = v.y; s[r][j][2] = v.z; s[r][j][3] = v.w;
          } else {
#pragma unroll
            for (int k = 0; k < 4; ++k) s[r][j][k] = q[k];
          }
        }
      }
    }
  }

  // ---- per-(b, h) values once per block
  {
    const float sBg = p.B_scale[g], sCg = p.C_scale[g];
#pragma unroll
    for (int i = 0; i < kFill; ++i) {
      const int t = tid + i * THREADS;
      constexpr int kRow = kBC / R, kHalf = kRow / 2;
      if (kBC % THREADS == 0 || t < kBC) {
        const float sg = t % kRow < kHalf ? sBg : sCg;
        if constexpr (VEC) {  // word t = floats 4t .. 4t+3 of sBC (rows are 2N floats = kRow words)
          float f[4];
          dequant4(bc_w[i], sg, f);
          reinterpret_cast<float4*>(&sBC[0][0])[t] = make_float4(f[0], f[1], f[2], f[3]);
        } else {
          (&sBC[0][0])[t] = dequant(static_cast<int8_t>(bc_w[i]), sg);
        }
      }
    }
  }
  if (tid < nr) {
    const float A = mamba2_A(a_q, p.A_log_scale);
    const float delta = mamba2_delta(dt_q, p.dt_scale, bias, p.dt_limit_lo, p.dt_limit_hi);
    s_dA[tid] = expf(delta * A);
    s_delta[tid] = delta;
  }
  __syncthreads();

  float rc[I8 ? NC : 1][4];  // 1 / scale, once for the R rows
  if constexpr (I8) {
#pragma unroll
    for (int j = 0; j < NC; ++j)
#pragma unroll
      for (int k = 0; k < 4; ++k) rc[j][k] = rcp_ftz(sc[j][k]);
  }
  const float Dv = dequant(d_q, p.D_scale);
#pragma unroll
  for (int r = 0; r < R; ++r) {
    if (r >= nr) break;  // block-uniform
    float v[NC][4];
    if constexpr (I8) {
#pragma unroll
      for (int j = 0; j < NC; ++j) {
        float f[4];
        i8x4_to_f32(s_w[r][j], f);
#pragma unroll
        for (int k = 0; k < 4; ++k) v[j][k] = f[k] * sc[j][k];
      }
    } else {
#pragma unroll
      for (int j = 0; j < NC; ++j)
#pragma unroll
        for (int k = 0; k < 4; ++k) v[j][k] = s[r][j][k];
    }
    // S = S_prev * dA + (delta x) B (separate fp32 multiply and add, as the reference)
    const float dA = s_dA[r];
    const float x = dequant(x_q[r], xs);
    const float dx = s_delta[r] * x;
    float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
    for (int j = 0; j < NC; ++j) {
      const int c4 = j * LN + ln;
      const float4 bv = reinterpret_cast<const float4*>(sBC[r])[c4];
      const float4 cv = reinterpret_cast<const float4*>(sBC[r] + N)[c4];
      const float bb[4] = {bv.x, bv.y, bv.z, bv.w}, cc[4] = {cv.x, cv.y, cv.z, cv.w};
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        v[j][k] = __fadd_rn(__fmul_rn(v[j][k], dA), __fmul_rn(dx, bb[k]));
        acc[k] = fmaf(v[j][k], cc[k], acc[k]);
      }
    }
    const float y = m2::group_sum<LN>((acc[0] + acc[1]) + (acc[2] + acc[3]));
    if (!valid) continue;  // after the shuffles
    if (ln == 0) p.y[int64_t(b0 + r) * p.y_batch_stride + ch] = f32_to_f16_bits(fmaf(Dv, x, y));
    if constexpr (I8) {
      store_i8<NC, LN, VEC>(static_cast<int8_t*>(p.state_out) + st + r * plane, v, rc);
    } else if constexpr (ST == QUAMBA_SSD_STATE_F16) {
      uint16_t* dst = static_cast<uint16_t*>(p.state_out) + st + r * plane;
#pragma unroll
      for (int j = 0; j < NC; ++j)
#pragma unroll
        for (int k = 0; k < 4; ++k) dst[j * LN * 4 + k] = f32_to_f16_bits(v[j][k]);
    } else {
      float* dst = static_cast<float*>(p.state_out) + st + r * plane;
#pragma unroll
      for (int j = 0; j < NC; ++j) {
        float* d = dst + j * LN * 4;
        if (f32vec) {
          *reinterpret_cast<float4*>(d) = make_float4(v[j][0], v[j][1], v[j][2], v[j][3]);
        } else {
#pragma unroll
          for (int k = 0; k < 4; ++k) d[k] = v[j][k];
        }
      }
    }
  }
}

template <int NPT, int THREADS>
cudaError_t launch_row(const QuambaQuantSSDStateUpdateParams& p, uint32_t gdiv, cudaStream_t stream) {
  switch (p.dstate) {
#define QSSU_ROW(n)                                                                                 \
  case n: {                                                                                         \
    constexpr int LN = n / NPT;                                                                     \
    dim3 grid(ceil_div(p.headdim, THREADS / LN), p.nheads, 1);                                      \
    ssd_update_row<LN, NPT, THREADS><<<grid, THREADS, 0, stream>>>(p, gdiv);                        \
    return cudaGetLastError();                                                                      \
  }
    QSSU_ROW(16) QSSU_ROW(32) QSSU_ROW(64) QSSU_ROW(128) QSSU_ROW(256)
#undef QSSU_ROW
    default: return cudaErrorInvalidValue;
  }
}

template <int ST, int LN, int NPT, int R, int THREADS, bool VEC>
cudaError_t launch_rows(const QuambaQuantSSDStateUpdateParams& p, uint32_t gdiv, bool f32vec,
                        cudaStream_t stream) {
  constexpr int CPB = THREADS / LN;
  dim3 grid(ceil_div(p.headdim, CPB), p.nheads, ceil_div(p.batch, R));
  ssd_update_rows<ST, LN, NPT, R, THREADS, VEC><<<grid, THREADS, 0, stream>>>(p, gdiv, f32vec);
  return cudaGetLastError();
}

template <bool VEC>
cudaError_t launch_i8_rows(const QuambaQuantSSDStateUpdateParams& p, uint32_t gdiv, cudaStream_t stream) {
  constexpr int I8 = QUAMBA_SSD_STATE_INT8;
  switch (p.dstate) {  // 16 states a lane (N / 16 lanes a channel), 4 rows a thread, 128-thread blocks
    case 16: return launch_rows<I8, 1, 16, 4, 128, VEC>(p, gdiv, false, stream);
    case 32: return launch_rows<I8, 2, 16, 4, 128, VEC>(p, gdiv, false, stream);
    case 64: return launch_rows<I8, 4, 16, 4, 128, VEC>(p, gdiv, false, stream);
    case 128: return launch_rows<I8, 8, 16, 4, 128, VEC>(p, gdiv, false, stream);
    case 256: return launch_rows<I8, 16, 16, 4, 128, VEC>(p, gdiv, false, stream);
    default: return cudaErrorInvalidValue;
  }
}

template <int ST>
cudaError_t launch_float(const QuambaQuantSSDStateUpdateParams& p, uint32_t gdiv, bool f32vec,
                         cudaStream_t stream) {
  switch (p.dstate) {  // one row a thread: R float states would cost R x NPT registers
    case 16: return launch_rows<ST, 4, 4, 1, 256, false>(p, gdiv, f32vec, stream);
    case 32: return launch_rows<ST, 4, 8, 1, 256, false>(p, gdiv, f32vec, stream);
    case 64: return launch_rows<ST, 8, 8, 1, 256, false>(p, gdiv, f32vec, stream);
    case 128: return launch_rows<ST, 16, 8, 1, 256, false>(p, gdiv, f32vec, stream);
    case 256: return launch_rows<ST, 16, 16, 1, 256, false>(p, gdiv, f32vec, stream);
    default: return cudaErrorInvalidValue;
  }
}

// Shapes, measured on an H100 (CUDA graphs, inputs rotated over > 2x L2; mamba2-2.7b / -8b, N = 128, compact
// scales unless said; "old" = the previous single kernel, 226687f):
// - batch 1, int8, aligned -> ssd_update_row, 8 states a lane, 128-thread blocks: 3.03 / 3.59 us (old
//   3.55 / 4.00; expanded scales 3.81 / 4.69, old 4.46 / 5.39). 256-thread blocks were within 0.1 us (2.7b:
//   320 blocks on 132 SMs leave a tail); 16 states a lane, 64-thread blocks and ssd_update_rows at batch 1
//   were slower. A trivial in-place int8 read + write of the same state with the same grid takes
//   2.09 / 2.35 us, 2.53 / 2.92 us with the compact row-index -> scale load chain, 3.38 / 4.08 us reading
//   the expanded scales: the floor of this path. An L2 prefetch of the whole compact table issued ahead
//   of the row-index load (to shorten that chain) measured 2-8% slower and was dropped.
// - batch > 1, int8 -> ssd_update_rows, 4 rows x 16 states a thread, 128-thread blocks: B=16 14.6 / 21.2 us
//   (old 21.7 / 33.6; the trivial read + write 8.9 / 13.1 us). 2 or 8 rows, 8 or 32 states a lane,
//   256-thread blocks or a register cap (__launch_bounds__ min blocks) were slower or mixed over B = 2 .. 16.
// - unaligned int8 (any batch) -> ssd_update_rows with byte loads; float states -> one row a thread.
cudaError_t dispatch(const QuambaQuantSSDStateUpdateParams& p, bool vec, bool f32vec, cudaStream_t stream) {
  const uint32_t gdiv = group_magic(p.nheads / p.ngroups);
  if (p.state_type == QUAMBA_SSD_STATE_INT8) {
    if (!vec) return launch_i8_rows<false>(p, gdiv, stream);
    if (p.batch == 1) return launch_row<8, 128>(p, gdiv, stream);
    return launch_i8_rows<true>(p, gdiv, stream);
  }
  if (p.state_type == QUAMBA_SSD_STATE_F16) return launch_float<QUAMBA_SSD_STATE_F16>(p, gdiv, false, stream);
  return launch_float<QUAMBA_SSD_STATE_F32>(p, gdiv, f32vec, stream);
}

}  // namespace
}  // namespace quamba

extern "C" QUAMBA_API cudaError_t quamba_quant_ssd_state_update(const QuambaQuantSSDStateUpdateParams* p,
                                                                cudaStream_t stream) {
  using quamba::m2::aligned;
  QUAMBA_CHECK_ARG(p != nullptr);
  QUAMBA_CHECK_ARG(p->batch >= 1 && p->nheads >= 1 && p->headdim >= 1 && p->ngroups >= 1);
  QUAMBA_CHECK_ARG(p->nheads % p->ngroups == 0 && p->batch <= 65535 && p->nheads <= 65535);
  QUAMBA_CHECK_ARG(int64_t(p->nheads) * p->headdim <= INT32_MAX);  // channel index h * P + p is an int
  QUAMBA_CHECK_ARG(p->x && p->x_scale && p->dt && p->dt_bias && p->A_log && p->B && p->B_scale && p->C &&
                   p->C_scale && p->y && p->state_in && p->state_out);
  QUAMBA_CHECK_ARG(p->state_type == QUAMBA_SSD_STATE_INT8 || p->state_type == QUAMBA_SSD_STATE_F32 ||
                   p->state_type == QUAMBA_SSD_STATE_F16);
  QUAMBA_CHECK_ARG(p->state_type != QUAMBA_SSD_STATE_INT8 || p->state_scale != nullptr);
  // int8 fast paths: 4-byte int8 / 16-byte fp32 state chunks and 16-byte scale chunks need 16-byte aligned
  // bases (N is a multiple of 16), and B / C are read as 4-byte words (aligned bases and batch strides).
  const bool f32vec = aligned(p->state_in, 16) && aligned(p->state_out, 16);
  const bool vec = f32vec && (p->state_scale == nullptr || aligned(p->state_scale, 16)) && aligned(p->B, 4) &&
                   aligned(p->C, 4) && p->B_batch_stride % 4 == 0 && p->C_batch_stride % 4 == 0;
  return quamba::dispatch(*p, vec, f32vec, stream);
}
