// W8A8Linear: y = epilogue(x_q @ w_q^T) with exact int32 accumulation.
// Contract: quamba_edge/ops/w8a8_linear.py (see quamba_kernels/w8a8_linear.h).
//
// Tensor-core GEMV (gemv_kernel in linear_common.cuh): per k-step of 64, lane (g, t) streams 16 weight bytes of
// rows g and g + 8 at K offset 16 t and reads 16 activation bytes of token row g at the same offset; two
// m16n8k32 mmas consume them. Exact int32 sums, so the int8 / fp32 outputs equal the reference bit for bit.
// K % 16 != 0 or rows not 16-byte aligned (small layers such as a tiny model's dt_proj): the same kernel
// gathers each chunk byte by byte, zero past K.
#include "quamba_kernels/w8a8_linear.h"

#include "quamba_kernels/linear_common.cuh"

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
  return vec ? lin::launch_gemv<W8A8<true>>(*p, stream) : lin::launch_gemv<W8A8<false>>(*p, stream);
}
