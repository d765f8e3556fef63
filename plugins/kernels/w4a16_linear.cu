// W4A16Linear: int4 weights with fp16 group scales x fp16 activations, on fp16 tensor cores.
// Contract: quamba_edge/ops/w4a16_linear.py (see quamba_kernels/w4a16_linear.h).
//
// Tensor-core GEMV (gemv_kernel in linear_common.cuh): per k-step of 128, lane (g, t) streams 16 bytes (32 codes)
// of weight rows g and g + 8 at K offset 32 t and loads their group scales; the codes become fp16 and meet the lane's 32 activations
// (fp16, read through L1) in eight m16n8k16 mmas with fp32 accumulation.
//   group_size % 128 == 0 (or one group per row): a k-step is one group, so the codes enter the mma as exact
//     (c - 8) and each step's partial sum is scaled in fp32 (the reference's product up to summation order);
//   other multiples of 32: the four lanes of an mma hold different groups, so each lane scales its codes
//     before the mma, fp16((c - 8) * s) (Marlin's rounding: 2^-11 relative per weight, inside fp16 tolerance).
//
// M > 16 (prefill): the tiled GEMM of linear_gemm.cuh, k-tiles of 64 K positions (128 bytes of fp16 activations,
// 32 bytes of codes per weight row). Activation fragments by ldmatrix: at k-step s (16 positions) lane t holds
// positions 2t, 2t+1 (chunk 2s) and 8+2t, 9+2t (chunk 2s + 1) = byte t of words 2s and 2s + 1 of weight row g's
// 32 code bytes; one LDS.128 per two k-steps (a broadcast to the row's four lanes), then per byte a PRMT, a LOP3
// and an HFMA2 make the exact fp16 pair (c - 8) of its two codes.
//   group_size % 64 == 0 (or one group per row): a k-tile lies in one group, so the exact codes accumulate into a
//     per-group fp32 partial sum (its own mma accumulators), folded into the output with one fp32 FMA by the
//     column's group scale at the group's end: the reference's fp32 product up to summation order;
//   other multiples of 32: each 32-position half of a k-tile has its own group per weight row, and the lane
//     scales its codes before the mma, fp16((c - 8) * s), as the GEMV does.
//   big:   128 x 128 tile, 8 warps of 64 x 32 (2 x 4): 64 + 64 fp32 accumulators (output + group partial) per
//          lane, so one block of 256 threads per SM; 4 stages x 20 KiB.
//   small: 64 x 64, 4 warps of 32 x 32, 4 stages x 10 KiB (when big tiles would leave SMs idle).
#include "quamba_kernels/w4a16_linear.h"

#include "quamba_kernels/linear_common.cuh"
#include "quamba_kernels/linear_gemm.cuh"

namespace quamba {
namespace {

using namespace lin;

template <bool kStepGroups>  // true: a k-step lies in one group (group_size % 128 == 0 or >= K)
struct W4A16 {
  using Params = QuambaW4A16LinearParams;
  using Acc = float;
  static constexpr int kStepK = 128;  // 4 lanes x 32 codes
  struct Side {
    uint32_t s;  // group scales (fp16 bits) of rows g (low half) and g + 8 (high half)
  };
  template <int NT>
  struct X {
    uint4 v[NT][4];  // 32 fp16 activations of token rows g (+ 8)
  };

  const uint8_t* w;
  const uint16_t* sc;
  int64_t ldw, lds;
  const uint16_t* xr[2];
  bool tin[2];
  int n, k, k0;
  uint32_t group_magic;  // floor(kk / group_size) = umulhi(kk, group_magic) for kk < 2^16

  template <int NT>
  __device__ __forceinline__ W4A16(const Params& p, const GemvLane<NT>& ln)
      : w(p.qweight), sc(p.scale), ldw(p.w_row_stride), lds(p.scale_row_stride), n(p.n), k(p.k), k0(32 * ln.t),
        group_magic(div_magic(static_cast<uint32_t>(p.group_size >= p.k ? p.k : p.group_size))) {
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
      tin[nt] = ln.tin[nt];
      xr[nt] = p.x + (ln.tin[nt] ? ln.tok[nt] : 0) * p.x_row_stride + k0;
    }
  }

