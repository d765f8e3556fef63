// W4A8Linear: int4 weights (two-level scales) x int8 activations on int8 tensor cores, exact int32 sums.
// Contract: quamba_edge/ops/w4a8_linear.py (see quamba_kernels/w4a8_linear.h).
//
// Tensor-core GEMV (linear_common.cuh): per k-step of 128, lane (g, t) loads 16 bytes (32 codes) of weight rows
// g and g + 8 at K offset 32 t, their fp16 group scales, and 32 activation bytes of token row g. The int4 ->
// int8 step of the reference (an fp16 multiply by the group scale, rounded half to even, saturated) is done
// once per lane and group as a 16-entry table (w4a8_lut) and applied with byte permutes (w4a8_lookup), so the
// int8 weights are bit-identical to the reference's and the int32 sums exact.
#include "quamba_kernels/w4a8_linear.h"

#include "quamba_kernels/linear_common.cuh"

namespace quamba {
namespace {

using namespace lin;

struct W4A8 {
  using Params = QuambaW4A8LinearParams;
  using Acc = int;
  static constexpr int kStepK = 128;  // 4 lanes x 32 codes
  template <int NT>
  static constexpr int depth = NT == 1 ? 3 : 2;
  template <int NT>
  struct Stage {
    uint4 wa, wb;     // 32 codes of weight rows g and g + 8
    uint16_t sa, sb;  // their group scales (fp16 bits)
    uint4 x[NT][2];   // 32 activation bytes of token rows g (+ 8)
  };

  const uint8_t* w0;
  const uint8_t* w1;
  const uint16_t* s0;
  const uint16_t* s1;
  const int8_t* xr[2];
  bool in0, in1, tin[2];
  int k0, k, group_size;

  template <int NT>
  __device__ __forceinline__ W4A8(const Params& p, const GemvLane<NT>& ln)
      : in0(ln.in0), in1(ln.in1), k0(32 * ln.t), k(p.k), group_size(p.group_size >= p.k ? p.k : p.group_size) {
    w0 = p.qweight + static_cast<int64_t>(ln.in0 ? ln.row0 : 0) * p.w_row_stride + k0 / 2;
    w1 = p.qweight + static_cast<int64_t>(ln.in1 ? ln.row1 : 0) * p.w_row_stride + k0 / 2;
    s0 = p.s_group + static_cast<int64_t>(ln.in0 ? ln.row0 : 0) * p.s_group_row_stride;
    s1 = p.s_group + static_cast<int64_t>(ln.in1 ? ln.row1 : 0) * p.s_group_row_stride;
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
      tin[nt] = ln.tin[nt];
      xr[nt] = p.x + (ln.tin[nt] ? ln.tok[nt] : 0) * p.x_row_stride + k0;
    }
  }

  // Out-of-range lanes load zero bytes: code 0 decodes to a non-zero weight, but its activations are zero.
  template <int NT>
  __device__ __forceinline__ void load(Stage<NT>& st, int s, bool in_range) const {
    const int kk = s * kStepK + k0;
    const bool kin = in_range && kk < k;
    const uint4 zero = make_uint4(0, 0, 0, 0);
    const int grp = kin ? kk / group_size : 0;
    st.wa = kin && in0 ? ld_stream(w0 + s * (kStepK / 2)) : zero;
    st.wb = kin && in1 ? ld_stream(w1 + s * (kStepK / 2)) : zero;
    st.sa = kin && in0 ? __ldg(s0 + grp) : 0;
    st.sb = kin && in1 ? __ldg(s1 + grp) : 0;
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
      st.x[nt][0] = kin && tin[nt] ? ld_cached(xr[nt] + s * kStepK) : zero;
      st.x[nt][1] = kin && tin[nt] ? ld_cached(xr[nt] + s * kStepK + 16) : zero;
    }
  }

  template <int NT>
  __device__ __forceinline__ void compute(const Stage<NT>& st, int (&acc)[NT][4], int /*s*/,
                                          bool /*in_range: zero stages add zeros*/) const {
    const Lut16 la = w4a8_lut(st.sa), lb = w4a8_lut(st.sb);
#pragma unroll
    for (int j = 0; j < 4; ++j) {  // packed word j = codes 8j .. 8j + 7 of each row's chunk
      uint32_t a[4];
      w4a8_lookup(la, word(st.wa, j), a[0], a[2]);
      w4a8_lookup(lb, word(st.wb, j), a[1], a[3]);
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
        const uint4& xv = st.x[nt][j / 2];
        mma_s8(acc[nt], a, word(xv, (2 * j) % 4), word(xv, (2 * j + 1) % 4));
      }
    }
  }

  __device__ static __forceinline__ void store(const Params& p, int acc, int row, int64_t token) {
    const float y = int_epilogue(acc, __ldg(p.x_scale), __ldg(p.s_channel + row), p.bias, row);
    const float os = p.y_dtype == QUAMBA_DT_I8 ? __ldg(p.out_scale + row * p.out_scale_stride) : 1.0f;
    store_y(p.y, token * p.y_row_stride + row, p.y_dtype, y, os);
  }
};

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
  return lin::launch_gemv<W4A8>(*p, stream);
}
