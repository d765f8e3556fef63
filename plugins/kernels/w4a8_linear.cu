// W4A8Linear: int4 weights (two-level scales) x int8 activations on int8 tensor cores, exact int32 sums.
// Contract: quamba_edge/ops/w4a8_linear.py (see quamba_kernels/w4a8_linear.h).
//
// Tensor-core GEMV (gemv_kernel in linear_common.cuh): per k-step of 128, lane (g, t) streams 16 bytes (32 codes)
// of weight rows g and g + 8 at K offset 32 t, loads their fp16 group scales, and reads 32 activation bytes of
// token row g. The int4 -> int8 step of the reference (an fp16 multiply by the group scale, rounded half to
// even, saturated) is done once per lane and group as a 16-entry table (w4a8_lut) and applied with byte
// permutes (w4a8_lookup), so the int8 weights are bit-identical to the reference's and the int32 sums exact.
//
// M > 16 (prefill): the tiled GEMM of linear_gemm.cuh with the same int4 -> int8 conversion in registers. A
// k-tile is 128 K positions (one group for group_size % 128 == 0 or one group per row: one table per lane and
// weight row per k-tile, from scales fetched a k-tile ahead; other group sizes rebuild the tables per k-step of
// 32). Activation fragments: ldmatrix (k-step s = chunks 2s, 2s + 1: lane t holds K positions 4t..4t+3 and
// 16+4t..16+4t+3). Lane (g, t) needs the codes of the same positions of weight row g: halfword t of each
// 8-byte half of the row's 16-byte chunk s, so one LDS.128 (the four lanes of a row read the same address,
// a broadcast) and three byte permutes give the packed word that w4a8_lookup turns into b0, b1.
//   big:   128 x 128 tile, 4 warps of 128 x 32 (1 x 4): each weight code is converted exactly once per block
//          (a 2 x 2 warp grid would convert every code twice); per lane and k-tile one table (~36
//          instructions; the row's four lanes build one n8 tile's table each and share them by 16 shuffles) +
//          16 lookups (~220) for 128 mmas per warp; 4 stages x 24 KiB: 2 blocks per SM on sm_90.
//   small: 64 x 64, 4 warps of 64 x 16, 4 stages x 12 KiB (when big tiles would leave SMs idle).
#include "quamba_kernels/w4a8_linear.h"

#include "quamba_kernels/linear_common.cuh"
#include "quamba_kernels/linear_gemm.cuh"

namespace quamba {
namespace {

using namespace lin;

struct W4A8 {
  using Params = QuambaW4A8LinearParams;
  using Acc = int;
  static constexpr int kStepK = 128;  // 4 lanes x 32 codes
  struct Side {
    uint32_t s;  // group scales (fp16 bits) of rows g (low half) and g + 8 (high half)
  };
  template <int NT>
  struct X {
    uint4 v[NT][2];  // 32 activation bytes of token rows g (+ 8)
  };

  const uint8_t* w;
  const uint16_t* sg;
  int64_t ldw, lds;
  const int8_t* xr[2];
  bool tin[2];
  int n, k, k0;
  uint32_t group_magic;  // floor(kk / group_size) = umulhi(kk, group_magic) for kk < 2^16

  template <int NT>
  __device__ __forceinline__ W4A8(const Params& p, const GemvLane<NT>& ln)
      : w(p.qweight), sg(p.s_group), ldw(p.w_row_stride), lds(p.s_group_row_stride), n(p.n), k(p.k),
        k0(32 * ln.t), group_magic(div_magic(static_cast<uint32_t>(p.group_size >= p.k ? p.k : p.group_size))) {
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
      tin[nt] = ln.tin[nt];
      xr[nt] = p.x + (ln.tin[nt] ? ln.tok[nt] : 0) * p.x_row_stride + k0;
    }
  }

  // Out-of-range chunks copy zero bytes: code 0 decodes to a non-zero weight, but its activations are zero.
  __device__ __forceinline__ void issue(int row0, int step, bool valid, uint4* dst0, uint4* dst1, Side& side) const {
    const int kk = step * kStepK + k0;
    const bool ok = valid && kk < k;
    const bool ok0 = ok && row0 < n, ok1 = ok && row0 + 8 < n;
    cp_async16(dst0, w + (ok0 ? row0 * ldw + kk / 2 : 0), ok0);
    cp_async16(dst1, w + (ok1 ? (row0 + 8) * ldw + kk / 2 : 0), ok1);
    const uint32_t grp = __umulhi(static_cast<uint32_t>(ok ? kk : 0), group_magic);
    const uint32_t s0 = ok0 ? __ldg(sg + row0 * lds + grp) : 0u, s1 = ok1 ? __ldg(sg + (row0 + 8) * lds + grp) : 0u;
    side.s = s0 | (s1 << 16);
  }