  // Step groups: the scale is the step's (the four lanes of a quad share the mma's sums, so all need it, also a
  // lane whose own chunk lies past K); else the lane's own chunk's. Out-of-range chunks copy zero codes, which
  // meet zero activations.
  __device__ __forceinline__ void issue(int row0, int step, bool valid, uint4* dst0, uint4* dst1, Side& side) const {
    const int kk = step * kStepK + k0;
    const bool ok = valid && kk < k;
    const bool ok0 = ok && row0 < n, ok1 = ok && row0 + 8 < n;
    cp_async16(dst0, w + (ok0 ? row0 * ldw + kk / 2 : 0), ok0);
    cp_async16(dst1, w + (ok1 ? (row0 + 8) * ldw + kk / 2 : 0), ok1);
    const bool sv0 = valid && row0 < n, sv1 = valid && row0 + 8 < n;
    const uint32_t kg = kStepGroups ? static_cast<uint32_t>(step * kStepK) : static_cast<uint32_t>(ok ? kk : 0);
    const uint32_t grp = valid ? __umulhi(kg, group_magic) : 0u;
    const uint32_t s0 = sv0 ? __ldg(sc + row0 * lds + grp) : 0u, s1 = sv1 ? __ldg(sc + (row0 + 8) * lds + grp) : 0u;
    side.s = s0 | (s1 << 16);
  }

  template <int NT>
  __device__ __forceinline__ void load_x(int step, bool valid, X<NT>& x) const {
    const int off = step * kStepK;
    const bool ok = valid && off + k0 < k;
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
      for (int q = 0; q < 4; ++q) x.v[nt][q] = ok && tin[nt] ? ld_cached(xr[nt] + off + 8 * q) : make_uint4(0, 0, 0, 0);
    }
  }

  template <int NT>
  __device__ __forceinline__ void compute(uint4 w0, uint4 w1, const Side& side, const X<NT>& x,
                                          float (&acc)[NT][4]) const {
    float part[NT][4] = {};
    float(&sum)[NT][4] = kStepGroups ? part : acc;  // prescaled codes accumulate straight into acc
    const uint32_t sa2 = (side.s & 0xFFFFu) * 0x10001u, sb2 = (side.s >> 16) * 0x10001u;
#pragma unroll
    for (int j = 0; j < 4; ++j) {  // packed word j = codes 8j .. 8j + 7 of each row's chunk
      uint32_t ha[4], hb[4];
      w4_to_f16(word(w0, j), ha);  // {c0,c4} {c1,c5} {c2,c6} {c3,c7}
      w4_to_f16(word(w1, j), hb);
      if (!kStepGroups) {
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          ha[i] = h2_bits(__hmul2(as_h2(ha[i]), as_h2(sa2)));
          hb[i] = h2_bits(__hmul2(as_h2(hb[i]), as_h2(sb2)));
        }
      }
      const uint32_t a0[4] = {ha[0], hb[0], ha[1], hb[1]};
      const uint32_t a1[4] = {ha[2], hb[2], ha[3], hb[3]};
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
        const uint4& xv = x.v[nt][j];
        // activation pairs in the codes' order: {x0,x4} {x1,x5} {x2,x6} {x3,x7}
        mma_f16(sum[nt], a0, prmt(xv.x, xv.z, 0x5410), prmt(xv.x, xv.z, 0x7632));
        mma_f16(sum[nt], a1, prmt(xv.y, xv.w, 0x5410), prmt(xv.y, xv.w, 0x7632));
      }
    }
    if (!kStepGroups) return;
    const float sa = f16_bits_to_f32(static_cast<uint16_t>(side.s)), sb = f16_bits_to_f32(static_cast<uint16_t>(side.s >> 16));
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {  // C fragment: registers 0, 1 are row g, 2, 3 row g + 8
      acc[nt][0] = fmaf(part[nt][0], sa, acc[nt][0]);
      acc[nt][1] = fmaf(part[nt][1], sa, acc[nt][1]);
      acc[nt][2] = fmaf(part[nt][2], sb, acc[nt][2]);
      acc[nt][3] = fmaf(part[nt][3], sb, acc[nt][3]);
    }
  }

  __device__ static __forceinline__ void store(const Params& p, float acc, int row, int64_t token) {
    const float y = p.bias != nullptr ? acc + p.bias[row] : acc;
    store_y(p.y, token * p.y_row_stride + row, p.y_dtype, y, 1.0f);
  }
};

// Exact fp16 pair {c_lo - 8, c_hi - 8} of the two codes of byte t of w, in three instructions: the PRMT copies the
// byte into both halves, the LOP3 keeps the low code in mantissa bits 0-3 of the low half (1024 + c_lo) and the
// high code in bits 4-7 of the high half (1024 + 16 c_hi), and one fused multiply-add by {1, 1/16} plus
// {-1032, -72} gives c_lo - 8 and c_hi - 8 (exact: the fma rounds once, and the results are small integers).
__device__ __forceinline__ uint32_t w4_pair_f16(uint32_t w, uint32_t sel) {
  const uint32_t u = lop3_and_or(prmt(w, w, sel), 0x00F0000Fu, 0x64006400u);
  return h2_bits(__hfma2(as_h2(u), as_h2(0x2C003C00u), as_h2(0xD480E408u)));  // {1, 0.0625}, {-1032, -72}
}

