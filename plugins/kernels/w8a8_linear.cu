// W8A8Linear: y = epilogue(x_q @ w_q^T) with exact int32 accumulation.
// Contract: quamba_edge/ops/w8a8_linear.py (see quamba_kernels/w8a8_linear.h).
//
// Tensor-core GEMV (the scheme of linear_common.cuh): per k-step of 64, lane (g, t) loads 16 weight bytes of
// rows g and g + 8 at K offset 16 t and 16 activation bytes of token row g at the same offset; two
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

template <bool kVec>  // 16-byte vector loads (K % 16 == 0, aligned rows) or byte-wise gathers
struct W8A8 {
  using Params = QuambaW8A8LinearParams;
  using Acc = int;
  static constexpr int kStepK = 64;  // 4 lanes x 16 bytes
  // k-steps in flight per warp (3 for two token tiles: 4 would spill under the 2-blocks-per-SM cap)
  template <int NT>
  static constexpr int depth = NT == 1 ? 4 : 3;
  template <int NT>
  struct Stage {
    uint4 wa, wb;  // weight rows g and g + 8
    uint4 x[NT];   // token rows g (+ 8)
  };

  const int8_t* w0;
  const int8_t* w1;
  const int8_t* xr[2];
  bool in0, in1, tin[2];
  int k0;  // this lane's K offset inside a k-step
  int k;

  template <int NT>
  __device__ __forceinline__ W8A8(const Params& p, const GemvLane<NT>& ln)
      : in0(ln.in0), in1(ln.in1), k0(16 * ln.t), k(p.k) {
    w0 = p.w + static_cast<int64_t>(ln.in0 ? ln.row0 : 0) * p.w_row_stride + k0;
    w1 = p.w + static_cast<int64_t>(ln.in1 ? ln.row1 : 0) * p.w_row_stride + k0;
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
      tin[nt] = ln.tin[nt];
      xr[nt] = p.x + (ln.tin[nt] ? ln.tok[nt] : 0) * p.x_row_stride + k0;
    }
  }

  template <int NT>
  __device__ __forceinline__ void load(Stage<NT>& st, int s, bool in_range) const {
    const bool kin = in_range && s * kStepK + k0 < k;
    const uint4 zero = make_uint4(0, 0, 0, 0);
    if (kVec) {
      st.wa = kin && in0 ? ld_stream(w0 + s * kStepK) : zero;
      st.wb = kin && in1 ? ld_stream(w1 + s * kStepK) : zero;
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) st.x[nt] = kin && tin[nt] ? ld_cached(xr[nt] + s * kStepK) : zero;
    } else {
      const int valid = kin ? k - (s * kStepK + k0) : 0;
      st.wa = in0 ? ld_bytes(w0 + s * kStepK, valid) : zero;
      st.wb = in1 ? ld_bytes(w1 + s * kStepK, valid) : zero;
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) st.x[nt] = tin[nt] ? ld_bytes(xr[nt] + s * kStepK, valid) : zero;
    }
  }

  template <int NT>
  __device__ __forceinline__ void compute(const Stage<NT>& st, int (&acc)[NT][4], int /*s*/,
                                          bool /*in_range: zero stages add zeros*/) const {
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      const uint32_t a[4] = {word(st.wa, 2 * j), word(st.wb, 2 * j), word(st.wa, 2 * j + 1), word(st.wb, 2 * j + 1)};
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) mma_s8(acc[nt], a, word(st.x[nt], 2 * j), word(st.x[nt], 2 * j + 1));
    }
  }

  __device__ static __forceinline__ void store(const Params& p, int acc, int row, int64_t token) {
    const float y = int_epilogue(acc, __ldg(p.x_scale), __ldg(p.w_scale + row * p.w_scale_stride), p.bias, row);
    const float os = p.y_dtype == QUAMBA_DT_I8 ? __ldg(p.out_scale + row * p.out_scale_stride) : 1.0f;
    store_y(p.y, token * p.y_row_stride + row, p.y_dtype, y, os);
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