  template <int NT>
  __device__ __forceinline__ void load_x(int step, bool valid, X<NT>& x) const {
    const int off = step * kStepK;
    const bool ok = valid && off + k0 < k;
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
      x.v[nt][0] = ok && tin[nt] ? ld_cached(xr[nt] + off) : make_uint4(0, 0, 0, 0);
      x.v[nt][1] = ok && tin[nt] ? ld_cached(xr[nt] + off + 16) : make_uint4(0, 0, 0, 0);
    }
  }

  template <int NT>
  __device__ __forceinline__ void compute(uint4 w0, uint4 w1, const Side& side, const X<NT>& x,
                                          int (&acc)[NT][4]) const {
    const Lut16 la = w4a8_lut(static_cast<uint16_t>(side.s)), lb = w4a8_lut(static_cast<uint16_t>(side.s >> 16));
#pragma unroll
    for (int j = 0; j < 4; ++j) {  // packed word j = codes 8j .. 8j + 7 of each row's chunk
      uint32_t a[4];
      w4a8_lookup(la, word(w0, j), a[0], a[2]);
      w4a8_lookup(lb, word(w1, j), a[1], a[3]);
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
        const uint4& xv = x.v[nt][j / 2];
        mma_s8(acc[nt], a, word(xv, (2 * j) % 4), word(xv, (2 * j + 1) % 4));
      }
    }
  }

  __device__ static __forceinline__ void store(const Params& p, int acc, int row, int64_t token) {
    a8_store(p, acc, row, token, __ldg(p.s_channel + row));
  }
};

// GEMM policy (linear_gemm.cuh). kTileGroups: a k-tile of 128 lies in one group (group_size % 128 == 0 or one
// group per row); else each k-step of 32 has its own group (group_size % 32 == 0).
template <class Tl, bool kTileGroups>
struct W4A8Gemm {
  using Params = QuambaW4A8LinearParams;
  using T = Tl;
  static constexpr int kBRowBytes = 64;  // 128 codes
  static constexpr int MT = T::kMT, NT = T::kNT;
  static constexpr int kG = kTileGroups ? 1 : 4;  // group scales per weight row and k-tile

  __device__ static const void* x_ptr(const Params& p) { return p.x; }
  __device__ static int64_t x_row_bytes(const Params& p) { return p.x_row_stride; }
  __device__ static int x_kbytes(const Params& p) { return p.k; }
  __device__ static const void* w_ptr(const Params& p) { return p.qweight; }
  __device__ static int64_t w_row_bytes(const Params& p) { return p.w_row_stride; }
  __device__ static int w_kbytes(const Params& p) { return p.k / 2; }

  static_assert(NT <= 4, "the four lanes of a weight row build one n8 tile's table each");

  int acc[MT][NT][4];
  // The table of weight row g of n8 tile nt is needed by the four lanes (g, t); lane t builds the one of
  // tile t % NT and the others get it by shuffles (4 registers per tile): one w4a8_lut per lane and group
  // instead of NT.
  uint16_t sc[kG];       // group scales (fp16 bits) of this lane's own table row for the current k-tile
  gemm::AFrag<T> af;
  const uint16_t* srow;  // group-scale row of the own table row (n0 + wn * WN + (t % NT) * 8 + g), or nullptr
  int lut_lane0;         // lane (g, 0)
  uint32_t b_row_off;    // this lane's weight row (g) in the tile
  int b_x;               // its swizzle term ((g / 2) % 4)
  uint32_t sel;          // PRMT selector of halfword t of an 8-byte pair
  int k, group_size;