// GEMM policy (linear_gemm.cuh). kExact: group_size % 64 == 0 or one group per row (exact codes, per-group
// fp32 scaling); else prescaled fp16 weights.
template <class Tl, bool kExact>
struct W4A16Gemm {
  using Params = QuambaW4A16LinearParams;
  using T = Tl;
  static constexpr int kBRowBytes = 32;  // 64 codes
  static constexpr int MT = T::kMT, NT = T::kNT;
  static constexpr int kPM = kExact ? MT : 1;  // group partial sums (exact mode)

  __device__ static const void* x_ptr(const Params& p) { return p.x; }
  __device__ static int64_t x_row_bytes(const Params& p) { return 2 * p.x_row_stride; }
  __device__ static int x_kbytes(const Params& p) { return 2 * p.k; }
  __device__ static const void* w_ptr(const Params& p) { return p.qweight; }
  __device__ static int64_t w_row_bytes(const Params& p) { return p.w_row_stride; }
  __device__ static int w_kbytes(const Params& p) { return p.k / 2; }

  float acc[MT][NT][4];
  float part[kPM][NT][4];
  // exact: scales (fp32) of this lane's output columns (2t, 2t + 1 of each n8 tile) for the current group;
  // prescaled: scales (fp16 bits, both halves) of this lane's weight rows (g of each n8 tile) for the two
  // 32-position halves of the current k-tile
  uint32_t sc[NT][2];
  gemm::AFrag<T> af;
  const uint16_t* srow;  // exact: scale row of column 2t of n8 tile 0; prescaled: of weight row g of n8 tile 0
  int64_t s_row;         // the scale row stride (elements)
  uint32_t nin;          // exact: bit 2 nt + i = column 2t + i of tile nt exists; prescaled: bit nt = row exists
  uint32_t b_row_off;
  int b_x;
  uint32_t sel;  // PRMT selector: byte t of w -> bytes 0 and 2
  int k, group_size, tiles_per_group, gtile, grp;

