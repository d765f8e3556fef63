// W8A8Linear: y = epilogue(x_q @ w_q^T) with exact int32 accumulation.
// Contract: quamba_edge/ops/w8a8_linear.py (see quamba_kernels/w8a8_linear.h).
//
// Tensor-core GEMV (gemv_kernel in linear_common.cuh): per k-step of 64, lane (g, t) streams 16 weight bytes of
// rows g and g + 8 at K offset 16 t and reads 16 activation bytes of token row g at the same offset; two
// m16n8k32 mmas consume them. Exact int32 sums, so the int8 / fp32 outputs equal the reference bit for bit.
// K % 16 != 0 or rows not 16-byte aligned (small layers such as a tiny model's dt_proj): the same kernel
// gathers each chunk byte by byte, zero past K.
//
// M > 16 (prefill), K % 16 == 0, aligned rows: the tiled GEMM of linear_gemm.cuh. Both operands are int8 rows,
// so the weight fragments come from ldmatrix like the activations'; m16n8k32 s8 mmas, exact int32 sums, the
// same epilogue operations (IntCol = int_epilogue + store_y): outputs equal the GEMV's and the reference's.
//   big:   128 x 128 tile, 4 warps of 64 x 64 (128 int32 accumulators per lane; per k-step 8 ldmatrix.x4 feed
//          32 mmas), 3 stages x 32 KiB: 2 blocks per SM on sm_90 (one's epilogue overlaps the other's main
//          loop), 1 on sm_87 (164 KiB shared). Shared traffic per k-tile: 32 KiB written, 64 KiB read by
//          ldmatrix, for 512 mmas.
//   small: 64 x 64, 4 warps of 32 x 32, 4 stages x 16 KiB: when the big tiles would not give every SM a block.
// Other K / alignments stay on the GEMV for every M (meant for small layers).
#include "quamba_kernels/w8a8_linear.h"

#include "quamba_kernels/linear_common.cuh"
#include "quamba_kernels/linear_gemm.cuh"

namespace quamba {
namespace {

using namespace lin;

// 16 bytes at p[0..15] as a uint4, bytes at or past `valid` zero (unaligned, byte-wise).
__device__ __forceinline__ uint4 ld_bytes(const int8_t* p, int valid) {
  uint32_t w[4] = {0, 0, 0, 0};
#pragma unroll
  for (int i = 0; i < 16; ++i) {
    if (i < valid) w[i / 4] |= static_cast<uint32_t>(static_cast<uint8_t>(__ldg(p + i))) << (8 * (i % 4));
  }
  return make_uint4(w[0], w[1], w[2], w[3]);
}

template <bool kVec>  // 16-byte copies (K % 16 == 0, aligned rows) or byte-wise gathers
struct W8A8 {
  using Params = QuambaW8A8LinearParams;
  using Acc = int;
  static constexpr int kStepK = 64;  // 4 lanes x 16 bytes
  struct Side {};
  template <int NT>
  struct X {
    uint4 v[NT];  // token rows g (+ 8)
  };

  const int8_t* w;
  int64_t ldw;
  const int8_t* xr[2];
  bool tin[2];
  int n, k, k0;  // k0: this lane's K offset inside a k-step

  template <int NT>
  __device__ __forceinline__ W8A8(const Params& p, const GemvLane<NT>& ln)
      : w(p.w), ldw(p.w_row_stride), n(p.n), k(p.k), k0(16 * ln.t) {
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
      tin[nt] = ln.tin[nt];
      xr[nt] = p.x + (ln.tin[nt] ? ln.tok[nt] : 0) * p.x_row_stride + k0;
    }
  }

  __device__ __forceinline__ void issue(int row0, int step, bool valid, uint4* dst0, uint4* dst1, Side&) const {
    const int kk = step * kStepK + k0;
    const bool ok = valid && kk < k;
    const bool ok0 = ok && row0 < n, ok1 = ok && row0 + 8 < n;
    const int8_t* src0 = w + (ok0 ? row0 * ldw + kk : 0);
    const int8_t* src1 = w + (ok1 ? (row0 + 8) * ldw + kk : 0);
    if (kVec) {
      cp_async16(dst0, src0, ok0);
      cp_async16(dst1, src1, ok1);
    } else {  // a plain store: read back by this thread only, after it
      *dst0 = ok0 ? ld_bytes(src0, k - kk) : make_uint4(0, 0, 0, 0);
      *dst1 = ok1 ? ld_bytes(src1, k - kk) : make_uint4(0, 0, 0, 0);
    }
  }

  template <int NT>
  __device__ __forceinline__ void load_x(int step, bool valid, X<NT>& x) const {
    const int off = step * kStepK;
    const bool ok = valid && off + k0 < k;
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
      if (kVec) {
        x.v[nt] = ok && tin[nt] ? ld_cached(xr[nt] + off) : make_uint4(0, 0, 0, 0);
      } else {
        x.v[nt] = ok && tin[nt] ? ld_bytes(xr[nt] + off, k - off - k0) : make_uint4(0, 0, 0, 0);
      }
    }
  }

  template <int NT>
  __device__ __forceinline__ void compute(uint4 w0, uint4 w1, const Side&, const X<NT>& x, int (&acc)[NT][4]) const {
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      const uint32_t a[4] = {word(w0, 2 * j), word(w1, 2 * j), word(w0, 2 * j + 1), word(w1, 2 * j + 1)};
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) mma_s8(acc[nt], a, word(x.v[nt], 2 * j), word(x.v[nt], 2 * j + 1));
    }
  }

  __device__ static __forceinline__ void store(const Params& p, int acc, int row, int64_t token) {
    a8_store(p, acc, row, token, __ldg(p.w_scale + row * p.w_scale_stride));
  }
};