  __device__ __forceinline__ W4A8Gemm(const Params& p, int64_t, int n0)
      : af(gemm::WarpPos::make<T>()), k(p.k), group_size(p.group_size >= p.k ? p.k : p.group_size) {
    const gemm::WarpPos w = gemm::WarpPos::make<T>();
    const int row = n0 + w.wn * T::kWN + (w.t % NT) * 8 + w.g;  // rows past N: scale 0, a table of zeros
    srow = row < p.n ? p.s_group + static_cast<int64_t>(row) * p.s_group_row_stride : nullptr;
    lut_lane0 = w.lane & ~3;
    b_row_off = static_cast<uint32_t>((w.wn * T::kWN + w.g) * kBRowBytes);
    b_x = (w.g >> 1) & 3;
    sel = static_cast<uint32_t>((2 * w.t) | ((2 * w.t + 1) << 4));
    fetch(sc, 0);
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
        for (int i = 0; i < 4; ++i) acc[mt][nt][i] = 0;
      }
    }
  }

  // Group scales of the own table row for k-tile kt (k-steps past K: group 0, against zero activations).
  __device__ __forceinline__ void fetch(uint16_t (&dst)[kG], int kt) const {
#pragma unroll
    for (int j = 0; j < kG; ++j) {
      const int kk = kt * 128 + 32 * j;
      const int grp = kk < k ? kk / group_size : 0;
      dst[j] = srow != nullptr ? __ldg(srow + grp) : 0;
    }
  }

  __device__ __forceinline__ void compute(uint32_t sA, uint32_t sB, int kt, int KT) {
    uint16_t next[kG];
    fetch(next, kt + 1 < KT ? kt + 1 : kt);  // in flight during this k-tile
    Lut16 lut[NT];
#pragma unroll
    for (int s = 0; s < 4; ++s) {  // k-steps of 32
      if (s == 0 || !kTileGroups) {
        const Lut16 own = w4a8_lut(sc[kTileGroups ? 0 : s]);
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) {
          lut[nt].lo0 = __shfl_sync(0xffffffffu, own.lo0, lut_lane0 + nt);
          lut[nt].lo1 = __shfl_sync(0xffffffffu, own.lo1, lut_lane0 + nt);
          lut[nt].hi0 = __shfl_sync(0xffffffffu, own.hi0, lut_lane0 + nt);
          lut[nt].hi1 = __shfl_sync(0xffffffffu, own.hi1, lut_lane0 + nt);
        }
      }
      uint32_t b[NT][2];
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
        const uint4 v = gemm::lds128(sB + b_row_off + static_cast<uint32_t>(nt * 8 * kBRowBytes + ((s ^ b_x) << 4)));
        // halfword t of each 8-byte half: codes 4t..4t+3 (-> b0) and 16+4t..16+4t+3 (-> b1) of the k-step
        const uint32_t wd = prmt(prmt(v.x, v.y, sel), prmt(v.z, v.w, sel), 0x5410);
        w4a8_lookup(lut[nt], wd, b[nt][0], b[nt][1]);
      }
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
        uint32_t a[4];
        af.load(a, sA, mt, s);
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) mma_s8(acc[mt][nt], a, b[nt][0], b[nt][1]);
      }
    }
#pragma unroll
    for (int j = 0; j < kG; ++j) sc[j] = next[j];
  }

  __device__ __forceinline__ void epilogue(const Params& p, int64_t m0, int n0, bool pairs) const {
    gemm::IntCol col;
    col.x_scale = __ldg(p.x_scale);
    col.w_scale = p.s_channel;
    col.w_scale_stride = 1;
    col.bias = p.bias;
    col.out_scale = p.y_dtype == QUAMBA_DT_I8 ? p.out_scale : nullptr;
    col.out_scale_stride = p.out_scale_stride;
    gemm::store_tile<T>(acc, col, p.y, p.y_row_stride, p.y_dtype, p.m, p.n, m0, n0, pairs);
  }
};

using BigTile = gemm::Tiling<128, 128, 1, 4, 4, 2>;
using SmallTile = gemm::Tiling<64, 64, 1, 4, 4, 3>;

}  // namespace
}  // namespace quamba

extern "C" QUAMBA_API cudaError_t quamba_w4a8_linear(const QuambaW4A8LinearParams* p, cudaStream_t stream) {
  using namespace quamba;
  QUAMBA_CHECK_ARG(p != nullptr && p->x != nullptr && p->qweight != nullptr && p->y != nullptr);
  QUAMBA_CHECK_ARG(p->x_scale != nullptr && p->s_group != nullptr && p->s_channel != nullptr);
  QUAMBA_CHECK_ARG(p->m >= 1 && p->n >= 1 && p->k >= 32 && p->k % 32 == 0 && p->k <= 65536);
  QUAMBA_CHECK_ARG(p->group_size >= p->k || (p->group_size >= 32 && p->group_size % 32 == 0));
  QUAMBA_CHECK_ARG(p->w_row_stride >= p->k / 2 && p->s_group_row_stride >= (p->k + p->group_size - 1) / p->group_size);
  QUAMBA_CHECK_ARG(lin::aligned16(p->x, p->x_row_stride) && lin::aligned16(p->qweight, p->w_row_stride));
  QUAMBA_CHECK_ARG(p->y_dtype == QUAMBA_DT_I8 || p->y_dtype == QUAMBA_DT_F32 || p->y_dtype == QUAMBA_DT_F16);
  QUAMBA_CHECK_ARG(p->y_dtype != QUAMBA_DT_I8 ||
                   (p->out_scale != nullptr && (p->out_scale_stride == 0 || p->out_scale_stride == 1)));
  if (p->m > 16) {
    const bool pairs = lin::gemm::pair_stores(p->y, p->y_dtype, p->y_row_stride);
    if (p->group_size >= p->k || p->group_size % 128 == 0) {
      return lin::gemm::launch<W4A8Gemm<BigTile, true>, W4A8Gemm<SmallTile, true>>(*p, pairs, stream);
    }
    return lin::gemm::launch<W4A8Gemm<BigTile, false>, W4A8Gemm<SmallTile, false>>(*p, pairs, stream);
  }
  return lin::launch_gemv<W4A8>(*p, stream);
}