  __device__ __forceinline__ W4A16Gemm(const Params& p, int64_t, int n0)
      : af(gemm::WarpPos::make<T>()), s_row(p.scale_row_stride), k(p.k),
        group_size(p.group_size >= p.k ? p.k : p.group_size), gtile(0), grp(0) {
    const gemm::WarpPos w = gemm::WarpPos::make<T>();
    tiles_per_group = group_size >= p.k ? 0x7fffffff : group_size / 64;  // exact mode only
    const int col = n0 + w.wn * T::kWN + (kExact ? 2 * w.t : w.g);
    nin = 0;
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
      if (kExact) {
        nin |= (col + nt * 8 < p.n ? 1u : 0u) << (2 * nt);
        nin |= (col + nt * 8 + 1 < p.n ? 1u : 0u) << (2 * nt + 1);
      } else {
        nin |= (col + nt * 8 < p.n ? 1u : 0u) << nt;
      }
    }
    srow = p.scale + static_cast<int64_t>(nin & 1u ? col : 0) * p.scale_row_stride;
    b_row_off = static_cast<uint32_t>((w.wn * T::kWN + w.g) * kBRowBytes);
    b_x = (w.g >> 2) & 1;
    sel = static_cast<uint32_t>(w.t | (w.t << 8));
    if (kExact) {
      fetch_cols(0);
    } else {
      fetch_rows(sc, 0);
    }
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
        for (int i = 0; i < 4; ++i) acc[mt][nt][i] = 0.0f;
      }
    }
    zero_part();
  }

  __device__ __forceinline__ void zero_part() {
#pragma unroll
    for (int mt = 0; mt < kPM; ++mt) {
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
        for (int i = 0; i < 4; ++i) part[mt][nt][i] = 0.0f;
      }
    }
  }

  // exact: the column scales of group g (columns past N: 0)
  __device__ __forceinline__ void fetch_cols(int g) {
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        const bool ok = (nin >> (2 * nt + i)) & 1u;
        sc[nt][i] = __float_as_uint(ok ? f16_bits_to_f32(__ldg(srow + (nt * 8 + i) * s_row + g)) : 0.0f);
      }
    }
  }

  // prescaled: the row scales of k-tile kt's two halves (rows past N: 0; halves past K: group 0)
  __device__ __forceinline__ void fetch_rows(uint32_t (&dst)[NT][2], int kt) const {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int kk = kt * 64 + 32 * h;
      const int g = kk < k ? kk / group_size : 0;
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
        const uint32_t b = (nin >> nt) & 1u ? __ldg(srow + nt * 8 * s_row + g) : 0u;
        dst[nt][h] = b * 0x10001u;
      }
    }
  }

  __device__ __forceinline__ void compute(uint32_t sA, uint32_t sB, int kt, int KT) {
    uint32_t next[NT][2];
    if (!kExact) fetch_rows(next, kt + 1 < KT ? kt + 1 : kt);  // in flight during this k-tile
#pragma unroll
    for (int j = 0; j < 2; ++j) {  // pairs of k-steps: one 16-byte chunk of every weight row
      uint4 v[NT];
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
        v[nt] = gemm::lds128(sB + b_row_off + static_cast<uint32_t>(nt * 8 * kBRowBytes + ((j ^ b_x) << 4)));
      }
#pragma unroll
      for (int s2 = 0; s2 < 2; ++s2) {
        const int s = 2 * j + s2;  // k-step of 16: codes 16s..16s+15 = words 2s, 2s + 1 of the row
        uint32_t b[NT][2];
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) {
          b[nt][0] = w4_pair_f16(s2 ? v[nt].z : v[nt].x, sel);
          b[nt][1] = w4_pair_f16(s2 ? v[nt].w : v[nt].y, sel);
          if (!kExact) {
            b[nt][0] = h2_bits(__hmul2(as_h2(b[nt][0]), as_h2(sc[nt][j])));
            b[nt][1] = h2_bits(__hmul2(as_h2(b[nt][1]), as_h2(sc[nt][j])));
          }
        }
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
          uint32_t a[4];
          af.load(a, sA, mt, s);
#pragma unroll
          for (int nt = 0; nt < NT; ++nt) {
            if constexpr (kExact) {
              mma_f16(part[mt][nt], a, b[nt][0], b[nt][1]);
            } else {
              mma_f16(acc[mt][nt], a, b[nt][0], b[nt][1]);
            }
          }
        }
      }
    }
    if constexpr (!kExact) {
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
        sc[nt][0] = next[nt][0];
        sc[nt][1] = next[nt][1];
      }
    } else if (++gtile == tiles_per_group || kt + 1 == KT) {
      // a group's last k-tile: acc += partial * scale (fp32) per column, then the next group's scales
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
          for (int i = 0; i < 4; ++i) {
            acc[mt][nt][i] = fmaf(part[mt][nt][i], __uint_as_float(sc[nt][i & 1]), acc[mt][nt][i]);
          }
        }
      }
      zero_part();
      gtile = 0;
      if (kt + 1 < KT) fetch_cols(++grp);
    }
  }

  struct Col {
    struct State {
      float bias;
    };
    const float* bias;
    __device__ __forceinline__ State at(int n) const { return State{bias != nullptr ? __ldg(bias + n) : 0.0f}; }
    __device__ __forceinline__ float value(float acc, const State& s) const { return bias != nullptr ? acc + s.bias : acc; }
    __device__ __forceinline__ float quant_scale(const State&) const { return 1.0f; }
  };

  __device__ __forceinline__ void epilogue(const Params& p, int64_t m0, int n0, bool pairs) const {
    Col col{p.bias};
    gemm::store_tile<T>(acc, col, p.y, p.y_row_stride, p.y_dtype, p.m, p.n, m0, n0, pairs);
  }
};

using BigTile = gemm::Tiling<128, 128, 2, 4, 4, 1>;
using SmallTile = gemm::Tiling<64, 64, 2, 2, 4, 3>;