// GEMM policy (linear_gemm.cuh): int8 weight rows of 128 bytes per k-tile, fragments by ldmatrix.
template <class Tl>
struct W8A8Gemm {
  using Params = QuambaW8A8LinearParams;
  using T = Tl;
  static constexpr int kBRowBytes = 128;
  static constexpr int MT = T::kMT, NT = T::kNT;
  static_assert(NT % 2 == 0, "one ldmatrix.x4 = two n8 tiles");

  __device__ static const void* x_ptr(const Params& p) { return p.x; }
  __device__ static int64_t x_row_bytes(const Params& p) { return p.x_row_stride; }
  __device__ static int x_kbytes(const Params& p) { return p.k; }
  __device__ static const void* w_ptr(const Params& p) { return p.w; }
  __device__ static int64_t w_row_bytes(const Params& p) { return p.w_row_stride; }
  __device__ static int w_kbytes(const Params& p) { return p.k; }

  int acc[MT][NT][4];
  gemm::AFrag<T> af;
  uint32_t b_row_off;  // weight ldmatrix.x4 rows: lanes 0-15 -> n8 tile 2j, 16-31 -> 2j + 1 (rows lane % 8)
  int b_x, b_h;        // swizzle term (lane % 8) and chunk half ((lane / 8) % 2)

  __device__ __forceinline__ W8A8Gemm(const Params&, int64_t, int)
      : af(gemm::WarpPos::make<T>()) {
    const gemm::WarpPos w = gemm::WarpPos::make<T>();
    b_row_off = static_cast<uint32_t>((w.wn * T::kWN + (w.lane & 7) + ((w.lane >> 4) << 3)) * kBRowBytes);
    b_x = w.lane & 7;
    b_h = (w.lane >> 3) & 1;
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
        for (int i = 0; i < 4; ++i) acc[mt][nt][i] = 0;
      }
    }
  }

  __device__ __forceinline__ void compute(uint32_t sA, uint32_t sB, int, int) {
#pragma unroll
    for (int s = 0; s < 4; ++s) {  // k-steps of 32
      uint32_t b[NT][2];
#pragma unroll
      for (int j = 0; j < NT / 2; ++j) {
        uint32_t r[4];
        gemm::ldsm_x4(r, sB + b_row_off + static_cast<uint32_t>(j * 16 * kBRowBytes + (((2 * s + b_h) ^ b_x) << 4)));
        b[2 * j][0] = r[0];
        b[2 * j][1] = r[1];
        b[2 * j + 1][0] = r[2];
        b[2 * j + 1][1] = r[3];
      }
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
        uint32_t a[4];
        af.load(a, sA, mt, s);
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) mma_s8(acc[mt][nt], a, b[nt][0], b[nt][1]);
      }
    }
  }

  __device__ __forceinline__ void epilogue(const Params& p, int64_t m0, int n0, bool pairs) const {
    gemm::IntCol col;
    col.x_scale = __ldg(p.x_scale);
    col.w_scale = p.w_scale;
    col.w_scale_stride = p.w_scale_stride;
    col.bias = p.bias;
    col.out_scale = p.y_dtype == QUAMBA_DT_I8 ? p.out_scale : nullptr;
    col.out_scale_stride = p.out_scale_stride;
    gemm::store_tile<T>(acc, col, p.y, p.y_row_stride, p.y_dtype, p.m, p.n, m0, n0, pairs);
  }
};

using W8A8Big = W8A8Gemm<gemm::Tiling<128, 128, 2, 2, 3, 2>>;
using W8A8Small = W8A8Gemm<gemm::Tiling<64, 64, 2, 2, 4, 3>>;

}  // namespace
}  // namespace quamba

extern "C" QUAMBA_API cudaError_t quamba_w8a8_linear(const QuambaW8A8LinearParams* p, cudaStream_t stream) {
  using namespace quamba;
  QUAMBA_CHECK_ARG(p != nullptr && p->x != nullptr && p->w != nullptr && p->y != nullptr);
  QUAMBA_CHECK_ARG(p->x_scale != nullptr && p->w_scale != nullptr);
  QUAMBA_CHECK_ARG(p->m >= 1 && p->n >= 1 && p->k >= 1 && p->k <= 65536);
  QUAMBA_CHECK_ARG(p->w_scale_stride == 0 || p->w_scale_stride == 1);
  QUAMBA_CHECK_ARG(p->y_dtype == QUAMBA_DT_I8 || p->y_dtype == QUAMBA_DT_F32 || p->y_dtype == QUAMBA_DT_F16);
  QUAMBA_CHECK_ARG(p->y_dtype != QUAMBA_DT_I8 ||
                   (p->out_scale != nullptr && (p->out_scale_stride == 0 || p->out_scale_stride == 1)));
  const bool vec = p->k % 16 == 0 && lin::aligned16(p->x, p->x_row_stride) && lin::aligned16(p->w, p->w_row_stride);
  if (vec && p->m > 16) {
    return lin::gemm::launch<W8A8Big, W8A8Small>(*p, lin::gemm::pair_stores(p->y, p->y_dtype, p->y_row_stride), stream);
  }
  return vec ? lin::launch_gemv<W8A8<true>>(*p, stream) : lin::launch_gemv<W8A8<false>>(*p, stream);
}