// quamba_w4a16_dequantize: one thread per 16 codes of a row (8 bytes in, 32 bytes out; K % 32 == 0 and
// group_size % 32 == 0 keep them inside one group), a grid-stride loop over the N x K / 16 pieces. A pure
// streaming kernel: its time is the 2.5 bytes per weight over the memory bandwidth.
__global__ void __launch_bounds__(256) w4a16_dequantize_kernel(const QuambaW4A16DequantizeParams p, int group) {
  const int per_row = p.k / 16;
  const int64_t total = static_cast<int64_t>(p.n) * per_row;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int n = static_cast<int>(i / per_row), k0 = static_cast<int>(i % per_row) * 16;
    const uint2 c = __ldg(reinterpret_cast<const uint2*>(p.qweight + n * p.w_row_stride + k0 / 2));
    const float s = f16_bits_to_f32(__ldg(p.scale + n * p.scale_row_stride + k0 / group));
    uint32_t o[8];
#pragma unroll
    for (int j = 0; j < 8; ++j) {  // byte j: codes k0 + 2j (low nibble) and k0 + 2j + 1 (high nibble)
      const uint32_t b = ((j < 4 ? c.x : c.y) >> (8 * (j % 4))) & 0xffu;
      const float lo = static_cast<float>(static_cast<int>(b & 15u) - 8) * s;  // exact in fp32
      const float hi = static_cast<float>(static_cast<int>(b >> 4) - 8) * s;
      o[j] = uint32_t(f32_to_f16_bits(lo)) | (uint32_t(f32_to_f16_bits(hi)) << 16);
    }
    uint4* dst = reinterpret_cast<uint4*>(p.out + n * p.out_row_stride + k0);
    dst[0] = make_uint4(o[0], o[1], o[2], o[3]);
    dst[1] = make_uint4(o[4], o[5], o[6], o[7]);
  }
}

}  // namespace
}  // namespace quamba

extern "C" QUAMBA_API cudaError_t quamba_w4a16_dequantize(const QuambaW4A16DequantizeParams* p, cudaStream_t stream) {
  using namespace quamba;
  QUAMBA_CHECK_ARG(p != nullptr && p->qweight != nullptr && p->scale != nullptr && p->out != nullptr);
  QUAMBA_CHECK_ARG(p->n >= 1 && p->k >= 32 && p->k % 32 == 0 && p->k <= 65536);
  QUAMBA_CHECK_ARG(p->group_size >= p->k || (p->group_size >= 32 && p->group_size % 32 == 0));
  QUAMBA_CHECK_ARG(p->w_row_stride >= p->k / 2 && p->scale_row_stride >= (p->k + p->group_size - 1) / p->group_size);
  QUAMBA_CHECK_ARG(p->out_row_stride >= p->k && p->out_row_stride % 8 == 0);
  QUAMBA_CHECK_ARG(lin::aligned16(p->qweight, p->w_row_stride) && lin::aligned16(p->out, p->out_row_stride * 2));
  const int group = p->group_size >= p->k ? p->k : p->group_size;
  const int64_t pieces = static_cast<int64_t>(p->n) * (p->k / 16);
  int dev = 0, sms = 0;
  QUAMBA_CUDA_TRY(cudaGetDevice(&dev));
  QUAMBA_CUDA_TRY(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  const int64_t blocks = ceil_div<int64_t>(pieces, 256);
  const int grid = static_cast<int>(blocks < int64_t{sms} * 16 ? blocks : int64_t{sms} * 16);
  w4a16_dequantize_kernel<<<grid, 256, 0, stream>>>(*p, group);
  return cudaGetLastError();
}

extern "C" QUAMBA_API cudaError_t quamba_w4a16_linear(const QuambaW4A16LinearParams* p, cudaStream_t stream) {
  using namespace quamba;
  QUAMBA_CHECK_ARG(p != nullptr && p->x != nullptr && p->qweight != nullptr && p->scale != nullptr && p->y != nullptr);
  QUAMBA_CHECK_ARG(p->m >= 1 && p->n >= 1 && p->k >= 32 && p->k % 32 == 0 && p->k <= 65536);
  QUAMBA_CHECK_ARG(p->group_size >= p->k || (p->group_size >= 32 && p->group_size % 32 == 0));
  QUAMBA_CHECK_ARG(p->w_row_stride >= p->k / 2 && p->scale_row_stride >= (p->k + p->group_size - 1) / p->group_size);
  QUAMBA_CHECK_ARG(lin::aligned16(p->x, p->x_row_stride * 2) && lin::aligned16(p->qweight, p->w_row_stride));
  QUAMBA_CHECK_ARG(p->y_dtype == QUAMBA_DT_F32 || p->y_dtype == QUAMBA_DT_F16);
  if (p->m > 16) {
    const bool pairs = lin::gemm::pair_stores(p->y, p->y_dtype, p->y_row_stride);
    if (p->group_size >= p->k || p->group_size % 64 == 0) {
      return lin::gemm::launch<W4A16Gemm<BigTile, true>, W4A16Gemm<SmallTile, true>>(*p, pairs, stream);
    }
    return lin::gemm::launch<W4A16Gemm<BigTile, false>, W4A16Gemm<SmallTile, false>>(*p, pairs, stream);
  }
  if (p->group_size >= p->k || p->group_size % 128 == 0) return lin::launch_gemv<W4A16<true>>(*p, stream);
  return lin::launch_gemv<W4A16<false>>(*p, stream);
}
